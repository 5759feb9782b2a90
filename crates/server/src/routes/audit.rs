//! `/api/v1/audit/results`: test results and control performances recorded by hand
//! (inquiry, observation, inspection of what changegate does not hold, a manual control
//! performed), each a ledger entry that `changegate audit` takes into the engagement.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use store::{NewEntry, Target, Write};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::error::{ApiError, ErrorBody};
use crate::projection::{DEFICIENCY_UPDATE_KIND, MANUAL_RESULT_KIND};
use crate::service::ServiceError;
use crate::AppState;

/// Roles that record results: auditors test, change managers record the manual controls
/// they perform.
const RECORDERS: [&str; 2] = ["auditor", "change_manager"];

/// The longest control id, item and attribute of a manual result.
const NAME_LIMIT: usize = 200;

/// A manual result as a client sends it; who recorded it, when and as what the server
/// fills in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultRequest {
    control: String,
    item: String,
    attribute: String,
    result: audit::AttributeResult,
    method: audit::engagement::Method,
    evidence: String,
    #[serde(default)]
    note: Option<String>,
    performed_at: String,
}

/// Roles that act on changes or run the change process: an auditor tests what they do.
const MANAGEMENT: [&str; 8] = [
    "requester",
    "engineer",
    "peer_reviewer",
    "tester",
    "change_manager",
    "cab_member",
    "release_manager",
    "business_owner",
];

/// Refuses an auditor who also holds a role that acts on changes: an auditor tests what
/// those roles do, and nobody can do both.
fn independent(user: &store::User, what: &str) -> Result<(), ApiError> {
    let has = |role: &str| user.roles.iter().any(|r| r == role);
    if let Some(other) = MANAGEMENT.iter().find(|r| has("auditor") && has(r)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "auditor_not_independent",
            format!(
                "`{}` holds both the auditor and the {other} role and may not {what}: an \
                 auditor tests what the other roles do",
                user.name
            ),
        ));
    }
    Ok(())
}

/// A request body that must be a JSON object (serde would also take an array of the
/// fields in order).
fn object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(ApiError::from_json)?;
    if !value.is_object() {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(ApiError::from_json)
}

/// The start of a long value, for an error message.
fn shown(value: &str) -> String {
    match value.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_string(),
    }
}

#[derive(Serialize, ToSchema)]
pub struct Recorded {
    /// The ledger entry.
    pub seq: u64,
    #[schema(value_type = Object)]
    pub result: audit::engagement::ManualResult,
}

/// Records a result by hand.
#[utoipa::path(
    post, path = "/api/v1/audit/results", tag = "audit",
    request_body(content = Object, description = "control, item, attribute, result (pass, fail, not_applicable), method (inspection, inquiry, observation, reperformance), evidence, note (optional), performed_at (RFC 3339)"),
    responses((status = 201, body = Recorded), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn record(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    body: Bytes,
) -> Result<(StatusCode, Json<Recorded>), ApiError> {
    if !user.roles.iter().any(|r| RECORDERS.contains(&r.as_str())) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "role_not_allowed",
            format!(
                "`{}` may not record audit results: that takes one of the roles {}",
                user.name,
                RECORDERS.join(", ")
            ),
        ));
    }
    independent(&user, "record audit results")?;
    let request: ResultRequest = object(&body)?;
    for (field, value, limit) in [
        ("control", &request.control, NAME_LIMIT),
        ("item", &request.item, NAME_LIMIT),
        ("attribute", &request.attribute, NAME_LIMIT),
        ("evidence", &request.evidence, TEXT_LIMIT),
    ] {
        if value.trim().is_empty() || value.chars().any(char::is_control) || value.len() > limit {
            return Err(ApiError::unprocessable(
                "invalid_field",
                format!(
                    "`{field}` must be non-empty text of at most {limit} bytes without control \
                     characters"
                ),
            ));
        }
    }
    if request
        .note
        .as_ref()
        .is_some_and(|n| n.len() > TEXT_LIMIT || n.chars().any(|c| c.is_control() && c != '\n'))
    {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("`note` must be text of at most {TEXT_LIMIT} bytes"),
        ));
    }
    let auditor = user.roles.iter().any(|r| r == "auditor");
    let mut result = audit::engagement::ManualResult {
        control: request.control,
        item: request.item,
        attribute: request.attribute,
        result: request.result,
        method: request.method,
        evidence: request.evidence,
        note: request.note,
        performed_at: request.performed_at,
        recorded_by: String::new(),
        recorded_at: String::new(),
        recorded_as: if auditor {
            audit::engagement::RecordedAs::Auditor
        } else {
            audit::engagement::RecordedAs::Management
        },
    };
    let performed = domain::action::parse_instant("performed_at", &result.performed_at)
        .map_err(|e| ApiError::unprocessable("invalid_field", e))?;
    if performed > state.clock.now() {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "`performed_at` is in the future",
        ));
    }
    result.performed_at = domain::action::format_instant(performed);
    result.recorded_by = user.name.clone();
    result.recorded_at = domain::action::format_instant(state.clock.now());
    let write = Write {
        target: Target::None,
        entries: vec![NewEntry {
            time: domain::action::format_instant(state.clock.now()),
            actor: user.name.clone(),
            roles: user.roles.clone(),
            kind: MANUAL_RESULT_KIND.into(),
            subject: Some(format!("audit:{}", result.control)),
            payload: serde_json::json!({ "result": result }),
        }],
        columns: None,
    };
    let written = state.service.submit(write).await?;
    Ok((
        StatusCode::CREATED,
        Json(Recorded {
            seq: written.seqs.first().copied().unwrap_or_default(),
            result,
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ResultQuery {
    /// Only this control's results.
    pub control: Option<String>,
}

/// The results recorded by hand, oldest first.
#[utoipa::path(
    get, path = "/api/v1/audit/results", tag = "audit", params(ResultQuery),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(_user): Authenticated,
    query: Result<Query<ResultQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    let st = state.clone();
    let results = tokio::task::spawn_blocking(move || {
        let store = st.service.store.clone();
        st.evidence.projection.read(store.as_ref(), |s| {
            s.manual_results
                .iter()
                .filter(|m| q.control.as_deref().is_none_or(|c| c == m.control))
                .cloned()
                .collect::<Vec<_>>()
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(ServiceError::from)?;
    Ok(Json(serde_json::json!({ "results": results })))
}

/// Fields of free text a deficiency update may carry, with their longest length.
const TEXT_LIMIT: usize = 10_000;

/// A deficiency update as a client sends it; who recorded it and when the server fills in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    deficiency: String,
    from: String,
    to: String,
    #[serde(default)]
    significance: Option<audit::deficiency::Significance>,
    #[serde(default)]
    rationale: Option<String>,
    #[serde(default)]
    management_response: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    remediation_due: Option<String>,
    #[serde(default)]
    remediated_at: Option<String>,
    #[serde(default)]
    remediation: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UpdateRecorded {
    /// The ledger entry.
    pub seq: u64,
    #[schema(value_type = Object)]
    pub update: audit::deficiency::DeficiencyUpdate,
}

/// Records what an auditor assessed about a deficiency (`significance`, `rationale`: the
/// auditor role) or what management answered (`management_response`, `owner`,
/// `remediation_due`, `remediated_at`, `remediation`: the change manager role). The
/// deficiency is named as engagements name it (`CM-03:operating`, `R07:design`) with the
/// engagement period it was raised in (`from`, `to`: days or RFC 3339 instants, as
/// `changegate audit` takes them).
#[utoipa::path(
    post, path = "/api/v1/audit/deficiencies", tag = "audit",
    request_body(content = Object, description = "deficiency, from, to, and any of significance (deficiency, significant_deficiency, material_weakness), rationale, management_response, owner, remediation_due, remediated_at, remediation"),
    responses((status = 201, body = UpdateRecorded), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn update_deficiency(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    body: Bytes,
) -> Result<(StatusCode, Json<UpdateRecorded>), ApiError> {
    let has = |role: &str| user.roles.iter().any(|r| r == role);
    if !has("auditor") && !has("change_manager") {
        return Err(forbidden(&user.name, "record anything about a deficiency"));
    }
    independent(&user, "record anything about a deficiency")?;
    let request: UpdateRequest = object(&body)?;
    let mut update = audit::deficiency::DeficiencyUpdate {
        deficiency: request.deficiency,
        from: request.from,
        to: request.to,
        significance: request.significance,
        rationale: request.rationale,
        management_response: request.management_response,
        owner: request.owner,
        remediation_due: request.remediation_due,
        remediated_at: request.remediated_at,
        remediation: request.remediation,
        recorded_by: String::new(),
        recorded_at: String::new(),
    };
    if update.sets_assessment() && !has("auditor") {
        return Err(forbidden(
            &user.name,
            "assess a deficiency's significance: that takes the auditor role",
        ));
    }
    if update.sets_response() && !has("change_manager") {
        return Err(forbidden(
            &user.name,
            "record management's response or remediation: that takes the change_manager role",
        ));
    }
    if !update.sets_assessment() && !update.sets_response() {
        return Err(ApiError::unprocessable(
            "nothing_to_record",
            "give at least one of significance, rationale, management_response, owner, \
             remediation_due, remediated_at, remediation",
        ));
    }
    if !audit::deficiency::valid_id(&update.deficiency) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!(
                "`deficiency` must name a control or risk and a kind, like `CM-03:operating` or \
                 `R07:design`, not `{}`",
                shown(&update.deficiency)
            ),
        ));
    }
    let bound = |field: &str, value: &str, end| {
        audit::engagement::period_bound(field, value, end)
            .map_err(|e| ApiError::unprocessable("invalid_field", e))
    };
    let from = bound("`from`", &update.from, false)?;
    let to = bound("`to`", &update.to, true)?;
    if to < from {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "`to` is before `from`",
        ));
    }
    update.from = domain::action::format_instant(from);
    update.to = domain::action::format_instant(to);
    let now = state.clock.now();
    for (field, value) in [
        ("rationale", &mut update.rationale),
        ("management_response", &mut update.management_response),
        ("owner", &mut update.owner),
        ("remediation", &mut update.remediation),
    ] {
        if let Some(v) = value {
            let t = v.trim();
            if t.is_empty()
                || t.len() > TEXT_LIMIT
                || t.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
            {
                return Err(ApiError::unprocessable(
                    "invalid_field",
                    format!(
                        "`{field}` must be non-empty text of at most {TEXT_LIMIT} bytes without \
                         control characters other than line breaks and tabs"
                    ),
                ));
            }
            *v = t.to_string();
        }
    }
    if update
        .owner
        .as_ref()
        .is_some_and(|o| o.chars().any(char::is_control) || o.len() > NAME_LIMIT)
    {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("`owner` must be one line of at most {NAME_LIMIT} bytes"),
        ));
    }
    if let Some(due) = &update.remediation_due {
        let t = bound("`remediation_due`", due, true)?;
        update.remediation_due = Some(domain::action::format_instant(t));
    }
    if let Some(at) = &update.remediated_at {
        let t = domain::action::parse_instant("remediated_at", at)
            .map_err(|e| ApiError::unprocessable("invalid_field", e))?;
        if t > now {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "`remediated_at` is in the future: record a remediation once it is in place, \
                 and a planned date as `remediation_due`",
            ));
        }
        update.remediated_at = Some(domain::action::format_instant(t));
    }
    update.recorded_by = user.name.clone();
    update.recorded_at = domain::action::format_instant(now);
    let write = Write {
        target: Target::None,
        entries: vec![NewEntry {
            time: update.recorded_at.clone(),
            actor: user.name.clone(),
            roles: user.roles.clone(),
            kind: DEFICIENCY_UPDATE_KIND.into(),
            subject: Some(format!("audit:deficiency:{}", update.deficiency)),
            payload: serde_json::json!({ "update": update }),
        }],
        columns: None,
    };
    let written = state.service.submit(write).await?;
    Ok((
        StatusCode::CREATED,
        Json(UpdateRecorded {
            seq: written.seqs.first().copied().unwrap_or_default(),
            update,
        }),
    ))
}

fn forbidden(user: &str, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "role_not_allowed",
        format!("`{user}` may not {what}"),
    )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeficiencyQuery {
    /// Only updates about this deficiency (`CM-03:operating`).
    pub deficiency: Option<String>,
}

/// What was recorded about deficiencies, oldest first, and per deficiency and period what
/// the updates add up to.
#[utoipa::path(
    get, path = "/api/v1/audit/deficiencies", tag = "audit", params(DeficiencyQuery),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_deficiencies(
    State(state): State<AppState>,
    Authenticated(_user): Authenticated,
    query: Result<Query<DeficiencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    if let Some(id) = q
        .deficiency
        .as_deref()
        .filter(|id| !audit::deficiency::valid_id(id))
    {
        return Err(ApiError::unprocessable(
            "invalid_query",
            format!(
                "`deficiency` must name a control or risk and a kind, like `CM-03:operating`, \
                 not `{}`",
                shown(id)
            ),
        ));
    }
    let st = state.clone();
    let updates = tokio::task::spawn_blocking(move || {
        let store = st.service.store.clone();
        st.evidence.projection.read(store.as_ref(), |s| {
            s.deficiency_updates
                .iter()
                .filter(|u| q.deficiency.as_deref().is_none_or(|d| d == u.deficiency))
                .cloned()
                .collect::<Vec<_>>()
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(ServiceError::from)?;
    // Per period, what the updates add up to.
    let mut periods: Vec<(String, String)> = Vec::new();
    for u in &updates {
        let p = (u.from.clone(), u.to.clone());
        if !periods.contains(&p) {
            periods.push(p);
        }
    }
    let mut current = Vec::new();
    for p in &periods {
        for (id, f) in audit::deficiency::fold(&updates, p) {
            current.push(serde_json::json!({
                "deficiency": id,
                "from": p.0,
                "to": p.1,
                "significance": f.significance,
                "rationale": f.rationale,
                "management_response": f.management_response,
                "owner": f.owner,
                "remediation_due": f.remediation_due,
                "remediated_at": f.remediated_at,
                "remediation": f.remediation,
                "history": f.history,
            }));
        }
    }
    Ok(Json(
        serde_json::json!({ "deficiencies": current, "updates": updates }),
    ))
}

/// What an auditor asks the server to run.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EngagementRequest {
    /// First day (from its first second, UTC) or instant (RFC 3339) of the period.
    pub from: String,
    /// Last day (through its last second, UTC) or instant of the period.
    pub to: String,
    pub seed: u64,
    /// The organization's tailoring of the catalog, as the `--controls` file holds it
    /// (`disabled`, `changed`, `added`, `added_risks`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub controls: Option<audit::catalog::Tailoring>,
    /// The firm's sampling settings, as the `--sampling` file holds them.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub sampling: Option<audit::sampling::Sampling>,
    /// The organization the OSCAL document and the report name.
    #[serde(default)]
    pub organization: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EngagementQuery {
    /// `json` (the default: summary, samples and deficiencies), `xlsx` (the workbook),
    /// `oscal` (OSCAL assessment results), `html` (the report) or `engagement` (every
    /// result with its evidence, as `engagement.json`).
    pub format: Option<String>,
}

/// Runs an engagement over the server's ledger, as `changegate audit --data` does, judged
/// as of now, and answers with the format asked for. The run is recorded in the ledger
/// (period, seed, format and the digests of its summary and of the answer), so that what
/// an auditor was shown can be told apart from a rerun.
#[utoipa::path(
    post, path = "/api/v1/audit/engagements", tag = "audit", params(EngagementQuery),
    request_body(content = Object, description = "from, to (days or RFC 3339 instants), seed; optional controls (tailoring), sampling (the firm's settings), organization"),
    responses((status = 201, body = Object), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn engage(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    query: Result<Query<EngagementQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    if !user.roles.iter().any(|r| r == "auditor") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "role_not_allowed",
            format!(
                "`{}` may not run engagements: that takes the auditor role",
                user.name
            ),
        ));
    }
    independent(&user, "run engagements")?;
    let Query(q) = query.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    let format = q.format.unwrap_or_else(|| "json".into());
    let content_type = match format.as_str() {
        "json" | "engagement" => "application/json",
        "oscal" => "application/oscal+json",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "html" => "text/html; charset=utf-8",
        other => {
            return Err(ApiError::unprocessable(
                "invalid_query",
                format!("`format` must be json, engagement, xlsx, oscal or html, not `{other}`"),
            ))
        }
    };
    let req: EngagementRequest = object(&body)?;
    if let Ok(raw) = serde_json::from_slice::<serde_json::Value>(&body) {
        for field in ["controls", "sampling"] {
            if raw
                .get(field)
                .is_some_and(|v| !v.is_object() && !v.is_null())
            {
                return Err(ApiError::unprocessable(
                    "invalid_request",
                    format!("`{field}` must be a JSON object, as its TOML file holds it"),
                ));
            }
        }
    }
    let from = audit::engagement::period_bound("`from`", &req.from, false)
        .map_err(|e| ApiError::unprocessable("invalid_field", e))?;
    let to = audit::engagement::period_bound("`to`", &req.to, true)
        .map_err(|e| ApiError::unprocessable("invalid_field", e))?;
    if to < from {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "`to` is before `from`",
        ));
    }
    let catalog = match &req.controls {
        None => audit::catalog::Catalog::default(),
        Some(t) => audit::catalog::Catalog::default()
            .tailored(t)
            .map_err(|e| ApiError::unprocessable("invalid_tailoring", e.to_string()))?,
    };
    let sampling = req.sampling.clone().unwrap_or_default();
    sampling
        .validate(|id| catalog.control(id).map(|c| c.frequency))
        .map_err(|e| ApiError::unprocessable("invalid_sampling", e.to_string()))?;
    let organization = req
        .organization
        .clone()
        .unwrap_or_else(|| "The service organization".into());
    if organization.trim().is_empty() || organization.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "`organization` must be non-empty text on one line",
        ));
    }
    let now = state.clock.now();
    let st = state.clone();
    let period = (
        domain::action::format_instant(from),
        domain::action::format_instant(to),
    );
    let plan_period = period.clone();
    let seed = req.seed;
    let (e, catalog) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let store = st.service.store.clone();
        let rules = &st.evidence.settings.rules;
        let users: std::collections::BTreeMap<String, audit::UserFacts> = store
            .users()
            .map_err(ServiceError::from)?
            .into_iter()
            .map(|u| {
                (
                    u.name,
                    audit::UserFacts {
                        roles: u.roles,
                        machine: u.machine,
                        active: u.active,
                    },
                )
            })
            .collect();
        let in_period = |t: &str| {
            domain::action::parse_instant("time", t)
                .is_ok_and(|t| audit::engagement::within(t, from, to.min(now)))
        };
        let e = st
            .evidence
            .projection
            .read(store.as_ref(), |s| {
                let mut events = s.production_events(rules);
                let lifecycle = s.lifecycle_deployments(&events, rules);
                events.extend(lifecycle);
                events.retain(|e| match e {
                    audit::ProductionEvent::Commit(c) => in_period(&c.commit_time),
                    audit::ProductionEvent::Deployment(d) => in_period(&d.at),
                });
                let policy = st.service.policy();
                let report = audit::reconcile(&audit::Inputs {
                    events: &events,
                    evidence: &s.evidence,
                    changes: &s.changes,
                    users: &users,
                    policy,
                    rules,
                    as_of: now,
                });
                let implemented: Vec<&domain::Change> = s
                    .changes
                    .values()
                    .filter(|c| c.deployment.as_ref().is_some_and(|d| in_period(&d.at)))
                    .collect();
                let by_now =
                    |t: &str| domain::action::parse_instant("time", t).is_ok_and(|t| t <= now);
                let manual: Vec<audit::engagement::ManualResult> = s
                    .manual_results
                    .iter()
                    .filter(|m| audit::engagement::known_by(m, now))
                    .cloned()
                    .collect();
                let updates: Vec<audit::deficiency::DeficiencyUpdate> = s
                    .deficiency_updates
                    .iter()
                    .filter(|u| by_now(&u.recorded_at))
                    .cloned()
                    .collect();
                let plan = audit::engagement::Plan {
                    period: plan_period,
                    seed,
                    catalog: &catalog,
                    sampling: &sampling,
                    as_of: domain::action::format_instant(now),
                    sources: vec!["the server's ledger".into()],
                };
                audit::engagement::run(&plan, &report, &implemented, &manual, &updates)
                    .map(|mut e| {
                        e.warnings = audit::engagement::manual_warnings(&catalog, &manual);
                        e.warnings
                            .extend(audit::engagement::update_warnings(&e, &updates));
                        e
                    })
                    .map_err(|e| ApiError::unprocessable("sampling_failed", e.to_string()))
            })
            .map_err(ServiceError::from)??;
        Ok((e, catalog))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;

    let summary = audit::engagement::summary(&e);
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        summary.to_string().as_bytes(),
    ));
    let title = format!("Change management controls of {organization}");
    let body: Vec<u8> = match format.as_str() {
        // The results; the ledger entry's seq and the summary's digest are added after.
        "json" => serde_json::to_vec(&serde_json::json!({
            "summary": summary,
            "samples_csv": audit::engagement::samples_csv(&e),
            "deficiencies": e.deficiencies,
            "warnings": e.warnings,
        }))
        .map_err(|e| ApiError::internal(e.to_string()))?,
        "engagement" => serde_json::to_vec(&e).map_err(|e| ApiError::internal(e.to_string()))?,
        "xlsx" => audit::workbook::workbook(&e, &catalog)
            .map_err(|e| ApiError::internal(e.to_string()))?,
        "oscal" => {
            let doc = audit::oscal::assessment_results(
                &e,
                &catalog,
                &audit::oscal::OscalMeta {
                    title: format!(
                        "Change management controls, {} to {}",
                        e.period.0, e.period.1
                    ),
                    version: format!("seed-{}", e.seed),
                    generated: now,
                    organization: organization.clone(),
                    namespace: format!("changegate:{organization}"),
                },
            )
            .map_err(|e| ApiError::unprocessable("oscal_failed", e.to_string()))?;
            serde_json::to_vec(&doc).map_err(|e| ApiError::internal(e.to_string()))?
        }
        _ => audit::report::html(&e, &catalog, &title).into_bytes(),
    };
    let answer_digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let write = Write {
        target: Target::None,
        entries: vec![NewEntry {
            time: domain::action::format_instant(now),
            actor: user.name.clone(),
            roles: user.roles.clone(),
            kind: "audit.engagement_run".into(),
            subject: Some(format!("audit:engagement:{seed}")),
            payload: serde_json::json!({
                "period": {"from": period.0, "to": period.1},
                "seed": seed,
                "format": format,
                "summary_sha256": digest,
                "answer_sha256": answer_digest,
            }),
        }],
        columns: None,
    };
    let written = state.service.submit(write).await?;
    let seq = written.seqs.first().copied().unwrap_or_default();
    if format == "json" {
        let mut answer: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ApiError::internal(e.to_string()))?;
        answer["seq"] = serde_json::json!(seq);
        answer["summary_sha256"] = serde_json::json!(digest);
        answer["answer_sha256"] = serde_json::json!(answer_digest);
        return Ok((StatusCode::CREATED, Json(answer)).into_response());
    }
    Ok((
        StatusCode::CREATED,
        [
            (axum::http::header::CONTENT_TYPE, content_type.to_string()),
            (
                axum::http::HeaderName::from_static("x-changegate-ledger-seq"),
                seq.to_string(),
            ),
            (
                axum::http::HeaderName::from_static("x-changegate-summary-sha256"),
                digest,
            ),
        ],
        body,
    )
        .into_response())
}
