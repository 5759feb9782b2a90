//! `changegate reconcile` end to end on real git repositories built here and change records
//! written through the lifecycle service: one commit per attribute (direct push, merge and
//! squash commits, self-approval, stale approval, a co-author approving, a revert, a bot
//! commit covered by a standing change, emergency changes approved in time and late), each
//! with its exact verdict; the population matching `git rev-list`, and a warning when a
//! back-dated commit ends it early.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use domain::{Action, Actor, NewChange, Policy, Role};
use serde_json::{json, Value};
use server::service::Service;
use time::OffsetDateTime;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_changegate")
}

fn t(s: &str) -> OffsetDateTime {
    domain::action::parse_instant("t", s).unwrap()
}

/// A git repository driven through the git command line, with fixed dates and people.
struct Repo {
    dir: PathBuf,
}

impl Repo {
    fn new(dir: &Path) -> Repo {
        std::fs::create_dir_all(dir).unwrap();
        let repo = Repo {
            dir: dir.to_path_buf(),
        };
        repo.git(
            &["init", "-q", "-b", "main"],
            "alice",
            "2026-04-30T00:00:00Z",
        );
        repo
    }

    fn git(&self, args: &[&str], who: &str, at: &str) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", who)
            .env("GIT_AUTHOR_EMAIL", format!("{who}@corp.example"))
            .env("GIT_COMMITTER_NAME", who)
            .env("GIT_COMMITTER_EMAIL", format!("{who}@corp.example"))
            .env("GIT_AUTHOR_DATE", at)
            .env("GIT_COMMITTER_DATE", at)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A commit of one new file on the current branch; returns its id.
    fn commit(&self, who: &str, at: &str, message: &str) -> String {
        let name = format!("f{}", self.git(&["rev-list", "--all", "--count"], who, at));
        std::fs::write(self.dir.join(&name), message).unwrap();
        self.git(&["add", &name], who, at);
        self.git(&["commit", "-q", "-m", message], who, at);
        self.head()
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"], "alice", "2026-01-01T00:00:00Z")
    }

    /// Work on a branch merged into main with a merge commit made by `merger`.
    fn merged_branch(
        &self,
        branch: &str,
        commits: &[(&str, &str, &str)],
        merger: &str,
        at: &str,
        subject: &str,
    ) -> String {
        self.git(&["checkout", "-q", "-b", branch, "main"], merger, at);
        for (who, when, msg) in commits {
            self.commit(who, when, msg);
        }
        self.git(&["checkout", "-q", "main"], merger, at);
        self.git(
            &["merge", "-q", "--no-ff", "-m", subject, branch],
            merger,
            at,
        );
        self.head()
    }
}

struct Records {
    service: Service,
}

fn person(name: &str, roles: &[Role]) -> Actor {
    Actor {
        name: name.into(),
        roles: roles.to_vec(),
        groups: vec![],
        machine: false,
    }
}

impl Records {
    fn cast() -> HashMap<&'static str, Actor> {
        HashMap::from([
            ("alice", person("alice", &[Role::Requester])),
            ("bob", person("bob", &[Role::Engineer])),
            ("carol", person("carol", &[Role::PeerReviewer])),
            ("dave", person("dave", &[Role::PeerReviewer])),
            (
                "erin",
                person("erin", &[Role::ChangeManager, Role::CabMember]),
            ),
            ("tess", person("tess", &[Role::Tester])),
            ("gina", person("gina", &[Role::ReleaseManager])),
        ])
    }

    fn create(&self, title: &str, change_type: &str, at: &str) -> String {
        let new: NewChange = serde_json::from_value(json!({
            "title": title, "type": change_type, "category": "application",
            "systems": ["payments"]
        }))
        .unwrap();
        let cast = Records::cast();
        self.service
            .create_blocking(&cast["alice"], new, t(at))
            .unwrap_or_else(|e| panic!("{title}: {e}"))
            .id
    }

    fn act(&self, id: &str, who: &str, at: &str, action: Value) {
        let action: Action = serde_json::from_value(action).unwrap();
        let cast = Records::cast();
        self.service
            .act_blocking(&cast[who], id, action, t(at))
            .unwrap_or_else(|e| panic!("{id} {who} at {at}: {e}"));
    }

    /// A normal change authorized on `day` at 09:00 for bob, planned, reviewed by
    /// `reviewer` at `review_at`, tested an hour after.
    fn reviewed(&self, title: &str, day: &str, reviewer: &str, review_at: &str) -> String {
        let id = self.create(title, "normal", &format!("{day}T08:00:00Z"));
        self.act(
            &id,
            "erin",
            &format!("{day}T08:30:00Z"),
            json!({"action": "evaluate", "risk": "medium", "priority": "medium"}),
        );
        self.act(
            &id,
            "erin",
            &format!("{day}T09:00:00Z"),
            json!({"action": "authorize", "assignee": "bob"}),
        );
        self.act(
            &id,
            "bob",
            &format!("{day}T09:10:00Z"),
            json!({"action": "plan", "implementation_plan": "p", "test_plan": "t"}),
        );
        self.act(
            &id,
            reviewer,
            review_at,
            json!({"action": "peer_review", "decision": "approved"}),
        );
        let tested = domain::action::format_instant(t(review_at) + time::Duration::hours(1));
        self.act(
            &id,
            "tess",
            &tested,
            json!({"action": "test", "result": "passed", "evidence": "ci"}),
        );
        id
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("changegate runs")
}

fn rev_list(repo: &Path, range: &[&str]) -> String {
    let out = Command::new("git")
        .args(["rev-list", "--first-parent"])
        .args(range)
        .arg("main")
        .current_dir(repo)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_attribute_gets_its_exact_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(&tmp.path().join("repo"));
    let data = tmp.path().join("data");
    let policy_file = tmp.path().join("policy.toml");
    // Standard changes here are pre-approved dependency updates: no review or test of their own.
    std::fs::write(
        &policy_file,
        "[[models]]\ntype = \"standard\"\nskip = [\"authorized\", \"peer_reviewed\", \"tested\"]\n",
    )
    .unwrap();
    let policy = Policy::from_toml(&std::fs::read_to_string(&policy_file).unwrap()).unwrap();
    let records = Records {
        service: Service::new(store::open(&data, None).unwrap(), policy),
    };

    // 1. A direct push nobody authorized.
    let direct = repo.commit("alice", "2026-05-01T07:00:00Z", "Tweak the timeout");
    // 2. A merge commit of reviewed work.
    let ok_id = records.reviewed("Refunds", "2026-05-01", "carol", "2026-05-02T12:00:00Z");
    let merge_ok = repo.merged_branch(
        "bob/CHG-000001-refunds",
        &[("bob", "2026-05-02T10:00:00Z", "Add refunds")],
        "alice",
        "2026-05-02T14:00:00Z",
        "Merge pull request #12 from bob/CHG-000001-refunds",
    );
    // 3. The reviewer wrote code of the change: a self-approval.
    let self_id = records.reviewed(
        "Ledger export",
        "2026-05-03",
        "carol",
        "2026-05-03T12:00:00Z",
    );
    let merge_self = repo.merged_branch(
        "bob/CHG-000002",
        &[
            ("bob", "2026-05-03T10:00:00Z", "Export"),
            ("carol", "2026-05-03T11:00:00Z", "Fix export"),
        ],
        "alice",
        "2026-05-03T14:00:00Z",
        "Merge pull request #13 from bob/CHG-000002",
    );
    // 4. A commit pushed after the review: the approval is stale.
    let stale_id = records.reviewed("Fees", "2026-05-04", "carol", "2026-05-04T10:30:00Z");
    let merge_stale = repo.merged_branch(
        "bob/CHG-000003",
        &[
            ("bob", "2026-05-04T10:00:00Z", "Fees"),
            ("bob", "2026-05-04T11:00:00Z", "More fees"),
        ],
        "alice",
        "2026-05-04T14:00:00Z",
        "Merge pull request #14 from bob/CHG-000003",
    );
    // 5. The reviewer is a co-author of the change's commit.
    let coauthor_id = records.reviewed("Receipts", "2026-05-05", "dave", "2026-05-05T12:00:00Z");
    let squash_coauthor = repo.commit(
        "bob",
        "2026-05-05T13:00:00Z",
        "CHG-000004 Receipts (#15)\n\nCo-authored-by: dave <dave@corp.example>",
    );
    // 6. A squash merge of reviewed work, then its revert, pushed straight to the branch. The
    // revert is tied to the change it reverts, and is itself a change to production that
    // nobody reviewed: the earlier review is of other content.
    let squash_id = records.reviewed("Audit log", "2026-05-06", "carol", "2026-05-06T12:00:00Z");
    repo.git(&["checkout", "-q", "main"], "bob", "2026-05-06T13:00:00Z");
    let squash_ok = repo.commit(
        "bob",
        "2026-05-06T11:00:00Z",
        "CHG-000005: Add audit log (#16)",
    );
    repo.git(
        &["revert", "--no-edit", &squash_ok],
        "bob",
        "2026-05-07T09:00:00Z",
    );
    let revert = repo.head();
    // 7. A dependency bot's commit under a standing standard change.
    let standing = records.create(
        "Dependency patch updates",
        "standard",
        "2026-04-01T08:00:00Z",
    );
    let bot = repo.commit(
        "dependabot[bot]",
        "2026-05-08T07:00:00Z",
        "Bump serde from 1.0.210 to 1.0.211",
    );
    // 8. Emergency changes: approved after the fact in time, and too late.
    let emergency = |title: &str, day: &str, approve_at: &str| {
        let id = records.create(title, "emergency", &format!("{day}T08:00:00Z"));
        records.act(
            &id,
            "gina",
            &format!("{day}T08:20:00Z"),
            json!({"action": "implement", "environment": "production", "artifact": "hotfix"}),
        );
        records.act(
            &id,
            "erin",
            approve_at,
            json!({"action": "approve_retroactively"}),
        );
        id
    };
    let em_ok = emergency("Card outage INC-1", "2026-05-09", "2026-05-09T20:00:00Z");
    let em_ok_commit = repo.commit(
        "bob",
        "2026-05-09T08:10:00Z",
        &format!("{em_ok} stop card retries"),
    );
    let em_late = emergency("Ledger outage INC-2", "2026-05-10", "2026-05-15T09:00:00Z");
    let em_late_commit = repo.commit(
        "bob",
        "2026-05-10T08:10:00Z",
        &format!("{em_late} restart ledger"),
    );
    // A commit after the period: outside the population.
    repo.commit("alice", "2026-06-02T07:00:00Z", "Later work");
    drop(records);

    let config = tmp.path().join("changegate.toml");
    std::fs::write(
        &config,
        format!("[reconcile]\nstanding_changes = [{{ change = \"{standing}\", authors = [\"dependabot[bot]\"] }}]\n"),
    )
    .unwrap();
    let report_file = tmp.path().join("report.json");
    let csv_file = tmp.path().join("report.csv");
    let out = run(&[
        "reconcile",
        "--repo",
        repo.dir.to_str().unwrap(),
        "--branch",
        "main",
        "--since",
        "2026-05-01",
        "--until",
        "2026-05-31",
        "--data",
        data.to_str().unwrap(),
        "--policy",
        policy_file.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--as-of",
        "2026-06-01T00:00:00Z",
        "--json",
        report_file.to_str().unwrap(),
        "--csv",
        csv_file.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
    let verdicts: HashMap<String, (String, Value, Value)> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["commit"].as_str().unwrap().to_string(),
                (
                    e["verdict"].as_str().unwrap().to_string(),
                    e["exceptions"].clone(),
                    e["change"].clone(),
                ),
            )
        })
        .collect();
    let expect = |commit: &str, verdict: &str, codes: Value, change: Option<&str>| {
        let got = &verdicts[commit];
        assert_eq!(
            (got.0.as_str(), &got.1, &got.2),
            (verdict, &codes, &change.map_or(Value::Null, |c| json!(c))),
            "commit {commit}: {:#}",
            report["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["commit"] == commit)
                .unwrap()
        );
    };
    expect(&direct, "unauthorized", json!(["no_change_record"]), None);
    expect(&merge_ok, "ok", json!([]), Some(&ok_id));
    expect(
        &merge_self,
        "exception",
        json!(["no_independent_review", "approved_by_contributor"]),
        Some(&self_id),
    );
    expect(
        &merge_stale,
        "exception",
        json!(["no_independent_review", "stale_approval"]),
        Some(&stale_id),
    );
    expect(
        &squash_coauthor,
        "exception",
        json!(["no_independent_review", "approved_by_contributor"]),
        Some(&coauthor_id),
    );
    expect(&squash_ok, "ok", json!([]), Some(&squash_id));
    expect(
        &revert,
        "exception",
        json!(["no_independent_review", "stale_approval"]),
        Some(&squash_id),
    );
    let revert_row = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["commit"] == revert.as_str())
        .unwrap();
    assert_eq!(revert_row["reverts"], json!(squash_ok));
    expect(&bot, "ok", json!([]), Some(&standing));
    expect(&em_ok_commit, "ok", json!([]), Some(&em_ok));
    expect(
        &em_late_commit,
        "exception",
        json!(["emergency_approved_late"]),
        Some(&em_late),
    );

    // Population: the same commits, and the same bytes, as git's own first-parent list.
    let listed = rev_list(
        &repo.dir,
        &[
            "--since=2026-05-01T00:00:00Z",
            "--until=2026-05-31T23:59:59Z",
        ],
    );
    assert_eq!(report["population"]["count"], listed.lines().count());
    use sha2::Digest;
    assert_eq!(
        report["population"]["sha256"],
        hex::encode(sha2::Sha256::digest(listed.as_bytes()))
    );
    assert_eq!(report["warnings"], json!([]));
    assert_eq!(report["summary"]["events"], 10);
    assert_eq!(report["summary"]["unauthorized"], 1);
    assert_eq!(report["summary"]["exceptions"], 5);
    assert_eq!(report["summary"]["matched"], 9);
    assert!(stdout.contains("unauthorized: 1"), "{stdout}");
    let csv = std::fs::read_to_string(&csv_file).unwrap();
    assert!(csv.starts_with("\u{feff}commit,change,verdict"), "{csv}");
    assert_eq!(csv.lines().count(), 11);
}

#[test]
fn a_back_dated_commit_that_ends_the_population_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(&tmp.path().join("repo"));
    repo.commit("alice", "2026-04-20T07:00:00Z", "Before the period");
    repo.commit("alice", "2026-05-02T07:00:00Z", "Early May");
    let parent = repo.commit("alice", "2026-05-05T07:00:00Z", "Still May");
    // A commit whose committer clock said 2019: git's `--since` walk ends here.
    let back = repo.commit("bob", "2019-03-01T10:00:00Z", "Hotfix from a bad clock");
    let kept = [
        repo.commit("alice", "2026-05-12T07:00:00Z", "Mid May"),
        repo.commit("alice", "2026-05-20T07:00:00Z", "Late May"),
    ];
    let report_file = tmp.path().join("report.json");
    let out = run(&[
        "reconcile",
        "--repo",
        repo.dir.to_str().unwrap(),
        "--branch",
        "main",
        "--since",
        "2026-05-01",
        "--until",
        "2026-05-31",
        "--as-of",
        "2026-06-01T00:00:00Z",
        "--json",
        report_file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning:"))
        .unwrap_or_else(|| panic!("no warning on stderr: {stderr}"));
    for part in [
        back.as_str(),
        "2019-03-01T10:00:00Z",
        parent.as_str(),
        "2026-05-05T07:00:00Z",
        "outside this population",
        "without --since",
    ] {
        assert!(warning.contains(part), "`{part}` missing: {warning}");
    }

    // The population is still git's: the two commits in front of the back-dated one.
    let report: Value = serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
    let listed = rev_list(
        &repo.dir,
        &[
            "--since=2026-05-01T00:00:00Z",
            "--until=2026-05-31T23:59:59Z",
        ],
    );
    let mut newest_first = kept.to_vec();
    newest_first.reverse();
    assert_eq!(listed.lines().collect::<Vec<_>>(), newest_first);
    assert_eq!(report["population"]["count"], 2);
    use sha2::Digest;
    assert_eq!(
        report["population"]["sha256"],
        hex::encode(sha2::Sha256::digest(listed.as_bytes()))
    );
    let warnings = report["warnings"].as_array().expect("a warnings array");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["code"], "population_dates_out_of_order");
    let message = warnings[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&back) && message.contains(&parent),
        "{message}"
    );
    assert_eq!(format!("warning: {message}"), warning);

    // A period that starts after the parent: the walk ends where it should, and says nothing.
    let out = run(&[
        "reconcile",
        "--repo",
        repo.dir.to_str().unwrap(),
        "--branch",
        "main",
        "--since",
        "2026-05-10",
        "--json",
        report_file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning:"), "{stderr}");
    let report: Value = serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
    assert_eq!(report["warnings"], json!([]));
    assert_eq!(report["population"]["count"], 2);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let not_repo = tmp.path().join("plain");
    std::fs::create_dir(&not_repo).unwrap();
    let out = run(&[
        "reconcile",
        "--repo",
        not_repo.to_str().unwrap(),
        "--branch",
        "main",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a git repository") || err.contains("not a repository"),
        "{err}"
    );

    let repo = Repo::new(&tmp.path().join("repo"));
    repo.commit("alice", "2026-05-01T07:00:00Z", "one");
    let out = run(&[
        "reconcile",
        "--repo",
        repo.dir.to_str().unwrap(),
        "--branch",
        "trunk",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("trunk") && err.contains("main"),
        "names the branch and what exists: {err}"
    );

    let out = run(&[
        "reconcile",
        "--repo",
        repo.dir.to_str().unwrap(),
        "--branch",
        "main",
        "--since",
        "2026-06-01",
        "--until",
        "2026-05-01",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("before --since"));
    let out = run(&[
        "reconcile",
        "--repo",
        repo.dir.to_str().unwrap(),
        "--branch",
        "main",
        "--since",
        "01/05/2026",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
}

/// A pipeline stops on unauthorized production changes with `--fail-on`; the reports are
/// written all the same.
#[test]
fn fail_on_exits_1_when_the_population_holds_what_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(&tmp.path().join("repo"));
    repo.commit("alice", "2026-05-02T07:00:00Z", "Pushed straight to main");
    let report_file = tmp.path().join("report.json");
    let reconcile = |extra: &[&str]| {
        let mut args = vec![
            "reconcile",
            "--repo",
            repo.dir.to_str().unwrap(),
            "--branch",
            "main",
            "--since",
            "2026-05-01",
            "--until",
            "2026-05-31",
            "--as-of",
            "2026-06-01T00:00:00Z",
            "--json",
            report_file.to_str().unwrap(),
        ];
        args.extend(extra);
        run(&args)
    };
    assert!(reconcile(&[]).status.success());
    for verdict in ["unauthorized", "exception"] {
        std::fs::remove_file(&report_file).ok();
        let out = reconcile(&["--fail-on", verdict]);
        assert_eq!(out.status.code(), Some(1), "{verdict}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("failing: 1 event(s)"));
        assert!(report_file.is_file(), "the report is written first");
    }
    let out = reconcile(&["--fail-on", "everything"]);
    assert_eq!(out.status.code(), Some(2));
}
