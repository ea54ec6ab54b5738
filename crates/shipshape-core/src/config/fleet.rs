//! `[fleet]`: several hosts sharing a remote store (an S3-compatible bucket or a shared directory)
//! and a registry (PostgreSQL, or an embedded SQLite file), with a pull agent on each host. Absent,
//! shipshape is the single-machine tool it always was.

use serde::{Deserialize, Serialize};

use super::values::{PositiveDuration, Slug};
use crate::infra::clock::Duration;

/// `[fleet]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// The registry: `postgres://user@host:port/db` (the password from `PGPASSWORD` or a
    /// `password_file`, never in this file), or `sqlite:PATH` (relative to the workspace).
    pub registry: Option<String>,
    /// A file holding the registry's password (its first line).
    pub password_file: Option<String>,
    /// The CA certificate(s) (PEM) that signed the PostgreSQL server's certificate, for an
    /// internal CA (default: the system's CA bundle). Relative to the workspace.
    pub registry_ca_file: Option<String>,
    /// The remote store: `s3://bucket/prefix`, `file:///dir`, or a directory path (relative to the
    /// workspace). S3 credentials come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub store: Option<String>,
    /// S3 connection settings.
    #[serde(default)]
    pub s3: S3Config,
    /// The agent's timer: it reconciles at least this often (and at once on a registry notification).
    #[serde(default = "default_interval")]
    pub interval: PositiveDuration,
    /// A host whose last report is older than this is `stale` (not healthy) in status and promotion.
    #[serde(default = "default_heartbeat_timeout")]
    pub heartbeat_timeout: PositiveDuration,
    /// `[[fleet.environments]]`: where releases run, in promotion order.
    #[serde(default)]
    pub environments: Vec<EnvironmentConfig>,
}

fn default_interval() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(30))
}

fn default_heartbeat_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(120))
}

/// `[fleet.s3]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The endpoint (`http://127.0.0.1:8333` for a local SeaweedFS or MinIO); default AWS.
    pub endpoint: Option<String>,
    /// The region (default `us-east-1`).
    pub region: Option<String>,
    /// Allow plain `http://` endpoints (loopback and tests); refused otherwise.
    #[serde(default)]
    pub allow_http: bool,
}

/// `[[fleet.environments]]`: one place releases run, and what it takes to promote into it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// Its name (`staging`, `production`).
    pub name: Slug,
    /// A release must have run in this environment before it is promoted here.
    pub requires: Option<Slug>,
    /// … for at least this long, every host healthy and no alert firing (default 1h).
    #[serde(default = "default_soak")]
    pub soak: PositiveDuration,
    /// Agents repair drift (files changed on the host) by re-applying the release; otherwise they
    /// only report it.
    #[serde(default)]
    pub repair_drift: bool,
}

fn default_soak() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(3600))
}

impl FleetConfig {
    /// The environment named `name`.
    pub fn environment(&self, name: &str) -> Option<&EnvironmentConfig> {
        self.environments.iter().find(|e| e.name.0 == name)
    }

    /// Problems a parsed `[fleet]` can still have: a requirement naming no environment, names twice.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, env) in self.environments.iter().enumerate() {
            if self.environments[..i].iter().any(|e| e.name == env.name) {
                out.push(format!("fleet.environments[{i}].name: `{}` is named twice", env.name.0));
            }
            if let Some(required) = &env.requires {
                if required == &env.name {
                    out.push(format!("fleet.environments[{i}].requires: `{}` cannot require itself", env.name.0));
                } else if self.environment(&required.0).is_none() {
                    out.push(format!(
                        "fleet.environments[{i}].requires: no environment `{}` (add a [[fleet.environments]] for it)",
                        required.0
                    ));
                }
            }
        }
        if let Some(endpoint) = &self.s3.endpoint
            && endpoint.starts_with("http://")
            && !self.s3.allow_http
        {
            out.push(format!("fleet.s3.endpoint: `{endpoint}` is plain HTTP: use https://, or set allow_http = true (loopback, tests)"));
        }
        out
    }
}
