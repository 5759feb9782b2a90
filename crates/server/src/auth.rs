//! Bearer-token authentication: a request names its user by an API token, stored only as a
//! SHA-256 digest.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use store::User;

use crate::error::ApiError;
use crate::AppState;

/// The digest under which a token is stored.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh API token: 32 random bytes, hex encoded, with a prefix that makes it
/// recognizable in a leaked log.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("cg_{}", hex::encode(bytes))
}

/// The authenticated user of a request.
pub struct Authenticated(pub User);

#[axum::async_trait]
impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized("unauthenticated", "send `Authorization: Bearer TOKEN`")
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                // The scheme is case-insensitive (RFC 9110, section 11.1).
                let (scheme, token) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("unauthenticated", "send `Authorization: Bearer TOKEN`")
            })?;
        let digest = token_digest(token);
        // Looked up on every request, so that a deactivation takes effect at once.
        let store = state.service.store.clone();
        let user = tokio::task::spawn_blocking(move || store.user_by_token(&digest))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::from(crate::service::ServiceError::Store(e)))?
            .ok_or_else(|| ApiError::unauthorized("invalid_token", "the API token is not valid"))?;
        if !user.active {
            return Err(ApiError::unauthorized(
                "invalid_token",
                "the API token's user is deactivated",
            ));
        }
        Ok(Authenticated(user))
    }
}
