//! `/api/v1/exceptions`: control exceptions found on changes, such as an emergency change
//! that was not approved after the fact in time, and production change events that the
//! continuous reconciliation found unauthorized or failing a control.

use axum::extract::{Query, State};
use axum::Json;
use domain::{ControlException, ExceptionStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::error::{ApiError, ErrorBody};
use crate::service::ServiceError;
use crate::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExceptionQuery {
    /// `open` (still needs action) or `late` (done, but too late); both by default.
    pub status: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ExceptionList {
    /// Lifecycle exceptions on change records (emergency approvals due or late).
    pub exceptions: Vec<ControlException>,
    /// Production change events, from the evidence received, that are unauthorized or
    /// failed a tested attribute.
    #[schema(value_type = Vec<Object>)]
    pub reconciliation: Vec<audit::VerdictRow>,
    /// Findings about repositories and their protection (weakened or bypassed).
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<audit::Finding>,
}

/// Control exceptions as of now.
#[utoipa::path(
    get, path = "/api/v1/exceptions", tag = "exceptions", params(ExceptionQuery),
    responses((status = 200, body = ExceptionList), (status = 422, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(_user): Authenticated,
    query: Result<Query<ExceptionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ExceptionList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    let wanted = match q.status.as_deref() {
        None => None,
        Some("open") => Some(ExceptionStatus::Open),
        Some("late") => Some(ExceptionStatus::Late),
        Some(other) => {
            return Err(ApiError::unprocessable(
                "invalid_query",
                format!("`status` must be `open` or `late`, not `{other}`"),
            ))
        }
    };
    let now = state.clock.now();
    let service = state.service.clone();
    let exceptions = tokio::task::spawn_blocking(move || -> Result<_, ServiceError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let filter = store::ChangeFilter {
                change_type: Some("emergency".into()),
                after_id: after.clone(),
                limit: 500,
                ..Default::default()
            };
            let rows = service.store.list_changes(&filter)?;
            for row in &rows {
                let change = service.load(&row.id)?.change;
                out.extend(domain::exceptions(&change, service.policy(), now));
            }
            if rows.len() < 500 {
                break;
            }
            after = rows.last().map(|r| r.id.clone());
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let exceptions = exceptions
        .into_iter()
        .filter(|e| wanted.is_none_or(|w| e.status == w))
        .collect();
    let st = state.clone();
    let report = tokio::task::spawn_blocking(move || super::evidence::reconcile_now(&st))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let (reconciliation, findings) = super::evidence::open_rows(report);
    Ok(Json(ExceptionList {
        exceptions,
        reconciliation,
        findings,
    }))
}
