//! `changegate verify` on a data directory after a run: intact it exits 0 with one summary
//! line; with the database edited behind changegate's back (an event's bytes, a deleted
//! event, two swapped events, a cut tail, an index column) it exits 1 and names the first
//! bad event, and with a table derived from the ledger edited (the change listing, its
//! system index, the change counter) it names the change or the counter. Each damage is
//! done to a copy, straight in SQLite or PostgreSQL.

mod common;

use common::{
    minutes_from_now, normal_change, run_actions, text, to_approved, to_closed, Backend, DataEnv,
    TestServer,
};
use sha2::{Digest, Sha256};

crate::on_each_backend! {
    fn intact_ledger_verifies_with_one_line;
    fn edited_event_bytes_are_named;
    fn edited_event_with_recomputed_hash_is_named;
    fn deleted_event_is_named;
    fn swapped_events_are_named;
    fn deleted_tail_is_named;
    fn edited_index_column_is_named;
    fn deleted_checkpoints_are_named;
    fn changed_change_version_is_found;
    fn edited_change_listing_row_is_found;
    fn edited_system_index_is_found;
    fn set_back_change_counter_is_found;
    fn ledger_only_skips_the_derived_tables;
}

/// A finished run: the data, the seq of CHG-000001's evaluation, and the checkpoint the API
/// last signed.
struct Run {
    env: DataEnv,
    evaluated: u64,
    size: u64,
    root: String,
}

fn run(backend: Backend) -> Run {
    let s = TestServer::with_cast(backend);
    for title in ["one", "two"] {
        let id = s.create_ok("alice", &normal_change(title));
        let mut steps = to_approved(&minutes_from_now(-1), &minutes_from_now(60));
        steps.extend(to_closed());
        run_actions(&s, &id, &steps);
    }
    let id = s.create_ok("alice", &normal_change("in flight"));
    run_actions(
        &s,
        &id,
        &to_approved(&minutes_from_now(-1), &minutes_from_now(60))[..2],
    );
    let events = s.change("CHG-000001")["events"].clone();
    assert_eq!(events[1]["kind"], "change.evaluate");
    let evaluated = events[1]["seq"].as_u64().unwrap();
    let cp = s.checkpoint();
    Run {
        evaluated,
        size: cp["size"].as_u64().unwrap(),
        root: cp["root"].as_str().unwrap().to_string(),
        env: s.into_env(),
    }
}

/// The database behind a data directory, opened directly.
enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl Db {
    fn open(env: &DataEnv) -> Db {
        match &env.pg {
            None => Db::Sqlite(
                rusqlite::Connection::open(env.data.join("changegate.db")).expect("open sqlite"),
            ),
            Some(pg) => {
                Db::Postgres(postgres::Client::connect(&pg.url, postgres::NoTls).expect("connect"))
            }
        }
    }

    /// Statements written the same in both dialects.
    fn exec(&mut self, sql: &str) {
        match self {
            Db::Sqlite(c) => c.execute_batch(sql).expect(sql),
            Db::Postgres(c) => c.batch_execute(sql).expect(sql),
        }
    }

    fn bytes(&mut self, seq: u64) -> Vec<u8> {
        let sql = format!("SELECT bytes FROM ledger_entries WHERE seq = {seq}");
        match self {
            Db::Sqlite(c) => c.query_row(&sql, [], |r| r.get(0)).expect("bytes"),
            Db::Postgres(c) => c.query_one(&sql, &[]).expect("bytes").get(0),
        }
    }

    fn set_bytes(&mut self, seq: u64, bytes: &[u8], leaf: Option<&[u8]>) {
        match self {
            Db::Sqlite(c) => {
                c.execute(
                    "UPDATE ledger_entries SET bytes = ?1 WHERE seq = ?2",
                    rusqlite::params![bytes, seq as i64],
                )
                .expect("update bytes");
                if let Some(leaf) = leaf {
                    c.execute(
                        "UPDATE ledger_entries SET leaf_hash = ?1 WHERE seq = ?2",
                        rusqlite::params![leaf, seq as i64],
                    )
                    .expect("update leaf");
                }
            }
            Db::Postgres(c) => {
                c.execute(
                    "UPDATE ledger_entries SET bytes = $1 WHERE seq = $2",
                    &[&bytes, &(seq as i64)],
                )
                .expect("update bytes");
                if let Some(leaf) = leaf {
                    c.execute(
                        "UPDATE ledger_entries SET leaf_hash = $1 WHERE seq = $2",
                        &[&leaf, &(seq as i64)],
                    )
                    .expect("update leaf");
                }
            }
        }
    }
}

/// The content of the SQLite files of a data directory, to show that `verify` does not
/// write. A missing and an empty write-ahead log are the same: SQLite creates an empty one
/// (and its index, `-shm`) for any reader of a WAL database.
fn fingerprint(env: &DataEnv) -> Option<Vec<u8>> {
    if env.pg.is_some() {
        return None;
    }
    let mut h = Sha256::new();
    for name in ["changegate.db", "changegate.db-wal", "ledger-signing.key"] {
        let bytes = std::fs::read(env.data.join(name)).unwrap_or_default();
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Some(h.finalize().to_vec())
}

/// Damages a copy of the run, runs `verify` on it and checks that it fails naming `named`.
#[track_caller]
fn assert_named(run: &Run, damage: impl FnOnce(&mut Db), named: &str) -> String {
    let copy = run.env.duplicate();
    {
        let mut db = Db::open(&copy);
        damage(&mut db);
    }
    let before = fingerprint(&copy);
    let out = copy.verify();
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify did not fail: stdout {} stderr {stderr}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains(named),
        "verify does not name `{named}`: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert_eq!(fingerprint(&copy), before, "verify wrote to the data");
    // The original is untouched.
    run.env.assert_verifies();
    stderr
}

fn intact_ledger_verifies_with_one_line(backend: Backend) {
    let run = run(backend);
    let before = fingerprint(&run.env);
    let summary = run.env.assert_verifies();
    assert_eq!(summary.lines().count(), 1, "{summary:?}");
    assert!(summary.starts_with("ledger intact:"), "{summary}");
    assert!(
        summary.contains(&format!("{} events", run.size)),
        "{summary}"
    );
    assert!(summary.contains(&run.root), "{summary}");
    assert!(summary.contains("3 changes"), "{summary}");
    assert!(summary.contains(&format!("{} users", common::CAST.len())));
    assert_eq!(fingerprint(&run.env), before, "verify wrote to the data");
}

fn edited_event_bytes_are_named(backend: Backend) {
    let run = run(backend);
    let k = run.evaluated;
    assert_named(
        &run,
        |db| {
            let text = String::from_utf8(db.bytes(k)).unwrap();
            let edited = text.replace("\"risk\":\"low\"", "\"risk\":\"high\"");
            assert_ne!(text, edited, "nothing to edit in {text}");
            db.set_bytes(k, edited.as_bytes(), None);
        },
        &format!("ledger broken at event {k}:"),
    );
}

fn edited_event_with_recomputed_hash_is_named(backend: Backend) {
    let run = run(backend);
    let k = run.evaluated;
    assert_named(
        &run,
        |db| {
            let text = String::from_utf8(db.bytes(k)).unwrap();
            let edited = text.replace("\"risk\":\"low\"", "\"risk\":\"high\"");
            let leaf = ledger::leaf_hash(edited.as_bytes());
            db.set_bytes(k, edited.as_bytes(), Some(&leaf));
        },
        &format!("ledger broken at event {k}:"),
    );
}

fn deleted_event_is_named(backend: Backend) {
    let run = run(backend);
    let k = run.evaluated;
    assert_named(
        &run,
        |db| db.exec(&format!("DELETE FROM ledger_entries WHERE seq = {k}")),
        &format!("ledger broken at event {k}:"),
    );
}

fn swapped_events_are_named(backend: Backend) {
    let run = run(backend);
    let (a, b) = (run.evaluated, run.evaluated + 1);
    assert_named(
        &run,
        |db| {
            db.exec(&format!(
                "UPDATE ledger_entries SET seq = -1 WHERE seq = {a};
                 UPDATE ledger_entries SET seq = {a} WHERE seq = {b};
                 UPDATE ledger_entries SET seq = {b} WHERE seq = -1;"
            ))
        },
        &format!("ledger broken at event {a}:"),
    );
    // Swapping only the contents (bytes and hashes), leaving the positions, too.
    let far = run.size - 2;
    assert_named(
        &run,
        |db| {
            let (x, y) = (db.bytes(a), db.bytes(far));
            let (lx, ly) = (ledger::leaf_hash(&x), ledger::leaf_hash(&y));
            db.set_bytes(a, &y, Some(&ly));
            db.set_bytes(far, &x, Some(&lx));
        },
        &format!("ledger broken at event {a}:"),
    );
}

fn deleted_tail_is_named(backend: Backend) {
    let run = run(backend);
    let cut = run.evaluated + 3;
    assert_named(
        &run,
        |db| db.exec(&format!("DELETE FROM ledger_entries WHERE seq >= {cut}")),
        &format!("ledger broken at event {cut}:"),
    );
    // Only the very last event.
    let last = run.size - 1;
    assert_named(
        &run,
        |db| db.exec(&format!("DELETE FROM ledger_entries WHERE seq = {last}")),
        &format!("ledger broken at event {last}:"),
    );
}

fn edited_index_column_is_named(backend: Backend) {
    let run = run(backend);
    let k = run.evaluated;
    assert_named(
        &run,
        |db| {
            db.exec(&format!(
                "UPDATE ledger_entries SET actor = 'mallory' WHERE seq = {k}"
            ))
        },
        &format!("ledger broken at event {k}:"),
    );
    // Filing an event under another change hides it from that change's history.
    assert_named(
        &run,
        |db| {
            db.exec(&format!(
                "UPDATE ledger_entries SET subject = 'CHG-000002' WHERE seq = {k}"
            ))
        },
        &format!("ledger broken at event {k}:"),
    );
}

fn deleted_checkpoints_are_named(backend: Backend) {
    let run = run(backend);
    let keep = run.evaluated;
    assert_named(
        &run,
        |db| db.exec(&format!("DELETE FROM checkpoints WHERE size > {keep}")),
        &format!("ledger broken at event {keep}:"),
    );
}

fn changed_change_version_is_found(backend: Backend) {
    let run = run(backend);
    let stderr = assert_named(
        &run,
        |db| db.exec("UPDATE changes SET version = version - 1 WHERE id = 'CHG-000002'"),
        "CHG-000002",
    );
    assert!(stderr.contains("ledger broken"), "{stderr}");
}

fn edited_change_listing_row_is_found(backend: Backend) {
    let run = run(backend);
    assert_named(
        &run,
        |db| db.exec("UPDATE changes SET stage = 'closed' WHERE id = 'CHG-000003'"),
        "CHG-000003",
    );
}

fn edited_system_index_is_found(backend: Backend) {
    let run = run(backend);
    // Filed under another system: the change shows up there and vanishes from its own.
    let stderr = assert_named(
        &run,
        |db| {
            db.exec("UPDATE change_systems SET system = 'hr-portal' WHERE change_id = 'CHG-000002'")
        },
        "change `CHG-000002`",
    );
    assert!(stderr.contains("hr-portal"), "{stderr}");
    assert!(stderr.contains("payments-api"), "{stderr}");
    // Dropped from the index: hidden from `?system=payments-api`.
    assert_named(
        &run,
        |db| db.exec("DELETE FROM change_systems WHERE change_id = 'CHG-000003'"),
        "change `CHG-000003`",
    );
    // Filed under one more system than its events give it.
    let stderr = assert_named(
        &run,
        |db| {
            db.exec(
                "INSERT INTO change_systems (change_id, system) VALUES ('CHG-000001', 'hr-portal')",
            )
        },
        "change `CHG-000001`",
    );
    assert!(stderr.contains("hr-portal"), "{stderr}");
}

fn set_back_change_counter_is_found(backend: Backend) {
    let run = run(backend);
    // The next new change would be given CHG-000003 again, and refused.
    let stderr = assert_named(
        &run,
        |db| db.exec("UPDATE counters SET value = 2 WHERE name = 'change'"),
        "the change counter is at 2",
    );
    assert!(stderr.contains("CHG-000003"), "{stderr}");
    assert_named(
        &run,
        |db| db.exec("DELETE FROM counters WHERE name = 'change'"),
        "the change counter is missing",
    );
    // Ahead of the ledger it only skips numbers: nothing is refused, and nothing is wrong.
    let ahead = run.env.duplicate();
    Db::open(&ahead).exec("UPDATE counters SET value = 10 WHERE name = 'change'");
    ahead.assert_verifies();
}

fn ledger_only_skips_the_derived_tables(backend: Backend) {
    let run = run(backend);
    let copy = run.env.duplicate();
    Db::open(&copy).exec(
        "UPDATE change_systems SET system = 'hr-portal' WHERE change_id = 'CHG-000002';
         UPDATE counters SET value = 0 WHERE name = 'change';",
    );
    let out = copy.cli(&["verify", "--ledger-only"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout} {}", text(&out.stderr));
    assert!(stdout.contains("tables not compared"), "{stdout}");
    assert_eq!(copy.verify().status.code(), Some(1));
}

/// A read-only copy of a data directory (a snapshot handed to an auditor) verifies without
/// anything being written. Needs root, to hand the copy to another user, and `setpriv`.
#[test]
fn a_read_only_copy_verifies() {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let setpriv = std::path::Path::new("/usr/bin/setpriv").exists();
    if !root || !setpriv {
        eprintln!("note: a_read_only_copy_verifies skipped: it needs root and /usr/bin/setpriv");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("D");
    let demo = common::run_bin([
        "demo".to_string(),
        "--data".into(),
        data.display().to_string(),
    ]);
    assert!(demo.status.success(), "{}", text(&demo.stderr));
    // Handed over as a copy: the database file alone (closed cleanly), owned by nobody,
    // in a directory nobody may write to.
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for name in ["changegate.db", "ledger-signing.key"] {
        std::fs::copy(data.join(name), copy.join(name)).unwrap();
    }
    let bin = tmp.path().join("changegate");
    std::fs::copy(env!("CARGO_BIN_EXE_changegate"), &bin).unwrap();
    let sh = |cmd: &str| {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd}: {}", text(&o.stderr));
    };
    sh(&format!(
        "chmod 755 {t} {b} && chown -R 65534:65534 {c} && chmod 555 {c} && \
         chmod 444 {c}/changegate.db && chmod 400 {c}/ledger-signing.key",
        t = tmp.path().display(),
        b = bin.display(),
        c = copy.display()
    ));
    let o = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["verify", "--data"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        text(&o.stdout).starts_with("ledger intact"),
        "{}",
        text(&o.stdout)
    );
    let left: Vec<String> = std::fs::read_dir(&copy)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left.len(),
        2,
        "nothing written beside the database: {left:?}"
    );
}
