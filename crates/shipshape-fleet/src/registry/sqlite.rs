//! The embedded registry: one SQLite file (WAL), for a team whose hosts share a filesystem, for a
//! single machine trying the fleet commands, and for tests. No notifications: agents poll on
//! their timer. Host claims are rows with an expiry, renewed by the holder.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, types::ValueRef};

use super::{Sql, Value};
use crate::error::{Error, Result};

/// A registry in a SQLite file.
pub struct SqliteSql {
    conn: Connection,
    path: String,
}

impl SqliteSql {
    /// Open (creating) the file.
    pub fn open(path: &Path) -> Result<SqliteSql> {
        let display = format!("sqlite:{}", path.display());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::Registry {
                registry: display.clone(),
                action: "creating its directory",
                message: e.to_string(),
            })?;
        }
        let conn = Connection::open(path).map_err(|e| Error::Registry {
            registry: display.clone(),
            action: "opening",
            message: e.to_string(),
        })?;
        let failed = |e: rusqlite::Error| Error::Registry {
            registry: display.clone(),
            action: "opening",
            message: e.to_string(),
        };
        conn.busy_timeout(Duration::from_secs(10)).map_err(failed)?;
        // Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is
        // locked" at once (no busy handler) when processes open the new file together — eight
        // concurrent `promote`s on a fresh registry do. Once one has switched it, the mode is
        // persistent and the others only read it; so retry for up to 10 s.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mode: rusqlite::Result<String> =
                conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).and_then(|mode: String| {
                    if mode.eq_ignore_ascii_case("wal") {
                        Ok(mode)
                    } else {
                        conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
                    }
                });
            match mode {
                Ok(_) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(failed(e)),
            }
        }
        Ok(SqliteSql { conn, path: display })
    }

    fn error(&self, action: &'static str) -> impl Fn(rusqlite::Error) -> Error + '_ {
        move |e| Error::Registry { registry: self.path.clone(), action, message: e.to_string() }
    }
}

/// `$N` parameters as SQLite's `?N` (a `$N` would be numbered by first appearance).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

fn bind(params: &[Value]) -> Vec<rusqlite::types::Value> {
    params
        .iter()
        .map(|v| match v {
            Value::Int(i) => rusqlite::types::Value::Integer(*i),
            Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
        })
        .collect()
}

impl Sql for SqliteSql {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let changed = self
            .conn
            .execute(&numbered(sql), rusqlite::params_from_iter(bind(params)))
            .map_err(self.error("writing"))?;
        Ok(changed as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>> {
        let mut statement = self.conn.prepare(&numbered(sql)).map_err(self.error("reading"))?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(bind(params))).map_err(self.error("reading"))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| Error::Registry {
            registry: self.path.clone(),
            action: "reading",
            message: e.to_string(),
        })? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i) {
                    Ok(ValueRef::Integer(n)) => Value::Int(n),
                    Ok(ValueRef::Real(f)) => Value::Int(f as i64),
                    Ok(ValueRef::Text(t)) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    _ => Value::Text(String::new()),
                });
            }
            out.push(values);
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql).map_err(self.error("migrating"))
    }

    fn begin(&mut self) -> Result<()> {
        // IMMEDIATE: the write lock at BEGIN, so a compare-and-swap reads what it then writes.
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(self.error("starting a transaction"))
    }

    fn commit(&mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT").map_err(self.error("committing"))
    }

    fn rollback(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }

    fn notify(&mut self, _channel: &str) -> Result<()> {
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        std::thread::sleep(timeout);
        Ok(false)
    }

    fn claim(&mut self, name: &str, holder: &str, now: i64, ttl: i64) -> Result<bool> {
        let changed = self.execute(
            "INSERT INTO claims (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = $2, expires_at = $3
             WHERE claims.holder = $2 OR claims.expires_at < $4",
            &[name.into(), holder.into(), (now + ttl).into(), now.into()],
        )?;
        Ok(changed == 1)
    }

    fn display(&self) -> String {
        self.path.clone()
    }

    fn id_column(&self) -> &'static str {
        "INTEGER PRIMARY KEY AUTOINCREMENT"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_parameters_become_numbered_ones() {
        assert_eq!(
            numbered("UPDATE t SET a = $2 WHERE b = $1 AND c = '$x'"),
            "UPDATE t SET a = ?2 WHERE b = ?1 AND c = '$x'"
        );
    }
}
