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

/// The calendar units a control of this frequency is performed in (days, ISO weeks from
/// Monday, months, quarters, years, in UTC) that lie wholly inside `from..=to`, each as its
/// first and last second; the whole period when none does (a quarter of a period that
/// starts mid-quarter, a fiscal year for an annual control). `None` for a control that
/// has no calendar.
fn calendar_parts(
    frequency: Frequency,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Option<Vec<(OffsetDateTime, OffsetDateTime)>> {
    use time::{Date, Month};
    let first_of = |d: Date, months: u8| -> Date {
        let m = d.month() as u8;
        let start = (m - 1) / months * months + 1;
        Date::from_calendar_date(
            d.year(),
            Month::try_from(start).unwrap_or(Month::January),
            1,
        )
        .unwrap_or(d)
    };
    let add_months = |d: Date, months: u8| -> Date {
        let total = d.month() as i32 - 1 + i32::from(months);
        let year = d.year() + total.div_euclid(12);
        let month = Month::try_from((total.rem_euclid(12) + 1) as u8).unwrap_or(Month::January);
        Date::from_calendar_date(year, month, 1).unwrap_or(d)
    };
    // A calendar unit: so many days (a week starts on Monday), or so many months (a
    // quarter or a year starts in a month that is a multiple of it, plus one).
    let (days, months): (i64, u8) = match frequency {
        Frequency::Daily => (1, 0),
        Frequency::Weekly => (7, 0),
        Frequency::Monthly => (0, 1),
        Frequency::Quarterly => (0, 3),
        Frequency::Annual => (0, 12),
        Frequency::MultipleTimesADay | Frequency::PerChange => return None,
    };
    let start_of = |d: Date| match (days, months) {
        (7, _) => d - time::Duration::days(i64::from(d.weekday().number_days_from_monday())),
        (_, 0) => d,
        (_, n) => first_of(d, n),
    };
    let next = |d: Date| match months {
        0 => d + time::Duration::days(days),
        n => add_months(d, n),
    };
    let mut parts = Vec::new();
    let mut unit = start_of(from.date());
    while unit <= to.date() {
        let following = next(unit);
        let start = unit.midnight().assume_utc();
        let end = following.midnight().assume_utc() - time::Duration::seconds(1);
        if start >= from && end <= to {
            parts.push((start, end));
        }
        unit = following;
    }
    if parts.is_empty() {
        parts.push((from, to));
    }
    Some(parts)
}

/// Why a calendar control is overdue in the period: each calendar unit of its frequency
/// wholly inside the period (each quarter for a quarterly control) needs a performance, and
/// one over by the time the engagement is judged with none recorded is overdue.
fn overdue(control: &Control, plan: &Plan<'_>, recorded: &[&ManualResult]) -> Option<String> {
    let parse = |t: &str| domain::action::parse_instant("period", t).ok();
    let (from, to) = (parse(&plan.period.0)?, parse(&plan.period.1)?);
    let as_of = parse(&plan.as_of);
    let parts = calendar_parts(control.frequency, from, to)?;
    let performed: Vec<OffsetDateTime> = recorded
        .iter()
        .filter_map(|m| parse(&m.performed_at))
        .map(super::whole_second)
        .collect();
    let mut missing = Vec::new();
    for (start, end) in &parts {
        let done = performed.iter().any(|t| t >= start && t <= end);
        let over = as_of.is_none_or(|now| *end <= now);
        if !done && over {
            missing.push(format!(
                "{} to {}",
                domain::action::format_instant(*start),
                domain::action::format_instant(*end)
            ));
        }
    }
    (!missing.is_empty()).then(|| {
        format!(
            "{} control: {} performance(s) due in the period, none recorded in {} of its \
             parts ({})",
            control.frequency.as_str(),
            parts.len(),
            missing.len(),
            missing.join("; ")
        )
    })
}
