//! The append algorithm both backends share: per-write savepoints, change id allocation,
//! optimistic version checks, hash-linking and Merkle accumulation of entries, the read-model
//! update and one signed checkpoint per batch. Backends supply the SQL through [`Tx`] and
//! own the transaction around it.

use ed25519_dalek::SigningKey;
use ledger::{Checkpoint, Entry, Frontier, Hash};

use crate::{ChangeColumns, NewEntry, StoreError, Target, User, Write, Written};

/// The single `ledger_head` row: the committed size, the leaf hash of the last entry (the
/// `prev` of the next one) and the serialized Merkle frontier.
pub(crate) struct HeadRow {
    pub size: u64,
    pub head: Hash,
    pub frontier: Vec<u8>,
}

/// One row of `ledger_entries`.
pub(crate) struct EntryRow<'a> {
    pub seq: u64,
    pub subject: Option<&'a str>,
    pub kind: &'a str,
    pub actor: &'a str,
    pub time: &'a str,
    pub bytes: &'a [u8],
    pub leaf_hash: &'a Hash,
}

/// The statements the append algorithm needs, run inside one open write transaction.
pub(crate) trait Tx {
    /// Reads the head row and holds it locked until the transaction ends, so that writers on
    /// other connections (or other server instances) queue behind this one.
    fn lock_head(&mut self) -> Result<HeadRow, StoreError>;
    fn store_head(&mut self, head: &HeadRow) -> Result<(), StoreError>;
    fn savepoint(&mut self) -> Result<(), StoreError>;
    fn release_savepoint(&mut self) -> Result<(), StoreError>;
    fn rollback_to_savepoint(&mut self) -> Result<(), StoreError>;
    /// Increments the change counter and returns the new value.
    fn next_change_number(&mut self) -> Result<u64, StoreError>;
    fn change_version(&mut self, id: &str) -> Result<Option<u64>, StoreError>;
    /// The first entry recorded under a subject.
    fn first_seq_of_subject(&mut self, subject: &str) -> Result<Option<u64>, StoreError>;
    fn insert_entry(&mut self, row: &EntryRow<'_>) -> Result<(), StoreError>;
    fn insert_change(
        &mut self,
        id: &str,
        version: u64,
        columns: &ChangeColumns,
        created_at: &str,
        updated_at: &str,
    ) -> Result<(), StoreError>;
    /// Sets the version and `updated_at`, and the other columns when given.
    fn update_change(
        &mut self,
        id: &str,
        version: u64,
        columns: Option<&ChangeColumns>,
        updated_at: &str,
    ) -> Result<(), StoreError>;
    fn insert_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
}

/// Formats an allocated change number as an id: six digits, wider past 999999.
pub(crate) fn change_id(n: u64) -> String {
    format!("CHG-{n:06}")
}

/// Appends a batch inside the caller's open transaction.
///
/// `prelude` runs first, after the head is locked, for statements that must commit with the
/// batch (a user row); its error fails the whole batch. The outer `Err` means the transaction
/// must be rolled back; otherwise the caller commits and hands out the per-write results.
pub(crate) fn run<T: Tx>(
    tx: &mut T,
    key: &SigningKey,
    writes: Vec<Write>,
    prelude: impl FnOnce(&mut T) -> Result<(), StoreError>,
) -> Result<Vec<Result<Written, StoreError>>, StoreError> {
    let row = tx.lock_head()?;
    let mut frontier = Frontier::from_bytes(&row.frontier)
        .map_err(|e| StoreError::Corrupt(format!("the ledger head's frontier: {e}")))?;
    if frontier.size() != row.size {
        return Err(StoreError::Corrupt(format!(
            "the ledger head says {} entries but its frontier holds {}",
            row.size,
            frontier.size()
        )));
    }
    prelude(tx)?;

    let mut tip = Tip {
        size: row.size,
        head: row.head,
        last_time: None,
    };
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        if let Err(e) = check(&write) {
            results.push(Err(e));
            continue;
        }
        tx.savepoint()?;
        match write_one(tx, &tip, write) {
            Ok((written, appended)) => {
                tx.release_savepoint()?;
                for leaf in &appended.leaves {
                    frontier.push(*leaf);
                }
                tip = appended.tip;
                results.push(Ok(written));
            }
            Err(e) => {
                // Undo this write's statements only; earlier writes in the batch stay.
                tx.rollback_to_savepoint()?;
                tx.release_savepoint()?;
                results.push(Err(e));
            }
        }
    }

    if let Some(time) = &tip.last_time {
        let checkpoint = Checkpoint::sign(key, tip.size, frontier.root(), tip.head, time);
        tx.insert_checkpoint(&checkpoint)?;
        tx.store_head(&HeadRow {
            size: tip.size,
            head: tip.head,
            frontier: frontier.to_bytes(),
        })?;
        for written in results.iter_mut().flatten() {
            written.checkpoint_size = tip.size;
        }
    }
    Ok(results)
}

/// Where the log ends while a batch is being built.
#[derive(Clone)]
struct Tip {
    size: u64,
    head: Hash,
    last_time: Option<String>,
}

struct Appended {
    tip: Tip,
    leaves: Vec<Hash>,
}

/// Checks a write on its own, before touching the database.
fn check(write: &Write) -> Result<(), StoreError> {
    if write.entries.is_empty() {
        return Err(StoreError::Invalid(
            "a write must append at least one entry".into(),
        ));
    }
    match (&write.target, &write.columns) {
        (Target::NewChange, None) => {
            return Err(StoreError::Invalid(
                "a new change needs its read-model columns".into(),
            ))
        }
        (Target::None | Target::Once { .. }, Some(_)) => {
            return Err(StoreError::Invalid(
                "read-model columns were given for a write about no change".into(),
            ))
        }
        _ => {}
    }
    for e in &write.entries {
        check_entry(e)?;
    }
    Ok(())
}

fn check_entry(e: &NewEntry) -> Result<(), StoreError> {
    if e.kind.is_empty() {
        return Err(StoreError::Invalid("an entry needs a kind".into()));
    }
    if e.actor.is_empty() {
        return Err(StoreError::Invalid("an entry needs an actor".into()));
    }
    check_time(&e.time)
}

/// Entry times are RFC 3339 in UTC with a `Z` suffix: the ledger's canonical form, which
/// also makes them sort as text.
pub(crate) fn check_time(time: &str) -> Result<(), StoreError> {
    let parsed = time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339);
    match parsed {
        Ok(t) if t.offset().is_utc() && time.ends_with('Z') => Ok(()),
        _ => Err(StoreError::Invalid(format!(
            "`{time}` is not an RFC 3339 UTC time ending in Z"
        ))),
    }
}

fn write_one<T: Tx>(
    tx: &mut T,
    tip: &Tip,
    write: Write,
) -> Result<(Written, Appended), StoreError> {
    let (change_id, version_before) = match &write.target {
        Target::NewChange => (Some(change_id(tx.next_change_number()?)), 0),
        Target::Change {
            id,
            expected_version,
        } => {
            let actual = tx
                .change_version(id)?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            if actual != *expected_version {
                return Err(StoreError::Conflict {
                    id: id.clone(),
                    expected: *expected_version,
                    actual,
                });
            }
            (Some(id.clone()), actual)
        }
        Target::None => (None, 0),
        Target::Once { subject } => {
            if subject.is_empty() {
                return Err(StoreError::Invalid(
                    "a once-only write needs a subject".into(),
                ));
            }
            if let Some(seq) = tx.first_seq_of_subject(subject)? {
                return Err(StoreError::Duplicate {
                    subject: subject.clone(),
                    seq,
                });
            }
            (None, 0)
        }
    };
    let once_subject = match &write.target {
        Target::Once { subject } => Some(subject.clone()),
        _ => None,
    };

    let mut next = tip.clone();
    let mut leaves = Vec::with_capacity(write.entries.len());
    let mut seqs = Vec::with_capacity(write.entries.len());
    let first_time = write
        .entries
        .first()
        .map(|e| e.time.clone())
        .unwrap_or_default();
    for new in write.entries.iter() {
        let entry = Entry {
            seq: next.size,
            prev: next.head,
            time: new.time.clone(),
            actor: new.actor.clone(),
            roles: new.roles.clone(),
            kind: new.kind.clone(),
            subject: change_id
                .clone()
                .or_else(|| once_subject.clone())
                .or_else(|| new.subject.clone()),
            payload: new.payload.clone(),
        };
        let bytes = ledger::canonical_bytes(&entry);
        let leaf = ledger::leaf_hash(&bytes);
        tx.insert_entry(&EntryRow {
            seq: entry.seq,
            subject: entry.subject.as_deref(),
            kind: &entry.kind,
            actor: &entry.actor,
            time: &entry.time,
            bytes: &bytes,
            leaf_hash: &leaf,
        })?;
        seqs.push(entry.seq);
        leaves.push(leaf);
        next.size += 1;
        next.head = leaf;
        next.last_time = Some(entry.time);
    }

    let count = write.entries.len() as u64;
    let version = version_before + count;
    let last_time = next.last_time.clone().unwrap_or_default();
    match (&write.target, &change_id) {
        (Target::NewChange, Some(id)) => {
            let columns = write.columns.as_ref().ok_or_else(|| {
                StoreError::Invalid("a new change needs its read-model columns".into())
            })?;
            tx.insert_change(id, version, columns, &first_time, &last_time)?;
        }
        (Target::Change { .. }, Some(id)) => {
            tx.update_change(id, version, write.columns.as_ref(), &last_time)?;
        }
        _ => {}
    }

    let written = Written {
        change_id,
        version: if matches!(write.target, Target::None | Target::Once { .. }) {
            0
        } else {
            version
        },
        seqs,
        checkpoint_size: 0,
    };
    Ok((written, Appended { tip: next, leaves }))
}

/// The write that records a user event; its subject defaults to the user's name.
pub(crate) fn user_entry_write(user: &User, mut entry: NewEntry) -> Write {
    if entry.subject.is_none() {
        entry.subject = Some(user.name.clone());
    }
    Write {
        target: Target::None,
        entries: vec![entry],
        columns: None,
    }
}

/// The seq of a one-entry write; an error rolls the whole transaction back.
pub(crate) fn single_seq(result: Option<Result<Written, StoreError>>) -> Result<u64, StoreError> {
    let written =
        result.ok_or_else(|| StoreError::Backend("the write produced no result".into()))??;
    written
        .seqs
        .first()
        .copied()
        .ok_or_else(|| StoreError::Backend("the write appended nothing".into()))
}

/// Checks a user before it is written.
pub(crate) fn check_user(user: &User) -> Result<(), StoreError> {
    if user.name.is_empty() {
        return Err(StoreError::Invalid("a user needs a name".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_six_digits_then_wider() {
        assert_eq!(change_id(1), "CHG-000001");
        assert_eq!(change_id(999_999), "CHG-999999");
        assert_eq!(change_id(1_000_000), "CHG-1000000");
    }

    #[test]
    fn times_must_be_utc_with_z() {
        assert!(check_time("2025-01-02T03:04:05Z").is_ok());
        assert!(check_time("2025-01-02T03:04:05.123Z").is_ok());
        assert!(check_time("2025-01-02T03:04:05+00:00").is_err());
        assert!(check_time("2025-01-02T03:04:05+02:00").is_err());
        assert!(check_time("yesterday").is_err());
    }
}
