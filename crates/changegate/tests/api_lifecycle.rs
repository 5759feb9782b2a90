//! Changes taken through their lifecycle over HTTP: a normal change from request to close,
//! rework loops and invalidated approvals, an emergency change approved after the fact, a
//! standard change's shorter model, and a tailored policy file.

mod common;

use common::{
    minutes_from_now, normal_change, run_actions, to_approved, to_closed, Backend, DataEnv,
    TestServer,
};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

crate::on_each_backend! {
    fn normal_change_goes_from_request_to_close;
    fn rework_loops_and_amendments_ask_for_approvals_again;
    fn emergency_change_is_implemented_first_and_approved_after_the_fact;
    fn standard_configuration_change_follows_its_shorter_model;
    fn customer_change_needs_the_customers_acceptance;
    fn a_policy_file_tailors_the_rules;
}

fn parse_time(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("bad time {s:?}: {e}"))
}

fn normal_change_goes_from_request_to_close(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let size_before = s.ledger_size();
    let r = s.create("alice", &normal_change("Add refund reason codes"));
    let created = r.expect(201);
    assert_eq!(
        created,
        &json!({"id": "CHG-000001", "stage": "requested", "version": 1})
    );
    let id = "CHG-000001";

    let mut steps = to_approved(&minutes_from_now(-1), &minutes_from_now(60));
    steps.extend(to_closed());
    let expected_stages = [
        "evaluated",
        "authorized",
        "planned",
        "peer_reviewed",
        "tested",
        "approved_for_deployment",
        "implemented",
        "post_implementation_reviewed",
        "communicated",
        "closed",
    ];
    assert_eq!(steps.len(), expected_stages.len());
    let mut previous = "requested".to_string();
    for (i, ((user, action), stage)) in steps.iter().zip(expected_stages).enumerate() {
        let body = s.act_ok(user, id, action);
        assert_eq!(body["id"], id);
        assert_eq!(body["stage"], stage, "after {}", action["action"]);
        assert_eq!(body["version"], i as u64 + 2);
        assert_eq!(body["event"]["stage_from"], previous.as_str());
        assert_eq!(body["event"]["stage_to"], stage);
        assert_eq!(body["event"]["action"]["action"], action["action"]);
        previous = stage.to_string();
    }

    let view = s.change(id);
    assert_eq!(view["stage"], "closed");
    assert_eq!(view["version"], 11);
    assert_eq!(view["change"]["stage"], "closed");
    assert_eq!(view["change"]["requester"], "alice");
    assert_eq!(view["change"]["assignee"], "bob");
    assert_eq!(view["change"]["deployment"]["by"], "ivan");
    assert_eq!(view["change"]["deployment"]["before_approval"], false);
    assert_eq!(view["change"]["outcome"], "successful");
    assert_eq!(view["exceptions"], json!([]));
    let model: Vec<&str> = view["model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut full = vec!["requested"];
    full.extend(expected_stages);
    assert_eq!(model, full);
    let approvals: Vec<(&str, &str)> = view["change"]["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["step"].as_str().unwrap(), a["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        approvals,
        [
            ("authorization", "grace"),
            ("peer_review", "dave"),
            ("test", "erin"),
            ("deployment", "frank")
        ]
    );

    // One event per action, in order, each with its position, actor and roles.
    let events = view["events"].as_array().unwrap();
    assert_eq!(events.len(), 11);
    let mut actors = vec![("alice", "request", "requester")];
    for (user, action) in &steps {
        let role = common::CAST
            .iter()
            .find(|(n, ..)| n == user)
            .map(|(_, roles, ..)| roles[0])
            .unwrap();
        actors.push((user, action["action"].as_str().unwrap(), role));
    }
    let mut last_seq = None;
    let mut last_time = String::new();
    for (event, (actor, action, role)) in events.iter().zip(&actors) {
        let seq = event["seq"].as_u64().expect("seq");
        if let Some(last) = last_seq {
            assert!(seq > last, "events out of ledger order: {seq} after {last}");
        }
        last_seq = Some(seq);
        assert_eq!(event["actor"], *actor);
        assert_eq!(event["kind"], format!("change.{action}"));
        assert_eq!(event["roles"], json!([role]));
        assert_eq!(event["payload"]["action"]["action"], *action);
        let time = event["time"].as_str().unwrap();
        assert!(time >= last_time.as_str(), "time went backwards");
        parse_time(time);
        last_time = time.to_string();
        let leaf = event["leaf_hash"].as_str().unwrap();
        assert!(ledger::parse_hash(leaf).is_some(), "leaf hash {leaf:?}");
    }
    // Exactly the eleven events were written, and the last one is the checkpoint's head.
    let checkpoint = s.checkpoint();
    assert_eq!(checkpoint["size"], size_before + 11);
    assert_eq!(checkpoint["head"], events[10]["leaf_hash"]);
    assert_eq!(events[10]["seq"], size_before + 10);

    // The listing agrees.
    let listed = s.list_all("");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["stage"], "closed");
    assert_eq!(listed[0]["version"], 11);
    assert_eq!(listed[0]["assignee"], "bob");
    assert_eq!(listed[0]["risk"], "low");

    // A closed change takes no further action.
    s.act("frank", id, &json!({"action": "close"}))
        .expect_error(409, "change_closed");
    s.act("alice", id, &json!({"action": "cancel"}))
        .expect_error(409, "change_closed");
    assert_eq!(s.change(id)["version"], 11);
}

fn rework_loops_and_amendments_ask_for_approvals_again(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let id = s.create_ok("alice", &normal_change("Rework me"));
    let steps = to_approved(&minutes_from_now(-1), &minutes_from_now(60));
    run_actions(&s, &id, &steps[..3]);
    // A peer review asking for changes sends the change back to planned.
    let r = s.act_ok(
        "dave",
        &id,
        &json!({"action": "peer_review", "decision": "changes_requested",
                "comment": "retry lacks a backoff"}),
    );
    assert_eq!(r["stage"], "planned");
    assert_eq!(r["event"]["rework"], true);
    // Asking for changes needs a reason.
    s.act(
        "dave",
        &id,
        &json!({"action": "peer_review", "decision": "changes_requested", "comment": " "}),
    )
    .expect_error(422, "missing_field");
    s.act_ok("dave", &id, &steps[3].1);
    // A failed test too.
    let r = s.act_ok(
        "erin",
        &id,
        &json!({"action": "test", "result": "failed", "evidence": "3 failures"}),
    );
    assert_eq!(r["stage"], "planned");
    s.act_ok("dave", &id, &steps[3].1);
    s.act_ok("erin", &id, &steps[4].1);
    let view = s.change(&id);
    assert_eq!(view["stage"], "tested");
    assert_eq!(view["change"]["reworks"], 2);

    // Changing the plan after review and test invalidates both approvals and returns the
    // change to the stage before the earliest of them.
    let r = s.act_ok(
        "bob",
        &id,
        &json!({"action": "amend", "implementation_plan": "deploy with a canary first"}),
    );
    assert_eq!(r["stage"], "planned");
    let invalidated: Vec<&str> = r["event"]["invalidated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["step"].as_str().unwrap())
        .collect();
    assert!(invalidated.contains(&"peer_review"), "{invalidated:?}");
    assert!(invalidated.contains(&"test"), "{invalidated:?}");
    assert_eq!(r["event"]["edits"][0]["field"], "implementation_plan");
    // The same reviewer may approve the new content.
    s.act_ok("dave", &id, &steps[3].1);
    s.act_ok("erin", &id, &steps[4].1);
    s.act_ok("frank", &id, &steps[5].1);
    run_actions(&s, &id, &to_closed());
    let view = s.change(&id);
    assert_eq!(view["stage"], "closed");
    let stale = view["change"]["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["invalidated"].is_string())
        .count();
    assert!(stale >= 2, "{}", view["change"]["approvals"]);
    // An amendment that changes nothing is refused.
    let other = s.create_ok("alice", &normal_change("Same title"));
    s.act(
        "alice",
        &other,
        &json!({"action": "amend", "title": "Same title"}),
    )
    .expect_error(422, "nothing_to_amend");
}

fn emergency_change_is_implemented_first_and_approved_after_the_fact(backend: Backend) {
    let mut env = DataEnv::with_cast(backend);
    // Someone who may both deploy and approve: segregation of duties must stop them.
    env.add_user("rex", &["release_manager", "change_manager"]);
    let s = TestServer::start(env);
    let body = json!({
        "title": "Hotfix: expired TLS certificate",
        "type": "emergency",
        "category": "infrastructure",
        "systems": ["edge"],
    });
    let id = s.create_ok("alice", &body);
    let before = OffsetDateTime::now_utc();
    let r = s.act_ok(
        "rex",
        &id,
        &json!({"action": "implement", "environment": "production", "artifact": "cert-2027"}),
    );
    let after = OffsetDateTime::now_utc();
    assert_eq!(r["stage"], "implemented");
    let due = parse_time(r["event"]["due"].as_str().expect("due"));
    let window = time::Duration::hours(72);
    assert!(
        due >= before + window - time::Duration::seconds(1) && due <= after + window,
        "due {due} is not 72 hours after implementation"
    );
    assert!(r["event"]["note"].is_string());
    let view = s.change(&id);
    assert_eq!(view["change"]["deployment"]["before_approval"], true);
    // Not late yet: no exception.
    assert_eq!(view["exceptions"], json!([]));
    let listed = s.get(Some("olivia"), "/api/v1/exceptions");
    assert_eq!(listed.expect(200)["exceptions"], json!([]));

    s.act_ok(
        "frank",
        &id,
        &json!({"action": "review_implementation", "outcome": "successful"}),
    );
    s.act_ok(
        "frank",
        &id,
        &json!({"action": "communicate", "release_notes": "certificate renewed"}),
    );
    let size = s.ledger_size();
    s.act("frank", &id, &json!({"action": "close"}))
        .expect_error(409, "retroactive_approval_required");
    // The deployer may not approve their own emergency fix, even with the role.
    s.act("rex", &id, &json!({"action": "approve_retroactively"}))
        .expect_error(403, "sod_retroactive_approver");
    s.act("ivan", &id, &json!({"action": "approve_retroactively"}))
        .expect_error(403, "role_not_allowed");
    assert_eq!(s.ledger_size(), size);
    let r = s.act_ok(
        "frank",
        &id,
        &json!({"action": "approve_retroactively", "comment": "fix reviewed"}),
    );
    assert_eq!(r["event"]["approval"]["step"], "retroactive");
    assert!(
        r["event"]["note"].is_null(),
        "approved in time: {}",
        r.clone()
    );
    s.act_ok("frank", &id, &json!({"action": "close"}));
    let view = s.change(&id);
    assert_eq!(view["stage"], "closed");
    assert_eq!(view["exceptions"], json!([]));

    // Approval after the fact is for emergencies only.
    let normal = s.create_ok("alice", &normal_change("Not urgent"));
    s.act(
        "frank",
        &normal,
        &json!({"action": "approve_retroactively"}),
    )
    .expect_error(409, "not_emergency");
}

fn standard_configuration_change_follows_its_shorter_model(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let id = s.create_ok(
        "alice",
        &json!({
            "title": "Rotate billing credentials",
            "type": "standard",
            "category": "configuration",
            "systems": ["billing"],
        }),
    );
    let view = s.change(&id);
    assert_eq!(
        view["model"],
        json!([
            "requested",
            "evaluated",
            "planned",
            "tested",
            "approved_for_deployment",
            "implemented",
            "post_implementation_reviewed",
            "communicated",
            "closed"
        ])
    );
    s.act_ok(
        "frank",
        &id,
        &json!({"action": "evaluate", "risk": "low", "priority": "low"}),
    );
    s.act(
        "grace",
        &id,
        &json!({"action": "authorize", "assignee": "bob"}),
    )
    .expect_error(409, "stage_not_in_model");
    // Without an authorization naming an assignee, the planner becomes the assignee.
    let r = s.act_ok(
        "carol",
        &id,
        &json!({"action": "plan", "implementation_plan": "apply the template",
                "test_plan": "log in with the new credentials"}),
    );
    assert_eq!(r["stage"], "planned");
    assert_eq!(s.change(&id)["change"]["assignee"], "carol");
    s.act(
        "dave",
        &id,
        &json!({"action": "peer_review", "decision": "approved"}),
    )
    .expect_error(409, "stage_not_in_model");
    // An independent tester passes it.
    s.act_ok(
        "erin",
        &id,
        &json!({"action": "test", "result": "passed", "evidence": "login ok"}),
    );
    s.act_ok(
        "frank",
        &id,
        &json!({"action": "approve_deployment", "window_start": minutes_from_now(-1),
                "window_end": minutes_from_now(30)}),
    );
    run_actions(&s, &id, &to_closed());
    assert_eq!(s.change(&id)["stage"], "closed");
}

fn customer_change_needs_the_customers_acceptance(backend: Backend) {
    let s = TestServer::with_cast(backend);
    let mut body = normal_change("Acme single sign-on");
    body["on_behalf_of"] = json!("acme");
    let id = s.create_ok("judy", &body);
    let steps = to_approved(&minutes_from_now(-1), &minutes_from_now(60));
    run_actions(&s, &id, &steps[..5]);
    let size = s.ledger_size();
    s.act("frank", &id, &steps[5].1)
        .expect_error(409, "customer_acceptance_required");
    // Only a member of the customer's group speaks for it.
    s.act("frank", &id, &json!({"action": "accept"}))
        .expect_error(403, "role_not_allowed");
    assert_eq!(s.ledger_size(), size);
    let r = s.act_ok("judy", &id, &json!({"action": "accept", "comment": "ok"}));
    assert_eq!(r["event"]["approval"]["step"], "acceptance");
    s.act("judy", &id, &json!({"action": "accept"}))
        .expect_error(409, "already_approved");
    s.act_ok("frank", &id, &steps[5].1);
    run_actions(&s, &id, &to_closed());
    assert_eq!(s.change(&id)["stage"], "closed");
    // A customer named like a role is refused.
    let mut body = normal_change("Spoofed customer");
    body["on_behalf_of"] = json!("cab_member");
    s.create("alice", &body).expect_error(422, "invalid_field");
}

fn a_policy_file_tailors_the_rules(backend: Backend) {
    let env = DataEnv::with_cast(backend);
    let policy = env.scratch().join("policy.toml");
    std::fs::write(
        &policy,
        "emergency_approval_window_hours = 1\n\
         rollback_plan_always = true\n\
         [roles]\n\
         implement = [\"release_manager\", \"engineer\"]\n",
    )
    .unwrap();
    let check = common::run_bin([
        "policy".to_string(),
        "check".into(),
        policy.display().to_string(),
    ]);
    assert!(check.status.success(), "{}", common::text(&check.stderr));
    let s = TestServer::start_with(env, &["--policy", policy.to_str().unwrap()]);

    // The policy's activation is itself a ledger entry.
    let first = s.get(Some("olivia"), "/api/v1/ledger/entries/0");
    let mut seq = 0;
    let mut found = false;
    let size = s.ledger_size();
    while seq < size {
        let e = s.get(Some("olivia"), &format!("/api/v1/ledger/entries/{seq}"));
        let canonical: Value =
            serde_json::from_str(e.expect(200)["canonical"].as_str().unwrap()).unwrap();
        if canonical["kind"] == "policy.activated" {
            assert_eq!(
                canonical["payload"]["policy"]["emergency_approval_window_hours"],
                1
            );
            found = true;
        }
        seq += 1;
    }
    assert!(
        found,
        "no policy.activated entry; first entry {}",
        first.text
    );

    // A one-hour window for approval after the fact.
    let id = s.create_ok(
        "alice",
        &json!({"title": "Hotfix", "type": "emergency", "category": "application",
                "systems": ["portal"]}),
    );
    let before = OffsetDateTime::now_utc();
    let r = s.act_ok(
        "bob",
        &id,
        &json!({"action": "implement", "environment": "production", "artifact": "fix-1"}),
    );
    let due = parse_time(r["event"]["due"].as_str().expect("due"));
    let hour = time::Duration::hours(1);
    assert!(
        due >= before + hour - time::Duration::seconds(1)
            && due <= OffsetDateTime::now_utc() + hour,
        "due {due} is not an hour after implementation"
    );
    // A rollback plan is required even on a testable change.
    let id = s.create_ok("alice", &normal_change("Needs a way back"));
    let steps = to_approved(&minutes_from_now(-1), &minutes_from_now(60));
    run_actions(&s, &id, &steps[..2]);
    s.act(
        "bob",
        &id,
        &json!({"action": "plan", "implementation_plan": "p", "test_plan": "t"}),
    )
    .expect_error(409, "rollback_plan_required");
    s.act_ok("bob", &id, &steps[2].1);
}
