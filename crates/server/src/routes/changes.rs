//! `/api/v1/changes`: request a change, read it with its events, list changes, act on one.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use domain::{Action, Change, ChangeEvent, NewChange};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::error::{ApiError, ErrorBody};
use crate::service::{Service, ServiceError};
use crate::AppState;

/// A change as the API shows it: its derived state and the events it was derived from.
#[derive(Serialize, ToSchema)]
pub struct ChangeView {
    pub id: String,
    pub stage: String,
    pub version: u64,
    /// The stages of this change's model, in order.
    pub model: Vec<String>,
    /// The full derived state (title, type, category, systems, risk, plan, window,
    /// approvals with their fate, deployment, …).
    pub change: Change,
    pub exceptions: Vec<domain::ControlException>,
    pub events: Vec<EventView>,
}

/// One recorded event of a change.
#[derive(Serialize, ToSchema)]
pub struct EventView {
    /// Position in the ledger.
    pub seq: u64,
    pub time: String,
    pub actor: String,
    /// The roles the actor held when acting.
    pub roles: Vec<String>,
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    /// The ledger leaf hash (hex), for inclusion proofs.
    pub leaf_hash: String,
}

/// The answer to an action.
#[derive(Serialize, ToSchema)]
pub struct ActionResult {
    pub id: String,
    pub stage: String,
    pub version: u64,
    /// What the action recorded, including approvals it invalidated.
    pub event: ChangeEvent,
}

/// The answer to a new change.
#[derive(Serialize, ToSchema)]
pub struct Created {
    pub id: String,
    pub stage: String,
    pub version: u64,
}

/// One row of a change listing.
#[derive(Serialize, ToSchema)]
pub struct ChangeSummary {
    pub id: String,
    pub stage: String,
    pub version: u64,
    #[serde(rename = "type")]
    pub change_type: String,
    pub category: String,
    pub title: String,
    pub requester: String,
    pub assignee: Option<String>,
    pub risk: Option<String>,
    pub systems: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A page of changes; pass `next` as `after` for the following page.
#[derive(Serialize, ToSchema)]
pub struct ChangePage {
    pub changes: Vec<ChangeSummary>,
    pub next: Option<String>,
}

/// Filters and paging of the change listing.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub stage: Option<String>,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub change_type: Option<String>,
    pub category: Option<String>,
    pub requester: Option<String>,
    pub assignee: Option<String>,
    pub system: Option<String>,
    /// Return changes after this id.
    pub after: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u32>,
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(ApiError::from_json)
}

/// Requests a new change.
#[utoipa::path(
    post, path = "/api/v1/changes", tag = "changes",
    request_body = NewChange,
    responses(
        (status = 201, body = Created),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    body: Bytes,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let value: Value = parse_body(&body)?;
    if !value.is_object() {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "the body must be a JSON object",
        ));
    }
    let new: NewChange = serde_json::from_value(value).map_err(ApiError::from_json)?;
    let actor = Service::actor(&user)?;
    let now = state.clock.now();
    let result = state.service.create(&actor, new, now).await;
    let change = record_outcome(&state, "request", &user.name, "", result)?;
    tracing::info!(change.id = %change.id, actor = %user.name, "change requested");
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id: change.id,
            stage: change.stage.to_string(),
            version: change.version,
        }),
    ))
}

/// Takes one action on a change.
#[utoipa::path(
    post, path = "/api/v1/changes/{id}/actions", tag = "changes",
    params(("id" = String, Path, description = "change id, like CHG-000001")),
    request_body(
        content = Action,
        description = "`action` and its fields; an optional `expected_version` (whole \
            number) makes the action fail with 409 when the change moved on meanwhile"
    ),
    responses(
        (status = 200, body = ActionResult),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn act(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ActionResult>, ApiError> {
    let mut value: Value = parse_body(&body)?;
    if !value.is_object() {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "the body must be a JSON object",
        ));
    }
    let expected_version = match value
        .as_object_mut()
        .and_then(|o| o.remove("expected_version"))
    {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_request",
                "`expected_version` must be a whole number",
            )
        })?),
    };
    let action: Action = serde_json::from_value(value).map_err(ApiError::from_json)?;
    if matches!(action, Action::Request(_)) {
        return Err(ApiError::unprocessable(
            "invalid_action",
            "a change is requested with POST /api/v1/changes",
        ));
    }
    let kind = action.kind().to_string();
    let actor = Service::actor(&user)?;
    let clock = state.clock.clone();
    let now = move || clock.now();
    let result = state
        .service
        .act(&actor, &id, action, expected_version, &now)
        .await;
    let (change, event) = record_outcome(&state, &kind, &user.name, &id, result)?;
    tracing::info!(
        change.id = %id, action = %kind, actor = %user.name,
        stage.from = %event.stage_from, stage.to = %event.stage_to, "action recorded"
    );
    Ok(Json(ActionResult {
        id: change.id,
        stage: change.stage.to_string(),
        version: change.version,
        event,
    }))
}

fn record_outcome<T>(
    state: &AppState,
    action: &str,
    actor: &str,
    id: &str,
    result: Result<T, ServiceError>,
) -> Result<T, ApiError> {
    match result {
        Ok(v) => {
            state.metrics.action(action);
            Ok(v)
        }
        Err(e) => {
            let err = ApiError::from(e);
            state.metrics.refusal(&err.code);
            if err.status.is_client_error() {
                tracing::warn!(
                    change.id = %id, action, actor, code = %err.code, message = %err.message,
                    "action refused"
                );
            }
            Err(err)
        }
    }
}

/// Reads one change with its events.
#[utoipa::path(
    get, path = "/api/v1/changes/{id}", tag = "changes",
    params(("id" = String, Path, description = "change id")),
    responses((status = 200, body = ChangeView), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Authenticated(_user): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ChangeView>, ApiError> {
    let service = state.service.clone();
    let loaded = tokio::task::spawn_blocking(move || service.load(&id))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let now = state.clock.now();
    let policy = state.service.policy();
    let change = loaded.change;
    let model = policy
        .model(change.change_type, change.category, change.testable)
        .stages
        .iter()
        .map(|s| s.to_string())
        .collect();
    let exceptions = domain::exceptions(&change, policy, now);
    let events = loaded
        .events
        .into_iter()
        .map(|e| EventView {
            seq: e.seq,
            time: e.entry.time,
            actor: e.entry.actor,
            roles: e.entry.roles,
            kind: e.entry.kind,
            payload: e.entry.payload,
            leaf_hash: hex::encode(e.leaf_hash),
        })
        .collect();
    Ok(Json(ChangeView {
        id: change.id.clone(),
        stage: change.stage.to_string(),
        version: change.version,
        model,
        change,
        exceptions,
        events,
    }))
}

/// Lists changes, oldest first, with filters.
#[utoipa::path(
    get, path = "/api/v1/changes", tag = "changes",
    params(ListQuery),
    responses((status = 200, body = ChangePage), (status = 422, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(_user): Authenticated,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ChangePage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::unprocessable(
            "invalid_query",
            "`limit` must be between 1 and 500",
        ));
    }
    check_word::<domain::Stage>("stage", &q.stage)?;
    check_word::<domain::ChangeType>("type", &q.change_type)?;
    check_word::<domain::Category>("category", &q.category)?;
    let filter = store::ChangeFilter {
        stage: q.stage,
        change_type: q.change_type,
        category: q.category,
        requester: q.requester,
        assignee: q.assignee,
        system: q.system,
        after_id: q.after,
        limit: limit + 1,
    };
    let store = state.service.store.clone();
    let mut rows = tokio::task::spawn_blocking(move || store.list_changes(&filter))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::from(ServiceError::Store(e)))?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    let changes = rows
        .into_iter()
        .map(|r| ChangeSummary {
            id: r.id,
            stage: r.stage,
            version: r.version,
            change_type: r.change_type,
            category: r.category,
            title: r.title,
            requester: r.requester,
            assignee: r.assignee,
            risk: r.risk,
            systems: r.systems,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
        .collect();
    Ok(Json(ChangePage { changes, next }))
}

fn check_word<T: std::str::FromStr<Err = domain::vocab::UnknownWord>>(
    field: &str,
    value: &Option<String>,
) -> Result<(), ApiError> {
    if let Some(v) = value {
        v.parse::<T>()
            .map_err(|e| ApiError::unprocessable("invalid_query", format!("`{field}`: {e}")))?;
    }
    Ok(())
}
