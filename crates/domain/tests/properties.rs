//! Random histories: sequences of actions by random actors on random kinds of change, under
//! one of several policies. Whatever the sequence, a change never reaches production without
//! the approvals its model asks for (emergencies aside, which then show as exceptions once
//! the window has passed), the fold from scratch equals the state built step by step, and a
//! refused action records nothing.

mod common;

use std::collections::BTreeMap;

use common::*;
use domain::action::{format_instant, parse_instant, ReviewDecision, TestResult};
use domain::decide::{needs_retroactive_approval, requirement_met};
use domain::{
    exceptions, Action, ActionKind, Actor, ApprovalStep, Category, Change, ChangeEvent, ChangeType,
    Context, ExceptionStatus, Level, Policy, RefusalKind, Role, Stage,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use time::{Duration, OffsetDateTime};

fn pool() -> Vec<Actor> {
    vec![
        person("alice", &[Role::Requester, Role::BusinessOwner], &["acme"]),
        person("bob", &[Role::Engineer], &[]),
        person("carol", &[Role::Engineer, Role::PeerReviewer], &[]),
        person("dave", &[Role::Tester, Role::Engineer], &[]),
        person("erin", &[Role::ChangeManager, Role::CabMember], &[]),
        person("frank", &[Role::CabMember], &["dba"]),
        person("gina", &[Role::ReleaseManager], &["dba"]),
        person("olga", &[Role::BusinessOwner], &["acme"]),
        machine(
            "ci",
            &[
                Role::ReleaseManager,
                Role::Tester,
                Role::CabMember,
                Role::ChangeManager,
                Role::PeerReviewer,
            ],
        ),
        person("root", Role::ALL, &["acme", "dba"]),
        person("hank", &[Role::ReleaseManager, Role::ChangeManager], &[]),
        person("ivan", &[Role::Tester, Role::PeerReviewer], &[]),
    ]
}

fn policies() -> Vec<Policy> {
    vec![
        Policy::default(),
        // Stricter: more approvers everywhere, named groups, a rollback plan always.
        Policy::from_toml(
            "rollback_plan_always = true\n\
             [[approvals]]\naction = \"authorize\"\ncount = 2\n\
             [[approvals]]\naction = \"approve_deployment\"\ncount = 2\n\
             groups = [\"cab_member\", \"dba\"]\n\
             [[approvals]]\naction = \"approve_retroactively\"\ncount = 2\n\
             groups = [\"cab_member\"]\n",
        )
        .unwrap(),
        // Laxer: no customer acceptance, engineers deploy, infrastructure skips evaluation.
        Policy::from_toml(
            "customer_acceptance = false\nemergency_approval_window_hours = 24\n\
             [roles]\nimplement = [\"engineer\", \"release_manager\"]\n\
             [[models]]\ntype = \"standard\"\nskip = [\"authorized\"]\n\
             [[models]]\ncategory = \"infrastructure\"\nskip = [\"evaluated\", \"communicated\"]\n\
             [[models]]\ntestable = false\nskip = [\"tested\"]\n",
        )
        .unwrap(),
    ]
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    /// The action the change's model expects next, by a random actor.
    Next {
        actor: usize,
        variant: u8,
        wait: u16,
    },
    /// Any action, by a random actor.
    Any {
        actor: usize,
        kind: usize,
        variant: u8,
        wait: u16,
    },
}

#[derive(Debug, Clone)]
struct Case {
    policy: usize,
    requester: usize,
    change_type: ChangeType,
    category: Category,
    testable: bool,
    customer: Option<&'static str>,
    steps: Vec<Step>,
}

fn step() -> impl Strategy<Value = Step> {
    let n = pool().len();
    let wait = prop_oneof![3 => 0u16..30, 1 => 0u16..3000];
    prop_oneof![
        6 => (0..n, any::<u8>(), wait.clone())
            .prop_map(|(actor, variant, wait)| Step::Next { actor, variant, wait }),
        1 => (0..n, 0..ActionKind::ALL.len(), any::<u8>(), wait.clone())
            .prop_map(|(actor, kind, variant, wait)| Step::Any { actor, kind, variant, wait }),
        // Content rewritten mid-flight is what approvals must survive or not: ask often.
        1 => (0..n, any::<u8>(), wait).prop_map(|(actor, variant, wait)| Step::Any {
            actor,
            kind: ActionKind::ALL.iter().position(|k| *k == ActionKind::Amend).unwrap(),
            variant,
            wait,
        }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..policies().len(),
        0..pool().len(),
        prop::sample::select(ChangeType::ALL),
        prop::sample::select(Category::ALL),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["acme", "globex"])),
        prop::collection::vec(step(), 1..100),
    )
        .prop_map(
            |(policy, requester, change_type, category, testable, customer, steps)| Case {
                policy,
                requester,
                change_type,
                category,
                testable,
                customer,
                steps,
            },
        )
}

/// The action that leads to `target`, shaped by `variant`.
fn action_for(kind: ActionKind, variant: u8, now: OffsetDateTime, change: &Change) -> Action {
    let names = pool();
    let pick = |v: u8| names[v as usize % names.len()].name.clone();
    let level = |v: u8| Level::ALL[v as usize % Level::ALL.len()];
    let hours = |h: i64| now + Duration::hours(h);
    match kind {
        ActionKind::Request => Action::Request(new_change(change.change_type, change.category)),
        ActionKind::Amend => amend(|a| match variant % 10 {
            0 => a.title = Some(format!("retitled {variant}")),
            1 => a.description = Some(format!("described {variant}")),
            2 => a.risk = Some(level(variant / 10)),
            3 => a.priority = Some(level(variant / 10)),
            4 => a.implementation_plan = Some(format!("plan {variant}")),
            5 => a.test_plan = Some(format!("test {variant}")),
            6 => a.rollback_plan = Some(None),
            7 => a.rollback_plan = Some(Some(format!("undo {variant}"))),
            8 => a.window_start = Some(format_instant(hours(i64::from(variant % 7)))),
            _ => a.systems = Some(vec![format!("system-{}", variant % 3)]),
        }),
        ActionKind::Evaluate => evaluate(level(variant)),
        ActionKind::Authorize => authorize(
            (!variant.is_multiple_of(4))
                .then(|| pick(variant / 4))
                .as_deref(),
        ),
        ActionKind::Reject => reject("not now"),
        ActionKind::Defer => defer(hours(1 + i64::from(variant % 48))),
        ActionKind::Resume => resume(),
        ActionKind::Plan => plan(
            (variant & 1 == 0).then_some("load test"),
            (variant & 2 == 0).then_some("redeploy the previous release"),
        ),
        ActionKind::PeerReview => match variant % 4 {
            0 => peer_review(ReviewDecision::ChangesRequested, "needs a metric"),
            _ => review_approved(),
        },
        ActionKind::Test => match variant % 5 {
            0 => test_run(TestResult::Failed, ""),
            1 => test_run(TestResult::Passed, ""),
            _ => test_passed(),
        },
        ActionKind::Accept => accept(),
        ActionKind::ApproveDeployment => {
            if variant.is_multiple_of(4) && change.window.is_some() {
                approve_deployment(None)
            } else {
                let start = hours(i64::from(variant % 5) - 1);
                let end = start + Duration::hours(1 + i64::from(variant % 6));
                if variant.is_multiple_of(3) {
                    // The same instants as seen from Kathmandu.
                    let nepal = time::UtcOffset::from_hms(5, 45, 0).unwrap();
                    let local = |t: OffsetDateTime| {
                        t.to_offset(nepal)
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap()
                    };
                    approve_deployment_raw(Some((local(start), local(end))))
                } else {
                    approve_deployment(Some((start, end)))
                }
            }
        }
        ActionKind::Implement => implement(),
        ActionKind::ReviewImplementation => {
            review_implementation(domain::action::ImplementationOutcome::Successful)
        }
        ActionKind::Communicate => communicate(),
        ActionKind::Close => close(),
        ActionKind::Cancel => cancel(),
        ActionKind::RollBack => roll_back(),
        ActionKind::ApproveRetroactively => approve_retroactively(),
    }
}

/// The action the model expects next at the change's stage.
fn next_kind(change: &Change, policy: &Policy, variant: u8) -> ActionKind {
    let model = policy.model(change.change_type, change.category, change.testable);
    let accepted = change
        .valid_approvals(ApprovalStep::Acceptance)
        .next()
        .is_some();
    match change.stage {
        Stage::Deferred => return ActionKind::Resume,
        Stage::RolledBack => return ActionKind::ReviewImplementation,
        Stage::Implemented if variant.is_multiple_of(5) => return ActionKind::RollBack,
        _ => {}
    }
    if needs_retroactive_approval(change) && variant.is_multiple_of(3) {
        return ActionKind::ApproveRetroactively;
    }
    if change.change_type == ChangeType::Emergency
        && change.stage.is_before_implementation()
        && variant.is_multiple_of(7)
    {
        return ActionKind::Implement;
    }
    match model.successor(change.stage) {
        Some(Stage::Evaluated) => ActionKind::Evaluate,
        Some(Stage::Authorized) => ActionKind::Authorize,
        Some(Stage::Planned) => ActionKind::Plan,
        Some(Stage::PeerReviewed) => ActionKind::PeerReview,
        Some(Stage::Tested) => ActionKind::Test,
        Some(Stage::ApprovedForDeployment) => {
            if change.on_behalf_of.is_some() && !accepted && variant.is_multiple_of(2) {
                ActionKind::Accept
            } else {
                ActionKind::ApproveDeployment
            }
        }
        Some(Stage::Implemented) => ActionKind::Implement,
        Some(Stage::Reviewed) => ActionKind::ReviewImplementation,
        Some(Stage::Communicated) => ActionKind::Communicate,
        Some(Stage::Closed) => ActionKind::Close,
        _ => ActionKind::Cancel,
    }
}

/// What the run saw, for the checks at the end and a look at coverage.
#[derive(Debug, Default)]
struct Outcome {
    implemented_after_approval: bool,
    implemented_before_approval: bool,
    retroactively_approved_at: Option<OffsetDateTime>,
}

fn instant(t: &str) -> OffsetDateTime {
    parse_instant("time", t).unwrap()
}

/// The approvals of a step that still count on `change`, checked for who gave them.
fn check_step(
    change: &Change,
    step: ApprovalStep,
    machines: &[String],
) -> Result<usize, TestCaseError> {
    let valid: Vec<_> = change.valid_approvals(step).collect();
    for a in &valid {
        prop_assert!(
            !machines.contains(&a.by),
            "{step:?} approval by machine `{}`",
            a.by
        );
        if matches!(
            step,
            ApprovalStep::PeerReview | ApprovalStep::Test | ApprovalStep::Deployment
        ) {
            prop_assert_ne!(Some(a.by.as_str()), change.assignee.as_deref());
        }
        if step == ApprovalStep::Authorization {
            prop_assert_ne!(&a.by, &change.requester);
        }
    }
    Ok(valid.len())
}

/// The state just before a deployment that followed the process: everything the model asks
/// for was approved, by the right people, on the content as it is.
fn check_ready_for_production(
    pre: &Change,
    policy: &Policy,
    now: OffsetDateTime,
    machines: &[String],
) -> Result<(), TestCaseError> {
    let model = policy.model(pre.change_type, pre.category, pre.testable);
    prop_assert_eq!(pre.stage, Stage::ApprovedForDeployment);
    if model.includes(Stage::Authorized) {
        prop_assert!(requirement_met(pre, policy, ActionKind::Authorize));
        check_step(pre, ApprovalStep::Authorization, machines)?;
    }
    if model.includes(Stage::PeerReviewed) {
        prop_assert!(check_step(pre, ApprovalStep::PeerReview, machines)? > 0);
    }
    if model.includes(Stage::Tested) {
        prop_assert!(check_step(pre, ApprovalStep::Test, machines)? > 0);
    }
    if pre.on_behalf_of.is_some() && policy.customer_acceptance {
        prop_assert!(check_step(pre, ApprovalStep::Acceptance, machines)? > 0);
    }
    prop_assert!(requirement_met(pre, policy, ActionKind::ApproveDeployment));
    check_step(pre, ApprovalStep::Deployment, machines)?;
    let plan = pre.plan.as_ref();
    prop_assert!(plan.is_some(), "deployed without a plan");
    if !pre.testable || policy.rollback_plan_always {
        prop_assert!(plan.and_then(|p| p.rollback_plan.as_ref()).is_some());
    }
    if pre.change_type != ChangeType::Emergency {
        let w = pre.window.as_ref().unwrap();
        prop_assert!(instant(&w.start) <= now && now < instant(&w.end));
    }
    Ok(())
}

fn run(case: &Case) -> Result<Outcome, TestCaseError> {
    let actors = pool();
    let machines: Vec<String> = actors
        .iter()
        .filter(|a| a.machine)
        .map(|a| a.name.clone())
        .collect();
    let policy = policies().swap_remove(case.policy);
    let mut new = new_change(case.change_type, case.category);
    new.testable = case.testable;
    new.on_behalf_of = case.customer.map(str::to_string);
    let requester = &actors[case.requester];
    let ctx = Context {
        policy: &policy,
        actor: requester,
        now: T0,
    };
    let requester = if domain::request(&new, &ctx).is_ok() {
        requester
    } else {
        &actors[0]
    };
    let mut d = Driver::request(policy.clone(), T0, requester, new);
    let mut outcome = Outcome::default();
    let mut codes: BTreeMap<&'static str, RefusalKind> = BTreeMap::new();

    for step in &case.steps {
        let (first, kind, variant, wait, tries) = match *step {
            // The next step is taken by the first actor, from a random one on, who may.
            Step::Next {
                actor,
                variant,
                wait,
            } => (
                actor,
                next_kind(&d.change, &policy, variant),
                variant,
                wait,
                actors.len(),
            ),
            Step::Any {
                actor,
                kind,
                variant,
                wait,
            } => (actor, ActionKind::ALL[kind], variant, wait, 1),
        };
        d.advance(i64::from(wait));
        if let (Step::Next { .. }, ActionKind::Implement, Some(w)) = (step, kind, &d.change.window)
        {
            // Wait for the window to open, as a release manager would.
            d.now = d
                .now
                .max(instant(&w.start) + Duration::minutes(i64::from(variant % 30)));
        }
        let action = action_for(kind, variant, d.now, &d.change);
        for i in 0..tries {
            let actor = &actors[(first + i) % actors.len()];
            if attempt(&mut d, actor, &action, &mut codes, &machines, &mut outcome)? {
                break;
            }
        }
    }

    // Folding the recorded events from scratch, also after they went through JSON as the
    // ledger stores them, gives the state built step by step.
    prop_assert_eq!(&d.replayed(), &d.change);
    let stored: Vec<(domain::Recorded, ChangeEvent)> = d
        .log
        .iter()
        .map(|(at, e)| {
            let json = serde_json::to_string(e).unwrap();
            (
                at.clone(),
                serde_json::from_str::<ChangeEvent>(&json).unwrap(),
            )
        })
        .collect();
    prop_assert_eq!(&stored, &d.log);
    let replayed = Change::replay(&d.change.id, stored.iter().map(|(at, e)| (at.clone(), e)));
    prop_assert_eq!(&replayed.unwrap(), &d.change);
    prop_assert_eq!(d.change.version, d.log.len() as u64);

    check_exceptions(&d, &policy, &outcome)?;
    Ok(outcome)
}

/// Decides one action and records it if accepted, checking what must hold either way.
/// Returns whether it was accepted.
fn attempt(
    d: &mut Driver,
    actor: &Actor,
    action: &Action,
    codes: &mut BTreeMap<&'static str, RefusalKind>,
    machines: &[String],
    outcome: &mut Outcome,
) -> Result<bool, TestCaseError> {
    let policy = d.policy.clone();
    let pre = d.change.clone();
    let event = match d.decide(actor, action) {
        Err(refusal) => {
            prop_assert!(!refusal.message.is_empty());
            let kind_seen = *codes.entry(refusal.code).or_insert(refusal.kind);
            prop_assert_eq!(
                kind_seen,
                refusal.kind,
                "code `{}` changed kind",
                refusal.code
            );
            // Refused: asking again gives the same answer, and nothing is recorded.
            prop_assert_eq!(d.decide(actor, action), Err(refusal));
            prop_assert_eq!(&d.change, &pre);
            return Ok(false);
        }
        Ok(event) => event,
    };
    prop_assert_eq!(event.stage_from, pre.stage);
    prop_assert_eq!(&event.policy, &policy.digest());
    d.try_act(actor, action.clone()).unwrap();
    check_event(&pre, &d.change, &event)?;
    if event.stage_to == Stage::Implemented && pre.stage != Stage::Implemented {
        let deployment = d.change.deployment.as_ref().unwrap();
        prop_assert_eq!(&deployment.by, &actor.name);
        if deployment.before_approval {
            prop_assert_eq!(d.change.change_type, ChangeType::Emergency);
            prop_assert!(pre.stage != Stage::ApprovedForDeployment);
            outcome.implemented_before_approval = true;
        } else {
            check_ready_for_production(&pre, &policy, d.now, machines)?;
            // The approvals keep counting once the change is in production.
            prop_assert!(requirement_met(
                &d.change,
                &policy,
                ActionKind::ApproveDeployment
            ));
            outcome.implemented_after_approval = true;
        }
    }
    if outcome.retroactively_approved_at.is_none()
        && needs_retroactive_approval(&d.change)
        && requirement_met(&d.change, &policy, ActionKind::ApproveRetroactively)
    {
        outcome.retroactively_approved_at = Some(d.now);
    }
    Ok(true)
}

/// What holds for every accepted event.
fn check_event(pre: &Change, post: &Change, event: &ChangeEvent) -> Result<(), TestCaseError> {
    prop_assert!(!pre.stage.is_terminal());
    prop_assert_eq!(post.stage, event.stage_to);
    prop_assert_eq!(post.reworks, pre.reworks + u32::from(event.rework));
    // Approvals are never deleted or rewritten; once invalidated they stay so.
    prop_assert!(post.approvals.len() >= pre.approvals.len());
    for (before, after) in pre.approvals.iter().zip(&post.approvals) {
        prop_assert_eq!(&before.approval, &after.approval);
        if before.invalidated.is_some() {
            prop_assert_eq!(&before.invalidated, &after.invalidated);
        }
    }
    // An approval still counting rests on the content as it is now.
    for e in &post.approvals {
        if e.invalidated.is_none() && e.approval.step != ApprovalStep::Retroactive {
            let stale = e.approval.basis != post.basis(e.approval.step);
            let step = e.approval.step;
            prop_assert!(!stale, "a {step:?} approval rests on content that changed");
        }
    }
    if let Some(a) = &event.approval {
        prop_assert_eq!(
            &a.at,
            &post.updated_at,
            "an approval is dated when it is given"
        );
    }
    Ok(())
}

/// An emergency deployed ahead of approval shows an open exception once the window has
/// passed without approval; one approved in time shows none; one approved late shows a late
/// one. Anything else shows nothing.
fn check_exceptions(d: &Driver, policy: &Policy, outcome: &Outcome) -> Result<(), TestCaseError> {
    let change = &d.change;
    let late = d.now + Duration::days(30);
    let Some(deployment) = change
        .deployment
        .as_ref()
        .filter(|_| needs_retroactive_approval(change))
    else {
        prop_assert!(exceptions(change, policy, late).is_empty());
        return Ok(());
    };
    let due =
        instant(&deployment.at) + Duration::hours(policy.emergency_approval_window_hours.into());
    let before_due = exceptions(change, policy, due);
    let after_due = exceptions(change, policy, late.max(due + Duration::seconds(1)));
    let codes = |xs: &[domain::ControlException]| {
        xs.iter()
            .map(|x| (x.code.clone(), x.status))
            .collect::<Vec<_>>()
    };
    match outcome.retroactively_approved_at {
        None => {
            prop_assert!(before_due.is_empty());
            prop_assert_eq!(
                codes(&after_due),
                vec![(
                    "emergency_not_approved_in_time".to_string(),
                    ExceptionStatus::Open
                )]
            );
        }
        Some(at) if at <= due => prop_assert!(after_due.is_empty()),
        Some(_) => prop_assert_eq!(
            codes(&after_due),
            vec![("emergency_approved_late".to_string(), ExceptionStatus::Late)]
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_keep_the_controls(case in case()) {
        run(&case)?;
    }
}

/// Guards the generator itself: random histories must reach production often enough, both
/// through the process and ahead of approval, or the property above proves little.
#[test]
fn random_histories_reach_production_both_ways() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = case();
    let (mut approved, mut emergency, mut retro) = (0, 0, 0);
    for _ in 0..400 {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        let outcome = run(&case).unwrap_or_else(|e| panic!("{e}\n{case:#?}"));
        approved += usize::from(outcome.implemented_after_approval);
        emergency += usize::from(outcome.implemented_before_approval);
        retro += usize::from(outcome.retroactively_approved_at.is_some());
    }
    eprintln!("approved {approved}, emergency {emergency}, retro {retro}");
    assert!(
        approved >= 40,
        "only {approved} of 400 reached production approved"
    );
    assert!(
        emergency >= 10,
        "only {emergency} of 400 emergencies went first"
    );
    assert!(
        retro >= 5,
        "only {retro} of 400 were approved after the fact"
    );
}
