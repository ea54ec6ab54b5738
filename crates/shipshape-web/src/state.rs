//! What every handler shares: the monitor (behind a mutex: SQLite is the truth, not memory), the
//! one ingest writer and its queue, the clock, the operator and CSRF tokens, and the `/metrics`
//! counters.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use shipshape_core::Error;
use shipshape_core::infra::clock::Clock;
use shipshape_monitor::error::Error as MonitorError;
use shipshape_monitor::monitor::Monitor;

use axum::body::Bytes;
use axum::http::StatusCode;
use shipshape_core::events::Format;
use shipshape_monitor::monitor::{IngestOptions, IngestReport, Timeline};

use crate::error::ApiError;

/// Who may read (`GET`) the API and the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAccess {
    /// Anyone who can connect (the default on loopback).
    Open,
    /// A token of any role (`viewer` or above): the default on any other address.
    Token,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) ingest_requests: AtomicU64,
    pub(crate) ingest_rejected: AtomicU64,
    pub(crate) events_accepted: AtomicU64,
    pub(crate) events_duplicate: AtomicU64,
    pub(crate) evaluations: AtomicU64,
    pub(crate) evaluation_errors: AtomicU64,
    pub(crate) notifications_delivered: AtomicU64,
    pub(crate) notification_failures: AtomicU64,
}

/// What every handler shares.
pub struct AppState {
    pub(crate) monitor: Arc<Mutex<Monitor>>,
    pub(crate) ingest: Mutex<std::sync::mpsc::Sender<IngestJob>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) operators: crate::operators::Registry,
    pub(crate) csrf: String,
    pub(crate) counters: Counters,
    pub(crate) root: PathBuf,
    /// Set when the server shuts down (ends the event streams).
    pub(crate) stop: tokio::sync::watch::Sender<bool>,
    /// Who may read.
    pub(crate) read_access: ReadAccess,
}

/// Random hex from the kernel.
pub fn random_hex(bytes: usize) -> shipshape_core::Result<String> {
    let mut buffer = vec![0u8; bytes];
    let mut random = std::fs::File::open("/dev/urandom").map_err(|source| Error::Io {
        path: "/dev/urandom".into(),
        action: "opening",
        source,
    })?;
    std::io::Read::read_exact(&mut random, &mut buffer).map_err(|source| Error::Io {
        path: "/dev/urandom".into(),
        action: "reading",
        source,
    })?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// Read the operator token from `path` (its first line, at least 32 characters).
pub fn read_token_file(path: &Path) -> shipshape_core::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        action: "reading the token file",
        source,
    })?;
    let token = text.lines().next().unwrap_or_default().trim().to_string();
    if token.len() < 32 || token.contains(char::is_whitespace) {
        return Err(Error::invalid(
            path,
            "the token must be one line of at least 32 characters without spaces (e.g. `openssl rand -hex 32`)",
        ));
    }
    Ok(token)
}

impl AppState {
    /// State over an open monitor: operators from the workspace's `release/operators.toml`, plus
    /// `token` (named `serve-token`).
    pub fn new(
        monitor: Monitor,
        clock: Arc<dyn Clock>,
        token: String,
    ) -> shipshape_monitor::error::Result<Arc<AppState>> {
        let path = crate::operators::default_path(&monitor.workspace.root);
        AppState::with_operators(monitor, clock, token, path)
    }

    /// State over an open monitor, its operators read from `operators` (a TOML file); reads open.
    pub fn with_operators(
        monitor: Monitor,
        clock: Arc<dyn Clock>,
        token: String,
        operators: PathBuf,
    ) -> shipshape_monitor::error::Result<Arc<AppState>> {
        AppState::with_access(monitor, clock, token, operators, ReadAccess::Open)
    }

    /// State over an open monitor, its operators read from `operators`, reads as `read_access` says.
    pub fn with_access(
        monitor: Monitor,
        clock: Arc<dyn Clock>,
        token: String,
        operators: PathBuf,
        read_access: ReadAccess,
    ) -> shipshape_monitor::error::Result<Arc<AppState>> {
        let root = monitor.workspace.root.clone();
        let monitor = Arc::new(Mutex::new(monitor));
        let (sender, receiver) = std::sync::mpsc::channel();
        let writer_monitor = Arc::clone(&monitor);
        let writer_clock = Arc::clone(&clock);
        std::thread::spawn(move || writer(&writer_monitor, writer_clock.as_ref(), &receiver));
        Ok(Arc::new(AppState {
            monitor,
            ingest: Mutex::new(sender),
            clock,
            operators: crate::operators::Registry::new(operators, token),
            csrf: random_hex(24)?,
            counters: Counters::default(),
            root,
            stop: tokio::sync::watch::channel(false).0,
            read_access,
        }))
    }

    pub(crate) fn monitor(&self) -> std::sync::MutexGuard<'_, Monitor> {
        lock(&self.monitor)
    }

    /// One evaluation pass now, then delivery; the pass as JSON.
    pub fn evaluate_now(&self, log: &mut dyn FnMut(&str)) -> shipshape_monitor::error::Result<Value> {
        let now = self.clock.now();
        let mut monitor = self.monitor();
        let result = monitor.evaluate(now);
        self.counters.evaluations.fetch_add(1, Ordering::Relaxed);
        let pass = match result {
            Ok(pass) => pass,
            Err(e) => {
                self.counters.evaluation_errors.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        for n in &pass.notifications {
            log(&format!("alert {}: {}", n.alert_id, n.summary));
        }
        if let Some(auto) = &pass.auto_rollback {
            log(&format!("AUTO-ROLLBACK of {}: {} ({})", auto.release_id, auto.outcome, auto.reason));
        }
        drop(monitor);
        self.deliver(log);
        Ok(serde_json::to_value(&pass).unwrap_or(Value::Null))
    }

    /// Deliver due notifications (failures are retried later).
    pub fn deliver(&self, log: &mut dyn FnMut(&str)) {
        let monitor = self.monitor();
        match monitor.deliver(log) {
            Ok(delivery) => {
                self.counters.notifications_delivered.fetch_add(delivery.delivered, Ordering::Relaxed);
                self.counters.notification_failures.fetch_add(delivery.failed, Ordering::Relaxed);
            }
            Err(e) => log(&format!("delivering notifications: {e}")),
        }
    }
}

pub(crate) fn lock(monitor: &Mutex<Monitor>) -> std::sync::MutexGuard<'_, Monitor> {
    // A panic in another handler must not stop the monitor: the data is in SQLite, not in memory.
    monitor.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A reply to an event batch: the report, or (HTTP status, message, line).
pub(crate) type IngestReply = Result<IngestReport, (StatusCode, String, Option<usize>)>;

/// One event batch waiting for the writer.
pub(crate) struct IngestJob {
    pub(crate) body: Bytes,
    pub(crate) format: Format,
    pub(crate) reply: tokio::sync::oneshot::Sender<IngestReply>,
}

/// The one writer: takes every batch waiting and stores them in one transaction (group commit: one
/// fsync for all), each batch still all or nothing; then answers each. Ends when the server does.
pub(crate) fn writer(monitor: &Mutex<Monitor>, clock: &dyn Clock, jobs: &std::sync::mpsc::Receiver<IngestJob>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < 64 {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let batches: Vec<(&[u8], Option<Format>)> = group.iter().map(|j| (&j.body[..], Some(j.format))).collect();
        let outcome = {
            let mut monitor = lock(monitor);
            Timeline::of(&monitor.workspace).and_then(|timeline| {
                let options = IngestOptions {
                    format: None,
                    skip_bad: false,
                    timeline: &timeline,
                    now: clock.now(),
                    check_skew: true,
                };
                monitor.ingest_batches(&batches, &options)
            })
        };
        drop(batches);
        match outcome {
            Ok(results) => {
                for (job, result) in group.into_iter().zip(results) {
                    let reply = result.map_err(|e| match e {
                        MonitorError::Core(Error::Parse { line, message, .. }) => (
                            StatusCode::BAD_REQUEST,
                            format!("line {line}: {message}; nothing from this batch was stored"),
                            Some(line),
                        ),
                        other => (StatusCode::BAD_REQUEST, other.to_string(), None),
                    });
                    let _ = job.reply.send(reply);
                }
            }
            Err(e) => {
                for job in group {
                    let _ = job.reply.send(Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None)));
                }
            }
        }
    }
}

/// Run `f` on the blocking pool (the libraries below are synchronous).
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {e}")))
}
