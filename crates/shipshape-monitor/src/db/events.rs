//! Events and their time buckets: idempotent ingestion in batches, and windows read from whole
//! hours plus the minutes at their edges.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use sha2::{Digest as _, Sha256};
use shipshape_metrics::{Signal, Stats};

use crate::alert::Seconds;
use crate::db::{Db, HOUR, MINUTE, sql_error};

/// How an event was attributed to a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    /// The event named its release.
    Producer,
    /// The release active at the event's time.
    Time,
    /// None: the event is older than any deploy.
    None,
}

impl Attribution {
    /// The word the events table stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Attribution::Producer => "producer",
            Attribution::Time => "time",
            Attribution::None => "none",
        }
    }
}

/// One event to store, already checked and attributed (borrowing from the line it was parsed from).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent<'a> {
    /// The producer's id, or one derived from the content when it gave none.
    pub id: &'a str,
    /// Unix seconds.
    pub ts: Seconds,
    /// The strategy that traded (the metrics are per strategy).
    pub strategy: &'a str,
    /// The instrument traded (stored for the record; metrics do not group by it).
    pub symbol: &'a str,
    /// Predicted direction.
    pub signal: Signal,
    /// Realised direction.
    pub outcome: Signal,
    /// Realised return.
    pub ret: f64,
    /// The release it is attributed to (empty: before any deploy).
    pub release_id: &'a str,
    /// How the release was found.
    pub attributed: Attribution,
    /// Older than the last evaluation (counted in the report when stored).
    pub late: bool,
    /// Of a strategy some policy watches (others are counted in the report when stored).
    pub known_strategy: bool,
    /// The producer's numeric fields.
    pub metrics: &'a [(std::borrow::Cow<'a, str>, f64)],
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
    /// Events older than what `shipshape gc` pruned: not stored (their ids are gone, so a copy
    /// of a pruned event could not be told from a new one).
    pub expired: u64,
}

/// An event waiting in an ingest's buffer (names as indices into its batch's names).
struct Buffered {
    id: String,
    ts: Seconds,
    strategy: usize,
    symbol: String,
    signal: Signal,
    outcome: Signal,
    ret: f64,
    release: usize,
    attributed: Attribution,
    late: bool,
    known_strategy: bool,
    metrics: Vec<(usize, f64)>,
}

/// Events parsed and checked, ready to store: [`Batcher`] makes them (on any thread),
/// [`Ingest::store`] stores them.
pub struct Batch {
    /// Every name interned so far (release ids, strategies, producer fields); names only grow, so
    /// a later batch's names extend an earlier one's.
    names: Vec<String>,
    events: Vec<Buffered>,
}

/// The parsing side of an ingest: interns names, drops events older than the pruned boundary and
/// cuts the stream into batches. It owns no database handle, so a reader thread can run it while
/// the writer stores the previous batch (`shipshape ingest` reads and writes in parallel).
pub struct Batcher {
    names: Vec<String>,
    buffer: Vec<Buffered>,
    pruned_before: Option<Seconds>,
    expired: u64,
}

impl Batcher {
    fn intern(&mut self, name: &str) -> usize {
        match self.names.iter().position(|n| n == name) {
            Some(index) => index,
            None => {
                self.names.push(name.to_string());
                self.names.len() - 1
            }
        }
    }

    /// Add one event; a full batch comes back, to be stored.
    pub fn add(&mut self, event: &NewEvent<'_>) -> Option<Batch> {
        if self.pruned_before.is_some_and(|before| event.ts < before) {
            self.expired += 1;
            return None;
        }
        let strategy = self.intern(event.strategy);
        let release = self.intern(event.release_id);
        let metrics = event.metrics.iter().map(|(k, v)| (self.intern(k), *v)).collect();
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
            metrics,
        });
        (self.buffer.len() >= BUFFER).then(|| self.take())
    }

    /// What is buffered, as a batch sorted by id: the unique index is then written in order (ids
    /// from one producer share prefixes), not at random pages. The sort is stable, so of two
    /// events with one id the first is kept; it runs here, on the reader's thread.
    fn take(&mut self) -> Batch {
        let mut events = std::mem::replace(&mut self.buffer, Vec::with_capacity(BUFFER));
        events.sort_by(|a, b| a.id.cmp(&b.id));
        Batch { names: self.names.clone(), events }
    }
}

/// Events are inserted in batches sorted by id, so the id index is written in order instead of
/// at random places: several times faster for large ingests.
const BUFFER: usize = 16 * 1024;

/// Statistics encoded for a bucket row: little-endian integers — the seven of the first schema
/// (72 bytes), then wins, losses and the win and loss sums and squares (152 bytes). A 72-byte row
/// (written before win/loss statistics existed) reads with those zero.
fn encode(stats: &Stats) -> [u8; 152] {
    let mut out = [0u8; 152];
    out[0..8].copy_from_slice(&stats.trades.to_le_bytes());
    out[8..16].copy_from_slice(&stats.hits.to_le_bytes());
    out[16..24].copy_from_slice(&stats.longs.to_le_bytes());
    out[24..32].copy_from_slice(&stats.long_wins.to_le_bytes());
    out[32..40].copy_from_slice(&stats.events.to_le_bytes());
    out[40..56].copy_from_slice(&stats.return_sum.to_le_bytes());
    out[56..72].copy_from_slice(&stats.return_sum_squares.to_le_bytes());
    out[72..80].copy_from_slice(&stats.wins.to_le_bytes());
    out[80..88].copy_from_slice(&stats.losses.to_le_bytes());
    out[88..104].copy_from_slice(&stats.win_sum.to_le_bytes());
    out[104..120].copy_from_slice(&stats.win_sum_squares.to_le_bytes());
    out[120..136].copy_from_slice(&stats.loss_sum.to_le_bytes());
    out[136..152].copy_from_slice(&stats.loss_sum_squares.to_le_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<Stats> {
    if bytes.len() != 72 && bytes.len() != 152 {
        return None;
    }
    let u = |range: std::ops::Range<usize>| Some(u64::from_le_bytes(bytes.get(range)?.try_into().ok()?));
    let i = |range: std::ops::Range<usize>| Some(i128::from_le_bytes(bytes.get(range)?.try_into().ok()?));
    let mut stats = Stats {
        trades: u(0..8)?,
        hits: u(8..16)?,
        longs: u(16..24)?,
        long_wins: u(24..32)?,
        events: u(32..40)?,
        return_sum: i(40..56)?,
        return_sum_squares: i(56..72)?,
        ..Stats::default()
    };
    if bytes.len() == 152 {
        stats.wins = u(72..80)?;
        stats.losses = u(80..88)?;
        stats.win_sum = i(88..104)?;
        stats.win_sum_squares = i(104..120)?;
        stats.loss_sum = i(120..136)?;
        stats.loss_sum_squares = i(136..152)?;
    }
    Some(stats)
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
    /// Interned release ids, strategy and field names (of the last batch stored).
    names: Vec<String>,
    /// The parsing side, when events are added one by one with [`Ingest::add`].
    front: Batcher,
    /// Minute buckets per (release, strategy) name index.
    minutes: HashMap<(usize, usize, Seconds), Stats>,
    /// Producer fields' minute buckets per (release, strategy, field) name index.
    fields: HashMap<(usize, usize, usize, Seconds), shipshape_metrics::FieldStats>,
    received: Seconds,
    counts: IngestCounts,
}

impl Ingest<'_> {
    /// Add one event (stored, or counted as a duplicate, when its batch is stored).
    pub fn add(&mut self, event: &NewEvent<'_>) -> Result<()> {
        match self.front.add(event) {
            Some(batch) => self.store(batch),
            None => Ok(()),
        }
    }

    /// A parsing side for another thread: hand its batches to [`Ingest::store`] in order and
    /// finish with [`Ingest::commit_with`].
    pub fn batcher(&self) -> Batcher {
        Batcher {
            names: Vec::new(),
            buffer: Vec::with_capacity(BUFFER),
            pruned_before: self.front.pruned_before,
            expired: 0,
        }
    }

    /// What was stored so far (after the last [`Ingest::flush`]).
    pub fn counts(&self) -> &IngestCounts {
        &self.counts
    }

    /// Store what [`Ingest::add`] buffered (still inside the transaction).
    pub fn flush(&mut self) -> Result<()> {
        let batch = self.front.take();
        self.counts.expired += std::mem::take(&mut self.front.expired);
        self.store(batch)
    }

    /// Store a batch (still inside the transaction).
    pub fn store(&mut self, batch: Batch) -> Result<()> {
        let error = sql_error(self.path, "storing events");
        let Batch { names, events: buffer } = batch;
        if names.len() >= self.names.len() {
            self.names = names;
        }
        for event in &buffer {
            // Bound one by one (no slice of trait objects per row): the writer is the ingest's bound.
            let insert = &mut self.insert;
            insert.raw_bind_parameter(1, event.id.as_str()).map_err(&error)?;
            insert.raw_bind_parameter(2, event.ts).map_err(&error)?;
            insert.raw_bind_parameter(3, self.names[event.strategy].as_str()).map_err(&error)?;
            insert.raw_bind_parameter(4, event.symbol.as_str()).map_err(&error)?;
            insert.raw_bind_parameter(5, event.signal.as_i64()).map_err(&error)?;
            insert.raw_bind_parameter(6, event.outcome.as_i64()).map_err(&error)?;
            insert.raw_bind_parameter(7, event.ret).map_err(&error)?;
            insert.raw_bind_parameter(8, self.names[event.release].as_str()).map_err(&error)?;
            insert.raw_bind_parameter(9, event.attributed.as_str()).map_err(&error)?;
            insert.raw_bind_parameter(10, self.received).map_err(&error)?;
            let stored = insert.raw_execute().map_err(&error)? == 1;
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
            for &(field, value) in &event.metrics {
                self.fields.entry((event.release, event.strategy, field, bucket)).or_default().add(value);
            }
            if event.attributed == Attribution::None {
                self.counts.unattributed += 1;
            }
            if event.late {
                self.counts.late += 1;
            }
            if !event.known_strategy {
                *self.counts.unknown_strategies.entry(self.names[event.strategy].clone()).or_default() += 1;
            }
        }
        Ok(())
    }

    /// Store what is buffered, write the bucket statistics and commit.
    pub fn commit(mut self) -> Result<IngestCounts> {
        let empty = self.batcher();
        let front = std::mem::replace(&mut self.front, empty);
        self.commit_with(front)
    }

    /// Store what `batcher` still holds, write the bucket statistics and commit.
    pub fn commit_with(mut self, mut batcher: Batcher) -> Result<IngestCounts> {
        let rest = batcher.take();
        self.store(rest)?;
        self.counts.expired += batcher.expired;
        let Ingest { insert, tx, path, names, minutes: by_index, fields, counts, .. } = self;
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
        for (table, width) in [("field_minutes", MINUTE), ("field_hours", HOUR)] {
            let mut merged: HashMap<(usize, usize, usize, Seconds), shipshape_metrics::FieldStats> = HashMap::new();
            for ((release, strategy, field, minute), stats) in &fields {
                merged.entry((*release, *strategy, *field, minute.div_euclid(width) * width)).or_default().merge(stats);
            }
            let mut upsert = tx
                .prepare_cached(&format!(
                    "INSERT INTO {table} (release_id, strategy, field, bucket, n, sum, sum_squares, nonzero)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (release_id, strategy, field, bucket) DO UPDATE SET n = n + excluded.n,
                       sum = sum + excluded.sum, sum_squares = sum_squares + excluded.sum_squares,
                       nonzero = nonzero + excluded.nonzero"
                ))
                .map_err(&error)?;
            for ((release, strategy, field, bucket), s) in merged {
                upsert
                    .execute(params![
                        names[release],
                        names[strategy],
                        names[field],
                        bucket,
                        s.n as i64,
                        s.sum,
                        s.sum_squares,
                        s.nonzero as i64
                    ])
                    .map_err(&error)?;
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

impl Db {
    /// Start an ingest; `received` is the time it is recorded with.
    pub fn ingest(&mut self, received: Seconds) -> Result<Ingest<'_>> {
        let error = sql_error(&self.path, "starting an ingest");
        let conn: &Connection = &self.conn;
        // `&mut self` guarantees no other transaction on this connection. IMMEDIATE: a writer takes
        // the write lock at BEGIN, waiting in SQLite's busy handler for another process's writer; a
        // deferred transaction that later upgrades to a write fails at once with "database is locked".
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(&error)?;
        let pruned_before: Option<Seconds> = tx
            .query_row("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'events_pruned_before'", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(&error)?;
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
            front: Batcher { names: Vec::new(), buffer: Vec::with_capacity(BUFFER), pruned_before, expired: 0 },
            minutes: HashMap::new(),
            fields: HashMap::new(),
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

    /// The strategies with events attributed to `release` (to any release when `None`).
    pub fn strategies(&self, release: Option<&str>) -> Result<Vec<String>> {
        let error = sql_error(&self.path, "listing strategies");
        let mut statement = self
            .conn
            .prepare_cached("SELECT DISTINCT strategy FROM hours WHERE ?1 IS NULL OR release_id = ?1 ORDER BY strategy")
            .map_err(&error)?;
        let rows = statement.query_map([release], |row| row.get::<_, String>(0)).map_err(&error)?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(&error)
    }

    /// The one-minute blocks of every strategy matching `patterns` for `release`, in `[from, to)`,
    /// pooled per minute, oldest first (the sequential detector's design effect reads them).
    pub fn minute_blocks(&self, release: &str, patterns: &[String], from: Seconds, to: Seconds) -> Result<Vec<Stats>> {
        let error = sql_error(&self.path, "reading minute statistics");
        let mut blocks: std::collections::BTreeMap<Seconds, Stats> = std::collections::BTreeMap::new();
        for strategy in self.strategies(Some(release))? {
            if !patterns.iter().any(|p| shipshape_core::config::wildcard_match(p, &strategy)) {
                continue;
            }
            let mut statement = self
                .conn
                .prepare_cached(
                    "SELECT bucket, stats FROM minutes WHERE release_id = ?1 AND strategy = ?2 AND bucket >= ?3 AND bucket < ?4",
                )
                .map_err(&error)?;
            let mut rows = statement.query(params![release, strategy, from, to]).map_err(&error)?;
            while let Some(row) = rows.next().map_err(&error)? {
                let bucket: Seconds = row.get(0).map_err(&error)?;
                let bytes: Vec<u8> = row.get(1).map_err(&error)?;
                let stats = decode(&bytes)
                    .ok_or_else(|| Error::invalid(&self.path, "a corrupt statistics row in `minutes`"))?;
                blocks.entry(bucket).or_default().merge(&stats);
            }
        }
        Ok(blocks.into_values().collect())
    }

    /// Statistics of the producer field `field` of every strategy matching `patterns`, for
    /// `release` (every release when `None`), with timestamps in `[from, to)` at minute resolution.
    pub fn field_window(
        &self,
        release: Option<&str>,
        patterns: &[String],
        field: &str,
        from: Seconds,
        to: Seconds,
    ) -> Result<shipshape_metrics::FieldStats> {
        let error = sql_error(&self.path, "reading field statistics");
        let from = from.div_euclid(MINUTE) * MINUTE;
        let mut total = shipshape_metrics::FieldStats::default();
        if to <= from {
            return Ok(total);
        }
        let first_hour = (from + HOUR - 1).div_euclid(HOUR) * HOUR;
        let end_hour = to.div_euclid(HOUR) * HOUR;
        let ranges = if first_hour < end_hour {
            vec![
                ("field_hours", first_hour, end_hour),
                ("field_minutes", from, first_hour),
                ("field_minutes", end_hour, to),
            ]
        } else {
            vec![("field_minutes", from, to)]
        };
        let strategies: Vec<String> = self
            .strategies(release)?
            .into_iter()
            .filter(|s| patterns.iter().any(|p| shipshape_core::config::wildcard_match(p, s)))
            .collect();
        for strategy in &strategies {
            for (table, start, end) in &ranges {
                if end <= start {
                    continue;
                }
                let sql = format!(
                    "SELECT coalesce(sum(n), 0), coalesce(sum(sum), 0.0), coalesce(sum(sum_squares), 0.0), coalesce(sum(nonzero), 0)
                     FROM {table} WHERE (?1 IS NULL OR release_id = ?1) AND strategy = ?2 AND field = ?3 AND bucket >= ?4 AND bucket < ?5"
                );
                let (n, sum, squares, nonzero): (i64, f64, f64, i64) = self
                    .conn
                    .prepare_cached(&sql)
                    .map_err(&error)?
                    .query_row(params![release, strategy, field, start, end], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })
                    .map_err(&error)?;
                total.merge(&shipshape_metrics::FieldStats {
                    n: n.max(0) as u64,
                    sum,
                    sum_squares: squares,
                    nonzero: nonzero.max(0) as u64,
                });
            }
        }
        Ok(total)
    }

    /// The start of the newest minute holding an event attributed to `release` (`None`: none yet).
    pub fn last_minute(&self, release: &str) -> Result<Option<Seconds>> {
        let error = sql_error(&self.path, "reading the last event");
        let mut newest = None;
        for strategy in self.strategies(Some(release))? {
            let last: Option<Seconds> = self
                .conn
                .prepare_cached("SELECT max(bucket) FROM minutes WHERE release_id = ?1 AND strategy = ?2")
                .map_err(&error)?
                .query_row(params![release, strategy], |row| row.get(0))
                .map_err(&error)?;
            newest = newest.max(last);
        }
        Ok(newest)
    }

    /// [`Db::window`] pooled over every strategy matching `patterns` (names or `*`/`?` globs).
    pub fn window_of(&self, release: Option<&str>, patterns: &[String], from: Seconds, to: Seconds) -> Result<Stats> {
        let mut total = Stats::default();
        if patterns.iter().all(|p| !p.contains(['*', '?'])) {
            let unique: std::collections::BTreeSet<&String> = patterns.iter().collect();
            for strategy in unique {
                total.merge(&self.window(release, strategy, from, to)?);
            }
            return Ok(total);
        }
        for strategy in self.strategies(release)? {
            if patterns.iter().any(|p| shipshape_core::config::wildcard_match(p, &strategy)) {
                total.merge(&self.window(release, &strategy, from, to)?);
            }
        }
        Ok(total)
    }

    /// How many raw events have timestamps before `before` (what [`Db::prune_events`] would delete).
    pub fn events_before(&self, before: Seconds) -> Result<u64> {
        let error = sql_error(&self.path, "counting events");
        let count: i64 = self
            .conn
            .query_row("SELECT count(*) FROM events WHERE ts < ?1", [before], |row| row.get(0))
            .map_err(&error)?;
        Ok(count.max(0) as u64)
    }

    /// Delete the raw events with timestamps before `before`, in batches (each its own short
    /// transaction, so ingest is never blocked for long), keeping the minute and hour buckets —
    /// every window, chart and replay reads those. From then on an ingest refuses events before
    /// `before` (counted as `expired`): their ids are gone, so a re-sent one would be counted twice.
    pub fn prune_events(&mut self, before: Seconds) -> Result<u64> {
        let error = sql_error(&self.path, "pruning events");
        // The boundary first: an event arriving during the pruning is refused or kept, never lost
        // between the two.
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('events_pruned_before', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = max(CAST(value AS INTEGER), ?1)",
                [before],
            )
            .map_err(&error)?;
        let mut total = 0u64;
        loop {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate).map_err(&error)?;
            let deleted = tx
                .execute(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE ts < ?1 ORDER BY seq LIMIT 20000)",
                    [before],
                )
                .map_err(&error)?;
            tx.execute(
                "UPDATE meta SET value = max(CAST(value AS INTEGER) - ?1, 0) WHERE key = 'events'",
                [deleted as i64],
            )
            .map_err(&error)?;
            tx.commit().map_err(&error)?;
            total += deleted as u64;
            if deleted == 0 {
                return Ok(total);
            }
        }
    }

    /// The boundary of the last [`Db::prune_events`] (`None`: events were never pruned).
    pub fn pruned_before(&self) -> Result<Option<Seconds>> {
        Ok(self.meta("events_pruned_before")?.and_then(|v| v.parse().ok()))
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
}

impl Db {
    /// The time of the newest stored event, if any.
    pub fn last_event(&self) -> Result<Option<Seconds>> {
        self.conn
            .query_row("SELECT max(ts) FROM events", [], |row| row.get(0))
            .map_err(sql_error(&self.path, "reading"))
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
            attributed: Attribution::Time,
            late: false,
            known_strategy: true,
            metrics: &[],
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
        // A row written before win/loss statistics: the first seven integers, the rest zero.
        let old = decode(&encode(&stats)[..72]).unwrap();
        assert_eq!((old.trades, old.hits, old.return_sum), (stats.trades, stats.hits, stats.return_sum));
        assert_eq!((old.wins, old.losses, old.win_sum, old.loss_sum), (0, 0, 0, 0));
        assert_eq!(decode(&encode(&stats)[..100]), None, "a torn row is corrupt, not zero");
    }

    #[test]
    fn producer_fields_are_bucketed_per_minute_and_hour_and_read_back_over_any_window() {
        let mut db = Db::in_memory().unwrap();
        let fields = [(std::borrow::Cow::Borrowed("slippage_bps"), 2.0), (std::borrow::Cow::Borrowed("rejected"), 0.0)];
        let mut ingest = db.ingest(0).unwrap();
        for i in 0..120 {
            let id = format!("f{i}");
            let mut e = event(&id, 3600 + i * 30, true);
            e.metrics = &fields;
            ingest.add(&e).unwrap();
        }
        // A duplicate adds nothing to the field statistics either.
        let mut again = event("f0", 3600, true);
        again.metrics = &fields;
        ingest.add(&again).unwrap();
        ingest.commit().unwrap();
        let patterns = ["intraday".to_string()];
        let all = db.field_window(Some("r1"), &patterns, "slippage_bps", 0, 4 * 3600).unwrap();
        assert_eq!((all.n, all.sum, all.nonzero), (120, 240.0, 120));
        // Whole hours from field_hours, edges from field_minutes: the same totals.
        let part = db.field_window(Some("r1"), &patterns, "slippage_bps", 3600 + 600, 3600 + 1800).unwrap();
        assert_eq!(part.n, 40);
        let rejected = db.field_window(None, &["intra*".to_string()], "rejected", 0, 4 * 3600).unwrap();
        assert_eq!((rejected.n, rejected.nonzero), (120, 0));
        assert_eq!(db.field_window(Some("r1"), &patterns, "latency_ms", 0, 4 * 3600).unwrap().n, 0);
    }
}
