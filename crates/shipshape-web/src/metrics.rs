//! `/metrics` in the Prometheus text exposition format.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use shipshape_core::registry;

use crate::error::ApiError;
use crate::state::AppState;
use crate::state::blocking;

/// `/metrics` in the Prometheus text exposition format.
pub(crate) async fn get_metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let worker = Arc::clone(&state);
    let result = blocking(move || -> shipshape_monitor::error::Result<String> {
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
        fleet_gauges(&worker, &mut out);
        Ok(out)
    })
    .await??;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], result).into_response())
}

/// Per-host gauges of every environment, when the workspace has a `[fleet] registry`: in sync with
/// the desired release, healthy, drift, heartbeat age; and whether the registry answered.
fn fleet_gauges(state: &AppState, out: &mut String) {
    let Ok(workspace) = shipshape_core::layout::Workspace::open(&state.root) else { return };
    let Some(fleet) = workspace.config.fleet.clone() else { return };
    if fleet.registry.is_none() {
        return;
    }
    let now = state.clock.now().unix_seconds();
    let label = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', " ");
    let answer = (|| -> shipshape_fleet::error::Result<String> {
        let Some(mut registry) = shipshape_fleet::registry::Registry::from_config(&fleet, &workspace.root)? else {
            return Ok(String::new());
        };
        let mut text = String::new();
        let gauges = [
            ("shipshape_fleet_host_in_sync", "1 when the host runs its environment's desired release."),
            ("shipshape_fleet_host_healthy", "1 when the host's last report is healthy and fresh."),
            ("shipshape_fleet_host_drift", "1 when files in the host's target differ from its release."),
            ("shipshape_fleet_host_heartbeat_age_seconds", "Seconds since the host's last report."),
        ];
        let mut rows: Vec<[String; 4]> = Vec::new();
        let mut generations = String::new();
        for env in shipshape_fleet::overview::overview(&mut registry, &fleet, &[], now, 0)? {
            if let Some(pointer) = &env.desired {
                generations.push_str(&format!(
                    "shipshape_fleet_pointer_generation{{environment=\"{}\",release_id=\"{}\"}} {}\n",
                    label(&env.environment),
                    label(&pointer.release_id),
                    pointer.generation
                ));
            }
            for host in &env.hosts {
                let labels = format!("environment=\"{}\",host=\"{}\"", label(&env.environment), label(&host.host));
                rows.push([
                    format!("{{{labels}}} {}", u8::from(host.in_sync)),
                    format!("{{{labels}}} {}", u8::from(host.health == "healthy" && !host.stale)),
                    format!("{{{labels}}} {}", u8::from(host.drift)),
                    format!("{{{labels}}} {}", host.heartbeat_age_seconds),
                ]);
            }
        }
        for (i, (name, help)) in gauges.iter().enumerate() {
            text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
            for row in &rows {
                text.push_str(&format!("{name}{}\n", row[i]));
            }
        }
        text.push_str("# HELP shipshape_fleet_pointer_generation Moves of each environment's desired-release pointer.\n# TYPE shipshape_fleet_pointer_generation gauge\n");
        text.push_str(&generations);
        Ok(text)
    })();
    out.push_str("# HELP shipshape_fleet_registry_up 1 when the fleet's registry answered this scrape.\n# TYPE shipshape_fleet_registry_up gauge\n");
    match answer {
        Ok(text) => {
            out.push_str("shipshape_fleet_registry_up 1\n");
            out.push_str(&text);
        }
        Err(_) => out.push_str("shipshape_fleet_registry_up 0\n"),
    }
}
