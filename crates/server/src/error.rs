//! Errors as the API answers them: an HTTP status and `{"error": {"code", "message"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::RefusalKind;
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::ServiceError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// A machine-readable reason code and a message for people.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn unauthorized(code: &str, message: &str) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    /// Parses a JSON body: syntax errors are 400, well-formed but wrong content is 422.
    pub fn from_json(e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
            }
            Category::Data => ApiError::unprocessable("invalid_request", e.to_string()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Refused(r) => {
                let status = match r.kind {
                    RefusalKind::Forbidden => StatusCode::FORBIDDEN,
                    RefusalKind::Conflict => StatusCode::CONFLICT,
                    RefusalKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                };
                ApiError::new(status, r.code, r.message)
            }
            ServiceError::NotFound(_) => ApiError::not_found(e.to_string()),
            ServiceError::VersionConflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "version_conflict", e.to_string())
            }
            ServiceError::Invalid { code, message } => ApiError::unprocessable(code, message),
            ServiceError::Deactivated(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "user_deactivated", e.to_string())
            }
            ServiceError::Store(_) => {
                tracing::error!(error = %e, "storage failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_error",
                    e.to_string(),
                )
            }
            ServiceError::Corrupt { .. } => {
                tracing::error!(error = %e, "unreadable history");
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
