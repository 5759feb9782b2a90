//! The SQLite backend: one database file in the data directory, in WAL mode with full
//! fsync on commit. One writer connection behind a mutex does every write; reads use a small
//! pool of separate connections, which WAL lets run while a write is under way. Other
//! processes (a CLI next to the server) wait on the file lock for up to five seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use ledger::{Checkpoint, Frontier, StoredEntry};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::append::{self, EntryRow, HeadRow, Tx};
use crate::migrations::{self, Migration};
use crate::sql::{self, to_hash, to_i64, to_u64, CHANGE_COLUMNS, CHECKPOINT_COLUMNS, USER_COLUMNS};
use crate::{
    ChangeColumns, ChangeFilter, ChangeRow, Context, Hash, IndexColumns, NewEntry, Store,
    StoreError, StoredEvent, User, Write, Written,
};

/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle read connections kept open; more are opened under load and closed after.
const IDLE_READERS: usize = 32;

pub(crate) struct SqliteStore {
    path: PathBuf,
    key: SigningKey,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Opened for verification: new read connections are opened read-only too.
    read_only: bool,
}

impl SqliteStore {
    pub(crate) fn open(path: &Path, key: SigningKey) -> Result<SqliteStore, StoreError> {
        let mut writer = connect(path)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .context("cannot switch the database to WAL mode")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "the database at `{}` stays in {mode} journal mode, not WAL",
                path.display()
            )));
        }
        migrate(&mut writer)?;
        writer
            .execute(
                "INSERT INTO ledger_head (id, size, head, frontier) VALUES (1, 0, ?1, ?2) \
                 ON CONFLICT (id) DO NOTHING",
                params![&ledger::GENESIS_PREV[..], Frontier::new().to_bytes()],
            )
            .context("cannot create the ledger head")?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            key,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            read_only: false,
        })
    }

    /// Opens an existing database read-only: no migration, no journal-mode switch, no
    /// write of any kind. Writes through this store fail.
    pub(crate) fn open_read_only(path: &Path, key: SigningKey) -> Result<SqliteStore, StoreError> {
        let open = || -> Result<Connection, StoreError> {
            let conn = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("cannot open the database `{}` read-only", path.display()))?;
            conn.busy_timeout(BUSY_TIMEOUT)
                .context("cannot set the busy timeout")?;
            Ok(conn)
        };
        let count_tables = |conn: &Connection| -> rusqlite::Result<i64> {
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
                 AND name IN ('ledger_entries', 'ledger_head', 'checkpoints')",
                [],
                |r| r.get(0),
            )
        };
        // A database in WAL mode needs its shared-memory file to be read; in a directory
        // nobody may write to (a read-only copy, a mounted snapshot), that file cannot be
        // made, and nothing can change the database either: read it as immutable.
        let (open, immutable): (Box<dyn Fn() -> Result<Connection, StoreError>>, bool) =
            match open().map(|c| count_tables(&c).map(|n| (c, n))) {
                Ok(Ok(_)) => (Box::new(open), false),
                _ => (Box::new(|| open_immutable(path)), true),
            };
        let writer = open()?;
        let tables: i64 =
            count_tables(&writer).with_context(|| format!("cannot read `{}`", path.display()))?;
        if immutable {
            tracing::debug!(path = %path.display(), "database read as immutable");
        }
        if tables != 3 {
            return Err(StoreError::Invalid(format!(
                "`{}` is not a changegate database",
                path.display()
            )));
        }
        let reader = open()?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            key,
            writer: Mutex::new(writer),
            readers: Mutex::new(vec![reader]),
            read_only: true,
        })
    }

    /// Runs `f` on a pooled read connection.
    fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None if self.read_only => Connection::open_with_flags(
                &self.path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("cannot open `{}` read-only", self.path.display()))?,
            None => {
                let c = connect(&self.path)?;
                // Reads never write; this turns a bug that tries into an error.
                c.pragma_update(None, "query_only", true)
                    .context("cannot make a read connection read-only")?;
                c
            }
        };
        let result = f(&conn);
        let mut idle = lock(&self.readers);
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    /// Runs `f` in an immediate write transaction and commits it if `f` succeeds.
    fn write<R>(
        &self,
        f: impl FnOnce(&mut SqliteTx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut conn = lock(&self.writer);
        // IMMEDIATE takes the write lock now, so other processes queue here rather than
        // failing later when a deferred transaction tries to upgrade.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("cannot begin a write transaction")?;
        let mut tx = SqliteTx { tx };
        let result = f(&mut tx)?;
        tx.tx
            .commit()
            .context("cannot commit the write transaction")?;
        Ok(result)
    }

    /// A user write and its ledger entry, committed together.
    fn user_write(
        &self,
        user: &User,
        entry: NewEntry,
        prelude: impl FnOnce(&mut SqliteTx<'_>) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let write = append::user_entry_write(user, entry);
        self.write(|tx| {
            let mut results = append::run(tx, &self.key, vec![write], prelude)?;
            append::single_seq(results.pop())
        })
    }
}

/// A poisoned lock only means another thread panicked while holding it; the connection
/// inside is still sound (an open transaction was rolled back when it was dropped).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Opens a database that nothing can change (its directory is read-only) without its
/// shared-memory file.
fn open_immutable(path: &Path) -> Result<Connection, StoreError> {
    // Read as immutable, SQLite ignores the write-ahead log: refuse rather than read a
    // ledger without its latest entries.
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(StoreError::Backend(format!(
            "`{}` has a write-ahead log that cannot be read where nothing may be written: \
             make its directory writable, or copy the database with `sqlite3 {} \
             \".backup copy.db\"` and read the copy",
            path.display(),
            path.display()
        )));
    }
    let uri = format!(
        "file:{}?immutable=1",
        path.display()
            .to_string()
            .replace('%', "%25")
            .replace('?', "%3f")
            .replace('#', "%23")
    );
    let conn = Connection::open_with_flags(
        &uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the database `{}` read-only", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .context("cannot set the busy timeout")?;
    Ok(conn)
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open the database `{}`", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .context("cannot set the busy timeout")?;
    conn.pragma_update(None, "synchronous", "FULL")
        .context("cannot set synchronous=FULL")?;
    conn.pragma_update(None, "foreign_keys", true)
        .context("cannot enable foreign keys")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(migrations::CREATE_TABLE)
        .context("cannot create schema_migrations")?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("cannot begin the migration transaction")?;
    let applied: Option<i64> = tx
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .context("cannot read schema_migrations")?;
    migrations::check_not_newer(applied, migrations::SQLITE)?;
    let pending: Vec<&Migration> = migrations::SQLITE
        .iter()
        .filter(|m| Some(m.version) > applied)
        .collect();
    for m in pending {
        tx.execute_batch(m.sql)
            .with_context(|| format!("cannot apply migration {} ({})", m.version, m.name))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, migrations::now()],
        )
        .with_context(|| format!("cannot record migration {}", m.version))?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied sqlite migration"
        );
    }
    tx.commit().context("cannot commit the migrations")
}

/// The open write transaction the append algorithm runs in.
struct SqliteTx<'c> {
    tx: rusqlite::Transaction<'c>,
}

impl SqliteTx<'_> {
    fn replace_systems(&mut self, id: &str, systems: &[String]) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("DELETE FROM change_systems WHERE change_id = ?1")
            .and_then(|mut s| s.execute([id]))
            .with_context(|| format!("cannot clear the systems of `{id}`"))?;
        let mut insert = self
            .tx
            .prepare_cached(
                "INSERT INTO change_systems (change_id, system) VALUES (?1, ?2) \
                 ON CONFLICT DO NOTHING",
            )
            .context("cannot prepare the systems insert")?;
        for system in systems {
            insert
                .execute([id, system.as_str()])
                .with_context(|| format!("cannot record the systems of `{id}`"))?;
        }
        Ok(())
    }

    fn user_exists(&mut self, name: &str) -> Result<bool, StoreError> {
        self.one("SELECT 1 FROM users WHERE name = ?1", [name], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .with_context(|| format!("cannot look up user `{name}`"))
    }

    fn insert_user(&mut self, user: &User, token_hash: &str) -> Result<(), StoreError> {
        if self.user_exists(&user.name)? {
            return Err(StoreError::UserExists(user.name.clone()));
        }
        self.exec(
            "INSERT INTO users (name, roles, user_groups, machine, active, created_at, \
                 token_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                user.name,
                sql::list_to_text(&user.roles),
                sql::list_to_text(&user.groups),
                user.machine,
                user.active,
                user.created_at,
                token_hash
            ],
        )
        .with_context(|| format!("cannot add user `{}`", user.name))?;
        Ok(())
    }

    fn update_user(&mut self, user: &User) -> Result<(), StoreError> {
        let n = self
            .exec(
                "UPDATE users SET roles = ?2, user_groups = ?3, machine = ?4, active = ?5 \
                 WHERE name = ?1",
                params![
                    user.name,
                    sql::list_to_text(&user.roles),
                    sql::list_to_text(&user.groups),
                    user.machine,
                    user.active
                ],
            )
            .with_context(|| format!("cannot update user `{}`", user.name))?;
        if n == 0 {
            return Err(StoreError::NotFound(user.name.clone()));
        }
        Ok(())
    }
}

impl SqliteTx<'_> {
    /// Runs a statement through the connection's statement cache: the writer runs the
    /// same few statements for every write, and parsing them each time was a large part
    /// of its work.
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.tx.prepare_cached(sql)?.execute(params)
    }

    /// Reads one row through the statement cache.
    fn one<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.tx.prepare_cached(sql)?.query_row(params, f)
    }
}

impl Tx for SqliteTx<'_> {
    fn lock_head(&mut self) -> Result<HeadRow, StoreError> {
        // The IMMEDIATE transaction already holds the database's write lock.
        let (size, head, frontier): (i64, Vec<u8>, Vec<u8>) = self
            .one(
                "SELECT size, head, frontier FROM ledger_head WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .context("cannot read the ledger head")?;
        Ok(HeadRow {
            size: to_u64(size, "the ledger size")?,
            head: to_hash(&head, "the ledger head hash")?,
            frontier,
        })
    }

    fn store_head(&mut self, head: &HeadRow) -> Result<(), StoreError> {
        self.exec(
            "UPDATE ledger_head SET size = ?1, head = ?2, frontier = ?3 WHERE id = 1",
            params![
                to_i64(head.size, "ledger size")?,
                &head.head[..],
                head.frontier
            ],
        )
        .context("cannot update the ledger head")?;
        Ok(())
    }

    fn savepoint(&mut self) -> Result<(), StoreError> {
        self.exec("SAVEPOINT write", [])
            .map(drop)
            .context("cannot open a savepoint")
    }

    fn release_savepoint(&mut self) -> Result<(), StoreError> {
        self.exec("RELEASE SAVEPOINT write", [])
            .map(drop)
            .context("cannot release a savepoint")
    }

    fn rollback_to_savepoint(&mut self) -> Result<(), StoreError> {
        self.exec("ROLLBACK TO SAVEPOINT write", [])
            .map(drop)
            .context("cannot roll back to a savepoint")
    }

    fn next_change_number(&mut self) -> Result<u64, StoreError> {
        let n: i64 = self
            .one(
                "UPDATE counters SET value = value + 1 WHERE name = 'change' RETURNING value",
                [],
                |r| r.get(0),
            )
            .context("cannot allocate a change id")?;
        to_u64(n, "the change counter")
    }

    fn change_version(&mut self, id: &str) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = self
            .one("SELECT version FROM changes WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .with_context(|| format!("cannot read the version of `{id}`"))?;
        v.map(|v| to_u64(v, "a change version")).transpose()
    }

    fn first_seq_of_subject(&mut self, subject: &str) -> Result<Option<u64>, StoreError> {
        let seq: Option<i64> = self
            .tx
            .prepare_cached(
                "SELECT seq FROM ledger_entries WHERE subject = ?1 ORDER BY seq LIMIT 1",
            )
            .and_then(|mut st| st.query_row([subject], |r| r.get(0)).optional())
            .with_context(|| format!("cannot look up entries about `{subject}`"))?;
        seq.map(|s| to_u64(s, "a seq")).transpose()
    }

    fn insert_entry(&mut self, row: &EntryRow<'_>) -> Result<(), StoreError> {
        let seq = to_i64(row.seq, "seq")?;
        self.tx
            .prepare_cached(
                "INSERT INTO ledger_entries (seq, subject, kind, actor, time, bytes, leaf_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    seq,
                    row.subject,
                    row.kind,
                    row.actor,
                    row.time,
                    row.bytes,
                    &row.leaf_hash[..]
                ])
            })
            .with_context(|| format!("cannot insert ledger entry {}", row.seq))?;
        Ok(())
    }

    fn insert_change(
        &mut self,
        id: &str,
        version: u64,
        c: &ChangeColumns,
        created_at: &str,
        updated_at: &str,
    ) -> Result<(), StoreError> {
        self.exec(
            &format!(
                "INSERT INTO changes ({CHANGE_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ),
            params![
                id,
                to_i64(version, "version")?,
                c.stage,
                c.change_type,
                c.category,
                c.title,
                c.requester,
                c.assignee,
                c.risk,
                sql::list_to_text(&c.systems),
                created_at,
                updated_at
            ],
        )
        .with_context(|| format!("cannot insert change `{id}`"))?;
        self.replace_systems(id, &c.systems)
    }

    fn update_change(
        &mut self,
        id: &str,
        version: u64,
        columns: Option<&ChangeColumns>,
        updated_at: &str,
    ) -> Result<(), StoreError> {
        let version = to_i64(version, "version")?;
        match columns {
            None => self
                .exec(
                    "UPDATE changes SET version = ?2, updated_at = ?3 WHERE id = ?1",
                    params![id, version, updated_at],
                )
                .with_context(|| format!("cannot update change `{id}`"))
                .map(|_| ()),
            Some(c) => {
                let systems = sql::list_to_text(&c.systems);
                // Most actions leave the systems alone; their index is rewritten only when
                // they change.
                let before: Option<String> = self
                    .one("SELECT systems FROM changes WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })
                    .optional()
                    .with_context(|| format!("cannot read change `{id}`"))?;
                self.exec(
                    "UPDATE changes SET version = ?2, updated_at = ?3, stage = ?4, \
                         change_type = ?5, category = ?6, title = ?7, requester = ?8, \
                         assignee = ?9, risk = ?10, systems = ?11 WHERE id = ?1",
                    params![
                        id,
                        version,
                        updated_at,
                        c.stage,
                        c.change_type,
                        c.category,
                        c.title,
                        c.requester,
                        c.assignee,
                        c.risk,
                        systems
                    ],
                )
                .with_context(|| format!("cannot update change `{id}`"))?;
                if before.as_deref() == Some(systems.as_str()) {
                    return Ok(());
                }
                self.replace_systems(id, &c.systems)
            }
        }
    }

    fn insert_checkpoint(&mut self, cp: &Checkpoint) -> Result<(), StoreError> {
        self.exec(
            &format!(
                "INSERT INTO checkpoints ({CHECKPOINT_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ),
            params![
                to_i64(cp.size, "checkpoint size")?,
                &cp.root[..],
                &cp.head[..],
                cp.time,
                cp.key_id,
                cp.signature
            ],
        )
        .with_context(|| format!("cannot insert the checkpoint of size {}", cp.size))?;
        Ok(())
    }
}

/// Runs a query and converts every row, stopping at the first failure.
fn collect<T>(
    conn: &Connection,
    query: &str,
    params: impl rusqlite::Params,
    what: &str,
    mut convert: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn
        .prepare_cached(query)
        .with_context(|| format!("cannot read {what}"))?;
    let mut rows = stmt
        .query(params)
        .with_context(|| format!("cannot read {what}"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().with_context(|| format!("cannot read {what}"))? {
        out.push(convert(row)?);
    }
    Ok(out)
}

fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, i: usize, what: &str) -> Result<T, StoreError> {
    row.get(i).with_context(|| format!("cannot read {what}"))
}

fn change_row(row: &Row<'_>) -> Result<ChangeRow, StoreError> {
    let id: String = get(row, 0, "a change id")?;
    let what = format!("change `{id}`");
    Ok(ChangeRow {
        version: to_u64(get(row, 1, &what)?, "a change version")?,
        stage: get(row, 2, &what)?,
        change_type: get(row, 3, &what)?,
        category: get(row, 4, &what)?,
        title: get(row, 5, &what)?,
        requester: get(row, 6, &what)?,
        assignee: get(row, 7, &what)?,
        risk: get(row, 8, &what)?,
        systems: sql::text_to_list(&get::<String>(row, 9, &what)?, &what)?,
        created_at: get(row, 10, &what)?,
        updated_at: get(row, 11, &what)?,
        id,
    })
}

fn user_row(row: &Row<'_>) -> Result<User, StoreError> {
    let name: String = get(row, 0, "a user name")?;
    let what = format!("user `{name}`");
    Ok(User {
        roles: sql::text_to_list(&get::<String>(row, 1, &what)?, &what)?,
        groups: sql::text_to_list(&get::<String>(row, 2, &what)?, &what)?,
        machine: get(row, 3, &what)?,
        active: get(row, 4, &what)?,
        created_at: get(row, 5, &what)?,
        name,
    })
}

fn checkpoint_row(row: &Row<'_>) -> Result<Checkpoint, StoreError> {
    let size = to_u64(get(row, 0, "a checkpoint size")?, "a checkpoint size")?;
    let what = format!("the checkpoint of size {size}");
    Ok(Checkpoint {
        size,
        root: to_hash(&get::<Vec<u8>>(row, 1, &what)?, &what)?,
        head: to_hash(&get::<Vec<u8>>(row, 2, &what)?, &what)?,
        time: get(row, 3, &what)?,
        key_id: get(row, 4, &what)?,
        signature: get(row, 5, &what)?,
    })
}

fn event_row(row: &Row<'_>) -> Result<StoredEvent, StoreError> {
    let seq = to_u64(get(row, 0, "a seq")?, "a seq")?;
    let what = format!("ledger entry {seq}");
    let bytes = row
        .get_ref(1)
        .and_then(|v| Ok(v.as_blob()?))
        .with_context(|| format!("cannot read {what}"))?;
    let leaf = row
        .get_ref(2)
        .and_then(|v| Ok(v.as_blob()?))
        .with_context(|| format!("cannot read {what}"))?;
    sql::decode_event(seq, bytes, leaf)
}

impl Store for SqliteStore {
    fn apply(&self, writes: Vec<Write>) -> Vec<Result<Written, StoreError>> {
        if writes.is_empty() {
            return Vec::new();
        }
        let n = writes.len();
        match self.write(|tx| append::run(tx, &self.key, writes, |_| Ok(()))) {
            Ok(results) => results,
            Err(e) => vec![Err(e); n],
        }
    }

    fn change(&self, id: &str) -> Result<Option<ChangeRow>, StoreError> {
        self.read(|c| {
            let q = format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE id = ?1");
            Ok(collect(c, &q, [id], "a change", change_row)?.pop())
        })
    }

    fn change_events(&self, id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(|c| {
            collect(
                c,
                "SELECT seq, bytes, leaf_hash FROM ledger_entries WHERE subject = ?1 ORDER BY seq",
                [id],
                "the events of a change",
                event_row,
            )
        })
    }

    fn list_changes(&self, filter: &ChangeFilter) -> Result<Vec<ChangeRow>, StoreError> {
        let q = sql::list_query(filter, |n| format!("?{n}"));
        self.read(|c| {
            collect(
                c,
                &q.sql,
                rusqlite::params_from_iter(q.params.iter()),
                "changes",
                change_row,
            )
        })
    }

    fn system_index(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreError> {
        let what = "the system index";
        let rows = self.read(|c| {
            collect(
                c,
                "SELECT change_id, system FROM change_systems",
                [],
                what,
                |row| Ok((get(row, 0, what)?, get(row, 1, what)?)),
            )
        })?;
        Ok(sql::group_systems(rows))
    }

    fn change_counter(&self) -> Result<Option<u64>, StoreError> {
        let n: Option<i64> = self.read(|c| {
            c.query_row(
                "SELECT value FROM counters WHERE name = 'change'",
                [],
                |r| r.get(0),
            )
            .optional()
            .context("cannot read the change counter")
        })?;
        n.map(|n| to_u64(n, "the change counter")).transpose()
    }

    fn add_user(&self, user: &User, token_hash: &str, entry: NewEntry) -> Result<u64, StoreError> {
        append::check_user(user)?;
        sql::check_token_hash(token_hash)?;
        self.user_write(user, entry, |tx| tx.insert_user(user, token_hash))
    }

    fn user_by_token(&self, token_hash: &str) -> Result<Option<User>, StoreError> {
        self.read(|c| {
            let q = format!("SELECT {USER_COLUMNS} FROM users WHERE token_hash = ?1");
            Ok(collect(c, &q, [token_hash], "a user", user_row)?.pop())
        })
    }

    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.read(|c| {
            let q = format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1");
            Ok(collect(c, &q, [name], "a user", user_row)?.pop())
        })
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        self.read(|c| {
            let q = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
            collect(c, &q, [], "users", user_row)
        })
    }

    fn update_user(&self, user: &User, entry: NewEntry) -> Result<u64, StoreError> {
        append::check_user(user)?;
        self.user_write(user, entry, |tx| tx.update_user(user))
    }

    fn ledger_size(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            let n: i64 = c
                .query_row("SELECT size FROM ledger_head WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .context("cannot read the ledger size")?;
            to_u64(n, "the ledger size")
        })
    }

    fn for_each_entry(
        &self,
        from: u64,
        f: &mut dyn FnMut(StoredEntry<'_>) -> bool,
    ) -> Result<(), StoreError> {
        self.for_each_indexed(from, &mut |e, _| f(e))
    }

    fn for_each_indexed(
        &self,
        from: u64,
        f: &mut dyn FnMut(StoredEntry<'_>, IndexColumns<'_>) -> bool,
    ) -> Result<(), StoreError> {
        let from = to_i64(from, "seq")?;
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, bytes, leaf_hash, subject, kind, actor, time \
                     FROM ledger_entries WHERE seq >= ?1 ORDER BY seq",
                )
                .context("cannot read the ledger")?;
            let mut rows = stmt.query([from]).context("cannot read the ledger")?;
            while let Some(row) = rows.next().context("cannot read the ledger")? {
                let seq = to_u64(get(row, 0, "a seq")?, "a seq")?;
                let what = || format!("cannot read ledger entry {seq}");
                // Text is read as its bytes too: a value rewritten as text must still reach
                // the verifier, which then names the entry it no longer matches.
                let bytes = row
                    .get_ref(1)
                    .and_then(|v| Ok(v.as_bytes()?))
                    .with_context(what)?;
                let leaf = row
                    .get_ref(2)
                    .and_then(|v| Ok(v.as_blob()?))
                    .with_context(what)?;
                let leaf_hash = to_hash(leaf, &format!("the leaf hash of entry {seq}"))?;
                let text = |i: usize| -> Result<&str, StoreError> {
                    row.get_ref(i)
                        .and_then(|v| Ok(v.as_str()?))
                        .with_context(what)
                };
                let subject = row
                    .get_ref(3)
                    .and_then(|v| Ok(v.as_str_or_null()?))
                    .with_context(what)?;
                let index = IndexColumns {
                    subject,
                    kind: text(4)?,
                    actor: text(5)?,
                    time: text(6)?,
                };
                if !f(
                    StoredEntry {
                        seq,
                        bytes,
                        leaf_hash,
                    },
                    index,
                ) {
                    break;
                }
            }
            Ok(())
        })
    }

    fn leaf_hashes(&self, size: u64) -> Result<Vec<Hash>, StoreError> {
        let available = self.ledger_size()?;
        if size > available {
            return Err(StoreError::Invalid(format!(
                "the ledger has {available} entries, not {size}"
            )));
        }
        let limit = to_i64(size, "size")?;
        let pairs = self.read(|c| {
            collect(
                c,
                "SELECT seq, leaf_hash FROM ledger_entries WHERE seq < ?1 ORDER BY seq",
                [limit],
                "leaf hashes",
                |row| {
                    let seq = to_u64(get(row, 0, "a seq")?, "a seq")?;
                    let leaf: Vec<u8> = get(row, 1, "a leaf hash")?;
                    Ok((
                        seq,
                        to_hash(&leaf, &format!("the leaf hash of entry {seq}"))?,
                    ))
                },
            )
        })?;
        sql::contiguous_leaves(pairs, size)
    }

    fn entry(&self, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        let seq = to_i64(seq, "seq")?;
        self.read(|c| {
            Ok(collect(
                c,
                "SELECT seq, bytes, leaf_hash FROM ledger_entries WHERE seq = ?1",
                [seq],
                "a ledger entry",
                event_row,
            )?
            .pop())
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.read(|c| {
            let q = format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY size");
            collect(c, &q, [], "checkpoints", checkpoint_row)
        })
    }

    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.read(|c| {
            let q =
                format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY size DESC LIMIT 1");
            Ok(collect(c, &q, [], "the latest checkpoint", checkpoint_row)?.pop())
        })
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<Checkpoint>, StoreError> {
        let size = to_i64(size, "size")?;
        self.read(|c| {
            let q = format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE size = ?1");
            Ok(collect(c, &q, [size], "a checkpoint", checkpoint_row)?.pop())
        })
    }

    fn checkpoint_at_or_after(&self, size: u64) -> Result<Option<Checkpoint>, StoreError> {
        let size = to_i64(size, "size")?;
        self.read(|c| {
            let q = format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE size >= ?1 \
                 ORDER BY size LIMIT 1"
            );
            Ok(collect(c, &q, [size], "a checkpoint", checkpoint_row)?.pop())
        })
    }

    fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .with_context(|| format!("cannot read setting `{key}`"))
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.tx
                .execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [key, value],
                )
                .with_context(|| format!("cannot write setting `{key}`"))?;
            Ok(())
        })
    }
}
