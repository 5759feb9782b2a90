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

use domain::{ApprovalStep, Change};

use crate::catalog::{Catalog, Control, DesignDeficiency};
pub use crate::deficiency::{Deficiency, DeficiencyKind};
use crate::deficiency::{DeficiencyUpdate, Folded, Retest};
use crate::reconcile::{population_hash, AttributeResult, Report, Verdict, VerdictRow};
use crate::sampling::{
    draw_indices, sample_size, Drawn, Frequency, RiskLevel, SampleSize, Sampling, SamplingError,
};

/// Attributes derived from a reconciliation row as a whole rather than read from one of its
/// attributes.
const CHANGE_RECORD_EXISTS: &str = "change_record_exists";
const PROTECTION_RESPECTED: &str = "protection_respected";

/// Codes that mean branch protection was not respected.
const PROTECTION_CODES: [&str; 2] = ["protection_bypassed", "forced_push"];

/// Reconciliation attributes, by the names its rows carry.
const RECONCILED: [&str; 8] = [
    "authorized_before_work",
    "independent_review",
    "tests_passed",
    "approved_for_deployment",
    "inside_window",
    "authorized_deployer",
    "emergency_approval",
    "system_covered",
];

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
    pub controls: Vec<ControlTest>,
    pub design_deficiencies: Vec<DesignDeficiency>,
    pub deficiencies: Vec<Deficiency>,
}

/// A bound of a period: an RFC 3339 instant, or a day meaning its first second (`from`)
/// or its last (`to`, `end_of_day`), in UTC. The error names `field`.
pub fn period_bound(field: &str, s: &str, end_of_day: bool) -> Result<OffsetDateTime, String> {
    if let Ok(t) = domain::action::parse_instant(field, s) {
        return Ok(t);
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
                 retest: Option<Retest>,
                 tolerable: f64| {
        let id = crate::deficiency::deficiency_id(kind, subject);
        let f = folded.get(&id);
        let status = crate::deficiency::status(kind, f, retest.as_ref(), tolerable, as_of);
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
                plan.sampling.tolerable_rate,
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
                t.tolerable_rate,
            ));
        }
    }
    Ok(Engagement {
        period: plan.period.clone(),
        seed: plan.seed,
        controls,
        design_deficiencies,
        deficiencies,
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

/// The code of a calendar control not performed in a part of the period.
const OVERDUE: &str = "manual_control_overdue";

fn automated_by_reconciliation(control: &Control) -> bool {
    control.frequency == Frequency::PerChange
        && control.attributes.iter().all(|a| {
            RECONCILED.contains(&a.as_str())
                || a == CHANGE_RECORD_EXISTS
                || a == PROTECTION_RESPECTED
        })
}

/// Attributes read from an implemented change's own record.
const LIFECYCLE: [&str; 6] = [
    "post_implementation_reviewed",
    "communicated",
    "tested_or_rollback_plan",
    "customer_accepted",
    "test_plan_documented",
    "segregation_of_duties",
];

fn decided_by_lifecycle(control: &Control) -> bool {
    control.frequency == Frequency::PerChange
        && control
            .attributes
            .iter()
            .all(|a| LIFECYCLE.contains(&a.as_str()))
}

/// The control's attributes as an implemented change's record shows them (inspection of
/// the record as it stands when the engagement runs).
fn lifecycle_results(control: &Control, change: &Change) -> Vec<TestResult> {
    let approvals = |step: ApprovalStep| -> Vec<&domain::Approval> {
        change
            .approvals
            .iter()
            .filter(|e| e.invalidated.is_none() && e.approval.step == step)
            .map(|e| &e.approval)
            .collect()
    };
    let by = |list: &[&domain::Approval]| -> String {
        list.iter()
            .map(|a| format!("{} at {}", a.by, a.at))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    for name in &control.attributes {
        let (result, code, evidence) = match name.as_str() {
            "post_implementation_reviewed" => match &change.outcome {
                Some(outcome) => (
                    AttributeResult::Pass,
                    "",
                    format!("reviewed after implementation: {}", json_text(outcome)),
                ),
                None => (
                    AttributeResult::Fail,
                    "not_reviewed_after_implementation",
                    format!(
                        "`{}` is `{}` with no review of the implementation",
                        change.id, change.stage
                    ),
                ),
            },
            "communicated" => match &change.release_notes {
                Some(_) => (
                    AttributeResult::Pass,
                    "",
                    "release notes recorded".to_string(),
                ),
                None => (
                    AttributeResult::Fail,
                    "not_communicated",
                    format!("`{}` has no release notes", change.id),
                ),
            },
            "tested_or_rollback_plan" => {
                let tests = approvals(ApprovalStep::Test);
                let rollback = change
                    .plan
                    .as_ref()
                    .and_then(|p| p.rollback_plan.as_deref())
                    .filter(|r| !r.trim().is_empty());
                if !tests.is_empty() {
                    (AttributeResult::Pass, "", format!("tested: {}", by(&tests)))
                } else if let Some(r) = rollback {
                    (
                        AttributeResult::Pass,
                        "",
                        format!("not tested; rollback plan: {r}"),
                    )
                } else {
                    (
                        AttributeResult::Fail,
                        "untested_without_rollback_plan",
                        "no passing test and no rollback plan".to_string(),
                    )
                }
            }
            "customer_accepted" => {
                let Some(customer) = &change.on_behalf_of else {
                    continue;
                };
                let accepted = approvals(ApprovalStep::Acceptance);
                if accepted.is_empty() {
                    (
                        AttributeResult::Fail,
                        "not_accepted_by_customer",
                        format!("requested on behalf of {customer}; no acceptance recorded"),
                    )
                } else {
                    (
                        AttributeResult::Pass,
                        "",
                        format!("accepted for {customer} by {}", by(&accepted)),
                    )
                }
            }
            "test_plan_documented" => {
                if !change.testable {
                    continue;
                }
                match change.plan.as_ref().and_then(|p| p.test_plan.as_deref()) {
                    Some(t) if !t.trim().is_empty() => {
                        (AttributeResult::Pass, "", format!("test plan: {t}"))
                    }
                    _ => (
                        AttributeResult::Fail,
                        "no_test_plan",
                        "a testable change with no test plan".to_string(),
                    ),
                }
            }
            "segregation_of_duties" => sod(change),
            _ => continue,
        };
        out.push(TestResult {
            item: change.id.clone(),
            attribute: name.clone(),
            result,
            codes: if code.is_empty() {
                vec![]
            } else {
                vec![code.to_string()]
            },
            evidence,
            method: Method::Inspection,
        });
    }
    out
}

/// Reperforms segregation of duties on the record: the requester did not authorize, and
/// the engineer who built the change did not review, test or approve its deployment.
fn sod(change: &Change) -> (AttributeResult, &'static str, String) {
    let mut broken = Vec::new();
    for e in change.approvals.iter().filter(|e| e.invalidated.is_none()) {
        let a = &e.approval;
        if a.step == ApprovalStep::Authorization && a.by == change.requester {
            broken.push(format!("{} requested and authorized", a.by));
        }
        let builder_step = matches!(
            a.step,
            ApprovalStep::PeerReview | ApprovalStep::Test | ApprovalStep::Deployment
        );
        if builder_step && change.assignee.as_deref() == Some(a.by.as_str()) {
            broken.push(format!(
                "{} built the change and gave its {:?} approval",
                a.by, a.step
            ));
        }
    }
    if broken.is_empty() {
        let who: Vec<String> = change
            .approvals
            .iter()
            .filter(|e| e.invalidated.is_none())
            .map(|e| format!("{:?} by {}", e.approval.step, e.approval.by))
            .collect();
        (
            AttributeResult::Pass,
            "",
            format!(
                "requested by {}, built by {}; {}",
                change.requester,
                change.assignee.as_deref().unwrap_or("nobody assigned"),
                who.join(", ")
            ),
        )
    } else {
        (
            AttributeResult::Fail,
            "segregation_of_duties",
            broken.join("; "),
        )
    }
}

fn json_text(v: &impl Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The control's attributes as they apply to one row; empty when none applies.
fn row_results(control: &Control, row: &VerdictRow) -> Vec<TestResult> {
    let key = item_key(row);
    let mut out = Vec::new();
    for name in &control.attributes {
        let (result, codes, evidence) = match name.as_str() {
            CHANGE_RECORD_EXISTS => match &row.change {
                Some(id) => (
                    AttributeResult::Pass,
                    vec![],
                    format!(
                        "linked to `{id}` by {}",
                        row.linked_by.as_deref().unwrap_or("?")
                    ),
                ),
                None => (
                    AttributeResult::Fail,
                    row.exceptions
                        .iter()
                        .filter(|c| *c == "no_change_record" || *c == "unknown_change")
                        .cloned()
                        .collect(),
                    "no change record covers this production change".to_string(),
                ),
            },
            PROTECTION_RESPECTED if row.source != "commit" => continue,
            PROTECTION_RESPECTED => {
                let broken: Vec<String> = row
                    .exceptions
                    .iter()
                    .filter(|c| PROTECTION_CODES.contains(&c.as_str()))
                    .cloned()
                    .collect();
                if broken.is_empty() {
                    (
                        AttributeResult::Pass,
                        vec![],
                        "no bypass or forced push recorded".to_string(),
                    )
                } else {
                    let notes = row.notes.join("; ");
                    (AttributeResult::Fail, broken, notes)
                }
            }
            other => match row.attributes.iter().find(|a| a.name == other) {
                Some(a) if a.result != AttributeResult::NotApplicable => {
                    (a.result, a.codes.clone(), a.evidence.clone())
                }
                // Nothing authorized, reviewed, tested or approved a change no record
                // covers: it fails every attribute a change of its kind is tested on.
                None if row.verdict == Verdict::Unauthorized
                    && unauthorized_fails(&row.source, other) =>
                {
                    (
                        AttributeResult::Fail,
                        vec!["no_change_record".to_string()],
                        "no change record covers this production change".to_string(),
                    )
                }
                _ => continue,
            },
        };
        out.push(TestResult {
            item: key.clone(),
            attribute: name.clone(),
            result,
            codes,
            evidence,
            method: Method::Reperformance,
        });
    }
    out
}

/// Whether a row belongs to the control's population, and if so the distinct codes of its
/// failed attributes (empty when it passed): [`row_results`] without the evidence texts.
fn row_outcome<'r>(control: &Control, row: &'r VerdictRow) -> Option<Vec<&'r str>> {
    let mut applies = false;
    let mut codes: Vec<&'r str> = Vec::new();
    for name in &control.attributes {
        match name.as_str() {
            CHANGE_RECORD_EXISTS => {
                applies = true;
                if row.change.is_none() {
                    codes.extend(
                        row.exceptions
                            .iter()
                            .map(String::as_str)
                            .filter(|c| *c == "no_change_record" || *c == "unknown_change"),
                    );
                }
            }
            PROTECTION_RESPECTED if row.source != "commit" => {}
            PROTECTION_RESPECTED => {
                applies = true;
                codes.extend(
                    row.exceptions
                        .iter()
                        .map(String::as_str)
                        .filter(|c| PROTECTION_CODES.contains(c)),
                );
            }
            other => match row.attributes.iter().find(|a| a.name == other) {
                Some(a) if a.result != AttributeResult::NotApplicable => {
                    applies = true;
                    if a.result == AttributeResult::Fail {
                        codes.extend(a.codes.iter().map(String::as_str));
                    }
                }
                None if row.verdict == Verdict::Unauthorized
                    && unauthorized_fails(&row.source, other) =>
                {
                    applies = true;
                    codes.push("no_change_record");
                }
                _ => {}
            },
        }
    }
    codes.sort_unstable();
    codes.dedup();
    applies.then_some(codes)
}

/// The attributes an event of this source is always tested on, so that an unauthorized one
/// fails them rather than falling out of the population.
fn unauthorized_fails(source: &str, attribute: &str) -> bool {
    match source {
        "commit" => matches!(
            attribute,
            "authorized_before_work" | "independent_review" | "tests_passed"
        ),
        "deployment" => matches!(
            attribute,
            "approved_for_deployment" | "tests_passed" | "authorized_deployer"
        ),
        _ => false,
    }
}

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

/// A control no automated test decides, tested on what was recorded by hand in the period.
/// Every result recorded counts (the auditor chose what to test: nothing is drawn from
/// them), and a calendar control with a part of the period in which it was not performed
/// is an exception whatever the results say. Its retest after a remediation is every
/// result recorded at or after it.
fn manual_control(
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
            (Some(t), Some(from), Some(to)) => t >= from && t <= to,
            _ => false,
        })
        .collect();
    let overdue = overdue(control, &plan.period, &recorded);
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
    } else {
        Conclusion::Effective
    };
    let source = "results recorded by hand (POST /api/v1/audit/results)";
    let retest = match remediated {
        Some(at) if conclusion == Conclusion::Deficient => {
            let after: Vec<&ManualResult> = recorded
                .iter()
                .copied()
                .filter(|m| instant(&m.performed_at).is_some_and(|t| t >= at))
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
                conclusion: retest_conclusion(again.sample.len(), rate, tolerable),
                sample: again.sample,
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
        note: overdue,
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

fn retest_conclusion(sampled: usize, rate: f64, tolerable: f64) -> Conclusion {
    if sampled == 0 {
        Conclusion::NotTested
    } else if rate > tolerable {
        Conclusion::Deficient
    } else {
        Conclusion::Effective
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
                "{} (performed {}{note}; recorded by {})",
                m.evidence, m.performed_at, m.recorded_by
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
        for (i, rank) in drawn {
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
            sample,
            results,
            exceptions,
            deviation_rate,
        })
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
        let conclusion = retest_conclusion(d.sample.len(), d.deviation_rate, self.tolerable);
        let retest = match remediated {
            Some(at) if conclusion == Conclusion::Deficient => {
                let after: Vec<usize> = (0..all.len())
                    .filter(|&i| (population.time_of)(i).is_some_and(|t| t >= at))
                    .collect();
                let items: Vec<&str> = after.iter().map(|&i| all[i].as_str()).collect();
                let hash = population_hash(items.iter().copied());
                let key = format!("{}/retest", control.id);
                let r = self.draw(&key, &items, &|i| after[i], &population)?;
                Some(Retest {
                    from: domain::action::format_instant(at),
                    population: PopulationRecord {
                        count: hash.count,
                        sha256: hash.sha256,
                        sources: self.plan.sources.clone(),
                        items: items.iter().map(|s| s.to_string()).collect(),
                    },
                    sample_size: r.size,
                    conclusion: retest_conclusion(r.sample.len(), r.deviation_rate, self.tolerable),
                    sample: r.sample,
                    results: r.results,
                    exceptions: r.exceptions,
                    deviation_rate: r.deviation_rate,
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
/// parts as the frequency calls for (4 for a quarterly control over a year), and a part in
/// which no performance was recorded is overdue.
fn overdue(
    control: &Control,
    period: &(String, String),
    recorded: &[&ManualResult],
) -> Option<String> {
    let parse = |t: &str| domain::action::parse_instant("period", t).ok();
    let (from, to) = (parse(&period.0)?, parse(&period.1)?);
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
        if !done {
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
        "controls": controls,
        "design_deficiencies": e.design_deficiencies,
        "deficiencies": e.deficiencies.len(),
    })
}

/// `samples.csv`: one row per sampled item (control id, item id, population size, seed,
/// rank), the same bytes for the same inputs and seed.
pub fn samples_csv(e: &Engagement) -> String {
    let mut out = String::from("control,item,population,seed,rank\n");
    for t in &e.controls {
        for d in &t.sample {
            out.push_str(&format!(
                "{},{},{},{},{}\n",
                csv_field(&t.control),
                csv_field(&d.item),
                t.population.count,
                e.seed,
                d.rank
            ));
        }
    }
    out
}

/// A CSV field: quoted when it holds a separator, a quote or a line break, and kept from
/// being read as a formula by a spreadsheet.
pub fn csv_field(s: &str) -> String {
    let guarded = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
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
