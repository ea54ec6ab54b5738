//! `shipshape replay`: the whole monitor over historical events in simulated time, in a throw-away
//! in-memory database — every alert it would have raised, when, and whether auto-rollback would
//! have triggered. The tool for tuning thresholds on history.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use crate::error::Result;
use jiff::Timestamp;
use serde::Serialize;
use shipshape_core::config::BaselineSource;
use shipshape_core::infra::clock::Time;
use shipshape_core::layout::Workspace;

use crate::alert::{NotifyReason, Seconds};
use crate::db::Db;
use crate::judge::Severity;
use crate::monitor::{Active, IngestOptions, IngestReport, Monitor, Timeline};
use crate::sinks::Notification;

/// A release in the replay.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayRelease {
    /// `replay-1`, `replay-2`, … in time order.
    pub release_id: String,
    /// Its simulated deploy.
    pub deployed_at: Timestamp,
    /// Baselines it was judged against.
    pub baselines: BTreeMap<String, Option<f64>>,
}

/// What a replay found.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The simulated releases.
    pub releases: Vec<ReplayRelease>,
    /// Where baselines came from.
    pub baseline: BaselineSource,
    /// The events read.
    pub ingest: IngestReport,
    /// Evaluation passes run.
    pub passes: u64,
    /// Simulated period.
    pub from: Option<Timestamp>,
    /// …to.
    pub to: Option<Timestamp>,
    /// Every notification the monitor would have sent, in order.
    pub notifications: Vec<Notification>,
    /// Times auto-rollback's rule would have triggered (release, time), whether or not it is enabled.
    pub auto_rollbacks: Vec<(String, Timestamp)>,
    /// The detector that judged (as `serve` would: the config's detector and `eval_interval`).
    pub detector: &'static str,
    /// Per release and metric: when it first fired after the deploy, and how many alert episodes.
    pub detections: Vec<Detection>,
    /// Alert episodes per 30 days of replayed time — `calibrate`'s false-alarm figure, for what
    /// actually happened (every episode counts: whether a regression caused it is for you to say).
    pub alerts_per_30_days: Option<f64>,
}

/// What one metric did for one replayed release.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    /// The release.
    pub release_id: String,
    /// The metric.
    pub metric: String,
    /// Minutes from the deploy to its first firing (`None`: it never fired).
    pub first_firing_minutes: Option<f64>,
    /// Alert episodes (firings) for this release.
    pub episodes: u64,
}

/// Replay `events` with releases deployed at `release_times`. Baselines: the validation of the
/// workspace's newest manifest (or `baseline = "trailing"`: the events before each deploy).
pub fn replay(
    workspace: Workspace,
    source: &Path,
    events: &mut (dyn BufRead + Send),
    release_times: &[Time],
    baseline: Option<BaselineSource>,
    skip_bad: bool,
) -> Result<ReplayReport> {
    let mut times: Vec<Seconds> = release_times.iter().map(Time::unix_seconds).collect();
    times.sort_unstable();
    let ids: Vec<String> = (1..=times.len()).map(|i| format!("replay-{i}")).collect();
    let timeline = Timeline::from_points(times.iter().copied().zip(ids.iter().cloned()).collect());
    let mut monitor = Monitor::with_db(workspace, Db::in_memory()?);
    let source_kind = baseline.unwrap_or(monitor.config().baseline);
    let now = release_times.first().copied().unwrap_or_else(|| Time::new(Timestamp::UNIX_EPOCH, jiff::tz::Offset::UTC));
    let ingest = monitor.ingest(
        source,
        events,
        &IngestOptions { format: None, skip_bad, timeline: &timeline, now, check_skew: false },
    )?;
    let last_event: Option<Seconds> = monitor.db.last_event()?;
    let validation = match source_kind {
        BaselineSource::Validation => match shipshape_core::pipeline::manifest::newest_path(&monitor.workspace) {
            Ok(path) => {
                let manifest = shipshape_core::infra::paths::RelPath::from_walk(&monitor.workspace.root, &path)
                    .map_err(|rule| crate::error::Error::invalid(&path, rule.to_string()))?;
                Some(monitor.validation_baselines(&manifest)?)
            }
            Err(_) => None, // no manifest yet: the events before each deploy
        },
        BaselineSource::Trailing => None,
    };
    let heightened = i64::from(monitor.config().heightened_hours.0) * 3600;
    let interval = monitor.config().eval_interval.0.seconds().max(1);
    let auto = monitor.config().auto_rollback.clone();
    let mut releases = Vec::new();
    let mut actives = Vec::new();
    for (at, id) in times.iter().zip(&ids) {
        let baselines = match &validation {
            Some(baselines) => baselines.clone(),
            None => monitor.trailing_baselines(*at)?,
        };
        releases.push(ReplayRelease {
            release_id: id.clone(),
            deployed_at: Timestamp::from_second(*at).unwrap_or(Timestamp::UNIX_EPOCH),
            baselines: baselines.clone(),
        });
        actives.push(Active { release_id: id.clone(), deployed_at: *at, heightened_end: at + heightened, baselines });
    }
    let detector = match monitor.config().detector {
        shipshape_core::config::Detector::Window => "window",
        shipshape_core::config::Detector::Sequential => "sequential",
    };
    let mut report = ReplayReport {
        detector,
        detections: Vec::new(),
        alerts_per_30_days: None,
        releases,
        baseline: source_kind,
        ingest,
        passes: 0,
        from: None,
        to: None,
        notifications: Vec::new(),
        auto_rollbacks: Vec::new(),
    };
    let (Some(&start), Some(end)) = (times.first(), last_event) else { return Ok(report) };
    let end = end + interval;
    report.from = Timestamp::from_second(start).ok();
    report.to = Timestamp::from_second(end).ok();
    let mut critical: Vec<(String, Seconds)> = Vec::new();
    let mut at = start + interval;
    while at <= end {
        let index = times.partition_point(|t| *t <= at) - 1;
        let active = &actives[index];
        let now = Time::new(Timestamp::from_second(at).unwrap_or(Timestamp::UNIX_EPOCH), jiff::tz::Offset::UTC);
        let pass = monitor.evaluate_release(Some(active), now)?;
        report.passes += 1;
        for notification in pass.notifications {
            if notification.severity == Severity::Critical
                && matches!(notification.reason, NotifyReason::Firing | NotifyReason::Escalated)
            {
                critical.push((notification.release_id.clone(), at));
                let recent = critical
                    .iter()
                    .filter(|(release, when)| *release == active.release_id && at - when < auto.within.0.seconds())
                    .count();
                let already = report.auto_rollbacks.iter().any(|(release, _)| *release == active.release_id);
                if recent >= auto.critical_firings.0 as usize && !already {
                    report.auto_rollbacks.push((active.release_id.clone(), now.instant()));
                }
            }
            report.notifications.push(notification);
        }
        at += interval;
    }
    // What each metric did for each release, from the notifications.
    let metrics: Vec<String> = crate::policy::policies(monitor.config()).into_iter().map(|p| p.name).collect();
    let mut episodes_total = 0;
    for (index, release) in report.releases.iter().enumerate() {
        let deployed = times[index];
        for metric in &metrics {
            let firings: Vec<&Notification> = report
                .notifications
                .iter()
                .filter(|n| {
                    n.release_id == release.release_id && &n.metric == metric && n.reason == NotifyReason::Firing
                })
                .collect();
            episodes_total += firings.len() as u64;
            let first = firings
                .first()
                .and_then(|n| n.at.parse::<Timestamp>().ok())
                .map(|t| (t.as_second() - deployed) as f64 / 60.0);
            report.detections.push(Detection {
                release_id: release.release_id.clone(),
                metric: metric.clone(),
                first_firing_minutes: first,
                episodes: firings.len() as u64,
            });
        }
    }
    let days = (end - start) as f64 / 86_400.0;
    report.alerts_per_30_days = (days > 0.0).then(|| episodes_total as f64 * 30.0 / days);
    Ok(report)
}
