//! Evidence over HTTP, on SQLite and on PostgreSQL: signed code-host webhooks (accepted
//! once, refused unsigned, never half-written), pipeline deployment reports reconciled on
//! arrival, the deployment gate, release notes, and the unauthorized changes that reach
//! `/api/v1/exceptions`. Code-host payloads are real deliveries from the fixtures.

mod support;

use serde_json::{json, Value};
use support::{fmt, TestApp, GITHUB_SECRET, GITLAB_TOKEN};
use time::Duration;

on_every_backend!(
    the_gate_allows_only_the_approved_artifact_by_an_authorized_deployer_in_its_window,
    the_gate_refuses_bad_requests_naming_the_field,
    deployments_are_recorded_once_and_reconciled_on_arrival,
    release_notes_list_the_changes_a_deployment_carried,
    github_deliveries_must_be_signed_and_count_once,
    a_real_unreviewed_merge_shows_up_as_unauthorized,
    gitlab_deliveries_need_the_secret_token,
    an_emergency_fix_pushed_to_the_branch_passes_the_gate_pending_approval,
    an_approval_naming_no_artifact_covers_only_what_was_linked_before_it,
    auditors_record_manual_results_in_the_ledger,
    auditors_run_engagements_over_the_ledger,
    deficiencies_are_assessed_answered_and_retested,
);

fn fixture(path: &str) -> Vec<u8> {
    let full = format!(
        "{}/../evidence/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

const ARTIFACT: &str = "4f1c2a9e0b7d5c3a9e0b7d5c3a4f1c2a9e0b7d5c";

/// A change approved for deployment of `ARTIFACT` in a window from an hour ago to two days
/// from now.
async fn approved(app: &TestApp) -> String {
    let id = app.normal_change_at("tested").await;
    let start = fmt(app.now() - Duration::hours(1));
    let end = fmt(app.now() + Duration::days(2));
    let v = app
        .act(
            "frank",
            &id,
            json!({"action": "approve_deployment", "window_start": start,
                   "window_end": end, "artifact": ARTIFACT}),
        )
        .await;
    assert_eq!(v["stage"], "approved_for_deployment", "{v}");
    id
}

async fn gate(app: &TestApp, who: &str, body: Value) -> Value {
    let (status, v) = app.post(who, "/api/v1/gate", body).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn codes(v: &Value) -> Vec<String> {
    v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect()
}

async fn the_gate_allows_only_the_approved_artifact_by_an_authorized_deployer_in_its_window(
    app: TestApp,
) {
    let id = approved(&app).await;
    let ask = |artifact: &str, env: &str| json!({"system": "payments", "environment": env, "artifact": artifact});
    let before = app.ledger_size();
    let v = gate(&app, "ci", ask(ARTIFACT, "production")).await;
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["change"], id.as_str());
    assert_eq!(codes(&v), vec!["approved"]);
    // Only the very artifact: not an abbreviation of it, nor a longer id that starts with
    // it (a commit whose id starts with given digits can be made at will).
    let v = gate(&app, "ci", ask(&ARTIFACT[..12], "production")).await;
    assert_eq!(codes(&v), vec!["no_approved_change"], "{v}");
    let longer = format!("{ARTIFACT}{}", &ARTIFACT[..24]);
    let v = gate(&app, "ci", ask(&longer, "production")).await;
    assert_eq!(codes(&v), vec!["no_approved_change"], "{v}");
    let v = gate(&app, "ci", ask(&ARTIFACT.to_uppercase(), "production")).await;
    assert_eq!(v["decision"], "allow", "case does not matter: {v}");
    // Every decision is recorded, allow or deny.
    assert_eq!(app.ledger_size(), before + 4);
    let (_, entry) = app
        .get("olivia", &format!("/api/v1/ledger/entries/{}", v["seq"]))
        .await;
    let recorded: Value = serde_json::from_str(entry["canonical"].as_str().unwrap()).unwrap();
    assert_eq!(recorded["kind"], "gate.decided", "{entry}");
    assert_eq!(recorded["payload"]["decision"], "allow");
    assert_eq!(recorded["payload"]["request"]["artifact"], ARTIFACT);

    let v = gate(&app, "ci", ask("9999999aaaaaaa", "production")).await;
    assert_eq!(
        (v["decision"].as_str(), codes(&v)),
        (Some("deny"), vec!["no_approved_change".to_string()])
    );
    assert_eq!(v["change"], Value::Null);

    // Not production: no change approval needed.
    let v = gate(&app, "bob", ask("9999999aaaaaaa", "staging")).await;
    assert_eq!(
        (v["decision"].as_str(), codes(&v)),
        (Some("allow"), vec!["not_production".to_string()])
    );

    // The engineer who built it may not deploy it (and holds no deploying role).
    let v = gate(&app, "bob", ask(ARTIFACT, "production")).await;
    assert_eq!(v["decision"], "deny");
    assert_eq!(codes(&v), vec!["deployer_not_authorized"]);

    // A pipeline may name the person who triggered it; that person is judged.
    let v = gate(
        &app,
        "ci",
        json!({"system": "payments", "environment": "prod", "artifact": ARTIFACT, "actor": "ivan"}),
    )
    .await;
    assert_eq!(v["decision"], "allow", "{v}");
    // A person asks only for themselves: naming someone else is refused, and recorded nowhere.
    let size = app.ledger_size();
    let (status, v) = app
        .post(
            "bob",
            "/api/v1/gate",
            json!({"system": "payments", "environment": "production", "artifact": ARTIFACT,
                   "actor": "ivan"}),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("actor_not_token_owner")),
        "{v}"
    );
    assert_eq!(app.ledger_size(), size);

    // Another system than the change covers.
    let v = gate(
        &app,
        "ci",
        json!({"system": "ledger", "environment": "production", "artifact": ARTIFACT}),
    )
    .await;
    assert_eq!(codes(&v), vec!["system_not_covered"]);

    // After the window.
    app.advance(Duration::days(3));
    let v = gate(&app, "ci", ask(ARTIFACT, "production")).await;
    assert_eq!(v["decision"], "deny");
    assert_eq!(codes(&v), vec!["outside_window"]);
}

async fn the_gate_refuses_bad_requests_naming_the_field(app: TestApp) {
    let before = app.ledger_size();
    let (status, v) = app
        .post(
            "ci",
            "/api/v1/gate",
            json!({"system": "payments", "environment": "production"}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("artifact"),
        "{v}"
    );
    let (status, v) = app
        .post_raw("ci", "/api/v1/gate", "{\"system\": \"payments\", ".into())
        .await;
    assert_eq!(status, 422, "{v}");
    let (status, _) = app
        .post(
            "ci",
            "/api/v1/gate",
            json!({"system": "p", "environment": "production",
                                           "artifact": "x", "colour": "red"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(app.ledger_size(), before, "refused requests record nothing");
}

async fn deployments_are_recorded_once_and_reconciled_on_arrival(app: TestApp) {
    let id = approved(&app).await;
    let body = json!({"system": "payments", "environment": "production", "artifact": ARTIFACT,
                      "time": fmt(app.now()), "id": "run-8812", "status": "success"});
    let (status, v) = app.post("ivan", "/api/v1/deployments", body.clone()).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["verdict"]["change"], id.as_str(), "{v}");
    assert_eq!(v["verdict"]["verdict"], "ok", "{v}");
    let seq = v["seq"].clone();
    let size = app.ledger_size();
    // The same report again: recognized, nothing written.
    let (status, v) = app.post("ivan", "/api/v1/deployments", body.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["seq"], seq);
    assert_eq!(app.ledger_size(), size);
    // Another deployment under an id already taken is refused, not mistaken for a repeat.
    let mut other = body.clone();
    other["artifact"] = json!("e000000000000000000000000000000000000009");
    let (status, v) = app.post("ci", "/api/v1/deployments", other).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("deployment_id_conflict")),
        "{v}"
    );
    assert_eq!(app.ledger_size(), size);
    // Only pipelines and people who may deploy report deployments.
    let mut by_requester = body.clone();
    by_requester["id"] = json!("run-1");
    let (status, v) = app.post("alice", "/api/v1/deployments", by_requester).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("not_a_deployer")),
        "{v}"
    );
    assert_eq!(app.ledger_size(), size);
    // The same artifact at the same second to a system the change does not cover: the answer
    // is this deployment's own verdict.
    let mut elsewhere = body.clone();
    elsewhere["id"] = json!("run-8813");
    elsewhere["system"] = json!("ledger");
    let (status, v) = app.post("ci", "/api/v1/deployments", elsewhere).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["verdict"]["deployment"], "ledger/run-8813", "{v}");
    assert_eq!(
        v["verdict"]["exceptions"],
        json!(["system_not_covered"]),
        "{v}"
    );
    let size = app.ledger_size();

    // A time with no zone is refused, never taken for UTC.
    let (status, v) = app
        .post(
            "ci",
            "/api/v1/deployments",
            json!({"system": "payments", "environment": "production",
              "artifact": ARTIFACT, "time": "2026-07-13 11:26:52"}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("time"),
        "{v}"
    );
    assert_eq!(app.ledger_size(), size);

    // Something nobody approved goes out: unauthorized, and listed as such.
    let rogue = "abcdef0123456789abcdef0123456789abcdef01";
    let (status, v) = app
        .post(
            "ci",
            "/api/v1/deployments",
            json!({"system": "payments", "environment": "prod-eu",
              "artifact": rogue, "time": fmt(app.now())}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["verdict"]["verdict"], "unauthorized", "{v}");
    let (_, list) = app.get("olivia", "/api/v1/exceptions").await;
    let rows = list["reconciliation"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["commit"] == rogue && r["verdict"] == "unauthorized"),
        "{list}"
    );
    assert!(
        !rows.iter().any(|r| r["deployment"] == "payments/run-8812"),
        "{list}"
    );
}

async fn release_notes_list_the_changes_a_deployment_carried(app: TestApp) {
    let id = approved(&app).await;
    let (status, _) = app
        .post(
            "ivan",
            "/api/v1/deployments",
            json!({"system": "payments", "environment": "production",
              "artifact": ARTIFACT, "time": fmt(app.now()), "id": "rel-7"}),
        )
        .await;
    assert_eq!(status, 201);
    let r = app
        .client
        .get(format!(
            "{}/api/v1/deployments/rel-7/release-notes",
            app.base
        ))
        .bearer_auth(&app.tokens["olivia"])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/markdown"));
    let text = r.text().await.unwrap();
    assert!(
        text.contains(&format!("**{id}** Add refund codes")),
        "{text}"
    );
    assert!(text.contains("risk: medium"), "{text}");
    let (status, v) = app
        .get("olivia", "/api/v1/deployments/nope/release-notes")
        .await;
    assert_eq!(status, 404, "{v}");
}

async fn deliver_github(
    app: &TestApp,
    event: &str,
    delivery: &str,
    body: &[u8],
    signature: Option<String>,
) -> (u16, Value) {
    let mut req = app
        .client
        .post(format!("{}/api/v1/webhooks/github", app.base))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .body(body.to_vec());
    if let Some(s) = signature {
        req = req.header("x-hub-signature-256", s);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn github_deliveries_must_be_signed_and_count_once(app: TestApp) {
    let body = fixture("reallyfastci-capture/webhook-pr-close.json");
    let signed = evidence::signature::sign_github(GITHUB_SECRET.as_bytes(), &body);
    let size = app.ledger_size();

    let (status, v) = deliver_github(&app, "pull_request", "d-1", &body, None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("invalid_signature")),
        "{v}"
    );
    let wrong = evidence::signature::sign_github(b"not the secret", &body);
    let (status, _) = deliver_github(&app, "pull_request", "d-1", &body, Some(wrong)).await;
    assert_eq!(status, 401);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let (status, _) =
        deliver_github(&app, "pull_request", "d-1", &tampered, Some(signed.clone())).await;
    assert_eq!(status, 401);
    assert_eq!(app.ledger_size(), size, "refused deliveries store nothing");

    let (status, v) =
        deliver_github(&app, "pull_request", "d-1", &body, Some(signed.clone())).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["status"], "recorded");
    assert_eq!(v["kinds"], json!(["evidence.pull_request"]));
    let after = app.ledger_size();
    assert_eq!(after, size + 1);
    // GitHub redelivers: accepted, not recorded twice.
    let (status, v) = deliver_github(&app, "pull_request", "d-1", &body, Some(signed)).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("duplicate")),
        "{v}"
    );
    assert_eq!(app.ledger_size(), after);

    // An event changegate does not read is kept as unparseable evidence, not dropped.
    let other = br#"{"action":"created","starred_at":"2026-01-01T00:00:00Z"}"#;
    let sig = evidence::signature::sign_github(GITHUB_SECRET.as_bytes(), other);
    let (status, v) = deliver_github(&app, "star", "d-2", other, Some(sig)).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (202, Some("unparseable")),
        "{v}"
    );
    assert_eq!(app.ledger_size(), after + 1);

    // Truncated JSON that carries a valid signature was sent by GitHub: kept as unparseable
    // with the reason, never dropped.
    let cut = &fixture("reallyfastci-capture/webhook-pr-close.json")[..200];
    let sig = evidence::signature::sign_github(GITHUB_SECRET.as_bytes(), cut);
    let (status, v) = deliver_github(&app, "pull_request", "d-3", cut, Some(sig)).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (202, Some("unparseable")),
        "{v}"
    );
    assert!(v["reason"].as_str().unwrap().contains("JSON"), "{v}");
    assert_eq!(app.ledger_size(), after + 2);

    // A delivery larger than the 1 MiB other endpoints take (GitHub sends up to 25 MB).
    let mut big = serde_json::from_slice::<Value>(&body).unwrap();
    big["pull_request"]["body"] = json!("x".repeat(3 * 1024 * 1024));
    let big = serde_json::to_vec(&big).unwrap();
    let sig = evidence::signature::sign_github(GITHUB_SECRET.as_bytes(), &big);
    let (status, v) = deliver_github(&app, "pull_request", "d-4", &big, Some(sig)).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (202, Some("recorded")),
        "{v}"
    );
    assert_eq!(app.ledger_size(), after + 3);
}

async fn a_real_unreviewed_merge_shows_up_as_unauthorized(app: TestApp) {
    // ailisp/gcbapp-buildconfig-example PR #3: merged with no review, then pushed to master.
    for (event, file, delivery) in [
        (
            "pull_request",
            "reallyfastci-capture/webhook-pr-close.json",
            "a",
        ),
        (
            "push",
            "reallyfastci-capture/webhook-push-to-master.json",
            "b",
        ),
    ] {
        let body = fixture(file);
        let sig = evidence::signature::sign_github(GITHUB_SECRET.as_bytes(), &body);
        let (status, v) = deliver_github(&app, event, delivery, &body, Some(sig)).await;
        assert_eq!(status, 202, "{v}");
    }
    let (status, list) = app.get("olivia", "/api/v1/exceptions").await;
    assert_eq!(status, 200, "{list}");
    let rows = list["reconciliation"].as_array().unwrap();
    let merge: Vec<&Value> = rows
        .iter()
        .filter(|r| {
            r["commit"]
                .as_str()
                .unwrap_or("")
                .starts_with("a21683865c08")
        })
        .collect();
    assert_eq!(merge.len(), 1, "{list}");
    assert_eq!(merge[0]["verdict"], "unauthorized");
    assert_eq!(merge[0]["pull_request"], 3);
    // The commits the merge carried are the pull request's, not events of their own.
    assert_eq!(rows.len(), 1, "{list}");
}

async fn gitlab_deliveries_need_the_secret_token(app: TestApp) {
    let body = fixture("woodpecker-capture/HookPullRequestMerged.json");
    let size = app.ledger_size();
    let send = |token: Option<&'static str>| {
        let mut req = app
            .client
            .post(format!("{}/api/v1/webhooks/gitlab", app.base))
            .header("content-type", "application/json")
            .header("x-gitlab-event", "Merge Request Hook")
            .header("x-gitlab-event-uuid", "0b6c7d1e-uuid")
            .body(body.clone());
        if let Some(t) = token {
            req = req.header("x-gitlab-token", t);
        }
        req.send()
    };
    let r = send(None).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = send(Some("guess")).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(app.ledger_size(), size);
    let r = send(Some(GITLAB_TOKEN)).await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let r = send(Some(GITLAB_TOKEN)).await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "the same delivery is accepted once"
    );
    assert_eq!(app.ledger_size(), size + 1);
}

/// Notifications leave on arrival of the evidence: an unauthorized deployment and an
/// approved one each reach a local webhook receiver, signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_and_approved_deployments_are_notified() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let sink = received.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let sig = headers["x-changegate-signature-256"]
                        .to_str()
                        .unwrap()
                        .to_string();
                    assert_eq!(sig, evidence::signature::sign_github(b"hook-secret", &body));
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    sink.lock()
                        .unwrap()
                        .push((headers["x-changegate-event"].to_str().unwrap().into(), v));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let config: server::notify::NotifyConfig = toml::from_str(&format!(
        "[[webhooks]]\nurl = \"{url}\"\nsecret = \"hook-secret\"\n"
    ))
    .unwrap();
    let notifier = server::notify::Notifier::start(config).unwrap();
    let app = support::spawn_with(support::Backend::Sqlite, notifier.clone())
        .await
        .unwrap();
    let id = approved(&app).await;
    for artifact in [ARTIFACT, "abcdef0123456789abcdef0123456789abcdef01"] {
        let (status, v) = app
            .post(
                "ivan",
                "/api/v1/deployments",
                json!({"system": "payments",
                  "environment": "production", "artifact": artifact, "time": fmt(app.now())}),
            )
            .await;
        assert_eq!(status, 201, "{v}");
    }
    assert!(notifier.flush(std::time::Duration::from_secs(10)).await);
    let got = received.lock().unwrap().clone();
    let kinds: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert!(kinds.contains(&"deployed"), "{got:?}");
    assert!(kinds.contains(&"unauthorized_change"), "{got:?}");
    let deployed = got.iter().find(|(k, _)| k == "deployed").unwrap();
    assert_eq!(deployed.1["change"], id.as_str());
    assert!(
        deployed.1["text"].as_str().unwrap().contains(&id),
        "{:?}",
        deployed.1
    );
    assert_eq!(got.len(), 2, "each event is announced once: {got:?}");
}

async fn an_emergency_fix_pushed_to_the_branch_passes_the_gate_pending_approval(app: TestApp) {
    let (status, v) = app
        .post(
            "alice",
            "/api/v1/changes",
            json!({"title": "Stop the refund loop", "description": "INC-9 refunds repeat",
                   "type": "emergency", "category": "application", "systems": ["payments"]}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let fix = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";
    let ask = json!({"system": "payments", "environment": "production", "artifact": fix});
    // Before anything names the fix, the gate cannot know it.
    let v = gate(&app, "ci", ask.clone()).await;
    assert_eq!(codes(&v), vec!["no_approved_change"], "{v}");

    // The fix reaches the protected branch with the change id in its message.
    let at = fmt(app.now());
    push_naming(
        &app,
        fix,
        &format!("{id}: stop the refund loop"),
        &at,
        false,
        "e-1",
    )
    .await;

    let v = gate(&app, "ci", ask.clone()).await;
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["change"], id.as_str());
    assert_eq!(codes(&v), vec!["emergency_retroactive_approval_due"]);
    // A commit with another id is not covered by the claim in the first one's message.
    let v = gate(
        &app,
        "ci",
        json!({"system": "payments", "environment": "production",
               "artifact": "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5f"}),
    )
    .await;
    assert_eq!(codes(&v), vec!["no_approved_change"], "{v}");

    // An emergency is for now: days later, the same fix no longer passes as one.
    app.advance(Duration::hours(73));
    let v = gate(&app, "ci", ask).await;
    assert_eq!(codes(&v), vec!["emergency_expired"], "{v}");
}

/// Delivers a signed GitHub push of one commit to `master`.
async fn push_naming(
    app: &TestApp,
    sha: &str,
    message: &str,
    at: &str,
    forced: bool,
    delivery: &str,
) {
    let mut push: Value =
        serde_json::from_slice(&fixture("reallyfastci-capture/webhook-push-to-master.json"))
            .unwrap();
    push["after"] = json!(sha);
    push["forced"] = json!(forced);
    let commit = &mut push["commits"][0];
    commit["id"] = json!(sha);
    commit["message"] = json!(message);
    commit["timestamp"] = json!(at);
    push["commits"] = json!([push["commits"][0].clone()]);
    push["head_commit"] = push["commits"][0].clone();
    let body = serde_json::to_vec(&push).unwrap();
    let sig = evidence::signature::sign_github(GITHUB_SECRET.as_bytes(), &body);
    let (status, v) = deliver_github(app, "push", delivery, &body, Some(sig)).await;
    assert_eq!(status, 202, "{v}");
}

async fn an_approval_naming_no_artifact_covers_only_what_was_linked_before_it(app: TestApp) {
    let id = app.normal_change_at("tested").await;
    // Reviewed work that reached the branch before the approval.
    let before = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
    let at = fmt(app.now() - Duration::minutes(1));
    push_naming(
        &app,
        before,
        &format!("{id} refund codes"),
        &at,
        false,
        "n-1",
    )
    .await;
    let start = fmt(app.now() - Duration::hours(1));
    let end = fmt(app.now() + Duration::days(2));
    let v = app
        .act(
            "frank",
            &id,
            json!({"action": "approve_deployment", "window_start": start, "window_end": end}),
        )
        .await;
    assert_eq!(v["stage"], "approved_for_deployment", "{v}");
    let ask = |artifact: &str| json!({"system": "payments", "environment": "production", "artifact": artifact});
    let v = gate(&app, "ci", ask(before)).await;
    assert_eq!(v["decision"], "allow", "{v}");

    // A commit that names the change after it was approved is content nobody approved.
    let after = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0";
    let at = fmt(app.now() + Duration::minutes(1));
    push_naming(
        &app,
        after,
        &format!("{id} one more thing"),
        &at,
        false,
        "n-2",
    )
    .await;
    let v = gate(&app, "ci", ask(after)).await;
    assert_eq!(codes(&v), vec!["artifact_not_approved"], "{v}");

    // A forced push links nothing, whatever its message claims.
    let forced = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";
    let at = fmt(app.now() - Duration::minutes(30));
    push_naming(&app, forced, &format!("{id} rewritten"), &at, true, "n-3").await;
    let v = gate(&app, "ci", ask(forced)).await;
    assert_eq!(codes(&v), vec!["no_approved_change"], "{v}");
}

async fn auditors_record_manual_results_in_the_ledger(app: TestApp) {
    let body = |performed_at: String| {
        json!({"control": "CM-01", "item": "policy-2026", "attribute": "performed",
               "result": "pass", "method": "inspection",
               "evidence": "policy v7 approved by the CIO, minutes of 2026-03-10",
               "performed_at": performed_at})
    };
    let before = app.ledger_size();
    let at = fmt(app.now() - Duration::days(3));
    let (status, v) = app
        .post("olivia", "/api/v1/audit/results", body(at.clone()))
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["result"]["recorded_by"], "olivia");
    assert_eq!(app.ledger_size(), before + 1);

    // Engineers do not record audit results.
    let (status, v) = app
        .post("bob", "/api/v1/audit/results", body(at.clone()))
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("role_not_allowed")),
        "{v}"
    );
    // Nor can anyone record what has not happened yet, a naive time or an unknown field.
    let future = fmt(app.now() + Duration::days(1));
    let (status, _) = app
        .post("olivia", "/api/v1/audit/results", body(future))
        .await;
    assert_eq!(status, 422);
    let (status, _) = app
        .post(
            "olivia",
            "/api/v1/audit/results",
            body("2026-03-10 10:00:00".into()),
        )
        .await;
    assert_eq!(status, 422);
    let mut extra = body(at.clone());
    extra["grade"] = json!("A");
    let (status, v) = app.post("olivia", "/api/v1/audit/results", extra).await;
    assert_eq!(status, 422, "{v}");
    // Who recorded it is the server's to say.
    let mut claimed = body(at.clone());
    claimed["recorded_by"] = json!("someone-else");
    let (status, v) = app.post("olivia", "/api/v1/audit/results", claimed).await;
    assert_eq!(status, 422, "{v}");
    let mut long = body(at);
    long["item"] = json!("x".repeat(5000));
    let (status, v) = app.post("olivia", "/api/v1/audit/results", long).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_field")),
        "{v}"
    );
    assert_eq!(app.ledger_size(), before + 1);

    let (status, v) = app
        .post_raw("olivia", "/api/v1/audit/results", "{\"control\": ".into())
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("malformed_json")),
        "{v}"
    );
    let (status, v) = app
        .get("frank", "/api/v1/audit/results?control=CM-01")
        .await;
    assert_eq!(status, 200, "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["item"], "policy-2026");
    assert_eq!(results[0]["recorded_as"], "auditor");
    assert!(results[0]["recorded_at"]
        .as_str()
        .unwrap()
        .starts_with("20"));
    let (_, v) = app
        .get("frank", "/api/v1/audit/results?control=CM-14")
        .await;
    assert!(v["results"].as_array().unwrap().is_empty());
}

async fn auditors_run_engagements_over_the_ledger(app: TestApp) {
    let id = approved(&app).await;
    let body = json!({"system": "payments", "environment": "production", "artifact": ARTIFACT,
                      "time": fmt(app.now()), "id": "run-1", "status": "success"});
    let (status, v) = app.post("ci", "/api/v1/deployments", body).await;
    assert_eq!(status, 201, "{v}");
    // A deployment dated tomorrow has not happened.
    let ahead = json!({"system": "payments", "environment": "production", "artifact": ARTIFACT,
                       "time": fmt(app.now() + Duration::days(1)), "id": "run-9",
                       "status": "success"});
    let (status, v) = app.post("ci", "/api/v1/deployments", ahead).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_field")),
        "{v}"
    );
    let period = json!({"from": fmt(app.now() - Duration::days(30)),
                        "to": fmt(app.now() + Duration::minutes(1)), "seed": 7});
    let before = app.ledger_size();
    let (status, v) = app
        .post("olivia", "/api/v1/audit/engagements", period.clone())
        .await;
    assert_eq!(status, 201, "{v}");
    let controls = v["summary"]["controls"].as_array().unwrap();
    assert_eq!(controls.len(), 21);
    let cm16 = controls.iter().find(|c| c["id"] == "CM-16").unwrap();
    assert_eq!(cm16["population"], 1, "the reported deployment: {v}");
    assert_eq!(cm16["exceptions"], 0, "{v}");
    assert!(v["samples_csv"].as_str().unwrap().contains(",7,"), "{v}");
    // Every run is recorded; the same inputs and seed give the same summary.
    assert_eq!(app.ledger_size(), before + 1);
    let (_, again) = app
        .post("olivia", "/api/v1/audit/engagements", period.clone())
        .await;
    assert_eq!(again["summary_sha256"], v["summary_sha256"]);
    let _ = id;

    // Only auditors run engagements, and the period must make sense.
    let (status, v) = app.post("frank", "/api/v1/audit/engagements", period).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("role_not_allowed")),
        "{v}"
    );
    let backwards =
        json!({"from": fmt(app.now()), "to": fmt(app.now() - Duration::days(1)), "seed": 1});
    let (status, _) = app
        .post("olivia", "/api/v1/audit/engagements", backwards)
        .await;
    assert_eq!(status, 422);
    let naive = json!({"from": "2026-01-01 00:00:00", "to": fmt(app.now()), "seed": 1});
    let (status, _) = app.post("olivia", "/api/v1/audit/engagements", naive).await;
    assert_eq!(status, 422);
    // BR-25: a seed is a number; written as a string it is refused, never read another way.
    let text_seed = json!({"from": "2026-01-01", "to": "2026-01-31", "seed": "7"});
    let (status, _) = app
        .post("olivia", "/api/v1/audit/engagements", text_seed)
        .await;
    assert_eq!(status, 422);
    let (status, v) = app
        .post(
            "olivia",
            "/api/v1/audit/engagements",
            json!(["2026-01-01", "2026-01-31", 7]),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_request")),
        "{v}"
    );

    // The workbook, the OSCAL document, the report and every result, over HTTP.
    let tailored = json!({"from": fmt(app.now() - Duration::days(30)),
                          "to": fmt(app.now() + Duration::minutes(1)), "seed": 7,
                          "controls": {"disabled": ["CM-18"]},
                          "sampling": {"tolerable_rate": 0.1, "higher_risk": ["CM-16"]},
                          "organization": "Acme Payments"});
    let url = "/api/v1/audit/engagements?format=";
    let (status, content_type, xlsx) = app
        .post_bytes("olivia", &format!("{url}xlsx"), tailored.clone())
        .await;
    assert_eq!(status, 201);
    assert!(content_type.contains("spreadsheetml"), "{content_type}");
    assert_eq!(&xlsx[..2], b"PK", "a zip container");
    let (status, content_type, oscal) = app
        .post_bytes("olivia", &format!("{url}oscal"), tailored.clone())
        .await;
    assert_eq!(
        (status, content_type.as_str()),
        (201, "application/oscal+json")
    );
    let oscal: Value = serde_json::from_slice(&oscal).unwrap();
    assert_eq!(
        oscal["assessment-results"]["metadata"]["oscal-version"],
        "1.1.2"
    );
    let (status, _, html) = app
        .post_bytes("olivia", &format!("{url}html"), tailored.clone())
        .await;
    assert_eq!(status, 201);
    let html = String::from_utf8(html).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.contains("Acme Payments"));
    let (status, _, all) = app
        .post_bytes("olivia", &format!("{url}engagement"), tailored.clone())
        .await;
    assert_eq!(status, 201);
    let all: Value = serde_json::from_slice(&all).unwrap();
    // The tailoring leaves R16 uncovered; the firm's settings apply.
    assert!(all["deficiencies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["id"] == "R16:design"));
    let cm16 = all["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["control"] == "CM-16")
        .unwrap();
    assert_eq!(cm16["tolerable_rate"], 0.1);

    let before = app.ledger_size();
    let mut bad_tailoring = tailored.clone();
    bad_tailoring["controls"] = json!({"disabled": ["CM-99"]});
    let mut bad_sampling = tailored.clone();
    bad_sampling["sampling"] = json!({"tolerable_rate": 2});
    let mut nameless = tailored.clone();
    nameless["controls"] = json!({"added": [{"id": "", "description": "", "nature": "preventive",
        "performed": "manual", "frequency": "annual", "owner": "", "risks": [], "criteria": [],
        "attributes": []}]});
    let mut positional = tailored.clone();
    positional["sampling"] = json!([0.5]);
    let mut unknown_setting = tailored.clone();
    unknown_setting["sampling"] = json!({"sample_all": true});
    for (path, body, code) in [
        (format!("{url}pdf"), tailored.clone(), "invalid_query"),
        (format!("{url}xlsx"), bad_tailoring, "invalid_tailoring"),
        (format!("{url}xlsx"), bad_sampling, "invalid_sampling"),
        (format!("{url}xlsx"), nameless, "invalid_tailoring"),
        (format!("{url}xlsx"), positional, "invalid_request"),
        (format!("{url}xlsx"), unknown_setting, "invalid_request"),
    ] {
        let (status, v) = app.post("olivia", &path, body).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (422, Some(code)),
            "{v}"
        );
    }
    assert_eq!(app.ledger_size(), before, "a refused run is not recorded");
}

async fn deficiencies_are_assessed_answered_and_retested(app: TestApp) {
    // A period that is over: its annual policy review was due within it.
    let (from, to) = (
        fmt(app.now() - Duration::days(30)),
        fmt(app.now() - Duration::hours(1)),
    );
    let period = json!({"from": from, "to": to, "seed": 11});
    // No policy review recorded in the period: the annual control is overdue.
    let (status, v) = app
        .post("olivia", "/api/v1/audit/engagements", period.clone())
        .await;
    assert_eq!(status, 201, "{v}");
    let d = v["deficiencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "CM-01:operating")
        .cloned()
        .unwrap_or_else(|| panic!("no CM-01 deficiency: {v}"));
    assert_eq!(d["status"], "open");

    let update = |extra: Value| {
        let mut body = json!({"deficiency": "CM-01:operating", "from": from, "to": to});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let before = app.ledger_size();
    let refused = [
        // Management's fields are management's; the significance is the auditor's.
        (
            "olivia",
            update(json!({"management_response": "we will"})),
            403,
            "role_not_allowed",
        ),
        (
            "frank",
            update(json!({"significance": "deficiency"})),
            403,
            "role_not_allowed",
        ),
        (
            "bob",
            update(json!({"owner": "bob"})),
            403,
            "role_not_allowed",
        ),
        ("olivia", update(json!({})), 422, "nothing_to_record"),
        (
            "olivia",
            update(json!({"significance": "huge"})),
            422,
            "invalid_request",
        ),
        (
            "olivia",
            update(json!({"deficiency": "CM-01", "significance": "deficiency"})),
            422,
            "invalid_field",
        ),
        (
            "olivia",
            update(json!({"to": "2020-01-01", "significance": "deficiency"})),
            422,
            "invalid_field",
        ),
        (
            "frank",
            update(json!({"remediated_at": fmt(app.now() + Duration::days(2))})),
            422,
            "invalid_field",
        ),
        (
            "frank",
            update(json!({"remediation_due": "soon"})),
            422,
            "invalid_field",
        ),
        (
            "frank",
            update(json!({"owner": "  "})),
            422,
            "invalid_field",
        ),
    ];
    for (who, body, want, code) in refused {
        let (status, v) = app
            .post(who, "/api/v1/audit/deficiencies", body.clone())
            .await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (want, Some(code)),
            "{who} {body}: {v}"
        );
    }
    assert_eq!(app.ledger_size(), before, "nothing refused is written");

    let (status, v) = app
        .post(
            "olivia",
            "/api/v1/audit/deficiencies",
            update(json!({"significance": "significant_deficiency",
                          "rationale": "no policy review in a year"})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["update"]["recorded_by"], "olivia");
    let due = fmt(app.now() + Duration::days(10));
    let (status, v) = app
        .post(
            "frank",
            "/api/v1/audit/deficiencies",
            update(json!({"management_response": "review the policy now",
                          "owner": "frank", "remediation_due": due})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(app.ledger_size(), before + 2);

    let (_, v) = app
        .post("olivia", "/api/v1/audit/engagements", period.clone())
        .await;
    let d = v["deficiencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "CM-01:operating")
        .cloned()
        .unwrap();
    assert_eq!(d["significance"], "significant_deficiency");
    assert_eq!(d["status"], "remediation_planned", "{d}");
    assert_eq!(d["owner"], "frank");

    // The review is performed and the remediation recorded: the retest finds it.
    let done = fmt(app.now() - Duration::hours(2));
    let (status, v) = app
        .post(
            "frank",
            "/api/v1/audit/results",
            json!({"control": "CM-01", "item": "policy-review", "attribute": "performed",
                   "result": "pass", "method": "inspection",
                   "evidence": "policy v8 approved", "performed_at": done}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = app
        .post(
            "frank",
            "/api/v1/audit/deficiencies",
            update(json!({"remediated_at": fmt(app.now() - Duration::hours(3)),
                          "remediation": "annual review put in the calendar"})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (_, v) = app
        .post("olivia", "/api/v1/audit/engagements", period)
        .await;
    // The review performed in the period also ends the overdue: no deficiency any more.
    assert!(
        !v["deficiencies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == "CM-01:operating"),
        "{v}"
    );

    let (status, v) = app
        .get(
            "bob",
            "/api/v1/audit/deficiencies?deficiency=CM-01:operating",
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["updates"].as_array().unwrap().len(), 3);
    let current = &v["deficiencies"][0];
    assert_eq!(current["significance"], "significant_deficiency");
    assert_eq!(current["remediation"], "annual review put in the calendar");
    assert_eq!(current["history"].as_array().unwrap().len(), 3);
    let (status, _) = app.get("bob", "/api/v1/audit/deficiencies?color=red").await;
    assert_eq!(status, 422);
    let (status, _) = app
        .get("bob", "/api/v1/audit/deficiencies?deficiency=bogus")
        .await;
    assert_eq!(status, 422);
}
