//! An engagement over 1,000,000 production change events, end to end in one process:
//! reconciliation against 10,000 change records, populations, seeded samples and results
//! for every control, `summary.json`, `samples.csv`, `engagement.json`, `workpapers.xlsx`
//! and the OSCAL assessment results. The baseline,
//! measured in the same run, is one pass over the events that only hashes their ids (the
//! population hash): the least any engagement must do.
//!
//! The events are generated: commits of 50 engineers, each naming one of 10,000 changes that
//! went through the whole lifecycle (built with the real decision code), one in 50 pushed
//! with no change record. `CHANGEGATE_BENCH_REPOS` (a directory holding replayed
//! repositories, as the ingest bench leaves them) adds the real histories of flask, cargo
//! and gnome-calculator read with gix, as the first events of the population.
//!
//! `cargo bench -p changegate-audit --bench engagement`; `BENCH_EVENTS` sets the number of
//! generated events. Without the `--bench` argument (as under `cargo test --benches`) it
//! makes a smoke run of 20,000 events. Prints figures, asserts no timing.

use std::collections::BTreeMap;
use std::time::Instant;

use audit::catalog::Catalog;
use audit::engagement::{self, Plan};
use audit::sampling::Sampling;
use audit::{population_hash, CommitEvent, Inputs, ProductionEvent, Rules, UserFacts};
use domain::action::parse_instant;
use domain::{Action, Actor, Change, Context, NewChange, Policy, Role};
use evidence::Person;
use serde_json::json;

const CHANGES: usize = 10_000;
const ENGINEERS: usize = 50;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let events: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 20_000 } else { 1_000_000 });

    let started = Instant::now();
    let policy = Policy::default();
    let template = lifecycle(&policy);
    let mut changes = BTreeMap::new();
    for i in 0..CHANGES {
        let mut c = template.clone();
        c.id = format!("CHG-{:06}", i + 1);
        changes.insert(c.id.clone(), c);
    }
    let mut population = real_histories();
    let real = population.len();
    population.extend((0..events).map(generated));
    let users = users();
    let generated_in = started.elapsed();
    println!(
        "engagement bench: {} events ({real} from real histories), {CHANGES} changes, \
         generated in {:.2} s",
        population.len(),
        generated_in.as_secs_f64()
    );

    let t = Instant::now();
    let hash = population_hash(population.iter().map(|e| match e {
        ProductionEvent::Commit(c) => c.id.as_str(),
        ProductionEvent::Deployment(d) => d.artifact.as_str(),
    }));
    let baseline = t.elapsed();

    let total = Instant::now();
    let t = Instant::now();
    let rules = Rules::default();
    let report = audit::reconcile(&Inputs {
        events: &population,
        evidence: &[],
        changes: &changes,
        users: &users,
        policy: &policy,
        rules: &rules,
        as_of: parse_instant("as_of", "2026-12-31T00:00:00Z").unwrap(),
    });
    let reconciled = t.elapsed();
    assert_eq!(report.population, hash);

    let t = Instant::now();
    let catalog = Catalog::default();
    let sampling = Sampling::default();
    let plan = Plan {
        period: ("2026-01-01T00:00:00Z".into(), "2026-12-31T23:59:59Z".into()),
        seed: 20261204,
        catalog: &catalog,
        sampling: &sampling,
        as_of: "2027-01-15T00:00:00Z".into(),
        sources: vec!["generated".into()],
    };
    let implemented: Vec<&Change> = changes.values().collect();
    let e = engagement::run(&plan, &report, &implemented, &[], &[]).expect("engagement");
    let tested = t.elapsed();

    let t = Instant::now();
    let summary = serde_json::to_vec_pretty(&engagement::summary(&e)).unwrap();
    let samples = engagement::samples_csv(&e);
    let full = serde_json::to_vec(&e).unwrap();
    let written = t.elapsed();
    let t = Instant::now();
    let workbook = audit::workbook::workbook(&e, &catalog).expect("workbook");
    let booked = t.elapsed();
    let t = Instant::now();
    let oscal = audit::oscal::assessment_results(
        &e,
        &catalog,
        &audit::oscal::OscalMeta {
            title: "bench".into(),
            version: "1".into(),
            generated: parse_instant("t", "2026-12-31T00:00:00Z").unwrap(),
            organization: "Bench".into(),
            namespace: "changegate:bench".into(),
        },
    )
    .expect("oscal");
    let oscal_bytes = serde_json::to_vec(&oscal).unwrap().len();
    let oscaled = t.elapsed();
    let total = total.elapsed();

    let secs = |d: std::time::Duration| d.as_secs_f64();
    println!("| step | seconds |");
    println!("|---|---:|");
    println!("| baseline: population hash only | {:.3} |", secs(baseline));
    println!("| reconciliation | {:.3} |", secs(reconciled));
    println!("| populations, samples, results | {:.3} |", secs(tested));
    println!(
        "| summary.json, samples.csv, engagement.json ({:.1} MB) | {:.3} |",
        (summary.len() + samples.len() + full.len()) as f64 / 1e6,
        secs(written)
    );
    println!(
        "| workpapers.xlsx ({:.1} MB) | {:.3} |",
        workbook.len() as f64 / 1e6,
        secs(booked)
    );
    println!(
        "| assessment-results.json ({:.1} MB) | {:.3} |",
        oscal_bytes as f64 / 1e6,
        secs(oscaled)
    );
    println!(
        "| **total** ({:.0}× the baseline) | **{:.3}** |",
        secs(total) / secs(baseline).max(1e-9),
        secs(total)
    );
    println!(
        "events: {}, unauthorized: {}, exceptions: {}; peak RSS {:.0} MB",
        report.summary.events,
        report.summary.unauthorized,
        report.summary.exceptions,
        peak_rss_mb()
    );
    println!("target: under 10 s end to end for 1,000,000 events on 2 cores");
}

/// A commit of the generated population: every 50th is pushed with no change record.
fn generated(i: usize) -> ProductionEvent {
    let author = format!("eng{:02}", i % ENGINEERS);
    let change = i % CHANGES + 1;
    let subject = if i % 50 == 49 {
        format!("hotfix {i}")
    } else {
        format!("CHG-{change:06}: part {i}")
    };
    let at = format!(
        "2026-{:02}-{:02}T{:02}:{:02}:00Z",
        6 + (i / 600_000) % 6,
        1 + (i / 20_000) % 28,
        (i / 60) % 24,
        i % 60
    );
    ProductionEvent::Commit(CommitEvent {
        id: format!("{:040x}", i as u128 * 2_654_435_761),
        parents: vec![],
        author: Person {
            name: author.clone(),
            email: format!("{author}@corp.example"),
        },
        committer: Person {
            name: author.clone(),
            email: format!("{author}@corp.example"),
        },
        author_time: at.clone(),
        commit_time: at,
        change_ids: evidence::change_ids(&subject),
        subject,
        pull_request: None,
        source_branch: None,
        co_authors: vec![],
        reverts: None,
        carried: vec![],
        lossy: false,
    })
}

/// The real histories, when the ingest bench left them replayed.
fn real_histories() -> Vec<ProductionEvent> {
    let Some(dir) = std::env::var_os("CHANGEGATE_BENCH_REPOS") else {
        return vec![];
    };
    let mut out = Vec::new();
    for (name, branch) in [
        ("flask", "main"),
        ("cargo", "master"),
        ("gnome-calculator", "main"),
    ] {
        let repo = std::path::Path::new(&dir).join(name);
        let Ok(history) =
            evidence::git::first_parent_history(&repo, branch, &evidence::git::Range::all())
        else {
            eprintln!("{} not found; skipped", repo.display());
            continue;
        };
        for c in history.commits {
            out.push(ProductionEvent::Commit(CommitEvent {
                id: c.id,
                parents: c.parents,
                author: c.author,
                committer: c.committer,
                author_time: c.author_time,
                commit_time: c.commit_time,
                subject: c.message.subject,
                pull_request: c.message.pull_request.map(|p| p.number),
                source_branch: c.message.source_branch,
                change_ids: c.message.change_ids,
                co_authors: c.message.co_authors,
                reverts: c.message.reverts,
                carried: vec![],
                lossy: !c.message.utf8,
            }));
        }
    }
    out
}

fn actor(name: &str, roles: &[Role]) -> Actor {
    Actor {
        name: name.into(),
        roles: roles.to_vec(),
        groups: vec![],
        machine: false,
    }
}

fn users() -> BTreeMap<String, UserFacts> {
    let mut users = BTreeMap::new();
    for (name, roles) in [
        ("alice", vec!["requester"]),
        ("erin", vec!["change_manager", "cab_member"]),
        ("carol", vec!["peer_reviewer"]),
        ("dave", vec!["tester"]),
        ("gina", vec!["release_manager"]),
    ] {
        users.insert(
            name.to_string(),
            UserFacts {
                roles: roles.into_iter().map(String::from).collect(),
                machine: false,
                active: true,
            },
        );
    }
    for i in 0..ENGINEERS {
        users.insert(
            format!("eng{i:02}"),
            UserFacts {
                roles: vec!["engineer".into()],
                machine: false,
                active: true,
            },
        );
    }
    users
}

/// One change through the whole lifecycle, authorized before any generated commit.
fn lifecycle(policy: &Policy) -> Change {
    let steps: Vec<(&str, Actor, serde_json::Value)> = vec![
        (
            "2026-01-05T09:00:00Z",
            actor("erin", &[Role::ChangeManager, Role::CabMember]),
            json!({"action": "evaluate", "risk": "medium", "priority": "medium", "impact": "i"}),
        ),
        (
            "2026-01-05T10:00:00Z",
            actor("erin", &[Role::ChangeManager, Role::CabMember]),
            json!({"action": "authorize", "assignee": "eng00"}),
        ),
        (
            "2026-01-05T11:00:00Z",
            actor("eng00", &[Role::Engineer]),
            json!({"action": "plan", "implementation_plan": "p", "test_plan": "t",
                   "rollback_plan": "r"}),
        ),
        (
            "2026-12-20T10:00:00Z",
            actor("carol", &[Role::PeerReviewer]),
            json!({"action": "peer_review", "decision": "approved"}),
        ),
        (
            "2026-12-20T11:00:00Z",
            actor("dave", &[Role::Tester]),
            json!({"action": "test", "result": "passed", "evidence": "ci"}),
        ),
    ];
    let requester = actor("alice", &[Role::Requester]);
    let new: NewChange = serde_json::from_value(json!({"title": "Work", "description": "d",
        "type": "normal", "category": "application", "systems": ["payments"]}))
    .unwrap();
    let at0 = "2026-01-05T08:00:00Z";
    let event = domain::request(
        &new,
        &Context {
            policy,
            actor: &requester,
            now: parse_instant("t", at0).unwrap(),
        },
    )
    .unwrap();
    let rec = |at: &str, who: &str| domain::Recorded {
        time: at.into(),
        actor: who.into(),
    };
    let mut change = Change::replay("CHG-000000", [(rec(at0, "alice"), &event)]).unwrap();
    for (at, who, action) in steps {
        let action: Action = serde_json::from_value(action).unwrap();
        let ctx = Context {
            policy,
            actor: &who,
            now: parse_instant("t", at).unwrap(),
        };
        let event = domain::decide(&change, &action, &ctx).unwrap();
        change.apply(&rec(at, &who.name), &event);
    }
    change
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
