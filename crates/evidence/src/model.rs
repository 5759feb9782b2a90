//! The evidence vocabulary shared by every source.
//!
//! Times are RFC 3339 in UTC with a `Z` suffix, like the ledger's. A source's own time format
//! (GitLab's `2023-12-05 18:43:00 UTC`, offsets such as `+05:45`) is converted on the way in;
//! a time with no zone at all is refused, never assumed to be UTC.

use serde::{Deserialize, Serialize};

/// Where a piece of evidence came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Host {
    Github,
    Gitlab,
    /// A CI/CD pipeline reporting through changegate's own deployment endpoint.
    Pipeline,
    /// A git repository read directly.
    Git,
}

/// An account on a code host or CI system, as the host names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// The login (GitHub) or username (GitLab); for a pipeline, the reporting identity.
    pub login: String,
    /// An automation account (`dependabot[bot]`, a GitHub App, a GitLab bot user). Bots
    /// follow policy like anyone else but never count as a human reviewer.
    #[serde(default)]
    pub bot: bool,
}

/// A person as git records them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    pub email: String,
}

/// A pull request (GitHub) or merge request (GitLab) in one of its states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub host: Host,
    /// `owner/name` on GitHub, the project's `path_with_namespace` on GitLab.
    pub repository: String,
    pub number: u64,
    /// The platform's action that produced this snapshot: `opened`, `synchronize`,
    /// `closed`, `reopened`, `update`, `merge`, …
    pub action: String,
    pub title: String,
    pub author: Identity,
    /// The source branch.
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    pub state: PullRequestState,
    pub created_at: String,
    /// When the platform says this snapshot was taken (the event's `updated_at`).
    pub updated_at: Option<String>,
    pub merged_at: Option<String>,
    pub merged_by: Option<Identity>,
    /// The merge commit on the base branch (GitHub: also the squash or rebase result).
    pub merge_commit_sha: Option<String>,
    /// GitLab's squash commit, when the request was squashed.
    pub squash_commit_sha: Option<String>,
    /// The number of commits the platform declares, to detect truncated commit lists.
    pub commits: Option<u64>,
    pub labels: Vec<String>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullRequestState {
    Open,
    Closed,
    Merged,
}

/// One decision by one reviewer on a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub host: Host,
    pub repository: String,
    pub number: u64,
    pub reviewer: Identity,
    pub state: ReviewState,
    /// The head commit the decision was given on.
    pub commit: Option<String>,
    pub at: String,
    /// Who dismissed it, for a dismissal.
    pub dismissed_by: Option<Identity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    /// A comment: it leaves the reviewer's standing decision as it was.
    Commented,
    /// An approval removed by someone else.
    Dismissed,
    /// An approval withdrawn by its reviewer (GitLab's `unapproved`).
    Unapproved,
}

/// A push to a branch or tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    pub host: Host,
    pub repository: String,
    /// The full ref, `refs/heads/main`.
    pub git_ref: String,
    pub before: String,
    pub after: String,
    pub forced: bool,
    pub created: bool,
    pub deleted: bool,
    pub pusher: Identity,
    pub commits: Vec<PushedCommit>,
    /// When the push happened, if the payload says (the head commit's timestamp otherwise).
    pub at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedCommit {
    pub id: String,
    pub author: Person,
    pub committer: Option<Person>,
    /// The first line of the message.
    pub subject: String,
    pub at: Option<String>,
}

/// Something was deployed to an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub host: Host,
    /// The platform's deployment id, or the id the pipeline gave; empty when none was given.
    pub id: String,
    /// The repository (code hosts) or the system (pipelines) deployed.
    pub system: String,
    pub environment: String,
    /// A commit id or an image digest.
    pub artifact: String,
    pub actor: Identity,
    pub at: String,
    /// `success`, `failure`, `in_progress`, … when the source reports one.
    pub status: Option<String>,
    /// Commits the deployment says it carries, beyond `artifact`.
    pub commits: Vec<String>,
    pub description: Option<String>,
}

/// The status of a deployment changed (GitHub `deployment_status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentStatus {
    pub host: Host,
    pub repository: String,
    pub deployment_id: String,
    pub environment: String,
    pub state: String,
    pub artifact: String,
    pub actor: Identity,
    pub at: String,
}

/// A CI result on a commit: a check run, check suite, commit status or GitLab pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub host: Host,
    pub repository: String,
    pub sha: String,
    pub name: String,
    /// `queued`, `in_progress`, `completed` (GitHub) or the pipeline status (GitLab).
    pub status: String,
    /// `success`, `failure`, `neutral`, `cancelled`, `skipped`, `timed_out`, … once done.
    pub conclusion: Option<String>,
    pub at: String,
}

/// Branch protection was created, edited or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectionChange {
    pub host: Host,
    pub repository: String,
    /// `created`, `edited` or `deleted`.
    pub action: String,
    /// The branch pattern the rule protects.
    pub pattern: String,
    pub actor: Identity,
    pub at: String,
    /// The rule's settings after the change, as the platform names them.
    pub settings: serde_json::Value,
    /// Settings that this change made weaker, by name (`deleted` weakens them all).
    pub weakened: Vec<String>,
}

/// Branch protection was bypassed (GitHub's `protected_branch.policy_override` audit
/// event, an admin merge, a push that bypassed rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectionOverride {
    pub host: Host,
    pub repository: String,
    pub branch: String,
    pub actor: Identity,
    pub at: String,
    /// The mechanism as the source names it (`policy_override`, `admin_merge`, …).
    pub mechanism: String,
    /// The commit the bypass let through, when known.
    pub commit: Option<String>,
}

/// One normalized fact from a code host or pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    PullRequest(PullRequest),
    Review(Review),
    Push(Push),
    Deployment(Deployment),
    DeploymentStatus(DeploymentStatus),
    Check(Check),
    ProtectionChange(ProtectionChange),
    ProtectionOverride(ProtectionOverride),
}

impl Evidence {
    /// The ledger entry kind that records this evidence.
    pub fn ledger_kind(&self) -> &'static str {
        match self {
            Evidence::PullRequest(_) => "evidence.pull_request",
            Evidence::Review(_) => "evidence.review",
            Evidence::Push(_) => "evidence.push",
            Evidence::Deployment(_) => "evidence.deployment",
            Evidence::DeploymentStatus(_) => "evidence.deployment_status",
            Evidence::Check(_) => "evidence.check",
            Evidence::ProtectionChange(_) => "evidence.protection_change",
            Evidence::ProtectionOverride(_) => "evidence.protection_override",
        }
    }

    /// The repository or system the evidence is about.
    pub fn repository(&self) -> &str {
        match self {
            Evidence::PullRequest(e) => &e.repository,
            Evidence::Review(e) => &e.repository,
            Evidence::Push(e) => &e.repository,
            Evidence::Deployment(e) => &e.system,
            Evidence::DeploymentStatus(e) => &e.repository,
            Evidence::Check(e) => &e.repository,
            Evidence::ProtectionChange(e) => &e.repository,
            Evidence::ProtectionOverride(e) => &e.repository,
        }
    }
}

/// Why a payload could not be turned into evidence. The message names the field or the
/// event so that the sender can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or truncated JSON.
    #[error("the payload is not valid JSON: {0}")]
    Json(String),
    /// A field is missing or has the wrong type or form.
    #[error("field `{field}`: {message}")]
    Field { field: String, message: String },
    /// An event kind changegate does not read.
    #[error("unsupported event `{0}`")]
    Unsupported(String),
}

impl ParseError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ParseError::Field {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A short machine-readable code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::Json(_) => "invalid_json",
            ParseError::Field { .. } => "invalid_field",
            ParseError::Unsupported(_) => "unsupported_event",
        }
    }
}

/// Extracts the change ids (`CHG-…`) a text names, normalized to changegate's form
/// (`CHG-` and at least six digits), in order of first appearance, without repeats.
/// `chg-42` and `CHG-000042` name the same change.
pub fn change_ids(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i + 4 <= bytes.len() {
        let prefix = &bytes[i..i + 4];
        let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if boundary && prefix.eq_ignore_ascii_case(b"chg-") {
            let start = i + 4;
            let mut end = start;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            let after_ok = end == bytes.len() || !bytes[end].is_ascii_alphanumeric();
            if end > start && after_ok {
                let digits = text[start..end].trim_start_matches('0');
                if !digits.is_empty() && digits.len() <= 12 {
                    let id = format!("CHG-{digits:0>6}");
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_ids_are_found_and_normalized() {
        assert_eq!(change_ids("CHG-000042: fix"), vec!["CHG-000042"]);
        assert_eq!(change_ids("feature/chg-42-login"), vec!["CHG-000042"]);
        assert_eq!(
            change_ids("Refs: CHG-7, CHG-000007 and CHG-1234567"),
            vec!["CHG-000007", "CHG-1234567"]
        );
        assert!(change_ids("XCHG-1 CHG- CHG-12a CHG-0").is_empty());
    }
}
