//! What a client asks the lifecycle to do: one action with its fields, parsed at the edge
//! into typed values so the rules never see a malformed request.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::vocab::{ActionKind, Category, ChangeType, Level};

/// A new change as requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewChange {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type")]
    pub change_type: ChangeType,
    pub category: Category,
    pub systems: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    #[serde(default = "yes")]
    pub testable: bool,
}

fn yes() -> bool {
    true
}

/// An action on an existing change, tagged by `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// The first event of every change; taken by creating a change, never on an existing one.
    Request(NewChange),
    Amend(Amend),
    Evaluate(Evaluate),
    Authorize(Authorize),
    Reject(Reason),
    Defer(Defer),
    Resume(Comment),
    Plan(Plan),
    PeerReview(PeerReview),
    Test(Test),
    Accept(Comment),
    ApproveDeployment(ApproveDeployment),
    Implement(Implement),
    ReviewImplementation(ReviewImplementation),
    Communicate(Communicate),
    Close(Comment),
    Cancel(Comment),
    RollBack(Comment),
    ApproveRetroactively(Comment),
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Request(_) => ActionKind::Request,
            Action::Amend(_) => ActionKind::Amend,
            Action::Evaluate(_) => ActionKind::Evaluate,
            Action::Authorize(_) => ActionKind::Authorize,
            Action::Reject(_) => ActionKind::Reject,
            Action::Defer(_) => ActionKind::Defer,
            Action::Resume(_) => ActionKind::Resume,
            Action::Plan(_) => ActionKind::Plan,
            Action::PeerReview(_) => ActionKind::PeerReview,
            Action::Test(_) => ActionKind::Test,
            Action::Accept(_) => ActionKind::Accept,
            Action::ApproveDeployment(_) => ActionKind::ApproveDeployment,
            Action::Implement(_) => ActionKind::Implement,
            Action::ReviewImplementation(_) => ActionKind::ReviewImplementation,
            Action::Communicate(_) => ActionKind::Communicate,
            Action::Close(_) => ActionKind::Close,
            Action::Cancel(_) => ActionKind::Cancel,
            Action::RollBack(_) => ActionKind::RollBack,
            Action::ApproveRetroactively(_) => ActionKind::ApproveRetroactively,
        }
    }
}

/// An edit of the change's content. Absent fields stay as they are; a field given as
/// `null` is cleared where that is allowed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Amend {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systems: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Level>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Level>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implementation_plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_plan: Option<String>,
    /// `Some(None)` clears the rollback plan.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub rollback_plan: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<String>,
}

mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Option<String>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Evaluate {
    pub risk: Level,
    pub priority: Level,
    #[serde(default)]
    pub impact: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Authorize {
    /// The engineer who will build the change. Required from the first authorizer; later
    /// authorizers of a multi-approver step may leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Reason {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Defer {
    pub reason: String,
    pub until: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Comment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub implementation_plan: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_plan: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    Approved,
    ChangesRequested,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PeerReview {
    pub decision: ReviewDecision,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TestResult {
    Passed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Test {
    pub result: TestResult,
    #[serde(default)]
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApproveDeployment {
    /// Required from the first approver; later approvers may leave the window out or must
    /// give the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<String>,
    /// What is approved to go out: a commit id or an image digest. Once approved, only this
    /// artifact may be implemented, and the deployment gate allows only it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Implement {
    pub environment: String,
    pub artifact: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ImplementationOutcome {
    Successful,
    SuccessfulWithIssues,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReviewImplementation {
    pub outcome: ImplementationOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Communicate {
    pub release_notes: String,
}

/// Parses an RFC 3339 timestamp with an explicit offset and returns it in UTC. Naive
/// timestamps are refused: a local time labelled as nothing cannot be placed on a calendar.
pub fn parse_instant(field: &str, value: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|_| {
            format!(
                "`{field}` must be an RFC 3339 timestamp with an offset, like \
                 `2026-05-12T22:00:00Z`, not `{value}`"
            )
        })
}

/// Formats an instant as the ledger records it: RFC 3339 in UTC.
pub fn format_instant(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_from_their_wire_form() {
        let a: Action = serde_json::from_value(serde_json::json!({
            "action": "evaluate", "risk": "high", "priority": "low", "impact": "checkout down 5 min"
        }))
        .unwrap();
        assert_eq!(a.kind(), ActionKind::Evaluate);
        let a: Action = serde_json::from_value(serde_json::json!({"action": "close"})).unwrap();
        assert_eq!(a, Action::Close(Comment::default()));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_with_their_name() {
        let e = serde_json::from_value::<Action>(serde_json::json!({
            "action": "evaluate", "risk": "huge", "priority": "low"
        }))
        .unwrap_err();
        assert!(e.to_string().contains("huge"), "{e}");
        let e = serde_json::from_value::<Action>(serde_json::json!({
            "action": "test", "result": "passed", "evidance": "x"
        }))
        .unwrap_err();
        assert!(e.to_string().contains("evidance"), "{e}");
        let e =
            serde_json::from_value::<Action>(serde_json::json!({"action": "merge"})).unwrap_err();
        assert!(e.to_string().contains("merge"), "{e}");
    }

    #[test]
    fn amend_tells_a_cleared_field_from_an_absent_one() {
        let a: Amend = serde_json::from_str(r#"{"rollback_plan": null}"#).unwrap();
        assert_eq!(a.rollback_plan, Some(None));
        let a: Amend = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(a.rollback_plan, None);
        let back = serde_json::to_value(Amend {
            rollback_plan: Some(None),
            ..Amend::default()
        })
        .unwrap();
        assert_eq!(back, serde_json::json!({"rollback_plan": null}));
    }

    #[test]
    fn naive_timestamps_are_refused() {
        assert!(parse_instant("until", "2026-05-12T22:00:00").is_err());
        let t = parse_instant("until", "2026-05-12T23:00:00+01:00").unwrap();
        assert_eq!(format_instant(t), "2026-05-12T22:00:00Z");
    }
}
