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
//! - `auto_rollbacks`: at most one automatic rollback per release.
//!
//! Commits are `synchronous = FULL`: an acknowledged event survives a crash of the process or the
//! machine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sha2::{Digest as _, Sha256};
use shipshape_core::{Error, Result};
use shipshape_metrics::{Signal, Stats};

use crate::alert::Seconds;

/// Where the database lives, relative to the workspace.
pub const DB_PATH: &str = "data/monitoring/monitor.db";

const MINUTE: Seconds = 60;
const HOUR: Seconds = 3600;
const SCHEMA_VERSION: i64 = 1;

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
    outcome TEXT NOT NULL);
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
    move |e| Error::Database { path: path.to_path_buf(), action, message: e.to_string() }
}

/// One event to store, already checked and attributed (borrowing from the line it was parsed from).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent<'a> {
    /// The producer's id, or one derived from the content when it gave none.
    pub id: &'a str,
    /// Unix seconds.
    pub ts: Seconds,
    /// Strategy.
    pub strategy: &'a str,
    /// Instrument.
    pub symbol: &'a str,
    /// Predicted direction.
    pub signal: Signal,
    /// Realised direction.
    pub outcome: Signal,
    /// Realised return.
    pub ret: f64,
    /// The release it is attributed to (empty: before any deploy).
    pub release_id: &'a str,
    /// `producer` (the event named it), `time` (the release active at its time) or `none`.
    pub attributed: &'static str,
    /// Older than the last evaluation (counted in the report when stored).
    pub late: bool,
    /// Of a strategy some policy watches (others are counted in the report when stored).
    pub known_strategy: bool,
}

/// What an ingest stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestCounts {
    /// Events stored.
    pub accepted: u64,
    /// Events already stored (same id).
    pub duplicates: u64,
    /// Stored events attributed to no release.
    pub unattributed: u64,
    /// Stored events older than the last evaluation.
    pub late: u64,
    /// Stored events of strategies no policy watches, by strategy.
    pub unknown_strategies: std::collections::BTreeMap<String, u64>,
}

/// An event waiting in an ingest's buffer.
struct Buffered {
    id: String,
    ts: Seconds,
    strategy: usize,
    symbol: String,
    signal: Signal,
    outcome: Signal,
    ret: f64,
    release: usize,
    attributed: &'static str,
    late: bool,
    known_strategy: bool,
}

/// Events are inserted in batches sorted by id, so the id index is written in order instead of
/// at random places: several times faster for large ingests.
const BUFFER: usize = 16 * 1024;

/// Statistics encoded for a bucket row: seven little-endian integers.
fn encode(stats: &Stats) -> [u8; 72] {
    let mut out = [0u8; 72];
    out[0..8].copy_from_slice(&stats.trades.to_le_bytes());
    out[8..16].copy_from_slice(&stats.hits.to_le_bytes());
    out[16..24].copy_from_slice(&stats.longs.to_le_bytes());
    out[24..32].copy_from_slice(&stats.long_wins.to_le_bytes());
    out[32..40].copy_from_slice(&stats.events.to_le_bytes());
    out[40..56].copy_from_slice(&stats.return_sum.to_le_bytes());
    out[56..72].copy_from_slice(&stats.return_sum_squares.to_le_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<Stats> {
    let u = |range: std::ops::Range<usize>| Some(u64::from_le_bytes(bytes.get(range)?.try_into().ok()?));
    let i = |range: std::ops::Range<usize>| Some(i128::from_le_bytes(bytes.get(range)?.try_into().ok()?));
    Some(Stats {
        trades: u(0..8)?,
        hits: u(8..16)?,
        longs: u(16..24)?,
        long_wins: u(24..32)?,
        events: u(32..40)?,
        return_sum: i(40..56)?,
        return_sum_squares: i(56..72)?,
    })
}

/// An id for an event that came without one: a hash of everything it says, so the same line sent
/// twice is still stored once.
pub fn content_id(ts: &str, strategy: &str, symbol: &str, signal: i64, outcome: i64, ret: f64) -> String {
    let mut hasher = Sha256::new();
    for part in [ts, strategy, symbol] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.update(signal.to_le_bytes());
    hasher.update(outcome.to_le_bytes());
    hasher.update(ret.to_bits().to_le_bytes());
    let digest = hasher.finalize();
    let mut id = String::from("sha256:");
    for byte in &digest[..16] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// An open ingest: events go in one transaction; nothing is visible (or kept) until [`Ingest::commit`].
pub struct Ingest<'a> {
    // Field order is drop order: the statements are finalised before the transaction ends.
    insert: rusqlite::Statement<'a>,
    tx: Transaction<'a>,
    path: &'a Path,
    /// Interned release ids and strategy names.
    names: Vec<String>,
    buffer: Vec<Buffered>,
    /// Minute buckets per (release, strategy) name index.
    minutes: HashMap<(usize, usize, Seconds), Stats>,
    received: Seconds,
    counts: IngestCounts,
}

impl Ingest<'_> {
    fn intern(&mut self, name: &str) -> usize {
        match self.names.iter().position(|n| n == name) {
            Some(index) => index,
            None => {
                self.names.push(name.to_string());
                self.names.len() - 1
            }
        }
    }

    /// Add one event (stored, or counted as a duplicate, by [`Ingest::commit`]).
    pub fn add(&mut self, event: &NewEvent<'_>) -> Result<()> {
        let strategy = self.intern(event.strategy);
        let release = self.intern(event.release_id);
        self.buffer.push(Buffered {
            id: event.id.to_string(),
            ts: event.ts,
            strategy,
            symbol: event.symbol.to_string(),
            signal: event.signal,
            outcome: event.outcome,
            ret: event.ret,
            release,
            attributed: event.attributed,
            late: event.late,
            known_strategy: event.known_strategy,
        });
        if self.buffer.len() >= BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// What was stored so far (after the last [`Ingest::flush`]).
    pub fn counts(&self) -> &IngestCounts {
        &self.counts
    }

    /// Store what is buffered (still inside the transaction).
    pub fn flush(&mut self) -> Result<()> {
        let error = sql_error(self.path, "storing events");
        let mut buffer = std::mem::take(&mut self.buffer);
        // Sorted by id, the unique index is written in order (ids from one producer share
        // prefixes), not at random pages; stable, so of two events with one id the first is kept.
        buffer.sort_by(|a, b| a.id.cmp(&b.id));
        for event in &buffer {
            let stored = self
                .insert
                .execute(params![
                    event.id,
                    event.ts,
                    self.names[event.strategy],
                    event.symbol,
                    event.signal.as_i64(),
                    event.outcome.as_i64(),
                    event.ret,
                    self.names[event.release],
                    event.attributed,
                    self.received
                ])
                .map_err(&error)?
                == 1;
            if !stored {
                self.counts.duplicates += 1;
                continue;
            }
            self.counts.accepted += 1;
            let bucket = event.ts.div_euclid(MINUTE) * MINUTE;
            self.minutes.entry((event.release, event.strategy, bucket)).or_default().add(
                event.signal,
                event.outcome,
                event.ret,
            );
            if event.attributed == "none" {
                self.counts.unattributed += 1;
            }
            if event.late {
                self.counts.late += 1;
            }
            if !event.known_strategy {
                *self.counts.unknown_strategies.entry(self.names[event.strategy].clone()).or_default() += 1;
            }
        }
        buffer.clear();
        self.buffer = buffer;
        Ok(())
    }

    /// Store what is buffered, write the bucket statistics and commit.
    pub fn commit(mut self) -> Result<IngestCounts> {
        self.flush()?;
        let Ingest { insert, tx, path, names, minutes: by_index, counts, .. } = self;
        drop(insert);
        let error = sql_error(path, "storing events");
        let mut minutes: HashMap<(String, String, Seconds), Stats> = HashMap::new();
        let mut hours: HashMap<(String, String, Seconds), Stats> = HashMap::new();
        for ((release, strategy, minute), stats) in by_index {
            let (release, strategy) = (&names[release], &names[strategy]);
            hours.entry((release.clone(), strategy.clone(), minute.div_euclid(HOUR) * HOUR)).or_default().merge(&stats);
            minutes.insert((release.clone(), strategy.clone(), minute), stats);
        }
        for (table, buckets) in [("minutes", &minutes), ("hours", &hours)] {
            let mut select = tx
                .prepare_cached(&format!(
                    "SELECT stats FROM {table} WHERE release_id = ?1 AND strategy = ?2 AND bucket = ?3"
                ))
                .map_err(&error)?;
            let mut upsert = tx
                .prepare_cached(&format!(
                    "INSERT OR REPLACE INTO {table} (release_id, strategy, bucket, stats) VALUES (?1, ?2, ?3, ?4)"
                ))
                .map_err(&error)?;
            for ((release, strategy, bucket), stats) in buckets {
                let old: Option<Vec<u8>> = select
                    .query_row(params![release, strategy, bucket], |row| row.get(0))
                    .optional()
                    .map_err(&error)?;
                let mut total = old.as_deref().and_then(decode).unwrap_or_default();
                total.merge(stats);
                upsert.execute(params![release, strategy, bucket, &encode(&total)[..]]).map_err(&error)?;
            }
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('events', (SELECT count(*) FROM events))
             ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + ?1",
            [counts.accepted as i64],
        )
        .map_err(&error)?;
        tx.commit().map_err(&error)?;
        Ok(counts)
    }
}

/// One row of the `alerts` table: an alert episode.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertRow {
    /// Its id.
    pub id: i64,
    /// The release judged.
    pub release_id: String,
    /// Strategy.
    pub strategy: String,
    /// Metric name (`intraday_hit_ratio`, …).
    pub metric: String,
    /// `pending`, `firing`, `resolved` or `cleared` (breached, but not long enough to fire).
    pub state: String,
    /// `warning` or `critical` once firing.
    pub severity: Option<String>,
    /// `heightened` or `normal` at the last evaluation.
    pub mode: String,
    /// The metric's value at the last evaluation.
    pub value: Option<f64>,
    /// Its baseline.
    pub baseline: Option<f64>,
    /// The threshold.
    pub threshold: Option<f64>,
    /// The drop (relative or absolute).
    pub drop: Option<f64>,
    /// Samples in the window.
    pub samples: Option<i64>,
    /// Window start (unix seconds).
    pub window_from: Option<i64>,
    /// Window end.
    pub window_to: Option<i64>,
    /// When it started (pending).
    pub started_at: i64,
    /// When it fired.
    pub fired_at: Option<i64>,
    /// When it resolved.
    pub resolved_at: Option<i64>,
    /// Last change.
    pub updated_at: i64,
}

/// One evaluated value of a metric (the charts).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesPoint {
    /// When (unix seconds).
    pub at: i64,
    /// `heightened` or `normal`.
    pub mode: String,
    /// The value (`None`: no data).
    pub value: Option<f64>,
    /// Confidence interval, low.
    pub ci_low: Option<f64>,
    /// Confidence interval, high.
    pub ci_high: Option<f64>,
    /// Samples in the window.
    pub samples: i64,
    /// Baseline.
    pub baseline: Option<f64>,
    /// Threshold of the mode.
    pub threshold: f64,
    /// `healthy`, `breach_warning`, `breach_critical` or `insufficient_data`.
    pub verdict: String,
}

/// A notification waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// The sink's name (see `SinkConfig::name`).
    pub sink: String,
    /// The JSON notification.
    pub payload: String,
    /// Attempts so far.
    pub attempts: i64,
}

impl Db {
    /// Open (creating it and its directory if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Db> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.to_path_buf(),
                action: "creating",
                source,
            })?;
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
                let tx = conn.unchecked_transaction().map_err(&error)?;
                tx.execute_batch(SCHEMA).map_err(&error)?;
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

    /// Start an ingest; `received` is the time it is recorded with.
    pub fn ingest(&mut self, received: Seconds) -> Result<Ingest<'_>> {
        let error = sql_error(&self.path, "starting an ingest");
        let conn: &Connection = &self.conn;
        // `&mut self` guarantees no other transaction on this connection.
        let tx = conn.unchecked_transaction().map_err(&error)?;
        let insert = conn
            .prepare(
                "INSERT OR IGNORE INTO events (id, ts, strategy, symbol, signal, outcome, ret, release_id, attributed, received)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .map_err(&error)?;
        Ok(Ingest {
            insert,
            tx,
            path: &self.path,
            names: Vec::new(),
            buffer: Vec::with_capacity(BUFFER),
            minutes: HashMap::new(),
            received,
            counts: IngestCounts::default(),
        })
    }

    /// Statistics of `strategy`'s events attributed to `release` (all releases when `None`) with
    /// timestamps in `[from, to)`, at minute resolution (the minute holding `from` counts whole).
    pub fn window(&self, release: Option<&str>, strategy: &str, from: Seconds, to: Seconds) -> Result<Stats> {
        let error = sql_error(&self.path, "reading statistics");
        let from = from.div_euclid(MINUTE) * MINUTE;
        let mut total = Stats::default();
        if to <= from {
            return Ok(total);
        }
        // Whole hours inside [from, to) from `hours`; the ragged edges from `minutes`.
        let first_hour = (from + HOUR - 1).div_euclid(HOUR) * HOUR;
        let end_hour = to.div_euclid(HOUR) * HOUR;
        let mut ranges = Vec::new();
        if first_hour < end_hour {
            ranges.push(("hours", first_hour, end_hour));
            ranges.push(("minutes", from, first_hour));
            ranges.push(("minutes", end_hour, to));
        } else {
            ranges.push(("minutes", from, to));
        }
        for (table, start, end) in ranges {
            if end <= start {
                continue;
            }
            let sql = match release {
                Some(_) => format!(
                    "SELECT stats FROM {table} WHERE release_id = ?1 AND strategy = ?2 AND bucket >= ?3 AND bucket < ?4"
                ),
                None => format!(
                    "SELECT stats FROM {table} WHERE ?1 IS NULL AND strategy = ?2 AND bucket >= ?3 AND bucket < ?4"
                ),
            };
            let mut statement = self.conn.prepare_cached(&sql).map_err(&error)?;
            let mut rows = statement.query(params![release, strategy, start, end]).map_err(&error)?;
            while let Some(row) = rows.next().map_err(&error)? {
                let bytes: Vec<u8> = row.get(0).map_err(&error)?;
                let stats = decode(&bytes)
                    .ok_or_else(|| Error::invalid(&self.path, format!("a corrupt statistics row in `{table}`")))?;
                total.merge(&stats);
            }
        }
        Ok(total)
    }

    /// How many events are stored (a counter kept with each ingest: no table scan).
    pub fn event_count(&self) -> Result<u64> {
        let count: i64 = self
            .conn
            .query_row(
                "SELECT coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'events'), (SELECT count(*) FROM events))",
                [],
                |row| row.get(0),
            )
            .map_err(sql_error(&self.path, "counting events"))?;
        Ok(count as u64)
    }

    /// The newest transition id, and the alerts changed by transitions after `since`.
    pub fn alerts_changed_since(&self, since: i64) -> Result<(i64, Vec<AlertRow>)> {
        let error = sql_error(&self.path, "reading alert changes");
        let newest: i64 = self
            .conn
            .query_row("SELECT coalesce(max(id), 0) FROM transitions", [], |row| row.get(0))
            .map_err(&error)?;
        if newest <= since {
            return Ok((newest, Vec::new()));
        }
        let ids: Vec<i64> = {
            let mut statement = self
                .conn
                .prepare_cached(
                    "SELECT DISTINCT alert_id FROM transitions WHERE id > ?1 AND alert_id IS NOT NULL ORDER BY alert_id",
                )
                .map_err(&error)?;
            let rows = statement.query_map([since], |row| row.get(0)).map_err(&error)?;
            rows.collect::<rusqlite::Result<_>>().map_err(&error)?
        };
        let mut changed = Vec::new();
        for id in ids {
            if let Some(row) = self.alert(id)? {
                changed.push(row);
            }
        }
        Ok((newest, changed))
    }

    /// One alert episode.
    pub fn alert(&self, id: i64) -> Result<Option<AlertRow>> {
        Ok(self.alerts_where("id = ?1", params![id], 1)?.into_iter().next())
    }

    /// The connection (for the monitor's own queries).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection, mutable (transactions).
    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// A value from the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0))
            .optional()
            .map_err(sql_error(&self.path, "reading"))
    }

    /// Alert episodes, newest first, filtered by state and release.
    pub fn alerts(&self, state: Option<&str>, release: Option<&str>, limit: usize) -> Result<Vec<AlertRow>> {
        self.alerts_where(
            "(?1 IS NULL OR state = ?1) AND (?2 IS NULL OR release_id = ?2)",
            params![state, release],
            limit,
        )
    }

    fn alerts_where(&self, condition: &str, values: &[&dyn rusqlite::ToSql], limit: usize) -> Result<Vec<AlertRow>> {
        let error = sql_error(&self.path, "reading alerts");
        let sql = format!(
            "SELECT id, release_id, strategy, metric, state, severity, mode, value, baseline, threshold, drop_,
                    samples, window_from, window_to, started_at, fired_at, resolved_at, updated_at
             FROM alerts WHERE {condition} ORDER BY updated_at DESC, id DESC LIMIT {limit}"
        );
        let mut statement = self.conn.prepare_cached(&sql).map_err(&error)?;
        let rows = statement
            .query_map(values, |row| {
                Ok(AlertRow {
                    id: row.get(0)?,
                    release_id: row.get(1)?,
                    strategy: row.get(2)?,
                    metric: row.get(3)?,
                    state: row.get(4)?,
                    severity: row.get(5)?,
                    mode: row.get(6)?,
                    value: row.get(7)?,
                    baseline: row.get(8)?,
                    threshold: row.get(9)?,
                    drop: row.get(10)?,
                    samples: row.get(11)?,
                    window_from: row.get(12)?,
                    window_to: row.get(13)?,
                    started_at: row.get(14)?,
                    fired_at: row.get(15)?,
                    resolved_at: row.get(16)?,
                    updated_at: row.get(17)?,
                })
            })
            .map_err(&error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&error)
    }

    /// The newest `limit` evaluations of `metric` for `release`, oldest first.
    pub fn series(&self, release: &str, metric: &str, limit: usize) -> Result<Vec<SeriesPoint>> {
        let error = sql_error(&self.path, "reading metric series");
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT at, mode, value, ci_low, ci_high, samples, baseline, threshold, verdict FROM evaluations
                 WHERE release_id = ?1 AND metric = ?2 ORDER BY at DESC LIMIT ?3",
            )
            .map_err(&error)?;
        let rows = statement
            .query_map(params![release, metric, limit as i64], |row| {
                Ok(SeriesPoint {
                    at: row.get(0)?,
                    mode: row.get(1)?,
                    value: row.get(2)?,
                    ci_low: row.get(3)?,
                    ci_high: row.get(4)?,
                    samples: row.get(5)?,
                    baseline: row.get(6)?,
                    threshold: row.get(7)?,
                    verdict: row.get(8)?,
                })
            })
            .map_err(&error)?;
        let mut points = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&error)?;
        points.reverse();
        Ok(points)
    }

    /// Notifications due for delivery at `now` (wall clock), oldest first.
    pub fn due_notifications(&self, now: Seconds, limit: usize) -> Result<Vec<OutboxRow>> {
        let error = sql_error(&self.path, "reading the outbox");
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT id, sink, payload, attempts FROM outbox WHERE delivered_at IS NULL AND next_attempt <= ?1
                 ORDER BY id LIMIT ?2",
            )
            .map_err(&error)?;
        let rows = statement
            .query_map(params![now, limit as i64], |row| {
                Ok(OutboxRow { id: row.get(0)?, sink: row.get(1)?, payload: row.get(2)?, attempts: row.get(3)? })
            })
            .map_err(&error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&error)
    }

    /// Record a delivery attempt: delivered, or failed and due again at `retry_at`.
    pub fn record_delivery(&self, id: i64, now: Seconds, failure: Option<(&str, Seconds)>) -> Result<()> {
        let error = sql_error(&self.path, "updating the outbox");
        match failure {
            None => self.conn.execute(
                "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1",
                params![id, now],
            ),
            Some((message, retry_at)) => self.conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3 WHERE id = ?1",
                params![id, retry_at, message],
            ),
        }
        .map_err(&error)?;
        Ok(())
    }

    /// Notifications not yet delivered, and how many of those have failed at least once.
    pub fn outbox_backlog(&self) -> Result<(u64, u64)> {
        self.conn
            .query_row(
                "SELECT count(*), coalesce(sum(attempts > 0), 0) FROM outbox WHERE delivered_at IS NULL",
                [],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
            )
            .map_err(sql_error(&self.path, "reading the outbox"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, ts: Seconds, hit: bool) -> NewEvent<'_> {
        NewEvent {
            id,
            ts,
            strategy: "intraday",
            symbol: "AAPL",
            signal: Signal::Long,
            outcome: if hit { Signal::Long } else { Signal::Short },
            ret: if hit { 0.01 } else { -0.01 },
            release_id: "r1",
            attributed: "time",
            late: false,
            known_strategy: true,
        }
    }

    #[test]
    fn ingest_is_idempotent_and_windows_sum_buckets() {
        let mut db = Db::in_memory().unwrap();
        let mut ingest = db.ingest(0).unwrap();
        for i in 0..500 {
            ingest.add(&event(&format!("e{i}"), 1_000_000 + i * 37, i % 3 != 0)).unwrap();
        }
        let counts = ingest.commit().unwrap();
        assert_eq!((counts.accepted, counts.duplicates), (500, 0));
        let mut again = db.ingest(0).unwrap();
        for i in 0..500 {
            again.add(&event(&format!("e{i}"), 1_000_000 + i * 37, i % 3 != 0)).unwrap();
        }
        let counts = again.commit().unwrap();
        assert_eq!((counts.accepted, counts.duplicates), (0, 500));
        assert_eq!(db.event_count().unwrap(), 500);
        // Any window equals the naive count of events in minutes starting inside it.
        for (from, to) in [(0, i64::MAX / 4), (1_000_000, 1_003_600), (1_000_123, 1_010_000), (1_007_200, 1_007_260)] {
            let naive = (0..500)
                .filter(|i| {
                    let minute = (1_000_000 + i * 37) / 60 * 60;
                    minute >= from / 60 * 60 && minute < to
                })
                .count() as u64;
            assert_eq!(db.window(Some("r1"), "intraday", from, to).unwrap().trades, naive, "{from}..{to}");
        }
        assert_eq!(db.window(Some("r2"), "intraday", 0, i64::MAX / 4).unwrap().trades, 0);
    }

    #[test]
    fn a_rolled_back_ingest_leaves_nothing() {
        let mut db = Db::in_memory().unwrap();
        let mut ingest = db.ingest(0).unwrap();
        ingest.add(&event("a", 100, true)).unwrap();
        drop(ingest);
        assert_eq!(db.event_count().unwrap(), 0);
        assert_eq!(db.window(Some("r1"), "intraday", 0, 1000).unwrap(), Stats::default());
    }

    #[test]
    fn the_same_id_twice_in_one_batch_is_stored_once() {
        let mut db = Db::in_memory().unwrap();
        let mut ingest = db.ingest(0).unwrap();
        ingest.add(&event("x", 100, true)).unwrap();
        ingest.add(&event("x", 100, false)).unwrap();
        let counts = ingest.commit().unwrap();
        assert_eq!((counts.accepted, counts.duplicates), (1, 1));
        assert_eq!(db.event_count().unwrap(), 1);
        // The first one counts.
        assert_eq!(db.window(Some("r1"), "intraday", 0, 1000).unwrap().hits, 1);
    }

    #[test]
    fn stats_round_trip() {
        let mut stats = Stats::default();
        stats.add(Signal::Long, Signal::Short, -0.25);
        stats.add(Signal::Short, Signal::Short, 1e6);
        assert_eq!(decode(&encode(&stats)), Some(stats));
        assert_eq!(decode(&[1, 2, 3]), None);
    }
}
