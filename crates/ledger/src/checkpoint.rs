//! Signed checkpoints: an Ed25519 signature over a log's size, Merkle root and head at a
//! moment, so a later reader can prove the log has not been rewritten or cut short since.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::entry::hex_hash;
use crate::{Hash, LedgerError};

/// First line of every signed message; it pins the meaning and layout of the lines after it.
const DOMAIN: &str = "changegate-checkpoint/v1";

/// A signed statement: "the log had `size` entries with Merkle root `root`, whose last entry
/// hash is `head`, at `time`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub size: u64,
    #[serde(with = "hex_hash")]
    pub root: Hash,
    /// The leaf hash of entry `size - 1`, or [`crate::GENESIS_PREV`] for an empty log.
    #[serde(with = "hex_hash")]
    pub head: Hash,
    /// When the checkpoint was made, as the caller formats it (RFC 3339 UTC by convention).
    pub time: String,
    /// The [`key_id`] of the signing key.
    pub key_id: String,
    /// The Ed25519 signature over [`Checkpoint::signed_message`], as hex.
    pub signature: String,
}

impl Checkpoint {
    /// Makes and signs a checkpoint.
    pub fn sign(key: &SigningKey, size: u64, root: Hash, head: Hash, time: &str) -> Self {
        let mut checkpoint = Checkpoint {
            size,
            root,
            head,
            time: time.to_owned(),
            key_id: key_id(&key.verifying_key()),
            signature: String::new(),
        };
        let signature = key.sign(&checkpoint.signed_message());
        checkpoint.signature = hex::encode(signature.to_bytes());
        checkpoint
    }

    /// The exact bytes the signature covers:
    /// `changegate-checkpoint/v1\n{size}\n{root hex}\n{head hex}\n{time}\n`.
    ///
    /// `key_id` is left out on purpose: the signature already binds the key, and the id is only
    /// a hint for picking which key to check with.
    pub fn signed_message(&self) -> Vec<u8> {
        format!(
            "{DOMAIN}\n{}\n{}\n{}\n{}\n",
            self.size,
            hex::encode(self.root),
            hex::encode(self.head),
            self.time
        )
        .into_bytes()
    }

    /// Checks that `key` signed this checkpoint as it stands.
    ///
    /// Uses strict verification, which rejects malleable signatures and weak keys, so a
    /// checkpoint has exactly one valid signature encoding.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), LedgerError> {
        let expected = key_id(key);
        if self.key_id != expected {
            return Err(LedgerError::KeyMismatch {
                expected,
                found: self.key_id.clone(),
            });
        }
        let mut raw = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut raw)
            .map_err(|_| LedgerError::MalformedSignature)?;
        let signature = Signature::from_bytes(&raw);
        key.verify_strict(&self.signed_message(), &signature)
            .map_err(|_| LedgerError::BadSignature)
    }
}

/// A short public name for a key: hex of the first 8 bytes of SHA-256 of its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn signed_message_layout() {
        let cp = Checkpoint::sign(&key(1), 42, [0x11; 32], [0x22; 32], "2025-06-01T00:00:00Z");
        let want = format!(
            "changegate-checkpoint/v1\n42\n{}\n{}\n2025-06-01T00:00:00Z\n",
            "11".repeat(32),
            "22".repeat(32)
        );
        assert_eq!(cp.signed_message(), want.into_bytes());
    }

    #[test]
    fn key_id_is_sha256_prefix() {
        let vk = key(3).verifying_key();
        let id = key_id(&vk);
        assert_eq!(id.len(), 16);
        assert_eq!(id, hex::encode(&Sha256::digest(vk.to_bytes())[..8]));
        assert_ne!(id, key_id(&key(4).verifying_key()));
    }

    #[test]
    fn malformed_signature_is_reported() {
        let k = key(5);
        let mut cp = Checkpoint::sign(&k, 1, [0; 32], [0; 32], "t");
        cp.signature.pop();
        assert_eq!(
            cp.verify(&k.verifying_key()),
            Err(LedgerError::MalformedSignature)
        );
    }
}
