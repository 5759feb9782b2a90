//! Shared fixtures for the lifecycle tests: a cast of actors, action builders, and a driver
//! that decides actions on one change and folds the recorded events, with time passed in.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixtures"
)]

use domain::action::{
    format_instant, Amend, ApproveDeployment, Authorize, Comment, Communicate, Defer, Evaluate,
    Implement, ImplementationOutcome, PeerReview, Plan, Reason, ReviewDecision,
    ReviewImplementation, Test, TestResult,
};
use domain::{
    decide, request, Action, Actor, Category, Change, ChangeEvent, ChangeType, Context, Level,
    NewChange, Policy, Recorded, Refusal, RefusalKind, Role, Stage,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// Monday 2026-05-11 08:00 UTC: the start of every scenario unless it says otherwise.
pub const T0: OffsetDateTime = datetime!(2026-05-11 08:00 UTC);

pub fn person(name: &str, roles: &[Role], groups: &[&str]) -> Actor {
    Actor {
        name: name.to_string(),
        roles: roles.to_vec(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        machine: false,
    }
}

pub fn machine(name: &str, roles: &[Role]) -> Actor {
    Actor {
        machine: true,
        ..person(name, roles, &[])
    }
}

/// The same actor holding every role except those the policy allows for `kind`.
pub fn without_roles(actor: &Actor, policy: &Policy, kind: domain::ActionKind) -> Actor {
    let allowed: Vec<Role> = policy.roles_for(kind).collect();
    Actor {
        roles: Role::ALL
            .iter()
            .copied()
            .filter(|r| !allowed.contains(r))
            .collect(),
        ..actor.clone()
    }
}

/// The usual cast. Names follow the fault cases.
pub struct Cast {
    /// Requests changes.
    pub alice: Actor,
    /// Engineer: builds what is assigned to him.
    pub bob: Actor,
    /// Peer reviewer.
    pub carol: Actor,
    /// Tester.
    pub dave: Actor,
    /// Change manager and CAB member.
    pub erin: Actor,
    /// CAB member and database administrator.
    pub frank: Actor,
    /// Release manager: deploys.
    pub gina: Actor,
    /// Business owner speaking for the customer `acme`.
    pub olga: Actor,
    /// The CI pipeline: a machine identity that deploys.
    pub ci: Actor,
}

pub fn cast() -> Cast {
    Cast {
        alice: person("alice", &[Role::Requester], &[]),
        bob: person("bob", &[Role::Engineer], &[]),
        carol: person("carol", &[Role::PeerReviewer], &[]),
        dave: person("dave", &[Role::Tester], &[]),
        erin: person("erin", &[Role::ChangeManager, Role::CabMember], &[]),
        frank: person("frank", &[Role::CabMember], &["dba"]),
        gina: person("gina", &[Role::ReleaseManager], &[]),
        olga: person("olga", &[Role::BusinessOwner], &["acme"]),
        ci: machine("ci", &[Role::ReleaseManager]),
    }
}

pub fn new_change(change_type: ChangeType, category: Category) -> NewChange {
    NewChange {
        title: "Raise the checkout timeout".into(),
        description: "Payments time out under load".into(),
        change_type,
        category,
        systems: vec!["checkout".into()],
        on_behalf_of: None,
        testable: true,
    }
}

pub fn evaluate(risk: Level) -> Action {
    Action::Evaluate(Evaluate {
        risk,
        priority: Level::Medium,
        impact: "checkout slower for five minutes".into(),
    })
}

pub fn authorize(assignee: Option<&str>) -> Action {
    Action::Authorize(Authorize {
        assignee: assignee.map(str::to_string),
        release: Some("2026.05".into()),
        comment: None,
    })
}

pub fn plan(test_plan: Option<&str>, rollback_plan: Option<&str>) -> Action {
    Action::Plan(Plan {
        implementation_plan: "bump the timeout in the gateway config".into(),
        test_plan: test_plan.map(str::to_string),
        rollback_plan: rollback_plan.map(str::to_string),
    })
}

/// A complete plan: test plan and rollback plan.
pub fn full_plan() -> Action {
    plan(Some("load test at 2x peak"), Some("redeploy v41"))
}

pub fn peer_review(decision: ReviewDecision, comment: &str) -> Action {
    Action::PeerReview(PeerReview {
        decision,
        comment: comment.into(),
    })
}

pub fn review_approved() -> Action {
    peer_review(ReviewDecision::Approved, "")
}

pub fn test_run(result: TestResult, evidence: &str) -> Action {
    Action::Test(Test {
        result,
        evidence: evidence.into(),
    })
}

pub fn test_passed() -> Action {
    test_run(TestResult::Passed, "https://ci.example/runs/8812")
}

pub fn comment() -> Comment {
    Comment::default()
}

pub fn accept() -> Action {
    Action::Accept(comment())
}

pub fn approve_deployment(window: Option<(OffsetDateTime, OffsetDateTime)>) -> Action {
    approve_deployment_raw(window.map(|(s, e)| (format_instant(s), format_instant(e))))
}

pub fn approve_deployment_raw(window: Option<(String, String)>) -> Action {
    let (window_start, window_end) = match window {
        Some((s, e)) => (Some(s), Some(e)),
        None => (None, None),
    };
    Action::ApproveDeployment(ApproveDeployment {
        window_start,
        window_end,
        artifact: None,
        comment: None,
    })
}

pub fn implement() -> Action {
    Action::Implement(Implement {
        environment: "production".into(),
        artifact: "sha256:9f86d081884c7d65".into(),
    })
}

pub fn review_implementation(outcome: ImplementationOutcome) -> Action {
    Action::ReviewImplementation(ReviewImplementation {
        outcome,
        comment: None,
    })
}

pub fn communicate() -> Action {
    Action::Communicate(Communicate {
        release_notes: "checkout timeout raised to 30 s".into(),
    })
}

pub fn close() -> Action {
    Action::Close(comment())
}

pub fn cancel() -> Action {
    Action::Cancel(comment())
}

pub fn roll_back() -> Action {
    Action::RollBack(comment())
}

pub fn approve_retroactively() -> Action {
    Action::ApproveRetroactively(comment())
}

pub fn reject(reason: &str) -> Action {
    Action::Reject(Reason {
        reason: reason.into(),
    })
}

pub fn defer(until: OffsetDateTime) -> Action {
    Action::Defer(Defer {
        reason: "waiting for the vendor".into(),
        until: format_instant(until),
    })
}

pub fn resume() -> Action {
    Action::Resume(comment())
}

pub fn amend(edit: impl FnOnce(&mut Amend)) -> Action {
    let mut a = Amend::default();
    edit(&mut a);
    Action::Amend(a)
}

/// One change, its recorded events and the clock of the scenario.
#[derive(Debug, Clone)]
pub struct Driver {
    pub policy: Policy,
    pub now: OffsetDateTime,
    pub change: Change,
    pub log: Vec<(Recorded, ChangeEvent)>,
}

impl Driver {
    /// Requests a change; panics if the request is refused.
    pub fn request(policy: Policy, now: OffsetDateTime, by: &Actor, new: NewChange) -> Driver {
        let ctx = Context {
            policy: &policy,
            actor: by,
            now,
        };
        let event = request(&new, &ctx).unwrap_or_else(|r| panic!("request refused: {r:?}"));
        let at = recorded(by, now);
        let change =
            Change::replay("CHG-000001", [(at.clone(), &event)]).unwrap_or_else(|e| panic!("{e}"));
        Driver {
            policy,
            now,
            change,
            log: vec![(at, event)],
        }
    }

    /// A default-policy change of this kind requested by alice at `T0`.
    pub fn new(change_type: ChangeType, category: Category) -> Driver {
        Driver::request(
            Policy::default(),
            T0,
            &cast().alice,
            new_change(change_type, category),
        )
    }

    pub fn advance(&mut self, minutes: i64) -> &mut Self {
        self.now += Duration::minutes(minutes);
        self
    }

    pub fn decide(&self, by: &Actor, action: &Action) -> Result<ChangeEvent, Refusal> {
        let ctx = Context {
            policy: &self.policy,
            actor: by,
            now: self.now,
        };
        decide(&self.change, action, &ctx)
    }

    /// Decides and, if accepted, records and folds the event.
    pub fn try_act(&mut self, by: &Actor, action: Action) -> Result<ChangeEvent, Refusal> {
        let event = self.decide(by, &action)?;
        let at = recorded(by, self.now);
        self.change.apply(&at, &event);
        self.log.push((at, event.clone()));
        Ok(event)
    }

    /// Decides an action that must be accepted.
    #[track_caller]
    pub fn act(&mut self, by: &Actor, action: Action) -> ChangeEvent {
        let kind = action.kind();
        self.try_act(by, action).unwrap_or_else(|r| {
            panic!(
                "`{}` `{kind}` at stage `{}` refused: {} ({})",
                by.name, self.change.stage, r.code, r.message
            )
        })
    }

    /// Decides an action that must be refused; checks that nothing was recorded.
    #[track_caller]
    pub fn refuse(&mut self, by: &Actor, action: Action) -> Refusal {
        let before = self.change.clone();
        let events = self.log.len();
        let kind = action.kind();
        let refusal = match self.try_act(by, action) {
            Ok(e) => panic!(
                "`{}` `{kind}` at stage `{}` was accepted: {e:?}",
                by.name, before.stage
            ),
            Err(r) => r,
        };
        assert_eq!(self.change, before, "a refusal changed the change");
        assert_eq!(self.log.len(), events, "a refusal recorded an event");
        refusal
    }

    /// Folds the recorded events from scratch.
    pub fn replayed(&self) -> Change {
        Change::replay(
            &self.change.id,
            self.log.iter().map(|(at, e)| (at.clone(), e)),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn stages(&self) -> Vec<Stage> {
        self.log.iter().map(|(_, e)| e.stage_to).collect()
    }
}

pub fn recorded(by: &Actor, now: OffsetDateTime) -> Recorded {
    Recorded {
        time: format_instant(now),
        actor: by.name.clone(),
    }
}

/// Asserts a refusal's kind and code, showing the message on failure.
#[track_caller]
pub fn assert_refused(r: &Refusal, kind: RefusalKind, code: &str) {
    assert_eq!(
        (r.kind, r.code),
        (kind, code),
        "unexpected refusal: {}",
        r.message
    );
}

/// A window that opens in an hour and lasts four.
pub fn window_from(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    (now + Duration::hours(1), now + Duration::hours(5))
}

/// Drives a normal application change (default policy, alice requests, erin authorizes,
/// bob builds, carol reviews, dave tests, erin approves the deployment) up to `target`.
pub fn normal_to(target: Stage) -> Driver {
    drive_to(
        Driver::new(ChangeType::Normal, Category::Application),
        target,
    )
}

/// Drives a change along its model's main line up to `target`, with the default cast.
pub fn drive_to(mut d: Driver, target: Stage) -> Driver {
    let c = cast();
    let model = d
        .policy
        .model(d.change.change_type, d.change.category, d.change.testable);
    while d.change.stage != target {
        let next = model
            .successor(d.change.stage)
            .unwrap_or_else(|| panic!("`{target}` is not ahead of `{}`", d.change.stage));
        d.advance(10);
        match next {
            Stage::Evaluated => d.act(&c.erin, evaluate(Level::Medium)),
            Stage::Authorized => d.act(&c.erin, authorize(Some("bob"))),
            Stage::Planned => d.act(&c.bob, full_plan()),
            Stage::PeerReviewed => d.act(&c.carol, review_approved()),
            Stage::Tested => d.act(&c.dave, test_passed()),
            Stage::ApprovedForDeployment => {
                if d.change.on_behalf_of.is_some() {
                    d.act(&c.olga, accept());
                }
                let w = window_from(d.now);
                d.act(&c.erin, approve_deployment(Some(w)))
            }
            Stage::Implemented => {
                if let Some(w) = &d.change.window {
                    let start = domain::action::parse_instant("start", &w.start).unwrap();
                    d.now = d.now.max(start + Duration::minutes(30));
                }
                d.act(&c.gina, implement())
            }
            Stage::Reviewed => d.act(
                &c.erin,
                review_implementation(ImplementationOutcome::Successful),
            ),
            Stage::Communicated => d.act(&c.gina, communicate()),
            Stage::Closed => d.act(&c.erin, close()),
            other => panic!("no main-line step leads to `{other}`"),
        };
        assert_eq!(d.change.stage, next);
    }
    d
}
