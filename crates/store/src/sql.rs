//! SQL text and row decoding shared by the backends: the change listing query, the column
//! lists, and conversions between stored values and the store's types.

use std::collections::{BTreeMap, BTreeSet};

use ledger::Hash;

use crate::{ChangeFilter, StoreError, StoredEvent};

/// The columns of `changes`, in the order [`ChangeRow`](crate::ChangeRow) is read from.
pub(crate) const CHANGE_COLUMNS: &str = "id, version, stage, change_type, category, title, \
     requester, assignee, risk, systems, created_at, updated_at";

/// The columns of `users`, in the order [`User`](crate::User) is read from.
pub(crate) const USER_COLUMNS: &str = "name, roles, user_groups, machine, active, created_at";

/// The columns of `checkpoints`, in the order a [`ledger::Checkpoint`] is read from.
pub(crate) const CHECKPOINT_COLUMNS: &str = "size, root, head, time, key_id, signature";

/// A change listing as SQL text with its string parameters, numbered from 1 in the
/// placeholder style `ph` writes (`?1` for SQLite, `$1` for PostgreSQL).
pub(crate) struct ListQuery {
    pub sql: String,
    pub params: Vec<String>,
}

/// Builds the listing query. Ids order by length first, then text, so allocated ids
/// (`CHG-999999` before `CHG-1000000`) come in numeric order and keyset paging follows it.
pub(crate) fn list_query(filter: &ChangeFilter, ph: fn(usize) -> String) -> ListQuery {
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    let bind = |value: &str, params: &mut Vec<String>| {
        params.push(value.to_string());
        ph(params.len())
    };
    let equal = [
        ("stage", &filter.stage),
        ("change_type", &filter.change_type),
        ("category", &filter.category),
        ("requester", &filter.requester),
        ("assignee", &filter.assignee),
    ];
    for (column, value) in equal {
        if let Some(v) = value {
            let p = bind(v, &mut params);
            clauses.push(format!("{column} = {p}"));
        }
    }
    if let Some(system) = &filter.system {
        let p = bind(system, &mut params);
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM change_systems s WHERE s.change_id = changes.id \
             AND s.system = {p})"
        ));
    }
    if let Some(after) = &filter.after_id {
        let p = bind(after, &mut params);
        clauses.push(format!(
            "(length(id) > length({p}) OR (length(id) = length({p}) AND id > {p}))"
        ));
    }
    let mut sql = format!("SELECT {CHANGE_COLUMNS} FROM changes");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY length(id), id");
    if filter.limit > 0 {
        sql.push_str(&format!(" LIMIT {}", filter.limit));
    }
    ListQuery { sql, params }
}

/// The rows of `change_systems`, `(change_id, system)`, grouped by change.
pub(crate) fn group_systems(
    rows: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut index: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, system) in rows {
        index.entry(id).or_default().insert(system);
    }
    index
}

/// A count or position as the databases store it (signed 64-bit).
pub(crate) fn to_i64(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Invalid(format!("{what} {n} is out of range")))
}

/// A stored count or position, which the store never writes negative.
pub(crate) fn to_u64(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{what} is negative ({n})")))
}

pub(crate) fn to_hash(bytes: &[u8], what: &str) -> Result<Hash, StoreError> {
    Hash::try_from(bytes).map_err(|_| {
        StoreError::Corrupt(format!(
            "{what} is {} bytes, not a 32-byte hash",
            bytes.len()
        ))
    })
}

/// Lists of names are stored as JSON arrays of strings.
pub(crate) fn list_to_text(list: &[String]) -> String {
    serde_json::Value::from(list.to_vec()).to_string()
}

pub(crate) fn text_to_list(text: &str, what: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Decodes a stored entry, refusing one whose bytes claim another position than its row.
pub(crate) fn decode_event(seq: u64, bytes: &[u8], leaf: &[u8]) -> Result<StoredEvent, StoreError> {
    let entry = ledger::decode_entry(bytes)
        .map_err(|e| StoreError::Corrupt(format!("ledger entry {seq}: {e}")))?;
    if entry.seq != seq {
        return Err(StoreError::Corrupt(format!(
            "ledger entry stored at {seq} says it is entry {}",
            entry.seq
        )));
    }
    let leaf_hash = to_hash(leaf, &format!("the leaf hash of entry {seq}"))?;
    Ok(StoredEvent {
        seq,
        entry,
        leaf_hash,
    })
}

/// The leaves of the first `size` entries from `(seq, leaf)` rows ordered by seq. A missing
/// row is corruption: proofs over the remaining leaves would prove the wrong tree.
pub(crate) fn contiguous_leaves(
    rows: Vec<(u64, Hash)>,
    size: u64,
) -> Result<Vec<Hash>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for (expected, (seq, leaf)) in (0u64..).zip(rows) {
        if seq != expected {
            return Err(StoreError::Corrupt(format!(
                "ledger entry {expected} is missing"
            )));
        }
        out.push(leaf);
    }
    if (out.len() as u64) < size {
        return Err(StoreError::Corrupt(format!(
            "ledger entry {} is missing",
            out.len()
        )));
    }
    Ok(out)
}

/// Token digests are SHA-256 in lowercase hex; anything else is a caller's mistake that
/// would otherwise never match.
pub(crate) fn check_token_hash(token_hash: &str) -> Result<(), StoreError> {
    let ok = token_hash.len() == 64
        && token_hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(
            "a token hash must be 64 lowercase hex digits".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(n: usize) -> String {
        format!("?{n}")
    }

    #[test]
    fn empty_filter_lists_everything_in_id_order() {
        let q = list_query(&ChangeFilter::default(), question);
        assert_eq!(
            q.sql,
            format!("SELECT {CHANGE_COLUMNS} FROM changes ORDER BY length(id), id")
        );
        assert!(q.params.is_empty());
    }

    #[test]
    fn filters_bind_in_order() {
        let f = ChangeFilter {
            stage: Some("new".into()),
            system: Some("db".into()),
            after_id: Some("CHG-000002".into()),
            limit: 10,
            ..Default::default()
        };
        let q = list_query(&f, question);
        assert_eq!(q.params, vec!["new", "db", "CHG-000002"]);
        assert!(q.sql.contains("stage = ?1"), "{}", q.sql);
        assert!(q.sql.contains("s.system = ?2"), "{}", q.sql);
        assert!(q.sql.contains("id > ?3"), "{}", q.sql);
        assert!(q.sql.ends_with("LIMIT 10"), "{}", q.sql);
    }

    #[test]
    fn token_hashes_are_checked() {
        assert!(check_token_hash(&"ab".repeat(32)).is_ok());
        assert!(check_token_hash(&"AB".repeat(32)).is_err());
        assert!(check_token_hash("abc").is_err());
    }

    #[test]
    fn lists_round_trip() {
        let list = vec!["a".to_string(), "b \"c\"".to_string()];
        assert_eq!(
            text_to_list(&list_to_text(&list), "x").expect("parse"),
            list
        );
        assert!(text_to_list("nope", "x").is_err());
    }
}
