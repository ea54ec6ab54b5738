//! The monitor's storage: one embedded SQLite database (`data/monitoring/monitor.db`, WAL).
//!
//! - `events`: every accepted outcome event in arrival order, unique on its `id`, which makes
//!   ingestion idempotent: the same event sent twice is stored once. Rows append; the id index is
//!   written in sorted batches.
//! - `minutes` and `hours`: sufficient statistics per release, strategy and time bucket, updated in
//!   the same transaction as the events. A window is read from whole hours plus the minutes at its
//!   edges, so an evaluation reads a few hundred rows, never the raw events.
//! - `alert_state`, `alerts`, `transitions`: the state machine's memory, the alert episodes and every
//!   transition with its metric value, window, threshold, baseline, sample count, mode and release.
//! - `evaluations`: each metric at each evaluation (the dashboard's charts).
//! - `outbox`: each notification for each sink until it is delivered (retried with backoff; a failing
//!   sink never loses the alert record, which is written first).
//! - `auto_rollbacks`: the automatic rollback of a release: one, retried with backoff while it fails.
//!
//! Commits are `synchronous = FULL`: an acknowledged event survives a crash of the process or the
//! machine.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::alert::Seconds;

pub mod alerts;
pub mod events;
pub mod outbox;

pub use alerts::{AlertRow, SeriesPoint};
pub use events::{Ingest, IngestCounts, NewEvent, content_id};
pub use outbox::OutboxRow;

/// Where the database lives, relative to the workspace.
pub const DB_PATH: &str = "data/monitoring/monitor.db";

pub(crate) const MINUTE: Seconds = 60;
pub(crate) const HOUR: Seconds = 3600;

/// The tables schema 3 added: statistics of the producers' numeric fields (a new database gets
/// them after [`SCHEMA`], an older one by migration).
const FIELD_TABLES: &str = "
CREATE TABLE field_minutes (release_id TEXT, strategy TEXT, field TEXT, bucket INTEGER,
    n INTEGER NOT NULL, sum REAL NOT NULL, sum_squares REAL NOT NULL, nonzero INTEGER NOT NULL,
    PRIMARY KEY (release_id, strategy, field, bucket)) WITHOUT ROWID;
CREATE TABLE field_hours (release_id TEXT, strategy TEXT, field TEXT, bucket INTEGER,
    n INTEGER NOT NULL, sum REAL NOT NULL, sum_squares REAL NOT NULL, nonzero INTEGER NOT NULL,
    PRIMARY KEY (release_id, strategy, field, bucket)) WITHOUT ROWID;
";
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    ts         INTEGER NOT NULL,
    strategy   TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    signal     INTEGER NOT NULL,
    outcome    INTEGER NOT NULL,
    ret        REAL NOT NULL,
    release_id TEXT NOT NULL,
    attributed TEXT NOT NULL,
    received   INTEGER NOT NULL
);
CREATE TABLE minutes (release_id TEXT, strategy TEXT, bucket INTEGER, stats BLOB NOT NULL,
    PRIMARY KEY (release_id, strategy, bucket)) WITHOUT ROWID;
CREATE TABLE hours (release_id TEXT, strategy TEXT, bucket INTEGER, stats BLOB NOT NULL,
    PRIMARY KEY (release_id, strategy, bucket)) WITHOUT ROWID;
CREATE TABLE alert_state (release_id TEXT, metric TEXT, state TEXT NOT NULL, alert_id INTEGER,
    activation INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (release_id, metric)) WITHOUT ROWID;
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY, release_id TEXT NOT NULL, strategy TEXT NOT NULL, metric TEXT NOT NULL,
    state TEXT NOT NULL, severity TEXT, mode TEXT NOT NULL, value REAL, baseline REAL, threshold REAL,
    drop_ REAL, samples INTEGER, window_from INTEGER, window_to INTEGER, started_at INTEGER NOT NULL,
    fired_at INTEGER, resolved_at INTEGER, updated_at INTEGER NOT NULL);
CREATE INDEX alerts_by_release ON alerts (release_id, state);
CREATE TABLE transitions (
    id INTEGER PRIMARY KEY, alert_id INTEGER, at INTEGER NOT NULL, release_id TEXT NOT NULL,
    strategy TEXT NOT NULL, metric TEXT NOT NULL, from_state TEXT NOT NULL, to_state TEXT NOT NULL,
    severity TEXT, notify TEXT, mode TEXT NOT NULL, value REAL, baseline REAL, threshold REAL, drop_ REAL,
    samples INTEGER, window_from INTEGER, window_to INTEGER);
CREATE INDEX transitions_by_release ON transitions (release_id, at);
CREATE TABLE evaluations (
    release_id TEXT, metric TEXT, at INTEGER, strategy TEXT NOT NULL, mode TEXT NOT NULL, value REAL,
    ci_low REAL, ci_high REAL, samples INTEGER NOT NULL, baseline REAL, threshold REAL NOT NULL,
    verdict TEXT NOT NULL, drop_ REAL, PRIMARY KEY (release_id, metric, at)) WITHOUT ROWID;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY, alert_id INTEGER, sink TEXT NOT NULL, payload TEXT NOT NULL,
    created INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt INTEGER NOT NULL,
    delivered_at INTEGER, last_error TEXT);
CREATE INDEX outbox_due ON outbox (delivered_at, next_attempt);
CREATE TABLE auto_rollbacks (release_id TEXT PRIMARY KEY, at INTEGER NOT NULL, reason TEXT NOT NULL,
    outcome TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1, next_attempt INTEGER);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('events', '0');
";

/// The monitor database.
pub struct Db {
    conn: Connection,
    path: PathBuf,
}

/// An error from SQLite, naming the database.
pub(crate) fn sql_error<'a>(path: &'a Path, action: &'static str) -> impl Fn(rusqlite::Error) -> Error + 'a {
    move |cause| Error::Database { path: path.to_path_buf(), action, cause }
}

impl Db {
    /// Open (creating it and its directory if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Db> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::io(parent, "creating", source))?;
        }
        let conn = Connection::open(path).map_err(sql_error(path, "opening the monitor database"))?;
        Self::init(conn, path)
    }

    /// A throw-away database in memory (tests, replay).
    pub fn in_memory() -> Result<Db> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(sql_error(path, "opening"))?;
        Self::init(conn, path)
    }

    fn init(conn: Connection, path: &Path) -> Result<Db> {
        let error = sql_error(path, "preparing the monitor database");
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(&error)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(&error)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(&error)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(&error)?;
        // 64 MiB of page cache: a large ingest keeps the key index in memory instead of spilling it.
        conn.pragma_update(None, "cache_size", -65536).map_err(&error)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(&error)?;
        match version {
            0 => {
                let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).map_err(&error)?;
                tx.execute_batch(SCHEMA).map_err(&error)?;
                tx.execute_batch(FIELD_TABLES).map_err(&error)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(&error)?;
                tx.commit().map_err(&error)?;
            }
            // Version 1 had no retries of a failed auto-rollback; 2 no producer fields.
            1 | 2 => {
                let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).map_err(&error)?;
                if version == 1 {
                    tx.execute_batch(
                        "ALTER TABLE auto_rollbacks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
                         ALTER TABLE auto_rollbacks ADD COLUMN next_attempt INTEGER;",
                    )
                    .map_err(&error)?;
                }
                tx.execute_batch(FIELD_TABLES).map_err(&error)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(&error)?;
                tx.commit().map_err(&error)?;
            }
            SCHEMA_VERSION => {}
            other => {
                return Err(Error::invalid(
                    path,
                    format!("schema version {other} is newer than this shipshape understands ({SCHEMA_VERSION})"),
                ));
            }
        }
        Ok(Db { conn, path: path.to_path_buf() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A value from the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0))
            .optional()
            .map_err(sql_error(&self.path, "reading"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A version-1 database (no auto-rollback retries) opens as version 2, its auto-rollback rows
    /// kept, with one attempt each; a newer version than this one is refused, naming the file.
    #[test]
    fn a_version_2_database_gets_the_field_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
        }
        let db = Db::open(&path).unwrap();
        let tables: i64 = db
            .conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE name IN ('field_minutes', 'field_hours')", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(tables, 2);
    }

    #[test]
    fn a_version_1_database_is_migrated_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.db");
        {
            let conn = Connection::open(&path).unwrap();
            let v1 = SCHEMA.replace(
                "outcome TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 1, next_attempt INTEGER);",
                "outcome TEXT NOT NULL);",
            );
            assert!(!v1.contains("field_minutes"), "version 1 had no field tables");
            assert_ne!(v1, SCHEMA, "the version-1 table is what this test migrates");
            conn.execute_batch(&v1).unwrap();
            conn.execute(
                "INSERT INTO auto_rollbacks (release_id, at, reason, outcome) VALUES ('r1', 5, 'x', 'failed: lock')",
                [],
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(db.auto_rollback_of("r1").unwrap(), Some(("failed: lock".to_string(), 1, None)));
        let version: i64 = db.conn.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let fields: i64 = db.conn.query_row("SELECT count(*) FROM field_minutes", [], |row| row.get(0)).unwrap();
        assert_eq!(fields, 0, "the field tables were added");
        db.conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        drop(db);
        let err = Db::open(&path).err().unwrap().to_string();
        assert!(err.contains("monitor.db") && err.contains("newer than this shipshape understands"), "{err}");
    }
}
