//! Test harness: a fresh store per test on SQLite (a temporary data directory) or on
//! PostgreSQL (a fresh schema in the database named by `CHANGEGATE_TEST_DATABASE_URL`), plus
//! direct SQL access to the same database for tampering, and builders for writes.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use store::{ChangeColumns, NewEntry, Store, Target, Write, Written};

pub const DATABASE_URL_VAR: &str = "CHANGEGATE_TEST_DATABASE_URL";

enum Backend {
    Sqlite,
    Postgres {
        admin_url: String,
        schema: String,
        url: String,
    },
}

/// One test's store and the database under it.
pub struct Harness {
    backend: Backend,
    dir: tempfile::TempDir,
    store: Option<Arc<dyn Store>>,
}

impl Harness {
    pub fn sqlite() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store::open(dir.path(), None).expect("open sqlite store");
        Harness {
            backend: Backend::Sqlite,
            dir,
            store: Some(store),
        }
    }

    /// A store in a schema of its own, or `None` when no test database is configured.
    pub fn postgres() -> Option<Harness> {
        let admin_url = std::env::var(DATABASE_URL_VAR)
            .ok()
            .filter(|u| !u.is_empty())?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let schema = format!(
            "test_{}_{}_{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls)
            .expect("connect to the test database");
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .expect("create test schema");
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options=-csearch_path%3D{schema}");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store::open(dir.path(), Some(&url)).expect("open postgres store");
        Some(Harness {
            backend: Backend::Postgres {
                admin_url,
                schema,
                url,
            },
            dir,
            store: Some(store),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.store.as_ref().expect("store is open")
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Opens another store on the same database and data directory (a second server
    /// instance, or a CLI next to the server).
    pub fn open_another(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::Sqlite => store::open(self.dir.path(), None),
            Backend::Postgres { url, .. } => store::open(self.dir.path(), Some(url)),
        }
        .expect("open another store")
    }

    /// Closes the store and opens it again from what is on disk.
    pub fn reopen(&mut self) {
        self.store = None;
        self.store = Some(self.open_another());
    }

    /// Runs SQL directly on the database, behind the store's back.
    pub fn exec(&self, sql: &str) {
        match &self.backend {
            Backend::Sqlite => self
                .sqlite_conn()
                .execute_batch(sql)
                .expect("raw sqlite sql"),
            Backend::Postgres { .. } => self.pg_client().batch_execute(sql).expect("raw pg sql"),
        }
    }

    /// Overwrites the stored bytes of one entry, behind the store's back.
    pub fn set_bytes(&self, seq: i64, bytes: &[u8]) {
        let n = match &self.backend {
            Backend::Sqlite => self
                .sqlite_conn()
                .execute(
                    "UPDATE ledger_entries SET bytes = ?1 WHERE seq = ?2",
                    rusqlite::params![bytes, seq],
                )
                .expect("raw sqlite update"),
            Backend::Postgres { .. } => self
                .pg_client()
                .execute(
                    "UPDATE ledger_entries SET bytes = $1 WHERE seq = $2",
                    &[&bytes, &seq],
                )
                .expect("raw pg update") as usize,
        };
        assert_eq!(n, 1, "entry {seq} must exist to be tampered with");
    }

    /// Holds the database's write lock (as a concurrent writer would) until the guard drops.
    pub fn hold_write_lock(&self) -> WriteLock {
        match &self.backend {
            Backend::Sqlite => {
                let conn = self.sqlite_conn();
                conn.execute_batch("BEGIN IMMEDIATE").expect("lock sqlite");
                WriteLock::Sqlite(conn)
            }
            Backend::Postgres { .. } => {
                let mut client = self.pg_client();
                client
                    .batch_execute("BEGIN; SELECT 1 FROM ledger_head FOR UPDATE")
                    .expect("lock pg ledger head");
                WriteLock::Postgres(client)
            }
        }
    }

    fn sqlite_conn(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.dir.path().join(store::SQLITE_FILE))
            .expect("open sqlite directly");
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        conn
    }

    fn pg_client(&self) -> postgres::Client {
        match &self.backend {
            Backend::Postgres { url, .. } => {
                postgres::Client::connect(url, postgres::NoTls).expect("connect directly")
            }
            Backend::Sqlite => unreachable!("not a postgres harness"),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.store = None;
        if let Backend::Postgres {
            admin_url, schema, ..
        } = &self.backend
        {
            // Best effort: a leftover schema only costs space in a throwaway database.
            if let Ok(mut admin) = postgres::Client::connect(admin_url, postgres::NoTls) {
                let _ = admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
            }
        }
    }
}

pub enum WriteLock {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        match self {
            WriteLock::Sqlite(c) => c.execute_batch("ROLLBACK").expect("unlock sqlite"),
            WriteLock::Postgres(c) => c.batch_execute("ROLLBACK").expect("unlock pg"),
        }
    }
}

/// The `n`th second after a fixed instant, as the ledger records times.
pub fn at(n: u64) -> String {
    let t = time::macros::datetime!(2025-03-01 00:00:00 UTC) + time::Duration::seconds(n as i64);
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format time")
}

pub fn entry(n: u64, kind: &str, payload: serde_json::Value) -> NewEntry {
    NewEntry {
        time: at(n),
        actor: "alice".into(),
        roles: vec!["requester".into()],
        kind: kind.into(),
        subject: None,
        payload,
    }
}

pub fn columns(title: &str, stage: &str, systems: &[&str]) -> ChangeColumns {
    ChangeColumns {
        stage: stage.into(),
        change_type: "normal".into(),
        category: "infrastructure".into(),
        title: title.into(),
        requester: "alice".into(),
        assignee: None,
        risk: None,
        systems: systems.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn new_change(n: u64, title: &str) -> Write {
    Write {
        target: Target::NewChange,
        entries: vec![entry(
            n,
            "change.requested",
            serde_json::json!({ "title": title }),
        )],
        columns: Some(columns(title, "requested", &["db"])),
    }
}

pub fn change_write(n: u64, id: &str, expected_version: u64, stage: &str) -> Write {
    Write {
        target: Target::Change {
            id: id.into(),
            expected_version,
        },
        entries: vec![entry(
            n,
            "change.moved",
            serde_json::json!({ "stage": stage }),
        )],
        columns: Some(columns("t", stage, &["db"])),
    }
}

/// Applies one write on its own and expects it to commit.
pub fn apply_one(store: &dyn Store, write: Write) -> Written {
    let mut results = store.apply(vec![write]);
    assert_eq!(results.len(), 1);
    results.pop().expect("one result").expect("write commits")
}

/// Runs the ledger verifier over the whole store, the way `changegate verify` does.
pub fn verify(store: &dyn Store) -> Result<ledger::Summary, ledger::Fault> {
    let mut verifier = ledger::Verifier::new(
        store.verifying_key(),
        store.checkpoints().expect("checkpoints"),
    );
    let mut fault = None;
    store
        .for_each_entry(0, &mut |e| match verifier.push(e) {
            Ok(()) => true,
            Err(f) => {
                fault = Some(f);
                false
            }
        })
        .expect("stream the ledger");
    match fault {
        Some(f) => Err(f),
        None => verifier.finish(),
    }
}

/// The SHA-256 hex digest of a token, as the server stores it.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}
