//! The HTTP API end to end, on SQLite and on PostgreSQL: the lifecycle, every kind of
//! refusal (and that it writes nothing), concurrency, listings, exceptions, the ledger
//! proofs, and the fault cases that reach the API.

mod support;

use serde_json::{json, Value};
use support::{fmt, TestApp};
use time::Duration;

on_every_backend!(
    a_change_goes_through_its_whole_lifecycle,
    refusals_answer_with_a_code_and_write_nothing,
    malformed_requests_get_json_errors,
    a_lost_race_gets_409_and_history_stays_contiguous,
    expected_version_guards_against_stale_clients,
    listing_filters_and_pages,
    emergency_changes_open_an_exception_until_approved_after_the_fact,
    amending_after_approval_invalidates_and_blocks_deployment,
    group_approvals_need_distinct_members_of_each_group,
    ledger_proofs_verify_against_the_signed_checkpoint,
    service_endpoints_need_no_token,
);

async fn a_change_goes_through_its_whole_lifecycle(app: TestApp) {
    let id = app.normal_change_at("closed").await;
    assert_eq!(id, "CHG-000001");
    let v = app.change(&id).await;
    assert_eq!(v["stage"], "closed");
    assert_eq!(v["version"], 11);
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 11);
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "change.request");
    assert_eq!(kinds[10], "change.close");
    assert_eq!(events[4]["actor"], "dave");
    assert_eq!(events[4]["roles"], json!(["peer_reviewer"]));
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(v["change"]["deployment"]["artifact"], "app@sha256:1");
}

async fn refusals_answer_with_a_code_and_write_nothing(app: TestApp) {
    let id = app.normal_change_at("planned").await;
    let size = app.ledger_size();
    let version = app.change(&id).await["version"].clone();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        // The role allowed to act.
        (
            "alice",
            json!({"action": "peer_review", "decision": "approved", "comment": "x"}),
            403,
            "role_not_allowed",
        ),
        // Segregation of duties: the assignee reviews their own work.
        ("bob", json!({"action": "close"}), 403, "role_not_allowed"),
        // Stage order.
        (
            "erin",
            json!({"action": "test", "result": "passed", "evidence": "ci"}),
            409,
            "stage_order",
        ),
        (
            "ivan",
            json!({"action": "implement", "environment": "production", "artifact": "a"}),
            409,
            "stage_order",
        ),
        // Malformed content.
        (
            "dave",
            json!({"action": "peer_review", "decision": "maybe"}),
            422,
            "invalid_request",
        ),
        (
            "dave",
            json!({"action": "peer_review", "decision": "approved", "extra": 1}),
            422,
            "invalid_request",
        ),
        ("dave", json!({"action": "merge"}), 422, "invalid_request"),
    ];
    for (who, action, status, code) in cases {
        let got = app.refused(who, &id, action.clone()).await;
        assert_eq!(got, (status, code.to_string()), "{who}: {action}");
    }
    let (status, code) = app
        .refused(
            "dave",
            "CHG-999999",
            json!({"action": "peer_review", "decision": "approved"}),
        )
        .await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    // Missing evidence and the author reviewing their own change.
    let tested = app.normal_change_at("peer_reviewed").await;
    let got = app
        .refused(
            "erin",
            &tested,
            json!({"action": "test", "result": "passed", "evidence": ""}),
        )
        .await;
    assert_eq!(got, (409, "missing_evidence".to_string()));
    app.act(
        "erin",
        &tested,
        json!({"action": "test", "result": "passed", "evidence": "ci"}),
    )
    .await;
    // Machine identities never approve, even holding an approving role.
    let got = app
        .refused(
            "ci",
            &tested,
            json!({"action": "approve_deployment",
            "window_start": fmt(app.now()), "window_end": fmt(app.now() + Duration::hours(2))}),
        )
        .await;
    assert_eq!(got, (403, "machine_identity_not_allowed".to_string()));
    let planned = app.normal_change_at("planned").await;
    let (status, v) = app
        .post(
            "bob",
            &format!("/api/v1/changes/{planned}/actions"),
            json!({"action": "plan", "implementation_plan": "again"}),
        )
        .await;
    assert_eq!(status, 409, "{v}");

    let size_after = app.ledger_size();
    // Two more changes driven to peer_reviewed (5 events) and planned (4), plus one test.
    assert_eq!(size_after, size + 5 + 4 + 1, "refusals wrote to the ledger");
    assert_eq!(app.change(&id).await["version"], version);
}

async fn malformed_requests_get_json_errors(app: TestApp) {
    let (status, v) = app
        .post_raw("alice", "/api/v1/changes", "{\"title\": ".into())
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("malformed_json")),
        "{v}"
    );
    let (status, v) = app.post("alice", "/api/v1/changes", json!(["x"])).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_request"))
    );
    let (status, v) = app
        .post(
            "alice",
            "/api/v1/changes",
            json!({"title": "x", "type": "urgent", "category": "application", "systems": ["a"]}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("urgent"),
        "{v}"
    );
    let (status, v) = app
        .post(
            "alice",
            "/api/v1/changes",
            json!({"title": "", "type": "normal", "category": "application", "systems": ["a"]}),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("missing_field")),
        "{v}"
    );
    // No token, a bad token.
    let r = app
        .client
        .get(format!("{}/api/v1/changes", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");
    let r = app
        .client
        .get(format!("{}/api/v1/changes", app.base))
        .bearer_auth("cg_not_a_token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Naive timestamps are refused.
    let id = app.normal_change_at("tested").await;
    let (status, v) = app
        .post(
            "frank",
            &format!("/api/v1/changes/{id}/actions"),
            json!({"action": "approve_deployment", "window_start": "2026-03-02T22:00:00",
                     "window_end": "2026-03-03T01:00:00"}),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_field")),
        "{v}"
    );
    assert_eq!(app.ledger_size(), app.ledger_size());
}

async fn a_lost_race_gets_409_and_history_stays_contiguous(app: TestApp) {
    let id = app.normal_change_at("requested").await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = app.client.clone();
        let url = format!("{}/api/v1/changes/{id}/actions", app.base);
        let token = app.tokens["frank"].clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"action": "evaluate", "risk": "low", "priority": "low"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    let v = app.change(&id).await;
    assert_eq!(v["version"], 2);
    assert_eq!(v["events"].as_array().unwrap().len(), 2);
}

async fn expected_version_guards_against_stale_clients(app: TestApp) {
    let id = app.normal_change_at("requested").await;
    let (status, v) = app
        .post(
            "frank",
            &format!("/api/v1/changes/{id}/actions"),
            json!({"action": "evaluate", "risk": "low", "priority": "low",
                     "expected_version": 7}),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("version_conflict")),
        "{v}"
    );
    let v = app
        .act(
            "frank",
            &id,
            json!({"action": "evaluate", "risk": "low", "priority": "low",
                                 "expected_version": 1}),
        )
        .await;
    assert_eq!(v["version"], 2);
}

async fn listing_filters_and_pages(app: TestApp) {
    for i in 0..5 {
        app.request(json!({"title": format!("app {i}"), "type": "normal",
                           "category": "application", "systems": ["web"]}))
            .await;
    }
    for i in 0..3 {
        app.request(json!({"title": format!("db {i}"), "type": "standard",
                           "category": "database", "systems": ["orders-db", "web"]}))
            .await;
    }
    let (_, v) = app.get("olivia", "/api/v1/changes?category=database").await;
    assert_eq!(v["changes"].as_array().unwrap().len(), 3);
    let (_, v) = app
        .get("olivia", "/api/v1/changes?type=normal&system=web")
        .await;
    assert_eq!(v["changes"].as_array().unwrap().len(), 5);
    let (_, v) = app
        .get("olivia", "/api/v1/changes?system=orders-db&stage=requested")
        .await;
    assert_eq!(v["changes"].as_array().unwrap().len(), 3);
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let (status, v) = app
            .get("olivia", &format!("/api/v1/changes?limit=3{after}"))
            .await;
        assert_eq!(status, 200);
        for c in v["changes"].as_array().unwrap() {
            seen.push(c["id"].as_str().unwrap().to_string());
        }
        match v["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    let expected: Vec<String> = (1..=8).map(|i| format!("CHG-{i:06}")).collect();
    assert_eq!(seen, expected);
    let (status, v) = app.get("olivia", "/api/v1/changes?stage=done").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_query"))
    );
    let (status, _) = app.get("olivia", "/api/v1/changes?limit=0").await;
    assert_eq!(status, 422);
}

async fn emergency_changes_open_an_exception_until_approved_after_the_fact(app: TestApp) {
    let late = app
        .request(
            json!({"title": "hotfix", "type": "emergency", "category": "infrastructure",
                        "systems": ["edge"]}),
        )
        .await;
    let v = app
        .act(
            "ivan",
            &late,
            json!({"action": "implement", "environment": "production",
                                   "artifact": "edge@1"}),
        )
        .await;
    assert_eq!(v["stage"], "implemented");
    let (_, v) = app.get("olivia", "/api/v1/exceptions").await;
    assert_eq!(v["exceptions"], json!([]), "not due yet");
    app.advance(Duration::hours(73));
    let (_, v) = app.get("olivia", "/api/v1/exceptions?status=open").await;
    let open = v["exceptions"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{v}");
    assert_eq!(open[0]["code"], "emergency_not_approved_in_time");
    assert_eq!(open[0]["change"], late.as_str());
    // Closing needs the approval after the fact.
    app.act(
        "frank",
        &late,
        json!({"action": "review_implementation", "outcome": "successful"}),
    )
    .await;
    app.act(
        "ivan",
        &late,
        json!({"action": "communicate", "release_notes": "fixed"}),
    )
    .await;
    let got = app
        .refused("frank", &late, json!({"action": "close"}))
        .await;
    assert_eq!(got, (409, "retroactive_approval_required".to_string()));
    // The deployer may not approve their own emergency change.
    let got = app
        .refused("ivan", &late, json!({"action": "approve_retroactively"}))
        .await;
    assert_eq!(got.0, 403);
    app.act(
        "grace",
        &late,
        json!({"action": "approve_retroactively", "comment": "ok"}),
    )
    .await;
    app.act("frank", &late, json!({"action": "close"})).await;
    let (_, v) = app.get("olivia", "/api/v1/exceptions").await;
    let all = v["exceptions"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{v}");
    assert_eq!(all[0]["code"], "emergency_approved_late");
    assert_eq!(all[0]["status"], "late");
    let (_, v) = app.get("olivia", "/api/v1/exceptions?status=open").await;
    assert_eq!(v["exceptions"], json!([]));
}

async fn amending_after_approval_invalidates_and_blocks_deployment(app: TestApp) {
    let id = app.normal_change_at("approved_for_deployment").await;
    let start = fmt(app.now() + Duration::hours(5));
    let end = fmt(app.now() + Duration::hours(8));
    let v = app
        .act(
            "alice",
            &id,
            json!({"action": "amend", "rollback_plan": null,
                                  "window_start": start, "window_end": end}),
        )
        .await;
    // The plan changed, so the review, the test and the deployment approval that rested on
    // it are all asked for again.
    assert_eq!(v["stage"], "planned", "{v}");
    let invalidated = v["event"]["invalidated"].as_array().unwrap();
    assert_eq!(invalidated.len(), 3, "{v}");
    let edits = v["event"]["edits"].as_array().unwrap();
    assert!(
        edits
            .iter()
            .any(|e| e["field"] == "rollback_plan" && e["new"].is_null()),
        "{v}"
    );
    let got = app
        .refused(
            "ivan",
            &id,
            json!({"action": "implement", "environment": "production",
                                     "artifact": "a"}),
        )
        .await;
    assert_eq!(got.1, "stage_order");
    // The history keeps every approval, with its fate.
    let change = app.change(&id).await;
    let approvals = change["change"]["approvals"].as_array().unwrap();
    assert!(approvals
        .iter()
        .any(|a| a["by"] == "frank" && a["invalidated"].is_string()));
    assert_eq!(change["events"].as_array().unwrap().len(), 8);
}

async fn group_approvals_need_distinct_members_of_each_group(app: TestApp) {
    let id = app
        .request(
            json!({"title": "partition orders", "type": "normal", "category": "database",
                        "systems": ["orders-db"]}),
        )
        .await;
    app.act(
        "frank",
        &id,
        json!({"action": "evaluate", "risk": "high", "priority": "high"}),
    )
    .await;
    // High risk: the CAB authorizes, not the change manager alone.
    let got = app
        .refused(
            "frank",
            &id,
            json!({"action": "authorize", "assignee": "bob"}),
        )
        .await;
    assert_eq!(got, (403, "not_in_required_group".to_string()));
    let got = app
        .refused(
            "grace",
            &id,
            json!({"action": "authorize", "assignee": "ivan"}),
        )
        .await;
    assert_eq!(got, (422, "invalid_assignee".to_string()));
    app.act(
        "grace",
        &id,
        json!({"action": "authorize", "assignee": "bob"}),
    )
    .await;
    app.act(
        "bob",
        &id,
        json!({"action": "plan", "implementation_plan": "online migration",
                               "test_plan": "replay", "rollback_plan": "swap back"}),
    )
    .await;
    app.act(
        "dave",
        &id,
        json!({"action": "peer_review", "decision": "approved", "comment": "ok"}),
    )
    .await;
    app.act(
        "erin",
        &id,
        json!({"action": "test", "result": "passed", "evidence": "ci"}),
    )
    .await;
    let window = json!({"action": "approve_deployment",
                        "window_start": fmt(app.now()), "window_end": fmt(app.now() + Duration::days(1))});
    let v = app.act("heidi", &id, window.clone()).await;
    assert_eq!(v["stage"], "tested", "one approval of two: {v}");
    let got = app
        .refused("heidi", &id, json!({"action": "approve_deployment"}))
        .await;
    assert_eq!(got, (409, "already_approved".to_string()));
    let got = app
        .refused("frank", &id, json!({"action": "approve_deployment"}))
        .await;
    assert_eq!(got, (403, "not_in_required_group".to_string()));
    let v = app
        .act("grace", &id, json!({"action": "approve_deployment"}))
        .await;
    assert_eq!(v["stage"], "approved_for_deployment", "{v}");
}

async fn ledger_proofs_verify_against_the_signed_checkpoint(app: TestApp) {
    let id = app.normal_change_at("tested").await;
    let (_, c) = app.get("olivia", "/api/v1/ledger/checkpoint").await;
    let size = c["size"].as_u64().unwrap();
    assert_eq!(size, app.ledger_size());
    let hash = |v: &Value| ledger::parse_hash(v.as_str().unwrap()).unwrap();
    let root = hash(&c["root"]);
    let key_bytes: [u8; 32] = hex::decode(c["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes).unwrap();
    let checkpoint = ledger::Checkpoint {
        size,
        root,
        head: hash(&c["head"]),
        time: c["time"].as_str().unwrap().to_string(),
        key_id: c["key_id"].as_str().unwrap().to_string(),
        signature: c["signature"].as_str().unwrap().to_string(),
    };
    checkpoint.verify(&key).unwrap();

    let change = app.change(&id).await;
    for event in change["events"].as_array().unwrap() {
        let seq = event["seq"].as_u64().unwrap();
        let (status, p) = app
            .get(
                "olivia",
                &format!("/api/v1/ledger/proof/inclusion?seq={seq}&size={size}"),
            )
            .await;
        assert_eq!(status, 200, "{p}");
        let proof: Vec<ledger::Hash> = p["proof"].as_array().unwrap().iter().map(hash).collect();
        let leaf = hash(&event["leaf_hash"]);
        assert!(
            ledger::verify_inclusion(&leaf, seq, size, &proof, &root),
            "seq {seq}"
        );
        let (_, e) = app
            .get("olivia", &format!("/api/v1/ledger/entries/{seq}"))
            .await;
        assert_eq!(
            ledger::leaf_hash(e["canonical"].as_str().unwrap().as_bytes()),
            leaf
        );
    }
    let old = size / 2;
    let (status, p) = app
        .get(
            "olivia",
            &format!("/api/v1/ledger/proof/consistency?from={old}&to={size}"),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    let proof: Vec<ledger::Hash> = p["proof"].as_array().unwrap().iter().map(hash).collect();
    assert!(ledger::verify_consistency(
        old,
        size,
        &hash(&p["from_root"]),
        &root,
        &proof
    ));
    let (status, _) = app
        .get(
            "olivia",
            &format!("/api/v1/ledger/proof/inclusion?seq={size}"),
        )
        .await;
    assert_eq!(status, 422);
    let (status, v) = app
        .get("olivia", "/api/v1/ledger/entries/9223372036854775808")
        .await;
    assert_eq!(status, 404, "{v}");
}

async fn service_endpoints_need_no_token(app: TestApp) {
    app.normal_change_at("evaluated").await;
    let r = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/changes",
        "/api/v1/changes/{id}/actions",
        "/api/v1/exceptions",
        "/api/v1/ledger/proof/inclusion",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"].get("Action").is_some());
    let r = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("changegate_http_requests_total{"), "{text}");
    assert!(
        text.contains("changegate_actions_total{action=\"evaluate\"} 1"),
        "{text}"
    );
    assert!(text.contains("changegate_ledger_entries"), "{text}");
    let r = app
        .client
        .delete(format!("{}/api/v1/changes", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}
