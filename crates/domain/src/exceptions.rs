//! Control exceptions that the lifecycle itself can see: emergency changes not approved
//! after the fact within the policy window.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::action::{format_instant, parse_instant};
use crate::change::{Approval, ApprovalStep, Change};
use crate::decide::{needs_retroactive_approval, satisfies};
use crate::policy::Policy;
use crate::vocab::ActionKind;

/// Whether an exception still needs action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExceptionStatus {
    /// Nothing has been done about it yet.
    Open,
    /// The missing step happened, but too late: a recorded exception.
    Late,
}

/// A control failure on one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ControlException {
    pub change: String,
    pub code: String,
    pub status: ExceptionStatus,
    pub message: String,
    /// When the control was due.
    pub due: String,
    pub detected_at: String,
}

/// The exceptions on one change as of `now`.
pub fn exceptions(change: &Change, policy: &Policy, now: OffsetDateTime) -> Vec<ControlException> {
    let mut out = Vec::new();
    if !needs_retroactive_approval(change) {
        return out;
    }
    let Some(deployment) = &change.deployment else {
        return out;
    };
    let Ok(at) = parse_instant("deployment time", &deployment.at) else {
        return out;
    };
    let hours = policy.emergency_approval_window_hours;
    // The deadline set when the change was implemented holds, even if the policy changed
    // since; older records without one fall back to the policy in force now.
    let due = deployment
        .approval_due
        .as_deref()
        .and_then(|d| parse_instant("approval due", d).ok())
        .unwrap_or(at + Duration::hours(hours.into()));
    match completing_retroactive_approval(change, policy) {
        None if now > due => out.push(ControlException {
            change: change.id.clone(),
            code: "emergency_not_approved_in_time".into(),
            status: ExceptionStatus::Open,
            message: format!(
                "emergency change implemented at {} has no approval after the fact; it was due \
                 within {hours} hours",
                deployment.at
            ),
            due: format_instant(due),
            detected_at: format_instant(due),
        }),
        Some(approval) if parse_instant("approval time", &approval.at).is_ok_and(|t| t > due) => {
            out.push(ControlException {
                change: change.id.clone(),
                code: "emergency_approved_late".into(),
                status: ExceptionStatus::Late,
                message: format!(
                    "emergency change implemented at {} was approved after the fact at {}, \
                     past the {hours}-hour window",
                    deployment.at, approval.at
                ),
                due: format_instant(due),
                detected_at: approval.at.clone(),
            });
        }
        _ => {}
    }
    out
}

/// The approval after the fact that met the policy's requirement, if it has been met: with
/// several approvers required, the change counts as approved only from the last of them.
fn completing_retroactive_approval<'c>(
    change: &'c Change,
    policy: &Policy,
) -> Option<&'c Approval> {
    let req = policy.requirement(
        ActionKind::ApproveRetroactively,
        change.change_type,
        change.category,
        change.risk,
    );
    let approvals: Vec<&Approval> = change
        .approvals
        .iter()
        .filter(|e| e.invalidated.is_none() && e.approval.step == ApprovalStep::Retroactive)
        .map(|e| &e.approval)
        .collect();
    (1..=approvals.len())
        .find(|&n| satisfies(&req, &approvals[..n]))
        .map(|n| approvals[n - 1])
}
