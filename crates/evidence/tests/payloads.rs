//! The parsers on real GitHub and GitLab payloads (see `tests/fixtures/README.md`), with the
//! exact values those payloads carry, and on broken input.

use std::path::{Path, PathBuf};

use evidence::pipeline::{self, GateRequest};
use evidence::signature::{self, SignatureError};
use evidence::{
    github, gitlab, Evidence, Host, Identity, ParseError, PullRequestState, ReviewState,
};
use serde_json::{json, Value};

macro_rules! only {
    ($evidence:expr, $variant:ident) => {{
        let evidence: Vec<Evidence> = $evidence;
        assert_eq!(
            evidence.len(),
            1,
            "expected one piece of evidence: {evidence:?}"
        );
        match evidence.into_iter().next() {
            Some(Evidence::$variant(inner)) => inner,
            other => panic!("expected {}, got {other:?}", stringify!($variant)),
        }
    }};
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture(path: &str) -> Vec<u8> {
    let full = fixtures().join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

fn fixture_json(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).expect("fixture is JSON")
}

/// The `x-github-event` value of a captured header file (`name<TAB>value` lines).
fn captured_event(path: &str) -> String {
    let text = String::from_utf8(fixture(path)).expect("header file is text");
    text.lines()
        .find_map(|line| {
            let (name, value) = line.split_once('\t')?;
            (name.trim() == "x-github-event").then(|| value.trim().to_string())
        })
        .expect("header file names the event")
}

fn gh(event: &str, path: &str) -> Vec<Evidence> {
    github::parse(event, &fixture(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn gl(header: Option<&str>, path: &str) -> Vec<Evidence> {
    gitlab::parse(header, &fixture(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn user(login: &str) -> Identity {
    Identity {
        login: login.to_string(),
        bot: false,
    }
}

/// Every JSON fixture, as `<source>/<file>`.
fn all_fixture_files() -> Vec<String> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(fixtures()).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "json") {
                let relative = file.strip_prefix(fixtures()).unwrap();
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------
// GitHub

const PR3_MERGE: &str = "a21683865c088b5fe1906cf6552d15a285a4986d";
const PR35_HEAD: &str = "9272f18514cbd3fa935b3ced62ae1c2bf6efa76d";
const ZERO: &str = "0000000000000000000000000000000000000000";

#[test]
fn reallyfastci_pr_3_was_merged_by_ailisp_and_its_merge_commit_is_the_pushed_head() {
    let event = captured_event("reallyfastci-capture/webhook-pr-close-header.txt");
    assert_eq!(event, "pull_request");
    let pr = only!(
        gh(&event, "reallyfastci-capture/webhook-pr-close.json"),
        PullRequest
    );
    assert_eq!(pr.host, Host::Github);
    assert_eq!(pr.repository, "ailisp/gcbapp-buildconfig-example");
    assert_eq!(pr.number, 3);
    assert_eq!(pr.action, "closed");
    assert_eq!(pr.title, "Byao1276 patch 1");
    assert_eq!(pr.author, user("byao1276"));
    assert_eq!(pr.state, PullRequestState::Merged);
    assert_eq!(pr.merged_by, Some(user("ailisp")));
    assert_eq!(pr.merge_commit_sha.as_deref(), Some(PR3_MERGE));
    assert_eq!(pr.merged_at.as_deref(), Some("2019-11-26T07:01:13Z"));
    assert_eq!(pr.created_at, "2019-11-13T01:28:51Z");
    assert_eq!(pr.head_ref, "byao1276-patch-1");
    assert_eq!(pr.head_sha, "7b5a809ab03679215c55926f7d111156ec98b865");
    assert_eq!(pr.base_ref, "master");
    assert_eq!(pr.commits, Some(4));
    assert_eq!(
        pr.url.as_deref(),
        Some("https://github.com/ailisp/gcbapp-buildconfig-example/pull/3")
    );

    let event = captured_event("reallyfastci-capture/webhook-push-to-master-header.txt");
    let push = only!(
        gh(&event, "reallyfastci-capture/webhook-push-to-master.json"),
        Push
    );
    assert_eq!(push.git_ref, "refs/heads/master");
    assert_eq!(push.after, PR3_MERGE);
    assert_eq!(push.after, pr.merge_commit_sha.unwrap());
    assert_eq!(push.before, "8357af6fef17bd180014e419f049944cb491238f");
    assert!(!push.forced && !push.created && !push.deleted);
    assert_eq!(push.pusher, user("ailisp"));
    // `repository.pushed_at` is unix seconds in push payloads.
    assert_eq!(push.at.as_deref(), Some("2019-11-26T07:01:13Z"));
    assert_eq!(push.commits.len(), 5);
    let first = &push.commits[0];
    assert_eq!(first.id, "7682a248ad73d204eb94d9eab840c6fe41b8963d");
    assert_eq!(first.at.as_deref(), Some("2019-11-02T17:56:20Z"));
    let merge = push.commits.last().unwrap();
    assert_eq!(merge.id, PR3_MERGE);
    assert_eq!(
        merge.subject,
        "Merge pull request #3 from byao1276/byao1276-patch-1"
    );
    assert_eq!(merge.author.name, "Bo Yao");
    assert_eq!(merge.author.email, "icerove@gmail.com");
    assert_eq!(merge.committer.as_ref().unwrap().name, "GitHub");
    assert_eq!(merge.at.as_deref(), Some("2019-11-26T07:01:12Z"));
}

#[test]
fn reallyfastci_pr_3_opened_from_a_fork_is_open_with_no_merge_commit() {
    let pr = only!(
        gh("pull_request", "reallyfastci-capture/webhook-pr-open.json"),
        PullRequest
    );
    assert_eq!(pr.action, "opened");
    assert_eq!(pr.state, PullRequestState::Open);
    assert_eq!(pr.number, 3);
    assert_eq!(pr.head_sha, "7b5a809ab03679215c55926f7d111156ec98b865");
    assert_eq!(pr.merge_commit_sha, None);
    assert_eq!(pr.merged_by, None);
    assert_eq!(pr.updated_at.as_deref(), Some("2019-11-13T01:28:51Z"));
}

#[test]
fn the_documented_closed_example_is_closed_not_merged_and_its_test_merge_commit_is_dropped() {
    let pr = only!(
        gh(
            "pull_request",
            "octokit-webhooks-examples/pull_request.closed.payload.json"
        ),
        PullRequest
    );
    assert_eq!(pr.action, "closed");
    assert_eq!(pr.state, PullRequestState::Closed);
    assert_eq!(pr.merged_at, None);
    assert_eq!(pr.merged_by, None);
    // The payload carries `merge_commit_sha: c4295bd…`, a test merge that never landed.
    assert_eq!(pr.merge_commit_sha, None);
    assert_eq!(pr.repository, "Codertocat/Hello-World");
    assert_eq!(pr.number, 2);
    assert_eq!(pr.labels, vec!["bug"]);
    assert_eq!(pr.updated_at.as_deref(), Some("2019-05-15T15:21:18Z"));
}

#[test]
fn owners_bot_webhook_review_approves_the_pull_request_head() {
    let opened = only!(
        gh(
            "pull_request",
            "github-owners-bot-capture/actions.opened.35.json"
        ),
        PullRequest
    );
    assert_eq!(opened.author, user("ampprojectbot"));
    assert_eq!(opened.head_sha, PR35_HEAD);

    let review = only!(
        gh(
            "pull_request_review",
            "github-owners-bot-capture/actions.pull_request_review.35.submitted.json"
        ),
        Review
    );
    assert_eq!(review.repository, "erwinmombay/github-owners-bot-test-repo");
    assert_eq!(review.number, 35);
    assert_eq!(review.reviewer, user("erwinmombay"));
    assert_eq!(review.state, ReviewState::Approved);
    assert_eq!(review.commit.as_deref(), Some(opened.head_sha.as_str()));
    assert_eq!(review.at, "2019-02-26T20:53:31Z");
    assert_eq!(review.dismissed_by, None);
}

#[test]
fn owners_bot_rest_reviews_array_reads_upper_case_approval_from_the_url() {
    let body = fixture("github-owners-bot-capture/reviews.reviews.35.approved.json");
    let review = only!(github::parse_export(&body).unwrap(), Review);
    assert_eq!(review.repository, "erwinmombay/github-owners-bot-test-repo");
    assert_eq!(review.number, 35);
    assert_eq!(review.state, ReviewState::Approved);
    assert_eq!(review.reviewer, user("erwinmombay"));
    assert_eq!(review.commit.as_deref(), Some(PR35_HEAD));
    // Recorded at a different time from the webhook's 20:53:31.
    assert_eq!(review.at, "2019-02-26T20:39:13Z");
}

#[test]
fn owners_bot_rest_pull_request_is_an_open_snapshot_without_its_test_merge_commit() {
    let body = fixture("github-owners-bot-capture/pulls.pull_request.35.json");
    let pr = only!(github::parse_export(&body).unwrap(), PullRequest);
    assert_eq!(pr.action, "export");
    assert_eq!(pr.repository, "erwinmombay/github-owners-bot-test-repo");
    assert_eq!(pr.number, 35);
    assert_eq!(pr.state, PullRequestState::Open);
    assert_eq!(pr.head_sha, PR35_HEAD);
    assert_eq!(pr.merge_commit_sha, None, "95fe33c… is GitHub's test merge");
    assert_eq!(pr.updated_at.as_deref(), Some("2019-02-26T20:53:31Z"));
    assert_eq!(pr.commits, Some(1));
}

#[test]
fn owners_bot_rest_check_runs_name_the_repository_from_their_url() {
    let body = fixture("github-owners-bot-capture/check-runs.check-runs.get.35.json");
    let check = only!(github::parse_export(&body).unwrap(), Check);
    assert_eq!(check.repository, "erwinmombay/github-owners-bot-test-repo");
    assert_eq!(check.sha, PR35_HEAD);
    assert_eq!(check.name, "ampproject/owners-check");
    assert_eq!(check.status, "completed");
    assert_eq!(check.conclusion.as_deref(), Some("failure"));
    assert_eq!(check.at, "2019-01-23T03:33:52Z");
}

#[test]
fn documented_reviews_are_a_comment_and_a_dismissal_by_the_sender() {
    let comment = only!(
        gh(
            "pull_request_review",
            "octokit-webhooks-examples/pull_request_review.submitted.payload.json"
        ),
        Review
    );
    assert_eq!(comment.state, ReviewState::Commented);
    assert_eq!(comment.at, "2019-05-15T15:20:38Z");

    let dismissal = only!(
        gh(
            "pull_request_review",
            "octokit-webhooks-examples/pull_request_review.dismissed.payload.json"
        ),
        Review
    );
    assert_eq!(dismissal.state, ReviewState::Dismissed);
    assert_eq!(dismissal.reviewer, user("Codertocat"));
    assert_eq!(dismissal.dismissed_by, Some(user("Codertocat")));
    assert_eq!(
        dismissal.commit.as_deref(),
        Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821")
    );
    assert_eq!(dismissal.number, 2);
}

#[test]
fn review_states_are_read_whatever_their_case_and_unknown_ones_are_refused() {
    let mut body =
        fixture_json("github-owners-bot-capture/actions.pull_request_review.35.submitted.json");
    for (text, state) in [
        ("APPROVED", ReviewState::Approved),
        ("Changes_Requested", ReviewState::ChangesRequested),
    ] {
        body["review"]["state"] = json!(text);
        let review = only!(
            github::parse("pull_request_review", body.to_string().as_bytes()).unwrap(),
            Review
        );
        assert_eq!(review.state, state);
    }
    body["review"]["state"] = json!("pending");
    assert_eq!(
        github::parse("pull_request_review", body.to_string().as_bytes()),
        Ok(vec![])
    );
    body["review"]["state"] = json!("lgtm");
    let err = github::parse("pull_request_review", body.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(&err, ParseError::Field { field, .. } if field == "review.state"),
        "{err}"
    );
}

#[test]
fn a_tag_deletion_is_a_push_to_refs_tags_with_a_zero_after() {
    let push = only!(
        gh("push", "octokit-webhooks-examples/push.payload.json"),
        Push
    );
    assert_eq!(push.repository, "Codertocat/Hello-World");
    assert_eq!(push.git_ref, "refs/tags/simple-tag");
    assert_eq!(push.before, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(push.after, ZERO);
    assert!(push.deleted);
    assert!(!push.created && !push.forced);
    assert!(push.commits.is_empty());
    assert_eq!(push.pusher, user("Codertocat"));
    assert_eq!(push.at.as_deref(), Some("2019-05-15T15:20:57Z"));
}

#[test]
fn a_new_branch_push_is_created_from_a_zero_before() {
    let push = only!(
        gh(
            "push",
            "octokit-webhooks-examples/push.with-new-branch.payload.json"
        ),
        Push
    );
    assert!(push.created);
    assert_eq!(push.before, ZERO);
    assert_eq!(push.after, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(push.commits.len(), 1);
    assert_eq!(push.commits[0].subject, "Initial commit");
    assert_eq!(push.commits[0].at.as_deref(), Some("2019-05-15T15:19:25Z"));
}

#[test]
fn a_bot_sender_marks_the_pusher_as_a_bot() {
    let mut body = fixture_json("octokit-webhooks-examples/push.with-new-branch.payload.json");
    body["pusher"]["name"] = json!("dependabot[bot]");
    body["sender"]["login"] = json!("dependabot[bot]");
    body["sender"]["type"] = json!("Bot");
    let push = only!(
        github::parse("push", body.to_string().as_bytes()).unwrap(),
        Push
    );
    assert_eq!(
        push.pusher,
        Identity {
            login: "dependabot[bot]".into(),
            bot: true
        }
    );
}

#[test]
fn deployment_and_its_status_carry_the_sha_environment_and_creator() {
    let d = only!(
        gh(
            "deployment",
            "octokit-webhooks-examples/deployment.payload.json"
        ),
        Deployment
    );
    assert_eq!(d.host, Host::Github);
    assert_eq!(d.id, "145988746");
    assert_eq!(d.system, "Codertocat/Hello-World");
    assert_eq!(d.environment, "production");
    assert_eq!(d.artifact, "f95f852bd8fca8fcc58a9a2d6c842781e32a215e");
    assert_eq!(d.actor, user("Codertocat"));
    assert_eq!(d.at, "2019-05-15T15:20:53Z");
    assert_eq!(d.status, None);

    let s = only!(
        gh(
            "deployment_status",
            "octokit-webhooks-examples/deployment_status.payload.json"
        ),
        DeploymentStatus
    );
    assert_eq!(s.deployment_id, d.id);
    assert_eq!(s.state, "success");
    assert_eq!(s.environment, "production");
    assert_eq!(s.artifact, d.artifact);
    assert_eq!(s.actor, user("Codertocat"));
    assert_eq!(s.at, "2019-05-15T15:20:55Z");
}

#[test]
fn a_deployment_held_by_a_protection_rule_is_a_waiting_deployment() {
    let d = only!(
        gh(
            "deployment_protection_rule",
            "deploynaut-capture/deployment_protection_rule.requested.json"
        ),
        Deployment
    );
    assert_eq!(d.id, "2018818995");
    assert_eq!(d.system, "product-os/deploynaut");
    assert_eq!(d.environment, "test");
    assert_eq!(d.artifact, "8a7d3b7f56830f91e5c0c02ab44d3215b29ad086");
    assert_eq!(d.actor, user("klutchell"));
    assert_eq!(d.status.as_deref(), Some("waiting"));
    assert_eq!(d.at, "2024-12-06T15:14:55Z");
}

#[test]
fn check_runs_suites_and_statuses_are_checks_on_their_commit() {
    let run = only!(
        gh(
            "check_run",
            "octokit-webhooks-examples/check_run.completed.payload.json"
        ),
        Check
    );
    assert_eq!(run.repository, "Codertocat/Hello-World");
    assert_eq!(run.sha, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    assert_eq!(run.name, "Octocoders-linter");
    assert_eq!(run.status, "completed");
    assert_eq!(run.conclusion.as_deref(), Some("success"));
    assert_eq!(run.at, "2019-05-15T15:21:12Z");

    let suite = only!(
        gh(
            "check_suite",
            "octokit-webhooks-examples/check_suite.completed.payload.json"
        ),
        Check
    );
    assert_eq!(suite.sha, run.sha);
    assert_eq!(suite.name, "octocoders-linter");
    assert_eq!(suite.conclusion.as_deref(), Some("success"));
    assert_eq!(suite.at, "2019-05-15T15:21:14Z");

    let status = only!(
        gh("status", "octokit-webhooks-examples/status.payload.json"),
        Check
    );
    assert_eq!(status.sha, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(status.name, "default");
    assert_eq!(status.status, "completed");
    assert_eq!(status.conclusion.as_deref(), Some("success"));
    // `+00:00` in the payload.
    assert_eq!(status.at, "2019-05-15T15:20:55Z");

    let rerun = only!(
        gh(
            "check_run",
            "github-owners-bot-capture/actions.rerequested.35.json"
        ),
        Check
    );
    assert_eq!(rerun.repository, "erwinmombay/amphtml");
    assert_eq!(rerun.sha, "f73f33ef2005ee244695ee3445bd82c12ed37735");
    assert_eq!(rerun.conclusion.as_deref(), Some("failure"));
}

#[test]
fn a_check_run_without_a_head_sha_is_no_evidence() {
    let mut body = fixture_json("octokit-webhooks-examples/check_run.completed.payload.json");
    body["check_run"]
        .as_object_mut()
        .unwrap()
        .remove("head_sha");
    assert_eq!(
        github::parse("check_run", body.to_string().as_bytes()),
        Ok(vec![])
    );
}

#[test]
fn the_documented_protection_edit_weakens_exactly_what_its_changes_loosened() {
    let change = only!(
        gh(
            "branch_protection_rule",
            "octokit-webhooks-examples/branch_protection_rule.edited.payload.json"
        ),
        ProtectionChange
    );
    assert_eq!(change.repository, "octo-org/octo-repo");
    assert_eq!(change.action, "edited");
    assert_eq!(change.pattern, "production");
    assert_eq!(change.actor, user("Codertocat"));
    // `2021-08-19T12:16:32.000-04:00`
    assert_eq!(change.at, "2021-08-19T16:16:32Z");
    // From its `changes`: stale-review dismissal and code-owner review switched off, two
    // approvals down to one, linear history and signatures no longer required. Force pushes
    // went from allowed to forbidden and status checks got enforced: stronger, not listed.
    assert_eq!(
        change.weakened,
        vec![
            "dismiss_stale_reviews_on_push",
            "linear_history_requirement_enforcement_level",
            "require_code_owner_review",
            "required_approving_review_count",
            "signature_requirement_enforcement_level",
        ]
    );
    assert_eq!(change.settings["required_approving_review_count"], json!(1));
    assert_eq!(
        change.settings["required_status_checks"],
        json!(["basic-CI"])
    );
    assert!(change.settings.get("id").is_none());
}

#[test]
fn deleting_a_protection_rule_weakens_everything_it_enforced() {
    let mut body =
        fixture_json("octokit-webhooks-examples/branch_protection_rule.edited.payload.json");
    body["action"] = json!("deleted");
    body.as_object_mut().unwrap().remove("changes");
    let change = only!(
        github::parse("branch_protection_rule", body.to_string().as_bytes()).unwrap(),
        ProtectionChange
    );
    assert_eq!(change.settings, json!({}));
    assert_eq!(
        change.weakened,
        vec![
            "allow_deletions_enforcement_level",
            "allow_force_pushes_enforcement_level",
            "authorized_actors_only",
            "required_approving_review_count",
            "required_status_checks",
            "required_status_checks_enforcement_level",
        ]
    );

    body["action"] = json!("created");
    let created = only!(
        github::parse("branch_protection_rule", body.to_string().as_bytes()).unwrap(),
        ProtectionChange
    );
    assert!(created.weakened.is_empty());
}

#[test]
fn audit_log_policy_overrides_are_read_by_event_name_or_by_their_action() {
    // The shape GitHub's REST audit log documents; it usually has no branch.
    let entry = json!({
        "@timestamp": 1632132184509_i64,
        "action": "protected_branch.policy_override",
        "actor": "octocat",
        "org": "octo-org",
        "repo": "octo-org/octo-repo",
        "created_at": 1632132184509_i64,
        "_document_id": "abc"
    });
    let body = entry.to_string();
    let by_name = only!(
        github::parse("audit_log", body.as_bytes()).unwrap(),
        ProtectionOverride
    );
    assert_eq!(by_name.repository, "octo-org/octo-repo");
    assert_eq!(by_name.actor, user("octocat"));
    assert_eq!(by_name.at, "2021-09-20T10:03:04.509Z");
    assert_eq!(by_name.mechanism, "policy_override");
    assert_eq!(by_name.branch, "");
    assert_eq!(
        github::parse("", body.as_bytes()).unwrap(),
        vec![Evidence::ProtectionOverride(by_name)]
    );

    let mut with_branch = entry.clone();
    with_branch["branch"] = json!("refs/heads/main");
    with_branch.as_object_mut().unwrap().remove("@timestamp");
    with_branch["created_at"] = json!("2021-09-20T12:03:04+02:00");
    let o = only!(
        github::parse("audit_log", with_branch.to_string().as_bytes()).unwrap(),
        ProtectionOverride
    );
    assert_eq!(o.branch, "main");
    assert_eq!(o.at, "2021-09-20T10:03:04Z");

    let mut other = entry;
    other["action"] = json!("protected_branch.update");
    assert_eq!(
        github::parse("audit_log", other.to_string().as_bytes()),
        Err(ParseError::Unsupported(
            "audit_log protected_branch.update".into()
        ))
    );
}

#[test]
fn ping_is_no_evidence() {
    let event = captured_event("reallyfastci-capture/webhook-ping-headers.txt");
    assert_eq!(event, "ping");
    assert_eq!(gh(&event, "reallyfastci-capture/webhook-ping.json"), vec![]);
}

#[test]
fn every_github_webhook_fixture_has_its_event_inferred_and_exports_as_it_parses() {
    let cases = [
        (
            "reallyfastci-capture/webhook-pr-close.json",
            Some("pull_request"),
        ),
        (
            "reallyfastci-capture/webhook-pr-open.json",
            Some("pull_request"),
        ),
        (
            "reallyfastci-capture/webhook-push-to-master.json",
            Some("push"),
        ),
        ("reallyfastci-capture/webhook-ping.json", Some("ping")),
        (
            "github-owners-bot-capture/actions.opened.35.json",
            Some("pull_request"),
        ),
        (
            "github-owners-bot-capture/actions.pull_request_review.35.submitted.json",
            Some("pull_request_review"),
        ),
        (
            "github-owners-bot-capture/actions.rerequested.35.json",
            Some("check_run"),
        ),
        (
            "deploynaut-capture/deployment_protection_rule.requested.json",
            Some("deployment_protection_rule"),
        ),
        (
            "octokit-webhooks-examples/pull_request.closed.payload.json",
            Some("pull_request"),
        ),
        (
            "octokit-webhooks-examples/pull_request_review.dismissed.payload.json",
            Some("pull_request_review"),
        ),
        (
            "octokit-webhooks-examples/pull_request_review.submitted.payload.json",
            Some("pull_request_review"),
        ),
        ("octokit-webhooks-examples/push.payload.json", Some("push")),
        (
            "octokit-webhooks-examples/push.with-new-branch.payload.json",
            Some("push"),
        ),
        (
            "octokit-webhooks-examples/deployment.payload.json",
            Some("deployment"),
        ),
        (
            "octokit-webhooks-examples/deployment_status.payload.json",
            Some("deployment_status"),
        ),
        (
            "octokit-webhooks-examples/check_run.completed.payload.json",
            Some("check_run"),
        ),
        (
            "octokit-webhooks-examples/check_suite.completed.payload.json",
            Some("check_suite"),
        ),
        (
            "octokit-webhooks-examples/status.payload.json",
            Some("status"),
        ),
        (
            "octokit-webhooks-examples/branch_protection_rule.edited.payload.json",
            Some("branch_protection_rule"),
        ),
        (
            "octokit-webhooks-examples/release.published.payload.json",
            None,
        ),
    ];
    for (path, expected) in cases {
        let value = fixture_json(path);
        assert_eq!(github::infer_event(&value), expected, "{path}");
        let body = fixture(path);
        match expected {
            Some(event) => assert_eq!(
                github::parse_export(&body),
                github::parse(event, &body),
                "{path}"
            ),
            None => {
                let err = github::parse_export(&body).unwrap_err();
                assert!(
                    matches!(&err, ParseError::Field { field, .. } if field == "body"),
                    "{path}: {err}"
                );
            }
        }
    }
}

#[test]
fn exports_of_event_records_read_as_an_array_and_as_ndjson() {
    let record = |event: &str, path: &str| {
        let payload = fixture_json(path);
        json!({"event": event, "payload": payload})
    };
    let review_text = String::from_utf8(fixture(
        "github-owners-bot-capture/actions.pull_request_review.35.submitted.json",
    ))
    .unwrap();
    let records = vec![
        record("pull_request", "reallyfastci-capture/webhook-pr-close.json"),
        json!({"event": "watch", "payload": {"action": "started"}}),
        record("push", "reallyfastci-capture/webhook-push-to-master.json"),
        // Some stores keep the payload as a string.
        json!({"event": "pull_request_review", "payload": review_text}),
    ];
    let array = github::parse_export(Value::Array(records.clone()).to_string().as_bytes()).unwrap();
    let ndjson: String = records.iter().map(|r| format!("{r}\n")).collect();
    let lines = github::parse_export(ndjson.as_bytes()).unwrap();
    assert_eq!(array, lines);
    let kinds: Vec<&str> = array.iter().map(Evidence::ledger_kind).collect();
    assert_eq!(
        kinds,
        vec!["evidence.pull_request", "evidence.push", "evidence.review"]
    );

    // An error names the element and the field inside it.
    let mut broken = records;
    broken[2]["payload"]
        .as_object_mut()
        .unwrap()
        .remove("after");
    assert_eq!(
        github::parse_export(Value::Array(broken.clone()).to_string().as_bytes()),
        Err(ParseError::field("[2].payload.after", "is missing"))
    );
    let ndjson: String = broken.iter().map(|r| format!("{r}\n")).collect();
    assert_eq!(
        github::parse_export(ndjson.as_bytes()),
        Err(ParseError::field("line 3: payload.after", "is missing"))
    );
}

#[test]
fn broken_github_input_gets_a_specific_error() {
    let body = fixture("reallyfastci-capture/webhook-pr-close.json");

    let truncated = github::parse("pull_request", &body[..body.len() / 2]);
    assert!(
        matches!(&truncated, Err(ParseError::Json(m)) if m.contains("EOF")),
        "{truncated:?}"
    );

    let release = fixture("octokit-webhooks-examples/release.published.payload.json");
    assert_eq!(
        github::parse("release", &release),
        Err(ParseError::Unsupported("release".into()))
    );

    let mut value: Value = serde_json::from_slice(&body).unwrap();
    value["pull_request"]
        .as_object_mut()
        .unwrap()
        .remove("number");
    let err = github::parse("pull_request", value.to_string().as_bytes()).unwrap_err();
    assert_eq!(err, ParseError::field("pull_request.number", "is missing"));
    assert_eq!(err.to_string(), "field `pull_request.number`: is missing");

    let mut value: Value = serde_json::from_slice(&body).unwrap();
    value["pull_request"]["created_at"] = json!("2019-11-13 01:28:51");
    assert_eq!(
        github::parse("pull_request", value.to_string().as_bytes()),
        Err(ParseError::field(
            "pull_request.created_at",
            "`2019-11-13 01:28:51` has no time zone"
        ))
    );

    let mut value: Value = serde_json::from_slice(&body).unwrap();
    value["pull_request"]["head"]["sha"] = json!("7b5a809");
    let err = github::parse("pull_request", value.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(&err, ParseError::Field { field, .. } if field == "pull_request.head.sha"),
        "{err}"
    );

    assert_eq!(
        github::parse("push", b"[1, 2]"),
        Err(ParseError::field(
            "body",
            "must be a JSON object, found an array"
        ))
    );
    assert!(matches!(
        github::parse("push", b""),
        Err(ParseError::Json(_))
    ));
}

// ---------------------------------------------------------------------------------------
// GitLab

#[test]
fn gitlab_mr_4_closed_then_merged_by_its_author_with_the_merge_commit() {
    let closed = only!(
        gl(
            Some("Merge Request Hook"),
            "woodpecker-capture/HookPullRequestClosed.json"
        ),
        PullRequest
    );
    assert_eq!(closed.state, PullRequestState::Closed);
    assert_eq!(closed.merge_commit_sha, None);
    assert_eq!(closed.updated_at.as_deref(), Some("2023-12-05T18:40:34Z"));

    let merged = only!(
        gl(
            Some("Merge Request Hook"),
            "woodpecker-capture/HookPullRequestMerged.json"
        ),
        PullRequest
    );
    assert_eq!(merged.host, Host::Gitlab);
    assert_eq!(merged.repository, "anbraten/woodpecker-test");
    assert_eq!(merged.number, 4);
    assert_eq!(merged.action, "merge");
    assert_eq!(merged.title, "Add new file");
    assert_eq!(merged.state, PullRequestState::Merged);
    assert_eq!(merged.author, user("anbraten"));
    assert_eq!(merged.merged_by, Some(user("anbraten")));
    assert_eq!(
        merged.merge_commit_sha.as_deref(),
        Some("43411b53d670203e887c4985c4e58e8e6b7c109e")
    );
    assert_eq!(merged.squash_commit_sha, None);
    assert_eq!(merged.head_sha, "3e4db3586b65dd401de8c77b3ac343fd24cbf89b");
    assert_eq!(merged.head_ref, "patch-1");
    assert_eq!(merged.base_ref, "main");
    assert_eq!(merged.created_at, "2023-12-05T18:40:22Z");
    assert_eq!(merged.merged_at.as_deref(), Some("2023-12-05T18:43:00Z"));
    assert_eq!(
        merged.url.as_deref(),
        Some("https://gitlab.com/anbraten/woodpecker-test/-/merge_requests/4")
    );
    assert_eq!(merged.number, closed.number);
}

#[test]
fn gitlab_approval_by_the_mr_author_is_visible_as_a_self_approval() {
    let approval = only!(
        gl(
            Some("Merge Request Hook"),
            "woodpecker-capture/HookPullRequestApproved.json"
        ),
        Review
    );
    assert_eq!(approval.repository, "anbraten/woodpecker");
    assert_eq!(approval.number, 3);
    assert_eq!(approval.state, ReviewState::Approved);
    assert_eq!(approval.reviewer, user("anbraten"));
    assert_eq!(
        approval.commit.as_deref(),
        Some("c136499ec574e1034b24c5d306de9acda3005367")
    );
    assert_eq!(approval.at, "2022-01-17T15:47:39Z");

    // The same merge request's update names its author through `author_id`.
    let update = only!(
        gl(
            Some("Merge Request Hook"),
            "woodpecker-capture/HookPullRequestUpdated.json"
        ),
        PullRequest
    );
    assert_eq!(
        (update.repository.as_str(), update.number),
        ("anbraten/woodpecker", 3)
    );
    assert_eq!(update.action, "update");
    assert_eq!(update.author, approval.reviewer);

    let withdrawn = only!(
        gl(None, "woodpecker-capture/HookPullRequestUnapproved.json"),
        Review
    );
    assert_eq!(withdrawn.state, ReviewState::Unapproved);
    assert_eq!(withdrawn.reviewer, user("real6543"));
    assert_eq!(withdrawn.at, "2025-08-06T01:28:57Z");
    assert_eq!(
        withdrawn.commit.as_deref(),
        Some("2f7670508b771e7e77839402be8b34b13787aba8")
    );
}

#[test]
fn gitlab_authors_come_from_author_id_and_stay_an_id_when_unnamed() {
    let opened = only!(
        gl(None, "woodpecker-capture/HookPullRequestOpened.json"),
        PullRequest
    );
    assert_eq!(opened.action, "open");
    assert_eq!(opened.author, user("real6543"));
    assert_eq!(opened.labels, vec!["documentation"]);
    assert_eq!(opened.created_at, "2025-08-05T21:48:25Z");

    // Reopened by real6543 (4575606); the author is 29352663, named nowhere in the payload.
    let reopened = only!(
        gl(None, "woodpecker-capture/HookPullRequestReopened.json"),
        PullRequest
    );
    assert_eq!(reopened.state, PullRequestState::Open);
    assert_eq!(reopened.author, user("id:29352663"));

    // GitLab's documented example: `user` 1 opens, but `author_id` is 51.
    let documented = only!(
        gl(None, "go-gitlab-testdata/webhook.merge_request.json"),
        PullRequest
    );
    assert_eq!(documented.repository, "gitlabhq/gitlab-test");
    assert_eq!(documented.author, user("id:51"));
    assert_eq!(documented.labels, vec!["API"]);
    assert_eq!(documented.created_at, "2013-12-03T17:23:34Z");
}

#[test]
fn gitlab_group_merge_request_is_merged_with_its_merge_commit() {
    let pr = only!(
        gl(
            Some("Merge Request Hook"),
            "go-gitlab-testdata/webhook.group_merge_request.json"
        ),
        PullRequest
    );
    assert_eq!(pr.repository, "exm-namespace/example-project");
    assert_eq!(pr.number, 1402);
    assert_eq!(pr.state, PullRequestState::Merged);
    assert_eq!(
        pr.merge_commit_sha.as_deref(),
        Some("ac3ca1559bc39abf963586372eff7f8fdded646e")
    );
    assert_eq!(pr.merged_by, Some(user("user1")));
    assert_eq!(pr.author, user("id:15"));
    assert_eq!(pr.head_sha, "61b6a0d35dbaf915760233b637622e383d3cc9ec");
    assert_eq!(pr.head_ref, "source-branch-test");
    assert_eq!(pr.base_ref, "master");
    assert_eq!(pr.created_at, "2016-12-01T13:11:10Z");
    assert_eq!(pr.merged_at.as_deref(), Some("2016-12-01T13:21:20Z"));
}

#[test]
fn gitlab_pushes_and_tag_pushes() {
    let push = only!(
        gl(Some("Push Hook"), "woodpecker-capture/HookPush.json"),
        Push
    );
    assert_eq!(push.host, Host::Gitlab);
    assert_eq!(push.repository, "test/woodpecker");
    assert_eq!(push.git_ref, "refs/heads/main");
    assert_eq!(push.before, "ffe8eb4f91d1fe6bc49f1e610e50e4b5767f0104");
    assert_eq!(push.after, "16862e368d8ab812e48833b741dad720d6e2cb7f");
    assert!(!push.created && !push.deleted && !push.forced);
    assert_eq!(push.pusher, user("test"));
    assert_eq!(push.commits.len(), 1);
    assert_eq!(push.commits[0].subject, "Update main.go");
    assert_eq!(push.commits[0].author.email, "test@test.test");
    assert_eq!(push.at.as_deref(), Some("2021-09-27T04:46:14Z"));

    let tag = only!(
        gl(Some("Tag Push Hook"), "woodpecker-capture/HookTag.json"),
        Push
    );
    assert_eq!(tag.git_ref, "refs/tags/v22");
    assert!(tag.created);
    assert_eq!(tag.before, ZERO);
    assert_eq!(tag.after, "fabed3d94cd03e6c2b7958afa9569c18a24d301f");
    // The tag's commit is `checkout_sha`.
    assert_eq!(tag.at.as_deref(), Some("2021-09-27T04:46:14Z"));

    let documented = only!(
        gl(Some("Push Hook"), "go-gitlab-testdata/webhook.push.json"),
        Push
    );
    assert_eq!(documented.pusher, user("jsmith"));
    assert_eq!(documented.commits.len(), 2);
    assert_eq!(documented.at.as_deref(), Some("2012-01-03T21:36:29Z"));

    let documented_tag = only!(
        gl(
            Some("Tag Push Hook"),
            "go-gitlab-testdata/webhook.tag_push.json"
        ),
        Push
    );
    assert_eq!(documented_tag.git_ref, "refs/tags/v1.0.0");
}

#[test]
fn gitlab_deployment_pipeline_and_job() {
    let d = only!(
        gl(
            Some("Deployment Hook"),
            "go-gitlab-testdata/webhook.deployment.json"
        ),
        Deployment
    );
    assert_eq!(d.id, "15");
    assert_eq!(d.system, "root/test-deployment-webhooks");
    assert_eq!(d.environment, "staging");
    // The full id from `commit_url`, which `short_sha` (279484c0) begins.
    assert_eq!(d.artifact, "279484c09fbe69ededfced8c1bb6e6d24616b468");
    assert_eq!(d.actor, user("user1"));
    // `2021-04-28 21:50:00 +0200`
    assert_eq!(d.at, "2021-04-28T19:50:00Z");
    assert_eq!(d.status.as_deref(), Some("success"));

    let p = only!(
        gl(
            Some("Pipeline Hook"),
            "go-gitlab-testdata/webhook.pipeline.json"
        ),
        Check
    );
    assert_eq!(p.repository, "gitlab-org/gitlab-test");
    assert_eq!(p.sha, "bcbb5ec396a2c0f828686f14fac9b80b780504f2");
    assert_eq!(p.name, "pipeline");
    assert_eq!(p.status, "success");
    assert_eq!(p.conclusion.as_deref(), Some("success"));
    assert_eq!(p.at, "2016-08-12T15:26:29Z");

    let j = only!(
        gl(Some("Job Hook"), "go-gitlab-testdata/webhook.job.json"),
        Check
    );
    assert_eq!(j.repository, "jsmithy2/release-tools-fake");
    assert_eq!(j.sha, "95d49d1efbd941908580e79d65e4b5ecaf4a8305");
    assert_eq!(j.name, "auto_deploy:start");
    assert_eq!(j.conclusion.as_deref(), Some("success"));
    assert_eq!(j.at, "2023-01-10T13:50:54Z");
}

#[test]
fn gitlab_deployment_commit_url_must_agree_with_short_sha() {
    let mut body = fixture_json("go-gitlab-testdata/webhook.deployment.json");
    body["short_sha"] = json!("deadbeef");
    let err = gitlab::parse(None, body.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(&err, ParseError::Field { field, .. } if field == "commit_url"),
        "{err}"
    );

    body.as_object_mut().unwrap().remove("commit_url");
    let d = only!(
        gitlab::parse(None, body.to_string().as_bytes()).unwrap(),
        Deployment
    );
    assert_eq!(d.artifact, "deadbeef");
}

#[test]
fn gitlab_notes_and_releases_are_no_evidence() {
    assert_eq!(
        gl(
            Some("Note Hook"),
            "go-gitlab-testdata/webhook.note_merge_request.json"
        ),
        vec![]
    );
    assert_eq!(
        gl(
            Some("Release Hook"),
            "go-gitlab-testdata/webhook.release.json"
        ),
        vec![]
    );
    assert_eq!(
        gl(None, "woodpecker-capture/WebhookReleaseBody.json"),
        vec![]
    );
}

#[test]
fn gitlab_header_must_agree_with_object_kind() {
    let body = fixture("woodpecker-capture/HookPush.json");
    assert_eq!(
        gitlab::parse(Some("Merge Request Hook"), &body),
        Err(ParseError::field(
            "object_kind",
            "`push` does not match the `X-Gitlab-Event` header `Merge Request Hook` (a `push` \
             payload comes with `Push Hook`)"
        ))
    );
    assert!(gitlab::parse(Some("System Hook"), &body).is_ok());
    let tag = fixture("woodpecker-capture/HookTag.json");
    assert!(matches!(
        gitlab::parse(Some("Push Hook"), &tag),
        Err(ParseError::Field { .. })
    ));

    let issue = json!({"object_kind": "issue", "object_attributes": {}});
    assert_eq!(
        gitlab::parse(Some("Issue Hook"), issue.to_string().as_bytes()),
        Err(ParseError::Unsupported("issue".into()))
    );
    assert_eq!(
        gitlab::parse(None, issue.to_string().as_bytes()),
        Err(ParseError::Unsupported("issue".into()))
    );
}

#[test]
fn broken_gitlab_input_gets_a_specific_error() {
    let body = fixture("woodpecker-capture/HookPullRequestMerged.json");
    assert!(matches!(
        gitlab::parse(None, &body[..100]),
        Err(ParseError::Json(_))
    ));

    let mut value: Value = serde_json::from_slice(&body).unwrap();
    value["object_attributes"]["created_at"] = json!("2023-12-05 18:40:22");
    assert_eq!(
        gitlab::parse(None, value.to_string().as_bytes()),
        Err(ParseError::field(
            "object_attributes.created_at",
            "`2023-12-05 18:40:22` has no time zone"
        ))
    );

    let mut value: Value = serde_json::from_slice(&body).unwrap();
    value["object_attributes"]
        .as_object_mut()
        .unwrap()
        .remove("iid");
    assert_eq!(
        gitlab::parse(None, value.to_string().as_bytes()),
        Err(ParseError::field("object_attributes.iid", "is missing"))
    );

    let mut value: Value = serde_json::from_slice(&body).unwrap();
    value.as_object_mut().unwrap().remove("object_kind");
    assert_eq!(
        gitlab::parse(Some("Merge Request Hook"), value.to_string().as_bytes()),
        Err(ParseError::field("object_kind", "is missing"))
    );

    assert_eq!(
        gitlab::parse(None, b"\"push\""),
        Err(ParseError::field(
            "body",
            "must be a JSON object, found a string"
        ))
    );
}

// ---------------------------------------------------------------------------------------
// Truncation: every prefix of a real payload is an error, never a panic.

/// Cuts a fixture at every `step` bytes and in its last 64 bytes; both parsers must call
/// each cut a JSON error.
fn assert_prefixes_fail(path: &str, step: usize) {
    let body = fixture(path);
    let end = body.trim_ascii_end().len();
    let whole: Value = serde_json::from_slice(&body).unwrap();
    let event = github::infer_event(&whole).unwrap_or("push");
    let mut cuts: Vec<usize> = (0..end).step_by(step).collect();
    cuts.extend(end.saturating_sub(64)..end);
    for cut in cuts {
        let prefix = &body[..cut];
        let from_github = github::parse(event, prefix);
        assert!(
            matches!(from_github, Err(ParseError::Json(_))),
            "{path} cut at {cut}: {from_github:?}"
        );
        let from_gitlab = gitlab::parse(None, prefix);
        assert!(
            matches!(from_gitlab, Err(ParseError::Json(_))),
            "{path} cut at {cut}: {from_gitlab:?}"
        );
        // Exports may read a prefix of NDJSON; they must only not panic.
        let _ = github::parse_export(prefix);
    }
}

#[test]
fn every_prefix_of_small_real_payloads_is_a_json_error() {
    assert_prefixes_fail("octokit-webhooks-examples/push.payload.json", 1);
    assert_prefixes_fail("woodpecker-capture/HookTag.json", 1);
    assert_prefixes_fail(
        "github-owners-bot-capture/reviews.reviews.35.approved.json",
        1,
    );
}

#[test]
fn sampled_prefixes_of_every_fixture_are_json_errors() {
    let files = all_fixture_files();
    assert!(files.len() >= 40, "{files:?}");
    for path in files {
        assert_prefixes_fail(&path, 89);
    }
}

// ---------------------------------------------------------------------------------------
// changegate's own deployment endpoint

const SHA: &str = "a21683865c088b5fe1906cf6552d15a285a4986d";

#[test]
fn a_full_deployment_report_is_read_with_the_token_owner_as_actor() {
    let body = json!({
        "system": "payments-api",
        "environment": "production",
        "artifact": SHA.to_uppercase(),
        "time": "2026-07-13T20:26:50+02:00",
        "id": "run-8812",
        "status": "success",
        "commits": ["7b5a809ab03679215c55926f7d111156ec98b865", "7682A248AD73D204EB94D9EAB840C6FE41B8963D"],
        "description": "release 4.2",
        "actor": "ci-payments"
    });
    let d = pipeline::parse_deployment(body.to_string().as_bytes(), "ci-payments").unwrap();
    assert_eq!(d.host, Host::Pipeline);
    assert_eq!(d.id, "run-8812");
    assert_eq!(d.system, "payments-api");
    assert_eq!(d.environment, "production");
    assert_eq!(d.artifact, SHA);
    assert_eq!(d.actor, user("ci-payments"));
    assert_eq!(d.at, "2026-07-13T18:26:50Z");
    assert_eq!(d.status.as_deref(), Some("success"));
    assert_eq!(
        d.commits,
        vec![
            "7b5a809ab03679215c55926f7d111156ec98b865",
            "7682a248ad73d204eb94d9eab840c6fe41b8963d"
        ]
    );
    assert_eq!(d.description.as_deref(), Some("release 4.2"));

    let minimal = json!({
        "system": "payments-api", "environment": "production",
        "artifact": format!("sha256:{}", "ab".repeat(32)), "time": "2026-07-13T18:26:50Z"
    });
    let d = pipeline::parse_deployment(minimal.to_string().as_bytes(), "ci-payments").unwrap();
    assert_eq!(d.actor, user("ci-payments"));
    assert_eq!(d.id, "");
    assert_eq!(d.status, None);
    assert!(d.commits.is_empty());
    assert_eq!(d.artifact, format!("sha256:{}", "ab".repeat(32)));
}

#[test]
fn deployment_reports_are_refused_field_by_field() {
    let base = json!({
        "system": "payments-api", "environment": "production",
        "artifact": SHA, "time": "2026-07-13T18:26:50Z"
    });
    let refuse = |edit: &dyn Fn(&mut Value)| {
        let mut body = base.clone();
        edit(&mut body);
        pipeline::parse_deployment(body.to_string().as_bytes(), "ci-payments").unwrap_err()
    };

    assert_eq!(
        refuse(&|b| b["time"] = json!("2026-07-13 11:26:52")).to_string(),
        "field `time`: `2026-07-13 11:26:52` has no time zone"
    );
    assert_eq!(
        refuse(&|b| b["system"] = json!("")),
        ParseError::field("system", "is empty")
    );
    assert_eq!(
        refuse(&|b| b["environment"] = json!("  ")),
        ParseError::field("environment", "is empty")
    );
    assert_eq!(
        refuse(&|b| {
            b.as_object_mut().unwrap().remove("time");
        }),
        ParseError::field("time", "is missing")
    );
    assert_eq!(
        refuse(&|b| b["system"] = json!(7)),
        ParseError::field("system", "must be a string, found a number")
    );
    let unknown = refuse(&|b| {
        b["env"] = json!("prod");
        b["approved_by"] = json!("me");
    });
    assert!(
        matches!(&unknown, ParseError::Field { field, .. } if field == "approved_by, env"),
        "{unknown}"
    );
    let impostor = refuse(&|b| b["actor"] = json!("alice"));
    assert!(
        matches!(&impostor, ParseError::Field { field, .. } if field == "actor"),
        "{impostor}"
    );
    // An artifact is whatever the lifecycle accepts: a commit id or digest (in lower case),
    // or any other single printable token, kept as given.
    for (given, read) in [
        ("ABC1234", "abc1234"),
        ("billing-api-certs@2026.1", "billing-api-certs@2026.1"),
        ("sha256:abc", "sha256:abc"),
    ] {
        let mut body = base.clone();
        body["artifact"] = json!(given);
        let d = pipeline::parse_deployment(body.to_string().as_bytes(), "ci").unwrap();
        assert_eq!(d.artifact, read);
    }
    for artifact in ["two words", "tab\there", &"x".repeat(201)] {
        let err = refuse(&|b| b["artifact"] = json!(artifact));
        assert!(
            matches!(&err, ParseError::Field { field, .. } if field == "artifact"),
            "{artifact}: {err}"
        );
    }
    // An abbreviation could name a commit made later to match it.
    let err = refuse(&|b| b["commits"] = json!([&SHA[..12]]));
    assert!(
        matches!(&err, ParseError::Field { field, .. } if field == "commits[0]"),
        "{err}"
    );
    // Look-alikes of a production name cannot pass for another name.
    for env in ["production\u{200b}", "\u{ff50}rod", "prod\u{0301}"] {
        let err = refuse(&|b| b["environment"] = json!(env));
        assert!(
            matches!(&err, ParseError::Field { field, .. } if field == "environment"),
            "{env:?}: {err}"
        );
    }
    let err = refuse(&|b| b["commits"] = json!([SHA, "nope"]));
    assert!(
        matches!(&err, ParseError::Field { field, .. } if field == "commits[1]"),
        "{err}"
    );
    let err = refuse(&|b| b["status"] = json!("done"));
    assert!(
        matches!(&err, ParseError::Field { field, .. } if field == "status"),
        "{err}"
    );

    let repeated = format!(
        r#"{{"system":"a","system":"b","environment":"p","artifact":"{SHA}","time":"{}"}}"#,
        "2026-07-13T18:26:50Z"
    );
    assert_eq!(
        pipeline::parse_deployment(repeated.as_bytes(), "ci"),
        Err(ParseError::field("system", "appears more than once"))
    );
    assert!(matches!(
        pipeline::parse_deployment(b"{\"system\": \"a\"", "ci"),
        Err(ParseError::Json(_))
    ));
    assert_eq!(
        pipeline::parse_deployment(b"[]", "ci"),
        Err(ParseError::field(
            "body",
            "must be a JSON object, found an array"
        ))
    );
    assert!(pipeline::parse_deployment(base.to_string().as_bytes(), "").is_err());
}

#[test]
fn gate_requests_follow_the_same_rules() {
    let body = json!({
        "system": "payments-api", "environment": "production", "artifact": SHA,
        "actor": "alice"
    });
    assert_eq!(
        pipeline::parse_gate_request(body.to_string().as_bytes()),
        Ok(GateRequest {
            system: "payments-api".into(),
            environment: "production".into(),
            artifact: SHA.into(),
            actor: Some("alice".into()),
        })
    );
    let bare = json!({"system": "payments-api", "environment": "production", "artifact": SHA});
    let request = pipeline::parse_gate_request(bare.to_string().as_bytes()).unwrap();
    assert_eq!(request.actor, None);

    let extra = json!({"system": "s", "environment": "e", "artifact": SHA, "status": "success"});
    assert!(matches!(
        pipeline::parse_gate_request(extra.to_string().as_bytes()),
        Err(ParseError::Field { field, .. }) if field == "status"
    ));
    // The gate judges the moment it is asked: a request cannot name another.
    let timed =
        json!({"system": "s", "environment": "e", "artifact": SHA, "time": "2026-07-13T11:26:52Z"});
    assert!(matches!(
        pipeline::parse_gate_request(timed.to_string().as_bytes()),
        Err(ParseError::Field { field, .. }) if field == "time"
    ));
    let padded = json!({"system": " s", "environment": "e", "artifact": SHA});
    assert!(matches!(
        pipeline::parse_gate_request(padded.to_string().as_bytes()),
        Err(ParseError::Field { field, .. }) if field == "system"
    ));
}

// ---------------------------------------------------------------------------------------
// Signatures

#[test]
fn github_signatures_verify_real_bodies_and_refuse_everything_else() {
    let body = fixture("reallyfastci-capture/webhook-pr-close.json");
    let secret = b"hook secret";
    let good = signature::sign_github(secret, &body);
    assert!(good.starts_with("sha256=") && good.len() == 7 + 64);
    assert_eq!(signature::verify_github(secret, Some(&good), &body), Ok(()));
    assert_eq!(
        signature::verify_github(
            secret,
            Some(&good.to_uppercase().replace("SHA256=", "sha256=")),
            &body
        ),
        Ok(())
    );

    let header = signature::GITHUB_HEADER;
    let mut tampered = body.clone();
    tampered[100] ^= 1;
    assert_eq!(
        signature::verify_github(secret, Some(&good), &tampered),
        Err(SignatureError::Mismatch { header })
    );
    assert_eq!(
        signature::verify_github(b"other secret", Some(&good), &body),
        Err(SignatureError::Mismatch { header })
    );
    assert_eq!(
        signature::verify_github(secret, None, &body),
        Err(SignatureError::Missing { header })
    );
    assert_eq!(
        signature::verify_github(secret, Some(" "), &body),
        Err(SignatureError::Missing { header })
    );
    for malformed in [
        good.trim_start_matches("sha256=").to_string(),
        format!("sha1={}", &good[7..47]),
        "sha256=abc".into(),
        format!("sha256={}", "zz".repeat(32)),
    ] {
        let err = signature::verify_github(secret, Some(&malformed), &body).unwrap_err();
        assert!(
            matches!(err, SignatureError::Malformed { .. }),
            "{malformed}: {err}"
        );
    }
    assert_eq!(
        signature::verify_github(b"", Some(&good), &body),
        Err(SignatureError::Unconfigured { header })
    );
    assert_eq!(
        SignatureError::Missing { header }.to_string(),
        "the request has no `X-Hub-Signature-256` header"
    );
}

#[test]
fn gitlab_tokens_are_compared_exactly() {
    let header = signature::GITLAB_HEADER;
    assert_eq!(signature::verify_gitlab("t0ken", Some("t0ken")), Ok(()));
    assert_eq!(
        signature::verify_gitlab("t0ken", Some("t0ken ")),
        Err(SignatureError::Mismatch { header })
    );
    assert_eq!(
        signature::verify_gitlab("t0ken", Some("t0ke")),
        Err(SignatureError::Mismatch { header })
    );
    assert_eq!(
        signature::verify_gitlab("t0ken", None),
        Err(SignatureError::Missing { header })
    );
    assert_eq!(
        signature::verify_gitlab("t0ken", Some("")),
        Err(SignatureError::Missing { header })
    );
    assert_eq!(
        signature::verify_gitlab("", Some("")),
        Err(SignatureError::Unconfigured { header })
    );
}
