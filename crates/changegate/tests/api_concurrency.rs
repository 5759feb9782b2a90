//! Optimistic concurrency over HTTP: a stale `expected_version` is refused, concurrent
//! attempts at the same action let exactly one through, concurrent requests get distinct
//! ids, and concurrent lifecycles leave a ledger that verifies.

mod common;

use std::sync::{Arc, Barrier};

use common::{
    minutes_from_now, normal_change, reply, run_actions, to_approved, to_closed, Backend, Reply,
    TestServer,
};
use serde_json::{json, Value};

const THREADS: usize = 16;

crate::on_each_backend! {
    fn stale_expected_version_is_refused;
    fn racing_the_same_action_lets_exactly_one_through;
    fn racing_with_expected_version_refuses_the_losers_as_conflicts;
    fn concurrent_requests_get_distinct_consecutive_ids;
    fn concurrent_lifecycles_on_different_changes_all_complete;
    fn lost_races_are_reported_as_conflicts;
}

fn stale_expected_version_is_refused(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let id = s.create_ok("alice", &normal_change("versioned"));
    let size = s.ledger_size();
    for stale in [0, 2, 99] {
        let r = s.act(
            "frank",
            &id,
            &json!({"action": "evaluate", "risk": "low", "priority": "low",
                    "expected_version": stale}),
        );
        r.expect_error(409, "version_conflict");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&id), "{message}");
    }
    assert_eq!(s.ledger_size(), size);
    assert_eq!(s.change(&id)["version"], 1);
    let r = s.act_ok(
        "frank",
        &id,
        &json!({"action": "evaluate", "risk": "low", "priority": "low", "expected_version": 1}),
    );
    assert_eq!(r["version"], 2);
    // `null` means no expectation.
    let r = s.act_ok(
        "grace",
        &id,
        &json!({"action": "authorize", "assignee": "bob", "expected_version": null}),
    );
    assert_eq!(r["version"], 3);
}

/// Sends `action` as `user` on `id` from [`THREADS`] threads released together.
fn race(s: &TestServer, user: &str, id: &str, action: &Value) -> Vec<Reply> {
    let barrier = Arc::new(Barrier::new(THREADS));
    let url = s.url(&format!("/api/v1/changes/{id}/actions"));
    let token = s.token(user).to_string();
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let barrier = barrier.clone();
            let client = s.client();
            let (url, token, body) = (url.clone(), token.clone(), action.to_string());
            let health = s.url("/healthz");
            std::thread::spawn(move || {
                // Open the connection before the start line.
                let _ = client.get(health).send();
                barrier.wait();
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .expect("racing request");
                reply(response)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("racing thread"))
        .collect()
}

/// Checks that a change's events form one unbroken history.
fn assert_contiguous(s: &TestServer, id: &str) -> Value {
    let view = s.change(id);
    let events = view["events"].as_array().unwrap();
    assert_eq!(
        view["version"].as_u64().unwrap(),
        events.len() as u64,
        "version and event count differ"
    );
    let mut stage = "requested";
    let mut seq = None;
    for e in events {
        assert_eq!(
            e["payload"]["stage_from"], stage,
            "an event did not start where the previous one ended: {e}"
        );
        stage = e["payload"]["stage_to"].as_str().unwrap();
        let this = e["seq"].as_u64().unwrap();
        assert!(seq.is_none_or(|s| this > s), "seq out of order");
        seq = Some(this);
    }
    assert_eq!(view["stage"], stage);
    view
}

fn racing_the_same_action_lets_exactly_one_through(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let id = s.create_ok("alice", &normal_change("contested"));
    let size = s.ledger_size();
    let replies = race(
        &s,
        "frank",
        &id,
        &json!({"action": "evaluate", "risk": "medium", "priority": "low"}),
    );
    let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(ok.len(), 1, "{:#?}", replies);
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 409, "{}", r.text);
        assert!(
            ["version_conflict", "stage_order"].contains(&r.code()),
            "{}",
            r.text
        );
    }
    assert_eq!(ok[0].body["version"], 2);
    assert_eq!(s.ledger_size(), size + 1);
    let view = assert_contiguous(&s, &id);
    assert_eq!(view["version"], 2);
    assert_eq!(view["stage"], "evaluated");
}

fn racing_with_expected_version_refuses_the_losers_as_conflicts(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let id = s.create_ok("alice", &normal_change("contested, versioned"));
    s.act_ok(
        "frank",
        &id,
        &json!({"action": "evaluate", "risk": "low", "priority": "low"}),
    );
    let size = s.ledger_size();
    // An action that a second attempt would not refuse by stage: amendments.
    let replies = race(
        &s,
        "alice",
        &id,
        &json!({"action": "amend", "description": "raced", "expected_version": 2}),
    );
    let winners = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(winners, 1, "{:#?}", replies);
    for r in replies.iter().filter(|r| r.status != 200) {
        r.expect_error(409, "version_conflict");
    }
    assert_eq!(s.ledger_size(), size + 1);
    let view = assert_contiguous(&s, &id);
    assert_eq!(view["version"], 3);
    assert_eq!(view["change"]["description"], "raced");
}

fn concurrent_requests_get_distinct_consecutive_ids(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let size = s.ledger_size();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let barrier = barrier.clone();
            let client = s.client();
            let url = s.url("/api/v1/changes");
            let token = s.token("alice").to_string();
            std::thread::spawn(move || {
                barrier.wait();
                reply(
                    client
                        .post(url)
                        .bearer_auth(token)
                        .json(&normal_change(&format!("parallel {i}")))
                        .send()
                        .expect("create"),
                )
            })
        })
        .collect();
    let mut ids: Vec<String> = handles
        .into_iter()
        .map(|h| {
            let r = h.join().unwrap();
            assert_eq!(r.status, 201, "{}", r.text);
            r.body["id"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort();
    let expected: Vec<String> = (1..=THREADS).map(|n| format!("CHG-{n:06}")).collect();
    assert_eq!(ids, expected);
    assert_eq!(s.ledger_size(), size + THREADS as u64);
    let listed: Vec<String> = s
        .list_all("")
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, expected);
    for id in &ids {
        let view = s.change(id);
        assert_eq!(view["version"], 1);
        assert_eq!(view["events"][0]["payload"]["action"]["action"], "request");
        let title = view["change"]["title"].as_str().unwrap();
        assert!(title.starts_with("parallel "), "{title}");
    }
}

fn concurrent_lifecycles_on_different_changes_all_complete(backend: Backend) {
    let s = Arc::new(TestServer::with_cast(backend));
    let size = s.ledger_size();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                let id = s.create_ok("alice", &normal_change(&format!("lifecycle {i}")));
                let mut steps = to_approved(&minutes_from_now(-1), &minutes_from_now(60));
                steps.extend(to_closed());
                run_actions(&s, &id, &steps);
                id
            })
        })
        .collect();
    let ids: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for id in &ids {
        let view = assert_contiguous(&s, id);
        assert_eq!(view["stage"], "closed");
        assert_eq!(view["version"], 11);
    }
    assert_eq!(s.ledger_size(), size + 8 * 11);
    // The ledger verifies while the server is still running.
    let summary = s.env.assert_verifies();
    assert!(summary.contains("8 changes"), "{summary}");
}

/// A request that loses a race learns that the change moved on (a version conflict, or
/// the stage the change is in now), not that its own action was dated before the change's
/// last event: the server, not the client, chose that date. The wrong code shows only when
/// a request read the clock before the winner did and loaded the change after the winner
/// committed, so this races many times, with busy threads that make the server's threads
/// lose the CPU at arbitrary points. It is probabilistic: a pass proves little, a failure
/// shows the bug.
fn lost_races_are_reported_as_conflicts(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..60 {
        let id = s.create_ok("alice", &normal_change(&format!("race {round}")));
        let replies = race(
            &s,
            "frank",
            &id,
            &json!({"action": "evaluate", "risk": "low", "priority": "low"}),
        );
        for r in replies.iter().filter(|r| r.status != 200) {
            *codes.entry(r.code().to_string()).or_default() += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in spinners {
        h.join().unwrap();
    }
    assert!(
        !codes.contains_key("time_before_last_event"),
        "refusal codes of the losers: {codes:?}"
    );
}
