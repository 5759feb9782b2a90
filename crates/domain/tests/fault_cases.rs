//! The fault cases of `shared/cases/fault-cases.md` that the lifecycle itself decides, each
//! named after its case. People follow the cases: alice, bob, carol, dave, erin.

mod common;

use common::*;
use domain::action::{format_instant, Amend};
use domain::decide::requirement_met;
use domain::{
    Action, ActionKind, Actor, ApprovalStep, Category, Change, ChangeEvent, ChangeType, Level,
    Policy, Recorded, RefusalKind, Role, Stage,
};
use time::macros::datetime;
use time::OffsetDateTime;

/// BR-04: a change requested by alice, built by carol, reviewed and tested by dave, and
/// approved by bob: authorized, then approved for deployment in the window
/// 2026-05-12T22:00Z for two hours.
fn chg_200() -> Driver {
    let alice = person("alice", &[Role::Requester], &[]);
    let bob = person("bob", &[Role::ChangeManager, Role::CabMember], &[]);
    let carol = person("carol", &[Role::Engineer], &[]);
    let dave = person("dave", &[Role::PeerReviewer, Role::Tester], &[]);
    let new = new_change(ChangeType::Normal, Category::Application);
    let mut d = Driver::request(Policy::default(), T0, &alice, new);
    d.advance(10).act(&bob, evaluate(Level::Low));
    d.advance(10).act(&bob, authorize(Some("carol")));
    d.advance(10)
        .act(&carol, plan(Some("smoke test"), Some("redeploy v41")));
    d.advance(10).act(&dave, review_approved());
    d.advance(10).act(&dave, test_passed());
    d.now = datetime!(2026-05-11 09:00 UTC);
    d.act(
        &bob,
        approve_deployment(Some((
            datetime!(2026-05-12 22:00 UTC),
            datetime!(2026-05-13 00:00 UTC),
        ))),
    );
    assert_eq!(d.change.stage, Stage::ApprovedForDeployment);
    d
}

#[test]
fn br04_a_ticket_rewritten_after_approval_loses_its_approvals_and_asks_again() {
    let alice = person("alice", &[Role::Requester], &[]);
    let erin = person("erin", &[Role::ReleaseManager], &[]);
    let mut d = chg_200();
    let approvals_before = d.change.approvals.clone();
    let deployment_approval = approvals_before
        .iter()
        .find(|e| e.approval.step == ApprovalStep::Deployment)
        .unwrap()
        .approval
        .clone();

    d.now = datetime!(2026-05-11 15:00 UTC);
    let edit = d.act(
        &alice,
        amend(|a| {
            a.risk = Some(Level::High);
            a.rollback_plan = Some(Some("none".into()));
            a.window_start = Some("2026-05-12T14:00:00Z".into());
            a.window_end = Some("2026-05-12T16:00:00Z".into());
        }),
    );

    // Every approval rested on the old content: all are invalidated, bob's included.
    let invalidated: Vec<(ApprovalStep, &str)> = edit
        .invalidated
        .iter()
        .map(|i| (i.step, i.approver.as_str()))
        .collect();
    assert_eq!(
        invalidated,
        vec![
            (ApprovalStep::Authorization, "bob"),
            (ApprovalStep::PeerReview, "dave"),
            (ApprovalStep::Test, "dave"),
            (ApprovalStep::Deployment, "bob"),
        ]
    );
    let reason = &edit.invalidated[3].reason;
    for field in ["risk", "rollback_plan", "window_start", "window_end"] {
        assert!(reason.contains(field), "{reason}");
    }
    assert_eq!(edit.invalidated[3].approved_at, "2026-05-11T09:00:00Z");

    // The change is back where authorization is asked for again.
    assert_eq!(
        (edit.stage_from, edit.stage_to),
        (Stage::ApprovedForDeployment, Stage::Evaluated)
    );
    assert!(edit.note.as_deref().unwrap().contains("4 approval(s)"));

    // The edit is recorded field by field.
    let edits: Vec<(&str, String, String)> = edit
        .edits
        .iter()
        .map(|e| (e.field.as_str(), e.old.to_string(), e.new.to_string()))
        .collect();
    assert_eq!(
        edits,
        vec![
            ("risk", "\"low\"".into(), "\"high\"".into()),
            (
                "rollback_plan",
                "\"redeploy v41\"".into(),
                "\"none\"".into()
            ),
            (
                "window_start",
                "\"2026-05-12T22:00:00Z\"".into(),
                "\"2026-05-12T14:00:00Z\"".into()
            ),
            (
                "window_end",
                "\"2026-05-13T00:00:00Z\"".into(),
                "\"2026-05-12T16:00:00Z\"".into()
            ),
        ]
    );

    // Nothing is deleted: the old approvals are still there, marked, with their basis h1.
    assert_eq!(d.change.approvals.len(), approvals_before.len());
    for (now, then) in d.change.approvals.iter().zip(&approvals_before) {
        assert_eq!(now.approval, then.approval);
        assert!(now
            .invalidated
            .as_deref()
            .unwrap()
            .contains("2026-05-11T15:00:00Z"));
    }
    assert_ne!(
        deployment_approval.basis,
        d.change.basis(ApprovalStep::Deployment),
        "h1 != h2"
    );
    assert_eq!(
        d.change.valid_approvals(ApprovalStep::Deployment).count(),
        0
    );

    // Implementation inside the new window is refused: nobody approved this content.
    d.now = datetime!(2026-05-12 14:00 UTC);
    let r = d.refuse(&erin, implement());
    assert_refused(&r, RefusalKind::Conflict, "stage_order");
    d.now = datetime!(2026-05-12 14:30 UTC);
    let r = d.refuse(&erin, implement());
    assert_refused(&r, RefusalKind::Conflict, "stage_order");
    assert!(d.change.deployment.is_none());
    assert_eq!(d.replayed(), d.change);
}

#[test]
fn br04_moving_only_the_window_asks_only_for_deployment_approval_again() {
    let alice = person("alice", &[Role::Requester], &[]);
    let bob = person("bob", &[Role::ChangeManager, Role::CabMember], &[]);
    let erin = person("erin", &[Role::ReleaseManager], &[]);
    let mut d = chg_200();
    d.now = datetime!(2026-05-11 15:00 UTC);
    let edit = d.act(
        &alice,
        amend(|a| a.window_start = Some("2026-05-12T21:00:00+00:00".into())),
    );
    assert_eq!(edit.stage_to, Stage::Tested);
    assert_eq!(edit.invalidated.len(), 1);
    assert_eq!(edit.invalidated[0].step, ApprovalStep::Deployment);
    assert_eq!(
        d.change.window.as_ref().unwrap().start,
        "2026-05-12T21:00:00Z",
        "recorded in UTC"
    );
    d.now = datetime!(2026-05-12 21:30 UTC);
    let r = d.refuse(&erin, implement());
    assert_refused(&r, RefusalKind::Conflict, "stage_order");
    // bob approves the new window; the earlier approvals still hold.
    d.act(&bob, approve_deployment(None));
    d.act(&erin, implement());
    assert_eq!(d.change.stage, Stage::Implemented);
}

#[test]
fn br04_an_approver_editing_before_deciding_is_recorded_as_their_edit() {
    let bob = person("bob", &[Role::ChangeManager, Role::CabMember], &[]);
    let alice = person("alice", &[Role::Requester], &[]);
    let new = new_change(ChangeType::Normal, Category::Application);
    let requested_text = new.description.clone();
    let mut d = Driver::request(Policy::default(), T0, &alice, new);
    d.advance(5).act(&bob, evaluate(Level::Low));
    let edit = d.advance(5).act(
        &bob,
        amend(|a| a.description = Some("reworded by approver".into())),
    );
    d.advance(5).act(&bob, authorize(Some("carol")));

    let (at, _) = &d.log[2];
    assert_eq!(at.actor, "bob");
    assert_eq!(edit.edits.len(), 1);
    assert_eq!(edit.edits[0].field, "description");
    assert_eq!(edit.edits[0].old, serde_json::json!(requested_text));
    assert_eq!(edit.edits[0].new, serde_json::json!("reworded by approver"));
    // The requester's own text stays in the request.
    match &d.log[0].1.action {
        Action::Request(n) => assert_eq!(n.description, requested_text),
        other => panic!("first event is {other:?}"),
    }
    // bob's authorization rests on the text as he left it.
    let approval = d.change.valid_approvals(ApprovalStep::Authorization).next();
    assert_eq!(approval.unwrap().by, "bob");
}

/// BR-08: the group cab-payments of alice, bob and carol authorizes changes.
fn cab_payments_policy(extra: &str) -> Policy {
    Policy::from_toml(&format!(
        "[[approvals]]\naction = \"authorize\"\ngroups = [\"cab-payments\"]\n{extra}"
    ))
    .unwrap()
}

fn cab_payments(name: &str) -> Actor {
    person(name, &[Role::Requester, Role::CabMember], &["cab-payments"])
}

fn evaluated_by_erin(policy: Policy, requester: &Actor) -> Driver {
    let erin = person("erin", &[Role::ChangeManager], &[]);
    let new = new_change(ChangeType::Normal, Category::Application);
    let mut d = Driver::request(policy, datetime!(2026-06-01 08:00 UTC), requester, new);
    d.advance(5).act(&erin, evaluate(Level::Medium));
    d
}

#[test]
fn br08a_a_requester_in_the_approving_group_cannot_approve_their_own_change() {
    let alice = cab_payments("alice");
    let mut d = evaluated_by_erin(cab_payments_policy(""), &alice);
    d.now = datetime!(2026-06-01 09:00 UTC);
    let r = d.refuse(&alice, authorize(Some("dave")));
    assert_refused(&r, RefusalKind::Forbidden, "sod_requester_authorizer");
    assert_eq!(d.change.stage, Stage::Evaluated);
    assert!(!requirement_met(
        &d.change,
        &d.policy,
        ActionKind::Authorize
    ));
    // Anyone else from the group may.
    d.act(&cab_payments("bob"), authorize(Some("dave")));
    assert_eq!(d.change.stage, Stage::Authorized);
}

#[test]
fn br08b_an_approval_is_attributed_to_its_actor_and_fills_no_one_elses_slot() {
    // "all of [bob, carol]": one seat each.
    let policy = Policy::from_toml(
        "[[approvals]]\naction = \"authorize\"\ngroups = [\"seat-bob\", \"seat-carol\"]\n",
    )
    .unwrap();
    let bob = person("bob", &[Role::CabMember], &["cab-payments", "seat-bob"]);
    let carol = person("carol", &[Role::CabMember], &["cab-payments", "seat-carol"]);
    let dave = person("dave", &[Role::Requester], &[]);
    let mut d = evaluated_by_erin(policy, &dave);

    d.now = datetime!(2026-06-01 10:00 UTC);
    let e = d.act(&bob, authorize(Some("alice")));
    let approval = e.approval.unwrap();
    assert_eq!(
        (approval.by.as_str(), approval.slot.as_deref()),
        ("bob", Some("seat-bob"))
    );

    d.now = datetime!(2026-06-01 10:01 UTC);
    let r = d.refuse(&bob, authorize(None));
    assert_refused(&r, RefusalKind::Conflict, "already_approved");

    // The wire form has no field to answer for someone else or to pick a slot.
    for field in ["approver", "by", "slot", "on_behalf_of"] {
        let json = serde_json::json!({"action": "authorize", field: "carol"});
        let e = serde_json::from_value::<Action>(json).unwrap_err();
        assert!(e.to_string().contains(field), "{e}");
    }
    assert_eq!(d.change.stage, Stage::Evaluated, "carol's seat is pending");
    assert!(!requirement_met(
        &d.change,
        &d.policy,
        ActionKind::Authorize
    ));
    assert!(d.change.approvals.iter().all(|e| e.approval.by == "bob"));

    d.act(&carol, authorize(None));
    assert_eq!(d.change.stage, Stage::Authorized);
}

#[test]
fn br08c_eligibility_is_judged_when_the_decision_is_taken() {
    let dave = person("dave", &[Role::Requester], &[]);
    let mut d = evaluated_by_erin(cab_payments_policy(""), &dave);
    // 08:00 bob left cab-payments; at 09:00 he still holds his role, not the group.
    let bob_after_removal = person("bob", &[Role::CabMember], &[]);
    d.now = datetime!(2026-06-02 09:00 UTC);
    let r = d.refuse(&bob_after_removal, authorize(Some("alice")));
    assert_refused(&r, RefusalKind::Forbidden, "not_in_required_group");
    assert!(r.message.contains("`cab-payments`"), "{}", r.message);
    // Without the role as well, the role is what he lacks.
    let bob_revoked = person("bob", &[Role::Requester], &[]);
    let r = d.refuse(&bob_revoked, authorize(Some("alice")));
    assert_refused(&r, RefusalKind::Forbidden, "role_not_allowed");
    assert!(!requirement_met(
        &d.change,
        &d.policy,
        ActionKind::Authorize
    ));
}

#[test]
fn br08c_an_approval_given_while_eligible_keeps_counting_after_removal() {
    let dave = person("dave", &[Role::Requester], &[]);
    let mut d = evaluated_by_erin(cab_payments_policy(""), &dave);
    d.act(&cab_payments("bob"), authorize(Some("alice")));
    // bob leaves the group: the fold takes no roles or groups, so nothing changes.
    let replayed = d.replayed();
    assert_eq!(replayed.stage, Stage::Authorized);
    assert!(requirement_met(&replayed, &d.policy, ActionKind::Authorize));
}

/// BR-23: CHG-300, approved by bob on 2026-04-01, then edited through the API by carol's
/// token: the window moved and the rollback plan cleared.
fn chg_300() -> Driver {
    let alice = person("alice", &[Role::Requester], &[]);
    let bob = person("bob", &[Role::ChangeManager, Role::CabMember], &[]);
    let engineer = person("erin", &[Role::Engineer], &[]);
    let reviewer = person("dave", &[Role::PeerReviewer, Role::Tester], &[]);
    let new = new_change(ChangeType::Normal, Category::Application);
    let mut d = Driver::request(
        Policy::default(),
        datetime!(2026-03-31 12:00 UTC),
        &alice,
        new,
    );
    d.advance(10).act(&bob, evaluate(Level::Low));
    d.advance(10).act(&bob, authorize(Some("erin")));
    d.advance(10).act(
        &engineer,
        plan(Some("smoke test"), Some("restore snapshot")),
    );
    d.advance(10).act(&reviewer, review_approved());
    d.advance(10).act(&reviewer, test_passed());
    d.now = datetime!(2026-04-01 09:00 UTC);
    d.act(
        &bob,
        approve_deployment(Some((
            datetime!(2026-04-05 22:00 UTC),
            datetime!(2026-04-06 00:00 UTC),
        ))),
    );
    d
}

fn carol_token() -> Actor {
    person("carol", &[Role::ChangeManager], &[])
}

fn json_round_trip(log: &[(Recorded, ChangeEvent)]) -> Vec<(Recorded, ChangeEvent)> {
    log.iter()
        .map(|(at, e)| {
            let text = serde_json::to_string(e).unwrap();
            (at.clone(), serde_json::from_str(&text).unwrap())
        })
        .collect()
}

#[test]
fn br23_api_edits_and_a_field_set_to_null_are_recorded_with_old_and_new_values() {
    let mut d = chg_300();
    d.now = datetime!(2026-04-02 10:00 UTC);
    let moved = d.act(
        &carol_token(),
        amend(|a| a.window_start = Some("2026-04-04T22:00:00Z".into())),
    );
    assert_eq!(moved.edits.len(), 1);
    assert_eq!(moved.edits[0].field, "window_start");
    assert_eq!(
        moved.edits[0].old,
        serde_json::json!("2026-04-05T22:00:00Z")
    );
    assert_eq!(
        moved.edits[0].new,
        serde_json::json!("2026-04-04T22:00:00Z")
    );

    d.now = datetime!(2026-04-02 10:05 UTC);
    let cleared = d.act(&carol_token(), amend(|a| a.rollback_plan = Some(None)));
    assert_eq!(cleared.edits.len(), 1);
    assert_eq!(cleared.edits[0].field, "rollback_plan");
    assert_eq!(cleared.edits[0].old, serde_json::json!("restore snapshot"));
    assert_eq!(cleared.edits[0].new, serde_json::Value::Null);
    assert_eq!(d.change.plan.as_ref().unwrap().rollback_plan, None);

    for (at, _) in &d.log[d.log.len() - 2..] {
        assert_eq!(at.actor, "carol");
    }
    // What the ledger stores (JSON) folds to the same change, the null included.
    let stored = json_round_trip(&d.log);
    assert_eq!(stored, d.log);
    let Action::Amend(Amend { rollback_plan, .. }) = &stored.last().unwrap().1.action else {
        panic!("last event is not an amendment")
    };
    assert_eq!(rollback_plan, &Some(None));
    let replayed =
        Change::replay("CHG-000001", stored.iter().map(|(at, e)| (at.clone(), e))).unwrap();
    assert_eq!(replayed, d.change);
}

#[test]
fn br23_a_past_approval_keeps_its_approver_whatever_happens_to_them_later() {
    let mut d = chg_300();
    // Carol's move of the window invalidated bob's deployment approval, not his
    // authorization of 2026-04-01.
    d.now = datetime!(2026-04-02 10:00 UTC);
    d.act(
        &carol_token(),
        amend(|a| a.window_start = Some("2026-04-04T22:00:00Z".into())),
    );
    // 2026-05-01: bob is offboarded. The fold takes no directory: replay is unchanged.
    let replayed = d.replayed();
    assert_eq!(replayed, d.change);
    let authorization = replayed
        .valid_approvals(ApprovalStep::Authorization)
        .next()
        .unwrap();
    assert_eq!(authorization.by, "bob");
    assert_eq!(authorization.at, "2026-03-31T12:20:00Z");
    // Nor does a different actor name in the ledger entry rewrite who approved.
    let mut relabelled = d.log.clone();
    relabelled[2].0.actor = "carol".into();
    let replayed = Change::replay(
        "CHG-000001",
        relabelled.iter().map(|(at, e)| (at.clone(), e)),
    )
    .unwrap();
    assert_eq!(replayed.approvals[0].approval.by, "bob");
}

#[test]
fn br23_a_policy_change_applies_only_to_decisions_after_it() {
    let old_policy = Policy::default();
    let mut d = chg_300();
    // 2026-05-02: the workflow is edited; authorization now needs two CAB members and
    // deployment approval two approvers.
    let new_policy = Policy::from_toml(
        "[[approvals]]\naction = \"authorize\"\ncount = 2\ngroups = [\"cab_member\"]\n\
         [[approvals]]\naction = \"approve_deployment\"\ncount = 2\n",
    )
    .unwrap();
    assert_ne!(old_policy.digest(), new_policy.digest());
    assert!(d.log.iter().all(|(_, e)| e.policy == old_policy.digest()));

    // Replay knows no policy: the recorded outcomes stand.
    let before = d.replayed();
    d.policy = new_policy.clone();
    assert_eq!(d.replayed(), before);
    assert_eq!(before.stage, Stage::ApprovedForDeployment);

    // The next decision is taken, and recorded, under the new policy.
    d.now = datetime!(2026-05-03 09:00 UTC);
    let e = d.act(
        &carol_token(),
        amend(|a| {
            a.window_start = Some("2026-05-05T22:00:00Z".into());
            a.window_end = Some("2026-05-06T00:00:00Z".into());
        }),
    );
    assert_eq!(e.policy, new_policy.digest());
    let bob = person("bob", &[Role::ChangeManager, Role::CabMember], &[]);
    d.act(&bob, approve_deployment(None));
    assert_eq!(d.change.stage, Stage::Tested, "the new rule asks for two");
    d.act(&carol_token(), approve_deployment(None));
    assert_eq!(d.change.stage, Stage::ApprovedForDeployment);
}

#[test]
fn br23_no_event_is_dated_before_the_change_was_created() {
    let mut d = chg_300();
    let created = d.change.created_at.clone();
    let bob = person("bob", &[Role::ChangeManager, Role::CabMember], &[]);
    d.now = datetime!(2026-03-30 09:00 UTC);
    let r = d.refuse(&bob, reject("backdated"));
    assert_refused(&r, RefusalKind::Conflict, "time_before_last_event");
    let parse = |t: &str| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339);
    let created = parse(&created).unwrap();
    assert!(d
        .log
        .iter()
        .all(|(at, _)| parse(&at.time).unwrap() >= created));
}

#[test]
fn br09_the_author_does_not_approve_the_deployment_they_trigger() {
    let alice = person("alice", &[Role::Engineer, Role::ReleaseManager], &[]);
    let bob = person("bob", &[Role::PeerReviewer, Role::ChangeManager], &[]);
    let tester = person("dave", &[Role::Tester], &[]);
    let mut d = Driver::new(ChangeType::Normal, Category::Application);
    d.act(&bob, evaluate(Level::Low));
    d.act(&bob, authorize(Some("alice")));
    d.act(&alice, full_plan());
    d.act(&bob, review_approved());
    d.act(&tester, test_passed());
    let r = d.refuse(&alice, approve_deployment(Some(window_from(d.now))));
    assert_refused(&r, RefusalKind::Forbidden, "sod_author_deployment_approver");
}

#[test]
fn br10_bot_approvals_never_count_and_a_standard_change_needs_no_authorization() {
    let bot = machine(
        "github-actions[bot]",
        &[Role::ChangeManager, Role::CabMember, Role::PeerReviewer],
    );
    let mut d = normal_to(Stage::Evaluated);
    let r = d.refuse(&bot, authorize(Some("bob")));
    assert_refused(&r, RefusalKind::Forbidden, "machine_identity_not_allowed");
    assert_eq!(d.change.approvals.len(), 0);

    let mut d = drive_to(
        Driver::new(ChangeType::Standard, Category::Application),
        Stage::Planned,
    );
    let r = d.refuse(&bot, review_approved());
    assert_refused(&r, RefusalKind::Forbidden, "machine_identity_not_allowed");
}

#[test]
fn a_deployment_time_is_the_time_of_the_decision() {
    let d = normal_to(Stage::Implemented);
    let deployment = d.change.deployment.as_ref().unwrap();
    assert_eq!(deployment.at, format_instant(d.now));
    let window = d.change.window.as_ref().unwrap();
    assert!(deployment.at >= window.start && deployment.at < window.end);
}
