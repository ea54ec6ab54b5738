//! `shipshape serve`: one process for the post-deploy watch — HTTP ingestion of outcome events, the
//! evaluation scheduler, notification delivery with retries, a JSON API (status, releases, alerts,
//! metric series) and `/metrics` in the Prometheus text format. The dashboard joins it next.
//!
//! Security by default: the caller binds the listener (loopback unless a token file is given), every
//! state-changing request needs `Authorization: Bearer <operator token>` and an `Origin` (when the
//! browser sends one) of this server, and the dashboard's rollback also a CSRF token from the page.
//!
//! An event batch is acknowledged (`200`) only after its transaction committed with
//! `synchronous = FULL`, so neither a graceful shutdown nor a `kill -9` loses an acknowledged event.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use shipshape_core::events::Format;
use shipshape_core::infra::clock::Clock;
use shipshape_core::layout::Workspace;
use shipshape_core::{Error, registry};
use shipshape_monitor::monitor::{IngestOptions, IngestReport, Monitor, Timeline};

mod dashboard;

/// Settings of one server.
pub struct Settings {
    /// Largest request body accepted (bytes); larger gets 413.
    pub max_body: usize,
    /// How often the scheduler evaluates (default: `[monitoring] eval_interval`).
    pub eval_interval: Duration,
    /// How often undelivered notifications are retried.
    pub delivery_interval: Duration,
}

/// Counters for `/metrics`.
#[derive(Default)]
struct Counters {
    ingest_requests: AtomicU64,
    ingest_rejected: AtomicU64,
    events_accepted: AtomicU64,
    events_duplicate: AtomicU64,
    evaluations: AtomicU64,
    evaluation_errors: AtomicU64,
    notifications_delivered: AtomicU64,
    notification_failures: AtomicU64,
}

/// A reply to an event batch: the report, or (HTTP status, message, line).
type IngestReply = Result<IngestReport, (StatusCode, String, Option<usize>)>;

/// One event batch waiting for the writer.
struct IngestJob {
    body: Bytes,
    format: Format,
    reply: tokio::sync::oneshot::Sender<IngestReply>,
}

/// What every handler shares.
pub struct AppState {
    monitor: Arc<Mutex<Monitor>>,
    ingest: Mutex<std::sync::mpsc::Sender<IngestJob>>,
    clock: Arc<dyn Clock>,
    token: String,
    csrf: String,
    counters: Counters,
    root: PathBuf,
    /// Set when the server shuts down (ends the event streams).
    stop: tokio::sync::watch::Sender<bool>,
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
    /// State over an open monitor.
    pub fn new(monitor: Monitor, clock: Arc<dyn Clock>, token: String) -> shipshape_core::Result<Arc<AppState>> {
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
            token,
            csrf: random_hex(24)?,
            counters: Counters::default(),
            root,
            stop: tokio::sync::watch::channel(false).0,
        }))
    }

    pub(crate) fn monitor(&self) -> std::sync::MutexGuard<'_, Monitor> {
        lock(&self.monitor)
    }

    /// One evaluation pass now, then delivery; the pass as JSON.
    pub fn evaluate_now(&self, log: &mut dyn FnMut(&str)) -> shipshape_core::Result<Value> {
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

/// The one writer: takes every batch waiting and stores them in one transaction (group commit: one
/// fsync for all), each batch still all or nothing; then answers each. Ends when the server does.
fn writer(monitor: &Mutex<Monitor>, clock: &dyn Clock, jobs: &std::sync::mpsc::Receiver<IngestJob>) {
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
                        Error::Parse { line, message, .. } => (
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

pub(crate) fn error(status: StatusCode, message: impl Into<String>, extra: Value) -> Response {
    let mut body = json!({ "error": message.into() });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    (status, axum::Json(body)).into_response()
}

/// Constant-time string comparison.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// May this state-changing request proceed? A cross-origin browser request is refused (403), a
/// missing or wrong operator token too (401).
pub(crate) fn check_post(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        let origin = origin.to_str().unwrap_or_default();
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest).trim_end_matches('/');
        if origin_host.is_empty() || origin_host != host {
            return Some(error(
                StatusCode::FORBIDDEN,
                format!("cross-origin request from `{origin}` refused"),
                Value::Null,
            ));
        }
    }
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|given| same(given, &state.token)) {
        None
    } else {
        Some(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong operator token: send `Authorization: Bearer <token>` (the token `shipshape serve` printed at start, or the one in its --token-file)",
            Value::Null,
        ))
    }
}

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {e}"), Value::Null))
}

/// `POST /api/v1/events`: a batch of JSON lines (or CSV with `Content-Type: text/csv`), all or nothing.
async fn post_events(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = check_post(&state, &headers) {
        return refusal;
    }
    state.counters.ingest_requests.fetch_add(1, Ordering::Relaxed);
    let csv =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/csv"));
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = IngestJob { body, format: if csv { Format::Csv } else { Format::JsonLines }, reply };
    let sent = state.ingest.lock().map(|sender| sender.send(job).is_ok()).unwrap_or(false);
    let result = match answer.await {
        Ok(result) if sent => result,
        _ => Err((StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down".to_string(), None)),
    };
    match result {
        Ok(report) => {
            state.counters.events_accepted.fetch_add(report.accepted, Ordering::Relaxed);
            state.counters.events_duplicate.fetch_add(report.duplicates, Ordering::Relaxed);
            (StatusCode::OK, axum::Json(report)).into_response()
        }
        Err((status, message, line)) => {
            state.counters.ingest_rejected.fetch_add(1, Ordering::Relaxed);
            error(status, message, line.map_or(Value::Null, |line| json!({ "line": line })))
        }
    }
}

/// `POST /api/v1/evaluate`: one pass now.
async fn post_evaluate(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = check_post(&state, &headers) {
        return refusal;
    }
    let worker = Arc::clone(&state);
    match blocking(move || worker.evaluate_now(&mut |line| eprintln!("{line}"))).await {
        Err(response) => response,
        Ok(Ok(pass)) => axum::Json(pass).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), Value::Null),
    }
}

fn status_json(state: &AppState) -> shipshape_core::Result<Value> {
    let monitor = state.monitor();
    let now = state.clock.now();
    let active = registry::get_active_release(&monitor.workspace, now)?;
    let (pending, failing) = monitor.db.outbox_backlog()?;
    let firing = monitor.db.alerts(Some("firing"), active.as_ref().map(|a| a.release_id.as_str()), 1000)?;
    let active_json = active.as_ref().map(|info| {
        let remaining = info.heightened_monitoring_end.since(&now).as_secs().max(0);
        json!({
            "release_id": info.release_id.to_string(),
            "manifest": dashboard::manifest_summary(&monitor.workspace, info),
            "deployed_at": info.deployment_timestamp.instant().to_string(),
            "deployed_ago_seconds": now.since(&info.deployment_timestamp).as_secs(),
            "mode": if info.heightened_monitoring_active { "heightened" } else { "normal" },
            "heightened_until": info.heightened_monitoring_end.instant().to_string(),
            "heightened_remaining_seconds": remaining,
            "deployer": info.deployer,
            "environment": info.environment,
        })
    });
    Ok(json!({
        "now": now.instant().to_string(),
        "active_release": active_json,
        "firing_alerts": firing.len(),
        "last_evaluation": monitor.db.meta("last_evaluation")?.and_then(|s| s.parse::<i64>().ok())
            .and_then(|s| jiff::Timestamp::from_second(s).ok()).map(|t| t.to_string()),
        "events_stored": monitor.db.event_count()?,
        "notifications_pending": pending,
        "notifications_failing": failing,
    }))
}

async fn get_status(State(state): State<Arc<AppState>>) -> Response {
    let worker = Arc::clone(&state);
    match blocking(move || status_json(&worker)).await {
        Err(response) => response,
        Ok(Ok(value)) => axum::Json(value).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), Value::Null),
    }
}

async fn get_releases(State(state): State<Arc<AppState>>) -> Response {
    let root = state.root.clone();
    let clock = Arc::clone(&state.clock);
    let result = blocking(move || -> shipshape_core::Result<Value> {
        let workspace = Workspace::open(&root)?;
        let active = registry::get_active_release(&workspace, clock.now())?;
        let history = registry::history(&workspace)?;
        Ok(json!({
            "active": active.map(|a| serde_json::to_value(a).unwrap_or(Value::Null)),
            "history": serde_json::to_value(history).unwrap_or(Value::Null),
        }))
    })
    .await;
    match result {
        Err(response) => response,
        Ok(Ok(value)) => axum::Json(value).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), Value::Null),
    }
}

#[derive(Deserialize)]
struct AlertsQuery {
    state: Option<String>,
    release: Option<String>,
    limit: Option<usize>,
}

async fn get_alerts(State(state): State<Arc<AppState>>, Query(query): Query<AlertsQuery>) -> Response {
    if let Some(s) = &query.state
        && !["pending", "firing", "resolved", "cleared"].contains(&s.as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown state `{s}`: pending, firing, resolved or cleared"),
            Value::Null,
        );
    }
    let worker = Arc::clone(&state);
    let result = blocking(move || {
        worker.monitor().db.alerts(
            query.state.as_deref(),
            query.release.as_deref(),
            query.limit.unwrap_or(100).min(10_000),
        )
    })
    .await;
    match result {
        Err(response) => response,
        Ok(Ok(rows)) => axum::Json(rows).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), Value::Null),
    }
}

/// `/metrics` in the Prometheus text exposition format.
async fn get_metrics(State(state): State<Arc<AppState>>) -> Response {
    let worker = Arc::clone(&state);
    let result = blocking(move || -> shipshape_core::Result<String> {
        let c = &worker.counters;
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"));
        };
        counter("shipshape_ingest_requests_total", "Event batches received.", c.ingest_requests.load(Ordering::Relaxed));
        counter("shipshape_ingest_rejected_total", "Event batches refused.", c.ingest_rejected.load(Ordering::Relaxed));
        counter("shipshape_events_accepted_total", "Events stored.", c.events_accepted.load(Ordering::Relaxed));
        counter("shipshape_events_duplicate_total", "Events already stored.", c.events_duplicate.load(Ordering::Relaxed));
        counter("shipshape_evaluations_total", "Evaluation passes.", c.evaluations.load(Ordering::Relaxed));
        counter("shipshape_evaluation_errors_total", "Failed passes.", c.evaluation_errors.load(Ordering::Relaxed));
        counter(
            "shipshape_notifications_delivered_total",
            "Notifications delivered.",
            c.notifications_delivered.load(Ordering::Relaxed),
        );
        counter(
            "shipshape_notification_failures_total",
            "Failed delivery attempts.",
            c.notification_failures.load(Ordering::Relaxed),
        );
        let monitor = worker.monitor();
        let now = worker.clock.now();
        let (pending, _) = monitor.db.outbox_backlog()?;
        out.push_str(&format!(
            "# HELP shipshape_notifications_pending Notifications waiting for delivery.\n# TYPE shipshape_notifications_pending gauge\nshipshape_notifications_pending {pending}\n"
        ));
        out.push_str(&format!(
            "# HELP shipshape_events_stored Events in the database.\n# TYPE shipshape_events_stored gauge\nshipshape_events_stored {}\n",
            monitor.db.event_count()?
        ));
        if let Some(active) = registry::get_active_release(&monitor.workspace, now)? {
            let release = active.release_id.to_string();
            out.push_str("# HELP shipshape_heightened_monitoring 1 while the active release is in its heightened period.\n# TYPE shipshape_heightened_monitoring gauge\n");
            out.push_str(&format!(
                "shipshape_heightened_monitoring{{release_id=\"{release}\"}} {}\n",
                u8::from(active.heightened_monitoring_active)
            ));
            out.push_str("# HELP shipshape_alerts Alerts of the active release by state.\n# TYPE shipshape_alerts gauge\n");
            for state in ["pending", "firing"] {
                let count = monitor.db.alerts(Some(state), Some(&release), 10_000)?.len();
                out.push_str(&format!("shipshape_alerts{{release_id=\"{release}\",state=\"{state}\"}} {count}\n"));
            }
            out.push_str("# HELP shipshape_metric_value The latest evaluated value of each metric.\n# TYPE shipshape_metric_value gauge\n");
            for policy in &monitor.policies {
                if let Some(point) = monitor.db.series(&release, &policy.name, 1)?.last()
                    && let Some(value) = point.value
                {
                    out.push_str(&format!(
                        "shipshape_metric_value{{release_id=\"{release}\",metric=\"{}\",strategy=\"{}\"}} {value}\n",
                        policy.name, policy.strategy
                    ));
                }
            }
        }
        Ok(out)
    })
    .await;
    match result {
        Err(response) => response,
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), Value::Null),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint: see docs/monitoring.md for the API", Value::Null)
}

/// The router (testable without a socket).
pub fn router(state: Arc<AppState>, max_body: usize) -> Router {
    Router::new()
        .route("/api/v1/events", post(post_events))
        .route("/api/v1/evaluate", post(post_evaluate))
        .route("/api/v1/status", get(get_status))
        .route("/api/v1/releases", get(get_releases))
        .route("/api/v1/alerts", get(get_alerts))
        .route("/api/v1/metrics/{name}", get(dashboard::get_metric))
        .route("/api/v1/alerts/stream", get(dashboard::alerts_stream))
        .route("/api/v1/analytics", get(dashboard::get_analytics))
        .route("/api/v1/checks", get(dashboard::get_checks))
        .route("/api/v1/rollback", post(dashboard::post_rollback))
        .route("/", get(dashboard::page))
        .route("/healthz", get(dashboard::healthz))
        .route("/releases/{id}/manifest", get(dashboard::view_manifest))
        .route("/releases/{id}/bundle", get(dashboard::view_bundle))
        .route("/metrics", get(get_metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Serve on `listener` until `shutdown` completes: requests, the evaluation scheduler and the
/// delivery loop. In-flight requests finish before it returns; then one last delivery round runs.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = {
        let state = Arc::clone(&state);
        let mut stop = stop_rx.clone();
        let every = settings.eval_interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        let worker = Arc::clone(&state);
                        let result = tokio::task::spawn_blocking(move || worker.evaluate_now(&mut |line| eprintln!("{line}"))).await;
                        if let Ok(Err(e)) = result {
                            eprintln!("evaluation failed: {e}");
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
        })
    };
    let delivery = {
        let state = Arc::clone(&state);
        let mut stop = stop_rx.clone();
        let every = settings.delivery_interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        let worker = Arc::clone(&state);
                        let _ = tokio::task::spawn_blocking(move || worker.deliver(&mut |line| eprintln!("{line}"))).await;
                    }
                    _ = stop.changed() => break,
                }
            }
        })
    };
    let app = router(Arc::clone(&state), settings.max_body);
    let streams = Arc::clone(&state);
    let shutdown = async move {
        shutdown.await;
        // Event streams never end by themselves: end them so the graceful shutdown can finish.
        streams.stop.send_replace(true);
    };
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    let _ = delivery.await;
    let _ = tokio::task::spawn_blocking(move || state.deliver(&mut |line| eprintln!("{line}"))).await;
    result
}
