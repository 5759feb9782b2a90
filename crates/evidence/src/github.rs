//! GitHub webhook deliveries, REST exports and audit-log entries, read into evidence.
//!
//! [`parse`] takes a delivery and its `X-GitHub-Event` header; [`parse_export`] takes files
//! that organizations keep (stored deliveries, REST responses, NDJSON of
//! `{"event", "payload"}` records) and works out what each one is with [`infer_event`].
//!
//! Choices worth knowing:
//!
//! - A pull request is `merged` only when GitHub says so (`merged`, or `merged_at` when the
//!   object has no `merged`). Its `merge_commit_sha` is kept only then: for an open pull
//!   request GitHub fills that field with a test merge commit that never reached the base.
//! - A dismissed review is recorded at the pull request's `updated_at`: the webhook carries
//!   no dismissal time, and the review's `submitted_at` is when it was given, not taken away.
//! - `deployment_protection_rule` (GitHub asking a protection app whether a deployment may
//!   proceed) becomes a [`Deployment`] with status `waiting`: an app that serves a custom
//!   protection rule receives only this event, and it is evidence that the deployment was
//!   held at a gate. It is not evidence that anything reached the environment.
//! - `branch_protection_rule` reports which settings got weaker (see [`weakened_settings`]).
//!   A setting changegate does not know is reported as weakened when its value changed: a
//!   false alarm is cheaper than a loosening nobody looked at.
//! - The audit log's `protected_branch.policy_override` often has no branch: GitHub's REST
//!   audit log leaves it out. The branch is then empty, which means unknown.

use serde_json::{Map, Value};

use crate::model::{
    Check, Deployment, DeploymentStatus, Evidence, Host, Identity, ParseError, Person,
    ProtectionChange, ProtectionOverride, PullRequest, PullRequestState, Push, PushedCommit,
    Review, ReviewState,
};
use crate::times;
use fields::{read_json, Node};

/// The mechanism recorded for GitHub's audit-log policy override.
const POLICY_OVERRIDE: &str = "protected_branch.policy_override";

/// Reads one webhook delivery. `event` is the `X-GitHub-Event` header.
///
/// `ping` yields no evidence. The pseudo-event `audit_log` reads a GitHub audit-log entry;
/// an entry whose `action` is `protected_branch.policy_override` is also recognized under any
/// event name this function does not otherwise read (an empty one, say). Any other event is
/// [`ParseError::Unsupported`], whatever the body.
pub fn parse(event: &str, body: &[u8]) -> Result<Vec<Evidence>, ParseError> {
    if !is_supported(event) {
        // Audit-log entries may arrive without a meaningful event name; nothing else may.
        return match read_json(body) {
            Ok(value) if is_audit_entry(&value) => audit_entry(&Node::root(&value)),
            _ => Err(ParseError::Unsupported(event.to_string())),
        };
    }
    let value = read_json(body)?;
    parse_value(event, &value)
}

/// Guesses the event of a stored webhook payload that lost its headers. Returns `None`
/// when the payload has none of the shapes changegate reads.
pub fn infer_event(body: &Value) -> Option<&'static str> {
    let object = body.as_object()?;
    let has = |key: &str| object.get(key).is_some_and(|v| !v.is_null());
    let event = if has("zen") && (has("hook") || has("hook_id")) {
        "ping"
    } else if has("review") && has("pull_request") {
        "pull_request_review"
    } else if has("pull_request") && has("action") && !has("comment") && !has("thread") {
        // Review comments and threads carry a pull request too, but are not its events.
        "pull_request"
    } else if has("deployment_status") {
        "deployment_status"
    } else if has("deployment") && has("deployment_callback_url") {
        "deployment_protection_rule"
    } else if has("deployment") {
        "deployment"
    } else if has("check_run") {
        "check_run"
    } else if has("check_suite") {
        "check_suite"
    } else if has("rule") && has("action") {
        "branch_protection_rule"
    } else if has("ref") && has("before") && has("after") && has("commits") {
        "push"
    } else if has("sha") && has("state") && has("context") {
        "status"
    } else if is_audit_entry(body) {
        "audit_log"
    } else {
        return None;
    };
    Some(event)
}

/// Reads a file of GitHub data as organizations export it:
///
/// - one webhook payload, its event inferred with [`infer_event`];
/// - a REST pull request (`GET /repos/{owner}/{repo}/pulls/{number}`), recorded with
///   action `export`;
/// - a REST review or an array of them (`GET …/pulls/{number}/reviews`), the repository and
///   number taken from each review's `pull_request_url`; pending reviews are skipped, since
///   nobody but their author can see them;
/// - a REST check-run list (`GET …/commits/{ref}/check-runs`);
/// - a JSON array or NDJSON of `{"event": "…", "payload": {…}}` records, or of any of the
///   above. A record whose event changegate does not read (`issues`, `watch`, …) yields
///   nothing; a payload with no event and no shape changegate knows is an error.
///
/// Errors in an array or NDJSON name the element (`[2].review.state`, `line 3: …`).
pub fn parse_export(body: &[u8]) -> Result<Vec<Evidence>, ParseError> {
    match read_json(body) {
        Ok(value) => export_value(&Node::root(&value)),
        Err(whole) => {
            let text = std::str::from_utf8(body).map_err(|_| whole.clone())?;
            let lines: Vec<(usize, &str)> = text
                .lines()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty())
                .collect();
            if lines.len() < 2 {
                return Err(whole);
            }
            let mut values = Vec::with_capacity(lines.len());
            for (index, line) in &lines {
                match serde_json::from_str::<Value>(line) {
                    Ok(value) => values.push((index + 1, value)),
                    // Not NDJSON after all: report the document's own error.
                    Err(_) => return Err(whole),
                }
            }
            let mut out = Vec::new();
            for (line, value) in &values {
                let node = Node::with_path(value, format!("line {line}:"));
                out.extend(export_value(&node)?);
            }
            Ok(out)
        }
    }
}

/// The settings whose protection a `branch_protection_rule` event weakened, sorted by name.
///
/// `changes` is the payload's `changes` object (`{"setting": {"from": old}}`) and `rule` the
/// rule after the change. For `deleted` pass `changes = None`: every setting the rule
/// enforced is then weakened. A setting is weaker when a flag that protects goes off
/// (`dismiss_stale_reviews_on_push`, `admin_enforced`, …), a requirement level goes down
/// (`off` < `non_admins` < `everyone`), an allowance level goes up
/// (`allow_force_pushes_enforcement_level`), the approval count drops, a required status
/// check disappears, someone is added to the push allowlist while it is enforced, or the
/// pattern changes (branches matching the old one lose the rule). Unchanged values, even
/// when listed in `changes`, weaken nothing.
pub fn weakened_settings(
    changes: Option<&Map<String, Value>>,
    rule: &Map<String, Value>,
) -> Vec<String> {
    let mut out: Vec<String> = match changes {
        None => rule
            .iter()
            .filter(|(name, value)| enforced(name, value))
            .map(|(name, _)| name.clone())
            .collect(),
        Some(changes) => changes
            .iter()
            .filter(|(name, change)| {
                let old = change.get("from").unwrap_or(&Value::Null);
                let new = rule.get(name.as_str()).unwrap_or(&Value::Null);
                weakens(name, old, new, changes, rule)
            })
            .map(|(name, _)| name.clone())
            .collect(),
    };
    out.sort();
    out.dedup();
    out
}

fn is_supported(event: &str) -> bool {
    matches!(
        event,
        "ping"
            | "pull_request"
            | "pull_request_review"
            | "push"
            | "deployment"
            | "deployment_status"
            | "deployment_protection_rule"
            | "check_run"
            | "check_suite"
            | "status"
            | "branch_protection_rule"
            | "audit_log"
    )
}

fn is_audit_entry(value: &Value) -> bool {
    value
        .get("action")
        .and_then(Value::as_str)
        .is_some_and(|action| action.starts_with("protected_branch."))
        && value.get("actor").is_some()
}

fn parse_value(event: &str, value: &Value) -> Result<Vec<Evidence>, ParseError> {
    let root = Node::root(value);
    root.object()?;
    let one = |e: Evidence| vec![e];
    match event {
        "ping" => Ok(Vec::new()),
        "pull_request" => {
            let action = root.string("action")?;
            let sender = root.get("sender");
            let pr = root.req("pull_request")?;
            let repository = repository(&root, Some(&pr))?;
            pull_request(&pr, repository, action, sender.as_ref())
                .map(|p| one(Evidence::PullRequest(p)))
        }
        "pull_request_review" => pull_request_review(&root),
        "push" => push(&root).map(|p| one(Evidence::Push(p))),
        "deployment" => deployment(&root).map(|d| one(Evidence::Deployment(d))),
        "deployment_status" => deployment_status(&root).map(|d| one(Evidence::DeploymentStatus(d))),
        "deployment_protection_rule" => {
            deployment_protection_rule(&root).map(|d| one(Evidence::Deployment(d)))
        }
        "check_run" => check_run(&root.req("check_run")?, repository(&root, None)?),
        "check_suite" => check_suite(&root),
        "status" => status(&root).map(|c| one(Evidence::Check(c))),
        "branch_protection_rule" => {
            branch_protection_rule(&root).map(|p| one(Evidence::ProtectionChange(p)))
        }
        "audit_log" => audit_entry(&root),
        other => Err(ParseError::Unsupported(other.to_string())),
    }
}

fn export_value(node: &Node) -> Result<Vec<Evidence>, ParseError> {
    if node.value.is_array() {
        let mut out = Vec::new();
        for item in node.elements()? {
            out.extend(export_value(&item)?);
        }
        return Ok(out);
    }
    let object = node.object()?;
    if let (Some(Value::String(event)), Some(payload)) = (object.get("event"), node.get("payload"))
    {
        // A stored delivery record. Events changegate does not read carry no evidence; a
        // full export holds many of them (stars, issues, …), so they are passed over.
        if !is_supported(event) {
            return Ok(Vec::new());
        }
        // Some stores keep the payload as a JSON string.
        return match payload.value {
            Value::String(text) => {
                let inner: Value = serde_json::from_str(text).map_err(|e| {
                    payload.error(format!("is a string that is not a JSON payload: {e}"))
                })?;
                let inner = Node::with_path(&inner, payload.path.clone());
                parse_value(event, inner.value).map_err(|e| inner.prefix(e))
            }
            _ => parse_value(event, payload.value).map_err(|e| payload.prefix(e)),
        };
    }
    if object.contains_key("pull_request_url")
        && object.contains_key("state")
        && !object.contains_key("action")
    {
        return rest_review(node).map(|r| r.map(Evidence::Review).into_iter().collect());
    }
    if object.contains_key("check_runs") && object.contains_key("total_count") {
        let mut out = Vec::new();
        for run in node.req("check_runs")?.elements()? {
            let repository = repository_from_api_url(&run.req("url")?, "check-runs")?.0;
            out.extend(check_run(&run, repository)?);
        }
        return Ok(out);
    }
    let rest_pull = ["head", "base", "number", "user"]
        .iter()
        .all(|k| object.contains_key(*k))
        && !object.contains_key("action")
        && !object.contains_key("pull_request");
    if rest_pull {
        let repository = node.string("base.repo.full_name")?;
        let pr = pull_request(node, repository, "export".to_string(), None)?;
        return Ok(vec![Evidence::PullRequest(pr)]);
    }
    match infer_event(node.value) {
        Some(event) => parse_value(event, node.value).map_err(|e| node.prefix(e)),
        None => Err(node.error(
            "is neither a GitHub webhook payload changegate reads nor a REST pull request, \
             review or check-run list",
        )),
    }
}

/// `repository.full_name`, or for payloads without one, the pull request's base repository.
fn repository(root: &Node, pr: Option<&Node>) -> Result<String, ParseError> {
    match (root.get("repository"), pr) {
        (None, Some(pr)) => pr.string("base.repo.full_name"),
        _ => root.string("repository.full_name"),
    }
}

pub(crate) fn identity(user: &Node) -> Result<Identity, ParseError> {
    let login = user.non_empty("login")?;
    let bot = user.opt_string("type")?.as_deref() == Some("Bot") || login.ends_with("[bot]");
    Ok(Identity { login, bot })
}

fn sender(root: &Node) -> Result<Identity, ParseError> {
    identity(&root.req("sender")?)
}

fn pull_request(
    pr: &Node,
    repository: String,
    action: String,
    sender: Option<&Node>,
) -> Result<PullRequest, ParseError> {
    let merged = match pr.opt_bool("merged")? {
        Some(merged) => merged,
        None => pr.get("merged_at").is_some(),
    };
    let state = if merged {
        PullRequestState::Merged
    } else {
        match pr.string("state")?.as_str() {
            "open" => PullRequestState::Open,
            "closed" => PullRequestState::Closed,
            other => {
                return Err(pr
                    .req("state")?
                    .error(format!("`{other}` is neither `open` nor `closed`")))
            }
        }
    };
    let merged_by = match (merged, pr.get("merged_by"), sender) {
        (false, _, _) => None,
        (true, Some(user), _) => Some(identity(&user)?),
        // The sender of a `closed` event that merged is the one who merged.
        (true, None, Some(sender)) if action == "closed" => Some(identity(sender)?),
        (true, None, _) => None,
    };
    let labels = pr
        .opt_elements("labels")?
        .iter()
        .map(|label| label.string("name"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PullRequest {
        host: Host::Github,
        repository,
        number: pr.u64("number")?,
        action,
        title: pr.string("title")?,
        author: identity(&pr.req("user")?)?,
        head_ref: pr.string("head.ref")?,
        head_sha: pr.sha("head.sha")?,
        base_ref: pr.string("base.ref")?,
        state,
        created_at: pr.time("created_at")?,
        updated_at: pr.opt_time("updated_at")?,
        merged_at: if merged {
            pr.opt_time("merged_at")?
        } else {
            None
        },
        merged_by,
        merge_commit_sha: if merged {
            pr.opt_sha("merge_commit_sha")?
        } else {
            None
        },
        squash_commit_sha: None,
        commits: pr.opt_u64("commits")?,
        labels,
        url: pr.opt_string("html_url")?,
    })
}

fn review_state(state: &Node) -> Result<Option<ReviewState>, ParseError> {
    let text = state.str()?;
    let mapped = match text.to_ascii_lowercase().as_str() {
        "approved" => ReviewState::Approved,
        "changes_requested" => ReviewState::ChangesRequested,
        "commented" => ReviewState::Commented,
        "dismissed" => ReviewState::Dismissed,
        "pending" => return Ok(None),
        _ => {
            return Err(state.error(format!(
                "`{text}` is not a review state GitHub documents (approved, changes_requested, \
                 commented, dismissed, pending)"
            )))
        }
    };
    Ok(Some(mapped))
}

fn pull_request_review(root: &Node) -> Result<Vec<Evidence>, ParseError> {
    let action = root.string("action")?;
    let review = root.req("review")?;
    let pr = root.req("pull_request")?;
    let Some(mut state) = review_state(&review.req("state")?)? else {
        return Ok(Vec::new());
    };
    if action == "dismissed" {
        state = ReviewState::Dismissed;
    }
    let dismissed = state == ReviewState::Dismissed;
    Ok(vec![Evidence::Review(Review {
        host: Host::Github,
        repository: repository(root, Some(&pr))?,
        number: pr.u64("number")?,
        reviewer: identity(&review.req("user")?)?,
        state,
        commit: review.opt_sha("commit_id")?,
        at: if dismissed {
            pr.time("updated_at")?
        } else {
            review.time("submitted_at")?
        },
        dismissed_by: if dismissed { Some(sender(root)?) } else { None },
    })])
}

fn rest_review(review: &Node) -> Result<Option<Review>, ParseError> {
    let Some(state) = review_state(&review.req("state")?)? else {
        return Ok(None);
    };
    let (repository, number) = repository_from_api_url(&review.req("pull_request_url")?, "pulls")?;
    let number = number.ok_or_else(|| {
        review.error_at("pull_request_url", "does not end in a pull request number")
    })?;
    Ok(Some(Review {
        host: Host::Github,
        repository,
        number,
        reviewer: identity(&review.req("user")?)?,
        state,
        commit: review.opt_sha("commit_id")?,
        at: review.time("submitted_at")?,
        dismissed_by: None,
    }))
}

/// Splits `https://api.github.com/repos/{owner}/{repo}/{kind}/{n}` (also GitHub Enterprise's
/// `/api/v3/repos/…`) into `owner/repo` and the number after `kind`.
fn repository_from_api_url(url: &Node, kind: &str) -> Result<(String, Option<u64>), ParseError> {
    let text = url.str()?;
    let path = text.split_once("/repos/").map(|(_, path)| path);
    let parts: Vec<&str> = path.map(|p| p.split('/').collect()).unwrap_or_default();
    match parts.as_slice() {
        [owner, repo, k, rest @ ..] if !owner.is_empty() && !repo.is_empty() && *k == kind => {
            let number = rest.first().and_then(|n| n.parse().ok());
            Ok((format!("{owner}/{repo}"), number))
        }
        _ => Err(url.error(format!(
            "`{text}` is not a GitHub API URL of the form `…/repos/{{owner}}/{{repo}}/{kind}/…`"
        ))),
    }
}

fn push(root: &Node) -> Result<Push, ParseError> {
    let commits = root
        .opt_elements("commits")?
        .iter()
        .map(pushed_commit)
        .collect::<Result<Vec<_>, _>>()?;
    let at = match root.get("repository.pushed_at") {
        Some(node) if node.value.is_number() => {
            let seconds = node
                .value
                .as_i64()
                .ok_or_else(|| node.error("is not a whole number of seconds"))?;
            Some(times::from_unix_seconds(seconds).map_err(|m| node.error(m))?)
        }
        Some(_) => root.opt_time("repository.pushed_at")?,
        None => root.opt_time("head_commit.timestamp")?,
    };
    Ok(Push {
        host: Host::Github,
        repository: repository(root, None)?,
        git_ref: root.non_empty("ref")?,
        before: root.sha("before")?,
        after: root.sha("after")?,
        forced: root.bool("forced")?,
        created: root.bool("created")?,
        deleted: root.bool("deleted")?,
        pusher: pusher(root)?,
        commits,
        at,
    })
}

/// `pusher.name` is the login of whoever pushed; the sender, when it is the same account,
/// says whether that is a bot.
fn pusher(root: &Node) -> Result<Identity, ParseError> {
    let sender = root.get("sender").map(|s| identity(&s)).transpose()?;
    match (root.opt_string("pusher.name")?, sender) {
        (Some(name), Some(sender)) if sender.login == name => Ok(sender),
        (Some(name), _) if !name.is_empty() => {
            let bot = name.ends_with("[bot]");
            Ok(Identity { login: name, bot })
        }
        (_, Some(sender)) => Ok(sender),
        (_, None) => Err(root.error_at("pusher.name", "is missing, and so is `sender`")),
    }
}

fn pushed_commit(commit: &Node) -> Result<PushedCommit, ParseError> {
    let person = |node: Node| -> Result<Person, ParseError> {
        Ok(Person {
            name: node.string("name")?,
            email: node.string("email")?,
        })
    };
    let message = commit.string("message")?;
    Ok(PushedCommit {
        id: commit.sha("id")?,
        author: person(commit.req("author")?)?,
        committer: commit.get("committer").map(person).transpose()?,
        subject: message.lines().next().unwrap_or_default().to_string(),
        at: commit.opt_time("timestamp")?,
    })
}

fn creator_or_sender(root: &Node, parent: &Node) -> Result<Identity, ParseError> {
    match parent.get("creator") {
        Some(creator) => identity(&creator),
        None => sender(root),
    }
}

fn deployment(root: &Node) -> Result<Deployment, ParseError> {
    let d = root.req("deployment")?;
    Ok(Deployment {
        host: Host::Github,
        id: d.id("id")?,
        system: repository(root, None)?,
        environment: d.non_empty("environment")?,
        artifact: d.sha("sha")?,
        actor: creator_or_sender(root, &d)?,
        at: d.time("created_at")?,
        status: None,
        commits: Vec::new(),
        description: d.opt_string("description")?.filter(|s| !s.is_empty()),
    })
}

fn deployment_status(root: &Node) -> Result<DeploymentStatus, ParseError> {
    let d = root.req("deployment")?;
    let s = root.req("deployment_status")?;
    let environment = match s.opt_string("environment")? {
        Some(environment) if !environment.is_empty() => environment,
        _ => d.non_empty("environment")?,
    };
    Ok(DeploymentStatus {
        host: Host::Github,
        repository: repository(root, None)?,
        deployment_id: d.id("id")?,
        environment,
        state: s.non_empty("state")?,
        artifact: d.sha("sha")?,
        actor: creator_or_sender(root, &s)?,
        at: s.time("created_at")?,
    })
}

fn deployment_protection_rule(root: &Node) -> Result<Deployment, ParseError> {
    let d = root.req("deployment")?;
    let environment = match root.opt_string("environment")? {
        Some(environment) if !environment.is_empty() => environment,
        _ => d.non_empty("environment")?,
    };
    let at = match d.opt_time("updated_at")? {
        Some(at) => at,
        None => d.time("created_at")?,
    };
    Ok(Deployment {
        host: Host::Github,
        id: d.id("id")?,
        system: repository(root, None)?,
        environment,
        artifact: d.sha("sha")?,
        actor: creator_or_sender(root, &d)?,
        at,
        status: Some("waiting".to_string()),
        commits: Vec::new(),
        description: d.opt_string("description")?.filter(|s| !s.is_empty()),
    })
}

fn check_run(run: &Node, repository: String) -> Result<Vec<Evidence>, ParseError> {
    if run.get("head_sha").is_none() {
        return Ok(Vec::new());
    }
    let at = match run.opt_time("completed_at")? {
        Some(at) => at,
        None => match run.opt_time("started_at")? {
            Some(at) => at,
            None => run.time("check_suite.updated_at")?,
        },
    };
    Ok(vec![Evidence::Check(Check {
        host: Host::Github,
        repository,
        sha: run.sha("head_sha")?,
        name: run.non_empty("name")?,
        status: run.non_empty("status")?,
        conclusion: run.opt_string("conclusion")?,
        at,
    })])
}

fn check_suite(root: &Node) -> Result<Vec<Evidence>, ParseError> {
    let suite = root.req("check_suite")?;
    if suite.get("head_sha").is_none() {
        return Ok(Vec::new());
    }
    let name = match suite.opt_string("app.name")? {
        Some(name) if !name.is_empty() => name,
        _ => "check_suite".to_string(),
    };
    Ok(vec![Evidence::Check(Check {
        host: Host::Github,
        repository: repository(root, None)?,
        sha: suite.sha("head_sha")?,
        name,
        status: suite.non_empty("status")?,
        conclusion: suite.opt_string("conclusion")?,
        at: suite.time("updated_at")?,
    })])
}

/// A commit status: `pending` stays the status; `success`, `failure` and `error` are
/// completed with that conclusion.
fn status(root: &Node) -> Result<Check, ParseError> {
    let state = root.non_empty("state")?;
    let (status, conclusion) = match state.as_str() {
        "pending" => (state, None),
        _ => ("completed".to_string(), Some(state)),
    };
    let at = match root.opt_time("updated_at")? {
        Some(at) => at,
        None => root.time("created_at")?,
    };
    Ok(Check {
        host: Host::Github,
        repository: repository(root, None)?,
        sha: root.sha("sha")?,
        name: root.non_empty("context")?,
        status,
        conclusion,
        at,
    })
}

/// Rule fields that are not protection settings.
const RULE_METADATA: [&str; 5] = ["id", "repository_id", "name", "created_at", "updated_at"];

/// `at` is the rule's `updated_at`. For `deleted` the payload carries no deletion time, so
/// this is the rule's last edit; the delivery's receipt time is the better witness then.
/// For `deleted`, `settings` is empty (nothing is in force after the change) and `weakened`
/// names what was in force before.
fn branch_protection_rule(root: &Node) -> Result<ProtectionChange, ParseError> {
    let action = root.non_empty("action")?;
    let rule_node = root.req("rule")?;
    let rule = rule_node.object()?;
    let changes = match action.as_str() {
        "created" => None,
        "deleted" => None,
        "edited" => Some(root.req("changes")?.object()?),
        other => {
            return Err(root.error_at(
                "action",
                format!("`{other}` is not a branch protection action (created, edited, deleted)"),
            ))
        }
    };
    let weakened = match action.as_str() {
        "created" => Vec::new(),
        _ => weakened_settings(changes, rule),
    };
    let settings: Map<String, Value> = if action == "deleted" {
        Map::new()
    } else {
        rule.iter()
            .filter(|(k, _)| !RULE_METADATA.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    Ok(ProtectionChange {
        host: Host::Github,
        repository: repository(root, None)?,
        action,
        pattern: rule_node.non_empty("name")?,
        actor: sender(root)?,
        at: rule_node.time("updated_at")?,
        settings: Value::Object(settings),
        weakened,
    })
}

/// How a rule setting protects.
enum Setting {
    /// `true` protects.
    Flag,
    /// `true` loosens (`lock_allows_fork_sync`).
    LooseningFlag,
    /// `off` < `non_admins` < `everyone`; higher protects.
    Requirement,
    /// The same levels, but they say who is allowed something: higher loosens.
    Allowance,
    /// More protects (`required_approving_review_count`).
    Count,
    /// Each entry protects (`required_status_checks`).
    RequiredList,
    /// Each entry is an exception (`authorized_actor_names`, when pushes are restricted).
    Allowlist,
    /// The branch pattern: changing it unprotects what the old one matched.
    Pattern,
    Metadata,
    Unknown,
}

fn setting(name: &str) -> Setting {
    match name {
        "admin_enforced"
        | "enforce_admins"
        | "authorized_actors_only"
        | "authorized_dismissal_actors_only"
        | "create_protected"
        | "dismiss_stale_reviews_on_push"
        | "ignore_approvals_from_contributors"
        | "require_code_owner_review"
        | "require_last_push_approval"
        | "strict_required_status_checks_policy" => Setting::Flag,
        "lock_allows_fork_sync" => Setting::LooseningFlag,
        "linear_history_requirement_enforcement_level"
        | "lock_branch_enforcement_level"
        | "merge_queue_enforcement_level"
        | "pull_request_reviews_enforcement_level"
        | "required_conversation_resolution_level"
        | "required_deployments_enforcement_level"
        | "required_status_checks_enforcement_level"
        | "signature_requirement_enforcement_level" => Setting::Requirement,
        "allow_deletions_enforcement_level" | "allow_force_pushes_enforcement_level" => {
            Setting::Allowance
        }
        "required_approving_review_count" => Setting::Count,
        "required_status_checks" => Setting::RequiredList,
        "authorized_actor_names" => Setting::Allowlist,
        "name" => Setting::Pattern,
        "id" | "repository_id" | "created_at" | "updated_at" => Setting::Metadata,
        _ => Setting::Unknown,
    }
}

/// A flag's value, `null` counting as off. `None` when it is not a flag at all.
fn flag(value: &Value) -> Option<bool> {
    match value {
        Value::Null => Some(false),
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

fn level(value: &Value) -> Option<u8> {
    match value {
        Value::Null => Some(0),
        Value::String(s) => match s.as_str() {
            "off" => Some(0),
            "non_admins" => Some(1),
            "everyone" => Some(2),
            _ => None,
        },
        _ => None,
    }
}

fn names(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// Whether going from `old` to `new` weakens setting `name`. Values changegate cannot rank
/// count as weakening.
fn weakens(
    name: &str,
    old: &Value,
    new: &Value,
    changes: &Map<String, Value>,
    rule: &Map<String, Value>,
) -> bool {
    if old == new {
        return false;
    }
    let lower = |o: Option<u64>, n: Option<u64>| match (o, n) {
        (Some(o), Some(n)) => n < o,
        _ => true,
    };
    match setting(name) {
        Setting::Flag => match (flag(old), flag(new)) {
            (Some(o), Some(n)) => o && !n,
            _ => true,
        },
        Setting::LooseningFlag => match (flag(old), flag(new)) {
            (Some(o), Some(n)) => !o && n,
            _ => true,
        },
        Setting::Requirement => match (level(old), level(new)) {
            (Some(o), Some(n)) => n < o,
            _ => true,
        },
        Setting::Allowance => match (level(old), level(new)) {
            (Some(o), Some(n)) => n > o,
            _ => true,
        },
        Setting::Count => {
            let count = |v: &Value| if v.is_null() { Some(0) } else { v.as_u64() };
            lower(count(old), count(new))
        }
        Setting::RequiredList => match (names(old), names(new)) {
            (Some(o), Some(n)) => o.iter().any(|check| !n.contains(check)),
            _ => true,
        },
        Setting::Allowlist => {
            let restricted_before = match changes.get("authorized_actors_only") {
                Some(change) => change.get("from").and_then(flag),
                None => rule.get("authorized_actors_only").and_then(flag),
            };
            let restricted_now = rule.get("authorized_actors_only").and_then(flag);
            match (names(old), names(new), restricted_before, restricted_now) {
                (Some(o), Some(n), Some(before), Some(now)) => {
                    before && now && n.iter().any(|actor| !o.contains(actor))
                }
                _ => true,
            }
        }
        Setting::Pattern => true,
        Setting::Metadata => false,
        Setting::Unknown => true,
    }
}

/// Whether a setting was in force, for a deleted rule.
fn enforced(name: &str, value: &Value) -> bool {
    match setting(name) {
        Setting::Flag => flag(value) != Some(false),
        Setting::LooseningFlag => flag(value) != Some(true),
        Setting::Requirement => level(value) != Some(0),
        Setting::Allowance => level(value) != Some(2),
        Setting::Count => value.as_u64() != Some(0) && !value.is_null(),
        Setting::RequiredList => names(value).is_none_or(|n| !n.is_empty()),
        // The allowlist only matters through `authorized_actors_only`, named on its own.
        Setting::Allowlist | Setting::Pattern | Setting::Metadata => false,
        Setting::Unknown => {
            !matches!(value, Value::Null | Value::Bool(false))
                && value.as_str() != Some("off")
                && value.as_u64() != Some(0)
                && value.as_array().is_none_or(|a| !a.is_empty())
        }
    }
}

/// A GitHub audit-log entry; only `protected_branch.policy_override` is read.
/// `@timestamp` (or `created_at`) is unix milliseconds, or a time string in some exports.
fn audit_entry(root: &Node) -> Result<Vec<Evidence>, ParseError> {
    root.object()?;
    let action = root.non_empty("action")?;
    if action != POLICY_OVERRIDE {
        return Err(ParseError::Unsupported(format!("audit_log {action}")));
    }
    let login = root.non_empty("actor")?;
    let bot = root.opt_bool("actor_is_bot")?.unwrap_or(false) || login.ends_with("[bot]");
    let stamp = match root.get("@timestamp") {
        Some(node) => node,
        None => root.req("created_at")?,
    };
    let at = match stamp.value {
        Value::Number(n) => {
            let millis = n
                .as_i64()
                .ok_or_else(|| stamp.error("is not whole milliseconds"))?;
            times::from_unix_millis(millis).map_err(|m| stamp.error(m))?
        }
        _ => times::normalize(stamp.str()?).map_err(|m| stamp.error(m))?,
    };
    let branch = root.opt_string("branch")?.unwrap_or_default();
    let branch = branch
        .strip_prefix("refs/heads/")
        .unwrap_or(&branch)
        .to_string();
    Ok(vec![Evidence::ProtectionOverride(ProtectionOverride {
        host: Host::Github,
        repository: root.non_empty("repo")?,
        branch,
        actor: Identity { login, bot },
        at,
        mechanism: "policy_override".to_string(),
        commit: None,
    })])
}

/// Reading JSON with paths, shared by the GitHub and GitLab parsers.
pub(crate) mod fields {
    use serde_json::{Map, Value};

    use crate::model::ParseError;
    use crate::times;

    /// Parses a body as JSON. Truncated or malformed input is [`ParseError::Json`].
    pub(crate) fn read_json(body: &[u8]) -> Result<Value, ParseError> {
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))
    }

    /// A JSON value and the path that reached it, so that errors name the field
    /// (`pull_request.head.sha`, `commits[2].id`).
    #[derive(Debug, Clone)]
    pub(crate) struct Node<'a> {
        pub(crate) value: &'a Value,
        pub(crate) path: String,
    }

    fn kind(value: &Value) -> &'static str {
        match value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    pub(crate) fn is_hex(text: &str) -> bool {
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit())
    }

    impl<'a> Node<'a> {
        pub(crate) fn root(value: &'a Value) -> Self {
            Node {
                value,
                path: String::new(),
            }
        }

        pub(crate) fn with_path(value: &'a Value, path: impl Into<String>) -> Self {
            Node {
                value,
                path: path.into(),
            }
        }

        fn join(&self, key: &str) -> String {
            match (self.path.as_str(), key.starts_with('[')) {
                ("", _) => key.to_string(),
                (base, true) => format!("{base}{key}"),
                (base, false) if base.ends_with(':') => format!("{base} {key}"),
                (base, false) => format!("{base}.{key}"),
            }
        }

        /// An error about this node.
        pub(crate) fn error(&self, message: impl Into<String>) -> ParseError {
            let field = if self.path.is_empty() {
                "body"
            } else {
                self.path.as_str()
            };
            ParseError::field(field, message)
        }

        /// An error about the field at `path` below this node.
        pub(crate) fn error_at(&self, path: &str, message: impl Into<String>) -> ParseError {
            ParseError::field(self.join(path), message)
        }

        /// Puts this node's path in front of the field an error names, for errors from
        /// parsers that started from this node as their root.
        pub(crate) fn prefix(&self, error: ParseError) -> ParseError {
            match error {
                ParseError::Field { field, message } if !self.path.is_empty() => {
                    let field = if field == "body" {
                        self.path.clone()
                    } else {
                        self.join(&field)
                    };
                    ParseError::Field { field, message }
                }
                other => other,
            }
        }

        pub(crate) fn object(&self) -> Result<&'a Map<String, Value>, ParseError> {
            self.value.as_object().ok_or_else(|| {
                self.error(format!("must be a JSON object, found {}", kind(self.value)))
            })
        }

        /// The value at a dotted path below this node; `None` when absent or `null`.
        pub(crate) fn get(&self, path: &str) -> Option<Node<'a>> {
            let mut value = self.value;
            for key in path.split('.') {
                value = value.as_object()?.get(key)?;
            }
            (!value.is_null()).then(|| Node {
                value,
                path: self.join(path),
            })
        }

        /// The value at a dotted path; missing or `null` is an error naming the path.
        pub(crate) fn req(&self, path: &str) -> Result<Node<'a>, ParseError> {
            self.get(path)
                .ok_or_else(|| self.error_at(path, "is missing"))
        }

        pub(crate) fn str(&self) -> Result<&'a str, ParseError> {
            self.value
                .as_str()
                .ok_or_else(|| self.error(format!("must be a string, found {}", kind(self.value))))
        }

        pub(crate) fn string(&self, path: &str) -> Result<String, ParseError> {
            self.req(path)?.str().map(str::to_string)
        }

        /// A string that must not be empty.
        pub(crate) fn non_empty(&self, path: &str) -> Result<String, ParseError> {
            let node = self.req(path)?;
            match node.str()? {
                "" => Err(node.error("is empty")),
                text => Ok(text.to_string()),
            }
        }

        pub(crate) fn opt_string(&self, path: &str) -> Result<Option<String>, ParseError> {
            self.get(path)
                .map(|n| n.str().map(str::to_string))
                .transpose()
        }

        pub(crate) fn u64(&self, path: &str) -> Result<u64, ParseError> {
            let node = self.req(path)?;
            node.value.as_u64().ok_or_else(|| {
                node.error(format!(
                    "must be a non-negative whole number, found {}",
                    kind(node.value)
                ))
            })
        }

        pub(crate) fn opt_u64(&self, path: &str) -> Result<Option<u64>, ParseError> {
            match self.get(path) {
                Some(_) => self.u64(path).map(Some),
                None => Ok(None),
            }
        }

        pub(crate) fn bool(&self, path: &str) -> Result<bool, ParseError> {
            let node = self.req(path)?;
            node.value.as_bool().ok_or_else(|| {
                node.error(format!("must be true or false, found {}", kind(node.value)))
            })
        }

        pub(crate) fn opt_bool(&self, path: &str) -> Result<Option<bool>, ParseError> {
            match self.get(path) {
                Some(_) => self.bool(path).map(Some),
                None => Ok(None),
            }
        }

        /// An id that platforms send as a number or a string.
        pub(crate) fn id(&self, path: &str) -> Result<String, ParseError> {
            let node = self.req(path)?;
            match node.value {
                Value::Number(n) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => Err(node.error(format!(
                    "must be a number or a string, found {}",
                    kind(other)
                ))),
            }
        }

        /// A time, normalized to RFC 3339 UTC.
        pub(crate) fn time(&self, path: &str) -> Result<String, ParseError> {
            let node = self.req(path)?;
            times::normalize(node.str()?).map_err(|m| node.error(m))
        }

        pub(crate) fn opt_time(&self, path: &str) -> Result<Option<String>, ParseError> {
            match self.get(path) {
                Some(_) => self.time(path).map(Some),
                None => Ok(None),
            }
        }

        /// A full commit id: 40 (SHA-1) or 64 (SHA-256) hex digits, returned in lower case.
        pub(crate) fn sha(&self, path: &str) -> Result<String, ParseError> {
            let node = self.req(path)?;
            let text = node.str()?;
            if (text.len() == 40 || text.len() == 64) && is_hex(text) {
                Ok(text.to_ascii_lowercase())
            } else {
                Err(node.error(format!(
                    "`{text}` is not a full commit id (40 or 64 hex digits)"
                )))
            }
        }

        pub(crate) fn opt_sha(&self, path: &str) -> Result<Option<String>, ParseError> {
            match self.get(path) {
                Some(_) => self.sha(path).map(Some),
                None => Ok(None),
            }
        }

        /// The elements of this array, each with its index in the path.
        pub(crate) fn elements(&self) -> Result<Vec<Node<'a>>, ParseError> {
            let items = self.value.as_array().ok_or_else(|| {
                self.error(format!("must be an array, found {}", kind(self.value)))
            })?;
            Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Node {
                    value,
                    path: self.join(&format!("[{i}]")),
                })
                .collect())
        }

        /// The elements of the array at `path`; absent or `null` is empty.
        pub(crate) fn opt_elements(&self, path: &str) -> Result<Vec<Node<'a>>, ParseError> {
            match self.get(path) {
                Some(node) => node.elements(),
                None => Ok(Vec::new()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rule(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn unchanged_values_listed_in_changes_weaken_nothing() {
        let changes = rule(json!({
            "admin_enforced": {"from": false},
            "required_approving_review_count": {"from": 1}
        }));
        let now = rule(json!({"admin_enforced": false, "required_approving_review_count": 1}));
        assert!(weakened_settings(Some(&changes), &now).is_empty());
    }

    #[test]
    fn each_kind_of_loosening_is_named() {
        let changes = rule(json!({
            "admin_enforced": {"from": true},
            "allow_force_pushes_enforcement_level": {"from": "off"},
            "pull_request_reviews_enforcement_level": {"from": "everyone"},
            "required_status_checks": {"from": ["ci", "lint"]},
            "required_approving_review_count": {"from": 2},
            "lock_allows_fork_sync": {"from": false},
            "name": {"from": "main"},
            "some_future_setting": {"from": "strict"}
        }));
        let now = rule(json!({
            "name": "release/*",
            "admin_enforced": false,
            "allow_force_pushes_enforcement_level": "non_admins",
            "pull_request_reviews_enforcement_level": "non_admins",
            "required_status_checks": ["ci"],
            "required_approving_review_count": 1,
            "lock_allows_fork_sync": true,
            "some_future_setting": "relaxed"
        }));
        assert_eq!(
            weakened_settings(Some(&changes), &now),
            vec![
                "admin_enforced",
                "allow_force_pushes_enforcement_level",
                "lock_allows_fork_sync",
                "name",
                "pull_request_reviews_enforcement_level",
                "required_approving_review_count",
                "required_status_checks",
                "some_future_setting",
            ]
        );
    }

    #[test]
    fn tightening_is_not_weakening() {
        let changes = rule(json!({
            "admin_enforced": {"from": false},
            "allow_deletions_enforcement_level": {"from": "everyone"},
            "signature_requirement_enforcement_level": {"from": "off"},
            "required_status_checks": {"from": ["ci"]},
            "required_approving_review_count": {"from": null},
            "authorized_actor_names": {"from": []},
            "authorized_actors_only": {"from": false}
        }));
        let now = rule(json!({
            "admin_enforced": true,
            "allow_deletions_enforcement_level": "off",
            "signature_requirement_enforcement_level": "everyone",
            "required_status_checks": ["ci", "lint"],
            "required_approving_review_count": 2,
            "authorized_actor_names": ["release-bot"],
            "authorized_actors_only": true
        }));
        assert!(weakened_settings(Some(&changes), &now).is_empty());
    }

    #[test]
    fn adding_to_an_enforced_push_allowlist_weakens_it() {
        let changes = rule(json!({"authorized_actor_names": {"from": ["release-bot"]}}));
        let now = rule(json!({
            "authorized_actors_only": true,
            "authorized_actor_names": ["release-bot", "mallory"]
        }));
        assert_eq!(
            weakened_settings(Some(&changes), &now),
            vec!["authorized_actor_names"]
        );
    }

    #[test]
    fn a_deleted_rule_weakens_what_it_enforced() {
        let deleted = rule(json!({
            "id": 1, "name": "main", "created_at": "2021-01-01T00:00:00Z",
            "admin_enforced": true,
            "dismiss_stale_reviews_on_push": false,
            "allow_force_pushes_enforcement_level": "off",
            "allow_deletions_enforcement_level": "everyone",
            "required_status_checks_enforcement_level": "off",
            "signature_requirement_enforcement_level": "non_admins",
            "required_approving_review_count": 1,
            "required_status_checks": [],
            "authorized_actor_names": ["x"]
        }));
        assert_eq!(
            weakened_settings(None, &deleted),
            vec![
                "admin_enforced",
                "allow_force_pushes_enforcement_level",
                "required_approving_review_count",
                "signature_requirement_enforcement_level",
            ]
        );
    }

    #[test]
    fn infer_event_tells_payloads_apart_by_their_keys() {
        let cases = [
            (json!({"zen": "x", "hook_id": 1}), Some("ping")),
            (
                json!({"action": "submitted", "review": {}, "pull_request": {}}),
                Some("pull_request_review"),
            ),
            (
                json!({"action": "opened", "pull_request": {}}),
                Some("pull_request"),
            ),
            (
                json!({"action": "created", "pull_request": {}, "comment": {}}),
                None,
            ),
            (
                json!({"deployment": {}, "deployment_status": {}}),
                Some("deployment_status"),
            ),
            (
                json!({"deployment": {}, "deployment_callback_url": "u"}),
                Some("deployment_protection_rule"),
            ),
            (json!({"deployment": {}}), Some("deployment")),
            (json!({"check_run": {}}), Some("check_run")),
            (json!({"check_suite": {}}), Some("check_suite")),
            (
                json!({"action": "edited", "rule": {}}),
                Some("branch_protection_rule"),
            ),
            (
                json!({"ref": "r", "before": "b", "after": "a", "commits": []}),
                Some("push"),
            ),
            (
                json!({"sha": "s", "state": "success", "context": "ci"}),
                Some("status"),
            ),
            (
                json!({"action": "protected_branch.policy_override", "actor": "a"}),
                Some("audit_log"),
            ),
            (json!({"action": "published", "release": {}}), None),
            (json!([1, 2]), None),
        ];
        for (body, expected) in cases {
            assert_eq!(infer_event(&body), expected, "{body}");
        }
    }

    #[test]
    fn paths_name_nested_fields_and_elements() {
        let value = json!({"a": {"b": [{"c": 1}]}});
        let root = Node::root(&value);
        let element = &root.req("a.b").unwrap().elements().unwrap()[0];
        assert_eq!(
            element.string("c"),
            Err(ParseError::field(
                "a.b[0].c",
                "must be a string, found a number"
            ))
        );
        assert_eq!(
            root.req("a.x").err(),
            Some(ParseError::field("a.x", "is missing"))
        );
    }
}
