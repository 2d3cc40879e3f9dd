//! The database schema, applied as numbered migrations tracked in `PRAGMA user_version`.
//!
//! Migration `n` (1-based) brings the schema from version `n - 1` to `n`. Migrations are
//! append-only: never edit one that has shipped, add a new one.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: keys, sessions, tasks, decisions, events.
    r#"
    CREATE TABLE api_keys (
        id            TEXT PRIMARY KEY,
        hash          TEXT NOT NULL UNIQUE,
        principal     TEXT NOT NULL,
        profile       TEXT NOT NULL,
        admin         INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        id             TEXT PRIMARY KEY,
        principal      TEXT NOT NULL,
        profile        TEXT NOT NULL,
        state          TEXT NOT NULL,
        created_at_ms  INTEGER NOT NULL,
        last_active_ms INTEGER NOT NULL,
        closed_at_ms   INTEGER,
        close_reason   TEXT,
        workspace      TEXT NOT NULL,
        request        TEXT NOT NULL
    );
    CREATE INDEX sessions_by_state ON sessions (state);
    CREATE TABLE tasks (
        session        TEXT NOT NULL,
        id             TEXT NOT NULL,
        tool           TEXT NOT NULL,
        input          TEXT NOT NULL,
        state          TEXT NOT NULL,
        created_at_ms  INTEGER NOT NULL,
        started_at_ms  INTEGER,
        finished_at_ms INTEGER,
        output         TEXT,
        error          TEXT,
        usage          TEXT,
        decision       TEXT,
        PRIMARY KEY (session, id)
    ) WITHOUT ROWID;
    CREATE INDEX tasks_by_state ON tasks (state);
    CREATE TABLE decisions (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        session TEXT NOT NULL,
        task    TEXT,
        record  TEXT NOT NULL
    );
    CREATE INDEX decisions_by_session ON decisions (session, task);
    CREATE TABLE events (
        session TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        name    TEXT NOT NULL,
        data    TEXT NOT NULL,
        at_ms   INTEGER NOT NULL,
        PRIMARY KEY (session, seq)
    ) WITHOUT ROWID;
    "#,
    // 2: key revocation, and the indexes that list a principal's sessions and a session's
    // tasks newest first (a filter on state uses the second sessions index).
    r#"
    ALTER TABLE api_keys ADD COLUMN revoked_at_ms INTEGER;
    CREATE TABLE key_revocations (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        generation INTEGER NOT NULL
    );
    INSERT INTO key_revocations (id, generation) VALUES (1, 0);
    CREATE INDEX sessions_by_principal ON sessions (principal, created_at_ms, id);
    CREATE INDEX sessions_by_principal_state ON sessions (principal, state, created_at_ms, id);
    CREATE INDEX tasks_by_session_created ON tasks (session, created_at_ms, id);
    "#,
    // 3: the sidecar a session runs on (`local`: in the server's own process).
    r#"
    ALTER TABLE sessions ADD COLUMN sidecar TEXT NOT NULL DEFAULT 'local';
    "#,
    // 4: hosts an admin drained: they stay draining across restarts until undrained.
    r#"
    CREATE TABLE host_drains (
        host          TEXT PRIMARY KEY,
        drained_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 5: approvals of tasks a permit marked `@approval("required")`.
    r#"
    CREATE TABLE approvals (
        task            TEXT PRIMARY KEY,
        session         TEXT NOT NULL,
        tool            TEXT NOT NULL,
        requester       TEXT NOT NULL,
        state           TEXT NOT NULL,
        requested_at_ms INTEGER NOT NULL,
        deadline_ms     INTEGER NOT NULL,
        limits          TEXT NOT NULL,
        answered_by     TEXT,
        comment         TEXT,
        answered_at_ms  INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX approvals_by_state ON approvals (state, requested_at_ms);
    "#,
    // 6: agent runs, and the run a task was called by.
    r#"
    CREATE TABLE runs (
        session        TEXT NOT NULL,
        id             TEXT NOT NULL,
        principal      TEXT NOT NULL,
        agent          TEXT NOT NULL,
        provider       TEXT NOT NULL,
        model          TEXT NOT NULL,
        input          TEXT NOT NULL,
        state          TEXT NOT NULL,
        created_at_ms  INTEGER NOT NULL,
        started_at_ms  INTEGER,
        finished_at_ms INTEGER,
        output         TEXT,
        error          TEXT,
        usage          TEXT NOT NULL,
        limits         TEXT NOT NULL,
        PRIMARY KEY (session, id)
    ) WITHOUT ROWID;
    CREATE INDEX runs_by_state ON runs (state);
    ALTER TABLE tasks ADD COLUMN run TEXT;
    "#,
];

/// The schema version this build writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`VERSION`] in one immediate transaction (so two processes opening
/// the same new database do not both migrate it). A database written by a newer toolgate is
/// refused rather than guessed at.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > VERSION {
        return Err(StoreError::UnsupportedSchema {
            found,
            supported: VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(sql)?;
        tracing::info!(version = index + 1, "store schema migrated");
    }
    if found != VERSION {
        tx.pragma_update(None, "user_version", VERSION)?;
    }
    tx.commit()?;
    Ok(())
}
