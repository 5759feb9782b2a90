//! `changegate demo`: a realistic quarter of changes (July to September 2026), made through
//! the same service calls as the API, with the time of each action simulated. It covers
//! every change type and category, rework loops, rejections, deferrals, cancellations, a
//! rollback, a rescheduled window, customer acceptance, a high-risk database change with
//! group approvals, and emergency changes approved in time, late, and not at all.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use domain::action::{
    Amend, ApproveDeployment, Authorize, Comment, Communicate, Defer, Evaluate, Implement,
    ImplementationOutcome, PeerReview, Plan, Reason, ReviewDecision, ReviewImplementation, Test,
    TestResult,
};
use domain::{Action, Category, ChangeType, Level, NewChange};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use server::service::Service;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::StoreArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = super::open_store(&args.store)?;
    fill_if_empty(store, &args.store.data)?;
    Ok(ExitCode::SUCCESS)
}

/// The demo's people and machine identities: name, roles, groups, machine.
const PEOPLE: &[(&str, &[&str], &[&str], bool)] = &[
    ("alice", &["requester"], &[], false),
    ("bob", &["engineer"], &[], false),
    ("carol", &["engineer"], &[], false),
    ("dave", &["peer_reviewer", "engineer"], &[], false),
    ("erin", &["tester"], &[], false),
    ("frank", &["change_manager"], &[], false),
    ("grace", &["cab_member"], &[], false),
    ("heidi", &["cab_member"], &["dba"], false),
    ("ivan", &["release_manager"], &[], false),
    ("judy", &["business_owner"], &["acme"], false),
    ("olivia", &["auditor"], &[], false),
    ("root", &["admin"], &[], false),
    ("deploy-bot", &["release_manager"], &[], true),
];

/// Fills an empty store with the demo quarter and writes the demo users' tokens to
/// `DATA/demo-tokens.txt`. A store that already holds events is left alone.
pub fn fill_if_empty(store: Arc<dyn store::Store>, data: &Path) -> anyhow::Result<()> {
    let tokens_file = data.join("demo-tokens.txt");
    if store.ledger_size()? > 0 {
        if store.meta("demo")?.is_some() && tokens_file.exists() {
            println!(
                "demo data already present; tokens in {}",
                tokens_file.display()
            );
            return Ok(());
        }
        if store.meta("demo")?.is_some() {
            println!("demo data already present");
            return Ok(());
        }
        bail!(
            "`{}` already holds a ledger that is not the demo's; use an empty data directory",
            data.display()
        );
    }
    let started = datetime!(2026-06-29 08:00 UTC);
    let mut tokens = String::from("# demo users: name roles token\n");
    for (name, roles, groups, machine) in PEOPLE {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let token = super::users::add(
            store.as_ref(),
            name,
            &roles,
            &groups,
            *machine,
            &domain::action::format_instant(started),
        )?;
        let _ = writeln!(tokens, "{name} {} {token}", roles.join(","));
    }
    let service = Service::new(store.clone(), domain::Policy::default());
    let steps = quarter();
    let mut ids: std::collections::HashMap<usize, String> = Default::default();
    let mut recorded = 0usize;
    for step in &steps {
        let actor = actor(store.as_ref(), step.actor)?;
        match &step.what {
            What::Create(new) => {
                let change = service
                    .create_blocking(&actor, new.clone(), step.at)
                    .with_context(|| format!("demo change {}", step.change))?;
                ids.insert(step.change, change.id);
            }
            What::Act(action) => {
                let id = ids.get(&step.change).context("demo steps out of order")?;
                service
                    .act_blocking(&actor, id, action.clone(), step.at)
                    .with_context(|| format!("demo {} on {id} by {}", action.kind(), step.actor))?;
            }
        }
        recorded += 1;
    }
    store.set_meta("demo", "2026-Q3")?;
    write_private(&tokens_file, &tokens)?;
    println!(
        "demo quarter recorded: {} changes, {recorded} actions, {} ledger entries",
        ids.len(),
        store.ledger_size()?
    );
    println!("demo users and API tokens ({}):", tokens_file.display());
    print!("{tokens}");
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn actor(store: &dyn store::Store, name: &str) -> anyhow::Result<domain::Actor> {
    let user = store
        .user(name)?
        .with_context(|| format!("demo user `{name}` is missing"))?;
    Ok(Service::actor(&user)?)
}

/// One simulated action.
struct Step {
    at: OffsetDateTime,
    change: usize,
    actor: &'static str,
    what: What,
}

enum What {
    Create(NewChange),
    Act(Action),
}

/// How a demo change's story goes.
#[derive(Clone, Copy)]
enum Story {
    Delivered,
    PeerReviewRework,
    TestRework,
    Rejected,
    DeferredThenDelivered,
    Cancelled,
    RolledBack,
    Rescheduled,
    EmergencyInTime,
    EmergencyLate,
    EmergencyUnapproved,
    InFlight(u8),
}

/// Builds the quarter's steps in time order.
fn quarter() -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(20_260_701);
    let mut steps = Vec::new();
    let quarter_start = datetime!(2026-07-01 09:00 UTC);
    let catalog = catalog();
    let mut index = 0;
    for week in 0..13 {
        for slot in 0..6 {
            let (title, change_type, category, systems, testable, customer) =
                catalog[(week * 6 + slot) % catalog.len()];
            let story = match (week * 6 + slot) % 23 {
                3 => Story::PeerReviewRework,
                7 => Story::TestRework,
                9 => Story::Rejected,
                11 => Story::DeferredThenDelivered,
                13 => Story::Cancelled,
                15 => Story::RolledBack,
                17 => Story::Rescheduled,
                _ => Story::Delivered,
            };
            let story = if week == 12 && slot >= 3 {
                Story::InFlight(slot as u8)
            } else {
                story
            };
            let start = quarter_start
                + Duration::days(week as i64 * 7 + slot as i64 % 5)
                + Duration::minutes(rng.gen_range(0..420));
            let new = NewChange {
                title: title.to_string(),
                description: format!("{title}. Requested in week {} of the quarter.", week + 1),
                change_type,
                category,
                systems: systems.iter().map(|s| s.to_string()).collect(),
                on_behalf_of: customer.map(str::to_string),
                testable,
            };
            story_steps(&mut steps, &mut rng, index, start, new, story);
            index += 1;
        }
    }
    let emergencies = [
        (
            "Hotfix: payment gateway TLS certificate expired",
            Story::EmergencyInTime,
            5,
        ),
        (
            "Hotfix: runaway query locking the orders table",
            Story::EmergencyInTime,
            33,
        ),
        (
            "Hotfix: disable broken feature flag for checkout",
            Story::EmergencyLate,
            47,
        ),
        (
            "Hotfix: patch OpenSSL on edge proxies",
            Story::EmergencyInTime,
            61,
        ),
        (
            "Hotfix: restart stuck message broker with new limits",
            Story::EmergencyUnapproved,
            80,
        ),
    ];
    for (title, story, day) in emergencies {
        let start = quarter_start + Duration::days(day) + Duration::hours(rng.gen_range(0..12));
        let category = if title.contains("query") {
            Category::Database
        } else if title.contains("flag") {
            Category::Configuration
        } else {
            Category::Infrastructure
        };
        let new = NewChange {
            title: title.to_string(),
            description: "Production incident; fix applied ahead of approval.".into(),
            change_type: ChangeType::Emergency,
            category,
            systems: vec!["payments".into()],
            on_behalf_of: None,
            testable: true,
        };
        story_steps(&mut steps, &mut rng, index, start, new, story);
        index += 1;
    }
    // Creation steps of a change come first for that change, so a stable sort by time keeps
    // each change's own order.
    steps.sort_by_key(|s| s.at);
    steps
}

type CatalogItem = (
    &'static str,
    ChangeType,
    Category,
    &'static [&'static str],
    bool,
    Option<&'static str>,
);

fn catalog() -> Vec<CatalogItem> {
    use Category::*;
    use ChangeType::*;
    vec![
        (
            "Add refund reason codes to the payments API",
            Normal,
            Application,
            &["payments-api"],
            true,
            None,
        ),
        (
            "Rotate database credentials for the billing service",
            Standard,
            Configuration,
            &["billing"],
            true,
            None,
        ),
        (
            "Add index on orders(customer_id, created_at)",
            Normal,
            Database,
            &["orders-db"],
            true,
            None,
        ),
        (
            "Upgrade Kubernetes node pool to 1.31",
            Normal,
            Infrastructure,
            &["k8s-prod"],
            false,
            None,
        ),
        (
            "Acme single sign-on integration",
            Normal,
            Application,
            &["identity", "portal"],
            true,
            Some("acme"),
        ),
        (
            "Raise API gateway rate limit for partner tier",
            Normal,
            Configuration,
            &["api-gateway"],
            true,
            None,
        ),
        (
            "Monthly OS patching of bastion hosts",
            Standard,
            Infrastructure,
            &["bastion"],
            true,
            None,
        ),
        (
            "Partition the ledger_events table by month",
            Normal,
            Database,
            &["ledger-db"],
            true,
            None,
        ),
        (
            "New invoice PDF layout",
            Normal,
            Application,
            &["billing", "portal"],
            true,
            None,
        ),
        (
            "Move log retention to 400 days",
            Standard,
            Configuration,
            &["logging"],
            true,
            None,
        ),
        (
            "Replace load balancer TLS policy",
            Normal,
            Infrastructure,
            &["edge-lb"],
            false,
            None,
        ),
        (
            "Dependency updates for the portal",
            Standard,
            Application,
            &["portal"],
            true,
            None,
        ),
    ]
}

fn story_steps(
    out: &mut Vec<Step>,
    rng: &mut StdRng,
    change: usize,
    start: OffsetDateTime,
    new: NewChange,
    story: Story,
) {
    let mut t = start;
    let push = |out: &mut Vec<Step>, t: OffsetDateTime, actor: &'static str, what: What| {
        out.push(Step {
            at: t,
            change,
            actor,
            what,
        });
    };
    let engineer = if change.is_multiple_of(2) {
        "bob"
    } else {
        "carol"
    };
    let requester = if new.on_behalf_of.is_some() {
        "judy"
    } else {
        "alice"
    };
    let change_type = new.change_type;
    let category = new.category;
    let testable = new.testable;
    let customer = new.on_behalf_of.is_some();
    let emergency = change_type == ChangeType::Emergency;
    let requester = if emergency { engineer } else { requester };
    push(out, t, requester, What::Create(new));
    let step = |rng: &mut StdRng, t: &mut OffsetDateTime, hours: std::ops::Range<i64>| {
        *t += Duration::minutes(rng.gen_range(hours.start * 60..hours.end * 60));
        *t
    };

    if emergency {
        let at = step(rng, &mut t, 0..1);
        push(
            out,
            at,
            "ivan",
            What::Act(Action::Implement(Implement {
                environment: "production".into(),
                artifact: format!("hotfix-{change}@sha256:{:016x}", rng.gen::<u64>()),
            })),
        );
        let approve_after = match story {
            Story::EmergencyInTime => Some(rng.gen_range(2..40)),
            Story::EmergencyLate => Some(rng.gen_range(90..130)),
            _ => None,
        };
        if let Some(hours) = approve_after {
            t += Duration::hours(hours);
            push(
                out,
                t,
                "frank",
                What::Act(Action::ApproveRetroactively(Comment {
                    comment: Some("reviewed the incident and the fix".into()),
                })),
            );
            let at = step(rng, &mut t, 1..24);
            push(
                out,
                at,
                "grace",
                What::Act(review(ImplementationOutcome::Successful)),
            );
            let at = step(rng, &mut t, 1..8);
            push(
                out,
                at,
                "frank",
                What::Act(communicate("Emergency fix deployed.")),
            );
            let at = step(rng, &mut t, 1..8);
            push(
                out,
                at,
                "frank",
                What::Act(Action::Close(Comment::default())),
            );
        }
        return;
    }

    let risk = match (category, change % 4) {
        (Category::Database, 0) => Level::High,
        (_, 1) => Level::Medium,
        (_, 3) if change.is_multiple_of(7) => Level::High,
        _ => Level::Low,
    };
    let at = step(rng, &mut t, 1..20);
    push(
        out,
        at,
        "frank",
        What::Act(Action::Evaluate(Evaluate {
            risk,
            priority: if risk == Level::High {
                Level::High
            } else {
                Level::Medium
            },
            impact: "users may see a short slowdown during the window".into(),
        })),
    );
    if let Story::InFlight(0..=3) = story {
        return;
    }
    if let Story::Rejected = story {
        let at = step(rng, &mut t, 2..30);
        push(
            out,
            at,
            "grace",
            What::Act(Action::Reject(Reason {
                reason: "duplicates an approved change already scheduled".into(),
            })),
        );
        return;
    }
    if let Story::DeferredThenDelivered = story {
        let at = step(rng, &mut t, 2..10);
        let until = at + Duration::days(10);
        push(
            out,
            at,
            "frank",
            What::Act(Action::Defer(Defer {
                reason: "change freeze for the quarterly close".into(),
                until: domain::action::format_instant(until),
            })),
        );
        t = until + Duration::hours(1);
        push(
            out,
            t,
            "frank",
            What::Act(Action::Resume(Comment::default())),
        );
        let at = step(rng, &mut t, 1..8);
        push(
            out,
            at,
            "frank",
            What::Act(Action::Evaluate(Evaluate {
                risk,
                priority: Level::Medium,
                impact: "re-evaluated after the freeze".into(),
            })),
        );
    }
    if change_type != ChangeType::Standard {
        let at = step(rng, &mut t, 2..30);
        let authorizer = if risk == Level::High || change.is_multiple_of(3) {
            "grace"
        } else {
            "frank"
        };
        push(
            out,
            at,
            authorizer,
            What::Act(Action::Authorize(Authorize {
                assignee: Some(engineer.into()),
                release: Some(format!("2026.{}", 7 + (change / 26))),
                comment: None,
            })),
        );
    }
    if let Story::Cancelled = story {
        let at = step(rng, &mut t, 2..30);
        push(
            out,
            at,
            "frank",
            What::Act(Action::Cancel(Comment {
                comment: Some("no longer needed after vendor change".into()),
            })),
        );
        return;
    }
    let at = step(rng, &mut t, 4..48);
    push(
        out,
        at,
        engineer,
        What::Act(Action::Plan(Plan {
            implementation_plan: "deploy through the pipeline; feature flag off until verified"
                .into(),
            test_plan: testable
                .then(|| "unit and integration suites; smoke test in staging".into()),
            rollback_plan: Some("redeploy the previous artifact".into()),
        })),
    );
    if let Story::InFlight(4) = story {
        return;
    }
    let reviewed = category != Category::Configuration;
    let tested = testable;
    let review_once = |out: &mut Vec<Step>,
                       rng: &mut StdRng,
                       t: &mut OffsetDateTime,
                       decision: ReviewDecision| {
        let at = step(rng, t, 2..30);
        out.push(Step {
            at,
            change,
            actor: "dave",
            what: What::Act(Action::PeerReview(PeerReview {
                decision,
                comment: match decision {
                    ReviewDecision::Approved => "looks good".into(),
                    ReviewDecision::ChangesRequested => "missing error handling on retry".into(),
                },
            })),
        });
    };
    if reviewed {
        if let Story::PeerReviewRework = story {
            review_once(out, rng, &mut t, ReviewDecision::ChangesRequested);
        }
        review_once(out, rng, &mut t, ReviewDecision::Approved);
    }
    if tested {
        if let Story::TestRework = story {
            let at = step(rng, &mut t, 2..30);
            push(
                out,
                at,
                "erin",
                What::Act(Action::Test(Test {
                    result: TestResult::Failed,
                    evidence: "regression suite: 3 failures in refunds".into(),
                })),
            );
            if reviewed {
                review_once(out, rng, &mut t, ReviewDecision::Approved);
            }
        }
        let at = step(rng, &mut t, 2..30);
        push(
            out,
            at,
            "erin",
            What::Act(Action::Test(Test {
                result: TestResult::Passed,
                evidence: format!(
                    "ci run #{} green; staging smoke test passed",
                    4000 + change * 7
                ),
            })),
        );
    }
    if customer {
        let at = step(rng, &mut t, 4..48);
        push(
            out,
            at,
            "judy",
            What::Act(Action::Accept(Comment {
                comment: Some("accepted in the Acme sandbox".into()),
            })),
        );
    }
    if let Story::InFlight(5) = story {
        return;
    }
    let approve_at = step(rng, &mut t, 2..20);
    let window_start = (approve_at + Duration::days(1))
        .replace_hour(22)
        .unwrap_or(approve_at);
    let window_end = window_start + Duration::hours(3);
    let approvers: &[&'static str] = if category == Category::Database && risk == Level::High {
        &["heidi", "grace"]
    } else {
        &["frank"]
    };
    for (i, approver) in approvers.iter().enumerate() {
        let at = approve_at + Duration::minutes(30 * i as i64);
        push(
            out,
            at,
            approver,
            What::Act(Action::ApproveDeployment(ApproveDeployment {
                window_start: Some(domain::action::format_instant(window_start)),
                window_end: Some(domain::action::format_instant(window_end)),
                artifact: None,
                comment: None,
            })),
        );
    }
    let mut window_start = window_start;
    if let Story::Rescheduled = story {
        let at = approve_at + Duration::hours(3);
        window_start += Duration::days(2);
        push(
            out,
            at,
            requester,
            What::Act(Action::Amend(Amend {
                window_start: Some(domain::action::format_instant(window_start)),
                window_end: Some(domain::action::format_instant(
                    window_start + Duration::hours(3),
                )),
                ..Amend::default()
            })),
        );
        push(
            out,
            at + Duration::hours(2),
            "frank",
            What::Act(Action::ApproveDeployment(ApproveDeployment {
                window_start: None,
                window_end: None,
                artifact: None,
                comment: Some("new window agreed".into()),
            })),
        );
    }
    t = window_start + Duration::minutes(rng.gen_range(5..60));
    let deployer = if change.is_multiple_of(3) {
        "deploy-bot"
    } else {
        "ivan"
    };
    push(
        out,
        t,
        deployer,
        What::Act(Action::Implement(Implement {
            environment: "production".into(),
            artifact: format!("release-{change}@sha256:{:016x}", rng.gen::<u64>()),
        })),
    );
    if let Story::RolledBack = story {
        let at = step(rng, &mut t, 0..2);
        push(
            out,
            at,
            "ivan",
            What::Act(Action::RollBack(Comment {
                comment: Some("error rate above threshold after deploy".into()),
            })),
        );
        let at = step(rng, &mut t, 2..30);
        push(
            out,
            at,
            "frank",
            What::Act(review(ImplementationOutcome::Failed)),
        );
    } else {
        let at = step(rng, &mut t, 2..30);
        let outcome = if change.is_multiple_of(11) {
            ImplementationOutcome::SuccessfulWithIssues
        } else {
            ImplementationOutcome::Successful
        };
        push(out, at, "frank", What::Act(review(outcome)));
    }
    let at = step(rng, &mut t, 1..10);
    push(
        out,
        at,
        "ivan",
        What::Act(communicate("Deployed in the approved window.")),
    );
    let at = step(rng, &mut t, 1..24);
    push(
        out,
        at,
        "frank",
        What::Act(Action::Close(Comment::default())),
    );
}

fn review(outcome: ImplementationOutcome) -> Action {
    Action::ReviewImplementation(ReviewImplementation {
        outcome,
        comment: None,
    })
}

fn communicate(notes: &str) -> Action {
    Action::Communicate(Communicate {
        release_notes: notes.into(),
    })
}
