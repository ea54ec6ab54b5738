//! The PostgreSQL registry (the `postgres` crate, synchronous over tokio-postgres): agents `LISTEN`
//! on [`super::CHANNEL`] and a pointer move `NOTIFY`s at commit; a host name is claimed with a
//! session advisory lock, released when the agent's connection ends.
//!
//! The password never sits in `shipshape.toml`: a URL with one is refused; it comes from
//! `PGPASSWORD` or `[fleet] password_file`.
//!
//! TLS (rustls): a registry anywhere but loopback is reached over TLS whose certificate chain and
//! host name are verified — against `[fleet] registry_ca_file` when given (an internal CA), else
//! the system's CA bundle — unless the URL says `sslmode=disable` explicitly. `sslmode=require`
//! asks for the same verified TLS on loopback too; libpq's unverified `require` does not exist
//! here. Loopback without `sslmode` connects in plain text (the socket never leaves the host).

use std::str::FromStr as _;
use std::time::Duration;

use postgres::config::SslMode;
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
    pub fn connect(url: &str, access: &super::Access) -> Result<PgSql> {
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
        // The default mode is `prefer` (TLS if the server offers it, silently plain text if not):
        // never used here. Off loopback it becomes verified TLS; on loopback, plain text.
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => false,
            SslMode::Require => true,
            _ => !loopback,
        };
        if let Some(password) = access.password.clone() {
            config.password(password);
        }
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("shipshape");
        let connected = if tls {
            config.ssl_mode(SslMode::Require);
            config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(url, access.ca_file.as_deref())?))
        } else {
            config.connect(NoTls)
        };
        let client = connected.map_err(|e| Error::Registry {
            registry: display.clone(),
            action: if tls { "connecting over verified TLS" } else { "connecting" },
            message: message(&e),
        })?;
        let mut sql = PgSql { client, display };
        sql.batch(&format!("LISTEN {}", super::CHANNEL))?;
        Ok(sql)
    }

    /// The connection is encrypted (for status and tests).
    pub fn encrypted(&mut self) -> Result<bool> {
        let rows = self.query("SELECT ssl::int FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])?;
        Ok(rows.first().is_some_and(|r| r[0].int() == 1))
    }

    fn error(&self, action: &'static str) -> impl Fn(postgres::Error) -> Error + '_ {
        move |e| Error::Registry { registry: self.display.clone(), action, message: message(&e) }
    }
}

/// A rustls client configuration trusting `ca_file` (PEM, every certificate in it) or, without
/// one, the system's CA bundle.
fn tls_config(url: &str, ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| Error::Invalid(format!("{}: reading [fleet] registry_ca_file: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(Error::Invalid(format!(
                    "{}: [fleet] registry_ca_file holds no PEM certificate",
                    path.display()
                )));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    Error::Invalid(format!(
                        "{}: [fleet] registry_ca_file: a certificate rustls refuses: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(Error::Invalid(format!(
                    "{url}: no CA certificate in the system bundle to verify the registry with: install ca-certificates, or set [fleet] registry_ca_file"
                )));
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
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
