//! The PostgreSQL backend, chosen by a `postgres://` URL. Several server instances may share
//! one database: every write transaction first locks the single `ledger_head` row
//! (`SELECT … FOR UPDATE`), so they append in one agreed order. Connections come from a small
//! pool of synchronous clients; each client drives its own I/O, so the store works from a
//! plain thread as well as from `tokio::task::spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use ledger::{Checkpoint, Frontier, StoredEntry};
use postgres::types::ToSql;
use postgres::{Client, Config, GenericClient, NoTls, Row, Statement};

use crate::append::{self, EntryRow, HeadRow, Tx};
use crate::migrations;
use crate::sql::{self, to_hash, to_i64, to_u64, CHANGE_COLUMNS, CHECKPOINT_COLUMNS, USER_COLUMNS};
use crate::{
    ChangeColumns, ChangeFilter, ChangeRow, Context, Hash, IndexColumns, NewEntry, Store,
    StoreError, StoredEvent, User, Write, Written,
};

/// Idle connections kept open; more are opened under load and closed after.
const IDLE_CLIENTS: usize = 8;

/// Rows fetched per round trip when streaming the ledger.
const STREAM_BATCH: i32 = 1000;

/// Serializes migrations of concurrently starting instances (an arbitrary constant that
/// names this lock in `pg_advisory_xact_lock`).
const MIGRATION_LOCK: i64 = 0x6368_616e_6765_6761;

/// Statements prepared once per connection: parsing and planning every statement again would
/// cost a round trip each, several per appended entry.
type Statements = HashMap<String, Statement>;

/// More distinct statements than this on one connection means something builds SQL text
/// freely; the cache starts over rather than grow without bound.
const MAX_STATEMENTS: usize = 128;

/// Returns the prepared form of `sql` on the connection `client` belongs to.
fn prepared<C: GenericClient>(
    client: &mut C,
    statements: &mut Statements,
    sql: &str,
) -> Result<Statement, postgres::Error> {
    if let Some(s) = statements.get(sql) {
        return Ok(s.clone());
    }
    let statement = client.prepare(sql)?;
    if statements.len() >= MAX_STATEMENTS {
        statements.clear();
    }
    statements.insert(sql.to_string(), statement.clone());
    Ok(statement)
}

pub(crate) struct PgStore {
    config: Config,
    key: SigningKey,
    idle: Mutex<Vec<Conn>>,
}

/// One connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: Statements,
}

/// A connection on loan from the pool, returned on drop unless it broke.
struct Pooled<'s> {
    store: &'s PgStore,
    conn: Option<Conn>,
}

impl Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        // Only `drop` takes the connection out.
        self.conn
            .as_ref()
            .expect("a pooled connection is present until dropped")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a pooled connection is present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !conn.client.is_closed() {
                let mut idle = lock(&self.store.idle);
                if idle.len() < IDLE_CLIENTS {
                    idle.push(conn);
                }
            }
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it; the idle list
/// itself is still sound.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for PgStore {
    /// A blocking client closes its connection by running a small runtime of its own, which
    /// tokio forbids on a thread that is driving async tasks; the last reference to the
    /// store may well be dropped on one, so the idle clients are closed on a thread of
    /// their own.
    fn drop(&mut self) {
        let idle = std::mem::take(&mut *lock(&self.idle));
        if idle.is_empty() {
            return;
        }
        let _ = std::thread::spawn(move || drop(idle)).join();
    }
}

impl PgStore {
    pub(crate) fn open(url: &str, key: SigningKey) -> Result<PgStore, StoreError> {
        // The parser's messages name the offending option, never a value, so no password leaks.
        let mut config = Config::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("cannot parse the database url: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("changegate");
        }
        let store = PgStore {
            config,
            key,
            idle: Mutex::new(Vec::new()),
        };
        {
            let mut conn = store.client()?;
            migrate(&mut conn.client)?;
            conn.client
                .execute(
                    "INSERT INTO ledger_head (id, size, head, frontier) VALUES (1, 0, $1, $2) \
                     ON CONFLICT (id) DO NOTHING",
                    &[&&ledger::GENESIS_PREV[..], &Frontier::new().to_bytes()],
                )
                .context("cannot create the ledger head")?;
        }
        Ok(store)
    }

    fn client(&self) -> Result<Pooled<'_>, StoreError> {
        let pooled = lock(&self.idle).pop();
        let conn = match pooled {
            Some(c) => c,
            None => Conn {
                client: self
                    .config
                    .connect(NoTls)
                    .context("cannot connect to PostgreSQL")?,
                statements: Statements::new(),
            },
        };
        Ok(Pooled {
            store: self,
            conn: Some(conn),
        })
    }

    /// Runs `f` in a write transaction and commits it if `f` succeeds.
    fn write<R>(
        &self,
        f: impl FnOnce(&mut PgTx<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut pooled = self.client()?;
        let Conn { client, statements } = &mut *pooled;
        let tx = client
            .transaction()
            .context("cannot begin a write transaction")?;
        let mut tx = PgTx { tx, statements };
        let result = f(&mut tx)?;
        tx.tx
            .commit()
            .context("cannot commit the write transaction")?;
        Ok(result)
    }

    fn user_write(
        &self,
        user: &User,
        entry: NewEntry,
        prelude: impl FnOnce(&mut PgTx<'_>) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let write = append::user_entry_write(user, entry);
        self.write(|tx| {
            let mut results = append::run(tx, &self.key, vec![write], prelude)?;
            append::single_seq(results.pop())
        })
    }

    fn query<T>(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &str,
        convert: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut pooled = self.client()?;
        let Conn { client, statements } = &mut *pooled;
        let rows = prepared(client, statements, query)
            .and_then(|statement| client.query(&statement, params))
            .with_context(|| format!("cannot read {what}"))?;
        rows.iter().map(convert).collect()
    }
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client
        .transaction()
        .context("cannot begin the migration transaction")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .context("cannot take the migration lock")?;
    tx.batch_execute(migrations::CREATE_TABLE)
        .context("cannot create schema_migrations")?;
    let applied: Option<i64> = tx
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .and_then(|r| r.try_get(0))
        .context("cannot read schema_migrations")?;
    migrations::check_not_newer(applied, migrations::POSTGRES)?;
    for m in migrations::POSTGRES
        .iter()
        .filter(|m| Some(m.version) > applied)
    {
        tx.batch_execute(m.sql)
            .with_context(|| format!("cannot apply migration {} ({})", m.version, m.name))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &migrations::now()],
        )
        .with_context(|| format!("cannot record migration {}", m.version))?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied postgres migration"
        );
    }
    tx.commit().context("cannot commit the migrations")
}

fn get<'r, T: postgres::types::FromSql<'r>>(
    row: &'r Row,
    i: usize,
    what: &str,
) -> Result<T, StoreError> {
    row.try_get(i)
        .with_context(|| format!("cannot read {what}"))
}

fn change_row(row: &Row) -> Result<ChangeRow, StoreError> {
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
        systems: sql::text_to_list(get(row, 9, &what)?, &what)?,
        created_at: get(row, 10, &what)?,
        updated_at: get(row, 11, &what)?,
        id,
    })
}

fn user_row(row: &Row) -> Result<User, StoreError> {
    let name: String = get(row, 0, "a user name")?;
    let what = format!("user `{name}`");
    Ok(User {
        roles: sql::text_to_list(get(row, 1, &what)?, &what)?,
        groups: sql::text_to_list(get(row, 2, &what)?, &what)?,
        machine: get(row, 3, &what)?,
        active: get(row, 4, &what)?,
        created_at: get(row, 5, &what)?,
        name,
    })
}

fn checkpoint_row(row: &Row) -> Result<Checkpoint, StoreError> {
    let size = to_u64(get(row, 0, "a checkpoint size")?, "a checkpoint size")?;
    let what = format!("the checkpoint of size {size}");
    Ok(Checkpoint {
        size,
        root: to_hash(get(row, 1, &what)?, &what)?,
        head: to_hash(get(row, 2, &what)?, &what)?,
        time: get(row, 3, &what)?,
        key_id: get(row, 4, &what)?,
        signature: get(row, 5, &what)?,
    })
}

fn event_row(row: &Row) -> Result<StoredEvent, StoreError> {
    let seq = to_u64(get(row, 0, "a seq")?, "a seq")?;
    let what = format!("ledger entry {seq}");
    sql::decode_event(seq, get(row, 1, &what)?, get(row, 2, &what)?)
}

/// The open write transaction the append algorithm runs in.
struct PgTx<'c> {
    tx: postgres::Transaction<'c>,
    statements: &'c mut Statements,
}

impl PgTx<'_> {
    fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let statement = prepared(&mut self.tx, self.statements, sql)?;
        self.tx.execute(&statement, params)
    }

    fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = prepared(&mut self.tx, self.statements, sql)?;
        self.tx.query_opt(&statement, params)
    }

    fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        let statement = prepared(&mut self.tx, self.statements, sql)?;
        self.tx.query_one(&statement, params)
    }

    fn replace_systems(&mut self, id: &str, systems: &[String]) -> Result<(), StoreError> {
        self.execute("DELETE FROM change_systems WHERE change_id = $1", &[&id])
            .with_context(|| format!("cannot clear the systems of `{id}`"))?;
        for system in systems {
            self.execute(
                "INSERT INTO change_systems (change_id, system) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                &[&id, system],
            )
            .with_context(|| format!("cannot record the systems of `{id}`"))?;
        }
        Ok(())
    }

    fn insert_user(&mut self, user: &User, token_hash: &str) -> Result<(), StoreError> {
        // Writers hold the head lock, so no other transaction can add this name meanwhile.
        let exists = self
            .query_opt("SELECT 1 FROM users WHERE name = $1", &[&user.name])
            .with_context(|| format!("cannot look up user `{}`", user.name))?
            .is_some();
        if exists {
            return Err(StoreError::UserExists(user.name.clone()));
        }
        self.execute(
            "INSERT INTO users (name, roles, user_groups, machine, active, created_at, \
                 token_hash) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &user.name,
                &sql::list_to_text(&user.roles),
                &sql::list_to_text(&user.groups),
                &user.machine,
                &user.active,
                &user.created_at,
                &token_hash,
            ],
        )
        .with_context(|| format!("cannot add user `{}`", user.name))?;
        Ok(())
    }

    fn update_user(&mut self, user: &User) -> Result<(), StoreError> {
        let n = self
            .execute(
                "UPDATE users SET roles = $2, user_groups = $3, machine = $4, active = $5 \
                 WHERE name = $1",
                &[
                    &user.name,
                    &sql::list_to_text(&user.roles),
                    &sql::list_to_text(&user.groups),
                    &user.machine,
                    &user.active,
                ],
            )
            .with_context(|| format!("cannot update user `{}`", user.name))?;
        if n == 0 {
            return Err(StoreError::NotFound(user.name.clone()));
        }
        Ok(())
    }
}

impl Tx for PgTx<'_> {
    fn lock_head(&mut self) -> Result<HeadRow, StoreError> {
        let row = self
            .query_one(
                "SELECT size, head, frontier FROM ledger_head WHERE id = 1 FOR UPDATE",
                &[],
            )
            .context("cannot lock the ledger head")?;
        Ok(HeadRow {
            size: to_u64(get(&row, 0, "the ledger size")?, "the ledger size")?,
            head: to_hash(get(&row, 1, "the ledger head")?, "the ledger head hash")?,
            frontier: get(&row, 2, "the ledger frontier")?,
        })
    }

    fn store_head(&mut self, head: &HeadRow) -> Result<(), StoreError> {
        self.execute(
            "UPDATE ledger_head SET size = $1, head = $2, frontier = $3 WHERE id = 1",
            &[
                &to_i64(head.size, "ledger size")?,
                &&head.head[..],
                &head.frontier,
            ],
        )
        .context("cannot update the ledger head")?;
        Ok(())
    }

    fn savepoint(&mut self) -> Result<(), StoreError> {
        self.tx
            .batch_execute("SAVEPOINT write")
            .context("cannot open a savepoint")
    }

    fn release_savepoint(&mut self) -> Result<(), StoreError> {
        self.tx
            .batch_execute("RELEASE SAVEPOINT write")
            .context("cannot release a savepoint")
    }

    fn rollback_to_savepoint(&mut self) -> Result<(), StoreError> {
        self.tx
            .batch_execute("ROLLBACK TO SAVEPOINT write")
            .context("cannot roll back to a savepoint")
    }

    fn next_change_number(&mut self) -> Result<u64, StoreError> {
        let row = self
            .query_one(
                "UPDATE counters SET value = value + 1 WHERE name = 'change' RETURNING value",
                &[],
            )
            .context("cannot allocate a change id")?;
        to_u64(get(&row, 0, "the change counter")?, "the change counter")
    }

    fn change_version(&mut self, id: &str) -> Result<Option<u64>, StoreError> {
        let row = self
            .query_opt("SELECT version FROM changes WHERE id = $1", &[&id])
            .with_context(|| format!("cannot read the version of `{id}`"))?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(to_u64(
                get(&r, 0, "a change version")?,
                "a change version",
            )?)),
        }
    }

    fn first_seq_of_subject(&mut self, subject: &str) -> Result<Option<u64>, StoreError> {
        let row = self
            .query_opt(
                "SELECT seq FROM ledger_entries WHERE subject = $1 ORDER BY seq LIMIT 1",
                &[&subject],
            )
            .with_context(|| format!("cannot look up entries about `{subject}`"))?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(to_u64(get(&r, 0, "a seq")?, "a seq")?)),
        }
    }

    fn insert_entry(&mut self, row: &EntryRow<'_>) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO ledger_entries (seq, subject, kind, actor, time, bytes, leaf_hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &to_i64(row.seq, "seq")?,
                &row.subject,
                &row.kind,
                &row.actor,
                &row.time,
                &row.bytes,
                &&row.leaf_hash[..],
            ],
        )
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
        self.execute(
            &format!(
                "INSERT INTO changes ({CHANGE_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ),
            &[
                &id,
                &to_i64(version, "version")?,
                &c.stage,
                &c.change_type,
                &c.category,
                &c.title,
                &c.requester,
                &c.assignee,
                &c.risk,
                &sql::list_to_text(&c.systems),
                &created_at,
                &updated_at,
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
                .execute(
                    "UPDATE changes SET version = $2, updated_at = $3 WHERE id = $1",
                    &[&id, &version, &updated_at],
                )
                .with_context(|| format!("cannot update change `{id}`"))
                .map(|_| ()),
            Some(c) => {
                let systems = sql::list_to_text(&c.systems);
                // Most actions leave the systems alone; their index is rewritten only when
                // they change.
                let before: Option<String> = self
                    .query_opt("SELECT systems FROM changes WHERE id = $1", &[&id])
                    .with_context(|| format!("cannot read change `{id}`"))?
                    .map(|row| row.get(0));
                self.execute(
                    "UPDATE changes SET version = $2, updated_at = $3, stage = $4, \
                         change_type = $5, category = $6, title = $7, requester = $8, \
                         assignee = $9, risk = $10, systems = $11 WHERE id = $1",
                    &[
                        &id,
                        &version,
                        &updated_at,
                        &c.stage,
                        &c.change_type,
                        &c.category,
                        &c.title,
                        &c.requester,
                        &c.assignee,
                        &c.risk,
                        &systems,
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
        self.execute(
            &format!(
                "INSERT INTO checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
            ),
            &[
                &to_i64(cp.size, "checkpoint size")?,
                &&cp.root[..],
                &&cp.head[..],
                &cp.time,
                &cp.key_id,
                &cp.signature,
            ],
        )
        .with_context(|| format!("cannot insert the checkpoint of size {}", cp.size))?;
        Ok(())
    }
}

impl Store for PgStore {
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
        let q = format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE id = $1");
        Ok(self.query(&q, &[&id], "a change", change_row)?.pop())
    }

    fn change_events(&self, id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.query(
            "SELECT seq, bytes, leaf_hash FROM ledger_entries WHERE subject = $1 ORDER BY seq",
            &[&id],
            "the events of a change",
            event_row,
        )
    }

    fn list_changes(&self, filter: &ChangeFilter) -> Result<Vec<ChangeRow>, StoreError> {
        // The cast tells PostgreSQL the parameter's type where `length($n)` alone is ambiguous.
        let q = sql::list_query(filter, |n| format!("${n}::text"));
        let params: Vec<&(dyn ToSql + Sync)> =
            q.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        // Not from the statement cache: filter combinations and limits make many texts.
        let mut pooled = self.client()?;
        let rows = pooled
            .client
            .query(&q.sql, &params)
            .context("cannot list changes")?;
        rows.iter().map(change_row).collect()
    }

    fn system_index(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreError> {
        let what = "the system index";
        let rows = self.query(
            "SELECT change_id, system FROM change_systems",
            &[],
            what,
            |row| Ok((get(row, 0, what)?, get(row, 1, what)?)),
        )?;
        Ok(sql::group_systems(rows))
    }

    fn change_counter(&self) -> Result<Option<u64>, StoreError> {
        let values = self.query(
            "SELECT value FROM counters WHERE name = 'change'",
            &[],
            "the change counter",
            |r| to_u64(get(r, 0, "the change counter")?, "the change counter"),
        )?;
        Ok(values.first().copied())
    }

    fn add_user(&self, user: &User, token_hash: &str, entry: NewEntry) -> Result<u64, StoreError> {
        append::check_user(user)?;
        sql::check_token_hash(token_hash)?;
        self.user_write(user, entry, |tx| tx.insert_user(user, token_hash))
    }

    fn user_by_token(&self, token_hash: &str) -> Result<Option<User>, StoreError> {
        let q = format!("SELECT {USER_COLUMNS} FROM users WHERE token_hash = $1");
        Ok(self.query(&q, &[&token_hash], "a user", user_row)?.pop())
    }

    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let q = format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1");
        Ok(self.query(&q, &[&name], "a user", user_row)?.pop())
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        let q = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
        self.query(&q, &[], "users", user_row)
    }

    fn update_user(&self, user: &User, entry: NewEntry) -> Result<u64, StoreError> {
        append::check_user(user)?;
        self.user_write(user, entry, |tx| tx.update_user(user))
    }

    fn ledger_size(&self) -> Result<u64, StoreError> {
        let sizes = self.query(
            "SELECT size FROM ledger_head WHERE id = 1",
            &[],
            "the ledger size",
            |r| to_u64(get(r, 0, "the ledger size")?, "the ledger size"),
        )?;
        sizes
            .first()
            .copied()
            .ok_or_else(|| StoreError::Corrupt("the ledger head row is missing".into()))
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
        let mut pooled = self.client()?;
        let client = &mut pooled.client;
        // A portal streams in batches, so a long ledger is never held in memory at once.
        let mut tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .context("cannot begin a read transaction")?;
        let portal = tx
            .bind(
                "SELECT seq, bytes, leaf_hash, subject, kind, actor, time \
                 FROM ledger_entries WHERE seq >= $1 ORDER BY seq",
                &[&from],
            )
            .context("cannot read the ledger")?;
        loop {
            let rows = tx
                .query_portal(&portal, STREAM_BATCH)
                .context("cannot read the ledger")?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let seq = to_u64(get(row, 0, "a seq")?, "a seq")?;
                let what = format!("ledger entry {seq}");
                let bytes: &[u8] = get(row, 1, &what)?;
                let leaf: &[u8] = get(row, 2, &what)?;
                let leaf_hash = to_hash(leaf, &format!("the leaf hash of entry {seq}"))?;
                let index = IndexColumns {
                    subject: get(row, 3, &what)?,
                    kind: get(row, 4, &what)?,
                    actor: get(row, 5, &what)?,
                    time: get(row, 6, &what)?,
                };
                if !f(
                    StoredEntry {
                        seq,
                        bytes,
                        leaf_hash,
                    },
                    index,
                ) {
                    return Ok(());
                }
            }
        }
        tx.commit().context("cannot end the read transaction")
    }

    fn leaf_hashes(&self, size: u64) -> Result<Vec<Hash>, StoreError> {
        let available = self.ledger_size()?;
        if size > available {
            return Err(StoreError::Invalid(format!(
                "the ledger has {available} entries, not {size}"
            )));
        }
        let pairs = self.query(
            "SELECT seq, leaf_hash FROM ledger_entries WHERE seq < $1 ORDER BY seq",
            &[&to_i64(size, "size")?],
            "leaf hashes",
            |row| {
                let seq = to_u64(get(row, 0, "a seq")?, "a seq")?;
                let leaf: &[u8] = get(row, 1, "a leaf hash")?;
                Ok((
                    seq,
                    to_hash(leaf, &format!("the leaf hash of entry {seq}"))?,
                ))
            },
        )?;
        sql::contiguous_leaves(pairs, size)
    }

    fn entry(&self, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self
            .query(
                "SELECT seq, bytes, leaf_hash FROM ledger_entries WHERE seq = $1",
                &[&to_i64(seq, "seq")?],
                "a ledger entry",
                event_row,
            )?
            .pop())
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let q = format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY size");
        self.query(&q, &[], "checkpoints", checkpoint_row)
    }

    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let q = format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY size DESC LIMIT 1");
        Ok(self
            .query(&q, &[], "the latest checkpoint", checkpoint_row)?
            .pop())
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<Checkpoint>, StoreError> {
        let q = format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE size = $1");
        Ok(self
            .query(
                &q,
                &[&to_i64(size, "size")?],
                "a checkpoint",
                checkpoint_row,
            )?
            .pop())
    }

    fn checkpoint_at_or_after(&self, size: u64) -> Result<Option<Checkpoint>, StoreError> {
        let q = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE size >= $1 ORDER BY size LIMIT 1"
        );
        Ok(self
            .query(
                &q,
                &[&to_i64(size, "size")?],
                "a checkpoint",
                checkpoint_row,
            )?
            .pop())
    }

    fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let values = self.query(
            "SELECT value FROM meta WHERE key = $1",
            &[&key],
            "a setting",
            |r| get(r, 0, "a setting"),
        )?;
        Ok(values.into_iter().next())
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .with_context(|| format!("cannot write setting `{key}`"))?;
            Ok(())
        })
    }
}
