//! The PostgreSQL registry (the `postgres` crate, synchronous over tokio-postgres): agents `LISTEN`
//! on [`super::CHANNEL`] and a pointer move `NOTIFY`s at commit; a host name is claimed with a
//! session advisory lock, released when the agent's connection ends.
//!
//! The password never sits in `shipshape.toml`: a URL with one is refused; it comes from
//! `PGPASSWORD` or `[fleet] password_file`. TLS is not supported yet: a connection to anything but
//! loopback needs `sslmode=disable` in the URL, said explicitly (or an SSH tunnel to loopback).

use std::str::FromStr as _;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::Type;
use postgres::{Client, NoTls};

use super::{Sql, Value};
use crate::error::{Error, Result};

/// A registry in PostgreSQL.
pub struct PgSql {
    client: Client,
    display: String,
}

fn message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

impl PgSql {
    /// Connect to `url` and `LISTEN` for pointer moves.
    pub fn connect(url: &str, password: Option<String>) -> Result<PgSql> {
        let mut config =
            postgres::Config::from_str(url).map_err(|e| Error::Invalid(format!("{url}: not a PostgreSQL URL: {e}")))?;
        if config.get_password().is_some() {
            return Err(Error::Invalid(
                "[fleet] registry: the URL holds a password; remove it and give it in PGPASSWORD or [fleet] password_file (a config file is no place for it)".into(),
            ));
        }
        let display = url.to_string();
        let loopback = config.get_hosts().iter().all(|host| match host {
            postgres::config::Host::Tcp(name) => matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1"),
            #[cfg(unix)]
            postgres::config::Host::Unix(_) => true,
        });
        if !loopback && !url.contains("sslmode=disable") {
            return Err(Error::Invalid(format!(
                "{url}: TLS to PostgreSQL is not supported yet: connect through loopback (an SSH tunnel), or add sslmode=disable to the URL to accept a plaintext connection"
            )));
        }
        if let Some(password) = password {
            config.password(password);
        }
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("shipshape");
        let client = config.connect(NoTls).map_err(|e| Error::Registry {
            registry: display.clone(),
            action: "connecting",
            message: message(&e),
        })?;
        let mut sql = PgSql { client, display };
        sql.batch(&format!("LISTEN {}", super::CHANNEL))?;
        Ok(sql)
    }

    fn error(&self, action: &'static str) -> impl Fn(postgres::Error) -> Error + '_ {
        move |e| Error::Registry { registry: self.display.clone(), action, message: message(&e) }
    }
}

fn params(values: &[Value]) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    values
        .iter()
        .map(|v| -> Box<dyn postgres::types::ToSql + Sync> {
            match v {
                Value::Int(i) => Box::new(*i),
                Value::Text(t) => Box::new(t.clone()),
            }
        })
        .collect()
}

impl Sql for PgSql {
    fn execute(&mut self, sql: &str, values: &[Value]) -> Result<u64> {
        let owned = params(values);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = owned.iter().map(|b| b.as_ref()).collect();
        let display = self.display.clone();
        self.client.execute(sql, &refs).map_err(|e| Error::Registry {
            registry: display,
            action: "writing",
            message: message(&e),
        })
    }

    fn query(&mut self, sql: &str, values: &[Value]) -> Result<Vec<Vec<Value>>> {
        let owned = params(values);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = owned.iter().map(|b| b.as_ref()).collect();
        let display = self.display.clone();
        let rows = self.client.query(sql, &refs).map_err(|e| Error::Registry {
            registry: display,
            action: "reading",
            message: message(&e),
        })?;
        Ok(rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| match *row.columns()[i].type_() {
                        // try_get: a column of a type the registry never selects (void, float…)
                        // reads as empty rather than panicking.
                        Type::INT8 => Value::Int(row.try_get::<_, Option<i64>>(i).ok().flatten().unwrap_or_default()),
                        Type::INT4 => {
                            Value::Int(i64::from(row.try_get::<_, Option<i32>>(i).ok().flatten().unwrap_or_default()))
                        }
                        Type::INT2 => {
                            Value::Int(i64::from(row.try_get::<_, Option<i16>>(i).ok().flatten().unwrap_or_default()))
                        }
                        Type::BOOL => {
                            Value::Int(i64::from(row.try_get::<_, Option<bool>>(i).ok().flatten().unwrap_or_default()))
                        }
                        _ => Value::Text(row.try_get::<_, Option<String>>(i).ok().flatten().unwrap_or_default()),
                    })
                    .collect()
            })
            .collect())
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        let display = self.display.clone();
        self.client.batch_execute(sql).map_err(|e| Error::Registry {
            registry: display,
            action: "migrating",
            message: message(&e),
        })
    }

    fn begin(&mut self) -> Result<()> {
        self.client.batch_execute("BEGIN").map_err(self.error("starting a transaction"))
    }

    fn lock_schema(&mut self) -> Result<()> {
        // One number for shipshape's schema lock; transaction-scoped, so it ends with COMMIT/ROLLBACK.
        self.batch("SELECT pg_advisory_xact_lock(hashtextextended('shipshape schema', 0))")
    }

    fn commit(&mut self) -> Result<()> {
        self.client.batch_execute("COMMIT").map_err(self.error("committing"))
    }

    fn rollback(&mut self) {
        let _ = self.client.batch_execute("ROLLBACK");
    }

    fn notify(&mut self, channel: &str) -> Result<()> {
        self.execute("SELECT pg_notify($1, '')", &[channel.into()]).map(|_| ())
    }

    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let display = self.display.clone();
        let first = self.client.notifications().timeout_iter(timeout).next();
        match first {
            Ok(Some(_)) => {
                // Several moves at once are one wake-up: drop what else is already here.
                let _ = self.client.notifications().iter().count();
                Ok(true)
            }
            Ok(None) if self.client.is_closed() => {
                Err(Error::Registry { registry: display, action: "waiting", message: "the connection closed".into() })
            }
            Ok(None) => Ok(false),
            Err(e) => {
                Err(Error::Registry { registry: display, action: "waiting for notifications", message: message(&e) })
            }
        }
    }

    fn claim(&mut self, name: &str, _holder: &str, _now: i64, _ttl: i64) -> Result<bool> {
        let rows = self.query("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", &[name.into()])?;
        Ok(rows.first().is_some_and(|r| r[0] == Value::Int(1)))
    }

    fn display(&self) -> String {
        self.display.clone()
    }

    fn id_column(&self) -> &'static str {
        "BIGSERIAL PRIMARY KEY"
    }
}
