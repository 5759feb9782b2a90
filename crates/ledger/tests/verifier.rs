//! Whole-log verification: an intact log passes, and each kind of tampering is reported with
//! the right kind and names the right event.

mod common;

use common::{build, edit_bytes, key, rewrite, verify, verify_rows, Row};
use ledger::{
    leaf_hash, root, Checkpoint, Fault, FaultKind, Frontier, Hash, StoredEntry, Verifier,
    GENESIS_PREV,
};

fn fault(result: Result<ledger::Summary, Fault>) -> Fault {
    match result {
        Ok(summary) => panic!("tampering went unnoticed: {summary:?}"),
        Err(fault) => fault,
    }
}

fn assert_fault(result: Result<ledger::Summary, Fault>, kind: FaultKind, seq: u64) -> Fault {
    let f = fault(result);
    assert_eq!((f.kind, f.seq), (kind, seq), "{}", f.message);
    f
}

#[test]
fn intact_log_passes_with_summary() {
    let log = build(95, 10);
    let summary = verify(&log).unwrap();
    let leaves: Vec<Hash> = log.rows.iter().map(|r| r.leaf_hash).collect();
    assert_eq!(summary.entries, 95);
    assert_eq!(summary.root, root(&leaves));
    assert_eq!(summary.head, leaves[94]);
    assert_eq!(summary.checkpoints_verified, 9);
    assert_eq!(summary.last_checkpoint, Some(90));
}

#[test]
fn empty_log_passes_and_honours_a_size_zero_checkpoint() {
    let log = build(0, 0);
    let summary = verify(&log).unwrap();
    assert_eq!((summary.entries, summary.root), (0, ledger::empty_root()));
    assert_eq!(summary.last_checkpoint, None);

    let zero = Checkpoint::sign(&log.key, 0, ledger::empty_root(), GENESIS_PREV, "t");
    let summary = verify_rows(&log, &[], vec![zero.clone()]).unwrap();
    assert_eq!(summary.last_checkpoint, Some(0));

    // A size-0 checkpoint is also due before the first row of a non-empty log.
    let log = build(3, 0);
    let summary = verify_rows(&log, &log.rows, vec![zero]).unwrap();
    assert_eq!((summary.entries, summary.checkpoints_verified), (3, 1));
}

#[test]
fn checkpoints_may_be_given_in_any_order() {
    let mut log = build(40, 10);
    log.checkpoints.reverse();
    assert_eq!(verify(&log).unwrap().checkpoints_verified, 4);
}

#[test]
fn edited_bytes_name_the_event() {
    for k in [0, 1, 17, 19, 20, 49] {
        let mut log = build(50, 10);
        edit_bytes(&mut log.rows[k], |e| e.actor = "mallory".into());
        let f = assert_fault(verify(&log), FaultKind::Edited, k as u64);
        assert_eq!(
            f.message,
            format!("event {k} was altered: its hash does not match its content")
        );
    }
}

#[test]
fn edited_bytes_and_hash_are_caught_by_the_next_link() {
    for k in [0, 12, 18] {
        let mut log = build(50, 10);
        rewrite(&mut log.rows[k], |e| e.payload["risk"] = "low".into());
        let f = assert_fault(verify(&log), FaultKind::Unlinked, k as u64);
        let next = k + 1;
        assert_eq!(
            f.message,
            format!("event {k} was altered: event {next} committed to a different hash for it")
        );
    }
}

#[test]
fn edited_bytes_and_hash_at_a_checkpoint_are_caught_by_its_head() {
    let mut log = build(50, 10);
    rewrite(&mut log.rows[29], |e| e.kind = "change.reject".into());
    let f = assert_fault(verify(&log), FaultKind::CheckpointMismatch, 29);
    assert!(
        f.message.starts_with("event 29 was altered"),
        "{}",
        f.message
    );
}

#[test]
fn rewritten_last_entry_after_the_last_checkpoint_goes_unnoticed() {
    // Documented limit: nothing commits to the newest entry until a successor or checkpoint
    // does. This pins the limit so a change in coverage is noticed.
    let mut log = build(25, 10);
    rewrite(&mut log.rows[24], |e| e.actor = "mallory".into());
    assert!(verify(&log).is_ok());
    log.checkpoints
        .push(Checkpoint::sign(&log.key, 25, [0; 32], [0; 32], "t"));
    assert_fault(verify(&log), FaultKind::CheckpointMismatch, 24);
}

#[test]
fn first_entry_must_start_from_genesis() {
    let mut log = build(5, 0);
    rewrite(&mut log.rows[0], |e| e.prev = [1; 32]);
    let f = assert_fault(verify(&log), FaultKind::Unlinked, 0);
    assert!(f.message.contains("genesis"), "{}", f.message);
}

#[test]
fn deleted_rows_are_missing() {
    let mut log = build(50, 10);
    log.rows.remove(23);
    let f = assert_fault(verify(&log), FaultKind::Missing, 23);
    assert_eq!(f.message, "event 23 is missing");

    let mut log = build(50, 10);
    log.rows.drain(5..8);
    let f = assert_fault(verify(&log), FaultKind::Missing, 5);
    assert_eq!(f.message, "events 5 to 7 are missing");

    let mut log = build(50, 10);
    log.rows.remove(0);
    assert_fault(verify(&log), FaultKind::Missing, 0);
}

#[test]
fn deleted_row_with_renumbered_column_is_missing() {
    // The `seq` column is renumbered to hide the hole; the bytes still say which event is next.
    let mut log = build(30, 0);
    log.rows.remove(11);
    for (i, row) in log.rows.iter_mut().enumerate() {
        row.seq = i as u64;
    }
    let f = assert_fault(verify(&log), FaultKind::Missing, 11);
    assert_eq!(f.message, "event 11 is missing");
}

#[test]
fn swapped_rows_are_reordered() {
    for (a, b) in [(3, 4), (3, 9), (0, 49), (10, 11)] {
        // Whole rows swapped: the `seq` column moves with them, as when read in insertion order.
        let mut log = build(50, 10);
        log.rows.swap(a, b);
        let f = assert_fault(verify(&log), FaultKind::Reordered, a as u64);
        assert!(
            f.message.starts_with(&format!("event {a} is out of order")),
            "{}",
            f.message
        );

        // Contents swapped under a fixed `seq` column, hashes moved along with the bytes.
        let mut log = build(50, 10);
        let (ra, rb) = (log.rows[a].clone(), log.rows[b].clone());
        log.rows[a] = Row {
            seq: a as u64,
            ..rb
        };
        log.rows[b] = Row {
            seq: b as u64,
            ..ra
        };
        assert_fault(verify(&log), FaultKind::Reordered, a as u64);
    }
}

#[test]
fn truncated_tail_is_reported_from_the_last_checkpoint() {
    let mut log = build(50, 10);
    log.rows.truncate(33);
    let f = assert_fault(verify(&log), FaultKind::Truncated, 33);
    assert!(f.message.contains("size 40"), "{}", f.message);
    assert!(f.message.contains("ends at event 32"), "{}", f.message);

    let mut log = build(20, 10);
    log.rows.clear();
    let f = assert_fault(verify(&log), FaultKind::Truncated, 0);
    assert!(f.message.contains("the log is empty"), "{}", f.message);
}

#[test]
fn truncation_at_a_checkpoint_boundary_is_invisible_without_a_later_checkpoint() {
    let mut log = build(50, 10);
    log.checkpoints.retain(|c| c.size <= 30);
    log.rows.truncate(30);
    assert_eq!(verify(&log).unwrap().last_checkpoint, Some(30));
}

#[test]
fn duplicated_rows_are_reported() {
    // A second row with the same `seq` column.
    let mut log = build(30, 10);
    let copy = log.rows[14].clone();
    log.rows.insert(15, copy);
    let f = assert_fault(verify(&log), FaultKind::Duplicate, 14);
    assert!(
        f.message.starts_with("event 14 appears twice"),
        "{}",
        f.message
    );

    // A copy slipped in under a fresh `seq`, with later rows renumbered to make room.
    let mut log = build(30, 10);
    let copy = log.rows[14].clone();
    log.rows.insert(15, copy);
    for (i, row) in log.rows.iter_mut().enumerate() {
        row.seq = i as u64;
    }
    let f = assert_fault(verify(&log), FaultKind::Duplicate, 14);
    assert!(f.message.contains("holds a copy of it"), "{}", f.message);
}

#[test]
fn forged_checkpoint_signatures_are_rejected() {
    // Signature bytes altered.
    let mut log = build(50, 10);
    let sig = &mut log.checkpoints[2].signature;
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    sig.replace_range(..1, flipped);
    assert_fault(verify(&log), FaultKind::BadCheckpointSignature, 29);

    // A signed field altered after signing.
    let mut log = build(50, 10);
    log.checkpoints[1].time = "2030-01-01T00:00:00Z".into();
    assert_fault(verify(&log), FaultKind::BadCheckpointSignature, 19);

    // Signed by another key claiming to be the log's key.
    let mut log = build(50, 10);
    let c = &log.checkpoints[3];
    let mut forged = Checkpoint::sign(&key(1), c.size, c.root, c.head, &c.time);
    forged.key_id = c.key_id.clone();
    log.checkpoints[3] = forged;
    let f = assert_fault(verify(&log), FaultKind::BadCheckpointSignature, 39);
    assert!(f.message.contains("size 40"), "{}", f.message);

    // Signed by another key that names itself.
    let mut log = build(50, 10);
    let c = &log.checkpoints[0];
    log.checkpoints[0] = Checkpoint::sign(&key(1), c.size, c.root, c.head, &c.time);
    let f = assert_fault(verify(&log), FaultKind::BadCheckpointSignature, 9);
    assert!(f.message.contains("not by key"), "{}", f.message);
}

#[test]
fn forged_checkpoint_past_the_end_is_not_truncation() {
    let mut log = build(50, 10);
    let mut forged = Checkpoint::sign(&key(1), 80, [3; 32], [4; 32], "t");
    forged.key_id = log.checkpoints[0].key_id.clone();
    log.checkpoints.push(forged);
    let f = assert_fault(verify(&log), FaultKind::BadCheckpointSignature, 79);
    assert!(f.message.contains("size 80"), "{}", f.message);

    // But a valid one past the end still proves truncation even beside a forged one.
    let mut log = build(50, 10);
    let mut forged = Checkpoint::sign(&key(1), 45, [3; 32], [4; 32], "t");
    forged.key_id = log.checkpoints[0].key_id.clone();
    log.checkpoints.push(forged);
    log.rows.truncate(41);
    assert_fault(verify(&log), FaultKind::Truncated, 41);
}

#[test]
fn validly_signed_checkpoint_with_a_wrong_root_mismatches() {
    let mut log = build(30, 10);
    let c = log.checkpoints[1].clone();
    log.checkpoints[1] = Checkpoint::sign(&log.key, c.size, [7; 32], c.head, &c.time);
    let f = assert_fault(verify(&log), FaultKind::CheckpointMismatch, 19);
    assert!(
        f.message.contains("merkle root at size 20"),
        "{}",
        f.message
    );
}

#[test]
fn undecodable_bytes_with_a_matching_hash() {
    let mut log = build(10, 0);
    log.rows[4].bytes = b"{\"seq\":4}".to_vec();
    log.rows[4].leaf_hash = leaf_hash(&log.rows[4].bytes);
    let f = assert_fault(verify(&log), FaultKind::Undecodable, 4);
    assert_eq!(
        f.message,
        "event 4 is unreadable: its stored bytes are not a ledger entry"
    );
}

#[test]
fn seq_inside_the_bytes_must_match_the_position() {
    // Bytes and hash rewritten to claim a later number: the real event 6 is gone.
    let mut log = build(20, 0);
    rewrite(&mut log.rows[6], |e| e.seq = 12);
    assert_fault(verify(&log), FaultKind::Missing, 6);

    // Rewritten to claim an earlier number that is not an exact copy.
    let mut log = build(20, 0);
    rewrite(&mut log.rows[6], |e| e.seq = 2);
    let f = assert_fault(verify(&log), FaultKind::Duplicate, 2);
    assert!(
        f.message.contains("another entry numbered 2"),
        "{}",
        f.message
    );
}

#[test]
fn the_first_fault_wins_and_sticks() {
    let mut log = build(40, 10);
    edit_bytes(&mut log.rows[5], |e| e.actor = "x".into());
    edit_bytes(&mut log.rows[25], |e| e.actor = "y".into());
    log.rows.truncate(35);
    let mut v = Verifier::new(log.key.verifying_key(), log.checkpoints.clone());
    let mut first = None;
    for r in &log.rows {
        if let Err(f) = v.push(StoredEntry {
            seq: r.seq,
            bytes: &r.bytes,
            leaf_hash: r.leaf_hash,
        }) {
            assert_eq!(f.seq, 5);
            first.get_or_insert(f);
        }
    }
    let end = v.finish().unwrap_err();
    assert_eq!(Some(end), first);
}

#[test]
fn fault_displays_its_message_and_is_an_error() {
    let mut log = build(3, 0);
    log.rows.remove(1);
    let f = fault(verify(&log));
    assert_eq!(f.to_string(), f.message);
    let boxed: Box<dyn std::error::Error> = Box::new(f);
    assert_eq!(boxed.to_string(), "event 1 is missing");
}

#[test]
fn summary_root_matches_a_writer_frontier() {
    let log = build(77, 0);
    let mut f = Frontier::new();
    for r in &log.rows {
        f.push(r.leaf_hash);
    }
    assert_eq!(verify(&log).unwrap().root, f.root());
}

#[test]
fn signatures_checked_apart_still_catch_a_forgery_and_the_walk_still_checks_roots() {
    let mut log = build(50, 10);
    let sig = &mut log.checkpoints[2].signature;
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    sig.replace_range(..1, flipped);
    let vk = key(9).verifying_key();
    let f = ledger::verify_signatures(&vk, &log.checkpoints).unwrap_err();
    assert_eq!((f.kind, f.seq), (FaultKind::BadCheckpointSignature, 29));

    // Without signature checks the walk still matches every root and head.
    let mut log = build(50, 10);
    log.checkpoints[1].root[0] ^= 1;
    let mut v = ledger::Verifier::new(vk, log.checkpoints.clone()).signatures_checked_elsewhere();
    let mut result = Ok(());
    for row in &log.rows {
        result = v.push(ledger::StoredEntry {
            seq: row.seq,
            bytes: &row.bytes,
            leaf_hash: row.leaf_hash,
        });
        if result.is_err() {
            break;
        }
    }
    let f = match result {
        Err(f) => f,
        Ok(()) => v.finish().unwrap_err(),
    };
    assert_eq!(f.seq, 19, "{}", f.message);
}
