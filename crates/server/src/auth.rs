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
        let digest = bearer_digest(&parts.headers)?;
        // Looked up on every request, so that a deactivation takes effect at once.
        let store = state.service.store.clone();
        let found = tokio::task::spawn_blocking(move || store.user_by_token(&digest))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        authenticate(found).map(Authenticated)
    }
}

/// The digest of the request's bearer token, or why there is none.
pub fn bearer_digest(headers: &axum::http::HeaderMap) -> Result<String, ApiError> {
    let missing =
        || ApiError::unauthorized("unauthenticated", "send `Authorization: Bearer TOKEN`");
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(missing)?;
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
        .ok_or_else(missing)?;
    Ok(token_digest(token))
}

/// The user a token lookup found, if it may act. Handlers that do their work on a blocking
/// thread look the token up there, in the same hop, and judge the answer with this.
pub fn authenticate(found: Result<Option<User>, store::StoreError>) -> Result<User, ApiError> {
    let user = found
        .map_err(|e| ApiError::from(crate::service::ServiceError::Store(e)))?
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "the API token is not valid"))?;
    if !user.active {
        return Err(ApiError::unauthorized(
            "invalid_token",
            "the API token's user is deactivated",
        ));
    }
    Ok(user)
}
