//! Engagements over a reconciliation: populations per control, seeded samples, results
//! reperformed from the reconciliation's evidence, exceptions rolled up, deficiencies.

mod common;

use common::{deployment, report, reviewed, row};

use std::collections::BTreeMap;

use audit::catalog::{Catalog, Tailoring};
use audit::engagement::{csv_field, run, samples_csv, summary, Conclusion, DeficiencyKind, Plan};
use audit::sampling::SizeTable;
use audit::{AttributeResult, Report, Verdict, VerdictRow};

/// 100 commits: every tenth unauthorized, every seventh unreviewed; plus two deployments.
fn period() -> Report {
    let mut events = Vec::new();
    for i in 0..100 {
        let id = format!("{i:040x}");
        if i % 10 == 0 {
            events.push(row(&id, Verdict::Unauthorized, vec![]));
        } else {
            events.push(reviewed(&id, i % 7 != 0));
        }
    }
    events.push(deployment("run-1"));
    events.push(deployment("run-2"));
    report(events)
}

fn plan<'a>(
    catalog: &'a Catalog,
    sizes: &'a SizeTable,
    plans: &'a BTreeMap<String, audit::sampling::AttributePlan>,
    seed: u64,
) -> Plan<'a> {
    Plan {
        period: ("2026-05-01".into(), "2026-05-31".into()),
        seed,
        catalog,
        sizes,
        attribute_plans: plans,
        higher_risk: &[],
        tolerable_rate: 0.05,
        sources: vec!["git main of acme/payments".into()],
    }
}

fn control<'a>(
    e: &'a audit::engagement::Engagement,
    id: &str,
) -> &'a audit::engagement::ControlTest {
    e.controls.iter().find(|c| c.control == id).unwrap()
}

#[test]
fn populations_follow_the_attributes_that_apply() {
    let catalog = Catalog::default();
    let sizes = SizeTable::default();
    let plans = BTreeMap::new();
    let r = period();
    let e = run(&plan(&catalog, &sizes, &plans, 42), &r, &[], &[]).unwrap();

    // Every production change is in the population of the reconciliation control.
    let recon = control(&e, "CM-16");
    assert_eq!(recon.population.count, 102);
    // Peer review: commits only, unauthorized ones failing for want of a record.
    let review = control(&e, "CM-06");
    assert_eq!(review.population.count, 100);
    assert!(review
        .population
        .items
        .iter()
        .all(|i| !i.starts_with("deployment:")));
    // Deployment approval by the CAB: only deployments carry one.
    let deploy = control(&e, "CM-08");
    assert_eq!(
        deploy.population.items,
        vec!["deployment:payments/run-1", "deployment:payments/run-2"]
    );
    // No emergency in the period: the emergency control has nothing to test.
    let emergency = control(&e, "CM-18");
    assert_eq!(
        (emergency.population.count, emergency.conclusion),
        (0, Conclusion::NotTested)
    );
    // A manual control waits for manual results.
    let policy = control(&e, "CM-01");
    assert_eq!(policy.conclusion, Conclusion::NotTested);
    assert!(policy.note.as_deref().unwrap().contains("manual"));
}

#[test]
fn the_commit_population_ties_to_the_reconciliation() {
    let catalog = Catalog::default();
    let sizes = SizeTable::default();
    let plans = BTreeMap::new();
    let commits: Vec<VerdictRow> = (0..30)
        .map(|i| reviewed(&format!("{i:040x}"), true))
        .collect();
    let r = report(commits);
    let e = run(&plan(&catalog, &sizes, &plans, 1), &r, &[], &[]).unwrap();
    let recon = control(&e, "CM-16");
    assert_eq!(recon.population.count, r.population.count);
    assert_eq!(recon.population.sha256, r.population.sha256);
}

#[test]
fn exceptions_are_counted_over_the_population_and_judged_on_the_sample() {
    let catalog = Catalog::default();
    let sizes = SizeTable::default();
    let plans = BTreeMap::new();
    let e = run(&plan(&catalog, &sizes, &plans, 42), &period(), &[], &[]).unwrap();
    let review = control(&e, "CM-06");
    // 10 unauthorized; unreviewed: multiples of 7 that are not multiples of 10 (0..100).
    let unreviewed = (1..100).filter(|i| i % 7 == 0 && i % 10 != 0).count() as u64;
    assert_eq!(review.exceptions_by_code["no_change_record"], 10);
    assert_eq!(
        review.exceptions_by_code["no_independent_review"],
        unreviewed
    );
    assert_eq!(review.sample.len(), 25, "per-change, lower risk: 25");
    let failed_in_sample = review
        .sample
        .iter()
        .filter(|d| {
            review
                .results
                .iter()
                .any(|r| r.item == d.item && r.result == AttributeResult::Fail)
        })
        .count() as u64;
    assert_eq!(review.exceptions, failed_in_sample);
    assert!(
        review.exceptions > 1,
        "a 25-item sample of this population finds exceptions"
    );
    assert_eq!(review.conclusion, Conclusion::Deficient);
    let raised = e
        .deficiencies
        .iter()
        .find(|d| d.subject == "CM-06")
        .unwrap();
    assert_eq!(raised.kind, DeficiencyKind::OperatingEffectiveness);
    assert_eq!(raised.items.len() as u64, review.exceptions);
    // A control whose sample has no failure is effective.
    assert_eq!(control(&e, "CM-08").conclusion, Conclusion::Effective);
}

#[test]
fn the_same_seed_gives_the_same_workpapers_and_another_seed_other_samples() {
    let catalog = Catalog::default();
    let sizes = SizeTable::default();
    let plans = BTreeMap::new();
    let r = period();
    let a = run(&plan(&catalog, &sizes, &plans, 7), &r, &[], &[]).unwrap();
    let b = run(&plan(&catalog, &sizes, &plans, 7), &r, &[], &[]).unwrap();
    assert_eq!(samples_csv(&a), samples_csv(&b));
    assert_eq!(summary(&a), summary(&b));
    let c = run(&plan(&catalog, &sizes, &plans, 8), &r, &[], &[]).unwrap();
    assert_ne!(samples_csv(&a), samples_csv(&c));
    let csv = samples_csv(&a);
    assert!(csv.starts_with("control,item,population,seed,rank\n"));
    let cm06_rows = csv.lines().filter(|l| l.starts_with("CM-06,")).count();
    assert_eq!(cm06_rows, 25);
    assert!(csv
        .lines()
        .filter(|l| l.starts_with("CM-06,"))
        .all(|l| l.contains(",100,7,")));
}

#[test]
fn summary_lists_every_control_with_its_counts() {
    let catalog = Catalog::default();
    let sizes = SizeTable::default();
    let plans = BTreeMap::new();
    let e = run(&plan(&catalog, &sizes, &plans, 42), &period(), &[], &[]).unwrap();
    let s = summary(&e);
    let controls = s["controls"].as_array().unwrap();
    assert_eq!(controls.len(), catalog.controls.len());
    let cm16 = controls.iter().find(|c| c["id"] == "CM-16").unwrap();
    assert_eq!(cm16["population"], 102);
    assert_eq!(cm16["exceptions_by_code"]["no_change_record"], 10);
    assert!(cm16["sample"].as_u64().unwrap() > 0);
    assert!(cm16.get("exceptions").is_some());
}

#[test]
fn a_disabled_control_leaves_its_risk_as_a_design_deficiency() {
    let t = Tailoring {
        disabled: vec!["CM-18".into()],
        ..Tailoring::default()
    };
    let catalog = Catalog::default().tailored(&t).unwrap();
    let sizes = SizeTable::default();
    let plans = BTreeMap::new();
    let e = run(&plan(&catalog, &sizes, &plans, 42), &period(), &[], &[]).unwrap();
    assert_eq!(control(&e, "CM-18").conclusion, Conclusion::Disabled);
    let design: Vec<_> = e
        .deficiencies
        .iter()
        .filter(|d| d.kind == DeficiencyKind::Design)
        .collect();
    assert_eq!(design.len(), 1);
    assert_eq!(design[0].subject, "R16");
    assert!(e.deficiencies.iter().all(|d| d.id.starts_with("D-")));
}

#[test]
fn csv_cells_never_start_a_formula() {
    assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    assert_eq!(csv_field("+1"), "'+1");
    assert_eq!(csv_field("-2"), "'-2");
    assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("CHG-000001"), "CHG-000001");
}

fn manual(
    control: &str,
    item: &str,
    result: AttributeResult,
    at: &str,
) -> audit::engagement::ManualResult {
    audit::engagement::ManualResult {
        control: control.into(),
        item: item.into(),
        attribute: "performed".into(),
        result,
        method: audit::engagement::Method::Inspection,
        evidence: "minutes of the review meeting".into(),
        note: None,
        performed_at: at.into(),
        recorded_by: "olivia".into(),
    }
}

#[test]
fn manual_controls_are_tested_on_what_was_recorded_and_overdue_when_missing() {
    let catalog = Catalog::default();
    let sizes = SizeTable::default();
    let plans = BTreeMap::new();
    let mut p = plan(&catalog, &sizes, &plans, 3);
    p.period = ("2026-01-01T00:00:00Z".into(), "2026-12-31T23:59:59Z".into());
    let r = period();

    // Nothing recorded: the annual policy review is overdue, and that is an exception.
    let e = run(&p, &r, &[], &[]).unwrap();
    let policy = control(&e, "CM-01");
    assert_eq!(policy.population.count, 0);
    assert_eq!(policy.exceptions, 1);
    assert_eq!(policy.exceptions_by_code["manual_control_overdue"], 1);
    assert_eq!(policy.conclusion, Conclusion::Deficient);

    // Reviewed once in the year: effective. The quarterly access review recorded twice is
    // overdue (four due), and its failed review counts too.
    let recorded = vec![
        manual(
            "CM-01",
            "policy-2026",
            AttributeResult::Pass,
            "2026-03-10T10:00:00Z",
        ),
        manual(
            "CM-14",
            "access-q1",
            AttributeResult::Pass,
            "2026-03-31T10:00:00Z",
        ),
        manual(
            "CM-14",
            "access-q2",
            AttributeResult::Fail,
            "2026-06-30T10:00:00Z",
        ),
        // Outside the period: does not count as a performance.
        manual(
            "CM-14",
            "access-2025-q4",
            AttributeResult::Pass,
            "2025-12-31T10:00:00Z",
        ),
    ];
    let e = run(&p, &r, &[], &recorded).unwrap();
    let policy = control(&e, "CM-01");
    assert_eq!((policy.population.count, policy.exceptions), (1, 0));
    assert_eq!(policy.conclusion, Conclusion::Effective);
    assert_eq!(
        policy.results[0].method,
        audit::engagement::Method::Inspection
    );
    assert!(policy.results[0].evidence.contains("recorded by olivia"));
    let access = control(&e, "CM-14");
    assert_eq!(access.exceptions_by_code["manual_control_overdue"], 1);
    assert_eq!(access.exceptions_by_code["performed_failed"], 1);
    assert!(
        access
            .note
            .as_deref()
            .unwrap()
            .contains("4 performance(s) due"),
        "{:?}",
        access.note
    );
    assert_eq!(access.conclusion, Conclusion::Deficient);
    assert!(access
        .note
        .as_deref()
        .unwrap()
        .contains("none recorded in 2 of its parts"));
    // Every result recorded in the period is tested; the one from 2025 is not.
    assert_eq!(access.sample.len(), 2);
    assert!(access.results.iter().all(|r| r.item != "access-2025-q4"));

    // Four reviews bunched in one month leave three quarters without one.
    let bunched: Vec<_> = (0..4)
        .map(|i| {
            let at = format!("2026-08-1{i}T10:00:00Z");
            manual("CM-14", &format!("access-{i}"), AttributeResult::Pass, &at)
        })
        .collect();
    let e = run(&p, &r, &[], &bunched).unwrap();
    let access = control(&e, "CM-14");
    assert_eq!(access.exceptions_by_code["manual_control_overdue"], 1);
    assert!(access.note.as_deref().unwrap().contains("3 of its parts"));
    assert_eq!(access.conclusion, Conclusion::Deficient);
    // One in each quarter: effective.
    let spread: Vec<_> = ["02", "05", "08", "11"]
        .iter()
        .map(|m| {
            let at = format!("2026-{m}-15T10:00:00Z");
            manual("CM-14", &format!("access-{m}"), AttributeResult::Pass, &at)
        })
        .collect();
    let e = run(&p, &r, &[], &spread).unwrap();
    assert_eq!(control(&e, "CM-14").conclusion, Conclusion::Effective);
}
