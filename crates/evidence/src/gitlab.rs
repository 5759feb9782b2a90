//! GitLab webhook deliveries, read into evidence.
//!
//! The payload's `object_kind` decides what a delivery is; the `X-Gitlab-Event` header, when
//! given, must agree with it. Choices worth knowing:
//!
//! - **Merge request author.** Hooks name the author only by `object_attributes.author_id`.
//!   It is resolved to a username by finding a user object with that id in the payload
//!   (`user`, `assignees`, `reviewers`). When none matches, the author is recorded as
//!   `id:<author_id>`: GitLab usernames cannot contain `:`, so this never passes for a real
//!   account, and comparing it with a reviewer's username never reports a self-approval
//!   that did not happen. `user` is taken as the author without an id only when the action
//!   is `open` and the payload has no `author_id`. (GitLab's documented `open` example has
//!   `user` 1 and `author_id` 51: the id wins.)
//! - **Approvals.** `approved`/`approval` become an approved [`Review`] and
//!   `unapproved`/`unapproval` an unapproved one, by `user`, on `last_commit`, at the merge
//!   request's `updated_at` (the hook carries no separate approval time).
//! - **Merges.** The hook has no `merged_at`; for the `merge` action the merge request's
//!   `updated_at` is the merge time, and `user` is who merged. `merge_commit_sha` and
//!   `squash_commit_sha` are kept only for a merged request.
//! - **Pushes.** GitLab does not say whether a push was forced: `forced` is false and
//!   history rewrites must be found by comparing ancestry. `created`/`deleted` come from the
//!   all-zero `before`/`after`. The time is the pushed head commit's timestamp.
//! - **Deployments.** The artifact is the full commit id at the end of `commit_url`,
//!   checked against `short_sha`; only when there is no `commit_url` is `short_sha` used.
//! - **Notes and releases** yield no evidence: a comment is not an approval, and a release
//!   names a tag whose creation arrives as its own Tag Push Hook.
//! - GitLab's documented group-hook example pads some keys with a space (`"iid "`). Keys are
//!   read with surrounding spaces removed; a key present both ways is an error.

use serde_json::{Map, Value};

use crate::github::fields::{is_hex, read_json, Node};
use crate::model::{
    Check, Deployment, Evidence, Host, Identity, ParseError, Person, PullRequest, PullRequestState,
    Push, PushedCommit, Review, ReviewState,
};

/// Reads one GitLab webhook delivery. `event_header` is `X-Gitlab-Event`, if the caller has
/// it: `Merge Request Hook`, `Push Hook`, `Tag Push Hook`, `Deployment Hook`, `Pipeline
/// Hook`, `Job Hook`, `Note Hook`, `Release Hook`, or `System Hook` (which instances send
/// for pushes, tag pushes and merge requests).
pub fn parse(event_header: Option<&str>, body: &[u8]) -> Result<Vec<Evidence>, ParseError> {
    let raw = read_json(body)?;
    Node::root(&raw).object()?;
    let value = trim_keys(&raw, "")?;
    let root = Node::root(&value);
    let kind = root.non_empty("object_kind")?;
    if let Some(header) = event_header {
        check_header(header, &kind)?;
    }
    match kind.as_str() {
        "merge_request" => merge_request(&root),
        "push" | "tag_push" => push(&root).map(|p| vec![Evidence::Push(p)]),
        "deployment" => deployment(&root).map(|d| vec![Evidence::Deployment(d)]),
        "pipeline" => pipeline(&root).map(|c| vec![Evidence::Check(c)]),
        "build" => job(&root).map(|c| vec![Evidence::Check(c)]),
        "note" | "release" => Ok(Vec::new()),
        other => Err(ParseError::Unsupported(other.to_string())),
    }
}

/// The `X-Gitlab-Event` header GitLab sends with an `object_kind`.
fn header_for(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "merge_request" => "Merge Request Hook",
        "push" => "Push Hook",
        "tag_push" => "Tag Push Hook",
        "deployment" => "Deployment Hook",
        "pipeline" => "Pipeline Hook",
        "build" => "Job Hook",
        "note" => "Note Hook",
        "release" => "Release Hook",
        _ => return None,
    })
}

fn check_header(header: &str, kind: &str) -> Result<(), ParseError> {
    let header = header.trim();
    let system_hook =
        header == "System Hook" && matches!(kind, "push" | "tag_push" | "merge_request");
    match header_for(kind) {
        Some(expected) if expected == header || system_hook => Ok(()),
        None => Err(ParseError::Unsupported(kind.to_string())),
        Some(expected) => Err(ParseError::field(
            "object_kind",
            format!(
                "`{kind}` does not match the `X-Gitlab-Event` header `{header}` (a `{kind}` \
                 payload comes with `{expected}`)"
            ),
        )),
    }
}

/// A copy of `value` with surrounding spaces removed from object keys.
fn trim_keys(value: &Value, path: &str) -> Result<Value, ParseError> {
    Ok(match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, item) in map {
                let trimmed = key.trim();
                let child = if path.is_empty() {
                    trimmed.to_string()
                } else {
                    format!("{path}.{trimmed}")
                };
                let item = trim_keys(item, &child)?;
                if out.insert(trimmed.to_string(), item).is_some() {
                    return Err(ParseError::field(
                        child,
                        "appears twice, once padded with spaces",
                    ));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| trim_keys(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// A GitLab account. Bots are users flagged `bot`, or access-token bots, which GitLab names
/// `project_<id>_bot…` and `group_<id>_bot…`.
fn identity(user: &Node) -> Result<Identity, ParseError> {
    let login = user.non_empty("username")?;
    let bot = user.opt_bool("bot")?.unwrap_or(false) || is_token_bot(&login);
    Ok(Identity { login, bot })
}

fn username_identity(login: String) -> Identity {
    let bot = is_token_bot(&login);
    Identity { login, bot }
}

fn is_token_bot(login: &str) -> bool {
    ["project_", "group_"].iter().any(|prefix| {
        login.strip_prefix(prefix).is_some_and(|rest| {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && rest[digits..].starts_with("_bot")
        })
    })
}

fn project(root: &Node) -> Result<String, ParseError> {
    root.non_empty("project.path_with_namespace")
}

fn merge_request(root: &Node) -> Result<Vec<Evidence>, ParseError> {
    let attrs = root.req("object_attributes")?;
    let action = attrs.non_empty("action")?;
    let state = match action.as_str() {
        "approved" | "approval" => Some(ReviewState::Approved),
        "unapproved" | "unapproval" => Some(ReviewState::Unapproved),
        _ => None,
    };
    if let Some(state) = state {
        return Ok(vec![Evidence::Review(Review {
            host: Host::Gitlab,
            repository: project(root)?,
            number: attrs.u64("iid")?,
            reviewer: identity(&root.req("user")?)?,
            state,
            commit: attrs.opt_sha("last_commit.id")?,
            at: attrs.time("updated_at")?,
            dismissed_by: None,
        })]);
    }

    let state_text = attrs.opt_string("state")?.unwrap_or_default();
    let merged = action == "merge" || state_text.trim() == "merged";
    let state = if merged {
        PullRequestState::Merged
    } else {
        match state_text.trim() {
            "opened" | "locked" => PullRequestState::Open,
            "closed" => PullRequestState::Closed,
            other => {
                return Err(attrs.error_at(
                    "state",
                    format!(
                        "`{other}` is not a merge request state (opened, closed, merged, locked)"
                    ),
                ))
            }
        }
    };
    let updated_at = attrs.opt_time("updated_at")?;
    let label_source = match root.get("labels") {
        Some(labels) => labels.elements()?,
        None => attrs.opt_elements("labels")?,
    };
    let labels = label_source
        .iter()
        .map(|label| label.string("title"))
        .collect::<Result<Vec<_>, _>>()?;
    let merged_by = if action == "merge" {
        Some(identity(&root.req("user")?)?)
    } else {
        None
    };
    Ok(vec![Evidence::PullRequest(PullRequest {
        host: Host::Gitlab,
        repository: project(root)?,
        number: attrs.u64("iid")?,
        author: author(root, &attrs, &action)?,
        title: attrs.string("title")?,
        head_ref: attrs.non_empty("source_branch")?,
        head_sha: attrs.sha("last_commit.id")?,
        base_ref: attrs.non_empty("target_branch")?,
        state,
        created_at: attrs.time("created_at")?,
        merged_at: if action == "merge" {
            updated_at.clone()
        } else {
            None
        },
        updated_at,
        merged_by,
        merge_commit_sha: if merged {
            attrs.opt_sha("merge_commit_sha")?
        } else {
            None
        },
        squash_commit_sha: if merged {
            attrs.opt_sha("squash_commit_sha")?
        } else {
            None
        },
        commits: None,
        labels,
        url: attrs.opt_string("url")?,
        action,
    })])
}

/// See the module documentation: the author is found by id, never assumed.
fn author(root: &Node, attrs: &Node, action: &str) -> Result<Identity, ParseError> {
    let Some(author_id) = attrs.opt_u64("author_id")? else {
        return match action {
            "open" => identity(&root.req("user")?),
            _ => Err(attrs.error_at("author_id", "is missing")),
        };
    };
    let mut candidates: Vec<Node> = root.get("user").into_iter().collect();
    candidates.extend(root.opt_elements("assignees")?);
    candidates.extend(root.opt_elements("reviewers")?);
    for user in candidates {
        if user.opt_u64("id")? == Some(author_id) {
            return identity(&user);
        }
    }
    Ok(Identity {
        login: format!("id:{author_id}"),
        bot: false,
    })
}

fn push(root: &Node) -> Result<Push, ParseError> {
    let before = root.sha("before")?;
    let after = root.sha("after")?;
    let head = root.opt_string("checkout_sha")?.unwrap_or_default();
    let mut at = None;
    let mut commits = Vec::new();
    for commit in root.opt_elements("commits")? {
        let pushed = pushed_commit(&commit)?;
        if pushed.id == after || pushed.id == head {
            at.clone_from(&pushed.at);
        }
        commits.push(pushed);
    }
    Ok(Push {
        host: Host::Gitlab,
        repository: project(root)?,
        git_ref: root.non_empty("ref")?,
        created: before.bytes().all(|b| b == b'0'),
        deleted: after.bytes().all(|b| b == b'0'),
        before,
        after,
        forced: false,
        pusher: username_identity(root.non_empty("user_username")?),
        commits,
        at,
    })
}

fn pushed_commit(commit: &Node) -> Result<PushedCommit, ParseError> {
    let subject = match commit.opt_string("title")? {
        Some(title) if !title.is_empty() => title,
        _ => commit
            .string("message")?
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    Ok(PushedCommit {
        id: commit.sha("id")?,
        author: Person {
            name: commit.string("author.name")?,
            email: commit.string("author.email")?,
        },
        committer: None,
        subject,
        at: commit.opt_time("timestamp")?,
    })
}

fn deployment(root: &Node) -> Result<Deployment, ParseError> {
    let short = root.opt_string("short_sha")?;
    let artifact = match root.get("commit_url") {
        Some(url) => {
            let text = url.str()?;
            let sha = text
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default();
            if !(sha.len() == 40 || sha.len() == 64) || !is_hex(sha) {
                return Err(url.error(format!("`{text}` does not end in a full commit id")));
            }
            let sha = sha.to_ascii_lowercase();
            if let Some(short) = &short {
                if !sha.starts_with(&short.to_ascii_lowercase()) {
                    return Err(url.error(format!("names `{sha}`, but `short_sha` is `{short}`")));
                }
            }
            sha
        }
        None => {
            let short = root.non_empty("short_sha")?;
            if short.len() < 7 || !is_hex(&short) {
                return Err(root.error_at("short_sha", format!("`{short}` is not a commit id")));
            }
            short.to_ascii_lowercase()
        }
    };
    Ok(Deployment {
        host: Host::Gitlab,
        id: root.id("deployment_id")?,
        system: project(root)?,
        environment: root.non_empty("environment")?,
        artifact,
        actor: identity(&root.req("user")?)?,
        at: root.time("status_changed_at")?,
        status: Some(root.non_empty("status")?),
        commits: Vec::new(),
        description: None,
    })
}

/// GitLab statuses after which a pipeline or job will not change on its own.
fn conclusion(status: &str) -> Option<String> {
    matches!(status, "success" | "failed" | "canceled" | "skipped").then(|| status.to_string())
}

fn pipeline(root: &Node) -> Result<Check, ParseError> {
    let attrs = root.req("object_attributes")?;
    let status = attrs.non_empty("status")?;
    let at = match attrs.opt_time("finished_at")? {
        Some(at) => at,
        None => attrs.time("created_at")?,
    };
    Ok(Check {
        host: Host::Gitlab,
        repository: project(root)?,
        sha: attrs.sha("sha")?,
        name: "pipeline".to_string(),
        conclusion: conclusion(&status),
        status,
        at,
    })
}

/// A job (`object_kind: build`). Older job hooks have no `project`; the repository is then
/// the path of `repository.homepage`, the project's web address.
fn job(root: &Node) -> Result<Check, ParseError> {
    let repository = match root.get("project.path_with_namespace") {
        Some(_) => project(root)?,
        None => {
            let homepage = root.req("repository.homepage")?;
            let text = homepage.str()?;
            let path = text
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('/'))
                .map(|(_, path)| path.trim_end_matches('/'))
                .filter(|path| path.contains('/'))
                .ok_or_else(|| homepage.error(format!("`{text}` is not a project web address")))?;
            path.to_string()
        }
    };
    let status = root.non_empty("build_status")?;
    let at = match root.opt_time("build_finished_at")? {
        Some(at) => at,
        None => match root.opt_time("build_started_at")? {
            Some(at) => at,
            None => root.time("build_created_at")?,
        },
    };
    Ok(Check {
        host: Host::Gitlab,
        repository,
        sha: root.sha("sha")?,
        name: root.non_empty("build_name")?,
        conclusion: conclusion(&status),
        status,
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bots_are_recognized_by_name() {
        assert!(is_token_bot("project_123_bot"));
        assert!(is_token_bot("project_123_bot1"));
        assert!(is_token_bot("group_9_bot_0f3a"));
        assert!(!is_token_bot("project_bot"));
        assert!(!is_token_bot("projectx_1_bot"));
        assert!(!is_token_bot("anbraten"));
    }

    #[test]
    fn padded_keys_are_trimmed_but_may_not_collide() {
        let value = serde_json::json!({"a ": {" b": 1}, "c": [{"d ": 2}]});
        let trimmed = trim_keys(&value, "").unwrap();
        assert_eq!(trimmed, serde_json::json!({"a": {"b": 1}, "c": [{"d": 2}]}));
        let clash = serde_json::json!({"x": {"iid": 1, "iid ": 2}});
        assert_eq!(
            trim_keys(&clash, ""),
            Err(ParseError::field(
                "x.iid",
                "appears twice, once padded with spaces"
            ))
        );
    }

    #[test]
    fn every_known_kind_has_its_header_and_system_hooks_cover_repository_events() {
        for kind in [
            "merge_request",
            "push",
            "tag_push",
            "deployment",
            "pipeline",
            "build",
            "note",
            "release",
        ] {
            let header = header_for(kind).unwrap();
            assert_eq!(check_header(header, kind), Ok(()));
        }
        assert_eq!(check_header("System Hook", "push"), Ok(()));
        assert!(check_header("System Hook", "deployment").is_err());
        assert_eq!(
            check_header("Issue Hook", "issue"),
            Err(ParseError::Unsupported("issue".into()))
        );
    }
}
