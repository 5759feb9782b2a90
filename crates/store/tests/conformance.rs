//! The store conformance suite: every test runs against SQLite, and again against
//! PostgreSQL when `CHANGEGATE_TEST_DATABASE_URL` names a server (each test in a fresh
//! schema). Both backends must behave identically.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use ledger::FaultKind;
use store::{ChangeFilter, Committer, Store, StoreError, Target, User, Write};
use support::{
    apply_one, at, change_write, columns, entry, new_change, token_hash, verify, Harness,
};

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&mut super::Harness::sqlite());
                }
            )*
        }

        mod postgres {
            $(
                #[test]
                fn $name() {
                    match super::Harness::postgres() {
                        Some(mut h) => super::$name(&mut h),
                        None => eprintln!(
                            "skipped: {} is not set",
                            super::support::DATABASE_URL_VAR
                        ),
                    }
                }
            )*
        }
    };
}

suite!(
    ids_are_allocated_in_sequence,
    ids_order_numerically_past_six_digits,
    version_conflict_writes_nothing,
    missing_change_writes_nothing,
    failing_write_spares_the_rest_of_the_batch,
    write_failing_midway_is_undone,
    later_writes_in_a_batch_see_earlier_ones,
    invalid_writes_are_refused,
    once_writes_are_accepted_once,
    entries_hash_link_and_verify,
    one_signed_checkpoint_per_batch,
    batch_without_appends_adds_no_checkpoint,
    edited_bytes_are_detected,
    deleted_row_is_detected,
    swapped_rows_are_detected,
    deleted_tail_is_detected,
    committer_keeps_versions_contiguous_under_contention,
    committer_groups_queued_writes_into_one_transaction,
    committer_finishes_queued_writes_on_drop,
    two_instances_share_one_ledger,
    read_model_follows_columns,
    system_index_and_counter_read_back,
    list_filters_and_pages,
    users_add_lookup_and_deactivate,
    user_write_failure_rolls_back_the_user,
    leaves_and_entries_read_back,
    meta_round_trips,
    data_survives_reopen,
    works_inside_spawn_blocking,
);

fn checkpoint_count(store: &dyn Store) -> usize {
    store.checkpoints().expect("checkpoints").len()
}

fn ids_are_allocated_in_sequence(h: &mut Harness) {
    let s = h.store();
    let batch = s.apply(vec![
        new_change(1, "a"),
        new_change(2, "b"),
        new_change(3, "c"),
    ]);
    let ids: Vec<_> = batch
        .into_iter()
        .map(|r| r.expect("commits").change_id.expect("an id"))
        .collect();
    assert_eq!(ids, ["CHG-000001", "CHG-000002", "CHG-000003"]);
    let w = apply_one(s.as_ref(), new_change(4, "d"));
    assert_eq!(w.change_id.as_deref(), Some("CHG-000004"));
    assert_eq!(w.version, 1);
    let row = s.change("CHG-000002").expect("read").expect("exists");
    assert_eq!(row.title, "b");
    assert_eq!(row.version, 1);
    assert_eq!(row.created_at, at(2));
    assert_eq!(row.updated_at, at(2));
    assert_eq!(s.change("CHG-000009").expect("read"), None);
}

fn ids_order_numerically_past_six_digits(h: &mut Harness) {
    h.exec("UPDATE counters SET value = 999998 WHERE name = 'change'");
    let s = h.store();
    let results = s.apply(vec![
        new_change(1, "a"),
        new_change(2, "b"),
        new_change(3, "c"),
    ]);
    let ids: Vec<_> = results
        .into_iter()
        .map(|r| r.expect("ok").change_id.expect("id"))
        .collect();
    assert_eq!(ids, ["CHG-999999", "CHG-1000000", "CHG-1000001"]);
    let listed: Vec<_> = s
        .list_changes(&ChangeFilter::default())
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, ids);
    let after = ChangeFilter {
        after_id: Some("CHG-999999".into()),
        ..Default::default()
    };
    let rest: Vec<_> = s
        .list_changes(&after)
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(rest, ["CHG-1000000", "CHG-1000001"]);
}

fn version_conflict_writes_nothing(h: &mut Harness) {
    let s = h.store();
    let id = apply_one(s.as_ref(), new_change(1, "a"))
        .change_id
        .expect("id");
    apply_one(s.as_ref(), change_write(2, &id, 1, "assessed"));
    let size = s.ledger_size().expect("size");
    let checkpoints = checkpoint_count(s.as_ref());

    let result = s
        .apply(vec![change_write(3, &id, 1, "approved")])
        .pop()
        .expect("one result");
    assert_eq!(
        result,
        Err(StoreError::Conflict {
            id: id.clone(),
            expected: 1,
            actual: 2
        })
    );
    assert_eq!(s.ledger_size().expect("size"), size);
    assert_eq!(checkpoint_count(s.as_ref()), checkpoints);
    let row = s.change(&id).expect("read").expect("exists");
    assert_eq!((row.version, row.stage.as_str()), (2, "assessed"));
    assert_eq!(s.change_events(&id).expect("events").len(), 2);
    verify(s.as_ref()).expect("ledger intact");
}

fn missing_change_writes_nothing(h: &mut Harness) {
    let s = h.store();
    let result = s
        .apply(vec![change_write(1, "CHG-000042", 0, "x")])
        .pop()
        .expect("one");
    assert_eq!(result, Err(StoreError::NotFound("CHG-000042".into())));
    assert_eq!(s.ledger_size().expect("size"), 0);
    assert_eq!(checkpoint_count(s.as_ref()), 0);
    assert_eq!(s.latest_checkpoint().expect("read"), None);
}

fn failing_write_spares_the_rest_of_the_batch(h: &mut Harness) {
    let s = h.store();
    let id = apply_one(s.as_ref(), new_change(1, "a"))
        .change_id
        .expect("id");
    let mut bad_time = new_change(3, "bad");
    bad_time.entries[0].time = "not a time".into();
    let results = s.apply(vec![
        change_write(2, &id, 1, "assessed"),
        change_write(3, &id, 1, "stale"),
        bad_time,
        new_change(4, "b"),
    ]);
    assert_eq!(results.len(), 4);
    let first = results[0].as_ref().expect("first commits");
    assert!(matches!(
        results[1],
        Err(StoreError::Conflict {
            expected: 1,
            actual: 2,
            ..
        })
    ));
    assert!(matches!(results[2], Err(StoreError::Invalid(_))));
    let last = results[3].as_ref().expect("last commits");
    assert_eq!((first.version, first.seqs.as_slice()), (2, &[1][..]));
    // The refused writes took neither a seq nor a change id.
    assert_eq!(last.change_id.as_deref(), Some("CHG-000002"));
    assert_eq!(last.seqs, [2]);
    assert_eq!(first.checkpoint_size, 3);
    assert_eq!(last.checkpoint_size, 3);
    assert_eq!(s.ledger_size().expect("size"), 3);
    assert_eq!(checkpoint_count(s.as_ref()), 2);
    assert_eq!(s.change(&id).expect("read").expect("row").stage, "assessed");
    verify(s.as_ref()).expect("ledger intact");
}

fn write_failing_midway_is_undone(h: &mut Harness) {
    apply_one(h.store().as_ref(), new_change(1, "a"));
    // A row squatting on seq 2 makes the second entry of the next write fail after its id
    // was allocated and its first entry inserted: both must be undone.
    h.exec(
        "INSERT INTO ledger_entries (seq, subject, kind, actor, time, bytes, leaf_hash) \
         VALUES (2, NULL, 'x', 'x', 'x', 'x', 'x')",
    );
    let s = h.store();
    let mut two = new_change(2, "two entries");
    two.entries
        .push(entry(3, "change.noted", serde_json::json!({})));
    let results = s.apply(vec![two, new_change(4, "b")]);
    assert!(
        matches!(results[0], Err(StoreError::Backend(_))),
        "{:?}",
        results[0]
    );
    let b = results[1].as_ref().expect("the next write commits");
    assert_eq!(
        b.change_id.as_deref(),
        Some("CHG-000002"),
        "the failed write's id was returned"
    );
    assert_eq!(b.seqs, [1], "the failed write's first entry was removed");
    assert_eq!(s.change("CHG-000003").expect("read"), None);
    h.exec("DELETE FROM ledger_entries WHERE seq = 2");
    let summary = verify(h.store().as_ref()).expect("ledger intact");
    assert_eq!(summary.entries, 2);
}

fn later_writes_in_a_batch_see_earlier_ones(h: &mut Harness) {
    let s = h.store();
    let results = s.apply(vec![
        new_change(1, "a"),
        change_write(2, "CHG-000001", 1, "assessed"),
        change_write(3, "CHG-000001", 2, "approved"),
    ]);
    let versions: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().expect("ok").version)
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    let row = s.change("CHG-000001").expect("read").expect("row");
    assert_eq!((row.version, row.stage.as_str()), (3, "approved"));
    assert_eq!((row.created_at, row.updated_at), (at(1), at(3)));
}

fn invalid_writes_are_refused(h: &mut Harness) {
    let s = h.store();
    let no_entries = Write {
        target: Target::NewChange,
        entries: vec![],
        columns: Some(columns("a", "x", &[])),
    };
    let no_columns = Write {
        target: Target::NewChange,
        entries: vec![entry(1, "k", serde_json::json!({}))],
        columns: None,
    };
    let stray_columns = Write {
        target: Target::None,
        entries: vec![entry(1, "k", serde_json::json!({}))],
        columns: Some(columns("a", "x", &[])),
    };
    let mut offset_time = new_change(1, "a");
    offset_time.entries[0].time = "2025-03-01T00:00:00+02:00".into();
    let mut no_kind = new_change(1, "a");
    no_kind.entries[0].kind = String::new();
    for r in s.apply(vec![
        no_entries,
        no_columns,
        stray_columns,
        offset_time,
        no_kind,
    ]) {
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    }
    assert_eq!(s.ledger_size().expect("size"), 0);
    assert_eq!(checkpoint_count(s.as_ref()), 0);
    // No id was used up either.
    assert_eq!(
        apply_one(s.as_ref(), new_change(2, "b"))
            .change_id
            .as_deref(),
        Some("CHG-000001")
    );
}

fn once_writes_are_accepted_once(h: &mut Harness) {
    let s = h.store();
    let delivery = |n: u64| Write {
        target: Target::Once {
            subject: "delivery:github:72d3162e".into(),
        },
        entries: vec![entry(n, "evidence.push", serde_json::json!({ "n": n }))],
        columns: None,
    };
    // The same delivery twice in one batch, then again in a later batch.
    let results = s.apply(vec![delivery(1), delivery(2)]);
    let first = results[0].as_ref().expect("first delivery is written");
    assert_eq!(first.change_id, None);
    assert_eq!(first.seqs, vec![0]);
    assert_eq!(
        results[1],
        Err(StoreError::Duplicate {
            subject: "delivery:github:72d3162e".into(),
            seq: 0
        })
    );
    let again = s.apply(vec![delivery(3)]);
    assert!(
        matches!(again[0], Err(StoreError::Duplicate { seq: 0, .. })),
        "{again:?}"
    );
    assert_eq!(s.ledger_size().expect("size"), 1);
    let stored = s.entry(0).expect("read").expect("entry 0");
    assert_eq!(
        stored.entry.subject.as_deref(),
        Some("delivery:github:72d3162e")
    );
    assert_eq!(stored.entry.payload, serde_json::json!({ "n": 1 }));
    let empty = Write {
        target: Target::Once {
            subject: String::new(),
        },
        entries: vec![entry(4, "evidence.push", serde_json::json!({}))],
        columns: None,
    };
    assert!(matches!(
        s.apply(vec![empty])[0],
        Err(StoreError::Invalid(_))
    ));
    verify(s.as_ref()).expect("the ledger verifies");
}

/// Builds a ledger of 8 entries over 4 batches about 2 changes and a user event.
fn build_ledger(s: &dyn Store) -> Vec<store::StoredEvent> {
    s.apply(vec![new_change(1, "a"), new_change(2, "b")]);
    s.apply(vec![change_write(3, "CHG-000001", 1, "assessed")]);
    s.apply(vec![
        change_write(4, "CHG-000002", 1, "assessed"),
        Write {
            target: Target::None,
            entries: vec![entry(
                5,
                "policy.changed",
                serde_json::json!({ "digest": "abc" }),
            )],
            columns: None,
        },
    ]);
    let two = Write {
        target: Target::Change {
            id: "CHG-000001".into(),
            expected_version: 2,
        },
        entries: vec![
            entry(6, "change.approved", serde_json::json!({ "by": "bob" })),
            entry(7, "change.scheduled", serde_json::json!({ "at": "later" })),
            entry(8, "change.implemented", serde_json::json!({ "ok": true })),
        ],
        columns: None,
    };
    apply_one(s, two);
    assert_eq!(s.ledger_size().expect("size"), 8);
    (0..8)
        .map(|seq| s.entry(seq).expect("read").expect("entry exists"))
        .collect()
}

fn entries_hash_link_and_verify(h: &mut Harness) {
    let s = h.store();
    let events = build_ledger(s.as_ref());
    let mut prev = ledger::GENESIS_PREV;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
        assert_eq!(e.entry.seq, i as u64);
        assert_eq!(e.entry.prev, prev, "entry {i} links to its predecessor");
        assert_eq!(
            e.leaf_hash,
            ledger::leaf_hash(&ledger::canonical_bytes(&e.entry))
        );
        prev = e.leaf_hash;
    }
    assert_eq!(events[0].entry.subject.as_deref(), Some("CHG-000001"));
    assert_eq!(events[4].entry.subject, None);
    assert_eq!(events[4].entry.kind, "policy.changed");

    let one: Vec<u64> = s
        .change_events("CHG-000001")
        .expect("events")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(one, [0, 2, 5, 6, 7]);
    assert_eq!(
        s.change("CHG-000001").expect("read").expect("row").version,
        5
    );

    let summary = verify(s.as_ref()).expect("an untouched ledger verifies");
    assert_eq!(summary.entries, 8);
    assert_eq!(summary.head, events[7].leaf_hash);
    assert_eq!(summary.checkpoints_verified, 4);
    assert_eq!(summary.last_checkpoint, Some(8));

    let mut from_five = Vec::new();
    s.for_each_entry(5, &mut |e| {
        from_five.push(e.seq);
        true
    })
    .expect("stream");
    assert_eq!(from_five, [5, 6, 7]);
    let mut stopped = Vec::new();
    s.for_each_entry(0, &mut |e| {
        stopped.push(e.seq);
        e.seq < 2
    })
    .expect("stream");
    assert_eq!(stopped, [0, 1, 2]);
}

fn one_signed_checkpoint_per_batch(h: &mut Harness) {
    let s = h.store();
    let key = s.verifying_key();
    let mut expected_sizes = Vec::new();
    let batches = [
        vec![new_change(1, "a")],
        vec![new_change(2, "b"), new_change(3, "c")],
        vec![change_write(4, "CHG-000001", 1, "assessed")],
    ];
    for batch in batches {
        let results = s.apply(batch);
        let size = s.ledger_size().expect("size");
        expected_sizes.push(size);
        for r in results {
            assert_eq!(r.expect("ok").checkpoint_size, size);
        }
        let cp = s.latest_checkpoint().expect("read").expect("a checkpoint");
        assert_eq!(cp.size, size);
        cp.verify(&key).expect("signed by the store's key");
        let leaves = s.leaf_hashes(size).expect("leaves");
        assert_eq!(cp.root, ledger::root(&leaves));
        assert_eq!(Some(&cp.head), leaves.last());
        assert_eq!(
            cp.time,
            s.entry(size - 1).expect("read").expect("last").entry.time
        );
    }
    let sizes: Vec<u64> = s
        .checkpoints()
        .expect("all")
        .iter()
        .map(|c| c.size)
        .collect();
    assert_eq!(sizes, expected_sizes);
    assert_eq!(sizes, [1, 3, 4]);
    assert_eq!(s.checkpoint_at(3).expect("read").map(|c| c.size), Some(3));
    assert_eq!(s.checkpoint_at(2).expect("read"), None);
    assert_eq!(
        s.checkpoint_at_or_after(2).expect("read").map(|c| c.size),
        Some(3)
    );
    assert_eq!(s.checkpoint_at_or_after(5).expect("read"), None);

    // The key is the one in the data directory, as PKCS#8 PEM.
    let pem = std::fs::read_to_string(h.data_dir().join(store::KEY_FILE)).expect("key file");
    assert!(pem.contains("BEGIN PRIVATE KEY"));
}

fn batch_without_appends_adds_no_checkpoint(h: &mut Harness) {
    let s = h.store();
    assert!(s.apply(vec![]).is_empty());
    let r = s.apply(vec![change_write(1, "CHG-000001", 0, "x")]);
    assert!(r[0].is_err());
    assert_eq!(checkpoint_count(s.as_ref()), 0);
    assert_eq!(s.ledger_size().expect("size"), 0);
    let summary = verify(s.as_ref()).expect("an empty ledger verifies");
    assert_eq!(summary.entries, 0);
}

fn assert_fault(h: &Harness, kind: FaultKind, seq: u64) {
    match verify(h.store().as_ref()) {
        Ok(summary) => panic!("tampering went unnoticed: {summary:?}"),
        Err(fault) => {
            assert_eq!((fault.kind, fault.seq), (kind, seq), "{}", fault.message);
        }
    }
}

fn edited_bytes_are_detected(h: &mut Harness) {
    let events = build_ledger(h.store().as_ref());
    verify(h.store().as_ref()).expect("intact before tampering");
    let mut edited = events[3].entry.clone();
    edited.payload = serde_json::json!({ "stage": "approved" });
    h.set_bytes(3, &ledger::canonical_bytes(&edited));
    assert_fault(h, FaultKind::Edited, 3);
}

fn deleted_row_is_detected(h: &mut Harness) {
    build_ledger(h.store().as_ref());
    verify(h.store().as_ref()).expect("intact before tampering");
    h.exec("DELETE FROM ledger_entries WHERE seq = 4");
    assert_fault(h, FaultKind::Missing, 4);
}

fn swapped_rows_are_detected(h: &mut Harness) {
    build_ledger(h.store().as_ref());
    verify(h.store().as_ref()).expect("intact before tampering");
    h.exec(
        "UPDATE ledger_entries SET seq = -1 WHERE seq = 1;
         UPDATE ledger_entries SET seq = 1 WHERE seq = 2;
         UPDATE ledger_entries SET seq = 2 WHERE seq = -1;",
    );
    assert_fault(h, FaultKind::Reordered, 1);
}

fn deleted_tail_is_detected(h: &mut Harness) {
    build_ledger(h.store().as_ref());
    verify(h.store().as_ref()).expect("intact before tampering");
    h.exec("DELETE FROM ledger_entries WHERE seq >= 6");
    assert_fault(h, FaultKind::Truncated, 6);
}

fn committer_keeps_versions_contiguous_under_contention(h: &mut Harness) {
    const THREADS: usize = 16;
    const WRITES: usize = 50;
    let s = h.store().clone();
    let id = apply_one(s.as_ref(), new_change(0, "hot"))
        .change_id
        .expect("id");
    let committer = Committer::start(s.clone());
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (committer, s, id, outcomes) = (&committer, &s, &id, &outcomes);
            scope.spawn(move || {
                for i in 0..WRITES {
                    let current = s.change(id).expect("read").expect("row").version;
                    let n = 1 + (t * WRITES + i) as u64;
                    let result = committer.write(change_write(n, id, current, "busy"));
                    outcomes.lock().expect("lock").push((current, result));
                }
            });
        }
    });
    let outcomes = outcomes.into_inner().expect("lock");
    assert_eq!(outcomes.len(), THREADS * WRITES);
    let mut versions = Vec::new();
    for (expected, result) in outcomes {
        match result {
            Ok(w) => {
                assert_eq!(w.version, expected + 1);
                versions.push(w.version);
            }
            Err(StoreError::Conflict {
                expected: e,
                actual,
                ..
            }) => {
                assert_eq!(e, expected);
                assert!(
                    actual > expected,
                    "a conflict means someone else got there first"
                );
            }
            Err(other) => panic!("only conflicts may fail: {other}"),
        }
    }
    versions.sort_unstable();
    let successes = versions.len() as u64;
    assert!(successes > 0);
    let contiguous: Vec<u64> = (2..2 + successes).collect();
    assert_eq!(
        versions, contiguous,
        "every success took the next version, none twice"
    );
    assert_eq!(
        s.change(&id).expect("read").expect("row").version,
        1 + successes
    );
    assert_eq!(s.ledger_size().expect("size"), 1 + successes);
    assert_eq!(
        s.change_events(&id).expect("events").len() as u64,
        1 + successes
    );
    drop(committer);
    verify(s.as_ref()).expect("ledger intact after contention");
}

fn committer_groups_queued_writes_into_one_transaction(h: &mut Harness) {
    const WRITES: u64 = 50;
    let s = h.store().clone();
    let committer = Committer::start(s.clone());
    let results = Arc::new(Mutex::new(Vec::new()));
    {
        // While another writer holds the lock, every submitted write queues up.
        let _lock = h.hold_write_lock();
        for n in 0..WRITES {
            let results = results.clone();
            committer.submit(
                new_change(n, "queued"),
                Box::new(move |r| results.lock().expect("lock").push(r)),
            );
        }
    }
    drop(committer);
    let results = std::mem::take(&mut *results.lock().expect("lock"));
    assert_eq!(results.len() as u64, WRITES);
    let ids: BTreeSet<String> = results
        .into_iter()
        .map(|r| r.expect("commits").change_id.expect("id"))
        .collect();
    assert_eq!(ids.len() as u64, WRITES);
    assert_eq!(s.ledger_size().expect("size"), WRITES);
    // The first write may have gone alone before the rest queued; the rest went together.
    let batches = checkpoint_count(s.as_ref());
    assert!(
        (1..=2).contains(&batches),
        "{batches} transactions for {WRITES} writes"
    );
    verify(s.as_ref()).expect("ledger intact");
}

fn committer_finishes_queued_writes_on_drop(h: &mut Harness) {
    let s = h.store().clone();
    let done = Arc::new(Mutex::new(0u32));
    let committer = Committer::start(s.clone());
    for n in 0..20 {
        let done = done.clone();
        committer.submit(
            new_change(n, "x"),
            Box::new(move |r| {
                r.expect("commits");
                *done.lock().expect("lock") += 1;
            }),
        );
    }
    drop(committer);
    assert_eq!(*done.lock().expect("lock"), 20);
    assert_eq!(s.ledger_size().expect("size"), 20);
}

fn two_instances_share_one_ledger(h: &mut Harness) {
    let a = h.store().clone();
    let b = h.open_another();
    assert_eq!(a.verifying_key(), b.verifying_key());
    let id = apply_one(a.as_ref(), new_change(0, "shared"))
        .change_id
        .expect("id");
    let successes = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for (t, s) in [a.clone(), b.clone()].into_iter().enumerate() {
            let (id, successes) = (&id, &successes);
            scope.spawn(move || {
                let committer = Committer::start(s.clone());
                for i in 0..25u64 {
                    let n = 1 + t as u64 * 100 + i;
                    committer
                        .write(new_change(n, "other"))
                        .expect("new changes never conflict");
                    let v = s.change(id).expect("read").expect("row").version;
                    match committer.write(change_write(n, id, v, "busy")) {
                        Ok(w) => successes.lock().expect("lock").push(w.version),
                        Err(StoreError::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    let mut versions = successes.into_inner().expect("lock");
    versions.sort_unstable();
    let contiguous: Vec<u64> = (2..2 + versions.len() as u64).collect();
    assert_eq!(versions, contiguous);
    let ids: BTreeSet<String> = a
        .list_changes(&ChangeFilter::default())
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), 51, "each instance allocated distinct ids");
    assert_eq!(
        b.ledger_size().expect("size"),
        a.ledger_size().expect("size")
    );
    verify(b.as_ref()).expect("one agreed ledger");
}

fn read_model_follows_columns(h: &mut Harness) {
    let s = h.store();
    let id = apply_one(s.as_ref(), new_change(1, "a"))
        .change_id
        .expect("id");
    let mut cols = columns("renamed", "assessed", &["web", "db", "web"]);
    cols.assignee = Some("bob".into());
    cols.risk = Some("high".into());
    let w = Write {
        target: Target::Change {
            id: id.clone(),
            expected_version: 1,
        },
        entries: vec![entry(2, "change.assessed", serde_json::json!({}))],
        columns: Some(cols),
    };
    apply_one(s.as_ref(), w);
    let row = s.change(&id).expect("read").expect("row");
    assert_eq!(row.title, "renamed");
    assert_eq!(row.assignee.as_deref(), Some("bob"));
    assert_eq!(row.risk.as_deref(), Some("high"));
    assert_eq!(row.systems, ["web", "db", "web"]);
    let by_system = |sys: &str| {
        s.list_changes(&ChangeFilter {
            system: Some(sys.into()),
            ..Default::default()
        })
        .expect("list")
        .len()
    };
    assert_eq!((by_system("web"), by_system("db")), (1, 1));

    // Without columns only the version and the time move.
    let w = Write {
        target: Target::Change {
            id: id.clone(),
            expected_version: 2,
        },
        entries: vec![entry(3, "change.commented", serde_json::json!({}))],
        columns: None,
    };
    assert_eq!(apply_one(s.as_ref(), w).version, 3);
    let after = s.change(&id).expect("read").expect("row");
    assert_eq!((after.version, after.updated_at.clone()), (3, at(3)));
    assert_eq!(after.title, "renamed");
    assert_eq!(after.created_at, at(1));

    apply_one(
        s.as_ref(),
        Write {
            target: Target::Change {
                id: id.clone(),
                expected_version: 3,
            },
            entries: vec![entry(4, "change.assessed", serde_json::json!({}))],
            columns: Some(columns("renamed", "assessed", &["db"])),
        },
    );
    assert_eq!((by_system("web"), by_system("db")), (0, 1));
}

/// What verification compares with the ledger: the system index as the writes left it
/// (duplicates once, a change without systems absent) and the change counter, read back
/// as stored even after they are edited behind the store's back.
fn system_index_and_counter_read_back(h: &mut Harness) {
    let s = h.store().clone();
    assert_eq!(s.change_counter().expect("counter"), Some(0));
    assert!(s.system_index().expect("index").is_empty());
    let a = apply_one(s.as_ref(), new_change(1, "a"))
        .change_id
        .expect("id");
    let mut without = new_change(2, "b");
    without.columns = Some(columns("b", "requested", &[]));
    let b = apply_one(s.as_ref(), without).change_id.expect("id");
    let mut moved = change_write(3, &a, 1, "assessed");
    moved.columns = Some(columns("a", "assessed", &["web", "db", "web"]));
    apply_one(s.as_ref(), moved);
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    let index = s.system_index().expect("index");
    assert_eq!(index.len(), 1, "{index:?}");
    assert_eq!(index[&a], set(&["db", "web"]));
    assert_eq!(s.change_counter().expect("counter"), Some(2));

    h.exec(&format!(
        "UPDATE change_systems SET system = 'payroll' WHERE change_id = '{a}' AND system = 'web';
         INSERT INTO change_systems (change_id, system) VALUES ('{b}', 'web');
         UPDATE counters SET value = 1 WHERE name = 'change';"
    ));
    let index = s.system_index().expect("index");
    assert_eq!(index[&a], set(&["db", "payroll"]));
    assert_eq!(index[&b], set(&["web"]));
    assert_eq!(s.change_counter().expect("counter"), Some(1));
    h.exec("DELETE FROM counters");
    assert_eq!(s.change_counter().expect("counter"), None);
}

fn list_filters_and_pages(h: &mut Harness) {
    let s = h.store();
    let mut writes = Vec::new();
    for n in 0..7u64 {
        let mut w = new_change(n, &format!("c{n}"));
        let cols = w.columns.as_mut().expect("columns");
        cols.stage = if n % 2 == 0 {
            "requested".into()
        } else {
            "approved".into()
        };
        cols.change_type = if n < 3 {
            "standard".into()
        } else {
            "normal".into()
        };
        cols.requester = format!("user{}", n % 3);
        cols.assignee = (n == 5).then(|| "carol".to_string());
        cols.category = if n == 6 {
            "security".into()
        } else {
            "infrastructure".into()
        };
        cols.systems = vec![format!("sys{}", n % 2)];
        writes.push(w);
    }
    for r in s.apply(writes) {
        r.expect("commits");
    }
    let ids = |f: ChangeFilter| -> Vec<String> {
        s.list_changes(&f)
            .expect("list")
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    let all = ids(ChangeFilter::default());
    assert_eq!(all.len(), 7);
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "ordered by id: {all:?}"
    );
    let approved = ids(ChangeFilter {
        stage: Some("approved".into()),
        ..Default::default()
    });
    assert_eq!(approved, ["CHG-000002", "CHG-000004", "CHG-000006"]);
    let standard = ids(ChangeFilter {
        change_type: Some("standard".into()),
        ..Default::default()
    });
    assert_eq!(standard, ["CHG-000001", "CHG-000002", "CHG-000003"]);
    let user1 = ids(ChangeFilter {
        requester: Some("user1".into()),
        ..Default::default()
    });
    assert_eq!(user1, ["CHG-000002", "CHG-000005"]);
    let carol = ids(ChangeFilter {
        assignee: Some("carol".into()),
        ..Default::default()
    });
    assert_eq!(carol, ["CHG-000006"]);
    let security = ids(ChangeFilter {
        category: Some("security".into()),
        ..Default::default()
    });
    assert_eq!(security, ["CHG-000007"]);
    let combined = ids(ChangeFilter {
        stage: Some("requested".into()),
        change_type: Some("normal".into()),
        system: Some("sys0".into()),
        ..Default::default()
    });
    assert_eq!(combined, ["CHG-000005", "CHG-000007"]);
    let none = ids(ChangeFilter {
        system: Some("nowhere".into()),
        ..Default::default()
    });
    assert!(none.is_empty());

    // Keyset paging visits every change once, in order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = ids(ChangeFilter {
            after_id: after.clone(),
            limit: 3,
            ..Default::default()
        });
        assert!(page.len() <= 3);
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

fn user(name: &str, roles: &[&str]) -> User {
    User {
        name: name.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        groups: vec!["dba".into()],
        machine: false,
        active: true,
        created_at: at(0),
    }
}

fn users_add_lookup_and_deactivate(h: &mut Harness) {
    let s = h.store();
    let alice = user("alice", &["requester", "engineer"]);
    let seq = s
        .add_user(
            &alice,
            &token_hash("t-alice"),
            entry(1, "user.added", serde_json::json!({})),
        )
        .expect("add");
    assert_eq!(seq, 0);
    let recorded = s.entry(seq).expect("read").expect("entry");
    assert_eq!(recorded.entry.subject.as_deref(), Some("alice"));
    assert_eq!(recorded.entry.kind, "user.added");
    let mut ci = user("ci", &["engineer"]);
    ci.machine = true;
    s.add_user(
        &ci,
        &token_hash("t-ci"),
        entry(2, "user.added", serde_json::json!({})),
    )
    .expect("add machine user");

    let dup = s.add_user(
        &user("alice", &["auditor"]),
        &token_hash("t-other"),
        entry(3, "user.added", serde_json::json!({})),
    );
    assert_eq!(dup, Err(StoreError::UserExists("alice".into())));
    assert_eq!(
        s.ledger_size().expect("size"),
        2,
        "a refused user records nothing"
    );
    assert_eq!(s.user_by_token(&token_hash("t-other")).expect("read"), None);

    assert_eq!(
        s.user_by_token(&token_hash("t-alice")).expect("read"),
        Some(alice.clone())
    );
    assert_eq!(
        s.user_by_token(&token_hash("t-ci")).expect("read"),
        Some(ci.clone())
    );
    assert_eq!(s.user_by_token(&token_hash("nope")).expect("read"), None);
    assert_eq!(s.user("ci").expect("read"), Some(ci.clone()));
    assert_eq!(s.user("nobody").expect("read"), None);
    let names: Vec<_> = s
        .users()
        .expect("all")
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "ci"]);

    let mut deactivated = alice.clone();
    deactivated.active = false;
    deactivated.roles = vec!["requester".into()];
    let seq = s
        .update_user(
            &deactivated,
            entry(4, "user.deactivated", serde_json::json!({})),
        )
        .expect("deactivate");
    assert_eq!(seq, 2);
    // Kept, and still found by token, so callers can tell "deactivated" from "unknown".
    assert_eq!(s.user("alice").expect("read"), Some(deactivated.clone()));
    assert_eq!(
        s.user_by_token(&token_hash("t-alice")).expect("read"),
        Some(deactivated)
    );
    assert_eq!(s.users().expect("all").len(), 2);

    let ghost = s.update_user(
        &user("ghost", &[]),
        entry(5, "user.changed", serde_json::json!({})),
    );
    assert_eq!(ghost, Err(StoreError::NotFound("ghost".into())));
    let bad_token = s.add_user(
        &user("eve", &[]),
        "not-hex",
        entry(6, "user.added", serde_json::json!({})),
    );
    assert!(matches!(bad_token, Err(StoreError::Invalid(_))));
    assert_eq!(s.ledger_size().expect("size"), 3);
    verify(s.as_ref()).expect("user events verify");
}

fn user_write_failure_rolls_back_the_user(h: &mut Harness) {
    let s = h.store();
    let mut bad = entry(1, "user.added", serde_json::json!({}));
    bad.time = "tomorrow".into();
    let r = s.add_user(&user("dave", &["tester"]), &token_hash("t-dave"), bad);
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    assert_eq!(
        s.user("dave").expect("read"),
        None,
        "the user row went with the entry"
    );
    assert_eq!(s.ledger_size().expect("size"), 0);
    assert_eq!(checkpoint_count(s.as_ref()), 0);
}

fn leaves_and_entries_read_back(h: &mut Harness) {
    let s = h.store();
    build_ledger(s.as_ref());
    let mut streamed = Vec::new();
    s.for_each_entry(0, &mut |e| {
        assert_eq!(e.leaf_hash, ledger::leaf_hash(e.bytes));
        streamed.push(e.leaf_hash);
        true
    })
    .expect("stream");
    assert_eq!(s.leaf_hashes(8).expect("leaves"), streamed);
    assert_eq!(s.leaf_hashes(3).expect("leaves"), streamed[..3]);
    assert!(s.leaf_hashes(0).expect("none").is_empty());
    assert!(matches!(s.leaf_hashes(9), Err(StoreError::Invalid(_))));
    assert_eq!(s.entry(8).expect("read"), None);
    let proof = ledger::inclusion_proof(&streamed, 5).expect("proof");
    assert!(ledger::verify_inclusion(
        &streamed[5],
        5,
        8,
        &proof,
        &ledger::root(&streamed)
    ));

    // A hole in the stored rows is corruption, not a shorter tree.
    h.exec("DELETE FROM ledger_entries WHERE seq = 2");
    assert!(matches!(
        h.store().leaf_hashes(8),
        Err(StoreError::Corrupt(_))
    ));
}

fn meta_round_trips(h: &mut Harness) {
    let s = h.store();
    assert_eq!(s.meta("policy_digest").expect("read"), None);
    s.set_meta("policy_digest", "abc").expect("write");
    s.set_meta("policy_digest", "def").expect("overwrite");
    s.set_meta("other", "x").expect("write");
    assert_eq!(
        s.meta("policy_digest").expect("read").as_deref(),
        Some("def")
    );
    assert_eq!(s.meta("other").expect("read").as_deref(), Some("x"));
}

fn data_survives_reopen(h: &mut Harness) {
    build_ledger(h.store().as_ref());
    h.store()
        .add_user(
            &user("alice", &["requester"]),
            &token_hash("t"),
            entry(9, "user.added", serde_json::json!({})),
        )
        .expect("add");
    h.store().set_meta("k", "v").expect("meta");
    let key = h.store().verifying_key();
    let before = h.store().change("CHG-000001").expect("read");
    h.reopen();
    let s = h.store();
    assert_eq!(s.verifying_key(), key, "the signing key is kept");
    assert_eq!(s.change("CHG-000001").expect("read"), before);
    assert_eq!(s.ledger_size().expect("size"), 9);
    assert_eq!(s.meta("k").expect("read").as_deref(), Some("v"));
    assert_eq!(
        s.user("alice").expect("read").map(|u| u.name).as_deref(),
        Some("alice")
    );
    // Appending continues where it stopped: next id, next seq, linked to the old head.
    let w = apply_one(s.as_ref(), new_change(10, "after"));
    assert_eq!(
        (w.change_id.as_deref(), w.seqs.as_slice()),
        (Some("CHG-000003"), &[9][..])
    );
    let summary = verify(s.as_ref()).expect("intact across reopen");
    assert_eq!(summary.entries, 10);
    assert_eq!(summary.checkpoints_verified, 6);
}

fn works_inside_spawn_blocking(h: &mut Harness) {
    let s = h.store().clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let written = runtime.block_on(async move {
        let committer = Arc::new(Committer::start(s.clone()));
        let mut tasks = Vec::new();
        for n in 0..8u64 {
            let (s, committer) = (s.clone(), committer.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                let w = committer.write(new_change(n, "async"))?;
                let id = w.change_id.clone().unwrap_or_default();
                let row = s.change(&id)?;
                assert_eq!(row.map(|r| r.version), Some(1));
                Ok::<_, StoreError>(w)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task").expect("write"));
        }
        out
    });
    assert_eq!(written.len(), 8);
    assert_eq!(h.store().ledger_size().expect("size"), 8);
}
