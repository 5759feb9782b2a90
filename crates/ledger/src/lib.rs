//! The tamper-evident ledger: canonical encoding of entries, the hash chain that links each
//! entry to its predecessor, the RFC 6962 Merkle tree over all entries, signed checkpoints,
//! inclusion and consistency proofs, and verification of a whole log.
//!
//! Pure: no clock, no disk, no database. Callers pass entries and keys in.
//!
//! The pieces fit together like this: an [`Entry`] is encoded with [`canonical_bytes`]; the
//! [`leaf_hash`] of those bytes is both the entry's Merkle leaf and the `prev` of the next entry;
//! a writer keeps a [`Frontier`] to know the Merkle root after every append and periodically
//! signs a [`Checkpoint`] of size, root and head; a [`Verifier`] replays the stored log against
//! those checkpoints and names the first event that is wrong.

mod checkpoint;
mod entry;
mod error;
mod frontier;
mod head;
mod merkle;
mod verify;

pub use checkpoint::{key_id, Checkpoint};
pub use entry::{canonical_bytes, decode_entry, entry_hash, parse_hash, Entry, GENESIS_PREV};
pub use error::LedgerError;
pub use frontier::Frontier;
pub use merkle::{
    consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root, verify_consistency,
    verify_inclusion,
};
pub use verify::{verify_signatures, Fault, FaultKind, StoredEntry, Summary, Verifier};

/// A SHA-256 digest.
pub type Hash = [u8; 32];
