//! Throughput of the ledger's hot paths, as a plain binary (`harness = false`): whole-log
//! verification over 1,000,000 realistic entries, Frontier appends, and canonical encoding.
//!
//! Run with `cargo bench -p changegate-ledger --bench verify`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use ledger::{
    canonical_bytes, leaf_hash, Checkpoint, Entry, Frontier, Hash, StoredEntry, Verifier,
    GENESIS_PREV,
};
use serde_json::json;

const ENTRIES: u64 = 1_000_000;
const CHECKPOINT_EVERY: u64 = 10_000;
const ENCODE_SAMPLE: u64 = 100_000;
const ROUNDS: usize = 3;

const KINDS: [&str; 5] = [
    "change.create",
    "change.evaluate",
    "change.approve",
    "change.implement",
    "change.close",
];
const RISKS: [&str; 3] = ["low", "medium", "high"];

/// An entry shaped like the ones the service writes: a change event with a small payload.
fn entry(seq: u64, prev: Hash) -> Entry {
    let change = seq / 5;
    let hour = seq / 3600 % 24;
    let (minute, second) = (seq / 60 % 60, seq % 60);
    Entry {
        seq,
        prev,
        time: format!("2025-03-14T{hour:02}:{minute:02}:{second:02}Z"),
        actor: format!("user{:03}@example.com", seq % 97),
        roles: vec!["change-manager".into()],
        kind: KINDS[(seq % 5) as usize].into(),
        subject: Some(format!("CHG-{change:07}")),
        payload: json!({
            "title": format!("Rotate TLS certificates on edge-{}", change % 40),
            "risk": RISKS[(change % 3) as usize],
            "hours": 1 + change % 4,
        }),
    }
}

/// The log as a database would hand it back: one byte arena plus per-row columns.
struct Stored {
    arena: Vec<u8>,
    rows: Vec<(u64, usize, usize, Hash)>,
    checkpoints: Vec<Checkpoint>,
}

fn build(key: &SigningKey) -> Stored {
    let mut arena = Vec::with_capacity(ENTRIES as usize * 320);
    let mut rows = Vec::with_capacity(ENTRIES as usize);
    let mut checkpoints = Vec::new();
    let mut frontier = Frontier::new();
    let mut prev = GENESIS_PREV;
    for seq in 0..ENTRIES {
        let bytes = canonical_bytes(&entry(seq, prev));
        let hash = leaf_hash(&bytes);
        let start = arena.len();
        arena.extend_from_slice(&bytes);
        rows.push((seq, start, arena.len(), hash));
        frontier.push(hash);
        prev = hash;
        if (seq + 1) % CHECKPOINT_EVERY == 0 {
            let cp = Checkpoint::sign(key, seq + 1, frontier.root(), prev, "2025-03-15T00:00:00Z");
            checkpoints.push(cp);
        }
    }
    Stored {
        arena,
        rows,
        checkpoints,
    }
}

fn best_of<T>(mut run: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let value = run();
        best = best.min(start.elapsed());
        out = Some(value);
    }
    (best, out.expect("at least one round"))
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let key = SigningKey::from_bytes(&[42; 32]);
    let started = Instant::now();
    let stored = build(&key);
    let mean = stored.arena.len() as f64 / ENTRIES as f64;
    println!(
        "built {ENTRIES} entries ({mean:.0} bytes each on average, {} checkpoints) in {:.2?}",
        stored.checkpoints.len(),
        started.elapsed()
    );

    let (took, summary) = best_of(|| {
        let mut v = Verifier::new(key.verifying_key(), stored.checkpoints.clone());
        for &(seq, start, end, leaf_hash) in &stored.rows {
            let e = StoredEntry {
                seq,
                bytes: &stored.arena[start..end],
                leaf_hash,
            };
            v.push(e).expect("the benchmark log is intact");
        }
        v.finish().expect("the benchmark log is intact")
    });
    assert_eq!(summary.entries, ENTRIES);
    assert_eq!(
        summary.checkpoints_verified as u64,
        ENTRIES / CHECKPOINT_EVERY
    );
    println!(
        "verify:         {:>12.0} entries/s  ({:.1} MB/s, {took:.2?} for {ENTRIES})",
        rate(ENTRIES, took),
        stored.arena.len() as f64 / took.as_secs_f64() / 1e6
    );

    let leaves: Vec<Hash> = stored.rows.iter().map(|r| r.3).collect();
    let (took, root) = best_of(|| {
        let mut f = Frontier::new();
        for &l in &leaves {
            f.push(l);
        }
        f.root()
    });
    assert_eq!(root, summary.root);
    println!("frontier push:  {:>12.0} leaves/s", rate(ENTRIES, took));

    let sample: Vec<Entry> = (0..ENCODE_SAMPLE)
        .map(|s| entry(s, [s as u8; 32]))
        .collect();
    let (took, bytes) = best_of(|| {
        sample
            .iter()
            .map(|e| black_box(canonical_bytes(e)).len())
            .sum::<usize>()
    });
    println!(
        "canonical_bytes:{:>12.0} entries/s  ({:.1} MB/s)",
        rate(ENCODE_SAMPLE, took),
        bytes as f64 / took.as_secs_f64() / 1e6
    );

    let (took, _) = best_of(|| {
        stored
            .rows
            .iter()
            .map(|&(_, s, e, _)| leaf_hash(&stored.arena[s..e])[0] as u64)
            .sum::<u64>()
    });
    println!(
        "leaf_hash only: {:>12.0} entries/s  (for reference)",
        rate(ENTRIES, took)
    );
}
