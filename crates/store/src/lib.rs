//! Durable storage of changegate: the append-only ledger of entries with its signed
//! checkpoints, the change read model derived from it, users with their token digests, and a
//! small key-value table of settings.
//!
//! One [`Store`] interface, two backends: SQLite (embedded, the default, a file in the data
//! directory) and PostgreSQL (chosen by a `postgres://` URL). Both run the same append
//! algorithm (the private `append` module), so ledger order, change id allocation and
//! optimistic version checks behave the same whichever database holds them. The store knows
//! nothing of the change lifecycle: callers decide what to write and pass the read-model
//! columns in.
//!
//! The store is synchronous. Async callers go through `spawn_blocking` or through the
//! [`Committer`], which groups concurrent writes into one transaction.

mod append;
pub mod committer;
pub mod keys;
mod migrations;
mod postgres;
mod sql;
mod sqlite;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

pub use committer::Committer;
pub use ledger::{Checkpoint, Entry, Hash, StoredEntry};

/// The name of the SQLite database file inside the data directory.
pub const SQLITE_FILE: &str = "changegate.db";

/// The name of the signing key file inside the data directory.
pub const KEY_FILE: &str = "ledger-signing.key";

/// One ledger entry as the caller asks for it; the store assigns its position and links it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEntry {
    /// RFC 3339 in UTC with a `Z` suffix.
    pub time: String,
    pub actor: String,
    pub roles: Vec<String>,
    pub kind: String,
    /// Replaced by the change id when the write targets a change.
    pub subject: Option<String>,
    pub payload: serde_json::Value,
}

/// What a write is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A new change: the store allocates its id.
    NewChange,
    /// An existing change that must still be at `expected_version`.
    Change { id: String, expected_version: u64 },
    /// Not about a change (user events, policy changes).
    None,
    /// Not about a change, and written only if no entry has `subject` yet: a webhook
    /// delivery or an imported record, accepted once however often it arrives. The check
    /// runs under the ledger head's lock, so concurrent writers cannot both pass it. The
    /// entries are recorded under `subject`.
    Once { subject: String },
}

/// A change as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRow {
    pub id: String,
    /// The number of ledger entries about this change.
    pub version: u64,
    pub stage: String,
    pub change_type: String,
    pub category: String,
    pub title: String,
    pub requester: String,
    pub assignee: Option<String>,
    pub risk: Option<String>,
    pub systems: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The read-model columns of a change after a write, computed by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeColumns {
    pub stage: String,
    pub change_type: String,
    pub category: String,
    pub title: String,
    pub requester: String,
    pub assignee: Option<String>,
    pub risk: Option<String>,
    pub systems: Vec<String>,
}

/// One write: entries to append about one target, and the read-model columns after them.
///
/// `columns` is required for a new change, optional for an existing one (without it only the
/// version and `updated_at` move), and must be absent for [`Target::None`].
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub target: Target,
    pub entries: Vec<NewEntry>,
    pub columns: Option<ChangeColumns>,
}

/// The outcome of a committed write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The change written to, `None` for [`Target::None`] and [`Target::Once`].
    pub change_id: Option<String>,
    /// The change's version after the write; 0 for [`Target::None`].
    pub version: u64,
    /// The positions of the appended entries, in order.
    pub seqs: Vec<u64>,
    /// The size of the signed checkpoint that covers the write.
    pub checkpoint_size: u64,
}

/// A stored ledger entry, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub entry: Entry,
    pub leaf_hash: Hash,
}

/// A user of changegate. Users are deactivated, never deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    /// A machine identity (a CI pipeline) rather than a person.
    pub machine: bool,
    pub active: bool,
    pub created_at: String,
}

/// The columns stored beside an entry's bytes, used to find entries by subject; they are
/// not covered by the hash, so verification compares them with the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexColumns<'a> {
    pub subject: Option<&'a str>,
    pub kind: &'a str,
    pub actor: &'a str,
    pub time: &'a str,
}

/// Which changes to list. Every `Some` narrows the result; rows come ordered by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeFilter {
    pub stage: Option<String>,
    pub change_type: Option<String>,
    pub category: Option<String>,
    pub requester: Option<String>,
    pub assignee: Option<String>,
    /// Changes that list this system among theirs.
    pub system: Option<String>,
    /// Keyset paging: only changes ordered after this id.
    pub after_id: Option<String>,
    /// The most rows to return; 0 means no limit.
    pub limit: u32,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The optimistic version check lost: nothing was written.
    #[error("change `{id}` is at version {actual}, not the expected {expected}")]
    Conflict {
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error("`{0}` does not exist")]
    NotFound(String),
    #[error("user `{0}` already exists")]
    UserExists(String),
    #[error("invalid: {0}")]
    Invalid(String),
    /// A [`Target::Once`] write whose subject is already recorded: nothing was written.
    #[error("`{subject}` is already recorded at entry {seq}")]
    Duplicate { subject: String, seq: u64 },
    /// The database failed; the message says what the store was doing.
    #[error("{0}")]
    Backend(String),
    /// Stored data cannot be read back as the store wrote it.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Adds what the store was doing to an error from below.
pub(crate) trait Context<T> {
    fn context(self, what: &str) -> Result<T, StoreError>;
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Backend(format!("{what}: {e}")))
    }

    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Backend(format!("{}: {e}", what())))
    }
}

/// The storage interface every backend implements; callers hold it as `Arc<dyn Store>`.
pub trait Store: Send + Sync {
    /// Commits a batch of writes in one database transaction, each write all-or-nothing on
    /// its own: one failing write does not spoil the others. Results come in the order of
    /// `writes`; none is `Ok` unless the transaction committed. One signed checkpoint covers
    /// the whole batch.
    fn apply(&self, writes: Vec<Write>) -> Vec<Result<Written, StoreError>>;

    /// One change of the read model.
    fn change(&self, id: &str) -> Result<Option<ChangeRow>, StoreError>;

    /// The ledger entries about one change, ordered by seq.
    fn change_events(&self, id: &str) -> Result<Vec<StoredEvent>, StoreError>;

    /// Changes matching a filter, ordered by id (numerically for allocated ids).
    fn list_changes(&self, filter: &ChangeFilter) -> Result<Vec<ChangeRow>, StoreError>;

    /// The system index the listing filters on ([`ChangeFilter::system`]): every change id
    /// it holds, with the systems it files that change under. A change without systems has
    /// no entry. Read for verification, which compares it with the changes' events.
    fn system_index(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreError>;

    /// The change counter: the number of the last change id allocated (0 before the first),
    /// or `None` when its row is missing and no change id can be allocated.
    fn change_counter(&self) -> Result<Option<u64>, StoreError>;

    /// Adds a user and records `entry` about it in the ledger, in one transaction. Returns
    /// the entry's seq. `token_hash` is the SHA-256 hex digest of the user's token.
    fn add_user(&self, user: &User, token_hash: &str, entry: NewEntry) -> Result<u64, StoreError>;

    /// The user holding a token, active or not.
    fn user_by_token(&self, token_hash: &str) -> Result<Option<User>, StoreError>;

    fn user(&self, name: &str) -> Result<Option<User>, StoreError>;

    /// Every user, ordered by name.
    fn users(&self) -> Result<Vec<User>, StoreError>;

    /// Updates a user's roles, groups, machine flag and active flag, and records `entry`
    /// about it, in one transaction. Returns the entry's seq.
    fn update_user(&self, user: &User, entry: NewEntry) -> Result<u64, StoreError>;

    /// The number of committed ledger entries.
    fn ledger_size(&self) -> Result<u64, StoreError>;

    /// Streams stored entries with seq >= `from`, ordered by seq, exactly as stored: gaps or
    /// duplicates are not smoothed over, so a verifier can see them. `f` returns false to
    /// stop early.
    fn for_each_entry(
        &self,
        from: u64,
        f: &mut dyn FnMut(StoredEntry<'_>) -> bool,
    ) -> Result<(), StoreError>;

    /// Like [`Store::for_each_entry`], with the columns stored beside each entry for
    /// lookups, so that a verifier can check them against the hashed bytes.
    fn for_each_indexed(
        &self,
        from: u64,
        f: &mut dyn FnMut(StoredEntry<'_>, IndexColumns<'_>) -> bool,
    ) -> Result<(), StoreError>;

    /// The leaf hashes of the first `size` entries.
    fn leaf_hashes(&self, size: u64) -> Result<Vec<Hash>, StoreError>;

    /// One entry, decoded.
    fn entry(&self, seq: u64) -> Result<Option<StoredEvent>, StoreError>;

    /// Every signed checkpoint, ordered by size.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;

    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError>;

    /// The signed checkpoint of exactly this size, if one was made.
    fn checkpoint_at(&self, size: u64) -> Result<Option<Checkpoint>, StoreError>;

    /// The smallest signed checkpoint whose size is at least `size`.
    fn checkpoint_at_or_after(&self, size: u64) -> Result<Option<Checkpoint>, StoreError>;

    /// The key that verifies this store's checkpoints.
    fn verifying_key(&self) -> VerifyingKey;

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;
}

/// The number a change id is allocated as (`CHG-000042` is 42), or `None` for an id the
/// store never allocates, which therefore cannot collide with an allocated one.
pub fn change_number(id: &str) -> Option<u64> {
    let digits = id.strip_prefix("CHG-")?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    (append::change_id(n) == id).then_some(n)
}

/// Opens the store: PostgreSQL when `database_url` is a `postgres://` or `postgresql://`
/// URL, else SQLite in `data_dir`. Creates the data directory and the signing key when
/// missing, and brings the schema up to date.
pub fn open(data_dir: &Path, database_url: Option<&str>) -> Result<Arc<dyn Store>, StoreError> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory `{}`", data_dir.display()))?;
    let key = keys::load_or_create(&data_dir.join(KEY_FILE))?;
    match database_url {
        None => Ok(Arc::new(sqlite::SqliteStore::open(
            &data_dir.join(SQLITE_FILE),
            key,
        )?)),
        Some(url) => match url_scheme(url) {
            Some("postgres" | "postgresql") => Ok(Arc::new(postgres::PgStore::open(url, key)?)),
            Some(other) => Err(StoreError::Invalid(format!(
                "unsupported database url scheme `{other}`: expected postgres:// or postgresql://"
            ))),
            None => Err(StoreError::Invalid(
                "the database url has no scheme: expected postgres:// or postgresql://".into(),
            )),
        },
    }
}

/// Opens an existing store without changing anything on disk, for verification: the data
/// directory, its signing key and (for SQLite) its database must already exist, and SQLite
/// is opened read-only.
pub fn open_existing(
    data_dir: &Path,
    database_url: Option<&str>,
) -> Result<Arc<dyn Store>, StoreError> {
    if !data_dir.is_dir() {
        return Err(StoreError::NotFound(data_dir.display().to_string()));
    }
    let key = keys::load(&data_dir.join(KEY_FILE))?;
    match database_url {
        None => {
            let path = data_dir.join(SQLITE_FILE);
            if !path.is_file() {
                return Err(StoreError::NotFound(path.display().to_string()));
            }
            Ok(Arc::new(sqlite::SqliteStore::open_read_only(&path, key)?))
        }
        Some(_) => open(data_dir, database_url),
    }
}

/// The scheme of a URL, without reading (or echoing) anything after it: the rest may
/// carry a password.
fn url_scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once("://")?;
    let valid = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_scheme_reads_only_the_scheme() {
        assert_eq!(url_scheme("postgres://u:p@h/db"), Some("postgres"));
        assert_eq!(url_scheme("mysql://x"), Some("mysql"));
        assert_eq!(url_scheme("changegate.db"), None);
        assert_eq!(url_scheme("a b://x"), None);
    }

    #[test]
    fn change_numbers_are_read_from_allocated_ids_only() {
        assert_eq!(change_number("CHG-000042"), Some(42));
        assert_eq!(change_number("CHG-1000000"), Some(1_000_000));
        assert_eq!(change_number(&append::change_id(7)), Some(7));
        for other in [
            "CHG-42",
            "CHG-0001000",
            "CHG-+00042",
            "CHG-",
            "chg-000042",
            "X-000042",
        ] {
            assert_eq!(change_number(other), None, "{other}");
        }
    }

    #[test]
    fn open_rejects_other_schemes_naming_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = open(dir.path(), Some("mysql://root:secret@localhost/x"))
            .err()
            .expect("mysql must be rejected");
        let text = err.to_string();
        assert!(matches!(err, StoreError::Invalid(_)), "{text}");
        assert!(text.contains("`mysql`"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn postgres_urls_select_postgres() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Nothing listens on port 1: reaching the connect step proves the URL was routed.
        for url in [
            "postgres://u:secret@127.0.0.1:1/db",
            "postgresql://u:secret@127.0.0.1:1/db",
        ] {
            let err = open(dir.path(), Some(url)).err().expect("no server there");
            let text = err.to_string();
            assert!(matches!(err, StoreError::Backend(_)), "{text}");
            assert!(text.contains("cannot connect to PostgreSQL"), "{text}");
            assert!(!text.contains("secret"), "{text}");
        }
    }
}
