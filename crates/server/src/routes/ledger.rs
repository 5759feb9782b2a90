//! `/api/v1/ledger`: the signed checkpoint, single entries, and inclusion and consistency
//! proofs that let anyone check the log without trusting the server.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::error::{ApiError, ErrorBody};
use crate::service::ServiceError;
use crate::AppState;

/// The latest signed checkpoint and the key that signed it.
#[derive(Serialize, ToSchema)]
pub struct CheckpointView {
    pub size: u64,
    /// Merkle root (hex) over the first `size` entries.
    pub root: String,
    /// Leaf hash (hex) of entry `size - 1`.
    pub head: String,
    pub time: String,
    pub key_id: String,
    /// ed25519 signature (hex) over the checkpoint's signed message.
    pub signature: String,
    /// ed25519 public key (hex).
    pub public_key: String,
}

/// An audit path from one entry to the root of a tree size.
#[derive(Serialize, ToSchema)]
pub struct InclusionProof {
    pub seq: u64,
    pub size: u64,
    pub leaf_hash: String,
    pub root: String,
    pub proof: Vec<String>,
}

/// Proof that the tree of size `to` extends the tree of size `from`.
#[derive(Serialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub from_root: String,
    pub to_root: String,
    pub proof: Vec<String>,
}

/// One entry as stored: its canonical encoding and leaf hash.
#[derive(Serialize, ToSchema)]
pub struct EntryView {
    pub seq: u64,
    pub leaf_hash: String,
    /// The canonical JSON the leaf hash is computed over.
    pub canonical: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    /// The entry's position in the ledger.
    pub seq: u64,
    /// Tree size to prove against (default: the latest checkpoint's).
    pub size: Option<u64>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    pub from: u64,
    /// Default: the latest checkpoint's size.
    pub to: Option<u64>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::from(ServiceError::Store(e)))
}

async fn latest_size(state: &AppState) -> Result<u64, ApiError> {
    let store = state.service.store.clone();
    let checkpoint = blocking(move || store.latest_checkpoint()).await?;
    Ok(checkpoint.map(|c| c.size).unwrap_or(0))
}

/// The latest signed checkpoint.
#[utoipa::path(
    get, path = "/api/v1/ledger/checkpoint", tag = "ledger",
    responses((status = 200, body = CheckpointView), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn checkpoint(
    State(state): State<AppState>,
    Authenticated(_user): Authenticated,
) -> Result<Json<CheckpointView>, ApiError> {
    let store = state.service.store.clone();
    let c = blocking(move || store.latest_checkpoint())
        .await?
        .ok_or_else(|| ApiError::not_found("the ledger is empty: no checkpoint yet"))?;
    Ok(Json(CheckpointView {
        size: c.size,
        root: hex::encode(c.root),
        head: hex::encode(c.head),
        time: c.time,
        key_id: c.key_id,
        signature: c.signature,
        public_key: hex::encode(state.service.store.verifying_key().as_bytes()),
    }))
}

/// The audit path of one entry.
#[utoipa::path(
    get, path = "/api/v1/ledger/proof/inclusion", tag = "ledger", params(InclusionQuery),
    responses((status = 200, body = InclusionProof), (status = 422, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn inclusion(
    State(state): State<AppState>,
    Authenticated(_user): Authenticated,
    query: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InclusionProof>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    let size = match q.size {
        Some(s) => s,
        None => latest_size(&state).await?,
    };
    if q.seq >= size {
        return Err(ApiError::unprocessable(
            "invalid_query",
            format!("entry {} is not in a tree of size {size}", q.seq),
        ));
    }
    check_size(&state, size).await?;
    let store = state.service.store.clone();
    let leaves = blocking(move || store.leaf_hashes(size)).await?;
    let proof = ledger::inclusion_proof(&leaves, q.seq)
        .map_err(|e| ApiError::unprocessable("invalid_query", e.to_string()))?;
    Ok(Json(InclusionProof {
        seq: q.seq,
        size,
        leaf_hash: hex::encode(leaves[q.seq as usize]),
        root: hex::encode(ledger::root(&leaves)),
        proof: proof.iter().map(hex::encode).collect(),
    }))
}

/// Proof that a later tree extends an earlier one.
#[utoipa::path(
    get, path = "/api/v1/ledger/proof/consistency", tag = "ledger", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyProof), (status = 422, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn consistency(
    State(state): State<AppState>,
    Authenticated(_user): Authenticated,
    query: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    let to = match q.to {
        Some(s) => s,
        None => latest_size(&state).await?,
    };
    if q.from == 0 || q.from > to {
        return Err(ApiError::unprocessable(
            "invalid_query",
            format!("`from` must be between 1 and `to` ({to})"),
        ));
    }
    check_size(&state, to).await?;
    let store = state.service.store.clone();
    let leaves = blocking(move || store.leaf_hashes(to)).await?;
    let proof = ledger::consistency_proof(&leaves, q.from)
        .map_err(|e| ApiError::unprocessable("invalid_query", e.to_string()))?;
    Ok(Json(ConsistencyProof {
        from: q.from,
        to,
        from_root: hex::encode(ledger::root(&leaves[..q.from as usize])),
        to_root: hex::encode(ledger::root(&leaves)),
        proof: proof.iter().map(hex::encode).collect(),
    }))
}

async fn check_size(state: &AppState, size: u64) -> Result<(), ApiError> {
    let store = state.service.store.clone();
    let available = blocking(move || store.ledger_size()).await?;
    if size > available {
        return Err(ApiError::unprocessable(
            "invalid_query",
            format!("the ledger has {available} entries, not {size}"),
        ));
    }
    Ok(())
}

/// One entry as stored.
#[utoipa::path(
    get, path = "/api/v1/ledger/entries/{seq}", tag = "ledger",
    params(("seq" = u64, Path, description = "position in the ledger")),
    responses((status = 200, body = EntryView), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn entry(
    State(state): State<AppState>,
    Authenticated(_user): Authenticated,
    Path(seq): Path<u64>,
) -> Result<Json<EntryView>, ApiError> {
    if seq > i64::MAX as u64 {
        return Err(ApiError::not_found(format!(
            "there is no ledger entry {seq}"
        )));
    }
    let store = state.service.store.clone();
    let e = blocking(move || store.entry(seq))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("there is no ledger entry {seq}")))?;
    let canonical = String::from_utf8(ledger::canonical_bytes(&e.entry))
        .map_err(|err| ApiError::internal(err.to_string()))?;
    Ok(Json(EntryView {
        seq: e.seq,
        leaf_hash: hex::encode(e.leaf_hash),
        canonical,
    }))
}
