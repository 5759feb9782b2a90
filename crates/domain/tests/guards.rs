//! Each preventive control of the lifecycle on its own: roles, machine identities,
//! segregation of duties, required fields and evidence, stage order, terminal stages, the
//! deployment window, customer acceptance and multi-approver rules.

mod common;

use common::*;
use domain::action::{format_instant, ReviewDecision, TestResult};
use domain::{
    request, Action, ActionKind, Actor, Category, ChangeType, Context, Level, Policy, RefusalKind,
    Role, Stage,
};
use time::Duration;

/// For an action: a change where it is allowed, the actor who may take it, and the action.
fn fixture(kind: ActionKind) -> (Driver, Actor, Action) {
    let c = cast();
    match kind {
        ActionKind::Request => unreachable!("requests are decided by `request`"),
        ActionKind::Amend => (
            normal_to(Stage::Evaluated),
            c.alice,
            amend(|a| a.title = Some("Raise the checkout timeout to 30 s".into())),
        ),
        ActionKind::Evaluate => (normal_to(Stage::Requested), c.erin, evaluate(Level::Low)),
        ActionKind::Authorize => (normal_to(Stage::Evaluated), c.erin, authorize(Some("bob"))),
        ActionKind::Reject => (normal_to(Stage::Requested), c.erin, reject("duplicate")),
        ActionKind::Defer => {
            let d = normal_to(Stage::Requested);
            let until = d.now + Duration::days(7);
            (d, c.erin, defer(until))
        }
        ActionKind::Resume => {
            let mut d = normal_to(Stage::Requested);
            let until = d.now + Duration::days(7);
            d.act(&c.erin, defer(until));
            (d, c.erin, resume())
        }
        ActionKind::Plan => (normal_to(Stage::Authorized), c.bob, full_plan()),
        ActionKind::PeerReview => (normal_to(Stage::Planned), c.carol, review_approved()),
        ActionKind::Test => (normal_to(Stage::PeerReviewed), c.dave, test_passed()),
        ActionKind::Accept => {
            let mut new = new_change(ChangeType::Normal, Category::Application);
            new.on_behalf_of = Some("acme".into());
            let d = Driver::request(Policy::default(), T0, &c.alice, new);
            (drive_to(d, Stage::Tested), c.olga, accept())
        }
        ActionKind::ApproveDeployment => {
            let d = normal_to(Stage::Tested);
            let w = window_from(d.now);
            (d, c.erin, approve_deployment(Some(w)))
        }
        ActionKind::Implement => {
            let mut d = normal_to(Stage::ApprovedForDeployment);
            d.advance(120);
            (d, c.gina, implement())
        }
        ActionKind::ReviewImplementation => (
            normal_to(Stage::Implemented),
            c.erin,
            review_implementation(domain::action::ImplementationOutcome::Successful),
        ),
        ActionKind::Communicate => (normal_to(Stage::Reviewed), c.gina, communicate()),
        ActionKind::Close => (normal_to(Stage::Communicated), c.erin, close()),
        ActionKind::Cancel => (normal_to(Stage::Planned), c.alice, cancel()),
        ActionKind::RollBack => (normal_to(Stage::Implemented), c.gina, roll_back()),
        ActionKind::ApproveRetroactively => {
            let mut d = Driver::new(ChangeType::Emergency, Category::Application);
            d.advance(5).act(&c.gina, implement());
            (d, c.erin, approve_retroactively())
        }
    }
}

#[test]
fn every_action_is_refused_to_someone_without_an_allowed_role() {
    for kind in ActionKind::ALL.iter().copied() {
        if kind == ActionKind::Request {
            continue;
        }
        let (mut d, allowed, action) = fixture(kind);
        let policy = d.policy.clone();
        let wrong = without_roles(&allowed, &policy, kind);
        assert!(!wrong.roles.is_empty());
        let r = d.refuse(&wrong, action.clone());
        assert_refused(&r, RefusalKind::Forbidden, "role_not_allowed");
        assert!(r.message.contains(kind.as_str()), "{}", r.message);
        // The same person with their own roles is let through: the role was the reason.
        d.act(&allowed, action);
    }
}

#[test]
fn a_request_needs_a_role_that_may_request() {
    let policy = Policy::default();
    let c = cast();
    let new = new_change(ChangeType::Normal, Category::Application);
    let wrong = without_roles(&c.alice, &policy, ActionKind::Request);
    let ctx = Context {
        policy: &policy,
        actor: &wrong,
        now: T0,
    };
    let r = request(&new, &ctx).unwrap_err();
    assert_refused(&r, RefusalKind::Forbidden, "role_not_allowed");
    let ctx = Context {
        actor: &c.alice,
        ..ctx
    };
    assert!(request(&new, &ctx).is_ok());
}

#[test]
fn a_tailored_policy_moves_an_action_to_another_role() {
    let policy = Policy::from_toml("[roles]\nimplement = [\"engineer\"]\n").unwrap();
    let c = cast();
    let mut d = normal_to(Stage::ApprovedForDeployment);
    d.policy = policy;
    d.advance(120);
    let r = d.refuse(&c.gina, implement());
    assert_refused(&r, RefusalKind::Forbidden, "role_not_allowed");
    d.act(&person("hal", &[Role::Engineer], &[]), implement());
}

#[test]
fn machine_identities_may_not_take_approving_actions() {
    let bot_roles = Role::ALL.to_vec();
    for kind in [
        ActionKind::Authorize,
        ActionKind::PeerReview,
        ActionKind::Test,
        ActionKind::Accept,
        ActionKind::ApproveDeployment,
        ActionKind::ReviewImplementation,
        ActionKind::ApproveRetroactively,
    ] {
        let (mut d, person, action) = fixture(kind);
        let bot = Actor {
            name: "github-actions[bot]".into(),
            roles: bot_roles.clone(),
            machine: true,
            ..person.clone()
        };
        let r = d.refuse(&bot, action.clone());
        assert_refused(&r, RefusalKind::Forbidden, "machine_identity_not_allowed");
        d.act(&person, action);
    }
}

#[test]
fn a_machine_identity_may_report_a_deployment() {
    let c = cast();
    let mut d = normal_to(Stage::ApprovedForDeployment);
    d.advance(120);
    d.act(&c.ci, implement());
    let deployment = d.change.deployment.as_ref().unwrap();
    assert_eq!(deployment.by, "ci");
    assert!(!deployment.before_approval);
}

#[test]
fn the_requester_may_not_authorize_their_own_change() {
    let c = cast();
    let alice = person("alice", &[Role::Requester, Role::CabMember], &[]);
    let mut d = normal_to(Stage::Evaluated);
    let r = d.refuse(&alice, authorize(Some("bob")));
    assert_refused(&r, RefusalKind::Forbidden, "sod_requester_authorizer");
    d.act(&c.erin, authorize(Some("bob")));
}

#[test]
fn the_assignee_may_not_review_test_accept_or_approve_the_deployment_of_their_work() {
    let c = cast();
    let bob = person(
        "bob",
        &[
            Role::Engineer,
            Role::PeerReviewer,
            Role::Tester,
            Role::ReleaseManager,
            Role::BusinessOwner,
        ],
        &["acme"],
    );

    let mut d = normal_to(Stage::Planned);
    let r = d.refuse(&bob, review_approved());
    assert_refused(&r, RefusalKind::Forbidden, "sod_author_reviewer");
    let r = d.refuse(&bob, peer_review(ReviewDecision::ChangesRequested, "nit"));
    assert_refused(&r, RefusalKind::Forbidden, "sod_author_reviewer");
    d.act(&c.carol, review_approved());

    let r = d.refuse(&bob, test_passed());
    assert_refused(&r, RefusalKind::Forbidden, "sod_author_tester");
    d.act(&c.dave, test_passed());

    let w = window_from(d.now);
    let r = d.refuse(&bob, approve_deployment(Some(w)));
    assert_refused(&r, RefusalKind::Forbidden, "sod_author_deployment_approver");
    d.act(&c.erin, approve_deployment(Some(w)));

    let mut new = new_change(ChangeType::Normal, Category::Application);
    new.on_behalf_of = Some("acme".into());
    let mut d = drive_to(
        Driver::request(Policy::default(), T0, &c.alice, new),
        Stage::Tested,
    );
    let r = d.refuse(&bob, accept());
    assert_refused(&r, RefusalKind::Forbidden, "sod_author_acceptor");
    d.act(&c.olga, accept());
}

#[test]
fn the_planner_of_a_standard_change_becomes_its_author() {
    let c = cast();
    let reviewer = person("bob", &[Role::Engineer, Role::PeerReviewer], &[]);
    let mut d = drive_to(
        Driver::new(ChangeType::Standard, Category::Application),
        Stage::Planned,
    );
    assert_eq!(d.change.assignee.as_deref(), Some("bob"));
    let r = d.refuse(&reviewer, review_approved());
    assert_refused(&r, RefusalKind::Forbidden, "sod_author_reviewer");
    d.act(&c.carol, review_approved());
}

#[test]
fn only_the_assignee_plans_an_assigned_change() {
    let mut d = normal_to(Stage::Authorized);
    let other = person("hal", &[Role::Engineer], &[]);
    let r = d.refuse(&other, full_plan());
    assert_refused(&r, RefusalKind::Forbidden, "not_assignee");
}

#[test]
fn the_retroactive_approver_is_neither_requester_nor_assignee_nor_deployer() {
    let c = cast();
    let approver_roles = [Role::ChangeManager, Role::CabMember];
    let mut d = Driver::new(ChangeType::Emergency, Category::Application);
    d.advance(5).act(&c.erin, evaluate(Level::High));
    d.advance(5).act(&c.erin, authorize(Some("bob")));
    let gina = person("gina", &[Role::ReleaseManager, Role::ChangeManager], &[]);
    d.advance(5).act(&gina, implement());
    assert!(d.change.deployment.as_ref().unwrap().before_approval);
    d.advance(60);
    for name in ["alice", "bob", "gina"] {
        let who = person(name, &approver_roles, &[]);
        let r = d.refuse(&who, approve_retroactively());
        assert_refused(&r, RefusalKind::Forbidden, "sod_retroactive_approver");
    }
    let frank = person("frank", &approver_roles, &[]);
    let event = d.act(&frank, approve_retroactively());
    assert_eq!(event.approval.unwrap().by, "frank");
}

#[test]
fn a_passed_test_needs_evidence() {
    let c = cast();
    let mut d = normal_to(Stage::PeerReviewed);
    for evidence in ["", "   "] {
        let r = d.refuse(&c.dave, test_run(TestResult::Passed, evidence));
        assert_refused(&r, RefusalKind::Conflict, "missing_evidence");
    }
    // A failure needs none: it sends the change back.
    let e = d.act(&c.dave, test_run(TestResult::Failed, ""));
    assert!(e.rework);
    assert_eq!(d.change.stage, Stage::Planned);
}

#[test]
fn a_change_that_cannot_be_tested_needs_a_rollback_plan() {
    let c = cast();
    let mut new = new_change(ChangeType::Normal, Category::Application);
    new.testable = false;
    let d = Driver::request(Policy::default(), T0, &c.alice, new);
    let mut d = drive_to(d, Stage::Authorized);
    for rollback in [None, Some(""), Some("  ")] {
        let r = d.refuse(&c.bob, plan(None, rollback));
        assert_refused(&r, RefusalKind::Conflict, "rollback_plan_required");
    }
    d.act(&c.bob, plan(None, Some("restore snapshot")));
    // Nor can the plan be taken away afterwards.
    let r = d.refuse(&c.bob, amend(|a| a.rollback_plan = Some(None)));
    assert_refused(&r, RefusalKind::Conflict, "rollback_plan_required");
    let r = d.refuse(&c.bob, amend(|a| a.rollback_plan = Some(Some(" ".into()))));
    assert_refused(&r, RefusalKind::Conflict, "rollback_plan_required");
}

#[test]
fn a_testable_change_needs_a_rollback_plan_when_the_policy_says_always() {
    let c = cast();
    let policy = Policy::from_toml("rollback_plan_always = true\n").unwrap();
    let new = new_change(ChangeType::Normal, Category::Application);
    let mut d = drive_to(
        Driver::request(policy, T0, &c.alice, new),
        Stage::Authorized,
    );
    let r = d.refuse(&c.bob, plan(Some("load test"), None));
    assert_refused(&r, RefusalKind::Conflict, "rollback_plan_required");
    // The default policy lets a testable change go without one.
    let mut d = normal_to(Stage::Authorized);
    d.act(&c.bob, plan(Some("load test"), None));
}

#[test]
fn a_testable_change_needs_a_test_plan() {
    let c = cast();
    let mut d = normal_to(Stage::Authorized);
    let r = d.refuse(&c.bob, plan(None, Some("redeploy v41")));
    assert_refused(&r, RefusalKind::Conflict, "test_plan_required");
    d.act(&c.bob, full_plan());
    let r = d.refuse(&c.bob, amend(|a| a.test_plan = Some("  ".into())));
    assert_refused(&r, RefusalKind::Conflict, "test_plan_required");
}

#[test]
fn required_fields_are_named_when_missing() {
    let c = cast();
    let mut d = normal_to(Stage::Requested);
    let r = d.refuse(&c.erin, reject(" "));
    assert_refused(&r, RefusalKind::Invalid, "missing_field");
    assert!(r.message.contains("`reason`"), "{}", r.message);

    let mut d = normal_to(Stage::Evaluated);
    let r = d.refuse(&c.erin, authorize(None));
    assert_refused(&r, RefusalKind::Invalid, "missing_field");
    assert!(r.message.contains("`assignee`"), "{}", r.message);

    let mut d = normal_to(Stage::Authorized);
    let r = d.refuse(
        &c.bob,
        Action::Plan(domain::action::Plan {
            implementation_plan: "".into(),
            test_plan: Some("t".into()),
            rollback_plan: None,
        }),
    );
    assert_refused(&r, RefusalKind::Invalid, "missing_field");

    let mut d = normal_to(Stage::Planned);
    let r = d.refuse(&c.carol, peer_review(ReviewDecision::ChangesRequested, ""));
    assert_refused(&r, RefusalKind::Invalid, "missing_field");

    let mut d = normal_to(Stage::Tested);
    let r = d.refuse(&c.erin, approve_deployment(None));
    assert_refused(&r, RefusalKind::Invalid, "missing_field");
    let half = Action::ApproveDeployment(domain::action::ApproveDeployment {
        window_start: Some(format_instant(d.now + Duration::hours(1))),
        window_end: None,
        artifact: None,
        comment: None,
    });
    let r = d.refuse(&c.erin, half);
    assert_refused(&r, RefusalKind::Invalid, "missing_field");

    let mut d = normal_to(Stage::ApprovedForDeployment);
    d.advance(120);
    let r = d.refuse(
        &c.gina,
        Action::Implement(domain::action::Implement {
            environment: "production".into(),
            artifact: " ".into(),
        }),
    );
    assert_refused(&r, RefusalKind::Invalid, "missing_field");

    let mut d = normal_to(Stage::Reviewed);
    let r = d.refuse(
        &c.gina,
        Action::Communicate(domain::action::Communicate {
            release_notes: "".into(),
        }),
    );
    assert_refused(&r, RefusalKind::Invalid, "missing_field");
}

#[test]
fn a_request_is_checked_before_anything_is_recorded() {
    let policy = Policy::default();
    let c = cast();
    let ctx = Context {
        policy: &policy,
        actor: &c.alice,
        now: T0,
    };
    let mut new = new_change(ChangeType::Normal, Category::Application);
    new.systems.clear();
    assert_refused(
        &request(&new, &ctx).unwrap_err(),
        RefusalKind::Invalid,
        "missing_field",
    );
    let mut new = new_change(ChangeType::Normal, Category::Application);
    new.title = "x".repeat(201);
    assert_refused(
        &request(&new, &ctx).unwrap_err(),
        RefusalKind::Invalid,
        "invalid_field",
    );
    new.title = "x".repeat(200);
    assert!(request(&new, &ctx).is_ok());
    new.on_behalf_of = Some(" ".into());
    assert_refused(
        &request(&new, &ctx).unwrap_err(),
        RefusalKind::Invalid,
        "missing_field",
    );
}

#[test]
fn an_amended_title_obeys_the_same_limit_as_a_requested_one() {
    let c = cast();
    let mut d = normal_to(Stage::Evaluated);
    let r = d.refuse(&c.alice, amend(|a| a.title = Some("x".repeat(201))));
    assert_refused(&r, RefusalKind::Invalid, "invalid_field");
    let r = d.refuse(&c.alice, amend(|a| a.systems = Some(vec![])));
    assert_refused(&r, RefusalKind::Invalid, "missing_field");
}

#[test]
fn actions_out_of_order_are_refused_with_stage_order() {
    let c = cast();
    let cases: Vec<(Stage, Actor, Action)> = vec![
        (Stage::Requested, c.bob.clone(), full_plan()),
        (Stage::Requested, c.erin.clone(), authorize(Some("bob"))),
        (Stage::Evaluated, c.erin.clone(), evaluate(Level::Low)),
        (Stage::Authorized, c.carol.clone(), review_approved()),
        (Stage::Planned, c.dave.clone(), test_passed()),
        (
            Stage::PeerReviewed,
            c.erin.clone(),
            approve_deployment(None),
        ),
        (Stage::Tested, c.gina.clone(), implement()),
        (
            Stage::Planned,
            c.erin.clone(),
            defer(T0 + Duration::days(30)),
        ),
        (Stage::Requested, c.erin.clone(), resume()),
        (
            Stage::ApprovedForDeployment,
            c.erin.clone(),
            review_implementation(domain::action::ImplementationOutcome::Successful),
        ),
        (Stage::Implemented, c.gina.clone(), communicate()),
        (Stage::Implemented, c.erin.clone(), close()),
        (Stage::Reviewed, c.gina.clone(), roll_back()),
        (Stage::Implemented, c.erin.clone(), reject("too late")),
        (Stage::Implemented, c.alice.clone(), cancel()),
        (
            Stage::Implemented,
            c.alice.clone(),
            amend(|a| a.title = Some("after the fact".into())),
        ),
        (Stage::Planned, c.olga.clone(), accept()),
    ];
    for (stage, actor, action) in cases {
        let mut d = normal_to(stage);
        if let Action::Accept(_) = action {
            // Acceptance on a customer's change is refused before planning too.
            let mut new = new_change(ChangeType::Normal, Category::Application);
            new.on_behalf_of = Some("acme".into());
            d = drive_to(
                Driver::request(Policy::default(), T0, &c.alice, new),
                Stage::Authorized,
            );
        }
        let kind = action.kind();
        let r = d.refuse(&actor, action);
        assert_eq!(
            (r.kind, r.code),
            (RefusalKind::Conflict, "stage_order"),
            "`{kind}` at `{}`: {}",
            d.change.stage,
            r.message
        );
    }
}

#[test]
fn actions_for_stages_outside_the_change_model_are_refused() {
    let c = cast();
    let mut d = Driver::new(ChangeType::Standard, Category::Application);
    d.act(&c.erin, evaluate(Level::Low));
    let r = d.refuse(&c.erin, authorize(Some("bob")));
    assert_refused(&r, RefusalKind::Conflict, "stage_not_in_model");

    let mut d = drive_to(
        Driver::new(ChangeType::Normal, Category::Configuration),
        Stage::Planned,
    );
    let r = d.refuse(&c.carol, review_approved());
    assert_refused(&r, RefusalKind::Conflict, "stage_not_in_model");

    let mut new = new_change(ChangeType::Normal, Category::Application);
    new.testable = false;
    let d = Driver::request(Policy::default(), T0, &c.alice, new);
    let mut d = drive_to(d, Stage::PeerReviewed);
    let r = d.refuse(&c.dave, test_passed());
    assert_refused(&r, RefusalKind::Conflict, "stage_not_in_model");
}

#[test]
fn nothing_leads_out_of_a_terminal_stage() {
    let c = cast();
    let closed = normal_to(Stage::Closed);
    let mut rejected = normal_to(Stage::Evaluated);
    rejected.act(&c.erin, reject("not worth the risk"));
    let mut cancelled = normal_to(Stage::Planned);
    cancelled.act(&c.alice, cancel());
    let everyone = person("root", Role::ALL, &["acme", "dba"]);
    for mut d in [closed, rejected, cancelled] {
        assert!(d.change.stage.is_terminal());
        for kind in ActionKind::ALL.iter().copied() {
            if kind == ActionKind::Request {
                continue;
            }
            let (_, _, action) = fixture(kind);
            let r = d.refuse(&everyone, action);
            assert_refused(&r, RefusalKind::Conflict, "change_closed");
        }
    }
}

#[test]
fn a_request_action_is_not_decided_on_an_existing_change() {
    let c = cast();
    let mut d = normal_to(Stage::Requested);
    let r = d.refuse(
        &c.alice,
        Action::Request(new_change(ChangeType::Normal, Category::Application)),
    );
    assert_refused(&r, RefusalKind::Invalid, "invalid_action");
}

#[test]
fn implementation_happens_only_inside_the_half_open_window() {
    let c = cast();
    let mut d = normal_to(Stage::Tested);
    let start = d.now + Duration::hours(2);
    let end = start + Duration::hours(2);
    d.act(&c.erin, approve_deployment(Some((start, end))));

    d.now = start - Duration::seconds(1);
    let r = d.refuse(&c.gina, implement());
    assert_refused(&r, RefusalKind::Conflict, "outside_window");
    d.now = end;
    let r = d.refuse(&c.gina, implement());
    assert_refused(&r, RefusalKind::Conflict, "outside_window");
    d.now = end - Duration::seconds(1);
    d.clone().act(&c.gina, implement());
    d.now = start;
    d.act(&c.gina, implement());
    assert_eq!(d.change.stage, Stage::Implemented);
}

#[test]
fn a_window_is_refused_when_backwards_or_already_over() {
    let c = cast();
    let mut d = normal_to(Stage::Tested);
    let now = d.now;
    let r = d.refuse(
        &c.erin,
        approve_deployment(Some((now + Duration::hours(3), now + Duration::hours(2)))),
    );
    assert_refused(&r, RefusalKind::Invalid, "invalid_field");
    let r = d.refuse(
        &c.erin,
        approve_deployment(Some((now - Duration::hours(3), now))),
    );
    assert_refused(&r, RefusalKind::Invalid, "invalid_field");
}

#[test]
fn naive_timestamps_are_refused_wherever_a_time_is_given() {
    let c = cast();
    let mut d = normal_to(Stage::Tested);
    let naive = (
        "2026-05-12T22:00:00".to_string(),
        "2026-05-13T00:00:00".to_string(),
    );
    let r = d.refuse(&c.erin, approve_deployment_raw(Some(naive.clone())));
    assert_refused(&r, RefusalKind::Invalid, "invalid_field");
    assert!(r.message.contains("offset"), "{}", r.message);
    let r = d.refuse(
        &c.erin,
        approve_deployment_raw(Some(("2026-05-12 22:00:00Z".into(), naive.1.clone()))),
    );
    assert_refused(&r, RefusalKind::Invalid, "invalid_field");

    let w = window_from(d.now);
    d.act(&c.erin, approve_deployment(Some(w)));
    let r = d.refuse(&c.erin, amend(|a| a.window_start = Some(naive.0.clone())));
    assert_refused(&r, RefusalKind::Invalid, "invalid_field");

    let mut d = normal_to(Stage::Requested);
    let r = d.refuse(
        &c.erin,
        Action::Defer(domain::action::Defer {
            reason: "vendor".into(),
            until: naive.0,
        }),
    );
    assert_refused(&r, RefusalKind::Invalid, "invalid_field");
}

#[test]
fn a_window_given_with_an_offset_is_recorded_in_utc_and_honoured() {
    let c = cast();
    let mut d = normal_to(Stage::Tested);
    // 2026-05-11T10:00Z, the scenario's now, is 12:00 in Berlin.
    d.now = time::macros::datetime!(2026-05-11 10:00 UTC);
    let event = d.act(
        &c.erin,
        approve_deployment_raw(Some((
            "2026-05-11T13:00:00+02:00".into(),
            "2026-05-11T17:00:00+02:00".into(),
        ))),
    );
    assert_eq!(d.change.stage, Stage::ApprovedForDeployment);
    let w = d.change.window.clone().unwrap();
    assert_eq!(
        (w.start.as_str(), w.end.as_str()),
        ("2026-05-11T11:00:00Z", "2026-05-11T15:00:00Z")
    );
    let approval = event.approval.unwrap();
    assert_eq!(
        d.change
            .valid_approvals(domain::ApprovalStep::Deployment)
            .collect::<Vec<_>>(),
        vec![&approval],
        "the approval rests on the window as recorded"
    );
    d.now = time::macros::datetime!(2026-05-11 11:30 UTC);
    d.act(&c.gina, implement());
}

#[test]
fn customer_acceptance_precedes_deployment_approval_of_a_change_for_a_customer() {
    let c = cast();
    let mut new = new_change(ChangeType::Normal, Category::Application);
    new.on_behalf_of = Some("acme".into());
    let d = Driver::request(Policy::default(), T0, &c.alice, new.clone());
    let mut d = drive_to(d, Stage::Tested);
    let w = window_from(d.now);
    let r = d.refuse(&c.erin, approve_deployment(Some(w)));
    assert_refused(&r, RefusalKind::Conflict, "customer_acceptance_required");

    // A business owner of another customer does not speak for acme.
    let other = person("oscar", &[Role::BusinessOwner], &["globex"]);
    let r = d.refuse(&other, accept());
    assert_refused(&r, RefusalKind::Forbidden, "not_customer");
    // Being in the group without the role is not enough either.
    let member = person("mona", &[Role::Requester], &["acme"]);
    let r = d.refuse(&member, accept());
    assert_refused(&r, RefusalKind::Forbidden, "role_not_allowed");

    d.act(&c.olga, accept());
    let r = d.refuse(&c.olga, accept());
    assert_refused(&r, RefusalKind::Conflict, "already_approved");
    d.act(&c.erin, approve_deployment(Some(w)));

    // Where the policy does not ask for it, the customer's word is not needed.
    let policy = Policy::from_toml("customer_acceptance = false\n").unwrap();
    let mut d = drive_to(Driver::request(policy, T0, &c.alice, new), Stage::Tested);
    let w = window_from(d.now);
    d.act(&c.erin, approve_deployment(Some(w)));
}

#[test]
fn an_approver_in_two_groups_does_not_block_one_who_fits_only_the_first() {
    let c = cast();
    let mut d = high_risk_database_at_tested();
    let w = window_from(d.now);
    // frank belongs to both `dba` and `cab_member` and is shown in the `dba` slot; a DBA
    // who is no CAB member completes the rule, since frank can stand for the CAB.
    let first = d.act(&c.frank, approve_deployment(Some(w)));
    assert_eq!(
        first.approval.as_ref().unwrap().slot.as_deref(),
        Some("dba")
    );
    let dba = person("dina", &[Role::ReleaseManager], &["dba"]);
    let second = d.act(&dba, approve_deployment(None));
    assert_eq!(
        second.approval.as_ref().unwrap().groups,
        vec!["dba".to_string()]
    );
    assert_eq!(d.change.stage, Stage::ApprovedForDeployment);
}

#[test]
fn acceptance_is_only_for_changes_requested_for_a_customer() {
    let c = cast();
    let mut d = normal_to(Stage::Tested);
    let r = d.refuse(&c.olga, accept());
    assert_refused(&r, RefusalKind::Conflict, "not_on_behalf_of_customer");
}

fn high_risk_database_at_tested() -> Driver {
    let c = cast();
    let mut d = Driver::new(ChangeType::Normal, Category::Database);
    d.advance(5).act(&c.erin, evaluate(Level::High));
    d.advance(5).act(&c.erin, authorize(Some("bob")));
    drive_to(d, Stage::Tested)
}

#[test]
fn a_high_risk_database_deployment_needs_a_dba_and_a_cab_member() {
    let c = cast();
    let mut d = high_risk_database_at_tested();
    let w = window_from(d.now);

    // A release manager in neither group cannot take one of the two group slots.
    let r = d.refuse(&c.gina, approve_deployment(Some(w)));
    assert_refused(&r, RefusalKind::Forbidden, "not_in_required_group");
    assert!(r.message.contains("`dba`"), "{}", r.message);

    let first = d.act(&c.frank, approve_deployment(Some(w)));
    assert_eq!(
        first.approval.as_ref().unwrap().slot.as_deref(),
        Some("dba")
    );
    assert_eq!(d.change.stage, Stage::Tested, "one of two approvals");

    let r = d.refuse(&c.frank, approve_deployment(None));
    assert_refused(&r, RefusalKind::Conflict, "already_approved");
    // Someone in neither group still cannot take the place of the missing group.
    let r = d.refuse(&c.gina, approve_deployment(None));
    assert_refused(&r, RefusalKind::Forbidden, "not_in_required_group");
    assert!(r.message.contains("`cab_member`"), "{}", r.message);

    let second = d.act(&c.erin, approve_deployment(None));
    assert_eq!(
        second.approval.as_ref().unwrap().slot.as_deref(),
        Some("cab_member")
    );
    assert_eq!(d.change.stage, Stage::ApprovedForDeployment);
}

#[test]
fn a_high_risk_authorization_needs_a_cab_member() {
    let c = cast();
    let mut d = Driver::new(ChangeType::Normal, Category::Application);
    d.act(&c.erin, evaluate(Level::Critical));
    let manager = person("mia", &[Role::ChangeManager], &[]);
    let r = d.refuse(&manager, authorize(Some("bob")));
    assert_refused(&r, RefusalKind::Forbidden, "not_in_required_group");
    let e = d.act(&c.frank, authorize(Some("bob")));
    assert_eq!(e.approval.unwrap().slot.as_deref(), Some("cab_member"));
    assert_eq!(d.change.stage, Stage::Authorized);
}

#[test]
fn a_count_rule_needs_that_many_different_people() {
    let c = cast();
    let policy = Policy::from_toml(
        "[[approvals]]\naction = \"authorize\"\ncount = 2\n\
         [[approvals]]\naction = \"approve_deployment\"\ncount = 3\ngroups = [\"cab_member\"]\n",
    )
    .unwrap();
    let new = new_change(ChangeType::Normal, Category::Application);
    let mut d = Driver::request(policy, T0, &c.alice, new);
    d.act(&c.erin, evaluate(Level::Low));
    d.act(&c.erin, authorize(Some("bob")));
    assert_eq!(d.change.stage, Stage::Evaluated);
    let r = d.refuse(&c.erin, authorize(None));
    assert_refused(&r, RefusalKind::Conflict, "already_approved");
    let r = d.refuse(&c.frank, authorize(Some("carol")));
    assert_refused(&r, RefusalKind::Conflict, "assignee_conflict");
    d.act(&c.frank, authorize(None));
    assert_eq!(d.change.stage, Stage::Authorized);
    assert_eq!(d.change.assignee.as_deref(), Some("bob"));

    let mut d = drive_to(d, Stage::Tested);
    let w = window_from(d.now);
    // Three approvers, one of them a CAB member: a release manager may take a free seat
    // while two remain, but not the last one when the CAB seat is still open.
    d.act(&c.gina, approve_deployment(Some(w)));
    let rm = person("ron", &[Role::ReleaseManager], &[]);
    d.act(&rm, approve_deployment(None));
    assert_eq!(d.change.stage, Stage::Tested);
    let late = person("lee", &[Role::ReleaseManager], &[]);
    let r = d.refuse(&late, approve_deployment(None));
    assert_refused(&r, RefusalKind::Forbidden, "not_in_required_group");
    d.act(&c.frank, approve_deployment(None));
    assert_eq!(d.change.stage, Stage::ApprovedForDeployment);
}

#[test]
fn a_later_approver_who_moves_the_window_voids_the_earlier_approvals() {
    let c = cast();
    let mut d = high_risk_database_at_tested();
    let w = window_from(d.now);
    d.act(&c.frank, approve_deployment(Some(w)));
    let moved = (w.0 + Duration::days(1), w.1 + Duration::days(1));
    let e = d.act(&c.erin, approve_deployment(Some(moved)));
    assert_eq!(e.invalidated.len(), 1);
    assert_eq!(e.invalidated[0].approver, "frank");
    assert_eq!(e.edits.len(), 1);
    assert_eq!(e.edits[0].field, "window");
    assert_eq!(d.change.stage, Stage::Tested, "frank's slot is open again");
    // The same window given again is not a move.
    let e = d.act(&c.frank, approve_deployment(Some(moved)));
    assert!(e.invalidated.is_empty() && e.edits.is_empty());
    assert_eq!(d.change.stage, Stage::ApprovedForDeployment);
}

#[test]
fn deferral_needs_a_future_date() {
    let c = cast();
    let mut d = normal_to(Stage::Requested);
    let r = d.refuse(&c.erin, defer(d.now));
    assert_refused(&r, RefusalKind::Invalid, "invalid_field");
}

#[test]
fn cancelling_or_amending_is_for_the_owner_or_a_change_manager() {
    let c = cast();
    let stranger = person("sam", &[Role::Requester, Role::Engineer], &[]);
    let mut d = normal_to(Stage::Planned);
    let r = d.refuse(&stranger, cancel());
    assert_refused(&r, RefusalKind::Forbidden, "not_owner");
    let r = d.refuse(
        &stranger,
        amend(|a| a.description = Some("mine now".into())),
    );
    assert_refused(&r, RefusalKind::Forbidden, "not_owner");
    // The assignee may amend, the change manager may cancel.
    d.act(&c.bob, amend(|a| a.test_plan = Some("soak test".into())));
    d.act(&c.erin, cancel());
    assert_eq!(d.change.stage, Stage::Cancelled);
}

#[test]
fn an_amendment_that_changes_nothing_is_refused() {
    let c = cast();
    let mut d = normal_to(Stage::Evaluated);
    let title = d.change.title.clone();
    let r = d.refuse(&c.alice, amend(|a| a.title = Some(title)));
    assert_refused(&r, RefusalKind::Invalid, "nothing_to_amend");
    let r = d.refuse(&c.alice, amend(|a| a.test_plan = Some("x".into())));
    assert_refused(&r, RefusalKind::Conflict, "no_plan");
    let r = d.refuse(&c.alice, amend(|a| a.window_end = Some(format_instant(T0))));
    assert_refused(&r, RefusalKind::Conflict, "no_window");
    let mut d = normal_to(Stage::Requested);
    let r = d.refuse(&c.alice, amend(|a| a.risk = Some(Level::Low)));
    assert_refused(&r, RefusalKind::Conflict, "not_evaluated");
}

#[test]
fn an_action_dated_before_the_last_event_is_refused() {
    let c = cast();
    let mut d = normal_to(Stage::Evaluated);
    let last = d.now;
    d.now = last - Duration::minutes(1);
    let r = d.refuse(&c.erin, authorize(Some("bob")));
    assert_refused(&r, RefusalKind::Conflict, "time_before_last_event");
    d.now = last;
    d.act(&c.erin, authorize(Some("bob")));
}

#[test]
fn a_retroactive_approval_is_only_for_an_emergency_deployed_ahead_of_approval() {
    let c = cast();
    let mut d = normal_to(Stage::Implemented);
    let r = d.refuse(&c.frank, approve_retroactively());
    assert_refused(&r, RefusalKind::Conflict, "not_emergency");

    let mut d = drive_to(
        Driver::new(ChangeType::Emergency, Category::Application),
        Stage::Implemented,
    );
    assert!(!d.change.deployment.as_ref().unwrap().before_approval);
    let r = d.refuse(&c.frank, approve_retroactively());
    assert_refused(&r, RefusalKind::Conflict, "retroactive_approval_not_needed");
}

#[test]
fn a_deferred_emergency_cannot_be_implemented() {
    let c = cast();
    let mut d = Driver::new(ChangeType::Emergency, Category::Application);
    let until = d.now + Duration::days(1);
    d.act(&c.erin, defer(until));
    let r = d.refuse(&c.gina, implement());
    assert_refused(&r, RefusalKind::Conflict, "stage_order");
}

#[test]
fn a_refusal_is_the_same_every_time_it_is_asked() {
    let c = cast();
    let d = normal_to(Stage::PeerReviewed);
    let first = d.decide(&c.bob, &test_passed()).unwrap_err();
    let again = d.decide(&c.bob, &test_passed()).unwrap_err();
    assert_eq!(first, again);
    assert_eq!(d.replayed(), d.change);
    let ok = d.decide(&c.dave, &test_passed()).unwrap();
    assert_eq!(ok, d.decide(&c.dave, &test_passed()).unwrap());
}

#[test]
fn every_decision_records_the_policy_that_took_it() {
    let d = normal_to(Stage::Closed);
    let digest = Policy::default().digest();
    assert!(d.log.iter().all(|(_, e)| e.policy == digest));
}

#[test]
fn only_an_evaluator_may_lower_the_risk_that_decides_the_approvals() {
    let c = cast();
    let mut d = Driver::new(ChangeType::Normal, Category::Database);
    d.advance(5).act(&c.erin, evaluate(Level::Critical));
    // The requester may not talk a critical change down to low and skip the CAB.
    let r = d.refuse(
        &c.alice,
        amend(|a| {
            a.risk = Some(Level::Low);
        }),
    );
    assert_refused(&r, RefusalKind::Forbidden, "role_not_allowed");
    assert!(r.message.contains("lowering the `risk`"), "{}", r.message);
    // Raising it only asks for more approvals, so the requester may.
    d.advance(5).act(
        &c.alice,
        amend(|a| {
            a.description = Some("now with a schema migration".into());
        }),
    );
    assert_eq!(d.change.risk, Some(Level::Critical));
}

#[test]
fn only_the_approved_artifact_may_be_implemented() {
    let c = cast();
    let mut d = normal_to(Stage::Tested);
    let (start, end) = window_from(d.now);
    let approve = |artifact: &str| {
        Action::ApproveDeployment(domain::action::ApproveDeployment {
            window_start: Some(format_instant(start)),
            window_end: Some(format_instant(end)),
            artifact: Some(artifact.into()),
            comment: None,
        })
    };
    let r = d.refuse(&c.erin, approve("two words"));
    assert_refused(&r, RefusalKind::Invalid, "invalid_field");
    d.act(&c.erin, approve("4f1c2a9e0b7d"));
    assert_eq!(d.change.approved_artifact.as_deref(), Some("4f1c2a9e0b7d"));
    d.now = start + Duration::minutes(30);
    let other = |artifact: &str| {
        Action::Implement(domain::action::Implement {
            environment: "production".into(),
            artifact: artifact.into(),
        })
    };
    let r = d.refuse(&c.gina, other("9e9e9e9e9e9e"));
    assert_refused(&r, RefusalKind::Conflict, "artifact_not_approved");
    d.act(&c.gina, other("4f1c2a9e0b7d"));
    assert_eq!(d.change.stage, Stage::Implemented);
}
