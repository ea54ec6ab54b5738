//! The fleet's registry: environments and their desired release (a pointer with a generation,
//! moved by compare-and-swap), hosts with what they observe, every pointer move and host event in
//! a history, each release's status per environment (for "last known good"), and host claims.
//!
//! One implementation of the logic ([`Registry`]) over a small SQL surface ([`Sql`]) with two
//! backends, chosen by the URL: PostgreSQL (`postgres://`, [`postgres`]: `LISTEN/NOTIFY` wakes
//! agents, advisory locks claim a host name) and an embedded SQLite file (`sqlite:PATH`,
//! [`sqlite`]: agents poll). The tables are the truth; a notification only says "look again".
//! Migrations are numbered ([`MIGRATIONS`]) and applied in order, each in its own transaction.

mod canary;
pub mod postgres;
pub mod sqlite;

pub use canary::CanaryPointer;

use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};

/// A value crossing the SQL surface: the schema uses only 64-bit integers and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// BIGINT / INTEGER.
    Int(i64),
    /// TEXT.
    Text(String),
}

impl Value {
    fn int(&self) -> i64 {
        match self {
            Value::Int(i) => *i,
            Value::Text(t) => t.parse().unwrap_or_default(),
        }
    }

    fn text(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Text(t) => t.clone(),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v as i64)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

/// What the registry logic needs of a database: statements with `$1`-style parameters, in
/// transactions, plus the backend's way to wake waiters and to claim a name.
pub trait Sql: Send {
    /// Run a statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    /// Run a query; its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>>;
    /// Several statements without parameters (migrations).
    fn batch(&mut self, sql: &str) -> Result<()>;
    /// Begin a transaction (serialisable enough for a compare-and-swap: one writer at a time).
    fn begin(&mut self) -> Result<()>;
    /// Commit it.
    fn commit(&mut self) -> Result<()>;
    /// Inside a transaction: wait for the schema lock, held until the transaction ends (SQLite's
    /// `BEGIN IMMEDIATE` already serialises writers; PostgreSQL takes an advisory lock).
    fn lock_schema(&mut self) -> Result<()> {
        Ok(())
    }
    /// Roll it back (errors ignored: the connection may be gone).
    fn rollback(&mut self);
    /// Inside a transaction: wake waiters on `channel` at commit.
    fn notify(&mut self, channel: &str) -> Result<()>;
    /// Wait up to `timeout` for a notification; `true` when one came (backends without
    /// notifications sleep and say `false`).
    fn wait(&mut self, timeout: Duration) -> Result<bool>;
    /// Claim `name` for this connection's lifetime; `false` when another holds it.
    fn claim(&mut self, name: &str, holder: &str, now: i64, ttl: i64) -> Result<bool>;
    /// The registry as configured, without secrets.
    fn display(&self) -> String;
    /// The column type of an increasing id (`BIGSERIAL PRIMARY KEY`, `INTEGER PRIMARY KEY AUTOINCREMENT`).
    fn id_column(&self) -> &'static str;
}

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]` (`{id}` is the backend's increasing
/// id column). Never edit one that shipped; add.
pub const MIGRATIONS: &[&str] = &[
    // 1: environments and their pointer, hosts, history.
    "CREATE TABLE environments (
        name TEXT PRIMARY KEY,
        generation BIGINT NOT NULL,
        release_id TEXT NOT NULL,
        manifest_sha256 TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        chain TEXT NOT NULL,
        action TEXT NOT NULL,
        moved_by TEXT NOT NULL,
        moved_at BIGINT NOT NULL,
        note TEXT NOT NULL
    );
    CREATE TABLE hosts (
        environment TEXT NOT NULL,
        host TEXT NOT NULL,
        release_id TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        generation BIGINT NOT NULL,
        health TEXT NOT NULL,
        message TEXT NOT NULL,
        drift BIGINT NOT NULL,
        firing_alerts BIGINT NOT NULL,
        running_since BIGINT NOT NULL,
        heartbeat_at BIGINT NOT NULL,
        PRIMARY KEY (environment, host)
    );
    CREATE TABLE history (
        id {id},
        at BIGINT NOT NULL,
        environment TEXT NOT NULL,
        host TEXT NOT NULL,
        kind TEXT NOT NULL,
        release_id TEXT NOT NULL,
        from_release TEXT NOT NULL,
        generation BIGINT NOT NULL,
        by_whom TEXT NOT NULL,
        note TEXT NOT NULL
    );
    CREATE INDEX history_by_environment ON history (environment, id);",
    // 2: each release's status per environment (last known good), host claims.
    "CREATE TABLE release_status (
        environment TEXT NOT NULL,
        release_id TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        status TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (environment, release_id)
    );
    CREATE TABLE claims (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );",
    // 3: an environment's canary (kept when it ends, percent 0, so generations only grow), and the
    // canary generation each host applied.
    "CREATE TABLE canaries (
        environment TEXT PRIMARY KEY,
        release_id TEXT NOT NULL,
        manifest_sha256 TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        chain TEXT NOT NULL,
        steps TEXT NOT NULL,
        percent BIGINT NOT NULL,
        generation BIGINT NOT NULL,
        moved_by TEXT NOT NULL,
        moved_at BIGINT NOT NULL,
        note TEXT NOT NULL
    );
    ALTER TABLE hosts ADD COLUMN canary_generation BIGINT NOT NULL DEFAULT 0;",
];

/// An environment's desired release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pointer {
    /// The environment.
    pub environment: String,
    /// Moves so far (0: never set).
    pub generation: u64,
    /// The desired release.
    pub release_id: String,
    /// Its manifest's hash (what agents fetch and check).
    pub manifest_sha256: String,
    /// Its sequence in its chain.
    pub sequence: u64,
    /// The chain (the environment its manifest was made for).
    pub chain: String,
    /// How it got there: `set`, `promote` or `rollback`.
    pub action: String,
    /// Who moved it.
    pub moved_by: String,
    /// When (unix seconds).
    pub moved_at: i64,
    /// Why.
    pub note: String,
}

/// Where to move a pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The release.
    pub release_id: String,
    /// Its manifest's hash.
    pub manifest_sha256: String,
    /// Its sequence.
    pub sequence: u64,
    /// Its chain.
    pub chain: String,
}

/// A host's report of what it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReport {
    /// The environment it serves.
    pub environment: String,
    /// Its name.
    pub host: String,
    /// The release it runs (empty: none).
    pub release_id: String,
    /// That release's sequence.
    pub sequence: u64,
    /// The pointer generation it last acted on.
    pub generation: u64,
    /// `healthy`, `failed` (a post-deploy check failed, rolled back), `refused` (the desired
    /// release did not verify here), `degraded` (the registry or store unreachable; it keeps
    /// running what it has), `drift` (files changed under it), `applying`.
    pub health: String,
    /// What happened, for people.
    pub message: String,
    /// Files in the target differ from the release.
    pub drift: bool,
    /// Alerts firing for the release on this host.
    pub firing_alerts: u64,
    /// Since when it runs `release_id` (unix seconds).
    pub running_since: i64,
    /// When it reported (unix seconds).
    pub heartbeat_at: i64,
    /// The canary generation (of the environment's canary) it applied: 0 before any.
    pub canary_generation: u64,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEvent {
    /// Its number (increasing).
    pub id: i64,
    /// When (unix seconds).
    pub at: i64,
    /// The environment.
    pub environment: String,
    /// The host, for host events (empty for pointer moves).
    pub host: String,
    /// `set`, `promote`, `rollback` (pointer moves); `applied`, `failed`, `refused`, `drift`,
    /// `repaired`, `degraded` (host events).
    pub kind: String,
    /// The release.
    pub release_id: String,
    /// The release before.
    pub from_release: String,
    /// The pointer generation.
    pub generation: u64,
    /// Who.
    pub by: String,
    /// Why, or what happened.
    pub note: String,
}

/// Who moves a pointer, why, and when (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Who<'a> {
    /// The operator (recorded).
    pub by: &'a str,
    /// Why (recorded).
    pub note: &'a str,
    /// When.
    pub at: i64,
}

/// The registry: the logic over a [`Sql`] backend.
pub struct Registry {
    sql: Box<dyn Sql>,
}

fn pointer(row: &[Value]) -> Pointer {
    Pointer {
        environment: row[0].text(),
        generation: row[1].int() as u64,
        release_id: row[2].text(),
        manifest_sha256: row[3].text(),
        sequence: row[4].int() as u64,
        chain: row[5].text(),
        action: row[6].text(),
        moved_by: row[7].text(),
        moved_at: row[8].int(),
        note: row[9].text(),
    }
}

const POINTER_COLUMNS: &str =
    "name, generation, release_id, manifest_sha256, sequence, chain, action, moved_by, moved_at, note";
const HOST_COLUMNS: &str = "environment, host, release_id, sequence, generation, health, message, drift, firing_alerts, running_since, heartbeat_at, canary_generation";

fn host(row: &[Value]) -> HostReport {
    HostReport {
        environment: row[0].text(),
        host: row[1].text(),
        release_id: row[2].text(),
        sequence: row[3].int() as u64,
        generation: row[4].int() as u64,
        health: row[5].text(),
        message: row[6].text(),
        drift: row[7].int() != 0,
        firing_alerts: row[8].int() as u64,
        running_since: row[9].int(),
        heartbeat_at: row[10].int(),
        canary_generation: row[11].int() as u64,
    }
}

/// What connecting takes beyond the URL: the password (never in the URL) and the CA that signed
/// the PostgreSQL server's certificate (None: the system's CA bundle).
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The password, from `PGPASSWORD` or `[fleet] password_file`.
    pub password: Option<String>,
    /// `[fleet] registry_ca_file`, resolved.
    pub ca_file: Option<std::path::PathBuf>,
}

/// The notification channel agents listen on.
pub const CHANNEL: &str = "shipshape_fleet";

impl Registry {
    /// Open the registry at `url` (`postgres://…` or `sqlite:PATH`, relative to `root`) and bring
    /// its schema up to date.
    pub fn open(url: &str, root: &std::path::Path, access: &Access) -> Result<Registry> {
        let sql: Box<dyn Sql> = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Box::new(postgres::PgSql::connect(url, access)?)
        } else if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            Box::new(sqlite::SqliteSql::open(&root.join(path))?)
        } else {
            return Err(Error::Invalid(format!(
                "{url}: the registry is postgres://user@host:port/database or sqlite:PATH"
            )));
        };
        let mut registry = Registry { sql };
        registry.migrate()?;
        Ok(registry)
    }

    /// The registry `[fleet] registry` names, its password from `PGPASSWORD` or `password_file`
    /// (relative to `root`); `None` when the config names none.
    pub fn from_config(
        fleet: &shipshape_core::config::FleetConfig,
        root: &std::path::Path,
    ) -> Result<Option<Registry>> {
        let Some(url) = fleet.registry.as_deref() else { return Ok(None) };
        let password = match std::env::var("PGPASSWORD") {
            Ok(password) if !password.is_empty() => Some(password),
            _ => match &fleet.password_file {
                Some(file) => {
                    let path = root.join(file);
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        Error::Invalid(format!("{}: reading [fleet] password_file: {e}", path.display()))
                    })?;
                    text.lines().next().map(str::to_string)
                }
                None => None,
            },
        };
        let ca_file = fleet.registry_ca_file.as_ref().map(|file| root.join(file));
        Registry::open(url, root, &Access { password, ca_file }).map(Some)
    }

    /// A registry over `sql` as it is (no migration): for tests of the migrations themselves.
    pub fn over(sql: Box<dyn Sql>) -> Registry {
        Registry { sql }
    }

    /// The registry as configured, without secrets.
    pub fn display(&self) -> String {
        self.sql.display()
    }

    /// The schema version.
    pub fn version(&mut self) -> Result<u32> {
        self.schema(None)
    }

    /// Apply the migrations not applied yet, up to `MIGRATIONS.len()` (or `up_to`); the version after.
    pub fn migrate_to(&mut self, up_to: usize) -> Result<u32> {
        self.schema(Some(up_to))
    }

    /// Read the schema version and, with `up_to`, apply the migrations missing below it — in one
    /// transaction holding the backend's schema lock, so processes opening a fresh registry at
    /// the same moment migrate it once (PostgreSQL's `CREATE TABLE IF NOT EXISTS` alone races).
    fn schema(&mut self, up_to: Option<usize>) -> Result<u32> {
        self.sql.begin()?;
        let result = (|| {
            self.sql.lock_schema()?;
            self.sql.batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )?;
            let rows = self.sql.query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?;
            let mut version = rows.first().map_or(0, |r| r[0].int()) as usize;
            if let Some(up_to) = up_to {
                if version > MIGRATIONS.len() {
                    return Err(Error::Refused(format!(
                        "{}: schema version {version} is newer than this shipshape knows ({}): upgrade shipshape",
                        self.display(),
                        MIGRATIONS.len()
                    )));
                }
                while version < up_to.min(MIGRATIONS.len()) {
                    self.sql.batch(&MIGRATIONS[version].replace("{id}", self.sql.id_column()))?;
                    version += 1;
                    self.sql.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                        &[(version as i64).into(), now_seconds().into()],
                    )?;
                }
            }
            self.sql.commit()?;
            Ok(version as u32)
        })();
        if result.is_err() {
            self.sql.rollback();
        }
        result
    }

    /// Apply every migration.
    pub fn migrate(&mut self) -> Result<u32> {
        self.migrate_to(MIGRATIONS.len())
    }

    /// Every environment with a pointer, by name.
    pub fn pointers(&mut self) -> Result<Vec<Pointer>> {
        let rows = self.sql.query(&format!("SELECT {POINTER_COLUMNS} FROM environments ORDER BY name"), &[])?;
        Ok(rows.iter().map(|r| pointer(r)).collect())
    }

    /// The desired release of `environment`.
    pub fn desired(&mut self, environment: &str) -> Result<Option<Pointer>> {
        let rows = self
            .sql
            .query(&format!("SELECT {POINTER_COLUMNS} FROM environments WHERE name = $1"), &[environment.into()])?;
        Ok(rows.first().map(|r| pointer(r)))
    }

    /// Move `environment`'s pointer to `target` if its generation is still `expected` (0: never
    /// set): compare-and-swap, recorded in the history, agents notified at commit. A lost race is
    /// [`Error::Conflict`] and changes nothing.
    pub fn move_pointer(
        &mut self,
        environment: &str,
        expected: u64,
        target: &Target,
        action: &str,
        who: &Who<'_>,
    ) -> Result<Pointer> {
        self.in_transaction(|r| r.move_pointer_in(environment, expected, target, action, who))
    }

    /// Run `work` in one transaction: committed when it succeeds, rolled back when it fails.
    fn in_transaction<T>(&mut self, work: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.sql.begin()?;
        match work(self) {
            Ok(value) => {
                self.sql.commit()?;
                Ok(value)
            }
            Err(e) => {
                self.sql.rollback();
                Err(e)
            }
        }
    }

    fn move_pointer_in(
        &mut self,
        environment: &str,
        expected: u64,
        target: &Target,
        action: &str,
        who: &Who<'_>,
    ) -> Result<Pointer> {
        let Who { by, note, at: now } = *who;
        let before = self.desired(environment)?;
        let generation = expected + 1;
        let values: Vec<Value> = vec![
            environment.into(),
            generation.into(),
            (&target.release_id).into(),
            (&target.manifest_sha256).into(),
            target.sequence.into(),
            (&target.chain).into(),
            action.into(),
            by.into(),
            now.into(),
            note.into(),
            expected.into(),
        ];
        let changed = if expected == 0 {
            self.sql.execute(
                &format!(
                    "INSERT INTO environments ({POINTER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (name) DO NOTHING"
                ),
                &values[..10],
            )?
        } else {
            self.sql.execute(
                "UPDATE environments SET generation = $2, release_id = $3, manifest_sha256 = $4, sequence = $5,
                   chain = $6, action = $7, moved_by = $8, moved_at = $9, note = $10
                 WHERE name = $1 AND generation = $11",
                &values,
            )?
        };
        if changed != 1 {
            let now_at = self.desired(environment)?;
            return Err(Error::Conflict(format!(
                "{environment}: the pointer moved meanwhile (generation {} by {}, expected {expected}): nothing changed; look again and retry",
                now_at.as_ref().map_or(0, |p| p.generation),
                now_at.as_ref().map_or("nobody", |p| p.moved_by.as_str())
            )));
        }
        let from = before.map(|p| p.release_id).unwrap_or_default();
        self.record(environment, "", action, &target.release_id, &from, generation, by, note, now)?;
        if action == "rollback" && !from.is_empty() && from != target.release_id {
            self.set_status(environment, &from, 0, "rolled_back", now)?;
        }
        self.sql.notify(CHANNEL)?;
        self.desired(environment)?.ok_or_else(|| Error::Conflict(format!("{environment}: the pointer vanished")))
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        environment: &str,
        host: &str,
        kind: &str,
        release: &str,
        from: &str,
        generation: u64,
        by: &str,
        note: &str,
        now: i64,
    ) -> Result<()> {
        self.sql.execute(
            "INSERT INTO history (at, environment, host, kind, release_id, from_release, generation, by_whom, note)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                now.into(),
                environment.into(),
                host.into(),
                kind.into(),
                release.into(),
                from.into(),
                generation.into(),
                by.into(),
                note.into(),
            ],
        )?;
        Ok(())
    }

    /// Record a release's status in an environment (`good`, `failed`, `rolled_back`); a `good`
    /// never overrides `failed` or `rolled_back`.
    pub fn set_status(
        &mut self,
        environment: &str,
        release: &str,
        sequence: u64,
        status: &str,
        now: i64,
    ) -> Result<()> {
        let existing = self.sql.query(
            "SELECT status, sequence FROM release_status WHERE environment = $1 AND release_id = $2",
            &[environment.into(), release.into()],
        )?;
        match existing.first() {
            None => {
                self.sql.execute(
                    "INSERT INTO release_status (environment, release_id, sequence, status, updated_at) VALUES ($1, $2, $3, $4, $5)",
                    &[environment.into(), release.into(), sequence.into(), status.into(), now.into()],
                )?;
            }
            Some(row) if status == "good" && row[0].text() != "good" => {}
            Some(_) => {
                self.sql.execute(
                    "UPDATE release_status SET status = $3, updated_at = $4 WHERE environment = $1 AND release_id = $2",
                    &[environment.into(), release.into(), status.into(), now.into()],
                )?;
            }
        }
        Ok(())
    }

    /// Every release's status in `environment`: (release, sequence, status), newest change first.
    pub fn statuses(&mut self, environment: &str) -> Result<Vec<(String, u64, String)>> {
        let rows = self.sql.query(
            "SELECT release_id, sequence, status FROM release_status WHERE environment = $1 ORDER BY updated_at DESC, sequence DESC",
            &[environment.into()],
        )?;
        Ok(rows.iter().map(|r| (r[0].text(), r[1].int() as u64, r[2].text())).collect())
    }

    /// The environment's last known good release other than the desired one: the most recent
    /// pointer target (by history) whose status is `good`.
    pub fn last_known_good(&mut self, environment: &str) -> Result<Option<String>> {
        let current = self.desired(environment)?.map(|p| p.release_id).unwrap_or_default();
        let rows = self.sql.query(
            "SELECT h.release_id FROM history h JOIN release_status s
               ON s.environment = h.environment AND s.release_id = h.release_id
             WHERE h.environment = $1 AND h.host = '' AND s.status = 'good' AND h.release_id <> $2
             ORDER BY h.id DESC",
            &[environment.into(), current.into()],
        )?;
        Ok(rows.first().map(|r| r[0].text()))
    }

    /// Store a host's report; a change of what it runs or of its health is a history event.
    pub fn report(&mut self, report: &HostReport) -> Result<()> {
        self.in_transaction(|r| r.report_in(report))
    }

    fn report_in(&mut self, report: &HostReport) -> Result<()> {
        let before = self.sql.query(
            &format!("SELECT {HOST_COLUMNS} FROM hosts WHERE environment = $1 AND host = $2"),
            &[(&report.environment).into(), (&report.host).into()],
        )?;
        let before = before.first().map(|r| host(r));
        let values: Vec<Value> = vec![
            (&report.environment).into(),
            (&report.host).into(),
            (&report.release_id).into(),
            report.sequence.into(),
            report.generation.into(),
            (&report.health).into(),
            (&report.message).into(),
            i64::from(report.drift).into(),
            report.firing_alerts.into(),
            report.running_since.into(),
            report.heartbeat_at.into(),
            report.canary_generation.into(),
        ];
        self.sql.execute(
                &format!(
                    "INSERT INTO hosts ({HOST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT (environment, host) DO UPDATE SET release_id = $3, sequence = $4, generation = $5,
                       health = $6, message = $7, drift = $8, firing_alerts = $9, running_since = $10, heartbeat_at = $11,
                       canary_generation = $12"
                ),
                &values,
            )?;
        let changed = before
            .as_ref()
            .is_none_or(|b| b.release_id != report.release_id || b.health != report.health || b.drift != report.drift);
        if changed {
            let kind = match (report.health.as_str(), report.drift) {
                (_, true) => "drift",
                ("healthy", _) if before.as_ref().is_some_and(|b| b.drift) => "repaired",
                ("healthy", _) => "applied",
                (other, _) => other,
            };
            let from = before.map(|b| b.release_id).unwrap_or_default();
            self.record(
                &report.environment,
                &report.host,
                kind,
                &report.release_id,
                &from,
                report.generation,
                &report.host,
                &report.message,
                report.heartbeat_at,
            )?;
        }
        if !report.release_id.is_empty() {
            match report.health.as_str() {
                "healthy" if report.firing_alerts == 0 && !report.drift => self.set_status(
                    &report.environment,
                    &report.release_id,
                    report.sequence,
                    "good",
                    report.heartbeat_at,
                )?,
                _ => {}
            }
        }
        Ok(())
    }

    /// A failure of `release` on `host` (a post-deploy check, an automatic rollback): the release
    /// is `failed` in the environment, and the event recorded.
    pub fn release_failed(&mut self, environment: &str, release: &str, sequence: u64, now: i64) -> Result<()> {
        self.set_status(environment, release, sequence, "failed", now)
    }

    /// The hosts of `environment` (every environment when `None`), by environment and name.
    pub fn hosts(&mut self, environment: Option<&str>) -> Result<Vec<HostReport>> {
        let rows = match environment {
            Some(env) => self.sql.query(
                &format!("SELECT {HOST_COLUMNS} FROM hosts WHERE environment = $1 ORDER BY environment, host"),
                &[env.into()],
            )?,
            None => self.sql.query(&format!("SELECT {HOST_COLUMNS} FROM hosts ORDER BY environment, host"), &[])?,
        };
        Ok(rows.iter().map(|r| host(r)).collect())
    }

    /// The newest `limit` history events (of `environment` when given), newest first.
    pub fn history(&mut self, environment: Option<&str>, limit: usize) -> Result<Vec<HistoryEvent>> {
        let columns = "id, at, environment, host, kind, release_id, from_release, generation, by_whom, note";
        let rows = match environment {
            Some(env) => self.sql.query(
                &format!("SELECT {columns} FROM history WHERE environment = $1 ORDER BY id DESC LIMIT $2"),
                &[env.into(), (limit as i64).into()],
            )?,
            None => self
                .sql
                .query(&format!("SELECT {columns} FROM history ORDER BY id DESC LIMIT $1"), &[(limit as i64).into()])?,
        };
        Ok(rows
            .iter()
            .map(|r| HistoryEvent {
                id: r[0].int(),
                at: r[1].int(),
                environment: r[2].text(),
                host: r[3].text(),
                kind: r[4].text(),
                release_id: r[5].text(),
                from_release: r[6].text(),
                generation: r[7].int() as u64,
                by: r[8].text(),
                note: r[9].text(),
            })
            .collect())
    }

    /// Claim a host name in an environment for this process: `false` when another live agent has it.
    pub fn claim_host(&mut self, environment: &str, host: &str, holder: &str, now: i64, ttl: i64) -> Result<bool> {
        self.sql.claim(&format!("host:{environment}:{host}"), holder, now, ttl)
    }

    /// Wait up to `timeout` for a pointer move (PostgreSQL); `true` when notified.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        self.sql.wait(timeout)
    }
}

/// Unix seconds now (migration bookkeeping only; everything else takes the injected clock).
fn now_seconds() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_both_ways() {
        assert_eq!(Value::from(7u64).int(), 7);
        assert_eq!(Value::from("x").text(), "x");
        assert_eq!(Value::Int(3).text(), "3");
    }
}
