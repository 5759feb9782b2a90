//! Per-change controls the change records decide, tested by inspection of each change
//! implemented in the period.

use serde::Serialize;

use domain::{ApprovalStep, Change};

use super::{Method, TestResult};
use crate::catalog::Control;
use crate::reconcile::AttributeResult;
use crate::sampling::Frequency;

/// Attributes read from an implemented change's own record.
const LIFECYCLE: [&str; 6] = [
    "post_implementation_reviewed",
    "communicated",
    "tested_or_rollback_plan",
    "customer_accepted",
    "test_plan_documented",
    "segregation_of_duties",
];

pub(super) fn decided_by_lifecycle(control: &Control) -> bool {
    control.frequency == Frequency::PerChange
        && control
            .attributes
            .iter()
            .all(|a| LIFECYCLE.contains(&a.as_str()))
}

/// The control's attributes as an implemented change's record shows them (inspection of
/// the record as it stands when the engagement runs).
pub(super) fn lifecycle_results(control: &Control, change: &Change) -> Vec<TestResult> {
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
