//! An engagement: for each control in scope over a period, its population, a seeded sample,
//! the attribute results of each sampled item with the evidence that decided them, the
//! exceptions rolled up against a tolerable deviation rate, and the deficiencies.
//!
//! Per-change controls whose attributes the reconciliation decides are tested on the
//! production change events of the period: an event belongs to a control's population when
//! one of the control's attributes applies to it (an emergency approval only to emergency
//! changes, a deployment approval only to deployments). Their results are reperformed from
//! the reconciliation's own evidence, so the same inputs always give the same workpapers.
//! Controls no automated test decides are listed with an empty population until manual
//! results are recorded for them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use domain::Change;

use crate::catalog::{Catalog, Control, DesignDeficiency};
pub use crate::deficiency::{Deficiency, DeficiencyKind};
use crate::deficiency::{DeficiencyUpdate, Folded, Retest};
use crate::reconcile::{population_hash, AttributeResult, Report, VerdictRow};
mod lifecycle;
mod manual;
mod rows;

use lifecycle::{decided_by_lifecycle, lifecycle_results};
use manual::manual_control;
use rows::{automated_by_reconciliation, row_outcome, row_results};

use crate::sampling::{
    draw_indices, sample_size, Drawn, RiskLevel, SampleSize, Sampling, SamplingError,
};

/// How an engagement is run.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// The period, as the caller states it (RFC 3339 or days), for the workpapers.
    pub period: (String, String),
    pub seed: u64,
    pub catalog: &'a Catalog,
    /// The firm's sizes, tolerable rate, higher-risk controls and attribute plans.
    pub sampling: &'a Sampling,
    /// The instant deadlines are judged at (a remediation date passed), RFC 3339.
    pub as_of: String,
    /// Where the production change events came from, in words (repository and branch, the
    /// ledger checkpoint), for the population's completeness evidence.
    pub sources: Vec<String>,
}

/// How a result was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Recomputed from the recorded events.
    Reperformance,
    /// Read from the records.
    Inspection,
    Inquiry,
    Observation,
}

/// A result an auditor (or a control owner) recorded by hand: an inquiry, an observation,
/// an inspection of a document changegate does not hold, or a manual control performed
/// (the annual policy review, a quarterly access review).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualResult {
    pub control: String,
    /// What was tested: a change id, a review's name, the period's policy document.
    pub item: String,
    pub attribute: String,
    pub result: AttributeResult,
    pub method: Method,
    /// What decided it, in words another auditor can follow.
    pub evidence: String,
    #[serde(default)]
    pub note: Option<String>,
    /// When the control was performed or the test made, RFC 3339.
    pub performed_at: String,
    /// Who recorded it (filled in from the authenticated user).
    #[serde(default)]
    pub recorded_by: String,
    /// When it was recorded, RFC 3339 (filled in by the server).
    #[serde(default)]
    pub recorded_at: String,
    /// Whether an auditor or the organization's management recorded it.
    #[serde(default)]
    pub recorded_as: RecordedAs,
}

/// Who recorded a manual result: an auditor's test, or management's record that the control
/// was performed (evidence of performance, which an auditor still has to test).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedAs {
    Auditor,
    #[default]
    Management,
}

/// Whether a manual result was performed and recorded by `as_of` (a result recorded before
/// the server noted when has only its performance to go by).
pub fn known_by(m: &ManualResult, as_of: OffsetDateTime) -> bool {
    let by = |t: &str| domain::action::parse_instant("time", t).is_ok_and(|t| t <= as_of);
    by(&m.performed_at) && (m.recorded_at.is_empty() || by(&m.recorded_at))
}

/// One attribute of one sampled item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    pub item: String,
    pub attribute: String,
    pub result: AttributeResult,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<String>,
    pub evidence: String,
    pub method: Method,
}

/// A control's population for the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopulationRecord {
    pub count: u64,
    /// SHA-256 of the item ids one per line, in population order.
    pub sha256: String,
    pub sources: Vec<String>,
    pub items: Vec<String>,
}

/// What testing concluded about a control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    /// Sample exceptions within the tolerable rate.
    Effective,
    /// Sample exceptions above the tolerable rate.
    Deficient,
    /// Nothing to test: no population, or no automated test decides the control.
    NotTested,
    /// Disabled by the organization's tailoring.
    Disabled,
}

/// One control's testing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlTest {
    pub control: String,
    pub population: PopulationRecord,
    pub sample_size: SampleSize,
    pub sample: Vec<Drawn>,
    pub results: Vec<TestResult>,
    /// Sampled items with at least one failed attribute.
    pub exceptions: u64,
    /// Reason codes over the whole population, not only the sample.
    pub exceptions_by_code: BTreeMap<String, u64>,
    pub deviation_rate: f64,
    pub tolerable_rate: f64,
    pub conclusion: Conclusion,
    pub note: Option<String>,
}

/// The engagement's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Engagement {
    pub period: (String, String),
    pub seed: u64,
    /// The draw's algorithm and version (`changegate-sample-v1`).
    #[serde(default)]
    pub algorithm: String,
    pub controls: Vec<ControlTest>,
    pub design_deficiencies: Vec<DesignDeficiency>,
    pub deficiencies: Vec<Deficiency>,
    /// What whoever ran the engagement was warned of (a population that may be incomplete,
    /// results or updates not used), for every reader of the workpapers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

/// A warning of the run, by a stable code and in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub code: String,
    pub message: String,
}

/// A bound of a period: an RFC 3339 instant (to the whole second), or a day meaning its
/// first second (`from`) or its last (`to`, `end_of_day`), in UTC. The error names
/// `field`.
pub fn period_bound(field: &str, s: &str, end_of_day: bool) -> Result<OffsetDateTime, String> {
    if let Ok(t) = domain::action::parse_instant(field, s) {
        return Ok(whole_second(t));
    }
    let day = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| {
            format!(
                "{field} must be a day like `2026-07-01` or an RFC 3339 instant with an offset, \
                 not `{s}`"
            )
        })?;
    let t = if end_of_day {
        day.with_hms(23, 59, 59)
    } else {
        day.with_hms(0, 0, 0)
    }
    .map_err(|e| format!("{field}: {e}"))?;
    Ok(t.assume_utc())
}

/// An instant without its fraction of a second.
pub fn whole_second(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Whether `t` falls in the period `from..=to`, judged to the whole second: periods that
/// follow each other (one to `2026-09-30`, the next from `2026-10-01`) leave nothing
/// between them, whatever fraction of a second an event carries.
pub fn within(t: OffsetDateTime, from: OffsetDateTime, to: OffsetDateTime) -> bool {
    let t = whole_second(t);
    t >= whole_second(from) && t <= whole_second(to)
}

/// The key of a reconciliation row as a population item: the commit id, or for a
/// deployment its system and id (one artifact may be deployed many times).
pub fn item_key(row: &VerdictRow) -> String {
    match &row.deployment {
        Some(d) => format!("deployment:{d}"),
        None => row.commit.clone(),
    }
}

/// Runs the engagement over a reconciliation of the period.
///
/// `implemented` holds the change records implemented in the period, for the controls their
/// lifecycle decides (post-implementation review, communication, testing or a rollback plan,
/// customer acceptance, a test plan, segregation of duties).
///
/// `manual` holds the results recorded by hand in the period: they are the population of a
/// control no automated test decides, and a control that operates on a calendar (annual,
/// quarterly, …) with fewer performances recorded than the period calls for is overdue.
///
/// `updates` holds what was recorded about deficiencies (significance, management's
/// response, remediation), in ledger order; those about this period's deficiencies are
/// applied, and a remediated control is retested.
pub fn run(
    plan: &Plan<'_>,
    reconciliation: &Report,
    implemented: &[&Change],
    manual: &[ManualResult],
    updates: &[DeficiencyUpdate],
) -> Result<Engagement, SamplingError> {
    let folded = crate::deficiency::fold(updates, &plan.period);
    // Controls are independent: test them on the machine's cores, each thread taking the
    // next control not yet taken, and keep them in catalog order.
    let all = &plan.catalog.controls;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(all.len().max(1));
    type Tested = Result<(ControlTest, Option<Retest>), SamplingError>;
    let mut done: Vec<(usize, Tested)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(control) = all.get(i) else { break };
                        let id = crate::deficiency::deficiency_id(
                            DeficiencyKind::OperatingEffectiveness,
                            &control.id,
                        );
                        let remediated = folded.get(&id).and_then(Folded::remediated);
                        let tested = test_control(
                            plan,
                            control,
                            reconciliation,
                            implemented,
                            manual,
                            remediated,
                        );
                        mine.push((i, tested));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| match w.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    let mut controls = Vec::with_capacity(done.len());
    let mut retests = BTreeMap::new();
    for (_, tested) in done {
        let (test, retest) = tested?;
        if let Some(r) = retest {
            retests.insert(test.control.clone(), r);
        }
        controls.push(test);
    }
    let as_of = domain::action::parse_instant("as_of", &plan.as_of).ok();
    let raise = |kind: DeficiencyKind,
                 subject: &str,
                 description: String,
                 items: Vec<String>,
                 retest: Option<Retest>| {
        let id = crate::deficiency::deficiency_id(kind, subject);
        let f = folded.get(&id);
        let status = crate::deficiency::status(kind, f, retest.as_ref(), as_of);
        let f = f.cloned().unwrap_or_default();
        Deficiency {
            id,
            kind,
            subject: subject.to_string(),
            description,
            items,
            significance: f.significance,
            rationale: f.rationale,
            management_response: f.management_response,
            owner: f.owner,
            remediation_due: f.remediation_due,
            remediated_at: f.remediated_at,
            remediation: f.remediation,
            retest,
            status,
            history: f.history,
        }
    };
    let design_deficiencies = plan.catalog.design_deficiencies();
    let mut deficiencies: Vec<Deficiency> = design_deficiencies
        .iter()
        .map(|d| {
            raise(
                DeficiencyKind::Design,
                &d.risk,
                format!("{} {}", d.description, d.reason),
                Vec::new(),
                None,
            )
        })
        .collect();
    for t in &controls {
        if t.conclusion == Conclusion::Deficient {
            let mut items: Vec<String> = t
                .results
                .iter()
                .filter(|r| r.result == AttributeResult::Fail)
                .map(|r| r.item.clone())
                .collect();
            items.dedup();
            let description = match &t.note {
                Some(overdue) if t.exceptions_by_code.contains_key(OVERDUE) => overdue.clone(),
                _ => format!(
                    "{} of {} sampled items failed ({:.1} %, tolerable {:.1} %)",
                    t.exceptions,
                    t.sample.len(),
                    t.deviation_rate * 100.0,
                    t.tolerable_rate * 100.0
                ),
            };
            deficiencies.push(raise(
                DeficiencyKind::OperatingEffectiveness,
                &t.control,
                description,
                items,
                retests.remove(&t.control),
            ));
        }
    }
    Ok(Engagement {
        period: plan.period.clone(),
        seed: plan.seed,
        algorithm: crate::sampling::ALGORITHM.into(),
        controls,
        design_deficiencies,
        deficiencies,
        warnings: Vec::new(),
    })
}

/// The updates about this engagement's period that name no deficiency it raised.
pub fn unused_updates<'u>(
    e: &Engagement,
    updates: &'u [DeficiencyUpdate],
) -> Vec<&'u DeficiencyUpdate> {
    updates
        .iter()
        .filter(|u| crate::deficiency::same_period(u, &e.period))
        .filter(|u| !e.deficiencies.iter().any(|d| d.id == u.deficiency))
        .collect()
}

/// The updates naming a deficiency this engagement raised but recorded for another period
/// that overlaps this one: not applied, and worth a word to whoever runs it.
pub fn other_period_updates<'u>(
    e: &Engagement,
    updates: &'u [DeficiencyUpdate],
) -> Vec<&'u DeficiencyUpdate> {
    let bound = |t: &str, end| period_bound("period", t, end).ok();
    let (Some(from), Some(to)) = (bound(&e.period.0, false), bound(&e.period.1, true)) else {
        return Vec::new();
    };
    updates
        .iter()
        .filter(|u| !crate::deficiency::same_period(u, &e.period))
        .filter(|u| e.deficiencies.iter().any(|d| d.id == u.deficiency))
        .filter(|u| match (bound(&u.from, false), bound(&u.to, true)) {
            (Some(a), Some(b)) => a <= to && b >= from,
            _ => false,
        })
        .collect()
}

/// The warnings about deficiency updates the engagement did not use: those for another,
/// overlapping period and those naming a deficiency it did not raise.
pub fn update_warnings(e: &Engagement, updates: &[DeficiencyUpdate]) -> Vec<Warning> {
    let mut out = Vec::new();
    for u in other_period_updates(e, updates) {
        out.push(Warning {
            code: "deficiency_update_other_period".into(),
            message: format!(
                "what {} recorded at {} about `{}` is for the period {} to {}, not this \
                 engagement's ({} to {}): not used",
                u.recorded_by, u.recorded_at, u.deficiency, u.from, u.to, e.period.0, e.period.1
            ),
        });
    }
    for u in unused_updates(e, updates) {
        out.push(Warning {
            code: "deficiency_update_not_used".into(),
            message: format!(
                "what {} recorded at {} about `{}` is not used: this engagement raised no such \
                 deficiency",
                u.recorded_by, u.recorded_at, u.deficiency
            ),
        });
    }
    out
}

/// Whether the engagement tests a control on the results recorded by hand: an enabled
/// control that neither the reconciliation nor the change records decide.
pub fn takes_manual_results(control: &Control) -> bool {
    control.enabled && !automated_by_reconciliation(control) && !decided_by_lifecycle(control)
}

/// The warnings about manual results the engagement does not use: recorded for a control
/// that does not exist, is disabled, or is decided from the records.
pub fn manual_warnings(catalog: &Catalog, manual: &[ManualResult]) -> Vec<Warning> {
    manual
        .iter()
        .filter(|m| {
            !catalog
                .control(&m.control)
                .is_some_and(takes_manual_results)
        })
        .map(|m| Warning {
            code: "manual_result_not_used".into(),
            message: format!(
                "a result recorded by {} for `{}` (item `{}`) is not used: no enabled control \
                 of that id is tested on results recorded by hand",
                m.recorded_by, m.control, m.item
            ),
        })
        .collect()
}

/// The code of a calendar control not performed in a part of the period.
const OVERDUE: &str = "manual_control_overdue";

fn test_control(
    plan: &Plan<'_>,
    control: &Control,
    reconciliation: &Report,
    implemented: &[&Change],
    manual: &[ManualResult],
    remediated: Option<OffsetDateTime>,
) -> Result<(ControlTest, Option<Retest>), SamplingError> {
    let sampling = plan.sampling;
    let tolerable = sampling
        .attribute_sampling
        .get(&control.id)
        .map_or(sampling.tolerable_rate, |p| p.tolerable);
    let risk = if sampling.higher_risk.contains(&control.id) {
        RiskLevel::Higher
    } else {
        RiskLevel::Lower
    };
    let empty = |conclusion, note: &str| -> Result<(ControlTest, Option<Retest>), SamplingError> {
        let test = ControlTest {
            control: control.id.clone(),
            population: PopulationRecord {
                count: 0,
                sha256: population_hash(std::iter::empty()).sha256,
                sources: vec![],
                items: vec![],
            },
            sample_size: sample_size(control.frequency, risk, 0, &sampling.sizes, None)?,
            sample: vec![],
            results: vec![],
            exceptions: 0,
            exceptions_by_code: BTreeMap::new(),
            deviation_rate: 0.0,
            tolerable_rate: tolerable,
            conclusion,
            note: Some(note.to_string()),
        };
        Ok((test, None))
    };
    if !control.enabled {
        return empty(
            Conclusion::Disabled,
            "disabled by the organization's tailoring",
        );
    }
    let sampled = Sampled {
        plan,
        control,
        risk,
        tolerable,
    };
    // The population: every event (or implemented change) some attribute of the control
    // applies to, with its results, in reconciliation (or change id) order.
    if automated_by_reconciliation(control) {
        // Over the whole population only whether each event belongs and its failure codes;
        // the full results, with their evidence, only for the events drawn.
        let mut items = Vec::new();
        let mut rows = Vec::new();
        let mut exceptions_by_code: BTreeMap<String, u64> = BTreeMap::new();
        for row in &reconciliation.events {
            let Some(codes) = row_outcome(control, row) else {
                continue;
            };
            for c in codes {
                *exceptions_by_code.entry(c.to_string()).or_default() += 1;
            }
            items.push(item_key(row));
            rows.push(row);
        }
        let rows = &rows;
        let population = Population {
            items,
            exceptions_by_code,
            results_of: Box::new(move |i| row_results(control, rows[i])),
            time_of: Box::new(move |i| instant(&rows[i].at)),
        };
        sampled.finish(population, remediated)
    } else if decided_by_lifecycle(control) {
        let mut population = Vec::new();
        for change in implemented {
            let results = lifecycle_results(control, change);
            if !results.is_empty() {
                let at = change.deployment.as_ref().and_then(|d| instant(&d.at));
                population.push((change.id.clone(), at, results));
            }
        }
        sampled.finish(Population::eager(population), remediated)
    } else {
        manual_control(plan, control, manual, tolerable, remediated, empty)
    }
}

fn instant(t: &str) -> Option<OffsetDateTime> {
    domain::action::parse_instant("time", t).ok()
}

fn retest_conclusion(sampled: usize, rate: f64, tolerable: f64) -> Conclusion {
    if sampled == 0 {
        Conclusion::NotTested
    } else if rate > tolerable {
        Conclusion::Deficient
    } else {
        Conclusion::Effective
    }
}

/// A control's population: its items, the failure codes over all of them, and ways to give
/// any item's full results (worked out only for the items drawn) and when it happened (only
/// for a retest).
struct Population<'r> {
    items: Vec<String>,
    exceptions_by_code: BTreeMap<String, u64>,
    results_of: Box<dyn Fn(usize) -> Vec<TestResult> + 'r>,
    time_of: Box<dyn Fn(usize) -> Option<OffsetDateTime> + 'r>,
}

impl<'r> Population<'r> {
    /// A population whose results were all worked out already.
    fn eager(population: Vec<(String, Option<OffsetDateTime>, Vec<TestResult>)>) -> Population<'r> {
        let mut exceptions_by_code: BTreeMap<String, u64> = BTreeMap::new();
        for (_, _, results) in &population {
            let mut codes: Vec<&String> = results
                .iter()
                .filter(|r| r.result == AttributeResult::Fail)
                .flat_map(|r| r.codes.iter())
                .collect();
            codes.sort();
            codes.dedup();
            for c in codes {
                *exceptions_by_code.entry(c.clone()).or_default() += 1;
            }
        }
        let items = population.iter().map(|(k, _, _)| k.clone()).collect();
        let times: Vec<Option<OffsetDateTime>> = population.iter().map(|(_, t, _)| *t).collect();
        let results: Vec<Vec<TestResult>> = population.into_iter().map(|(_, _, r)| r).collect();
        Population {
            items,
            exceptions_by_code,
            results_of: Box::new(move |i| results[i].clone()),
            time_of: Box::new(move |i| times[i]),
        }
    }
}

/// What sampling a control's population needs besides the population.
struct Sampled<'p, 'a> {
    plan: &'p Plan<'a>,
    control: &'p Control,
    risk: RiskLevel,
    tolerable: f64,
}

/// A drawn sample with its results.
struct Drawing {
    size: SampleSize,
    /// The drawn items' indices in the population.
    indices: Vec<usize>,
    sample: Vec<Drawn>,
    results: Vec<TestResult>,
    exceptions: u64,
    deviation_rate: f64,
}

impl Sampled<'_, '_> {
    /// Draws `n` of `items` (indices into the population) under the draw key `key` and
    /// tests them.
    fn draw<S: AsRef<str>>(
        &self,
        key: &str,
        items: &[S],
        index: &dyn Fn(usize) -> usize,
        population: &Population<'_>,
    ) -> Result<Drawing, SamplingError> {
        let size = sample_size(
            self.control.frequency,
            self.risk,
            items.len() as u64,
            &self.plan.sampling.sizes,
            self.plan.sampling.attribute_sampling.get(&self.control.id),
        )?;
        let drawn = draw_indices(self.plan.seed, key, items, size.size)?;
        let mut results = Vec::new();
        let mut exceptions = 0;
        let mut sample = Vec::with_capacity(drawn.len());
        let mut indices = Vec::with_capacity(drawn.len());
        for (i, rank) in drawn {
            indices.push(index(i));
            let r = (population.results_of)(index(i));
            if r.iter().any(|x| x.result == AttributeResult::Fail) {
                exceptions += 1;
            }
            results.extend(r);
            sample.push(Drawn {
                item: items[i].as_ref().to_string(),
                rank: hex::encode(rank),
            });
        }
        let deviation_rate = if sample.is_empty() {
            0.0
        } else {
            exceptions as f64 / sample.len() as f64
        };
        Ok(Drawing {
            size,
            indices,
            sample,
            results,
            exceptions,
            deviation_rate,
        })
    }

    /// What `exceptions` among `tested` items of a sample of this size say of the control:
    /// by an attribute plan, more deviations than the plan allows (unless the whole
    /// population was tested, whose rate is exact); otherwise a deviation rate above the
    /// tolerable one.
    fn judge(&self, size: &SampleSize, tested: usize, exceptions: u64) -> Conclusion {
        if tested == 0 {
            return Conclusion::NotTested;
        }
        let plan = self.plan.sampling.attribute_sampling.get(&self.control.id);
        let deficient = match plan {
            Some(plan) if !size.whole_population => {
                exceptions > crate::sampling::allowed_deviations(size.size, plan.expected)
            }
            _ => exceptions as f64 / tested as f64 > self.tolerable,
        };
        if deficient {
            Conclusion::Deficient
        } else {
            Conclusion::Effective
        }
    }

    /// A retest shows whether the remediation worked: any deviation after it fails it,
    /// unless an attribute plan expects some.
    fn judge_retest(&self, size: &SampleSize, tested: usize, exceptions: u64) -> Conclusion {
        if tested == 0 {
            return Conclusion::NotTested;
        }
        let allowed = match self.plan.sampling.attribute_sampling.get(&self.control.id) {
            Some(plan) => crate::sampling::allowed_deviations(size.size, plan.expected),
            None => 0,
        };
        if exceptions > allowed {
            Conclusion::Deficient
        } else {
            Conclusion::Effective
        }
    }

    /// Samples the population and concludes on the sample; when the control is deficient
    /// and was remediated, retests the items at or after the remediation.
    fn finish(
        &self,
        population: Population<'_>,
        remediated: Option<OffsetDateTime>,
    ) -> Result<(ControlTest, Option<Retest>), SamplingError> {
        let control = self.control;
        let all = &population.items;
        let hash = population_hash(all.iter().map(String::as_str));
        let d = self.draw(&control.id, all, &|i| i, &population)?;
        let conclusion = self.judge(&d.size, d.sample.len(), d.exceptions);
        let retest = match remediated {
            Some(at) if conclusion == Conclusion::Deficient => {
                let after: Vec<usize> = (0..all.len())
                    .filter(|&i| {
                        (population.time_of)(i).is_some_and(|t| whole_second(t) >= whole_second(at))
                    })
                    .collect();
                let items: Vec<&str> = after.iter().map(|&i| all[i].as_str()).collect();
                let hash = population_hash(items.iter().copied());
                let key = format!("{}/retest", control.id);
                let mut r = self.draw(&key, &items, &|i| after[i], &population)?;
                // Items the first sample found failing at or after the remediation are
                // deviations after it whatever the retest draws: they are tested with it.
                let mut known = Vec::new();
                for &i in &d.indices {
                    let failed = d
                        .results
                        .iter()
                        .any(|x| x.item == all[i] && x.result == AttributeResult::Fail);
                    let after = (population.time_of)(i)
                        .is_some_and(|t| whole_second(t) >= whole_second(at));
                    if failed && after && !r.indices.contains(&i) {
                        known.push(all[i].clone());
                        r.results.extend((population.results_of)(i));
                        r.exceptions += 1;
                    }
                }
                let tested = r.sample.len() + known.len();
                let deviation_rate = if tested == 0 {
                    0.0
                } else {
                    r.exceptions as f64 / tested as f64
                };
                Some(Retest {
                    from: domain::action::format_instant(at),
                    population: PopulationRecord {
                        count: hash.count,
                        sha256: hash.sha256,
                        sources: self.plan.sources.clone(),
                        items: items.iter().map(|s| s.to_string()).collect(),
                    },
                    conclusion: self.judge_retest(&r.size, tested, r.exceptions),
                    sample_size: r.size,
                    sample: r.sample,
                    known_deviations: known,
                    results: r.results,
                    exceptions: r.exceptions,
                    deviation_rate,
                })
            }
            _ => None,
        };
        let Population {
            items,
            exceptions_by_code,
            ..
        } = population;
        let test = ControlTest {
            control: control.id.clone(),
            population: PopulationRecord {
                count: hash.count,
                sha256: hash.sha256,
                sources: self.plan.sources.clone(),
                items,
            },
            sample_size: d.size,
            sample: d.sample,
            results: d.results,
            exceptions: d.exceptions,
            exceptions_by_code,
            deviation_rate: d.deviation_rate,
            tolerable_rate: self.tolerable,
            conclusion,
            note: None,
        };
        Ok((test, retest))
    }
}

/// `summary.json`: per control its id, population, sample, exceptions and exceptions by
/// code over the whole population.
pub fn summary(e: &Engagement) -> serde_json::Value {
    let controls: Vec<serde_json::Value> = e
        .controls
        .iter()
        .map(|t| {
            serde_json::json!({
                "id": t.control,
                "population": t.population.count,
                "sample": t.sample.len(),
                "exceptions": t.exceptions,
                "exceptions_by_code": t.exceptions_by_code,
                "conclusion": t.conclusion,
            })
        })
        .collect();
    serde_json::json!({
        "period": {"from": e.period.0, "to": e.period.1},
        "seed": e.seed,
        "algorithm": e.algorithm,
        "controls": controls,
        "design_deficiencies": e.design_deficiencies,
        "deficiencies": e.deficiencies.iter().map(|d| serde_json::json!({
            "id": d.id,
            "kind": d.kind,
            "subject": d.subject,
            "significance": d.significance,
            "status": d.status,
            "items": d.items.len(),
        })).collect::<Vec<_>>(),
    })
}

/// `samples.csv`: one row per sampled item (control id, item id, population size, seed,
/// rank), the same bytes for the same inputs and seed. A retest's sample follows its
/// control's under the control id the draw was keyed by (`CM-19/retest`); a manual
/// control's items have no rank: every result recorded is tested.
pub fn samples_csv(e: &Engagement) -> String {
    let mut out = String::from("control,item,population,seed,rank\n");
    let mut rows = |control: &str, population: u64, sample: &[Drawn]| {
        for d in sample {
            out.push_str(&format!(
                "{},{},{},{},{}\n",
                csv_field(control),
                csv_field(&d.item),
                population,
                e.seed,
                d.rank
            ));
        }
    };
    for t in &e.controls {
        rows(&t.control, t.population.count, &t.sample);
        let retest = e
            .deficiencies
            .iter()
            .find(|d| d.kind == DeficiencyKind::OperatingEffectiveness && d.subject == t.control)
            .and_then(|d| d.retest.as_ref());
        if let Some(r) = retest {
            let key = format!("{}/retest", t.control);
            rows(&key, r.population.count, &r.sample);
        }
    }
    out
}

/// What a CSV file meant for spreadsheets starts with (a UTF-8 byte order mark), so that a
/// spreadsheet reads its accents and scripts as UTF-8.
pub const CSV_BOM: &str = "\u{feff}";

/// A CSV text field: quoted when it holds a separator, a quote or a line break, and kept
/// from being read as a formula by a spreadsheet (an apostrophe before a leading `=`, `+`,
/// `-`, `@`, tab, carriage return or line feed). Numbers are written as they are, not
/// through this.
pub fn csv_field(s: &str) -> String {
    let guarded = if s.starts_with(['=', '+', '-', '@', '\t', '\r', '\n']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}
