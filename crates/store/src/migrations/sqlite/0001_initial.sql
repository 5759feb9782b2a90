-- The ledger, its head and signed checkpoints, the change read model, users and settings.

-- Entries exactly as appended. `bytes` is the canonical encoding; the other columns repeat
-- parts of it for lookups only and are never trusted by verification.
CREATE TABLE ledger_entries (
    seq       INTEGER PRIMARY KEY,
    subject   TEXT,
    kind      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    time      TEXT NOT NULL,
    bytes     BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
);
CREATE INDEX ledger_entries_subject ON ledger_entries (subject, seq);

-- The one row every writer locks: committed size, leaf hash of the last entry, and the
-- serialized Merkle frontier that yields the root without reading every leaf.
CREATE TABLE ledger_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    size     INTEGER NOT NULL,
    head     BLOB NOT NULL,
    frontier BLOB NOT NULL
);

CREATE TABLE checkpoints (
    size      INTEGER PRIMARY KEY,
    root      BLOB NOT NULL,
    head      BLOB NOT NULL,
    time      TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    signature TEXT NOT NULL
);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('change', 0);

CREATE TABLE changes (
    id          TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    stage       TEXT NOT NULL,
    change_type TEXT NOT NULL,
    category    TEXT NOT NULL,
    title       TEXT NOT NULL,
    requester   TEXT NOT NULL,
    assignee    TEXT,
    risk        TEXT,
    systems     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
-- Listing order: numeric for allocated ids (CHG-999999 before CHG-1000000).
CREATE INDEX changes_order ON changes (length(id), id);
CREATE INDEX changes_stage ON changes (stage);
CREATE INDEX changes_type ON changes (change_type);
CREATE INDEX changes_category ON changes (category);
CREATE INDEX changes_requester ON changes (requester);
CREATE INDEX changes_assignee ON changes (assignee);

-- One row per system a change touches, for filtering by system.
CREATE TABLE change_systems (
    change_id TEXT NOT NULL REFERENCES changes (id),
    system    TEXT NOT NULL,
    PRIMARY KEY (system, change_id)
);
CREATE INDEX change_systems_change ON change_systems (change_id);

CREATE TABLE users (
    name        TEXT PRIMARY KEY,
    roles       TEXT NOT NULL,
    user_groups TEXT NOT NULL,
    machine     INTEGER NOT NULL,
    active      INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
