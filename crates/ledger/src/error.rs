//! The error type for the fallible operations of this crate (decoding, proof construction,
//! frontier restoration, checkpoint verification). Verification of a whole log reports
//! [`crate::Fault`] instead, because it names an event rather than a failed call.

/// Why a ledger operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Bytes that should hold an entry do not.
    #[error("entry does not decode: {0}")]
    Decode(String),
    /// A leaf index at or beyond the end of the tree.
    #[error("leaf index `{index}` is outside a tree of size `{size}`")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A consistency proof asked for an old tree larger than the new one.
    #[error("old size `{old}` is larger than the new size `{new}`")]
    SizeOutOfRange { old: u64, new: u64 },
    /// Stored frontier bytes that are not a frontier.
    #[error("frontier bytes are malformed: {0}")]
    BadFrontier(String),
    /// A checkpoint names a different signing key than the one it is checked against.
    #[error("checkpoint was signed by key `{found}`, not by key `{expected}`")]
    KeyMismatch { expected: String, found: String },
    /// A checkpoint signature that is not 128 hex digits.
    #[error("checkpoint signature is not 64 hex-encoded bytes")]
    MalformedSignature,
    /// A well-formed checkpoint signature that does not verify.
    #[error("checkpoint signature does not verify")]
    BadSignature,
}
