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

use domain::{ApprovalStep, Change};

use crate::catalog::{Catalog, Control, DesignDeficiency};
use crate::reconcile::{population_hash, AttributeResult, Report, Verdict, VerdictRow};
use crate::sampling::{
    draw_indices, sample_size, AttributePlan, Drawn, Frequency, RiskLevel, SampleSize,
    SamplingError, SizeTable,
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
    pub sizes: &'a SizeTable,
    /// Attribute-sampling plans of per-change controls, by control id.
    pub attribute_plans: &'a BTreeMap<String, AttributePlan>,
    /// Controls judged at higher risk (the upper end of a size range).
    pub higher_risk: &'a [String],
    /// The deviation rate above which a control's exceptions make it deficient, unless its
    /// attribute plan sets one.
    pub tolerable_rate: f64,
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

/// Whether a deficiency is in how a control is designed or in how it operated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeficiencyKind {
    Design,
    OperatingEffectiveness,
}

/// A deficiency raised by testing; significance and management's response are filled in
/// by people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deficiency {
    pub id: String,
    pub kind: DeficiencyKind,
    /// The control (operating) or the risk (design).
    pub subject: String,
    pub description: String,
    /// The failed sample items that raised it.
    pub items: Vec<String>,
    pub significance: Option<String>,
    pub management_response: Option<String>,
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
pub fn run(
    plan: &Plan<'_>,
    reconciliation: &Report,
    implemented: &[&Change],
    manual: &[ManualResult],
) -> Result<Engagement, SamplingError> {
    // Controls are independent: test them on the machine's cores, each thread taking the
    // next control not yet taken, and keep them in catalog order.
    let all = &plan.catalog.controls;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(all.len().max(1));
    let mut done: Vec<(usize, Result<ControlTest, SamplingError>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(control) = all.get(i) else { break };
                        mine.push((
                            i,
                            test_control(plan, control, reconciliation, implemented, manual),
                        ));
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
    for (_, tested) in done {
        controls.push(tested?);
    }
    let design_deficiencies = plan.catalog.design_deficiencies();
    let mut deficiencies: Vec<Deficiency> = design_deficiencies
        .iter()
        .map(|d| Deficiency {
            id: String::new(),
            kind: DeficiencyKind::Design,
            subject: d.risk.clone(),
            description: format!("{} {}", d.description, d.reason),
            items: Vec::new(),
            significance: None,
            management_response: None,
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
            deficiencies.push(Deficiency {
                id: String::new(),
                kind: DeficiencyKind::OperatingEffectiveness,
                subject: t.control.clone(),
                description: format!(
                    "{} of {} sampled items failed ({:.1} %, tolerable {:.1} %)",
                    t.exceptions,
                    t.sample.len(),
                    t.deviation_rate * 100.0,
                    t.tolerable_rate * 100.0
                ),
                items,
                significance: None,
                management_response: None,
            });
        }
    }
    for (i, d) in deficiencies.iter_mut().enumerate() {
        d.id = format!("D-{:03}", i + 1);
    }
    Ok(Engagement {
        period: plan.period.clone(),
        seed: plan.seed,
        controls,
        design_deficiencies,
        deficiencies,
    })
}

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
) -> Result<ControlTest, SamplingError> {
    let tolerable = plan
        .attribute_plans
        .get(&control.id)
        .map_or(plan.tolerable_rate, |p| p.tolerable);
    let risk = if plan.higher_risk.contains(&control.id) {
        RiskLevel::Higher
    } else {
        RiskLevel::Lower
    };
    let empty = |conclusion, note: &str| -> Result<ControlTest, SamplingError> {
        Ok(ControlTest {
            control: control.id.clone(),
            population: PopulationRecord {
                count: 0,
                sha256: population_hash(std::iter::empty()).sha256,
                sources: vec![],
                items: vec![],
            },
            sample_size: sample_size(control.frequency, risk, 0, plan.sizes, None)?,
            sample: vec![],
            results: vec![],
            exceptions: 0,
            exceptions_by_code: BTreeMap::new(),
            deviation_rate: 0.0,
            tolerable_rate: tolerable,
            conclusion,
            note: Some(note.to_string()),
        })
    };
    if !control.enabled {
        return empty(
            Conclusion::Disabled,
            "disabled by the organization's tailoring",
        );
    }
    // The population: every event (or implemented change) some attribute of the control
    // applies to, with its results, in reconciliation (or change id) order.
    let mut population: Vec<(String, Vec<TestResult>)> = Vec::new();
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
        let population = Population {
            items,
            exceptions_by_code,
            results_of: Box::new(move |i| row_results(control, rows[i])),
        };
        return finish(plan, control, risk, tolerable, population, None);
    } else if decided_by_lifecycle(control) {
        for change in implemented {
            let results = lifecycle_results(control, change);
            if !results.is_empty() {
                population.push((change.id.clone(), results));
            }
        }
    } else {
        return manual_control(plan, control, manual, tolerable, empty);
    }
    finish(
        plan,
        control,
        risk,
        tolerable,
        Population::eager(population),
        None,
    )
}

/// A control no automated test decides, tested on what was recorded by hand in the period.
/// Every result recorded counts (the auditor chose what to test: nothing is drawn from
/// them), and a calendar control with a part of the period in which it was not performed
/// is an exception whatever the results say.
fn manual_control(
    plan: &Plan<'_>,
    control: &Control,
    manual: &[ManualResult],
    tolerable: f64,
    empty: impl Fn(Conclusion, &str) -> Result<ControlTest, SamplingError>,
) -> Result<ControlTest, SamplingError> {
    let parse = |t: &str| domain::action::parse_instant("time", t).ok();
    let (from, to) = (parse(&plan.period.0), parse(&plan.period.1));
    let recorded: Vec<&ManualResult> = manual
        .iter()
        .filter(|m| m.control == control.id)
        .filter(|m| match (parse(&m.performed_at), from, to) {
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
    let mut items: Vec<String> = Vec::new();
    let mut results = Vec::new();
    let mut exceptions_by_code: BTreeMap<String, u64> = BTreeMap::new();
    let mut failed_items: Vec<String> = Vec::new();
    for m in &recorded {
        if !items.contains(&m.item) {
            items.push(m.item.clone());
        }
        let failed = m.result == AttributeResult::Fail;
        let code = format!("{}_failed", m.attribute);
        if failed {
            *exceptions_by_code.entry(code.clone()).or_default() += 1;
            if !failed_items.contains(&m.item) {
                failed_items.push(m.item.clone());
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
    let mut exceptions = failed_items.len() as u64;
    if overdue.is_some() {
        *exceptions_by_code
            .entry("manual_control_overdue".into())
            .or_default() += 1;
        exceptions += 1;
    }
    let hash = population_hash(items.iter().map(String::as_str));
    let sample: Vec<Drawn> = items
        .iter()
        .map(|item| Drawn {
            item: item.clone(),
            rank: String::new(),
        })
        .collect();
    let deviation_rate = failed_items.len() as f64 / sample.len().max(1) as f64;
    let conclusion = if overdue.is_some() || deviation_rate > tolerable {
        Conclusion::Deficient
    } else {
        Conclusion::Effective
    };
    Ok(ControlTest {
        control: control.id.clone(),
        population: PopulationRecord {
            count: hash.count,
            sha256: hash.sha256,
            sources: vec!["results recorded by hand (POST /api/v1/audit/results)".into()],
            items,
        },
        sample_size: SampleSize {
            size: sample.len() as u64,
            planned: sample.len() as u64,
            basis: "every result recorded by hand in the period".into(),
            whole_population: true,
        },
        sample,
        results,
        exceptions,
        exceptions_by_code,
        deviation_rate,
        tolerable_rate: tolerable,
        conclusion,
        note: overdue,
    })
}

/// A control's population: its items, the failure codes over all of them, and a way to
/// give any item's full results (worked out only for the items drawn).
struct Population<'r> {
    items: Vec<String>,
    exceptions_by_code: BTreeMap<String, u64>,
    results_of: Box<dyn Fn(usize) -> Vec<TestResult> + 'r>,
}

impl<'r> Population<'r> {
    /// A population whose results were all worked out already.
    fn eager(population: Vec<(String, Vec<TestResult>)>) -> Population<'r> {
        let mut exceptions_by_code: BTreeMap<String, u64> = BTreeMap::new();
        for (_, results) in &population {
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
        let items = population.iter().map(|(k, _)| k.clone()).collect();
        let results: Vec<Vec<TestResult>> = population.into_iter().map(|(_, r)| r).collect();
        Population {
            items,
            exceptions_by_code,
            results_of: Box::new(move |i| results[i].clone()),
        }
    }
}

/// Samples a control's population and concludes on the sample.
fn finish(
    plan: &Plan<'_>,
    control: &Control,
    risk: RiskLevel,
    tolerable: f64,
    population: Population<'_>,
    note: Option<String>,
) -> Result<ControlTest, SamplingError> {
    let Population {
        items,
        exceptions_by_code,
        results_of,
    } = population;
    let hash = population_hash(items.iter().map(String::as_str));
    let size = sample_size(
        control.frequency,
        risk,
        hash.count,
        plan.sizes,
        plan.attribute_plans.get(&control.id),
    )?;
    let drawn = draw_indices(plan.seed, &control.id, &items, size.size)?;
    let mut results = Vec::new();
    let mut exceptions = 0;
    let mut sample = Vec::with_capacity(drawn.len());
    for (i, rank) in drawn {
        let r = results_of(i);
        if r.iter().any(|x| x.result == AttributeResult::Fail) {
            exceptions += 1;
        }
        results.extend(r);
        sample.push(Drawn {
            item: items[i].clone(),
            rank: hex::encode(rank),
        });
    }
    let deviation_rate = if sample.is_empty() {
        0.0
    } else {
        exceptions as f64 / sample.len() as f64
    };
    let conclusion = if sample.is_empty() {
        Conclusion::NotTested
    } else if deviation_rate > tolerable {
        Conclusion::Deficient
    } else {
        Conclusion::Effective
    };
    Ok(ControlTest {
        control: control.id.clone(),
        population: PopulationRecord {
            count: hash.count,
            sha256: hash.sha256,
            sources: plan.sources.clone(),
            items,
        },
        sample_size: size,
        sample,
        results,
        exceptions,
        exceptions_by_code,
        deviation_rate,
        tolerable_rate: tolerable,
        conclusion,
        note,
    })
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
