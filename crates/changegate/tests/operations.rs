//! Running changegate: users added while the server writes, the policy recorded on
//! restarts only when it changed, an unreachable database, and what `Authorization`
//! headers clients send.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{normal_change, reply, run_bin, text, Backend, DataEnv, TestServer};

crate::on_each_backend! {
    fn users_added_while_serving_act_at_once_and_the_ledger_holds;
    fn restarts_record_the_policy_only_when_it_changes;
    fn bearer_scheme_is_case_insensitive;
}

fn users_added_while_serving_act_at_once_and_the_ledger_holds(backend: Backend) {
    let mut s = TestServer::with_cast(backend);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|_| {
            let (client, stop) = (s.client(), stop.clone());
            let url = s.url("/api/v1/changes");
            let token = s.token("alice").to_string();
            std::thread::spawn(move || {
                let mut created = 0;
                while !stop.load(Ordering::Relaxed) {
                    let r = reply(
                        client
                            .post(&url)
                            .bearer_auth(&token)
                            .json(&normal_change("meanwhile"))
                            .send()
                            .expect("create"),
                    );
                    assert_eq!(r.status, 201, "{}", r.text);
                    created += 1;
                }
                created
            })
        })
        .collect();
    let mut added = Vec::new();
    for n in 0..5 {
        let name = format!("newcomer{n}");
        s.env.add_user(&name, &["engineer"]);
        // The token works at once, without a restart.
        s.get(Some(&name), "/api/v1/changes").expect(200);
        added.push(name);
    }
    stop.store(true, Ordering::Relaxed);
    let created: u32 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(created > 0);
    // A newcomer can be named to build a change and plan it.
    let id = s.create_ok("alice", &normal_change("for a newcomer"));
    s.act_ok(
        "frank",
        &id,
        &serde_json::json!({"action": "evaluate", "risk": "low", "priority": "low"}),
    );
    s.act_ok(
        "grace",
        &id,
        &serde_json::json!({"action": "authorize", "assignee": "newcomer3"}),
    );
    s.act_ok(
        "newcomer3",
        &id,
        &serde_json::json!({"action": "plan", "implementation_plan": "p", "test_plan": "t"}),
    );
    s.kill9();
    let summary = s.env.assert_verifies();
    let users = common::CAST.len() + added.len();
    assert!(
        summary.contains(&format!("{users} users and {} changes", created + 1)),
        "{summary}"
    );
}

fn restarts_record_the_policy_only_when_it_changes(backend: Backend) {
    let env = DataEnv::with_cast(backend);
    let policy = env.scratch().join("policy.toml");
    std::fs::write(&policy, "emergency_approval_window_hours = 24\n").unwrap();
    let mut s = TestServer::start(env);
    let first = s.ledger_size();
    s.restart();
    assert_eq!(s.ledger_size(), first, "the same policy was recorded again");
    let env = s.into_env();
    let mut s = TestServer::start_with(env, &["--policy", policy.to_str().unwrap()]);
    assert_eq!(
        s.ledger_size(),
        first + 1,
        "the new policy was not recorded"
    );
    let entry = s.get(Some("olivia"), &format!("/api/v1/ledger/entries/{first}"));
    let canonical: serde_json::Value =
        serde_json::from_str(entry.expect(200)["canonical"].as_str().unwrap()).unwrap();
    assert_eq!(canonical["kind"], "policy.activated");
    assert_eq!(canonical["actor"], "changegate-server");
    assert_eq!(
        canonical["payload"]["policy"]["emergency_approval_window_hours"],
        24
    );
    s.restart();
    assert_eq!(s.ledger_size(), first + 1);
    // Back to the default policy: recorded again, since it differs from the last one.
    let env = s.into_env();
    let s = TestServer::start(env);
    assert_eq!(s.ledger_size(), first + 2);
}

fn bearer_scheme_is_case_insensitive(backend: Backend) {
    let s = TestServer::with_cast(backend);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let header = format!("{scheme} {}", s.token("alice"));
        let r = s.get_with_auth(&header, "/api/v1/changes");
        assert_eq!(r.status, 200, "`{scheme}`: {}", r.text);
    }
}

#[test]
fn unreachable_database_fails_without_echoing_its_password() {
    let env = DataEnv::new(Backend::Sqlite);
    // Nothing listens on a port just released.
    let port = common::free_port();
    let url = format!("postgres://cg:s3cr3t-pw@127.0.0.1:{port}/nowhere");
    let data = env.data.display().to_string();
    for args in [
        vec!["users", "add", "alice", "--role", "requester"],
        vec!["verify"],
        vec!["serve", "--listen", "127.0.0.1:0"],
    ] {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--data".to_string(),
            data.clone(),
            "--database-url".into(),
            url.clone(),
        ]);
        let out = run_bin(all);
        assert!(
            !out.status.success(),
            "{args:?} succeeded without a database"
        );
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!said.is_empty(), "{args:?} failed silently");
        assert!(
            !said.contains("s3cr3t-pw"),
            "{args:?} printed the database password: {said}"
        );
    }
    // An unknown scheme is refused too, by name.
    let out = run_bin([
        "users".to_string(),
        "list".into(),
        "--data".into(),
        data,
        "--database-url".into(),
        "mysql://root:hunter2@127.0.0.1/x".into(),
    ]);
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(!said.contains("hunter2"), "{said}");
}
