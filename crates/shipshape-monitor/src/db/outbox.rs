//! The outbox: each notification for each sink until it is delivered, retried with backoff.

use crate::error::Result;
use rusqlite::params;

use crate::alert::Seconds;
use crate::db::{Db, sql_error};

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
