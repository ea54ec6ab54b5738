//! Alerts: the state machine's memory (`alert_state`), the alert episodes (`alerts`), every
//! transition, and each metric at each evaluation (`evaluations`, the dashboard's series).

use std::path::Path;

use crate::error::{Error, Result};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use crate::alert::{NotifyReason, Seconds, State};
use crate::db::{Db, sql_error};

/// One row of the `alerts` table: an alert episode.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertRow {
    /// Its id.
    pub id: i64,
    /// The release judged.
    pub release_id: String,
    /// The strategy the metric is computed over.
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
    #[serde(serialize_with = "crate::time_json::option::serialize")]
    pub window_from: Option<i64>,
    /// Window end.
    #[serde(serialize_with = "crate::time_json::option::serialize")]
    pub window_to: Option<i64>,
    /// When it started (pending).
    #[serde(serialize_with = "crate::time_json::serialize")]
    pub started_at: i64,
    /// When it fired.
    #[serde(serialize_with = "crate::time_json::option::serialize")]
    pub fired_at: Option<i64>,
    /// When it resolved.
    #[serde(serialize_with = "crate::time_json::option::serialize")]
    pub resolved_at: Option<i64>,
    /// Last change.
    #[serde(serialize_with = "crate::time_json::serialize")]
    pub updated_at: i64,
}

/// One evaluated value of a metric (the charts).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesPoint {
    /// When.
    #[serde(serialize_with = "crate::time_json::serialize")]
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
    /// The release's baseline the value was judged against.
    pub baseline: Option<f64>,
    /// Threshold of the mode.
    pub threshold: f64,
    /// `healthy`, `breach_warning`, `breach_critical` or `insufficient_data`.
    pub verdict: String,
}

impl Db {
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
}

/// One alert's measured facts at an evaluation: what the alert row, its transitions and the
/// evaluations table record.
#[derive(Debug, Clone)]
pub struct Measured<'a> {
    /// The release.
    pub release: &'a str,
    /// The strategy.
    pub strategy: &'a str,
    /// The metric's name.
    pub metric: &'a str,
    /// `heightened` or `normal`.
    pub mode: &'static str,
    /// The metric's value (`None`: not enough data).
    pub value: Option<f64>,
    /// The baseline it is judged against.
    pub baseline: Option<f64>,
    /// The threshold in force.
    pub threshold: f64,
    /// The relative drop.
    pub drop: Option<f64>,
    /// Samples in the window.
    pub samples: i64,
    /// The window, unix seconds.
    pub window: (Seconds, Seconds),
}

/// The writes of one evaluation pass, in one transaction: nothing is recorded unless all of it is.
pub struct Recorder<'a> {
    tx: Transaction<'a>,
    path: &'a Path,
}

impl Db {
    /// Start recording an evaluation pass.
    pub fn record(&mut self) -> Result<Recorder<'_>> {
        // IMMEDIATE, like every writer here (see `Db::ingest`): wait for another process's writer.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_error(&self.path, "recording an evaluation"))?;
        Ok(Recorder { tx, path: &self.path })
    }
}

impl Recorder<'_> {
    fn error(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        sql_error(self.path, "recording an evaluation")
    }

    /// Close (once) the alerts of releases that are no longer active — or of an earlier activation
    /// of the active one (rolled back, then deployed again) — as `superseded`: production left that
    /// release (a rollback, or a newer deploy), which is not the same as the metric recovering.
    pub fn close_stale(&self, release: &str, activation: Seconds, at: Seconds) -> Result<()> {
        let error = self.error();
        let stale: Vec<(String, String, String, Option<i64>)> = {
            let mut statement = self
                .tx
                .prepare(
                    "SELECT release_id, metric, state, alert_id FROM alert_state
                     WHERE release_id != ?1 OR activation != ?2",
                )
                .map_err(&error)?;
            let rows = statement
                .query_map(params![release, activation], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
                .map_err(&error)?;
            rows.collect::<rusqlite::Result<_>>().map_err(&error)?
        };
        for (old_release, metric, state, alert_id) in stale {
            let state: State = serde_json::from_str(&state).unwrap_or(State::Inactive);
            if state.is_open() {
                self.tx
                    .execute(
                        "UPDATE alerts SET state = 'superseded', resolved_at = ?2, updated_at = ?2 WHERE id = ?1",
                        params![alert_id, at],
                    )
                    .map_err(&error)?;
                self.tx
                    .execute(
                        "INSERT INTO transitions (alert_id, at, release_id, strategy, metric, from_state, to_state, mode)
                         SELECT id, ?2, release_id, strategy, metric, ?3, 'superseded', mode FROM alerts WHERE id = ?1",
                        params![alert_id, at, state.name()],
                    )
                    .map_err(&error)?;
            }
            self.tx
                .execute("DELETE FROM alert_state WHERE release_id = ?1 AND metric = ?2", params![old_release, metric])
                .map_err(&error)?;
        }
        Ok(())
    }

    /// The state machine's memory for a metric of a release, and its open alert.
    pub fn state(&self, release: &str, metric: &str) -> Result<(State, Option<i64>)> {
        Ok(self
            .tx
            .query_row(
                "SELECT state, alert_id FROM alert_state WHERE release_id = ?1 AND metric = ?2",
                params![release, metric],
                |row| Ok((row.get::<_, String>(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(self.error())?
            .map(|(s, id)| (serde_json::from_str(&s).unwrap_or(State::Inactive), id))
            .unwrap_or((State::Inactive, None)))
    }

    /// Open a new alert episode (pending); its id.
    pub fn open_alert(&self, measured: &Measured<'_>, at: Seconds) -> Result<i64> {
        self.tx
            .execute(
                "INSERT INTO alerts (release_id, strategy, metric, state, mode, started_at, updated_at)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?5)",
                params![measured.release, measured.strategy, measured.metric, measured.mode, at],
            )
            .map_err(self.error())?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Move an alert episode to `state` with the facts measured now.
    pub fn update_alert(
        &self,
        id: i64,
        state: &str,
        severity: Option<&str>,
        measured: &Measured<'_>,
        at: Seconds,
    ) -> Result<()> {
        let m = measured;
        self.tx
            .execute(
                "UPDATE alerts SET state = ?2, severity = coalesce(?3, severity), mode = ?4, value = ?5,
                        baseline = ?6, threshold = ?7, drop_ = ?8, samples = ?9, window_from = ?10,
                        window_to = ?11, updated_at = ?12,
                        fired_at = CASE WHEN ?2 = 'firing' AND fired_at IS NULL THEN ?12 ELSE fired_at END,
                        resolved_at = CASE WHEN ?2 = 'resolved' THEN ?12 ELSE resolved_at END
                 WHERE id = ?1",
                params![
                    id,
                    state,
                    severity,
                    m.mode,
                    m.value,
                    m.baseline,
                    m.threshold,
                    m.drop,
                    m.samples,
                    m.window.0,
                    m.window.1,
                    at
                ],
            )
            .map_err(self.error())?;
        Ok(())
    }

    /// Record one transition of the state machine.
    #[allow(clippy::too_many_arguments)]
    pub fn transition(
        &self,
        alert_id: Option<i64>,
        before: &State,
        after: &State,
        severity: Option<&str>,
        notify: Option<NotifyReason>,
        measured: &Measured<'_>,
        at: Seconds,
    ) -> Result<()> {
        let m = measured;
        self.tx
            .execute(
                "INSERT INTO transitions (alert_id, at, release_id, strategy, metric, from_state, to_state,
                     severity, notify, mode, value, baseline, threshold, drop_, samples, window_from, window_to)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                params![
                    alert_id,
                    at,
                    m.release,
                    m.strategy,
                    m.metric,
                    before.name(),
                    after.name(),
                    severity,
                    notify.map(NotifyReason::as_str),
                    m.mode,
                    m.value,
                    m.baseline,
                    m.threshold,
                    m.drop,
                    m.samples,
                    m.window.0,
                    m.window.1
                ],
            )
            .map_err(self.error())?;
        Ok(())
    }

    /// Queue a notification's payload for every sink (see [`crate::db::outbox`]).
    pub fn enqueue(&self, alert_id: i64, sinks: &[String], payload: &str, now: Seconds) -> Result<()> {
        for sink in sinks {
            self.tx
                .execute(
                    "INSERT INTO outbox (alert_id, sink, payload, created, next_attempt) VALUES (?1, ?2, ?3, ?4, ?4)",
                    params![alert_id, sink, payload, now],
                )
                .map_err(self.error())?;
        }
        Ok(())
    }

    /// Remember the state machine's state for a metric of a release.
    pub fn save_state(
        &self,
        measured: &Measured<'_>,
        state: &State,
        alert_id: Option<i64>,
        activation: Seconds,
    ) -> Result<()> {
        self.tx
            .execute(
                "INSERT OR REPLACE INTO alert_state (release_id, metric, state, alert_id, activation)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    measured.release,
                    measured.metric,
                    serde_json::to_string(state).unwrap_or_default(),
                    alert_id,
                    activation
                ],
            )
            .map_err(self.error())?;
        Ok(())
    }

    /// Record a metric's evaluation (the dashboard's series).
    pub fn evaluation(
        &self,
        measured: &Measured<'_>,
        interval: (Option<f64>, Option<f64>),
        verdict: &str,
        at: Seconds,
    ) -> Result<()> {
        let m = measured;
        self.tx
            .execute(
                "INSERT OR REPLACE INTO evaluations (release_id, metric, at, strategy, mode, value, ci_low, ci_high,
                     samples, baseline, threshold, verdict, drop_)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    m.release,
                    m.metric,
                    at,
                    m.strategy,
                    m.mode,
                    m.value,
                    interval.0,
                    interval.1,
                    m.samples,
                    m.baseline,
                    m.threshold,
                    verdict,
                    m.drop
                ],
            )
            .map_err(self.error())?;
        Ok(())
    }

    /// Commit only the closing of superseded alerts (not an evaluation pass: `last_evaluation`
    /// stays as it was).
    pub fn commit_closed(self) -> Result<()> {
        self.tx.commit().map_err(sql_error(self.path, "closing superseded alerts"))
    }

    /// Note the pass's time and commit everything it recorded.
    pub fn commit(self, at: Seconds) -> Result<()> {
        let error = sql_error(self.path, "recording an evaluation");
        self.tx
            .execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_evaluation', ?1)", [at.to_string()])
            .map_err(&error)?;
        self.tx.commit().map_err(&error)
    }
}

/// A critical firing, as the auto-rollback policy counts them.
#[derive(Debug, Clone, PartialEq)]
pub struct CriticalFiring {
    /// The metric.
    pub metric: String,
    /// When it fired or escalated.
    pub at: Seconds,
    /// Its value then.
    pub value: Option<f64>,
    /// Its baseline.
    pub baseline: Option<f64>,
}

impl Db {
    /// The critical firings and escalations of `release` in `(since, until]`, oldest first.
    pub fn critical_firings(&self, release: &str, since: Seconds, until: Seconds) -> Result<Vec<CriticalFiring>> {
        let error = sql_error(&self.path, "checking auto-rollback");
        let mut statement = self
            .conn
            .prepare(
                "SELECT metric, at, value, baseline FROM transitions
                 WHERE release_id = ?1 AND at > ?2 AND at <= ?3 AND severity = 'critical'
                   AND notify IN ('firing', 'escalated') ORDER BY at",
            )
            .map_err(&error)?;
        let rows = statement
            .query_map(params![release, since, until], |row| {
                Ok(CriticalFiring { metric: row.get(0)?, at: row.get(1)?, value: row.get(2)?, baseline: row.get(3)? })
            })
            .map_err(&error)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&error)
    }

    /// Claim an attempt at the automatic rollback of `release`: the first, or a retry of a failed
    /// one whose backoff has passed, within `retry_for` seconds of the first. The attempt's number,
    /// or `None` when it is not (or no longer) to be tried.
    pub fn claim_auto_rollback(
        &self,
        release: &str,
        at: Seconds,
        reason: &str,
        retry_for: Seconds,
    ) -> Result<Option<u32>> {
        let error = sql_error(&self.path, "claiming the auto-rollback");
        let claimed = self
            .conn
            .execute(
                "INSERT INTO auto_rollbacks (release_id, at, reason, outcome, attempts, next_attempt)
                 VALUES (?1, ?2, ?3, 'started', 1, NULL)
                 ON CONFLICT (release_id) DO UPDATE SET attempts = attempts + 1, outcome = 'started', next_attempt = NULL
                 WHERE outcome LIKE 'failed%' AND next_attempt IS NOT NULL AND next_attempt <= ?2 AND ?2 - at <= ?4",
                params![release, at, reason, retry_for],
            )
            .map_err(&error)?;
        if claimed == 0 {
            return Ok(None);
        }
        let attempts: i64 = self
            .conn
            .query_row("SELECT attempts FROM auto_rollbacks WHERE release_id = ?1", [release], |row| row.get(0))
            .map_err(&error)?;
        Ok(Some(attempts as u32))
    }

    /// Queue a notification that belongs to no alert (a failed automatic rollback) for every sink,
    /// in its own transaction.
    pub fn enqueue_note(&self, sinks: &[String], payload: &str, now: Seconds) -> Result<()> {
        let error = sql_error(&self.path, "queueing a notification");
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate).map_err(&error)?;
        for sink in sinks {
            tx.execute(
                "INSERT INTO outbox (alert_id, sink, payload, created, next_attempt) VALUES (NULL, ?1, ?2, ?3, ?3)",
                params![sink, payload, now],
            )
            .map_err(&error)?;
        }
        tx.commit().map_err(&error)
    }

    /// The automatic rollback of `release`, if one was tried: its outcome, attempts and the time of
    /// the next attempt (unix seconds), for the dashboard.
    pub fn auto_rollback_of(&self, release: &str) -> Result<Option<(String, i64, Option<Seconds>)>> {
        self.conn
            .query_row(
                "SELECT outcome, attempts, next_attempt FROM auto_rollbacks WHERE release_id = ?1",
                [release],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(sql_error(&self.path, "reading the auto-rollback"))
    }

    /// When the automatic rollback of `release` was first tried (`None`: never).
    pub fn auto_rollback_started(&self, release: &str) -> Result<Option<Seconds>> {
        self.conn
            .query_row("SELECT at FROM auto_rollbacks WHERE release_id = ?1", [release], |row| row.get(0))
            .optional()
            .map_err(sql_error(&self.path, "reading the auto-rollback"))
    }

    /// Record how an attempt at the automatic rollback of `release` ended, and when to try again
    /// (`None`: not again).
    pub fn auto_rollback_outcome(&self, release: &str, outcome: &str, next_attempt: Option<Seconds>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE auto_rollbacks SET outcome = ?2, next_attempt = ?3 WHERE release_id = ?1",
                params![release, outcome, next_attempt],
            )
            .map_err(sql_error(&self.path, "recording the auto-rollback"))?;
        Ok(())
    }
}
