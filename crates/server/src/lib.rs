//! The changegate server: the HTTP API over the lifecycle service, with bearer-token
//! authentication, an OpenAPI document generated from the handlers, structured request
//! logs and Prometheus metrics.

pub mod auth;
pub mod error;
pub mod metrics;
pub mod notify;
pub mod projection;
pub mod routes;
pub mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use time::OffsetDateTime;
use utoipa::OpenApi;

use crate::metrics::Metrics;
use crate::service::Service;

/// Where the current time comes from; injected so tests and the demo control it.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub evidence: Arc<routes::evidence::EvidenceHub>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "changegate",
        description = "IT change management with enforced controls and a tamper-evident ledger."
    ),
    paths(
        routes::changes::create,
        routes::changes::list,
        routes::changes::get,
        routes::changes::act,
        routes::exceptions::list,
        routes::ledger::checkpoint,
        routes::ledger::inclusion,
        routes::ledger::consistency,
        routes::ledger::entry,
        routes::evidence::github,
        routes::evidence::gitlab,
        routes::evidence::report_deployment,
        routes::evidence::gate,
        routes::evidence::release_notes,
        routes::audit::record,
        routes::audit::list,
        routes::audit::engage,
        routes::audit::update_deficiency,
        routes::audit::list_deficiencies,
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI 3 document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The largest webhook body taken: GitHub caps its deliveries at 25 MB, and a push or a
/// pull request with many commits can come near it. Other endpoints take at most 1 MiB.
pub const WEBHOOK_BODY_LIMIT: usize = 25 * 1024 * 1024;

fn webhook_body_limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT)
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/changes",
            post(routes::changes::create).get(routes::changes::list),
        )
        .route("/changes/:id", get(routes::changes::get))
        .route("/changes/:id/actions", post(routes::changes::act))
        .route("/exceptions", get(routes::exceptions::list))
        .route("/ledger/checkpoint", get(routes::ledger::checkpoint))
        .route("/ledger/proof/inclusion", get(routes::ledger::inclusion))
        .route(
            "/ledger/proof/consistency",
            get(routes::ledger::consistency),
        )
        .route("/ledger/entries/:seq", get(routes::ledger::entry))
        .route(
            "/webhooks/github",
            post(routes::evidence::github).layer(webhook_body_limit()),
        )
        .route(
            "/webhooks/gitlab",
            post(routes::evidence::gitlab).layer(webhook_body_limit()),
        )
        .route("/deployments", post(routes::evidence::report_deployment))
        .route(
            "/deployments/:id/release-notes",
            get(routes::evidence::release_notes),
        )
        .route("/gate", post(routes::evidence::gate))
        .route(
            "/audit/results",
            post(routes::audit::record).get(routes::audit::list),
        )
        .route("/audit/engagements", post(routes::audit::engage))
        .route(
            "/audit/deficiencies",
            post(routes::audit::update_deficiency).get(routes::audit::list_deficiencies),
        )
        .route("/openapi.json", get(openapi_json));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(timed_out))
                .timeout(std::time::Duration::from_secs(30)),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access_log,
        ))
        .with_state(state)
}

/// A request that took longer than its limit (including a client that stops sending its
/// body) is answered and its connection freed.
async fn timed_out(_: tower::BoxError) -> error::ApiError {
    error::ApiError::new(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request took longer than 30 seconds",
    )
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

async fn not_found() -> error::ApiError {
    error::ApiError::not_found("no such endpoint")
}

async fn metrics(State(state): State<AppState>) -> Response {
    let store = state.service.store.clone();
    let size = tokio::task::spawn_blocking(move || store.ledger_size().ok())
        .await
        .ok()
        .flatten();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(size),
    )
        .into_response()
}

/// One log line and one metrics sample per request, labelled with the route template so
/// that change ids do not explode the label space.
async fn access_log(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = json_errors(next.run(request).await).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state
        .metrics
        .request(method.as_str(), &route, status, elapsed);
    if route == "/healthz" || route == "/metrics" {
        tracing::debug!(http.method = %method, http.route = %route, http.status = status,
            latency_us = elapsed.as_micros() as u64, "request");
    } else {
        tracing::info!(http.method = %method, http.route = %route, http.status = status,
            latency_us = elapsed.as_micros() as u64, "request");
    }
    response
}

/// Rewrites error answers produced outside the handlers (body too large, method not
/// allowed, unparsable path) into the API's JSON error form.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        axum::http::StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        axum::http::StatusCode::REQUEST_TIMEOUT => "request_timeout",
        s if s.is_server_error() => "internal_error",
        _ => "bad_request",
    };
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_string();
    if message.is_empty() {
        message = status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase();
    }
    let mut rewritten = error::ApiError::new(status, code, message).into_response();
    if let Some(allow) = parts.headers.get(axum::http::header::ALLOW) {
        rewritten
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow.clone());
    }
    rewritten
}

/// Serves the API on a bound listener until the process is stopped.
pub async fn serve(state: AppState, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(listen = %local, "changegate listening");
    // Answers are small and clients wait for each one: send them at once rather than let
    // Nagle's algorithm hold them back.
    axum::serve(listener, router(state))
        .tcp_nodelay(true)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
