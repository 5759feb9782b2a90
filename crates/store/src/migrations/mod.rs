//! The versioned schema of each backend, embedded in the binary. A backend applies, in one
//! transaction each, the migrations whose version is missing from `schema_migrations`.
//! Migrations are append-only: a released one is never edited, a change is a new version.

/// One schema step.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The bookkeeping table, created before any migration runs.
pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";

pub(crate) const SQLITE: &[Migration] = &[Migration {
    version: 1,
    name: "initial",
    sql: include_str!("sqlite/0001_initial.sql"),
}];

pub(crate) const POSTGRES: &[Migration] = &[Migration {
    version: 1,
    name: "initial",
    sql: include_str!("postgres/0001_initial.sql"),
}];

/// Refuses a database migrated by a newer build: this one would misread it.
pub(crate) fn check_not_newer(
    applied_max: Option<i64>,
    known: &[Migration],
) -> Result<(), crate::StoreError> {
    let known_max = known.iter().map(|m| m.version).max().unwrap_or(0);
    match applied_max {
        Some(v) if v > known_max => Err(crate::StoreError::Invalid(format!(
            "the database schema is at version {v}, newer than this build knows ({known_max})"
        ))),
        _ => Ok(()),
    }
}

/// The time a migration is recorded as applied.
pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend_without_gaps() {
        for list in [SQLITE, POSTGRES] {
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{}", m.name);
            }
        }
        assert_eq!(SQLITE.len(), POSTGRES.len());
    }

    #[test]
    fn newer_schema_is_refused() {
        assert!(check_not_newer(None, SQLITE).is_ok());
        assert!(check_not_newer(Some(1), SQLITE).is_ok());
        assert!(check_not_newer(Some(99), SQLITE).is_err());
    }
}
