//! The dead-man's switch (`[monitoring.silence]`): a deployed release that receives no events for
//! `after` inside a trading session is judged as the `events_received` metric — critical at once,
//! through the same alert state machine and sinks as any metric. Pure: the caller brings the last
//! event's minute and the time.

use shipshape_core::config::MonitoringConfig;
use shipshape_metrics::SharpeUnit;

use crate::alert::Seconds;
use crate::evaluate::{Evaluation, MetricPolicy};

/// The name of the dead-man's switch's metric in alerts and notifications.
pub const SILENCE_METRIC: &str = "events_received";

/// Inside a trading session, the minutes since
/// the active release's last event (or since the session opened, or the deploy, whichever is
/// later), judged against `after`, as the `events_received` metric. `None` when the switch is
/// off or no session is open: silence outside the sessions is expected, and leaves the alert
/// as it was.
pub fn judge(
    config: &MonitoringConfig,
    deployed_at: Seconds,
    heightened_end: Seconds,
    last_minute: Option<Seconds>,
    now: Seconds,
    unit: SharpeUnit,
) -> Option<(MetricPolicy, Evaluation)> {
    let silence = &config.silence;
    let after = silence.after.as_ref()?;
    let opened = if silence.sessions.is_empty() {
        Some(deployed_at)
    } else {
        silence.sessions.iter().filter_map(|s| s.opened_before(now)).max()
    };
    let opened = opened?;
    let last = last_minute.map(|minute| minute + 60);
    let quiet_since = [Some(opened), Some(deployed_at), last].into_iter().flatten().max().unwrap_or(now);
    let silent = (now - quiet_since).max(0);
    let limit = after.0.seconds();
    let minutes = |s: Seconds| s as f64 / 60.0;
    let mode = crate::evaluate::mode_at(now, heightened_end);
    let verdict = if silent >= limit {
        crate::judge::Verdict::Breach { drop: minutes(silent), severity: crate::judge::Severity::Critical }
    } else {
        crate::judge::Verdict::Healthy { drop: minutes(silent) }
    };
    let rules = |notify: &shipshape_core::config::ModePolicy| crate::evaluate::ModeRules {
        window: limit,
        rule: crate::judge::Rule {
            kind: crate::judge::DropKind::Absolute,
            threshold: minutes(limit),
            min_samples: 0,
            significance: None,
            critical_multiple: 1.0,
            lower_is_better: true,
            sequential: None,
        },
        cadence: crate::alert::Cadence { consecutive_breaches: 1, repeat_every: notify.notify_every.0.seconds() },
    };
    let policy = MetricPolicy {
        name: SILENCE_METRIC.into(),
        strategy: "*".into(),
        strategies: vec!["*".into()],
        field: None,
        kind: shipshape_metrics::MetricKind::Silence,
        heightened: rules(&config.heightened),
        normal: rules(&config.normal),
    };
    let mut value = shipshape_metrics::MetricKind::Silence.compute(&Default::default(), 0.95, unit);
    value.value = Some(minutes(silent));
    let evaluation = Evaluation { mode, window: (quiet_since, now), value, baseline: Some(0.0), verdict };
    Some((policy, evaluation))
}
