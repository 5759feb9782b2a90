//! The preventive controls: given a change, an action, who asks and when, decide the event
//! to record or refuse with a reason. Every guard of the lifecycle lives here: the role
//! allowed to act, segregation of duties, required fields and evidence, stage order, the
//! deployment window and multi-approver rules.

use time::{Duration, OffsetDateTime};

use crate::action::{
    format_instant, parse_instant, Action, Amend, ApproveDeployment, Authorize, NewChange,
    ReviewDecision, TestResult,
};
use crate::change::{
    Actor, Approval, ApprovalStep, Change, ChangeEvent, FieldEdit, Invalidation, Recorded, Window,
};
use crate::policy::{ChangeModel, Policy, Requirement};
use crate::vocab::{ActionKind, ChangeType, Role, Stage};

/// Which kind of refusal: the HTTP layer maps these to 403, 409 and 422.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The actor may not do this (role, segregation of duties).
    Forbidden,
    /// Not now: stage order, missing evidence, outside the window.
    Conflict,
    /// The request itself is malformed or incomplete.
    Invalid,
}

/// A refused action: nothing is recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    /// Stable, machine-readable reason code.
    pub code: &'static str,
    pub message: String,
}

fn forbidden(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        kind: RefusalKind::Forbidden,
        code,
        message: message.into(),
    }
}

fn conflict(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        kind: RefusalKind::Conflict,
        code,
        message: message.into(),
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        kind: RefusalKind::Invalid,
        code,
        message: message.into(),
    }
}

/// Everything a decision depends on besides the change itself.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub policy: &'a Policy,
    pub actor: &'a Actor,
    pub now: OffsetDateTime,
}

impl Context<'_> {
    fn recorded(&self) -> Recorded {
        Recorded {
            time: format_instant(self.now),
            actor: self.actor.name.clone(),
        }
    }

    fn require_role(&self, action: ActionKind) -> Result<(), Refusal> {
        let allowed: Vec<Role> = self.policy.roles_for(action).collect();
        if allowed.iter().any(|r| self.actor.has_role(*r)) {
            return Ok(());
        }
        let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
        Err(forbidden(
            "role_not_allowed",
            format!(
                "`{}` may not `{action}`: it needs one of the roles {}",
                self.actor.name,
                if names.is_empty() {
                    "(none configured)".to_string()
                } else {
                    names.join(", ")
                }
            ),
        ))
    }

    fn require_person(&self, action: ActionKind) -> Result<(), Refusal> {
        if self.actor.machine {
            return Err(forbidden(
                "machine_identity_not_allowed",
                format!(
                    "machine identity `{}` may not `{action}`: a person decides",
                    self.actor.name
                ),
            ));
        }
        Ok(())
    }
}

fn non_empty(field: &str, value: &str) -> Result<(), Refusal> {
    if value.trim().is_empty() {
        return Err(invalid(
            "missing_field",
            format!("`{field}` must not be empty"),
        ));
    }
    Ok(())
}

fn instant(field: &str, value: &str) -> Result<OffsetDateTime, Refusal> {
    parse_instant(field, value).map_err(|m| invalid("invalid_field", m))
}

fn check_title(title: &str) -> Result<(), Refusal> {
    non_empty("title", title)?;
    check_text("title", title)?;
    if title.chars().count() > 200 {
        return Err(invalid(
            "invalid_field",
            "`title` must be at most 200 characters",
        ));
    }
    Ok(())
}

fn check_systems(systems: &[String]) -> Result<(), Refusal> {
    if systems.is_empty() {
        return Err(invalid(
            "missing_field",
            "`systems` must name at least one system",
        ));
    }
    if systems.iter().any(|s| s.trim().is_empty()) {
        return Err(invalid(
            "invalid_field",
            "`systems` must not contain an empty name",
        ));
    }
    if systems.len() > 100 {
        return Err(invalid(
            "invalid_field",
            "`systems` may name at most 100 systems",
        ));
    }
    for s in systems {
        check_text("systems", s)?;
        if s.chars().count() > 200 {
            return Err(invalid(
                "invalid_field",
                "a system name is at most 200 characters",
            ));
        }
    }
    Ok(())
}

/// An artifact is a commit id, an image digest or a release name: one token of printable
/// characters.
fn check_artifact(artifact: &str) -> Result<(), Refusal> {
    let a = artifact.trim();
    if a.is_empty() || a.len() > 200 || a.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "invalid_field",
            "`artifact` must be a commit id or an image digest: 1 to 200 characters, no spaces",
        ));
    }
    Ok(())
}

/// Refuses control characters and text that is nothing but invisible characters, which
/// would make a record unreadable or spoof another one in a listing.
fn check_text(field: &str, value: &str) -> Result<(), Refusal> {
    if value.chars().any(char::is_control) {
        return Err(invalid(
            "invalid_field",
            format!("`{field}` must not contain control characters"),
        ));
    }
    let visible = value.chars().any(|c| {
        !c.is_whitespace() && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}')
    });
    if !visible {
        return Err(invalid(
            "invalid_field",
            format!("`{field}` must have visible text"),
        ));
    }
    Ok(())
}

/// Decides the first event of a new change.
pub fn request(new: &NewChange, ctx: &Context<'_>) -> Result<ChangeEvent, Refusal> {
    ctx.require_role(ActionKind::Request)?;
    check_title(&new.title)?;
    check_systems(&new.systems)?;
    if let Some(customer) = &new.on_behalf_of {
        non_empty("on_behalf_of", customer)?;
        check_text("on_behalf_of", customer)?;
        // Acceptance is by membership of the group named like the customer; a role name
        // would let anyone holding that role speak for the customer.
        if customer.parse::<Role>().is_ok() {
            return Err(invalid(
                "invalid_field",
                format!("`on_behalf_of` names a customer, not the role `{customer}`"),
            ));
        }
    }
    Ok(ChangeEvent {
        action: Action::Request(new.clone()),
        stage_from: Stage::Requested,
        stage_to: Stage::Requested,
        policy: ctx.policy.digest(),
        approval: None,
        invalidated: Vec::new(),
        edits: Vec::new(),
        rework: false,
        note: None,
        due: None,
    })
}

/// Decides an action on an existing change: the event to record, or why not.
pub fn decide(change: &Change, action: &Action, ctx: &Context<'_>) -> Result<ChangeEvent, Refusal> {
    let kind = action.kind();
    if let Action::Request(_) = action {
        return Err(invalid(
            "invalid_action",
            "a change is requested by creating it",
        ));
    }
    if change.stage.is_terminal() {
        return Err(conflict(
            "change_closed",
            format!(
                "`{}` is `{}`: no action leads out of it",
                change.id, change.stage
            ),
        ));
    }
    // The history of a change reads in time order: an approval dated before the request, or
    // a deployment before the approval it rests on, would make the record say what did not
    // happen.
    if instant("updated_at", &change.updated_at).is_ok_and(|last| ctx.now < last) {
        return Err(conflict(
            "time_before_last_event",
            format!(
                "`{}` was last changed at {}; an action at {} would precede it",
                change.id,
                change.updated_at,
                format_instant(ctx.now)
            ),
        ));
    }
    ctx.require_role(kind)?;
    let model = ctx
        .policy
        .model(change.change_type, change.category, change.testable);
    let mut event = ChangeEvent {
        action: action.clone(),
        stage_from: change.stage,
        stage_to: change.stage,
        policy: ctx.policy.digest(),
        approval: None,
        invalidated: Vec::new(),
        edits: Vec::new(),
        rework: false,
        note: None,
        due: None,
    };
    match action {
        Action::Request(_) => unreachable_request(),
        Action::Amend(a) => amend(change, a, &model, ctx, &mut event)?,
        Action::Evaluate(e) => {
            expect_stage(change, &model, Stage::Evaluated, kind)?;
            let _ = e;
            event.stage_to = Stage::Evaluated;
        }
        Action::Authorize(a) => authorize(change, a, &model, ctx, &mut event)?,
        Action::Reject(r) => {
            non_empty("reason", &r.reason)?;
            if !change.stage.is_before_implementation() {
                return Err(stage_refusal(change, kind, "before implementation"));
            }
            event.stage_to = Stage::Rejected;
        }
        Action::Defer(d) => {
            non_empty("reason", &d.reason)?;
            let until = instant("until", &d.until)?;
            if until <= ctx.now {
                return Err(invalid("invalid_field", "`until` must be in the future"));
            }
            event.action = Action::Defer(crate::action::Defer {
                reason: d.reason.clone(),
                until: format_instant(until),
            });
            if !matches!(
                change.stage,
                Stage::Requested | Stage::Evaluated | Stage::Authorized
            ) {
                return Err(stage_refusal(
                    change,
                    kind,
                    "requested, evaluated or authorized",
                ));
            }
            event.stage_to = Stage::Deferred;
        }
        Action::Resume(_) => {
            if change.stage != Stage::Deferred {
                return Err(stage_refusal(change, kind, "deferred"));
            }
            event.stage_to = Stage::Requested;
            event.invalidated = invalidate_all(change, "deferred and returned to the queue");
            if let Some(until) = &change.deferred_until {
                if instant("until", until).is_ok_and(|u| u > ctx.now) {
                    event.note = Some(format!("resumed before the deferral date {until}"));
                }
            }
        }
        Action::Plan(p) => {
            expect_stage(change, &model, Stage::Planned, kind)?;
            if let Some(assignee) = &change.assignee {
                if assignee != &ctx.actor.name {
                    return Err(forbidden(
                        "not_assignee",
                        format!("`{}` is assigned to `{assignee}`, who plans it", change.id),
                    ));
                }
            }
            non_empty("implementation_plan", &p.implementation_plan)?;
            if model.includes(Stage::Tested) && p.test_plan.as_deref().is_none_or(blank) {
                return Err(conflict(
                    "test_plan_required",
                    "a testable change needs a `test_plan`",
                ));
            }
            if rollback_required(change, ctx.policy) && p.rollback_plan.as_deref().is_none_or(blank)
            {
                return Err(conflict(
                    "rollback_plan_required",
                    "a change that cannot be tested needs a `rollback_plan`",
                ));
            }
            event.stage_to = Stage::Planned;
        }
        Action::PeerReview(r) => {
            expect_stage(change, &model, Stage::PeerReviewed, kind)?;
            ctx.require_person(kind)?;
            independent_of_author(change, ctx, "sod_author_reviewer", "peer review")?;
            match r.decision {
                ReviewDecision::Approved => {
                    event.approval = Some(approval(change, ApprovalStep::PeerReview, ctx, None));
                    event.stage_to = Stage::PeerReviewed;
                }
                ReviewDecision::ChangesRequested => {
                    non_empty("comment", &r.comment)?;
                    event.rework = true;
                    event.stage_to = Stage::Planned;
                }
            }
        }
        Action::Test(t) => {
            expect_stage(change, &model, Stage::Tested, kind)?;
            ctx.require_person(kind)?;
            independent_of_author(change, ctx, "sod_author_tester", "test")?;
            match t.result {
                TestResult::Passed => {
                    if blank(&t.evidence) {
                        return Err(conflict(
                            "missing_evidence",
                            "a passed test needs its `evidence` (a test run, report or link)",
                        ));
                    }
                    event.approval = Some(approval(change, ApprovalStep::Test, ctx, None));
                    event.stage_to = Stage::Tested;
                }
                TestResult::Failed => {
                    event.rework = true;
                    event.stage_to = Stage::Planned;
                }
            }
        }
        Action::Accept(_) => {
            ctx.require_person(kind)?;
            let Some(customer) = &change.on_behalf_of else {
                return Err(conflict(
                    "not_on_behalf_of_customer",
                    format!("`{}` was not requested on behalf of a customer", change.id),
                ));
            };
            if !matches!(
                change.stage,
                Stage::Planned | Stage::PeerReviewed | Stage::Tested
            ) {
                return Err(stage_refusal(
                    change,
                    kind,
                    "planned, peer_reviewed or tested",
                ));
            }
            if !ctx.actor.in_group(customer) {
                return Err(forbidden(
                    "not_customer",
                    format!(
                        "`{}` does not speak for customer `{customer}`",
                        ctx.actor.name
                    ),
                ));
            }
            independent_of_author(change, ctx, "sod_author_acceptor", "accept")?;
            if change
                .valid_approvals(ApprovalStep::Acceptance)
                .next()
                .is_some()
            {
                return Err(conflict(
                    "already_approved",
                    "the customer already accepted this content",
                ));
            }
            event.approval = Some(approval(change, ApprovalStep::Acceptance, ctx, None));
        }
        Action::ApproveDeployment(a) => approve_deployment(change, a, &model, ctx, &mut event)?,
        Action::Implement(i) => {
            non_empty("environment", &i.environment)?;
            non_empty("artifact", &i.artifact)?;
            check_artifact(&i.artifact)?;
            let emergency = change.change_type == ChangeType::Emergency;
            if change.stage == Stage::ApprovedForDeployment {
                let satisfied = requirement_met(change, ctx.policy, ActionKind::ApproveDeployment);
                let window = change.window.as_ref().ok_or_else(|| {
                    conflict(
                        "approval_missing",
                        "the deployment approval carries no window",
                    )
                })?;
                if !satisfied {
                    return Err(conflict(
                        "approval_missing",
                        "the deployment approvals no longer cover the current content",
                    ));
                }
                if let Some(approved) = &change.approved_artifact {
                    if !approved.eq_ignore_ascii_case(i.artifact.trim()) {
                        return Err(conflict(
                            "artifact_not_approved",
                            format!(
                                "`{}` is approved to deploy `{approved}`, not `{}`",
                                change.id, i.artifact
                            ),
                        ));
                    }
                }
                let start = instant("window_start", &window.start)?;
                let end = instant("window_end", &window.end)?;
                // An approved window binds emergency changes too: one that must go out at
                // another time moves its window, which asks for approval again.
                if !(start..end).contains(&ctx.now) {
                    return Err(conflict(
                        "outside_window",
                        format!(
                            "`{}` may be implemented from {} until {}, not at {}",
                            change.id,
                            window.start,
                            window.end,
                            format_instant(ctx.now)
                        ),
                    ));
                }
            } else if emergency
                && change.stage.is_before_implementation()
                && change.stage != Stage::Deferred
            {
                let due =
                    ctx.now + Duration::hours(ctx.policy.emergency_approval_window_hours.into());
                event.note = Some(format!(
                    "emergency change implemented before approval; approval after the fact is due \
                     by {}",
                    format_instant(due)
                ));
                event.due = Some(format_instant(due));
            } else {
                return Err(stage_refusal(change, kind, "approved_for_deployment"));
            }
            event.stage_to = Stage::Implemented;
        }
        Action::ReviewImplementation(_) => {
            ctx.require_person(kind)?;
            if !matches!(change.stage, Stage::Implemented | Stage::RolledBack) {
                return Err(stage_refusal(change, kind, "implemented or rolled_back"));
            }
            event.stage_to = Stage::Reviewed;
        }
        Action::Communicate(c) => {
            non_empty("release_notes", &c.release_notes)?;
            expect_stage(change, &model, Stage::Communicated, kind)?;
            event.stage_to = Stage::Communicated;
        }
        Action::Close(_) => {
            expect_stage(change, &model, Stage::Closed, kind)?;
            if needs_retroactive_approval(change)
                && !requirement_met(change, ctx.policy, ActionKind::ApproveRetroactively)
            {
                return Err(conflict(
                    "retroactive_approval_required",
                    format!(
                        "emergency change `{}` must be approved after the fact before it closes",
                        change.id
                    ),
                ));
            }
            event.stage_to = Stage::Closed;
        }
        Action::Cancel(_) => {
            if !change.stage.is_before_implementation() {
                return Err(stage_refusal(change, kind, "before implementation"));
            }
            owner_or_manager(change, ctx, kind)?;
            event.stage_to = Stage::Cancelled;
        }
        Action::RollBack(_) => {
            if change.stage != Stage::Implemented {
                return Err(stage_refusal(change, kind, "implemented"));
            }
            event.stage_to = Stage::RolledBack;
        }
        Action::ApproveRetroactively(_) => {
            ctx.require_person(kind)?;
            if change.change_type != ChangeType::Emergency {
                return Err(conflict(
                    "not_emergency",
                    format!("`{}` is not an emergency change", change.id),
                ));
            }
            if !needs_retroactive_approval(change) {
                return Err(conflict(
                    "retroactive_approval_not_needed",
                    format!("`{}` was not implemented ahead of its approval", change.id),
                ));
            }
            let deployer = change.deployment.as_ref().map(|d| d.by.as_str());
            for (who, what) in [
                (Some(change.requester.as_str()), "requested"),
                (change.assignee.as_deref(), "built"),
                (deployer, "deployed"),
            ] {
                if who == Some(ctx.actor.name.as_str()) {
                    return Err(forbidden(
                        "sod_retroactive_approver",
                        format!(
                            "`{}` {what} `{}` and may not approve it after the fact",
                            ctx.actor.name, change.id
                        ),
                    ));
                }
            }
            let (approval, _) = group_approval(
                change,
                ApprovalStep::Retroactive,
                ActionKind::ApproveRetroactively,
                ctx,
                change.basis(ApprovalStep::Retroactive),
            )?;
            if let Some(deployment) = &change.deployment {
                let at = instant("deployment time", &deployment.at)?;
                let hours = ctx.policy.emergency_approval_window_hours;
                if ctx.now > at + Duration::hours(hours.into()) {
                    event.note = Some(format!(
                        "approved {} hours after implementation, past the {hours}-hour window",
                        (ctx.now - at).whole_hours()
                    ));
                }
            }
            event.approval = Some(approval);
        }
    }
    Ok(event)
}

fn unreachable_request() -> ! {
    // `decide` returns early for `Action::Request`; reaching this is a defect.
    panic!("request actions are decided by `request`")
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn rollback_required(change: &Change, policy: &Policy) -> bool {
    !change.testable || policy.rollback_plan_always
}

/// An emergency change deployed ahead of its approvals must be approved after the fact.
pub fn needs_retroactive_approval(change: &Change) -> bool {
    change.change_type == ChangeType::Emergency
        && change
            .deployment
            .as_ref()
            .is_some_and(|d| d.before_approval)
}

fn stage_refusal(change: &Change, action: ActionKind, needed: &str) -> Refusal {
    conflict(
        "stage_order",
        format!(
            "`{action}` needs `{}` to be {needed}, it is `{}`",
            change.id, change.stage
        ),
    )
}

fn expect_stage(
    change: &Change,
    model: &ChangeModel,
    target: Stage,
    action: ActionKind,
) -> Result<(), Refusal> {
    let Some(needed) = model.predecessor(target) else {
        return Err(conflict(
            "stage_not_in_model",
            format!(
                "the change model of `{}` ({} {}) has no `{target}` stage",
                change.id, change.change_type, change.category
            ),
        ));
    };
    if change.stage != needed {
        return Err(stage_refusal(change, action, &format!("`{needed}`")));
    }
    Ok(())
}

fn independent_of_author(
    change: &Change,
    ctx: &Context<'_>,
    code: &'static str,
    what: &str,
) -> Result<(), Refusal> {
    if change.assignee.as_deref() == Some(ctx.actor.name.as_str()) {
        return Err(forbidden(
            code,
            format!(
                "`{}` built `{}` and may not {what} it",
                ctx.actor.name, change.id
            ),
        ));
    }
    Ok(())
}

fn owner_or_manager(change: &Change, ctx: &Context<'_>, action: ActionKind) -> Result<(), Refusal> {
    let owner = change.requester == ctx.actor.name
        || change.assignee.as_deref() == Some(ctx.actor.name.as_str());
    if owner || ctx.actor.has_role(Role::ChangeManager) {
        return Ok(());
    }
    Err(forbidden(
        "not_owner",
        format!(
            "only the requester, the assignee or a change manager may `{action}` `{}`",
            change.id
        ),
    ))
}

fn approval(
    change: &Change,
    step: ApprovalStep,
    ctx: &Context<'_>,
    slot: Option<String>,
) -> Approval {
    Approval {
        step,
        by: ctx.actor.name.clone(),
        slot,
        groups: Vec::new(),
        at: format_instant(ctx.now),
        basis: change.basis(step),
    }
}

/// Whether the valid approvals of a multi-approver step meet the policy's requirement.
pub fn requirement_met(change: &Change, policy: &Policy, action: ActionKind) -> bool {
    let step = match action {
        ActionKind::Authorize => ApprovalStep::Authorization,
        ActionKind::ApproveDeployment => ApprovalStep::Deployment,
        ActionKind::ApproveRetroactively => ApprovalStep::Retroactive,
        _ => return false,
    };
    let req = policy.requirement(action, change.change_type, change.category, change.risk);
    let valid: Vec<&Approval> = if step == ApprovalStep::Retroactive {
        change
            .approvals
            .iter()
            .filter(|e| e.invalidated.is_none() && e.approval.step == step)
            .map(|e| &e.approval)
            .collect()
    } else {
        change.valid_approvals(step).collect()
    };
    satisfies(&req, &valid)
}

/// Whether these approvals meet a requirement: enough of them, and every group slot filled.
pub(crate) fn satisfies(req: &Requirement, approvals: &[&Approval]) -> bool {
    approvals.len() as u32 >= req.count && coverage(&req.groups, approvals) == req.groups.len()
}

/// The required groups an approval can stand for: the groups its approver belonged to when
/// deciding (older records name only the slot they filled).
fn eligible_groups(a: &Approval) -> Vec<&str> {
    if a.groups.is_empty() {
        a.slot.iter().map(String::as_str).collect()
    } else {
        a.groups.iter().map(String::as_str).collect()
    }
}

/// How many of the required groups distinct approvers can fill at once: a maximum
/// bipartite matching of groups to approvals, so that an approver who belongs to two
/// groups never blocks a later approver who belongs to only one of them.
fn coverage(groups: &[String], approvals: &[&Approval]) -> usize {
    fn augment(
        g: usize,
        groups: &[String],
        approvals: &[&Approval],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for (i, a) in approvals.iter().enumerate() {
            if seen[i] || !eligible_groups(a).contains(&groups[g].as_str()) {
                continue;
            }
            seen[i] = true;
            if owner[i].is_none_or(|other| augment(other, groups, approvals, seen, owner)) {
                owner[i] = Some(g);
                return true;
            }
        }
        false
    }
    let mut owner: Vec<Option<usize>> = vec![None; approvals.len()];
    (0..groups.len())
        .filter(|g| {
            let mut seen = vec![false; approvals.len()];
            augment(*g, groups, approvals, &mut seen, &mut owner)
        })
        .count()
}

/// Adds one approver to a multi-approver step. Returns the approval and whether the
/// requirement is met with it. An approver who adds no group coverage takes one of the
/// places not reserved for groups, and is refused when none is left.
fn group_approval(
    change: &Change,
    step: ApprovalStep,
    action: ActionKind,
    ctx: &Context<'_>,
    basis: String,
) -> Result<(Approval, bool), Refusal> {
    let req = ctx
        .policy
        .requirement(action, change.change_type, change.category, change.risk);
    let valid: Vec<&Approval> = change
        .approvals
        .iter()
        .filter(|e| e.invalidated.is_none() && e.approval.step == step && e.approval.basis == basis)
        .map(|e| &e.approval)
        .collect();
    if valid.iter().any(|a| a.by == ctx.actor.name) {
        return Err(conflict(
            "already_approved",
            format!(
                "`{}` already approved this step of `{}`",
                ctx.actor.name, change.id
            ),
        ));
    }
    let groups: Vec<String> = req
        .groups
        .iter()
        .filter(|g| ctx.actor.in_group(g))
        .cloned()
        .collect();
    let mut approval = Approval {
        step,
        by: ctx.actor.name.clone(),
        slot: None,
        groups,
        at: format_instant(ctx.now),
        basis,
    };
    let before = coverage(&req.groups, &valid);
    let mut with = valid.clone();
    with.push(&approval);
    let after = coverage(&req.groups, &with);
    let free_places = (req.count as usize).saturating_sub(req.groups.len());
    let free_used = valid.len() - before;
    if after == before && before < req.groups.len() && free_used >= free_places {
        // The groups still open: those whose member would raise the coverage.
        let open: Vec<String> = req
            .groups
            .iter()
            .filter(|g| {
                let probe = Approval {
                    groups: vec![(*g).clone()],
                    ..approval.clone()
                };
                let mut with = valid.clone();
                with.push(&probe);
                coverage(&req.groups, &with) > before
            })
            .map(|g| format!("`{g}`"))
            .collect();
        let open = if open.is_empty() {
            "the required groups".to_string()
        } else {
            open.join(", ")
        };
        return Err(forbidden(
            "not_in_required_group",
            format!(
                "`{}` still needs an approver from {open}; `{}` cannot fill it",
                change.id, ctx.actor.name
            ),
        ));
    }
    let met = with.len() >= req.count as usize && after == req.groups.len();
    // The slot shown is the first group this approver can fill that no earlier approver
    // covers; the requirement itself is judged by the matching above.
    approval.slot = approval
        .groups
        .iter()
        .find(|g| {
            !valid
                .iter()
                .any(|a| eligible_groups(a).contains(&g.as_str()))
        })
        .or(approval.groups.first())
        .cloned();
    Ok((approval, met))
}

fn authorize(
    change: &Change,
    a: &Authorize,
    model: &ChangeModel,
    ctx: &Context<'_>,
    event: &mut ChangeEvent,
) -> Result<(), Refusal> {
    expect_stage(change, model, Stage::Authorized, ActionKind::Authorize)?;
    ctx.require_person(ActionKind::Authorize)?;
    if change.requester == ctx.actor.name {
        return Err(forbidden(
            "sod_requester_authorizer",
            format!(
                "`{}` requested `{}` and may not authorize it",
                ctx.actor.name, change.id
            ),
        ));
    }
    match (&a.assignee, &change.assignee) {
        (None, None) => {
            return Err(invalid(
                "missing_field",
                "`assignee` names the engineer who builds the change",
            ))
        }
        // A new round of authorization (after a deferral, or after the earlier
        // authorization was invalidated) may name another engineer; within a round the
        // assignee is the one the first authorizer named.
        (Some(given), Some(existing))
            if given != existing
                && change
                    .valid_approvals(ApprovalStep::Authorization)
                    .next()
                    .is_some() =>
        {
            return Err(conflict(
                "assignee_conflict",
                format!("`{}` is already assigned to `{existing}`", change.id),
            ))
        }
        (Some(given), _) => non_empty("assignee", given)?,
        _ => {}
    }
    let (approval, met) = group_approval(
        change,
        ApprovalStep::Authorization,
        ActionKind::Authorize,
        ctx,
        change.basis(ApprovalStep::Authorization),
    )?;
    event.approval = Some(approval);
    if met {
        event.stage_to = Stage::Authorized;
    }
    Ok(())
}

fn approve_deployment(
    change: &Change,
    a: &ApproveDeployment,
    model: &ChangeModel,
    ctx: &Context<'_>,
    event: &mut ChangeEvent,
) -> Result<(), Refusal> {
    expect_stage(
        change,
        model,
        Stage::ApprovedForDeployment,
        ActionKind::ApproveDeployment,
    )?;
    ctx.require_person(ActionKind::ApproveDeployment)?;
    independent_of_author(
        change,
        ctx,
        "sod_author_deployment_approver",
        "approve the deployment of",
    )?;
    if ctx.policy.customer_acceptance
        && change.on_behalf_of.is_some()
        && change
            .valid_approvals(ApprovalStep::Acceptance)
            .next()
            .is_none()
    {
        return Err(conflict(
            "customer_acceptance_required",
            format!(
                "`{}` was requested on behalf of `{}`, whose acceptance must precede \
                 deployment approval",
                change.id,
                change.on_behalf_of.as_deref().unwrap_or_default()
            ),
        ));
    }
    let window = match (&a.window_start, &a.window_end) {
        (Some(s), Some(e)) => {
            let start = instant("window_start", s)?;
            let end = instant("window_end", e)?;
            if end <= start {
                return Err(invalid(
                    "invalid_field",
                    "`window_end` must be after `window_start`",
                ));
            }
            if end <= ctx.now {
                return Err(invalid(
                    "invalid_field",
                    "the window must not end in the past",
                ));
            }
            Some(Window {
                start: format_instant(start),
                end: format_instant(end),
            })
        }
        (None, None) => None,
        _ => {
            return Err(invalid(
                "missing_field",
                "`window_start` and `window_end` are given together",
            ))
        }
    };
    let artifact = match &a.artifact {
        Some(artifact) => {
            check_artifact(artifact)?;
            Some(artifact.trim().to_string())
        }
        None => None,
    };
    let mut next = change.clone();
    if let Some(artifact) = &artifact {
        if change.approved_artifact.as_ref() != Some(artifact) {
            next.approved_artifact = Some(artifact.clone());
            if let Some(old) = &change.approved_artifact {
                event.edits.push(FieldEdit {
                    field: "artifact".into(),
                    old: serde_json::Value::String(old.clone()),
                    new: serde_json::Value::String(artifact.clone()),
                });
            }
        }
    }
    match (&window, &change.window) {
        (None, None) => {
            return Err(invalid(
                "missing_field",
                "the first deployment approval sets the window: `window_start` and `window_end`",
            ))
        }
        (Some(w), old) if old.as_ref() != Some(w) => {
            next.window = Some(w.clone());
            if let Some(old) = old {
                event.edits.push(FieldEdit {
                    field: "window".into(),
                    old: serde_json::to_value(old).unwrap_or_default(),
                    new: serde_json::to_value(w).unwrap_or_default(),
                });
            }
        }
        _ => {}
    }
    // Record the window in UTC, as the basis of the approval was computed from it.
    event.action = Action::ApproveDeployment(ApproveDeployment {
        window_start: window.as_ref().map(|w| w.start.clone()),
        window_end: window.as_ref().map(|w| w.end.clone()),
        artifact,
        comment: a.comment.clone(),
    });
    event.invalidated = invalidated_by(change, &next, "window or artifact changed");
    let basis = next.basis(ApprovalStep::Deployment);
    let (approval, met) = group_approval(
        &next_without(&next, &event.invalidated),
        ApprovalStep::Deployment,
        ActionKind::ApproveDeployment,
        ctx,
        basis,
    )?;
    event.approval = Some(approval);
    if met {
        event.stage_to = Stage::ApprovedForDeployment;
    }
    Ok(())
}

/// The change with the given approvals marked invalid, for counting what remains.
fn next_without(change: &Change, invalidated: &[Invalidation]) -> Change {
    let mut c = change.clone();
    for inv in invalidated {
        for e in c.approvals.iter_mut() {
            if e.approval.step == inv.step
                && e.approval.by == inv.approver
                && e.approval.at == inv.approved_at
            {
                e.invalidated = Some(inv.reason.clone());
            }
        }
    }
    c
}

/// Approvals that counted on `before` and no longer rest on the content of `after`.
fn invalidated_by(before: &Change, after: &Change, reason: &str) -> Vec<Invalidation> {
    before
        .approvals
        .iter()
        .filter(|e| e.invalidated.is_none())
        .filter(|e| e.approval.step != ApprovalStep::Retroactive)
        .filter(|e| e.approval.basis == before.basis(e.approval.step))
        .filter(|e| after.basis(e.approval.step) != e.approval.basis)
        .map(|e| Invalidation {
            step: e.approval.step,
            approver: e.approval.by.clone(),
            approved_at: e.approval.at.clone(),
            reason: reason.to_string(),
        })
        .collect()
}

fn invalidate_all(change: &Change, reason: &str) -> Vec<Invalidation> {
    change
        .approvals
        .iter()
        .filter(|e| e.invalidated.is_none())
        .map(|e| Invalidation {
            step: e.approval.step,
            approver: e.approval.by.clone(),
            approved_at: e.approval.at.clone(),
            reason: reason.to_string(),
        })
        .collect()
}

fn amend(
    change: &Change,
    a: &Amend,
    model: &ChangeModel,
    ctx: &Context<'_>,
    event: &mut ChangeEvent,
) -> Result<(), Refusal> {
    if !change.stage.is_before_implementation() {
        return Err(stage_refusal(
            change,
            ActionKind::Amend,
            "before implementation",
        ));
    }
    owner_or_manager(change, ctx, ActionKind::Amend)?;
    let lowers_risk = matches!((a.risk, change.risk), (Some(new), Some(old)) if new < old);
    if lowers_risk {
        // Risk decides which approvals a change needs: raising it only asks for more, but
        // lowering it is a re-evaluation, not an edit its requester or builder may make.
        let evaluators: Vec<Role> = ctx.policy.roles_for(ActionKind::Evaluate).collect();
        if !evaluators.iter().any(|r| ctx.actor.has_role(*r)) {
            let names: Vec<&str> = evaluators.iter().map(|r| r.as_str()).collect();
            return Err(forbidden(
                "role_not_allowed",
                format!(
                    "lowering the `risk` of `{}` re-evaluates it: that needs one of the roles {}",
                    change.id,
                    names.join(", ")
                ),
            ));
        }
    }
    if let Some(t) = &a.title {
        check_title(t)?;
    }
    if let Some(s) = &a.systems {
        check_systems(s)?;
    }
    if let Some(p) = &a.implementation_plan {
        non_empty("implementation_plan", p)?;
    }
    let plan_fields =
        a.implementation_plan.is_some() || a.test_plan.is_some() || a.rollback_plan.is_some();
    if plan_fields && change.plan.is_none() {
        return Err(conflict(
            "no_plan",
            format!("`{}` has no plan yet: `plan` it first", change.id),
        ));
    }
    let window_fields = a.window_start.is_some() || a.window_end.is_some();
    if window_fields && change.window.is_none() {
        return Err(conflict(
            "no_window",
            format!(
                "`{}` has no window yet: the deployment approval sets it",
                change.id
            ),
        ));
    }
    for (field, value) in [
        ("window_start", &a.window_start),
        ("window_end", &a.window_end),
    ] {
        if let Some(v) = value {
            instant(field, v)?;
        }
    }
    if (a.risk.is_some() || a.priority.is_some()) && change.risk.is_none() {
        return Err(conflict(
            "not_evaluated",
            format!("`{}` has not been evaluated yet", change.id),
        ));
    }
    let mut amend = a.clone();
    // Window bounds are recorded in UTC so that they compare as text and as instants alike.
    amend.window_start = a
        .window_start
        .as_deref()
        .map(|v| instant("window_start", v).map(format_instant))
        .transpose()?;
    amend.window_end = a
        .window_end
        .as_deref()
        .map(|v| instant("window_end", v).map(format_instant))
        .transpose()?;
    let mut next = change.clone();
    let at = ctx.recorded();
    let probe = ChangeEvent {
        action: Action::Amend(amend.clone()),
        ..event.clone()
    };
    next.apply(&at, &probe);
    if let Some(w) = &next.window {
        if instant("window_end", &w.end)? <= instant("window_start", &w.start)? {
            return Err(invalid(
                "invalid_field",
                "`window_end` must be after `window_start`",
            ));
        }
    }
    if let Some(plan) = &next.plan {
        if model.includes(Stage::Tested) && plan.test_plan.as_deref().is_none_or(blank) {
            return Err(conflict(
                "test_plan_required",
                "a testable change needs a `test_plan`; it cannot be blanked",
            ));
        }
        if rollback_required(change, ctx.policy) && plan.rollback_plan.as_deref().is_none_or(blank)
        {
            return Err(conflict(
                "rollback_plan_required",
                "this change needs a `rollback_plan`; it cannot be removed",
            ));
        }
    }
    event.edits = edits(change, &next);
    if event.edits.is_empty() {
        return Err(invalid(
            "nothing_to_amend",
            "the amendment changes no field",
        ));
    }
    let fields: Vec<&str> = event.edits.iter().map(|e| e.field.as_str()).collect();
    let reason = format!("content changed after approval: {}", fields.join(", "));
    event.invalidated = invalidated_by(change, &next, &reason);
    event.action = Action::Amend(amend);
    // Return to the stage before the earliest approval that no longer counts, so that the
    // approval is asked for again.
    let earliest = event
        .invalidated
        .iter()
        .filter_map(|i| i.step.stage())
        .filter_map(|s| s.position().map(|p| (p, s)))
        .min();
    if let Some((position, stage)) = earliest {
        let reached = change.stage.position().is_some_and(|p| p >= position);
        if reached {
            event.stage_to = model.predecessor(stage).unwrap_or(Stage::Requested);
        }
    }
    if !event.invalidated.is_empty() {
        event.note = Some(format!(
            "{} approval(s) invalidated and asked for again",
            event.invalidated.len()
        ));
    }
    Ok(())
}

fn edits(before: &Change, after: &Change) -> Vec<FieldEdit> {
    let b = serde_json::to_value(before).unwrap_or_default();
    let a = serde_json::to_value(after).unwrap_or_default();
    let mut out = Vec::new();
    let fields = [
        "title",
        "description",
        "systems",
        "risk",
        "priority",
        "impact",
    ];
    for f in fields {
        if b[f] != a[f] {
            out.push(FieldEdit {
                field: f.into(),
                old: b[f].clone(),
                new: a[f].clone(),
            });
        }
    }
    for f in ["implementation_plan", "test_plan", "rollback_plan"] {
        if b["plan"][f] != a["plan"][f] {
            out.push(FieldEdit {
                field: f.into(),
                old: b["plan"][f].clone(),
                new: a["plan"][f].clone(),
            });
        }
    }
    for (f, k) in [("window_start", "start"), ("window_end", "end")] {
        if b["window"][k] != a["window"][k] {
            out.push(FieldEdit {
                field: f.into(),
                old: b["window"][k].clone(),
                new: a["window"][k].clone(),
            });
        }
    }
    out
}
