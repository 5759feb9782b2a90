//! Crash durability: clients fire requests and actions from several threads, the server is
//! killed with SIGKILL in the middle of it, restarted on the same data, and every write it
//! acknowledged with a 2xx must still be there, with a ledger that verifies. Three rounds,
//! each carrying the changes of the rounds before further.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{minutes_from_now, normal_change, reply, Backend, TestServer};
use serde_json::{json, Value};

const CLIENTS: usize = 8;
const ROUNDS: usize = 3;

crate::on_each_backend! {
    fn acknowledged_writes_survive_kill_9;
}

/// One acknowledged write: the change, the version it reached, and the event kind.
#[derive(Debug, Clone)]
struct Ack {
    id: String,
    version: u64,
    kind: String,
}

/// The next action on a change in `stage`, with who takes it; `None` when this client is
/// done with it.
fn next_action(stage: &str) -> Option<(&'static str, Value)> {
    let action = match stage {
        "requested" => (
            "frank",
            json!({"action": "evaluate", "risk": "low", "priority": "low"}),
        ),
        "evaluated" => ("grace", json!({"action": "authorize", "assignee": "bob"})),
        "authorized" => (
            "bob",
            json!({"action": "plan", "implementation_plan": "p", "test_plan": "t"}),
        ),
        "planned" => (
            "dave",
            json!({"action": "peer_review", "decision": "approved"}),
        ),
        "peer_reviewed" => (
            "erin",
            json!({"action": "test", "result": "passed", "evidence": "ci green"}),
        ),
        "tested" => (
            "frank",
            json!({"action": "approve_deployment", "window_start": minutes_from_now(-5),
                   "window_end": minutes_from_now(600)}),
        ),
        _ => return None,
    };
    Some(action)
}

/// A client thread: takes its changes through their first stages, starting a new one when
/// one is done, until the server stops answering. Keeps its current change across rounds.
fn client(
    base: String,
    tokens: BTreeMap<String, String>,
    mut current: Option<String>,
    stop: Arc<AtomicBool>,
) -> (Vec<Ack>, Option<String>) {
    let http = common::http_client();
    let mut acks = Vec::new();
    let token = |user: &str| tokens[user].clone();
    while !stop.load(Ordering::Relaxed) {
        let id = match &current {
            Some(id) => id.clone(),
            None => {
                let sent = http
                    .post(format!("{base}/api/v1/changes"))
                    .bearer_auth(token("alice"))
                    .json(&normal_change("under fire"))
                    .send();
                let Ok(response) = sent else { break };
                let r = reply(response);
                if r.status != 201 {
                    // An answer that is no acknowledgement; the server is likely dying.
                    continue;
                }
                let id = r.body["id"].as_str().unwrap().to_string();
                acks.push(Ack {
                    id: id.clone(),
                    version: 1,
                    kind: "change.request".into(),
                });
                current = Some(id.clone());
                id
            }
        };
        // The stage as the server knows it: an action may have been recorded without its
        // answer reaching us before a kill.
        let Ok(response) = http
            .get(format!("{base}/api/v1/changes/{id}"))
            .bearer_auth(token("olivia"))
            .send()
        else {
            break;
        };
        let view = reply(response);
        if view.status != 200 {
            continue;
        }
        let Some((user, action)) = next_action(view.body["stage"].as_str().unwrap_or("")) else {
            current = None;
            continue;
        };
        let Ok(response) = http
            .post(format!("{base}/api/v1/changes/{id}/actions"))
            .bearer_auth(token(user))
            .json(&action)
            .send()
        else {
            break;
        };
        let r = reply(response);
        if r.status == 200 {
            acks.push(Ack {
                id: id.clone(),
                version: r.body["version"].as_u64().unwrap(),
                kind: format!("change.{}", action["action"].as_str().unwrap()),
            });
        } else {
            assert!(
                r.status == 409 || r.status >= 500,
                "unexpected refusal: {}",
                r.text
            );
        }
    }
    (acks, current)
}

fn acknowledged_writes_survive_kill_9(backend: Backend) {
    let mut s = TestServer::with_cast(backend);
    let tokens: BTreeMap<String, String> = common::CAST
        .iter()
        .map(|(name, ..)| (name.to_string(), s.token(name).to_string()))
        .collect();
    let mut acked: Vec<Ack> = Vec::new();
    let mut current: Vec<Option<String>> = vec![None; CLIENTS];
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = current
            .drain(..)
            .map(|c| {
                let (base, tokens, stop) = (s.base.clone(), tokens.clone(), stop.clone());
                std::thread::spawn(move || client(base, tokens, c, stop))
            })
            .collect();
        // Let the clients get going, then pull the plug while they are mid-request.
        std::thread::sleep(Duration::from_millis(1200 + 500 * round as u64));
        s.kill9();
        stop.store(true, Ordering::Relaxed);
        let before = acked.len();
        for h in handles {
            let (acks, c) = h.join().expect("client thread");
            acked.extend(acks);
            current.push(c);
        }
        assert!(
            acked.len() > before + CLIENTS,
            "round {round}: only {} writes acknowledged before the kill",
            acked.len() - before
        );

        s.restart();
        let mut latest: BTreeMap<&str, u64> = BTreeMap::new();
        for ack in &acked {
            let v = latest.entry(&ack.id).or_default();
            *v = (*v).max(ack.version);
        }
        let mut views: BTreeMap<&str, Value> = BTreeMap::new();
        for (id, version) in &latest {
            let view = s.get(Some("olivia"), &format!("/api/v1/changes/{id}"));
            assert_eq!(
                view.status, 200,
                "round {round}: acknowledged change {id} is gone: {}",
                view.text
            );
            let have = view.body["version"].as_u64().unwrap();
            assert!(
                have >= *version,
                "round {round}: {id} is at version {have}, {version} was acknowledged"
            );
            assert_eq!(
                view.body["events"].as_array().unwrap().len() as u64,
                have,
                "{id}"
            );
            views.insert(id, view.body);
        }
        // Each acknowledged action is the event at the version it reported.
        for ack in &acked {
            let event = &views[ack.id.as_str()]["events"][ack.version as usize - 1];
            assert_eq!(event["kind"], ack.kind.as_str(), "{ack:?}");
        }
        let listed = s.list_all("");
        for id in latest.keys() {
            assert!(
                listed.iter().any(|c| c["id"] == *id),
                "{id} missing from the listing"
            );
        }
        let summary = s.env.assert_verifies();
        assert!(summary.starts_with("ledger intact"), "{summary}");
        eprintln!(
            "round {round}: {} writes acknowledged so far over {} changes; {}",
            acked.len(),
            latest.len(),
            summary.trim()
        );
    }
    // The restarted server still takes writes, and its ledger still verifies.
    let id = s.create_ok("alice", &normal_change("after the storm"));
    assert_eq!(s.change(&id)["version"], 1);
    s.env.assert_verifies();
}
