//! Notification sinks: the log, a JSON-lines file, and over HTTPS (or HTTP) a generic JSON
//! webhook, Slack, Microsoft Teams, PagerDuty (Events API v2) and Prometheus Alertmanager
//! (`POST /api/v2/alerts`).
//!
//! Every notification is first written to the database's outbox, in the same transaction as the
//! alert transition that caused it; delivery happens afterwards, per sink, and a failing sink is
//! retried with exponential backoff (10 s, 20 s, 40 s, … at most an hour) without ever blocking
//! evaluation or losing the record.

mod http;
pub mod payload;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::error::Result;
use serde::{Deserialize, Serialize};
use shipshape_core::config::SinkConfig;

use crate::alert::{NotifyReason, Seconds};
use crate::db::Db;
use crate::evaluate::Mode;
use crate::judge::Severity;

/// One notification, as stored in the outbox and sent to webhooks and JSON-lines files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Why it is sent: `firing`, `repeat`, `escalated` or `resolved`.
    pub reason: NotifyReason,
    /// The alert episode.
    pub alert_id: i64,
    /// `firing` or `resolved`.
    pub status: String,
    /// `warning` or `critical`.
    pub severity: Severity,
    /// The release judged.
    pub release_id: String,
    /// Its environment.
    pub environment: String,
    /// `heightened` or `normal`.
    pub mode: Mode,
    /// The strategy whose metric breached.
    pub strategy: String,
    /// The metric, as `[monitoring]` names it (`intraday_hit_ratio`, …).
    pub metric: String,
    /// The metric's value.
    pub value: Option<f64>,
    /// Its baseline.
    pub baseline: Option<f64>,
    /// The drop (relative for ratios, absolute for Sharpe).
    pub drop: Option<f64>,
    /// The threshold it crossed.
    pub threshold: f64,
    /// Samples in the window.
    pub samples: u64,
    /// Window start (RFC 3339).
    pub window_from: String,
    /// Window end.
    pub window_to: String,
    /// When the alert started firing.
    pub started_at: String,
    /// When this notification was made.
    pub at: String,
    /// Until when Alertmanager should consider it active without hearing from us again.
    pub ends_at: String,
    /// One line for people.
    pub summary: String,
}

/// What one delivery round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Notifications delivered.
    pub delivered: u64,
    /// Attempts that failed (to be retried).
    pub failed: u64,
}

/// The retry delay after `attempts` failures.
pub fn backoff(attempts: i64) -> Seconds {
    (10_i64 << attempts.clamp(0, 9)).min(3600)
}

/// HTTP clients built during one delivery round, by sink name (each holds its TLS setup).
type Clients = HashMap<String, reqwest::blocking::Client>;

fn send(
    sink: &SinkConfig,
    root: &Path,
    payload: &str,
    clients: &mut Clients,
    log: &mut dyn FnMut(&str),
) -> std::result::Result<(), String> {
    let name = sink.name();
    let notification = || serde_json::from_str::<Notification>(payload).map_err(|e| format!("{name}: {e}"));
    let mut client = |ca_file: Option<&str>, timeout: &shipshape_core::config::PositiveDuration| {
        if let Some(client) = clients.get(&name) {
            return Ok(client.clone());
        }
        let client = http::client(root, ca_file, timeout_of(timeout)).map_err(|e| format!("{name}: {e}"))?;
        clients.insert(name.clone(), client.clone());
        Ok::<_, String>(client)
    };
    let url_of = |s: &shipshape_core::config::HttpSink| {
        http::secret(root, s.url.as_deref(), s.url_env.as_deref(), s.url_file.as_deref(), &format!("{name}: the URL"))
    };
    match sink {
        SinkConfig::Log => {
            let summary = serde_json::from_str::<Notification>(payload)
                .map(|n| format!("alert {} {}: {}", n.alert_id, n.reason_word(), n.summary))
                .unwrap_or_else(|_| payload.to_string());
            log(&summary);
            Ok(())
        }
        SinkConfig::Jsonl { path } => {
            let path = root.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            file.write_all(format!("{payload}\n").as_bytes())
                .and_then(|()| file.sync_data())
                .map_err(|e| format!("{}: {e}", path.display()))
        }
        SinkConfig::Webhook(s) => {
            http::post(&client(s.ca_file.as_deref(), &s.timeout)?, &url_of(s)?, &name, payload.to_string())
        }
        SinkConfig::Slack(s) => {
            let body = payload::slack(&notification()?).to_string();
            http::post(&client(s.ca_file.as_deref(), &s.timeout)?, &url_of(s)?, &name, body)
        }
        SinkConfig::Teams(s) => {
            let body = payload::teams(&notification()?).to_string();
            http::post(&client(s.ca_file.as_deref(), &s.timeout)?, &url_of(s)?, &name, body)
        }
        SinkConfig::Pagerduty(s) => {
            let key = http::secret(
                root,
                None,
                s.routing_key_env.as_deref(),
                s.routing_key_file.as_deref(),
                &format!("{name}: the routing key"),
            )?;
            let body = payload::pagerduty(&notification()?, &key).to_string();
            http::post(&client(s.ca_file.as_deref(), &s.timeout)?, &s.url, &name, body)
        }
        SinkConfig::Alertmanager(s) => {
            let base = url_of(s)?;
            let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
            let body = payload::alertmanager(&notification()?).to_string();
            http::post(&client(s.ca_file.as_deref(), &s.timeout)?, &url, &name, body)
        }
    }
}

fn timeout_of(timeout: &shipshape_core::config::PositiveDuration) -> Duration {
    Duration::from_secs(timeout.0.seconds().max(1) as u64)
}

impl Notification {
    pub(crate) fn reason_word(&self) -> &'static str {
        match self.reason {
            NotifyReason::Firing => "FIRING",
            NotifyReason::Repeat => "STILL FIRING",
            NotifyReason::Escalated => "ESCALATED",
            NotifyReason::Resolved => "RESOLVED",
            NotifyReason::AutoRollbackFailed => "AUTO-ROLLBACK FAILED",
        }
    }
}

/// Deliver what is due at `wall_now` (real time, not the monitor's clock) to the configured sinks.
/// `root` anchors JSON-lines paths; `log` receives log-sink lines and delivery failures.
pub fn deliver(
    db: &Db,
    sinks: &[SinkConfig],
    root: &Path,
    wall_now: Seconds,
    log: &mut dyn FnMut(&str),
) -> Result<Delivery> {
    let mut delivery = Delivery::default();
    let mut clients = Clients::new();
    loop {
        let due = db.due_notifications(wall_now, 256)?;
        if due.is_empty() {
            return Ok(delivery);
        }
        for row in &due {
            let result = match sinks.iter().find(|s| s.name() == row.sink) {
                Some(sink) => send(sink, root, &row.payload, &mut clients, log),
                None => Err(format!("sink `{}` is no longer configured", row.sink)),
            };
            match result {
                Ok(()) => {
                    db.record_delivery(row.id, wall_now, None)?;
                    delivery.delivered += 1;
                }
                Err(message) => {
                    log(&format!(
                        "notification {} to {} failed (attempt {}): {message}",
                        row.id,
                        row.sink,
                        row.attempts + 1
                    ));
                    db.record_delivery(row.id, wall_now, Some((&message, wall_now + backoff(row.attempts))))?;
                    delivery.failed += 1;
                }
            }
        }
        if delivery.failed > 0 || due.len() < 256 {
            return Ok(delivery);
        }
    }
}

/// The wall clock in unix seconds.
pub fn wall_seconds() -> Seconds {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as Seconds).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_an_hour() {
        assert_eq!([0, 1, 2, 3].map(backoff), [10, 20, 40, 80]);
        assert_eq!(backoff(20), 3600);
    }
}
