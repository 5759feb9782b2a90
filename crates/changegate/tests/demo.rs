//! `changegate demo`: a past quarter of changes that verifies, covers every type and
//! category with reworks, rejections, cancellations and a rollback, and shows the
//! emergency-change control exceptions through `GET /api/v1/exceptions`.

mod common;

use std::collections::BTreeSet;

use common::{text, Backend, DataEnv, TestServer};
use serde_json::Value;

crate::on_each_backend! {
    fn demo_quarter_verifies_and_covers_the_lifecycle;
    fn demo_emergency_exceptions_are_listed;
    fn demo_runs_once_and_only_on_its_own_data;
}

/// Fills a fresh data directory with the demo and returns it with the demo's tokens.
fn demo_env(backend: Backend) -> (DataEnv, String) {
    let mut env = DataEnv::new(backend);
    let out = env.cli(&["demo"]);
    assert!(out.status.success(), "demo failed: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let tokens = std::fs::read_to_string(env.data.join("demo-tokens.txt")).expect("token file");
    for line in tokens.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "token line {line:?}");
        env.remember_token(fields[0], fields[2]);
    }
    (env, stdout)
}

fn demo_quarter_verifies_and_covers_the_lifecycle(backend: Backend) {
    let (env, stdout) = demo_env(backend);
    assert!(stdout.contains("demo quarter recorded"), "{stdout}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.data.join("demo-tokens.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the token file is readable by others");
    }
    let summary = env.assert_verifies();
    assert_eq!(summary.trim().lines().count(), 1, "{summary}");
    assert!(summary.starts_with("ledger intact:"), "{summary}");

    let s = TestServer::start(env);
    let changes = s.list_all("");
    assert!(changes.len() >= 80, "only {} changes", changes.len());
    let expected_ids: Vec<String> = (1..=changes.len()).map(|n| format!("CHG-{n:06}")).collect();
    let ids: Vec<String> = changes
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected_ids, "ids are not allocated in order");
    let types: BTreeSet<&str> = changes
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        BTreeSet::from(["emergency", "normal", "standard"]),
        "change types"
    );
    let categories: BTreeSet<&str> = changes
        .iter()
        .map(|c| c["category"].as_str().unwrap())
        .collect();
    assert_eq!(
        categories,
        BTreeSet::from(["application", "configuration", "database", "infrastructure"])
    );
    let stages: BTreeSet<&str> = changes
        .iter()
        .map(|c| c["stage"].as_str().unwrap())
        .collect();
    for stage in ["closed", "rejected", "cancelled"] {
        assert!(stages.contains(stage), "no {stage} change among {stages:?}");
    }
    // The story of each change, from its full view.
    let views: Vec<Value> = ids.iter().map(|id| s.change(id)).collect();
    let reworked = views
        .iter()
        .filter(|v| v["change"]["reworks"].as_u64().unwrap() > 0)
        .count();
    assert!(reworked > 0, "no change was reworked");
    let rolled_back: Vec<&Value> = views
        .iter()
        .filter(|v| v["change"]["rolled_back"] == true)
        .collect();
    assert!(!rolled_back.is_empty(), "no change was rolled back");
    for v in &rolled_back {
        let kinds: Vec<&str> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"change.roll_back"), "{kinds:?}");
        assert_eq!(v["change"]["outcome"], "failed");
    }
    let deferred = views.iter().any(|v| {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "change.defer")
    });
    assert!(deferred, "no change was deferred");
    let machine_deploys = views
        .iter()
        .filter(|v| v["change"]["deployment"]["by"] == "deploy-bot")
        .count();
    assert!(machine_deploys > 0, "the pipeline never deployed");
    // Each view is the same history the ledger holds.
    for v in &views {
        assert_eq!(
            v["version"].as_u64().unwrap(),
            v["events"].as_array().unwrap().len() as u64
        );
    }
    // The quarter is in the past.
    let last = views
        .iter()
        .map(|v| v["change"]["updated_at"].as_str().unwrap().to_string())
        .max()
        .unwrap();
    assert!(
        last.as_str() < common::minutes_from_now(0).as_str(),
        "{last}"
    );
}

fn demo_emergency_exceptions_are_listed(backend: Backend) {
    let (env, _) = demo_env(backend);
    let s = TestServer::start(env);
    let r = s.get(Some("olivia"), "/api/v1/exceptions");
    let all = r.expect(200)["exceptions"].as_array().unwrap().clone();
    let found: BTreeSet<(String, String)> = all
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        found.contains(&("emergency_not_approved_in_time".into(), "open".into())),
        "{found:?}"
    );
    assert!(
        found.contains(&("emergency_approved_late".into(), "late".into())),
        "{found:?}"
    );
    for e in &all {
        let id = e["change"].as_str().unwrap();
        let view = s.change(id);
        assert_eq!(view["change"]["type"], "emergency", "{e}");
        assert_eq!(view["change"]["deployment"]["before_approval"], true);
        // The change's own view shows the same exception.
        assert!(
            view["exceptions"].as_array().unwrap().contains(e),
            "{id}: {}",
            view["exceptions"]
        );
        let due = e["due"].as_str().unwrap();
        let deployed = view["change"]["deployment"]["at"].as_str().unwrap();
        assert!(due > deployed, "due {due} before deployment {deployed}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        if e["status"] == "open" {
            // Still unapproved, so still open.
            assert_ne!(view["stage"], "closed");
        }
    }
    // Emergency changes approved in time are not exceptions.
    let emergencies = s.list_all("&type=emergency");
    assert!(
        emergencies.len() > all.len(),
        "every emergency change is an exception"
    );
    // Filtering by status.
    for status in ["open", "late"] {
        let r = s.get(
            Some("olivia"),
            &format!("/api/v1/exceptions?status={status}"),
        );
        let list = r.expect(200)["exceptions"].as_array().unwrap().clone();
        assert!(!list.is_empty());
        assert!(list.iter().all(|e| e["status"] == status));
        let expected: Vec<&Value> = all.iter().filter(|e| e["status"] == status).collect();
        assert_eq!(list.iter().collect::<Vec<_>>(), expected);
    }
    s.get(Some("olivia"), "/api/v1/exceptions?status=closed")
        .expect_error(422, "invalid_query");
    s.get(Some("olivia"), "/api/v1/exceptions?owner=me")
        .expect_error(422, "invalid_query");
    s.get(None, "/api/v1/exceptions")
        .expect_error(401, "unauthenticated");
}

fn demo_runs_once_and_only_on_its_own_data(backend: Backend) {
    let (env, _) = demo_env(backend.clone());
    let before = env.verify_summary();
    let again = env.cli(&["demo"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("already present"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(env.verify_summary(), before);

    // A data directory that holds someone's real ledger is left alone.
    let mut other = DataEnv::new(backend);
    other.add_user("alice", &["requester"]);
    let before = other.verify_summary();
    let out = other.cli(&["demo"]);
    assert!(!out.status.success(), "demo wrote over a real ledger");
    assert!(
        text(&out.stderr).contains("not the demo"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(other.verify_summary(), before);
    assert!(!other.data.join("demo-tokens.txt").exists());
}
