//! A change as derived from its events: the fold that turns the recorded history into the
//! current state, and the content digests that approvals are bound to.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::action::{Action, ImplementationOutcome, NewChange};
use crate::vocab::{ActionKind, Category, ChangeType, Level, Role, Stage};

/// Who did something, with the roles and groups they held at that moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    pub name: String,
    pub roles: Vec<Role>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// A CI pipeline or code host rather than a person.
    #[serde(default)]
    pub machine: bool,
}

impl Actor {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Membership of an approval group: a group of the actor's, or one of their role names.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group) || self.roles.iter().any(|r| r.as_str() == group)
    }
}

/// The step of the lifecycle an approval belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStep {
    Authorization,
    PeerReview,
    Test,
    Acceptance,
    Deployment,
    Retroactive,
}

impl ApprovalStep {
    /// The stage this approval lets the change reach, when it does.
    pub fn stage(self) -> Option<Stage> {
        match self {
            ApprovalStep::Authorization => Some(Stage::Authorized),
            ApprovalStep::PeerReview => Some(Stage::PeerReviewed),
            ApprovalStep::Test => Some(Stage::Tested),
            ApprovalStep::Deployment => Some(Stage::ApprovedForDeployment),
            ApprovalStep::Acceptance | ApprovalStep::Retroactive => None,
        }
    }
}

/// One approving decision, bound to the content it approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Approval {
    pub step: ApprovalStep,
    pub by: String,
    /// The required group this approver filled, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The required groups the approver belonged to when deciding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    pub at: String,
    /// Digest of the content the approval rests on.
    pub basis: String,
}

/// An approval that stopped counting because what it rested on changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invalidation {
    pub step: ApprovalStep,
    pub approver: String,
    pub approved_at: String,
    pub reason: String,
}

/// One field's value before and after an edit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldEdit {
    pub field: String,
    pub old: serde_json::Value,
    pub new: serde_json::Value,
}

/// What one action did to a change: the request as given and the decision taken on it.
/// This is the payload of a change's ledger entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeEvent {
    pub action: Action,
    pub stage_from: Stage,
    pub stage_to: Stage,
    /// Digest of the policy that decided.
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalidated: Vec<Invalidation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edits: Vec<FieldEdit>,
    /// A failed peer review or test sent the change back for rework.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rework: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A deadline this event set, such as the approval after the fact of an emergency
    /// change implemented ahead of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
}

impl ChangeEvent {
    /// The ledger kind of this event, like `change.evaluate`.
    pub fn ledger_kind(&self) -> String {
        format!("change.{}", self.action.kind())
    }
}

/// The facts of an event that the ledger entry holds beside its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub time: String,
    pub actor: String,
}

/// The implementation plan of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanContent {
    pub implementation_plan: String,
    pub test_plan: Option<String>,
    pub rollback_plan: Option<String>,
}

/// The approved deployment window, half open: `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Window {
    pub start: String,
    pub end: String,
}

/// The production deployment of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deployment {
    pub at: String,
    pub by: String,
    pub environment: String,
    pub artifact: String,
    /// Implemented before its approvals were complete (emergency changes only).
    pub before_approval: bool,
    /// When approval after the fact is due, fixed by the policy in force at deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_due: Option<String>,
}

/// An approval together with its fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalEntry {
    #[serde(flatten)]
    pub approval: Approval,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalidated: Option<String>,
}

/// The current state of one change, derived from its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    pub id: String,
    pub title: String,
    pub description: String,
    #[serde(rename = "type")]
    pub change_type: ChangeType,
    pub category: Category,
    pub systems: Vec<String>,
    pub on_behalf_of: Option<String>,
    pub testable: bool,
    pub requester: String,
    pub created_at: String,
    pub updated_at: String,
    pub stage: Stage,
    /// Number of events; the expected version of the next action.
    pub version: u64,
    pub risk: Option<Level>,
    pub priority: Option<Level>,
    pub impact: Option<String>,
    pub assignee: Option<String>,
    pub release: Option<String>,
    pub plan: Option<PlanContent>,
    pub window: Option<Window>,
    /// The artifact the deployment approval names, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_artifact: Option<String>,
    pub deferred_until: Option<String>,
    pub reworks: u32,
    pub approvals: Vec<ApprovalEntry>,
    pub deployment: Option<Deployment>,
    pub outcome: Option<ImplementationOutcome>,
    pub rolled_back: bool,
    pub release_notes: Option<String>,
}

/// An event that cannot be the start of a change, or that does not fit the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("change `{id}` event {index}: {message}")]
pub struct FoldError {
    pub id: String,
    pub index: u64,
    pub message: String,
}

impl Change {
    /// The state after the first event, which must be a request.
    pub fn requested(id: &str, at: &Recorded, new: &NewChange) -> Change {
        Change {
            id: id.to_string(),
            title: new.title.clone(),
            description: new.description.clone(),
            change_type: new.change_type,
            category: new.category,
            systems: new.systems.clone(),
            on_behalf_of: new.on_behalf_of.clone(),
            testable: new.testable,
            requester: at.actor.clone(),
            created_at: at.time.clone(),
            updated_at: at.time.clone(),
            stage: Stage::Requested,
            version: 1,
            risk: None,
            priority: None,
            impact: None,
            assignee: None,
            release: None,
            plan: None,
            window: None,
            deferred_until: None,
            reworks: 0,
            approvals: Vec::new(),
            deployment: None,
            outcome: None,
            rolled_back: false,
            release_notes: None,
            approved_artifact: None,
        }
    }

    /// Folds a change's whole history, oldest first.
    pub fn replay<'a>(
        id: &str,
        events: impl IntoIterator<Item = (Recorded, &'a ChangeEvent)>,
    ) -> Result<Change, FoldError> {
        let mut change: Option<Change> = None;
        for (index, (at, event)) in events.into_iter().enumerate() {
            match (&mut change, &event.action) {
                (None, Action::Request(new)) => change = Some(Change::requested(id, &at, new)),
                (None, _) => {
                    return Err(FoldError {
                        id: id.to_string(),
                        index: index as u64,
                        message: "the first event of a change must be its request".into(),
                    })
                }
                (Some(_), Action::Request(_)) => {
                    return Err(FoldError {
                        id: id.to_string(),
                        index: index as u64,
                        message: "a change is requested only once".into(),
                    })
                }
                (Some(c), _) => c.apply(&at, event),
            }
        }
        change.ok_or_else(|| FoldError {
            id: id.to_string(),
            index: 0,
            message: "a change has at least one event".into(),
        })
    }

    /// Applies one decided event. Decisions are recorded with their outcome, so replay
    /// reproduces the past even after the policy changed.
    pub fn apply(&mut self, at: &Recorded, event: &ChangeEvent) {
        self.version += 1;
        self.updated_at = at.time.clone();
        self.stage = event.stage_to;
        for inv in &event.invalidated {
            for entry in self.approvals.iter_mut() {
                if entry.invalidated.is_none()
                    && entry.approval.step == inv.step
                    && entry.approval.by == inv.approver
                    && entry.approval.at == inv.approved_at
                {
                    entry.invalidated = Some(format!("{} ({})", inv.reason, at.time));
                }
            }
        }
        match &event.action {
            Action::Request(_) => {}
            Action::Amend(a) => {
                if let Some(v) = &a.title {
                    self.title = v.clone();
                }
                if let Some(v) = &a.description {
                    self.description = v.clone();
                }
                if let Some(v) = &a.systems {
                    self.systems = v.clone();
                }
                if let Some(v) = a.risk {
                    self.risk = Some(v);
                }
                if let Some(v) = a.priority {
                    self.priority = Some(v);
                }
                if let Some(v) = &a.impact {
                    self.impact = Some(v.clone());
                }
                if let Some(plan) = &mut self.plan {
                    if let Some(v) = &a.implementation_plan {
                        plan.implementation_plan = v.clone();
                    }
                    if let Some(v) = &a.test_plan {
                        plan.test_plan = Some(v.clone());
                    }
                    if let Some(v) = &a.rollback_plan {
                        plan.rollback_plan = v.clone();
                    }
                }
                if let (Some(w), Some(s)) = (&mut self.window, &a.window_start) {
                    w.start = s.clone();
                }
                if let (Some(w), Some(e)) = (&mut self.window, &a.window_end) {
                    w.end = e.clone();
                }
            }
            Action::Evaluate(e) => {
                self.risk = Some(e.risk);
                self.priority = Some(e.priority);
                self.impact = Some(e.impact.clone());
            }
            Action::Authorize(a) => {
                if a.assignee.is_some() {
                    self.assignee = a.assignee.clone();
                }
                if a.release.is_some() {
                    self.release = a.release.clone();
                }
            }
            Action::Defer(d) => self.deferred_until = Some(d.until.clone()),
            Action::Resume(_) => self.deferred_until = None,
            Action::Plan(p) => {
                if self.assignee.is_none() {
                    self.assignee = Some(at.actor.clone());
                }
                self.plan = Some(PlanContent {
                    implementation_plan: p.implementation_plan.clone(),
                    test_plan: p.test_plan.clone(),
                    rollback_plan: p.rollback_plan.clone(),
                });
            }
            Action::ApproveDeployment(d) => {
                if let (Some(start), Some(end)) = (&d.window_start, &d.window_end) {
                    self.window = Some(Window {
                        start: start.clone(),
                        end: end.clone(),
                    });
                }
                if let Some(artifact) = &d.artifact {
                    self.approved_artifact = Some(artifact.clone());
                }
            }
            Action::Implement(i) => {
                self.deployment = Some(Deployment {
                    at: at.time.clone(),
                    by: at.actor.clone(),
                    environment: i.environment.clone(),
                    artifact: i.artifact.clone(),
                    before_approval: event.stage_from != Stage::ApprovedForDeployment,
                    approval_due: event.due.clone(),
                });
            }
            Action::RollBack(_) => self.rolled_back = true,
            Action::ReviewImplementation(r) => self.outcome = Some(r.outcome),
            Action::Communicate(c) => self.release_notes = Some(c.release_notes.clone()),
            Action::Reject(_)
            | Action::PeerReview(_)
            | Action::Test(_)
            | Action::Accept(_)
            | Action::Close(_)
            | Action::Cancel(_)
            | Action::ApproveRetroactively(_) => {}
        }
        if event.rework {
            self.reworks += 1;
        }
        if let Some(approval) = &event.approval {
            self.approvals.push(ApprovalEntry {
                approval: approval.clone(),
                invalidated: None,
            });
        }
    }

    /// Approvals of a step that still count: not invalidated and resting on the content as
    /// it is now.
    pub fn valid_approvals(&self, step: ApprovalStep) -> impl Iterator<Item = &Approval> + '_ {
        let basis = self.basis(step);
        self.approvals
            .iter()
            .filter(move |e| e.invalidated.is_none() && e.approval.step == step)
            .map(|e| &e.approval)
            .filter(move |a| a.basis == basis)
    }

    /// The digest of the content an approval of this step rests on. Authorization rests on
    /// what is changed and how risky it is; review, test and acceptance also on the plan;
    /// deployment approval also on the window; approval after the fact also on the artifact
    /// that was deployed. A deployment approval is given before there is a deployment, so the
    /// deployment itself is not part of what it approved: it keeps counting afterwards.
    pub fn basis(&self, step: ApprovalStep) -> String {
        let what = serde_json::json!({
            "title": self.title,
            "description": self.description,
            "type": self.change_type,
            "category": self.category,
            "systems": self.systems,
            "on_behalf_of": self.on_behalf_of,
            "risk": self.risk,
            "priority": self.priority,
            "impact": self.impact,
        });
        let content = match step {
            ApprovalStep::Authorization => what,
            ApprovalStep::PeerReview | ApprovalStep::Test | ApprovalStep::Acceptance => {
                serde_json::json!({ "what": what, "plan": self.plan })
            }
            ApprovalStep::Deployment => {
                let mut content = serde_json::json!({
                    "what": what,
                    "plan": self.plan,
                    "window": self.window,
                });
                // Present only when named, so approvals without an artifact keep their digest.
                if let Some(artifact) = &self.approved_artifact {
                    content["artifact"] = serde_json::Value::String(artifact.clone());
                }
                content
            }
            ApprovalStep::Retroactive => serde_json::json!({
                "what": what,
                "plan": self.plan,
                "window": self.window,
                "deployment": self.deployment.as_ref().map(|d| &d.artifact),
            }),
        };
        let bytes = serde_json::to_vec(&content).unwrap_or_default();
        hex::encode(&Sha256::digest(bytes)[..16])
    }

    /// The time of the first approval after the fact, if any still counts.
    pub fn retroactive_approval(&self) -> Option<&Approval> {
        self.approvals
            .iter()
            .filter(|e| e.invalidated.is_none() && e.approval.step == ApprovalStep::Retroactive)
            .map(|e| &e.approval)
            .next()
    }

    /// Whether the ledger kind names this change's actions (for callers that filter).
    pub fn is_change_kind(kind: &str) -> bool {
        kind.strip_prefix("change.")
            .is_some_and(|k| k.parse::<ActionKind>().is_ok())
    }
}
