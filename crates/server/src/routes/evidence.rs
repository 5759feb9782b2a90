//! Evidence arriving from outside, and the deployment gate:
//!
//! - `POST /api/v1/webhooks/github` and `/webhooks/gitlab`: code-host deliveries, verified
//!   (HMAC signature, secret token) before anything is read, and accepted once per delivery;
//! - `POST /api/v1/deployments`: a pipeline reports a deployment;
//! - `POST /api/v1/gate`: a pipeline asks whether an artifact may go to an environment now;
//! - `GET /api/v1/deployments/{id}/release-notes`: a Markdown draft of what a deployment
//!   carried.
//!
//! Every accepted payload is recorded in the ledger as normalized evidence with the digest
//! of the bytes it came from; every gate decision is recorded too.

use std::sync::Arc;

use audit::{Inputs, ProductionEvent, Rules, UserFacts, Verdict, VerdictRow};
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::{ActionKind, ApprovalStep, Change, ChangeType, Stage};
use evidence::{Deployment, Evidence, ParseError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::{NewEntry, StoreError, Target, Write};
use utoipa::ToSchema;

use crate::auth::Authenticated;
use crate::error::{ApiError, ErrorBody};
use crate::notify::{Notification, NotificationKind, Notifier};
use crate::projection::{ApprovalFacts, Projection, UNPARSEABLE_KIND};
use crate::service::ServiceError;
use crate::AppState;

/// Settings of the evidence side, from the config file and the environment.
#[derive(Debug, Clone, Default)]
pub struct EvidenceSettings {
    pub github_webhook_secret: Option<String>,
    pub gitlab_webhook_token: Option<String>,
    pub rules: Rules,
}

/// What the evidence handlers share: settings, the ledger projection and the notifier.
pub struct EvidenceHub {
    pub settings: EvidenceSettings,
    pub projection: Projection,
    pub notifier: Notifier,
    /// Reconciliation rows already announced, so that each is notified once per run.
    announced: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Held while a background reconciliation runs.
    reconciling: tokio::sync::Mutex<()>,
    /// Evidence arrived since the last background reconciliation began.
    reconcile_wanted: AtomicBool,
}

impl EvidenceHub {
    pub fn new(settings: EvidenceSettings, notifier: Notifier) -> Self {
        EvidenceHub {
            settings,
            projection: Projection::default(),
            notifier,
            announced: Default::default(),
            reconciling: tokio::sync::Mutex::new(()),
            reconcile_wanted: AtomicBool::new(false),
        }
    }
}

impl Default for EvidenceHub {
    fn default() -> Self {
        EvidenceHub::new(EvidenceSettings::default(), Notifier::disabled())
    }
}

/// The answer to an accepted delivery.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// `recorded`, `duplicate` (seen before; nothing written) or `unparseable` (recorded as
    /// evidence that could not be read).
    pub status: String,
    /// The ledger entries written.
    pub seqs: Vec<u64>,
    /// The kinds of evidence recorded.
    pub kinds: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A code-host delivery: GitHub's documented webhook.
#[utoipa::path(
    post, path = "/api/v1/webhooks/github", tag = "evidence",
    request_body(content = String, description = "a GitHub webhook payload, signed with X-Hub-Signature-256"),
    responses((status = 202, body = Accepted), (status = 401, body = ErrorBody),
              (status = 400, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn github(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(secret) = state.evidence.settings.github_webhook_secret.clone() else {
        return Err(not_configured("github", "CHANGEGATE_GITHUB_WEBHOOK_SECRET"));
    };
    evidence::signature::verify_github(
        secret.as_bytes(),
        header(&headers, "x-hub-signature-256"),
        &body,
    )
    .map_err(|e| ApiError::unauthorized("invalid_signature", &e.to_string()))?;
    let event = header(&headers, "x-github-event")
        .ok_or_else(|| ApiError::bad_request("missing_header", "`X-GitHub-Event` is missing"))?
        .to_string();
    let delivery = header(&headers, "x-github-delivery").map(str::to_string);
    let parsed = evidence::github::parse(&event, &body);
    record_delivery(&state, "github", &event, delivery, &body, parsed).await
}

/// A code-host delivery: GitLab's webhook, authenticated by its secret token.
#[utoipa::path(
    post, path = "/api/v1/webhooks/gitlab", tag = "evidence",
    request_body(content = String, description = "a GitLab webhook payload with X-Gitlab-Token"),
    responses((status = 202, body = Accepted), (status = 401, body = ErrorBody),
              (status = 400, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn gitlab(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(token) = state.evidence.settings.gitlab_webhook_token.clone() else {
        return Err(not_configured("gitlab", "CHANGEGATE_GITLAB_WEBHOOK_TOKEN"));
    };
    evidence::signature::verify_gitlab(&token, header(&headers, "x-gitlab-token"))
        .map_err(|e| ApiError::unauthorized("invalid_token", &e.to_string()))?;
    let event = header(&headers, "x-gitlab-event").map(str::to_string);
    // GitLab names each delivery in `X-Gitlab-Event-UUID` (and, newer, `Idempotency-Key`).
    let delivery = header(&headers, "idempotency-key")
        .or_else(|| header(&headers, "x-gitlab-event-uuid"))
        .map(str::to_string);
    let parsed = evidence::gitlab::parse(event.as_deref(), &body);
    let name = event.unwrap_or_else(|| "unnamed".into());
    record_delivery(&state, "gitlab", &name, delivery, &body, parsed).await
}

fn not_configured(host: &str, var: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "webhook_not_configured",
        format!(
            "the {host} webhook has no secret configured: set `{var}` or the config file's \
             [webhooks] section"
        ),
    )
}

/// Records a verified delivery: its evidence, or the reason it could not be read.
async fn record_delivery(
    state: &AppState,
    host: &str,
    event: &str,
    delivery: Option<String>,
    body: &[u8],
    parsed: Result<Vec<Evidence>, ParseError>,
) -> Result<Response, ApiError> {
    let body_sha256 = digest(body);
    // A delivery is the same only when its id, its event and its bytes are: a code host's
    // redelivery is recognized, while something else sent under a taken id (or a copy that
    // was mangled on the way first) is still recorded.
    let key = delivery.clone().unwrap_or_default();
    let subject = format!("delivery:{host}:{key}:{event}:sha256:{body_sha256}");
    let source = serde_json::json!({
        "host": host, "event": event, "delivery": delivery, "body_sha256": body_sha256,
    });
    let now = domain::action::format_instant(state.clock.now());
    let actor = format!("{host}-webhook");
    let (entries, status, reason) = match parsed {
        Ok(items) => (
            items
                .iter()
                .map(|e| NewEntry {
                    time: now.clone(),
                    actor: actor.clone(),
                    roles: vec![],
                    kind: e.ledger_kind().to_string(),
                    subject: None,
                    payload: serde_json::json!({ "source": source, "evidence": e }),
                })
                .collect::<Vec<_>>(),
            "recorded",
            None,
        ),
        // Anything that passed the signature check is kept, readable or not: a body that
        // is not JSON (truncated on the way, say) is recorded with the reason and its digest.
        Err(e) => (
            vec![NewEntry {
                time: now.clone(),
                actor: actor.clone(),
                roles: vec![],
                kind: UNPARSEABLE_KIND.into(),
                subject: None,
                payload: serde_json::json!({
                    "source": source, "code": e.code(), "reason": e.to_string(),
                }),
            }],
            "unparseable",
            Some(e.to_string()),
        ),
    };
    if entries.is_empty() {
        // A ping or an event with nothing to keep: acknowledged, nothing written.
        return Ok((
            StatusCode::ACCEPTED,
            Json(Accepted {
                status: "ignored".into(),
                seqs: vec![],
                kinds: vec![],
                reason: Some(format!("`{event}` carries no evidence")),
            }),
        )
            .into_response());
    }
    let kinds: Vec<String> = entries.iter().map(|e| e.kind.clone()).collect();
    let write = Write {
        target: Target::Once { subject },
        entries,
        columns: None,
    };
    match state.service.submit(write).await {
        Ok(written) => {
            let accepted = Accepted {
                status: status.into(),
                seqs: written.seqs,
                kinds,
                reason,
            };
            after_evidence(state);
            Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
        }
        Err(ServiceError::Store(StoreError::Duplicate { seq, .. })) => Ok((
            StatusCode::OK,
            Json(Accepted {
                status: "duplicate".into(),
                seqs: vec![],
                kinds: vec![],
                reason: Some(format!("this delivery was recorded at entry {seq}")),
            }),
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}

/// Has what the evidence shows now reconciled, and notified about events not seen before,
/// in the background. A burst of deliveries is reconciled once or twice, not once per
/// delivery: while a run goes, later requests only ask for one more run after it.
fn after_evidence(state: &AppState) {
    let hub = &state.evidence;
    hub.reconcile_wanted.store(true, Ordering::SeqCst);
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            let hub = &state.evidence;
            let Ok(_running) = hub.reconciling.try_lock() else {
                // The run under way sees the request when it finishes.
                return;
            };
            while hub.reconcile_wanted.swap(false, Ordering::SeqCst) {
                let st = state.clone();
                match tokio::task::spawn_blocking(move || reconcile_now(&st)).await {
                    Ok(Ok(report)) => notify_new(&state, &report),
                    Ok(Err(e)) => tracing::warn!(error = %e.message, "reconciliation failed"),
                    Err(e) => tracing::warn!(error = %e, "reconciliation failed"),
                }
            }
            drop(_running);
            // A request that came in between the last check and the release found the
            // lock taken: take it up here.
            if !hub.reconcile_wanted.load(Ordering::SeqCst) {
                return;
            }
        }
    });
}

/// Marks what the ledger already shows as announced, so that a restarted server notifies
/// only about what arrives after it started.
pub fn prime_announcements(state: &AppState) -> Result<usize, ApiError> {
    let report = reconcile_now(state)?;
    let mut seen = state
        .evidence
        .announced
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for row in &report.events {
        seen.insert(announcement_key(row));
    }
    Ok(seen.len())
}

fn announcement_key(row: &VerdictRow) -> String {
    format!(
        "{}:{}:{}:{:?}:{}",
        row.source,
        row.deployment.as_deref().unwrap_or(""),
        row.commit,
        row.verdict,
        row.at
    )
}

fn notify_new(state: &AppState, report: &audit::Report) {
    let mut seen = state
        .evidence
        .announced
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for row in &report.events {
        let key = announcement_key(row);
        if !seen.insert(key.clone()) {
            continue;
        }
        let (kind, title) = match (row.verdict, row.source.as_str()) {
            (Verdict::Unauthorized, _) => (
                NotificationKind::UnauthorizedChange,
                format!("Unauthorized production change {}", short(&row.commit)),
            ),
            (Verdict::Exception, _) => (
                NotificationKind::Exception,
                format!(
                    "Exception on {} ({})",
                    row.change.as_deref().unwrap_or("?"),
                    row.exceptions.join(", ")
                ),
            ),
            (Verdict::Ok, "deployment") => (
                NotificationKind::Deployed,
                format!("{} deployed", row.change.as_deref().unwrap_or("?")),
            ),
            (Verdict::Ok, _) => (
                NotificationKind::Merged,
                format!("{} merged", row.change.as_deref().unwrap_or("?")),
            ),
        };
        state.evidence.notifier.send(Notification {
            kind,
            id: hex::encode(&Sha256::digest(key.as_bytes())[..12]),
            title: title.clone(),
            text: format!("{title}: {}", row.subject),
            change: row.change.clone(),
            repository: None,
            commit: Some(row.commit.clone()),
            environment: row.environment.clone(),
            reasons: row.exceptions.clone(),
            at: row.at.clone(),
            link: None,
        });
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Runs the reconciliation over everything the projection holds.
pub fn reconcile_now(state: &AppState) -> Result<audit::Report, ApiError> {
    let store = state.service.store.clone();
    let users: std::collections::BTreeMap<String, UserFacts> = store
        .users()
        .map_err(ServiceError::from)?
        .into_iter()
        .map(|u| {
            (
                u.name,
                UserFacts {
                    roles: u.roles,
                    machine: u.machine,
                    active: u.active,
                },
            )
        })
        .collect();
    let rules = &state.evidence.settings.rules;
    let now = state.clock.now();
    let report = state
        .evidence
        .projection
        .read(store.as_ref(), |s| {
            let events = s.production_events(rules);
            audit::reconcile(&Inputs {
                events: &events,
                evidence: &s.evidence,
                changes: &s.changes,
                users: &users,
                policy: state.service.policy(),
                rules,
                as_of: now,
            })
        })
        .map_err(ServiceError::from)?;
    Ok(report)
}

/// The deployment as the pipeline reports it, with the reconciliation verdict.
#[derive(Serialize, ToSchema)]
pub struct DeploymentRecorded {
    #[schema(value_type = Object)]
    pub deployment: Deployment,
    pub seq: u64,
    /// The verdict for this deployment, when it went to a production environment.
    #[schema(value_type = Option<Object>)]
    pub verdict: Option<VerdictRow>,
}

/// A pipeline reports a deployment.
#[utoipa::path(
    post, path = "/api/v1/deployments", tag = "evidence",
    request_body(content = String, description = "system, environment, artifact, time, id?, status?, commits?, description?"),
    responses((status = 201, body = DeploymentRecorded), (status = 200, body = DeploymentRecorded),
              (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn report_deployment(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !user.active {
        return Err(ServiceError::Deactivated(user.name).into());
    }
    let may_implement: Vec<&str> = state
        .service
        .policy()
        .roles_for(ActionKind::Implement)
        .map(|r| r.as_str())
        .collect();
    if !user.machine
        && !user
            .roles
            .iter()
            .any(|r| may_implement.contains(&r.as_str()))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_a_deployer",
            format!(
                "`{}` is neither a machine user nor holds a role that may implement ({}), so \
                 cannot report deployments",
                user.name,
                may_implement.join(", ")
            ),
        ));
    }
    let mut d = evidence::pipeline::parse_deployment(&body, &user.name)
        .map_err(|e| ApiError::unprocessable(e.code(), e.to_string()))?;
    // A report of what happened: a deployment time ahead of the server's clock (beyond a
    // few minutes of clock skew) is refused, or it would enter periods that have not come.
    let skew = time::Duration::minutes(5);
    if domain::action::parse_instant("time", &d.at).is_ok_and(|t| t > state.clock.now() + skew) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!(
                "`time` ({}) is in the future: report a deployment once it happened",
                d.at
            ),
        ));
    }
    if d.id.is_empty() {
        let key = format!("{}\n{}\n{}\n{}", d.system, d.environment, d.artifact, d.at);
        d.id = format!("dep-{}", &digest(key.as_bytes())[..16]);
    }
    let subject = format!("deployment:{}:{}", d.system, d.id);
    let now = domain::action::format_instant(state.clock.now());
    let evidence = Evidence::Deployment(d.clone());
    let write = Write {
        target: Target::Once { subject },
        entries: vec![NewEntry {
            time: now,
            actor: user.name.clone(),
            roles: user.roles.clone(),
            kind: evidence.ledger_kind().into(),
            subject: None,
            payload: serde_json::json!({
                "source": {"host": "pipeline", "body_sha256": digest(&body)},
                "evidence": evidence,
            }),
        }],
        columns: None,
    };
    let (status, seq) = match state.service.submit(write).await {
        Ok(w) => (
            StatusCode::CREATED,
            w.seqs.first().copied().unwrap_or_default(),
        ),
        Err(ServiceError::Store(StoreError::Duplicate { seq, .. })) => {
            same_deployment_as_recorded(&state, seq, &evidence).await?;
            (StatusCode::OK, seq)
        }
        Err(e) => return Err(e.into()),
    };
    let key = format!("{}/{}", d.system, d.id);
    let st = state.clone();
    let report = tokio::task::spawn_blocking(move || reconcile_now(&st))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    notify_new(&state, &report);
    let verdict = report
        .events
        .into_iter()
        .find(|r| r.deployment.as_deref() == Some(key.as_str()));
    Ok((
        status,
        Json(DeploymentRecorded {
            deployment: d,
            seq,
            verdict,
        }),
    )
        .into_response())
}

/// A deployment reported again under an id already recorded must be the same deployment: a
/// repeat is answered as before, anything else under that id is refused.
async fn same_deployment_as_recorded(
    state: &AppState,
    seq: u64,
    reported: &Evidence,
) -> Result<(), ApiError> {
    let store = state.service.store.clone();
    let stored = tokio::task::spawn_blocking(move || store.entry(seq))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ServiceError::from)?
        .ok_or_else(|| ApiError::internal(format!("entry {seq} is missing")))?;
    let recorded: Evidence = serde_json::from_value(stored.entry.payload["evidence"].clone())
        .map_err(|e| ApiError::internal(format!("entry {seq}: {e}")))?;
    if &recorded == reported {
        return Ok(());
    }
    let (Evidence::Deployment(was), Evidence::Deployment(now)) = (&recorded, reported) else {
        return Err(ApiError::internal(format!(
            "entry {seq} is not a deployment"
        )));
    };
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "deployment_id_conflict",
        format!(
            "deployment `{}` of `{}` was already reported by `{}` (entry {seq}: `{}` to `{}` at \
             {}), and this report of `{}` to `{}` at {} differs; a different deployment needs \
             an id of its own",
            was.id,
            was.system,
            was.actor.login,
            was.artifact,
            was.environment,
            was.at,
            now.artifact,
            now.environment,
            now.at
        ),
    ))
}

/// One reason for a gate decision.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GateReason {
    pub code: String,
    pub message: String,
}

/// The gate's answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GateDecision {
    /// `allow` or `deny`.
    pub decision: String,
    pub reasons: Vec<GateReason>,
    pub change: Option<String>,
    /// The ledger entry recording this decision.
    pub seq: u64,
}

fn reason(code: &str, message: impl Into<String>) -> GateReason {
    GateReason {
        code: code.into(),
        message: message.into(),
    }
}

/// May this artifact of this system go to this environment now?
#[utoipa::path(
    post, path = "/api/v1/gate", tag = "evidence",
    request_body(content = String, description = "system, environment, artifact, actor?"),
    responses((status = 200, body = GateDecision), (status = 422, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn gate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<GateDecision>, ApiError> {
    let digest = crate::auth::bearer_digest(&headers)?;
    let now = state.clock.now();
    let st = state.clone();
    // One blocking hop for the token lookup and the judgment: the gate answers pipelines
    // that wait on it, and each hop between threads costs more than either lookup.
    let asked = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let store = st.service.store.clone();
        let user = crate::auth::authenticate(store.user_by_token(&digest))?;
        let req = evidence::pipeline::parse_gate_request(&body)
            .map_err(|e| ApiError::unprocessable(e.code(), e.to_string()))?;
        // A pipeline's machine identity may say who triggered it; a person asks only for
        // themselves, so that the deployer checks judge the one who deploys.
        if let Some(actor) = req.actor.as_deref() {
            if actor != user.name && !user.machine {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "actor_not_token_owner",
                    format!(
                        "`{}` may ask the gate only for themselves, not for `{actor}`: only a \
                         machine user (a pipeline) may name who triggered a deployment",
                        user.name
                    ),
                ));
            }
        }
        // A pipeline names the person by their code-host login; the configured aliases
        // say which changegate user that is.
        let deployer = match req.actor.as_deref() {
            Some(actor) if user.machine => st
                .evidence
                .settings
                .rules
                .aliases
                .iter()
                .find(|(_, names)| names.iter().any(|n| n.trim().eq_ignore_ascii_case(actor)))
                .map_or_else(|| actor.to_string(), |(name, _)| name.clone()),
            _ => user.name.clone(),
        };
        let (change, reasons) = st
            .evidence
            .projection
            .read(store.as_ref(), |s| {
                // Looked up after the catch-up, so that a deactivation committed before
                // this request is seen (see `State::user`).
                let deployer_user = s.user(store.as_ref(), &deployer)?;
                Ok::<_, StoreError>(judge_gate(
                    &st,
                    s,
                    &req,
                    &deployer,
                    deployer_user.as_ref(),
                    now,
                ))
            })
            .and_then(|r| r)
            .map_err(ServiceError::from)?;
        Ok((user, req, deployer, change, reasons))
    });
    let (user, req, deployer, change, reasons) = asked
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let allow = reasons
        .iter()
        .all(|r| ALLOW_CODES.contains(&r.code.as_str()));
    let decision = if allow { "allow" } else { "deny" };
    let write = Write {
        target: Target::None,
        entries: vec![NewEntry {
            time: domain::action::format_instant(now),
            actor: user.name.clone(),
            roles: user.roles.clone(),
            kind: "gate.decided".into(),
            subject: Some(format!("gate:{}", req.system)),
            payload: serde_json::json!({
                "request": {
                    "system": req.system, "environment": req.environment,
                    "artifact": req.artifact, "actor": deployer,
                },
                "decision": decision,
                "reasons": reasons,
                "change": change,
            }),
        }],
        columns: None,
    };
    let written = state.service.submit(write).await?;
    Ok(Json(GateDecision {
        decision: decision.into(),
        reasons,
        change,
        seq: written.seqs.first().copied().unwrap_or_default(),
    }))
}

/// When every link between the change and the artifact is evidence from after the change's
/// last deployment approval, why that artifact is not covered.
fn linked_only_after_approval(
    change: &Change,
    links: &[crate::projection::ArtifactLink],
) -> Option<String> {
    let approved_at = change
        .valid_approvals(ApprovalStep::Deployment)
        .filter_map(|a| domain::action::parse_instant("at", &a.at).ok())
        .max()?;
    let mut latest = None;
    for link in links.iter().filter(|l| l.change == change.id) {
        let Some(at) = &link.evidence_at else {
            return None;
        };
        match domain::action::parse_instant("at", at) {
            // Whole seconds: git and code hosts record no finer.
            Ok(t) if t.replace_nanosecond(0).ok()? <= approved_at => return None,
            Ok(t) => latest = Some(t),
            // Evidence that does not say when it happened cannot show it came first.
            Err(_) => {}
        }
    }
    Some(format!(
        "`{}` was approved for deployment at {} without naming an artifact, and this one is \
         linked to it only by evidence from {}, after the approval",
        change.id,
        domain::action::format_instant(approved_at),
        latest.map_or(
            "an unknown time".to_string(),
            domain::action::format_instant
        )
    ))
}

/// Reasons that explain an allow rather than cause a deny.
const ALLOW_CODES: &[&str] = &[
    "approved",
    "not_production",
    "emergency_retroactive_approval_due",
];

fn judge_gate(
    state: &AppState,
    s: &crate::projection::State,
    req: &evidence::pipeline::GateRequest,
    deployer: &str,
    deployer_user: Option<&store::User>,
    now: time::OffsetDateTime,
) -> (Option<String>, Vec<GateReason>) {
    let rules = &state.evidence.settings.rules;
    let policy = state.service.policy();
    if !rules.is_production(&req.environment) {
        return (
            None,
            vec![reason(
                "not_production",
                format!(
                    "`{}` is not a production environment: no change approval is needed",
                    req.environment
                ),
            )],
        );
    }
    let links = s.artifact_links(&req.artifact, &rules.protected_branches);
    let mut candidates: Vec<&Change> = Vec::new();
    for link in &links {
        if let Some(c) = s.changes.get(&link.change) {
            if !candidates.iter().any(|x| x.id == c.id) {
                candidates.push(c);
            }
        }
    }
    if candidates.is_empty() {
        return (
            None,
            vec![reason(
                "no_approved_change",
                format!("no change covers artifact `{}`", req.artifact),
            )],
        );
    }
    // Judge the change for this system when one covers it (one artifact may be approved
    // for several systems by several changes); among those, one that is ready to deploy,
    // else an emergency not yet implemented, else the most recent.
    let covers = |c: &&Change| c.systems.is_empty() || c.systems.iter().any(|x| x == &req.system);
    let for_system: Vec<&Change> = candidates.iter().copied().filter(covers).collect();
    let pool = if for_system.is_empty() {
        &candidates
    } else {
        &for_system
    };
    let change = pool
        .iter()
        .copied()
        .find(|c| c.stage == Stage::ApprovedForDeployment)
        .or_else(|| {
            pool.iter().copied().find(|c| {
                c.change_type == ChangeType::Emergency && c.stage.is_before_implementation()
            })
        })
        .unwrap_or_else(|| pool[pool.len() - 1]);
    let mut reasons = Vec::new();
    let model = policy.model(change.change_type, change.category, change.testable);
    if !change.systems.is_empty() && !change.systems.iter().any(|x| x == &req.system) {
        reasons.push(reason(
            "system_not_covered",
            format!(
                "`{}` covers {}, not `{}`",
                change.id,
                change.systems.join(", "),
                req.system
            ),
        ));
    }
    let emergency = change.change_type == ChangeType::Emergency
        && change.stage.is_before_implementation()
        && change.stage != Stage::Deferred
        && change.stage != Stage::ApprovedForDeployment;
    if emergency {
        // An emergency is for now: one requested longer ago than its approval window is
        // no longer a way past the gate.
        let window = time::Duration::hours(i64::from(policy.emergency_approval_window_hours));
        let requested = domain::action::parse_instant("created_at", &change.created_at).ok();
        if requested.is_none_or(|r| now - r > window) {
            reasons.push(reason(
                "emergency_expired",
                format!(
                    "`{}` was requested at {}, more than {} hours ago: an emergency that old \
                     goes through approval for deployment",
                    change.id, change.created_at, policy.emergency_approval_window_hours
                ),
            ));
        } else {
            reasons.push(reason(
                "emergency_retroactive_approval_due",
                format!(
                    "`{}` is an emergency change: it may go out now and must be approved \
                     within {} hours",
                    change.id, policy.emergency_approval_window_hours
                ),
            ));
        }
    } else if change.stage != Stage::ApprovedForDeployment {
        reasons.push(reason(
            "not_approved_for_deployment",
            format!(
                "`{}` is `{}`, not approved for deployment",
                change.id, change.stage
            ),
        ));
    } else {
        let facts = s.approval_facts(change, |c| ApprovalFacts {
            deployment_approved: domain::decide::requirement_met(
                c,
                policy,
                ActionKind::ApproveDeployment,
            ),
            tested: !model.includes(Stage::Tested)
                || c.valid_approvals(ApprovalStep::Test).next().is_some(),
        });
        if !facts.deployment_approved {
            reasons.push(reason(
                "approval_missing",
                format!(
                    "the deployment approvals of `{}` no longer cover its content",
                    change.id
                ),
            ));
        }
        if let Some(approved) = &change.approved_artifact {
            let asked = req.artifact.trim().to_lowercase();
            if !crate::projection::same_ref(&approved.to_lowercase(), &asked) {
                reasons.push(reason(
                    "artifact_not_approved",
                    format!(
                        "`{}` is approved to deploy `{approved}`, not `{}`",
                        change.id, req.artifact
                    ),
                ));
            }
        } else if let Some(late) = linked_only_after_approval(change, &links) {
            // The approval named no artifact, so it covers what its evidence showed when it
            // was given; a commit that arrived later is content nobody approved.
            reasons.push(reason("artifact_not_approved", late));
        }
        match &change.window {
            Some(w) => {
                let inside = match (
                    domain::action::parse_instant("start", &w.start),
                    domain::action::parse_instant("end", &w.end),
                ) {
                    (Ok(a), Ok(b)) => (a..b).contains(&now),
                    _ => false,
                };
                if !inside {
                    reasons.push(reason(
                        "outside_window",
                        format!(
                            "`{}` may be deployed from {} until {}, not at {}",
                            change.id,
                            w.start,
                            w.end,
                            domain::action::format_instant(now)
                        ),
                    ));
                }
            }
            None => reasons.push(reason(
                "outside_window",
                format!("`{}` has no approved window", change.id),
            )),
        }
        if !facts.tested {
            reasons.push(reason(
                "not_tested",
                format!("`{}` has no passing test of its current content", change.id),
            ));
        }
    }
    let may_implement: Vec<&str> = policy
        .roles_for(ActionKind::Implement)
        .map(|r| r.as_str())
        .collect();
    match deployer_user {
        Some(u) if u.active && u.roles.iter().any(|r| may_implement.contains(&r.as_str())) => {
            if change.assignee.as_deref() == Some(deployer)
                || change.requester == deployer && !u.machine
            {
                reasons.push(reason(
                    "deployer_is_author",
                    format!(
                        "`{deployer}` requested or built `{}` and may not deploy it",
                        change.id
                    ),
                ));
            }
        }
        _ => reasons.push(reason(
            "deployer_not_authorized",
            format!(
                "`{deployer}` is not an active user with a role that may implement ({})",
                may_implement.join(", ")
            ),
        )),
    }
    if reasons.is_empty() {
        reasons.push(reason(
            "approved",
            format!(
                "`{}` is approved to deploy `{}` now",
                change.id, req.artifact
            ),
        ));
    }
    (Some(change.id.clone()), reasons)
}

/// A Markdown draft of the release notes of one deployment.
#[utoipa::path(
    get, path = "/api/v1/deployments/{id}/release-notes", tag = "evidence",
    params(("id" = String, Path, description = "the deployment id")),
    responses((status = 200, description = "Markdown", content_type = "text/markdown"),
              (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn release_notes(
    State(state): State<AppState>,
    Authenticated(_user): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let st = state.clone();
    let text = tokio::task::spawn_blocking(move || -> Result<Option<String>, ApiError> {
        let store = st.service.store.clone();
        let text = st
            .evidence
            .projection
            .read(store.as_ref(), |s| {
                draft_release_notes(s, &id, &st.evidence.settings.rules.protected_branches)
            })
            .map_err(ServiceError::from)?;
        Ok(text)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    match text {
        Some(t) => Ok((
            [(
                axum::http::header::CONTENT_TYPE,
                "text/markdown; charset=utf-8",
            )],
            t,
        )
            .into_response()),
        None => Err(ApiError::not_found("no deployment has this id")),
    }
}

fn draft_release_notes(
    s: &crate::projection::State,
    id: &str,
    protected: &[String],
) -> Option<String> {
    let d = s.evidence.iter().rev().find_map(|e| match e {
        Evidence::Deployment(d) if d.id == id => Some(d),
        _ => None,
    })?;
    let mut change_ids: Vec<String> = Vec::new();
    for artifact in std::iter::once(&d.artifact).chain(d.commits.iter()) {
        for c in s.changes_for_artifact(artifact, protected) {
            if !change_ids.contains(&c) {
                change_ids.push(c);
            }
        }
    }
    if let Some(desc) = &d.description {
        for c in evidence::change_ids(desc) {
            if s.changes.contains_key(&c) && !change_ids.contains(&c) {
                change_ids.push(c);
            }
        }
    }
    let mut out = format!(
        "# Release notes: {} to {}\n\nDeployment `{}` of `{}` at {} by {}.\n\n",
        d.system, d.environment, d.id, d.artifact, d.at, d.actor.login
    );
    out.push_str("## Changes\n\n");
    if change_ids.is_empty() {
        out.push_str("No change record covers this deployment.\n");
    }
    for cid in &change_ids {
        let Some(c) = s.changes.get(cid) else {
            continue;
        };
        let risk = c
            .risk
            .map(|r| r.as_str().to_string())
            .unwrap_or_else(|| "not evaluated".into());
        out.push_str(&format!(
            "- **{}** {} (risk: {risk}, {} change)\n",
            c.id, c.title, c.change_type
        ));
        for e in &s.evidence {
            if let Evidence::PullRequest(pr) = e {
                let names = evidence::change_ids(&pr.title)
                    .into_iter()
                    .chain(evidence::change_ids(&pr.head_ref))
                    .any(|x| &x == cid);
                if names && pr.state == evidence::PullRequestState::Merged {
                    let link = pr.url.clone().unwrap_or_default();
                    if link.is_empty() {
                        out.push_str(&format!(
                            "  - #{} {} ({})\n",
                            pr.number, pr.title, pr.author.login
                        ));
                    } else {
                        out.push_str(&format!(
                            "  - [#{}]({link}) {} ({})\n",
                            pr.number, pr.title, pr.author.login
                        ));
                    }
                }
            }
        }
    }
    Some(out)
}

/// Reconciliation rows that need attention, for the exceptions listing.
pub fn open_rows(report: audit::Report) -> (Vec<VerdictRow>, Vec<audit::Finding>) {
    let rows = report
        .events
        .into_iter()
        .filter(|r| r.verdict != Verdict::Ok)
        .collect();
    (rows, report.findings)
}

/// Whether a production event is a deployment (for callers that split the two).
pub fn is_deployment(e: &ProductionEvent) -> bool {
    matches!(e, ProductionEvent::Deployment(_))
}

/// The hub as the state holds it.
pub type SharedHub = Arc<EvidenceHub>;
