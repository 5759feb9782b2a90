//! Refused requests: each answers with the right status and reason code and writes nothing
//! (the signed ledger and the change's version stay as they were).

mod common;

use common::{minutes_from_now, normal_change, run_actions, to_approved, Backend, DataEnv};
use common::{Reply, TestServer};
use serde_json::{json, Value};

crate::on_each_backend! {
    fn role_and_segregation_of_duties_refusals;
    fn stage_order_and_evidence_refusals;
    fn malformed_and_invalid_bodies;
    fn invalid_change_requests;
    fn unknown_changes_are_404;
    fn implementation_outside_the_window;
}

/// The state a refusal must leave alone: the checkpoint and the change's version.
fn snapshot(s: &TestServer, id: &str) -> (Value, Value, Value) {
    let cp = s.checkpoint();
    (
        cp["size"].clone(),
        cp["root"].clone(),
        s.change(id)["version"].clone(),
    )
}

/// Sends a raw action body and checks the refusal and that nothing was written.
#[track_caller]
fn refused_raw(s: &TestServer, user: &str, id: &str, body: &str, status: u16, code: &str) -> Reply {
    let before = snapshot(s, id);
    let r = s.post_raw(Some(user), &format!("/api/v1/changes/{id}/actions"), body);
    r.expect_error(status, code);
    assert_eq!(
        snapshot(s, id),
        before,
        "a refused `{body}` ({code}) wrote something"
    );
    r
}

#[track_caller]
fn refused(s: &TestServer, user: &str, id: &str, action: Value, status: u16, code: &str) -> Reply {
    refused_raw(s, user, id, &action.to_string(), status, code)
}

fn role_and_segregation_of_duties_refusals(backend: Backend) {
    let mut env = DataEnv::with_cast(backend);
    env.add_user("tess", &["engineer", "tester"]);
    env.add_user("max", &["engineer", "release_manager"]);
    let s = TestServer::start(env);
    let evaluate = json!({"action": "evaluate", "risk": "low", "priority": "low"});

    // Role: a requester may not evaluate, an auditor may not request.
    let id = s.create_ok("alice", &normal_change("roles"));
    let r = refused(&s, "alice", &id, evaluate.clone(), 403, "role_not_allowed");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("change_manager"), "{message}");
    let size = s.ledger_size();
    s.create("olivia", &normal_change("auditors do not request"))
        .expect_error(403, "role_not_allowed");
    assert_eq!(s.ledger_size(), size);
    // The refused request allocated no id.
    assert_eq!(s.create_ok("alice", &normal_change("next")), "CHG-000002");

    // Requester and authorizer: a change manager may request, but not authorize their own.
    let own = s.create_ok("frank", &normal_change("frank's own"));
    s.act_ok("frank", &own, &evaluate);
    refused(
        &s,
        "frank",
        &own,
        json!({"action": "authorize", "assignee": "bob"}),
        403,
        "sod_requester_authorizer",
    );
    // The assignee must be a person who may plan.
    for (assignee, why) in [
        ("nobody", "no such user"),
        ("bot", "machine"),
        ("erin", "tester"),
    ] {
        let r = refused(
            &s,
            "grace",
            &own,
            json!({"action": "authorize", "assignee": assignee}),
            422,
            "invalid_assignee",
        );
        assert!(r.text.contains(assignee), "{why}: {}", r.text);
    }
    refused(
        &s,
        "grace",
        &own,
        json!({"action": "authorize"}),
        422,
        "missing_field",
    );
    // Authorizing needs a change manager or CAB member (`bot` is a release manager).
    refused(
        &s,
        "bot",
        &own,
        json!({"action": "authorize", "assignee": "bob"}),
        403,
        "role_not_allowed",
    );

    // Author and peer reviewer: an engineer may review, but not their own change.
    s.act_ok(
        "grace",
        &own,
        &json!({"action": "authorize", "assignee": "bob"}),
    );
    refused(
        &s,
        "carol",
        &own,
        json!({"action": "plan", "implementation_plan": "p", "test_plan": "t"}),
        403,
        "not_assignee",
    );
    s.act_ok(
        "bob",
        &own,
        &json!({"action": "plan", "implementation_plan": "p", "test_plan": "t"}),
    );
    refused(
        &s,
        "bob",
        &own,
        json!({"action": "peer_review", "decision": "approved"}),
        403,
        "sod_author_reviewer",
    );

    // Author and tester.
    let tested = s.create_ok("alice", &normal_change("tess builds and may not test"));
    let steps = [
        ("frank", evaluate.clone()),
        ("grace", json!({"action": "authorize", "assignee": "tess"})),
        (
            "tess",
            json!({"action": "plan", "implementation_plan": "p", "test_plan": "t"}),
        ),
        (
            "dave",
            json!({"action": "peer_review", "decision": "approved"}),
        ),
    ];
    run_actions(&s, &tested, &steps);
    refused(
        &s,
        "tess",
        &tested,
        json!({"action": "test", "result": "passed", "evidence": "my own run"}),
        403,
        "sod_author_tester",
    );

    // Author and deployment approver; a machine may not approve either.
    let deployed = s.create_ok("alice", &normal_change("max builds and may not approve"));
    let steps = [
        ("frank", evaluate.clone()),
        ("grace", json!({"action": "authorize", "assignee": "max"})),
        (
            "max",
            json!({"action": "plan", "implementation_plan": "p", "test_plan": "t"}),
        ),
        (
            "dave",
            json!({"action": "peer_review", "decision": "approved"}),
        ),
        (
            "erin",
            json!({"action": "test", "result": "passed", "evidence": "ci green"}),
        ),
    ];
    run_actions(&s, &deployed, &steps);
    let window = json!({"action": "approve_deployment", "window_start": minutes_from_now(-1),
                        "window_end": minutes_from_now(60)});
    refused(
        &s,
        "max",
        &deployed,
        window.clone(),
        403,
        "sod_author_deployment_approver",
    );
    refused(
        &s,
        "bot",
        &deployed,
        window.clone(),
        403,
        "machine_identity_not_allowed",
    );
    s.act_ok("ivan", &deployed, &window);
    s.act("ivan", &deployed, &window)
        .expect_error(409, "stage_order");
}

fn stage_order_and_evidence_refusals(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let id = s.create_ok("alice", &normal_change("in order"));
    let plan = json!({"action": "plan", "implementation_plan": "p", "test_plan": "t"});
    refused(&s, "bob", &id, plan.clone(), 409, "stage_order");
    refused(
        &s,
        "ivan",
        &id,
        json!({"action": "implement", "environment": "production", "artifact": "a"}),
        409,
        "stage_order",
    );
    refused(
        &s,
        "ivan",
        &id,
        json!({"action": "roll_back"}),
        409,
        "stage_order",
    );
    refused(
        &s,
        "frank",
        &id,
        json!({"action": "close"}),
        409,
        "stage_order",
    );
    refused(
        &s,
        "frank",
        &id,
        json!({"action": "review_implementation", "outcome": "successful"}),
        409,
        "stage_order",
    );
    refused(
        &s,
        "frank",
        &id,
        json!({"action": "resume"}),
        409,
        "stage_order",
    );
    let steps = to_approved(&minutes_from_now(-1), &minutes_from_now(60));
    run_actions(&s, &id, &steps[..2]);
    // A testable change needs a test plan.
    refused(
        &s,
        "bob",
        &id,
        json!({"action": "plan", "implementation_plan": "p"}),
        409,
        "test_plan_required",
    );
    run_actions(&s, &id, &steps[2..4]);
    for evidence in [json!(""), json!("   ")] {
        refused(
            &s,
            "erin",
            &id,
            json!({"action": "test", "result": "passed", "evidence": evidence}),
            409,
            "missing_evidence",
        );
    }
    refused(
        &s,
        "erin",
        &id,
        json!({"action": "test", "result": "passed"}),
        409,
        "missing_evidence",
    );
    // A stale expected version is refused before anything else.
    refused(
        &s,
        "erin",
        &id,
        json!({"action": "test", "result": "passed", "evidence": "x", "expected_version": 1}),
        409,
        "version_conflict",
    );
    s.act_ok("erin", &id, &steps[4].1);
    // The first deployment approval sets the window, which must be a real, future interval
    // with explicit offsets.
    refused(
        &s,
        "frank",
        &id,
        json!({"action": "approve_deployment"}),
        422,
        "missing_field",
    );
    refused(
        &s,
        "frank",
        &id,
        json!({"action": "approve_deployment", "window_start": minutes_from_now(-120),
               "window_end": minutes_from_now(-60)}),
        422,
        "invalid_field",
    );
    refused(
        &s,
        "frank",
        &id,
        json!({"action": "approve_deployment", "window_start": minutes_from_now(60),
               "window_end": minutes_from_now(30)}),
        422,
        "invalid_field",
    );
    refused(
        &s,
        "frank",
        &id,
        json!({"action": "approve_deployment", "window_start": "2030-01-01T10:00:00",
               "window_end": "2030-01-01T12:00:00"}),
        422,
        "invalid_field",
    );
    // Deferral dates must be in the future, and only early stages defer.
    refused(
        &s,
        "frank",
        &id,
        json!({"action": "defer", "reason": "freeze", "until": minutes_from_now(600)}),
        409,
        "stage_order",
    );
    let early = s.create_ok("alice", &normal_change("defer me"));
    refused(
        &s,
        "frank",
        &early,
        json!({"action": "defer", "reason": "freeze", "until": minutes_from_now(-5)}),
        422,
        "invalid_field",
    );
    s.act_ok(
        "frank",
        &early,
        &json!({"action": "defer", "reason": "freeze", "until": minutes_from_now(600)}),
    );
    refused(&s, "frank", &early, steps[0].1.clone(), 409, "stage_order");
    let r = s.act_ok("frank", &early, &json!({"action": "resume"}));
    assert_eq!(r["stage"], "requested");
    // Rejected is final.
    s.act_ok(
        "grace",
        &early,
        &json!({"action": "reject", "reason": "duplicate"}),
    );
    refused(
        &s,
        "frank",
        &early,
        json!({"action": "resume"}),
        409,
        "change_closed",
    );
}

fn malformed_and_invalid_bodies(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let id = s.create_ok("alice", &normal_change("bodies"));
    for body in [
        "{\"action\": \"evaluate\", \"risk\": ",
        "not json at all",
        "",
        "{\"action\": \"evaluate\",}",
    ] {
        refused_raw(&s, "frank", &id, body, 400, "malformed_json");
    }
    let unprocessable = [
        // Not an object.
        ("[\"evaluate\"]", "invalid_request"),
        ("\"evaluate\"", "invalid_request"),
        // Unknown action.
        ("{\"action\": \"merge\"}", "invalid_request"),
        ("{\"risk\": \"low\", \"priority\": \"low\"}", "invalid_request"),
        // Unknown field.
        (
            "{\"action\": \"evaluate\", \"risk\": \"low\", \"priority\": \"low\", \"colour\": \"red\"}",
            "invalid_request",
        ),
        // Bad enum values.
        (
            "{\"action\": \"evaluate\", \"risk\": \"huge\", \"priority\": \"low\"}",
            "invalid_request",
        ),
        (
            "{\"action\": \"evaluate\", \"risk\": \"LOW\", \"priority\": \"low\"}",
            "invalid_request",
        ),
        // A missing required field, and a field of the wrong type.
        ("{\"action\": \"evaluate\", \"risk\": \"low\"}", "invalid_request"),
        (
            "{\"action\": \"evaluate\", \"risk\": 3, \"priority\": \"low\"}",
            "invalid_request",
        ),
        // A change is requested by creating it.
        (
            "{\"action\": \"request\", \"title\": \"t\", \"type\": \"normal\", \"category\": \"database\", \"systems\": [\"x\"]}",
            "invalid_action",
        ),
        // `expected_version` must be a whole number.
        (
            "{\"action\": \"evaluate\", \"risk\": \"low\", \"priority\": \"low\", \"expected_version\": \"1\"}",
            "invalid_request",
        ),
        (
            "{\"action\": \"evaluate\", \"risk\": \"low\", \"priority\": \"low\", \"expected_version\": -1}",
            "invalid_request",
        ),
        (
            "{\"action\": \"evaluate\", \"risk\": \"low\", \"priority\": \"low\", \"expected_version\": 1.5}",
            "invalid_request",
        ),
    ];
    for (body, code) in unprocessable {
        let r = refused_raw(&s, "frank", &id, body, 422, code);
        if body.contains("merge") || body.contains("colour") || body.contains("huge") {
            // The message names the offending word.
            let word = ["merge", "colour", "huge"]
                .into_iter()
                .find(|w| body.contains(w))
                .unwrap();
            assert!(r.text.contains(word), "{}", r.text);
        }
    }
    // The same action, well formed, is accepted: the refusals were about the bodies.
    s.act_ok(
        "frank",
        &id,
        &json!({"action": "evaluate", "risk": "low", "priority": "low", "expected_version": 1}),
    );
}

fn invalid_change_requests(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let size = s.ledger_size();
    let base = normal_change("valid");
    let mut cases: Vec<(String, u16, &str)> = vec![
        ("{\"title\": ".into(), 400, "malformed_json"),
        ("[]".into(), 422, "invalid_request"),
    ];
    let edits: [(&str, Value, u16, &str); 9] = [
        ("type", json!("urgent"), 422, "invalid_request"),
        ("category", json!("network"), 422, "invalid_request"),
        ("systems", json!([]), 422, "missing_field"),
        ("systems", json!([" "]), 422, "invalid_field"),
        ("systems", json!("payments"), 422, "invalid_request"),
        ("title", json!(""), 422, "missing_field"),
        ("title", json!("tab\tin title"), 422, "invalid_field"),
        ("title", json!("x".repeat(201)), 422, "invalid_field"),
        ("owner", json!("alice"), 422, "invalid_request"),
    ];
    for (field, value, status, code) in edits {
        let mut body = base.clone();
        body[field] = value;
        cases.push((body.to_string(), status, code));
    }
    let mut missing = base.clone();
    missing.as_object_mut().unwrap().remove("category");
    cases.push((missing.to_string(), 422, "invalid_request"));
    for (body, status, code) in cases {
        s.post_raw(Some("alice"), "/api/v1/changes", &body)
            .expect_error(status, code);
    }
    assert_eq!(s.ledger_size(), size, "a refused request wrote something");
    assert!(s.list_all("").is_empty());
    assert_eq!(s.create_ok("alice", &base), "CHG-000001");
}

fn unknown_changes_are_404(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let id = s.create_ok("alice", &normal_change("the only one"));
    let size = s.ledger_size();
    for missing in ["CHG-000002", "CHG-999999", "chg-000001", "nonsense"] {
        s.get(Some("alice"), &format!("/api/v1/changes/{missing}"))
            .expect_error(404, "not_found");
        s.act(
            "frank",
            missing,
            &json!({"action": "evaluate", "risk": "low", "priority": "low"}),
        )
        .expect_error(404, "not_found");
    }
    assert_eq!(s.ledger_size(), size);
    assert_eq!(s.change(&id)["version"], 1);
}

fn implementation_outside_the_window(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let id = s.create_ok("alice", &normal_change("tonight only"));
    // A window that opens in an hour.
    run_actions(
        &s,
        &id,
        &to_approved(&minutes_from_now(60), &minutes_from_now(120)),
    );
    let implement =
        json!({"action": "implement", "environment": "production", "artifact": "a@sha256:1"});
    let r = refused(&s, "ivan", &id, implement.clone(), 409, "outside_window");
    assert!(r.text.contains(&id), "{}", r.text);
    // Moving the window to now asks for the deployment approval again.
    let r = s.act_ok(
        "alice",
        &id,
        &json!({"action": "amend", "window_start": minutes_from_now(-1),
                "window_end": minutes_from_now(30)}),
    );
    assert_eq!(r["stage"], "tested");
    refused(&s, "ivan", &id, implement.clone(), 409, "stage_order");
    s.act_ok("frank", &id, &json!({"action": "approve_deployment"}));
    let r = s.act_ok("ivan", &id, &implement);
    assert_eq!(r["stage"], "implemented");
}
