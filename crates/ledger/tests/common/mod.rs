//! Builders shared by the integration tests: a signed log held as stored rows, and a way to run
//! the verifier over rows after a test has tampered with them.

#![allow(dead_code)] // each test binary uses a different part of this module

use ed25519_dalek::SigningKey;
use ledger::{
    canonical_bytes, leaf_hash, Checkpoint, Entry, Fault, Frontier, Hash, StoredEntry, Summary,
    Verifier, GENESIS_PREV,
};
use serde_json::json;

/// One stored row: the `seq` column, the entry bytes, the stored leaf hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub seq: u64,
    pub bytes: Vec<u8>,
    pub leaf_hash: Hash,
}

pub struct Log {
    pub key: SigningKey,
    pub rows: Vec<Row>,
    pub checkpoints: Vec<Checkpoint>,
}

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn entry(seq: u64, prev: Hash) -> Entry {
    Entry {
        seq,
        prev,
        time: format!("2025-03-{:02}T10:{:02}:00Z", 1 + seq % 28, seq % 60),
        actor: format!("user{}", seq % 7),
        roles: vec!["change-manager".into()],
        kind: "change.approve".into(),
        subject: Some(format!("CHG-{seq:06}")),
        payload: json!({"risk": "medium", "note": format!("step {seq}"), "n": seq}),
    }
}

/// A log of `n` entries with a checkpoint after every `every` entries (never if 0).
pub fn build(n: u64, every: u64) -> Log {
    let key = key(9);
    let mut rows = Vec::new();
    let mut checkpoints = Vec::new();
    let mut frontier = Frontier::new();
    let mut prev = GENESIS_PREV;
    for seq in 0..n {
        let bytes = canonical_bytes(&entry(seq, prev));
        let hash = leaf_hash(&bytes);
        frontier.push(hash);
        rows.push(Row {
            seq,
            bytes,
            leaf_hash: hash,
        });
        prev = hash;
        if every > 0 && (seq + 1) % every == 0 {
            let time = format!("2025-04-01T00:00:{:02}Z", seq % 60);
            checkpoints.push(Checkpoint::sign(
                &key,
                seq + 1,
                frontier.root(),
                prev,
                &time,
            ));
        }
    }
    Log {
        key,
        rows,
        checkpoints,
    }
}

/// Re-encodes `row` with `edit` applied to its entry, leaving the stored hash alone.
pub fn edit_bytes(row: &mut Row, edit: impl FnOnce(&mut Entry)) {
    let mut e = ledger::decode_entry(&row.bytes).unwrap();
    edit(&mut e);
    row.bytes = canonical_bytes(&e);
}

/// Re-encodes `row` with `edit` applied and rewrites its stored hash to match.
pub fn rewrite(row: &mut Row, edit: impl FnOnce(&mut Entry)) {
    edit_bytes(row, edit);
    row.leaf_hash = leaf_hash(&row.bytes);
}

pub fn verify(log: &Log) -> Result<Summary, Fault> {
    verify_rows(log, &log.rows, log.checkpoints.clone())
}

pub fn verify_rows(
    log: &Log,
    rows: &[Row],
    checkpoints: Vec<Checkpoint>,
) -> Result<Summary, Fault> {
    let mut v = Verifier::new(log.key.verifying_key(), checkpoints);
    for r in rows {
        v.push(StoredEntry {
            seq: r.seq,
            bytes: &r.bytes,
            leaf_hash: r.leaf_hash,
        })?;
    }
    v.finish()
}
