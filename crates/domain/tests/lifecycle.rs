//! Every change model of the default policy from request to closure, and the side exits:
//! rework loops, rejection, deferral, cancellation and roll-back.

mod common;

use common::*;
use domain::action::{ImplementationOutcome, ReviewDecision, TestResult};
use domain::{
    exceptions, ApprovalStep, Category, ChangeType, ExceptionStatus, Level, Policy, RefusalKind,
    Role, Stage,
};
use time::Duration;

use Stage::*;

fn assert_replays(d: &Driver) {
    assert_eq!(
        d.replayed(),
        d.change,
        "replay differs from the applied state"
    );
    assert_eq!(d.change.version, d.log.len() as u64);
}

#[test]
fn a_normal_application_change_goes_through_every_stage() {
    let d = normal_to(Closed);
    assert_eq!(
        d.stages(),
        vec![
            Requested,
            Evaluated,
            Authorized,
            Planned,
            PeerReviewed,
            Tested,
            ApprovedForDeployment,
            Implemented,
            Reviewed,
            Communicated,
            Closed
        ]
    );
    let steps: Vec<(ApprovalStep, &str)> = d
        .change
        .approvals
        .iter()
        .map(|e| (e.approval.step, e.approval.by.as_str()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (ApprovalStep::Authorization, "erin"),
            (ApprovalStep::PeerReview, "carol"),
            (ApprovalStep::Test, "dave"),
            (ApprovalStep::Deployment, "erin"),
        ]
    );
    let deployment = d.change.deployment.as_ref().unwrap();
    assert_eq!(
        (deployment.by.as_str(), deployment.before_approval),
        ("gina", false)
    );
    assert_eq!(d.change.outcome, Some(ImplementationOutcome::Successful));
    assert!(d.change.release_notes.is_some());
    let kinds: Vec<String> = d.log.iter().map(|(_, e)| e.ledger_kind()).collect();
    assert_eq!(kinds[0], "change.request");
    assert_eq!(kinds[10], "change.close");
    assert!(kinds
        .iter()
        .all(|k| domain::Change::is_change_kind(k.as_str())));
    assert!(exceptions(&d.change, &d.policy, d.now + Duration::days(30)).is_empty());
    assert_replays(&d);
}

#[test]
fn deployment_approvals_still_count_after_the_deployment() {
    let d = normal_to(Implemented);
    let approvers: Vec<&str> = d
        .change
        .valid_approvals(ApprovalStep::Deployment)
        .map(|a| a.by.as_str())
        .collect();
    assert_eq!(approvers, vec!["erin"]);
    assert!(domain::decide::requirement_met(
        &d.change,
        &d.policy,
        domain::ActionKind::ApproveDeployment
    ));
}

#[test]
fn a_standard_change_skips_authorization() {
    let d = drive_to(
        Driver::new(ChangeType::Standard, Category::Application),
        Closed,
    );
    assert_eq!(
        d.stages(),
        vec![
            Requested,
            Evaluated,
            Planned,
            PeerReviewed,
            Tested,
            ApprovedForDeployment,
            Implemented,
            Reviewed,
            Communicated,
            Closed
        ]
    );
    assert_eq!(
        d.change.assignee.as_deref(),
        Some("bob"),
        "the planner builds it"
    );
    assert!(d
        .change
        .approvals
        .iter()
        .all(|e| e.approval.step != ApprovalStep::Authorization));
    assert_replays(&d);
}

#[test]
fn a_configuration_change_skips_peer_review() {
    let c = cast();
    let mut d = drive_to(
        Driver::new(ChangeType::Normal, Category::Configuration),
        Planned,
    );
    d.act(&c.dave, test_passed());
    assert_eq!(d.change.stage, Tested);
    let d = drive_to(d, Closed);
    assert!(!d.stages().contains(&PeerReviewed));
    assert_replays(&d);
}

#[test]
fn a_change_that_cannot_be_tested_skips_testing_and_carries_a_rollback_plan() {
    let c = cast();
    let mut new = new_change(ChangeType::Normal, Category::Infrastructure);
    new.testable = false;
    let mut d = drive_to(
        Driver::request(Policy::default(), T0, &c.alice, new),
        Authorized,
    );
    d.act(
        &c.bob,
        plan(None, Some("fail over to the old load balancer")),
    );
    d.act(&c.carol, review_approved());
    let w = window_from(d.now);
    d.act(&c.erin, approve_deployment(Some(w)));
    assert_eq!(d.change.stage, ApprovedForDeployment);
    let d = drive_to(d, Closed);
    assert!(!d.stages().contains(&Tested));
    let plan = d.change.plan.as_ref().unwrap();
    assert_eq!(plan.test_plan, None);
    assert!(plan.rollback_plan.is_some());
    assert_replays(&d);
}

#[test]
fn a_configuration_change_that_cannot_be_tested_goes_from_plan_to_deployment_approval() {
    let c = cast();
    let mut new = new_change(ChangeType::Normal, Category::Configuration);
    new.testable = false;
    let d = Driver::request(Policy::default(), T0, &c.alice, new);
    let mut d = drive_to(d, Planned);
    let w = window_from(d.now);
    d.act(&c.erin, approve_deployment(Some(w)));
    let d = drive_to(d, Closed);
    assert_eq!(
        d.stages(),
        vec![
            Requested,
            Evaluated,
            Authorized,
            Planned,
            ApprovedForDeployment,
            Implemented,
            Reviewed,
            Communicated,
            Closed
        ]
    );
}

#[test]
fn a_high_risk_database_change_is_approved_by_a_cab_member_and_a_dba() {
    let c = cast();
    let mut d = Driver::new(ChangeType::Normal, Category::Database);
    d.act(&c.erin, evaluate(Level::High));
    d.act(&c.frank, authorize(Some("bob")));
    let mut d = drive_to(d, Tested);
    let w = window_from(d.now);
    d.act(&c.erin, approve_deployment(Some(w)));
    assert_eq!(d.change.stage, Tested, "a CAB member alone is not enough");
    let dba = person("dina", &[Role::ReleaseManager], &["dba"]);
    d.act(&dba, approve_deployment(None));
    assert_eq!(d.change.stage, ApprovedForDeployment);
    let slots: Vec<Option<&str>> = d
        .change
        .valid_approvals(ApprovalStep::Deployment)
        .map(|a| a.slot.as_deref())
        .collect();
    assert_eq!(slots, vec![Some("cab_member"), Some("dba")]);
    let d = drive_to(d, Closed);
    assert_replays(&d);
}

#[test]
fn a_low_risk_database_change_needs_one_deployment_approver() {
    let c = cast();
    let mut d = Driver::new(ChangeType::Normal, Category::Database);
    d.act(&c.erin, evaluate(Level::Low));
    let mut d = drive_to(d, Tested);
    let w = window_from(d.now);
    d.act(&c.gina, approve_deployment(Some(w)));
    assert_eq!(d.change.stage, ApprovedForDeployment);
}

fn emergency_implemented() -> Driver {
    let c = cast();
    let mut d = Driver::new(ChangeType::Emergency, Category::Application);
    d.advance(5);
    let e = d.act(&c.gina, implement());
    assert_eq!((e.stage_from, e.stage_to), (Requested, Implemented));
    assert!(e.note.as_deref().unwrap().contains("2026-05-14T08:05:00Z"));
    assert!(d.change.deployment.as_ref().unwrap().before_approval);
    d
}

#[test]
fn an_emergency_change_is_implemented_first_and_approved_after_the_fact() {
    let c = cast();
    let mut d = emergency_implemented();
    d.advance(30).act(
        &c.erin,
        review_implementation(ImplementationOutcome::Successful),
    );
    d.advance(5).act(&c.gina, communicate());
    let r = d.refuse(&c.erin, close());
    assert_refused(&r, RefusalKind::Conflict, "retroactive_approval_required");
    d.advance(60 * 24);
    let e = d.act(&c.frank, approve_retroactively());
    assert_eq!(
        e.stage_to, Communicated,
        "approval after the fact moves no stage"
    );
    assert_eq!(e.note, None, "approved within the window");
    d.advance(5).act(&c.erin, close());
    assert_eq!(d.change.stage, Closed);
    assert!(exceptions(&d.change, &d.policy, d.now + Duration::days(30)).is_empty());
    assert_replays(&d);
}

#[test]
fn an_emergency_change_left_unapproved_past_the_window_is_an_open_exception() {
    let d = emergency_implemented();
    let deployed = d.now;
    let due = deployed + Duration::hours(72);
    assert!(
        exceptions(&d.change, &d.policy, due).is_empty(),
        "not yet due"
    );
    let found = exceptions(&d.change, &d.policy, due + Duration::seconds(1));
    assert_eq!(found.len(), 1);
    let x = &found[0];
    assert_eq!(x.code, "emergency_not_approved_in_time");
    assert_eq!(x.status, ExceptionStatus::Open);
    assert_eq!(x.due, "2026-05-14T08:05:00Z");
    assert_eq!(x.change, d.change.id);
}

#[test]
fn an_emergency_change_approved_too_late_is_a_late_exception() {
    let c = cast();
    let mut d = emergency_implemented();
    d.advance(73 * 60);
    let e = d.act(&c.frank, approve_retroactively());
    assert!(e.note.unwrap().contains("past the 72-hour window"));
    let found = exceptions(&d.change, &d.policy, d.now);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].code, "emergency_approved_late");
    assert_eq!(found[0].status, ExceptionStatus::Late);
    assert_eq!(
        found[0].detected_at,
        d.change.retroactive_approval().unwrap().at
    );
}

#[test]
fn the_emergency_window_follows_the_policy() {
    let c = cast();
    let policy = Policy::from_toml("emergency_approval_window_hours = 24\n").unwrap();
    let new = new_change(ChangeType::Emergency, Category::Configuration);
    let mut d = Driver::request(policy, T0, &c.alice, new);
    d.act(&c.gina, implement());
    assert!(exceptions(&d.change, &d.policy, T0 + Duration::hours(24)).is_empty());
    assert_eq!(
        exceptions(&d.change, &d.policy, T0 + Duration::hours(25)).len(),
        1
    );
}

#[test]
fn an_emergency_needing_two_retroactive_approvers_is_not_approved_by_one() {
    let c = cast();
    let policy =
        Policy::from_toml("[[approvals]]\naction = \"approve_retroactively\"\ncount = 2\n")
            .unwrap();
    let new = new_change(ChangeType::Emergency, Category::Application);
    let mut d = Driver::request(policy, T0, &c.alice, new);
    d.act(&c.gina, implement());
    d.advance(60).act(&c.frank, approve_retroactively());
    let due = T0 + Duration::hours(72);
    let found = exceptions(&d.change, &d.policy, due + Duration::seconds(1));
    assert_eq!(
        found.iter().map(|x| x.code.as_str()).collect::<Vec<_>>(),
        vec!["emergency_not_approved_in_time"],
        "one of two approvers is no approval"
    );
    // The second approver completes it late: the exception is recorded as late.
    d.now = due + Duration::hours(1);
    d.act(&c.erin, approve_retroactively());
    let found = exceptions(&d.change, &d.policy, d.now);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].code, "emergency_approved_late");
    assert_eq!(found[0].detected_at, "2026-05-14T09:00:00Z");
}

#[test]
fn an_emergency_change_may_also_follow_the_full_process() {
    let d = drive_to(
        Driver::new(ChangeType::Emergency, Category::Application),
        Closed,
    );
    assert!(!d.change.deployment.as_ref().unwrap().before_approval);
    assert!(exceptions(&d.change, &d.policy, d.now + Duration::days(10)).is_empty());
}

#[test]
fn an_emergency_change_may_be_implemented_from_any_stage_before_deployment() {
    let c = cast();
    for stage in [Evaluated, Authorized, Planned, PeerReviewed, Tested] {
        let mut d = drive_to(
            Driver::new(ChangeType::Emergency, Category::Application),
            stage,
        );
        d.advance(5).act(&c.gina, implement());
        assert!(d.change.deployment.as_ref().unwrap().before_approval);
    }
}

#[test]
fn failed_review_and_failed_test_loop_back_to_planning_and_keep_their_history() {
    let c = cast();
    let mut d = normal_to(Planned);
    let e = d.act(
        &c.carol,
        peer_review(ReviewDecision::ChangesRequested, "missing a metric"),
    );
    assert!(e.rework);
    assert_eq!((e.stage_from, e.stage_to), (Planned, Planned));
    assert_eq!(d.change.reworks, 1);
    d.act(
        &c.bob,
        amend(|a| a.implementation_plan = Some("bump the timeout and add a metric".into())),
    );
    d.act(&c.carol, review_approved());
    let e = d.act(&c.dave, test_run(TestResult::Failed, "p99 regressed"));
    assert!(e.rework);
    assert_eq!(e.stage_to, Planned);
    assert_eq!(d.change.reworks, 2);
    // The review still rests on the unchanged plan, but the stage is asked for again.
    let r = d.refuse(&c.dave, test_passed());
    assert_refused(&r, RefusalKind::Conflict, "stage_order");
    d.act(
        &c.bob,
        amend(|a| a.test_plan = Some("load test at 3x peak".into())),
    );
    d.act(&c.carol, review_approved());
    d.act(&c.dave, test_passed());
    let d = drive_to(d, Closed);
    assert_eq!(d.change.reworks, 2);
    assert_eq!(
        d.log.iter().filter(|(_, e)| e.rework).count(),
        2,
        "both loops are in the history"
    );
    let reviews: Vec<bool> = d
        .change
        .approvals
        .iter()
        .filter(|e| e.approval.step == ApprovalStep::PeerReview)
        .map(|e| e.invalidated.is_some())
        .collect();
    assert_eq!(
        reviews,
        vec![true, false],
        "the review of the old plan is kept and marked"
    );
    assert_replays(&d);
}

#[test]
fn a_rejected_change_ends_there() {
    let c = cast();
    let mut d = normal_to(Tested);
    let e = d.act(&c.erin, reject("the vendor fixed it upstream"));
    assert_eq!(e.stage_to, Rejected);
    let r = d.refuse(&c.erin, approve_deployment(Some(window_from(d.now))));
    assert_refused(&r, RefusalKind::Conflict, "change_closed");
    assert_replays(&d);
}

#[test]
fn a_deferred_change_returns_to_the_queue_and_is_authorized_again() {
    let c = cast();
    let mut d = normal_to(Authorized);
    let until = d.now + Duration::days(14);
    d.act(&c.erin, defer(until));
    assert_eq!(d.change.stage, Deferred);
    assert_eq!(
        d.change.deferred_until.as_deref(),
        Some("2026-05-25T08:20:00Z")
    );
    let r = d.refuse(&c.bob, full_plan());
    assert_refused(&r, RefusalKind::Conflict, "stage_order");

    d.advance(60 * 24);
    let e = d.act(&c.erin, resume());
    assert_eq!(e.stage_to, Requested);
    assert!(e.note.unwrap().contains("before the deferral date"));
    assert_eq!(
        e.invalidated.len(),
        1,
        "the old authorization no longer counts"
    );
    assert_eq!(d.change.deferred_until, None);
    assert_eq!(
        d.change
            .valid_approvals(ApprovalStep::Authorization)
            .count(),
        0
    );
    let d = drive_to(d, Closed);
    assert_eq!(d.change.assignee.as_deref(), Some("bob"));
    assert_replays(&d);
}

#[test]
fn a_change_resumed_after_its_date_carries_no_note() {
    let c = cast();
    let mut d = normal_to(Requested);
    d.act(&c.erin, defer(d.now + Duration::days(1)));
    d.advance(60 * 48);
    let e = d.act(&c.erin, resume());
    assert_eq!(e.note, None);
}

#[test]
fn a_requester_may_cancel_before_implementation_but_not_after() {
    let c = cast();
    let mut d = normal_to(ApprovedForDeployment);
    d.act(&c.alice, cancel());
    assert_eq!(d.change.stage, Cancelled);
    let mut d = normal_to(Implemented);
    let r = d.refuse(&c.alice, cancel());
    assert_refused(&r, RefusalKind::Conflict, "stage_order");
}

#[test]
fn a_rolled_back_change_is_reviewed_communicated_and_closed() {
    let c = cast();
    let mut d = normal_to(Implemented);
    d.advance(20).act(&c.gina, roll_back());
    assert_eq!(d.change.stage, RolledBack);
    assert!(d.change.rolled_back);
    let r = d.refuse(&c.erin, close());
    assert_refused(&r, RefusalKind::Conflict, "stage_order");
    d.advance(60).act(
        &c.erin,
        review_implementation(ImplementationOutcome::Failed),
    );
    d.act(&c.gina, communicate());
    d.act(&c.erin, close());
    assert_eq!(
        &d.stages()[7..],
        &[Implemented, RolledBack, Reviewed, Communicated, Closed]
    );
    assert_eq!(d.change.outcome, Some(ImplementationOutcome::Failed));
    assert_replays(&d);
}

#[test]
fn a_policy_that_skips_communication_closes_right_after_review() {
    let c = cast();
    let policy = Policy::from_toml(
        "[[models]]\ntype = \"standard\"\nskip = [\"authorized\"]\n\
         [[models]]\ncategory = \"infrastructure\"\nskip = [\"peer_reviewed\", \"communicated\"]\n",
    )
    .unwrap();
    let new = new_change(ChangeType::Normal, Category::Infrastructure);
    let d = Driver::request(policy, T0, &c.alice, new);
    let mut d = drive_to(d, Reviewed);
    let r = d.refuse(&c.gina, communicate());
    assert_refused(&r, RefusalKind::Conflict, "stage_not_in_model");
    d.act(&c.erin, close());
    assert_eq!(d.change.stage, Closed);
}

#[test]
fn the_approval_deadline_of_an_emergency_is_the_one_set_when_it_was_implemented() {
    let d = emergency_implemented();
    let due = d.now + Duration::hours(72);
    assert_eq!(
        d.change
            .deployment
            .as_ref()
            .unwrap()
            .approval_due
            .as_deref(),
        Some("2026-05-14T08:05:00Z")
    );
    // A later, looser policy does not move a deadline that has already passed.
    let looser = domain::Policy::from_toml("emergency_approval_window_hours = 240").unwrap();
    let found = exceptions(&d.change, &looser, due + Duration::hours(1));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].due, "2026-05-14T08:05:00Z");
}
