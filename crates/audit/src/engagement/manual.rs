//! Controls no automated test decides, tested on the results recorded by hand, and the
//! calendar that makes one overdue.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::{
    instant, retest_conclusion, Conclusion, ControlTest, ManualResult, Plan, PopulationRecord,
    RecordedAs, TestResult, OVERDUE,
};
use crate::catalog::Control;
use crate::deficiency::Retest;
use crate::reconcile::{population_hash, AttributeResult};
use crate::sampling::{Drawn, Frequency, SampleSize, SamplingError};

/// A control no automated test decides, tested on what was recorded by hand in the period.
/// Every result recorded counts (the auditor chose what to test: nothing is drawn from
/// them). A pass or a fail recorded by anyone is a performance of the control; a calendar
/// control with a part of the period, over by the time it is judged, in which it was not
/// performed is an exception whatever the results say. Management's records of its own
/// performances are evidence an auditor still has to test: without a pass or fail recorded
/// by an auditor the control is not tested (unless it failed or is overdue). Its retest
/// after a remediation is every result recorded at or after it, again needing an
/// auditor's.
pub(super) fn manual_control(
    plan: &Plan<'_>,
    control: &Control,
    manual: &[ManualResult],
    tolerable: f64,
    remediated: Option<OffsetDateTime>,
    empty: impl Fn(Conclusion, &str) -> Result<(ControlTest, Option<Retest>), SamplingError>,
) -> Result<(ControlTest, Option<Retest>), SamplingError> {
    let (from, to) = (instant(&plan.period.0), instant(&plan.period.1));
    let recorded: Vec<&ManualResult> = manual
        .iter()
        .filter(|m| m.control == control.id)
        .filter(|m| match (instant(&m.performed_at), from, to) {
            (Some(t), Some(from), Some(to)) => super::within(t, from, to),
            _ => false,
        })
        .collect();
    let performances: Vec<&ManualResult> = recorded
        .iter()
        .copied()
        .filter(|m| m.result != AttributeResult::NotApplicable)
        .collect();
    let overdue = overdue(control, plan, &performances);
    let auditor_tested = |list: &[&ManualResult]| {
        list.iter().any(|m| {
            m.recorded_as == RecordedAs::Auditor && m.result != AttributeResult::NotApplicable
        })
    };
    if recorded.is_empty() && overdue.is_none() {
        return empty(
            Conclusion::NotTested,
            "no automated test decides this control; record manual results for it",
        );
    }
    let tested = manual_results(&recorded);
    let mut exceptions_by_code = tested.exceptions_by_code;
    let mut exceptions = tested.failed;
    if overdue.is_some() {
        *exceptions_by_code.entry(OVERDUE.into()).or_default() += 1;
        exceptions += 1;
    }
    let hash = population_hash(tested.items.iter().map(String::as_str));
    let deviation_rate = tested.failed as f64 / tested.sample.len().max(1) as f64;
    let conclusion = if overdue.is_some() || deviation_rate > tolerable {
        Conclusion::Deficient
    } else if !auditor_tested(&recorded) {
        Conclusion::NotTested
    } else {
        Conclusion::Effective
    };
    let note = match (&overdue, conclusion) {
        (Some(o), _) => Some(o.clone()),
        (None, Conclusion::NotTested) => Some(
            "performances recorded by management only: no auditor has recorded a test of them"
                .to_string(),
        ),
        _ => None,
    };
    let source = "results recorded by hand (POST /api/v1/audit/results)";
    let retest = match remediated {
        Some(at) if conclusion == Conclusion::Deficient => {
            let after: Vec<&ManualResult> = recorded
                .iter()
                .copied()
                .filter(|m| {
                    instant(&m.performed_at)
                        .is_some_and(|t| super::whole_second(t) >= super::whole_second(at))
                })
                .collect();
            let again = manual_results(&after);
            let hash = population_hash(again.items.iter().map(String::as_str));
            let rate = if again.sample.is_empty() {
                0.0
            } else {
                again.failed as f64 / again.sample.len() as f64
            };
            Some(Retest {
                from: domain::action::format_instant(at),
                population: PopulationRecord {
                    count: hash.count,
                    sha256: hash.sha256,
                    sources: vec![source.into()],
                    items: again.items,
                },
                sample_size: every_result(again.sample.len()),
                // Any failure after the remediation fails the retest; it passes on an
                // auditor's test only.
                conclusion: match retest_conclusion(again.sample.len(), rate, 0.0) {
                    Conclusion::Effective if !auditor_tested(&after) => Conclusion::NotTested,
                    other => other,
                },
                sample: again.sample,
                known_deviations: Vec::new(),
                results: again.results,
                exceptions: again.failed,
                deviation_rate: rate,
            })
        }
        _ => None,
    };
    let test = ControlTest {
        control: control.id.clone(),
        population: PopulationRecord {
            count: hash.count,
            sha256: hash.sha256,
            sources: vec![source.into()],
            items: tested.items,
        },
        sample_size: every_result(tested.sample.len()),
        sample: tested.sample,
        results: tested.results,
        exceptions,
        exceptions_by_code,
        deviation_rate,
        tolerable_rate: tolerable,
        conclusion,
        note,
    };
    Ok((test, retest))
}

fn every_result(n: usize) -> SampleSize {
    SampleSize {
        size: n as u64,
        planned: n as u64,
        basis: "every result recorded by hand in the period".into(),
        whole_population: true,
    }
}

/// Results recorded by hand as test results: their items (each once, in the order first
/// recorded), the items as a sample, the results and the items with a failure.
struct ManualTested {
    items: Vec<String>,
    sample: Vec<Drawn>,
    results: Vec<TestResult>,
    exceptions_by_code: BTreeMap<String, u64>,
    failed: u64,
}

fn manual_results(recorded: &[&ManualResult]) -> ManualTested {
    let mut items: Vec<String> = Vec::new();
    let mut results = Vec::new();
    let mut exceptions_by_code: BTreeMap<String, u64> = BTreeMap::new();
    let mut failed_items: Vec<&str> = Vec::new();
    for m in recorded {
        if !items.contains(&m.item) {
            items.push(m.item.clone());
        }
        let failed = m.result == AttributeResult::Fail;
        let code = format!("{}_failed", m.attribute);
        if failed {
            *exceptions_by_code.entry(code.clone()).or_default() += 1;
            if !failed_items.contains(&m.item.as_str()) {
                failed_items.push(&m.item);
            }
        }
        let note = m
            .note
            .as_ref()
            .map_or(String::new(), |n| format!("; note: {n}"));
        results.push(TestResult {
            item: m.item.clone(),
            attribute: m.attribute.clone(),
            result: m.result,
            codes: if failed { vec![code] } else { vec![] },
            evidence: format!(
                "{} (performed {}{note}; recorded by {}{})",
                m.evidence,
                m.performed_at,
                m.recorded_by,
                match m.recorded_as {
                    RecordedAs::Auditor => ", auditor",
                    RecordedAs::Management => ", management: a record of performance",
                }
            ),
            method: m.method,
        });
    }
    let sample = items
        .iter()
        .map(|item| Drawn {
            item: item.clone(),
            rank: String::new(),
        })
        .collect();
    ManualTested {
        items,
        sample,
        results,
        exceptions_by_code,
        failed: failed_items.len() as u64,
    }
}

/// How many times a calendar control must be performed in a period of so many days.
fn performances_due(frequency: Frequency, days: i64) -> Option<i64> {
    let every = match frequency {
        Frequency::Annual => 365,
        Frequency::Quarterly => 91,
        Frequency::Monthly => 30,
        Frequency::Weekly => 7,
        Frequency::Daily => 1,
        Frequency::MultipleTimesADay | Frequency::PerChange => return None,
    };
    // Whole units of the frequency in the period, at least one: a year holds 4 quarters,
    // 12 months (of 30 days), 52 weeks.
    Some((days / every).max(1))
}

/// Why a calendar control is overdue in the period: the period is cut into as many equal
/// parts as the frequency calls for (4 for a quarterly control over a year), and a part
/// over by the time the engagement is judged in which no performance was recorded is
/// overdue.
fn overdue(control: &Control, plan: &Plan<'_>, recorded: &[&ManualResult]) -> Option<String> {
    let parse = |t: &str| domain::action::parse_instant("period", t).ok();
    let (from, to) = (parse(&plan.period.0)?, parse(&plan.period.1)?);
    let as_of = parse(&plan.as_of);
    let days = ((to - from).whole_seconds() + 86_399) / 86_400;
    let due = performances_due(control.frequency, days)?;
    let span = (to - from) / due as f64;
    let performed: Vec<time::OffsetDateTime> = recorded
        .iter()
        .filter_map(|m| parse(&m.performed_at))
        .collect();
    let mut missing = Vec::new();
    for k in 0..due {
        let start = from + span * k as f64;
        let last = k + 1 == due;
        let end = if last {
            to
        } else {
            from + span * (k + 1) as f64
        };
        let done = performed
            .iter()
            .any(|t| *t >= start && (*t < end || (last && *t <= end)));
        let over = as_of.is_none_or(|now| end <= now);
        if !done && over {
            missing.push(format!(
                "{} to {}",
                domain::action::format_instant(start),
                domain::action::format_instant(end)
            ));
        }
    }
    (!missing.is_empty()).then(|| {
        format!(
            "{} control: {due} performance(s) due in the period, none recorded in {} of its \
             parts ({})",
            control.frequency.as_str(),
            missing.len(),
            missing.join("; ")
        )
    })
}
