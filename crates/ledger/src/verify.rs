//! Whole-log verification: a streaming check of entries as stored against the hash chain, the
//! Merkle tree and the signed checkpoints, which names the first event that is wrong.
//!
//! # What is checked, in order, for the row at position `p`
//!
//! 1. Its stored `seq` column is `p`. A larger value opens a gap (see below); a smaller one is a
//!    second row for an event already seen ([`FaultKind::Duplicate`]).
//! 2. The leaf hash of its bytes equals the stored leaf hash ([`FaultKind::Edited`]).
//! 3. Its bytes hold an entry's `seq` and `prev` ([`FaultKind::Undecodable`]), and that `seq` is
//!    `p` (a larger one opens a gap, a smaller one is [`FaultKind::Duplicate`]).
//! 4. Its `prev` is the leaf hash of entry `p - 1`, or [`crate::GENESIS_PREV`] for entry 0. A
//!    mismatch means entry `p - 1` was rewritten together with its stored hash after `p` had
//!    committed to it, so `p - 1` is named ([`FaultKind::Unlinked`]).
//! 5. When the log reaches a checkpoint's size, the checkpoint's signature verifies
//!    ([`FaultKind::BadCheckpointSignature`]) and its head and root equal the log's
//!    ([`FaultKind::CheckpointMismatch`]).
//!
//! At the end, a validly signed checkpoint larger than the log means the tail was cut off
//! ([`FaultKind::Truncated`]).
//!
//! # Gaps
//!
//! A row numbered beyond its position is either a deletion or the first half of a swap, and the
//! two look the same until later rows arrive. The verifier then stops checking and only watches
//! for the first skipped number: if it turns up later it is [`FaultKind::Reordered`], and if it
//! has not by [`Verifier::finish`] it is [`FaultKind::Missing`]. Either way the first skipped
//! number is the event named.
//!
//! # Limits
//!
//! An entry after the last checkpoint that is rewritten together with its stored hash, and
//! that has no successor, cannot be detected: nothing else commits to it yet.

use std::fmt;

use ed25519_dalek::VerifyingKey;

use crate::head::decode_head;
use crate::{merkle, Checkpoint, Frontier, Hash, LedgerError, GENESIS_PREV};

/// One row of the log as stored: the `seq` column, the entry bytes, and the stored leaf hash.
#[derive(Debug, Clone, Copy)]
pub struct StoredEntry<'a> {
    pub seq: u64,
    pub bytes: &'a [u8],
    pub leaf_hash: Hash,
}

/// What kind of tampering (or damage) a [`Fault`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The event's bytes do not match its stored hash.
    Edited,
    /// The event is absent: a gap in the numbering that no later row fills.
    Missing,
    /// The event appears at the wrong position.
    Reordered,
    /// A second row claims to be the event.
    Duplicate,
    /// The next event committed to a different version of this one, so this one was rewritten
    /// (bytes and stored hash together); for event 0, its `prev` is not the genesis value.
    Unlinked,
    /// A signed checkpoint covers events beyond the end of the log.
    Truncated,
    /// A checkpoint's signature does not verify under the log's key.
    BadCheckpointSignature,
    /// The log at a checkpoint's size has a different head or root than the checkpoint signed.
    CheckpointMismatch,
    /// The event's bytes do not hold an entry.
    Undecodable,
}

/// The first thing wrong with a log.
///
/// `seq` is the event the fault concerns: the altered, missing, misplaced or duplicated event;
/// for checkpoint faults the last event the checkpoint covers; for truncation the first event
/// that is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub seq: u64,
    pub kind: FaultKind,
    pub message: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fault {}

/// What a clean verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// How many entries the log holds.
    pub entries: u64,
    /// The Merkle root over all of them.
    pub root: Hash,
    /// The leaf hash of the last entry, or [`GENESIS_PREV`] for an empty log.
    pub head: Hash,
    /// How many checkpoints were matched against the log.
    pub checkpoints_verified: usize,
    /// The size of the largest checkpoint matched, if any.
    pub last_checkpoint: Option<u64>,
}

/// Numbers `from..found` were skipped at position `from`; see the module docs on gaps.
#[derive(Debug, Clone, Copy)]
struct Gap {
    from: u64,
    found: u64,
}

/// Streaming verifier over a log's rows in stored order.
///
/// Feed every row to [`Verifier::push`], then call [`Verifier::finish`]. After the first fault
/// every later call returns that same fault, so callers may stop early or keep pushing.
pub struct Verifier {
    key: VerifyingKey,
    checkpoints: Vec<Checkpoint>,
    next_checkpoint: usize,
    frontier: Frontier,
    /// Leaf hash of the last accepted entry: what the next entry's `prev` must be.
    head: Hash,
    /// Rows pushed, accepted or not; differs from the frontier size only after a gap opens.
    position: u64,
    gap: Option<Gap>,
    fault: Option<Fault>,
    checkpoints_verified: usize,
    last_checkpoint: Option<u64>,
    /// False when the caller checks the checkpoint signatures itself, in parallel.
    check_signatures: bool,
}

/// Checks the signature of every checkpoint, and returns the first bad one as a fault. A
/// caller may run this on another thread while a [`Verifier`] built with
/// [`Verifier::signatures_checked_elsewhere`] walks the log.
pub fn verify_signatures(key: &VerifyingKey, checkpoints: &[Checkpoint]) -> Result<(), Fault> {
    let mut sorted: Vec<&Checkpoint> = checkpoints.iter().collect();
    sorted.sort_by_key(|c| c.size);
    for cp in sorted {
        if let Err(err) = cp.verify(key) {
            return Err(bad_signature(cp, &err));
        }
    }
    Ok(())
}

impl Verifier {
    /// A verifier for a log signed by `key`. `checkpoints` need not be sorted; they are sorted by
    /// size here because they are matched in log order.
    pub fn new(key: VerifyingKey, mut checkpoints: Vec<Checkpoint>) -> Self {
        checkpoints.sort_by_key(|c| c.size);
        Self {
            key,
            checkpoints,
            next_checkpoint: 0,
            frontier: Frontier::new(),
            head: GENESIS_PREV,
            position: 0,
            gap: None,
            fault: None,
            checkpoints_verified: 0,
            last_checkpoint: None,
            check_signatures: true,
        }
    }

    /// Leaves the signature checks of checkpoints inside the log to the caller (see
    /// [`verify_signatures`]); roots, heads and sizes are still matched here. Signatures
    /// are the costliest part of verification, and another core can do them meanwhile.
    pub fn signatures_checked_elsewhere(mut self) -> Self {
        self.check_signatures = false;
        self
    }

    /// Checks the next row.
    pub fn push(&mut self, e: StoredEntry<'_>) -> Result<(), Fault> {
        if let Some(fault) = &self.fault {
            return Err(fault.clone());
        }
        let result = match self.gap {
            Some(gap) => self.watch_gap(gap, &e),
            None => self.check(&e),
        };
        self.position += 1;
        if let Err(fault) = &result {
            self.fault = Some(fault.clone());
        }
        result
    }

    /// Ends verification: reports a gap that was never filled, checks checkpoints at the final
    /// size, and reports truncation if a valid checkpoint reaches past the end.
    pub fn finish(mut self) -> Result<Summary, Fault> {
        if let Some(fault) = self.fault {
            return Err(fault);
        }
        if let Some(gap) = self.gap {
            return Err(missing(gap));
        }
        // Only reachable without a push for an empty log, whose size-0 checkpoints are still due.
        self.settle()?;
        let entries = self.frontier.size();
        let beyond = &self.checkpoints[self.next_checkpoint..];
        // One validly signed checkpoint past the end proves truncation; forged ones prove only
        // that someone forged them, so they are reported only if no valid one exists.
        if let Some(cp) = beyond.iter().find(|cp| cp.verify(&self.key).is_ok()) {
            let message = match entries {
                0 => format!(
                    "the log was truncated: a checkpoint signed at size {} covers events 0 to {}, \
                     but the log is empty",
                    cp.size,
                    cp.size - 1
                ),
                _ => format!(
                    "the log was truncated: a checkpoint signed at size {} covers events up to \
                     {}, but the log ends at event {}",
                    cp.size,
                    cp.size - 1,
                    entries - 1
                ),
            };
            return Err(Fault {
                seq: entries,
                kind: FaultKind::Truncated,
                message,
            });
        }
        if let Some(cp) = beyond.first() {
            if let Err(err) = cp.verify(&self.key) {
                return Err(bad_signature(cp, &err));
            }
        }
        Ok(Summary {
            entries,
            root: self.frontier.root(),
            head: self.head,
            checkpoints_verified: self.checkpoints_verified,
            last_checkpoint: self.last_checkpoint,
        })
    }

    /// Checks one row while no gap is open.
    fn check(&mut self, e: &StoredEntry<'_>) -> Result<(), Fault> {
        // Checkpoints of size 0 fall due before the first row.
        self.settle()?;
        let pos = self.frontier.size();
        if e.seq > pos {
            self.gap = Some(Gap {
                from: pos,
                found: e.seq,
            });
            return Ok(());
        }
        if e.seq < pos {
            return Err(Fault {
                seq: e.seq,
                kind: FaultKind::Duplicate,
                message: format!(
                    "event {} appears twice: it is stored again at position {pos}",
                    e.seq
                ),
            });
        }
        let hash = merkle::leaf_hash(e.bytes);
        if hash != e.leaf_hash {
            return Err(Fault {
                seq: pos,
                kind: FaultKind::Edited,
                message: format!("event {pos} was altered: its hash does not match its content"),
            });
        }
        let Some((seq, prev)) = decode_head(e.bytes) else {
            return Err(Fault {
                seq: pos,
                kind: FaultKind::Undecodable,
                message: format!(
                    "event {pos} is unreadable: its stored bytes are not a ledger entry"
                ),
            });
        };
        if seq > pos {
            self.gap = Some(Gap {
                from: pos,
                found: seq,
            });
            return Ok(());
        }
        if seq < pos {
            let message = if hash == self.head {
                format!("event {seq} appears twice: position {pos} holds a copy of it")
            } else {
                format!(
                    "event {seq} appears twice: position {pos} holds another entry numbered {seq}"
                )
            };
            return Err(Fault {
                seq,
                kind: FaultKind::Duplicate,
                message,
            });
        }
        if prev != self.head {
            return Err(match pos {
                0 => Fault {
                    seq: 0,
                    kind: FaultKind::Unlinked,
                    message: "event 0 was altered: its `prev` is not the genesis value".into(),
                },
                _ => Fault {
                    seq: pos - 1,
                    kind: FaultKind::Unlinked,
                    message: format!(
                        "event {} was altered: event {pos} committed to a different hash for it",
                        pos - 1
                    ),
                },
            });
        }
        self.frontier.push(hash);
        self.head = hash;
        self.settle()
    }

    /// While a gap is open, looks only for the first skipped number, in the `seq` column or in
    /// the bytes, to tell a swap from a deletion.
    ///
    /// Only the first number counts: when rows `a` and `b` swap, the rows between them are in
    /// their right places, and only `a` turning up later shows that `a` was moved, not lost.
    fn watch_gap(&self, gap: Gap, e: &StoredEntry<'_>) -> Result<(), Fault> {
        let reappears =
            e.seq == gap.from || decode_head(e.bytes).is_some_and(|(seq, _)| seq == gap.from);
        if !reappears {
            return Ok(());
        }
        Err(Fault {
            seq: gap.from,
            kind: FaultKind::Reordered,
            message: format!(
                "event {} is out of order: event {} is stored in its place and it comes later, \
                 at position {}",
                gap.from, gap.found, self.position
            ),
        })
    }

    /// Matches every checkpoint whose size the log has just reached.
    fn settle(&mut self) -> Result<(), Fault> {
        let size = self.frontier.size();
        while let Some(cp) = self.checkpoints.get(self.next_checkpoint) {
            if cp.size > size {
                break;
            }
            if self.check_signatures {
                if let Err(err) = cp.verify(&self.key) {
                    return Err(bad_signature(cp, &err));
                }
            }
            // Sizes are settled one at a time from 0, so a smaller size was matched already.
            debug_assert_eq!(cp.size, size);
            let last = size.saturating_sub(1);
            if cp.head != self.head {
                let message = match size {
                    0 => "the checkpoint at size 0 does not describe an empty log".to_string(),
                    _ => format!(
                        "event {last} was altered: it does not match the head signed in the \
                         checkpoint at size {size}"
                    ),
                };
                return Err(Fault {
                    seq: last,
                    kind: FaultKind::CheckpointMismatch,
                    message,
                });
            }
            if cp.root != self.frontier.root() {
                return Err(Fault {
                    seq: last,
                    kind: FaultKind::CheckpointMismatch,
                    message: format!(
                        "the log's merkle root at size {size} does not match the signed checkpoint"
                    ),
                });
            }
            self.checkpoints_verified += 1;
            self.last_checkpoint = Some(size);
            self.next_checkpoint += 1;
        }
        Ok(())
    }
}

fn missing(gap: Gap) -> Fault {
    let message = if gap.found == gap.from + 1 {
        format!("event {} is missing", gap.from)
    } else {
        format!("events {} to {} are missing", gap.from, gap.found - 1)
    };
    Fault {
        seq: gap.from,
        kind: FaultKind::Missing,
        message,
    }
}

fn bad_signature(cp: &Checkpoint, err: &LedgerError) -> Fault {
    Fault {
        seq: cp.size.saturating_sub(1),
        kind: FaultKind::BadCheckpointSignature,
        message: format!(
            "the checkpoint at size {} is not validly signed: {err}",
            cp.size
        ),
    }
}
