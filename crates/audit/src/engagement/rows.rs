//! Per-change controls the reconciliation decides: which production change events belong to
//! a control's population, and their results reperformed from the reconciliation's evidence.

use super::{item_key, Method, TestResult};
use crate::catalog::Control;
use crate::reconcile::{AttributeResult, Verdict, VerdictRow};
use crate::sampling::Frequency;

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

pub(super) fn automated_by_reconciliation(control: &Control) -> bool {
    control.frequency == Frequency::PerChange
        && control.attributes.iter().all(|a| {
            RECONCILED.contains(&a.as_str())
                || a == CHANGE_RECORD_EXISTS
                || a == PROTECTION_RESPECTED
        })
}

/// The control's attributes as they apply to one row; empty when none applies.
pub(super) fn row_results(control: &Control, row: &VerdictRow) -> Vec<TestResult> {
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
pub(super) fn row_outcome<'r>(control: &Control, row: &'r VerdictRow) -> Option<Vec<&'r str>> {
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
