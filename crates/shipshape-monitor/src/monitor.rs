//! The monitor: ingestion, one evaluation pass, notifications and auto-rollback over the database,
//! for the active release of a workspace. `shipshape ingest`, `evaluate`, `alerts` and `serve` are
//! thin shells over this.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::Path;

use jiff::Timestamp;
use serde::Serialize;
use shipshape_core::config::{BaselineSource, MonitoringConfig};
use shipshape_core::deploy;
use shipshape_core::events::{BadLines, Format, REPORTED_SKIPS, next_line};
use shipshape_core::infra::clock::Time;
use shipshape_core::infra::hash::NoProgress;
use shipshape_core::infra::paths::RelPath;
use shipshape_core::layout::Workspace;
use shipshape_core::model::registry::ReleaseInfo;
use shipshape_core::registry::{self};

use crate::error::{Error, Result};
use shipshape_metrics::SharpeUnit;
use shipshape_metrics::event::{CsvHeader, EventError, EventRef, parse_json_line};

use crate::alert::{self, Effect, NotifyReason, Seconds, State};
use crate::db::alerts::Measured;
use crate::db::events::{Attribution, Batch, Batcher, IngestCounts};
use crate::db::{Db, NewEvent, content_id};
use crate::evaluate::{Evaluation, MetricPolicy, evaluate_with, window_at};
use crate::judge::Severity;
use crate::sinks::{self, Delivery, Notification};

/// Which release was active when: every activation (deploy, rollback) in the registry's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline(Vec<(Seconds, String)>);

impl Timeline {
    /// From the registry of `workspace`.
    pub fn of(workspace: &Workspace) -> Result<Timeline> {
        let mut points: Vec<(Seconds, String)> = registry::activations(workspace)?
            .into_iter()
            .map(|(at, release)| (at.unix_seconds(), release.to_string()))
            .collect();
        points.sort_by_key(|(at, _)| *at);
        Ok(Timeline(points))
    }

    /// From explicit `(time, release)` activations.
    pub fn from_points(mut points: Vec<(Seconds, String)>) -> Timeline {
        points.sort_by_key(|(at, _)| *at);
        Timeline(points)
    }

    /// The release active at `at`.
    pub fn at(&self, at: Seconds) -> Option<&str> {
        let index = self.0.partition_point(|(t, _)| *t <= at);
        index.checked_sub(1).map(|i| self.0[i].1.as_str())
    }
}

/// What an ingest did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    /// Lines read (not counting a CSV header or blank lines).
    pub lines: u64,
    /// Events stored.
    pub accepted: u64,
    /// Events already stored (same id): ignored.
    pub duplicates: u64,
    /// Bad lines skipped (`--skip-bad` only).
    pub skipped: u64,
    /// Events from before any deploy, naming no release.
    pub unattributed: u64,
    /// Events older than the last evaluation (they count from the next one).
    pub late: u64,
    /// Events of strategies no policy watches, by strategy (stored, not evaluated).
    pub unknown_strategies: BTreeMap<String, u64>,
    /// Events older than the raw events `shipshape gc` pruned: not stored.
    pub expired: u64,
    /// The first skipped lines, for the report.
    pub skipped_examples: Vec<String>,
}

/// How to ingest.
#[derive(Debug, Clone, Copy)]
pub struct IngestOptions<'a> {
    /// JSON lines or CSV; `None`: from the first line.
    pub format: Option<Format>,
    /// Skip bad lines (reported) instead of refusing the whole input.
    pub skip_bad: bool,
    /// Which release was active when (attribution of events that name none).
    pub timeline: &'a Timeline,
    /// The monitor's clock (recorded as the receive time; the clock-skew check).
    pub now: Time,
    /// Refuse events from the future (off for replays of history).
    pub check_skew: bool,
}

pub use crate::silence::SILENCE_METRIC;

/// The release being judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Active {
    /// Its id.
    pub release_id: String,
    /// Its (latest) deploy: windows never reach before it.
    pub deployed_at: Seconds,
    /// End of its heightened monitoring.
    pub heightened_end: Seconds,
    /// Each metric's baseline.
    pub baselines: BTreeMap<String, Option<f64>>,
}

/// One metric in one pass.
#[derive(Debug, Clone, Serialize)]
pub struct MetricReport {
    /// Metric name.
    pub metric: String,
    /// The strategy the metric is computed over.
    pub strategy: String,
    /// The evaluation.
    #[serde(flatten)]
    pub evaluation: Evaluation,
    /// The threshold of the mode.
    pub threshold: f64,
    /// The alert state after this pass.
    pub state: State,
    /// The alert episode, when one is open.
    pub alert_id: Option<i64>,
}

/// One evaluation pass.
#[derive(Debug, Clone, Serialize)]
pub struct Pass {
    /// When (the monitor's clock).
    pub at: Timestamp,
    /// The release judged (`None`: nothing deployed).
    pub release_id: Option<String>,
    /// Its deploy.
    pub deployed_at: Option<Timestamp>,
    /// Heightened or normal.
    pub mode: Option<crate::evaluate::Mode>,
    /// End of heightened monitoring.
    pub heightened_until: Option<Timestamp>,
    /// Each metric.
    pub metrics: Vec<MetricReport>,
    /// Notifications queued.
    pub notifications: Vec<Notification>,
    /// The automatic rollback this pass started, if any.
    pub auto_rollback: Option<AutoRollback>,
}

/// An automatic rollback.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AutoRollback {
    /// The release rolled back.
    pub release_id: String,
    /// Why (the critical alerts).
    pub reason: String,
    /// `rolled back to X` or `failed: …`.
    pub outcome: String,
}

/// The monitor of one workspace.
pub struct Monitor {
    /// The workspace.
    pub workspace: Workspace,
    /// Its database.
    pub db: Db,
    /// The metrics watched.
    pub policies: Vec<MetricPolicy>,
    config: MonitoringConfig,
    unit: SharpeUnit,
    baselines: HashMap<String, BTreeMap<String, Option<f64>>>,
}

fn ts(seconds: Seconds) -> String {
    Timestamp::from_second(seconds).map(|t| t.to_string()).unwrap_or_else(|_| seconds.to_string())
}

/// A notification's one-line summary.
fn summary(measured: &Measured<'_>, resolved: bool, severity: Severity) -> String {
    format!(
        "{} {} {} ({} mode): {} vs baseline {} (drop {}, threshold {}, {} samples) for release {}",
        measured.metric,
        if resolved { "recovered" } else { severity.as_str() },
        if resolved { "" } else { "drop" },
        measured.mode,
        measured.value.map_or("n/a".into(), |v| format!("{v:.4}")),
        measured.baseline.map_or("n/a".into(), |v| format!("{v:.4}")),
        measured.drop.map_or("n/a".into(), |d| format!("{d:.4}")),
        measured.threshold,
        measured.samples,
        measured.release
    )
    .replace("  ", " ")
}

impl Monitor {
    /// Open the monitor of `workspace` (creating its database).
    pub fn open(workspace: Workspace) -> Result<Monitor> {
        let db = Db::open(&workspace.root.join(crate::db::DB_PATH))?;
        Ok(Self::with_db(workspace, db))
    }

    /// The monitor of `workspace` over `db`.
    pub fn with_db(workspace: Workspace, db: Db) -> Monitor {
        let config = workspace.config.monitoring.clone();
        let unit = workspace
            .config
            .backtest
            .as_ref()
            .and_then(|b| b.sharpe_periods)
            .map_or(SharpeUnit::PerTrade, |p| SharpeUnit::Annualised(p.0));
        Monitor { policies: crate::policy::policies(&config), workspace, db, config, unit, baselines: HashMap::new() }
    }

    /// The monitoring configuration.
    pub fn config(&self) -> &MonitoringConfig {
        &self.config
    }

    /// The unit Sharpe ratios are stated in (the backtest's).
    pub fn unit(&self) -> SharpeUnit {
        self.unit
    }

    /// Ingest events from `reader` (JSON lines or CSV; `source` names it in errors). All or nothing:
    /// a bad line is an error naming `source:line` and nothing is stored, unless `skip_bad`.
    pub fn ingest(
        &mut self,
        source: &Path,
        reader: &mut (dyn BufRead + Send),
        options: &IngestOptions<'_>,
    ) -> Result<IngestReport> {
        let context = self.read_context(options)?;
        let mut ingest = self.db.ingest(options.now.unix_seconds())?;
        // Two threads: this one stores batches while a reader parses, checks and attributes the
        // next ones (parsing is about a third of an ingest). At most two batches wait between them.
        let (mut report, counts) = std::thread::scope(|scope| -> Result<(IngestReport, IngestCounts)> {
            let mut batcher = ingest.batcher();
            let (sender, receiver) = std::sync::mpsc::sync_channel::<Batch>(2);
            let context = &context;
            let reader = std::thread::Builder::new()
                .name("ingest-reader".into())
                .spawn_scoped(scope, move || -> Result<(IngestReport, Batcher)> {
                    let mut report = IngestReport::default();
                    read_events(source, reader, options, context, &mut report, &mut |event| {
                        match batcher.add(event) {
                            // The writer stopped (its error is the one reported).
                            Some(batch) => sender.send(batch).map_err(|_| Error::invalid(source, "the ingest stopped")),
                            None => Ok(()),
                        }
                    })?;
                    Ok((report, batcher))
                })
                .map_err(|e| Error::io(source, "starting the reader thread", e))?;
            for batch in receiver.iter() {
                ingest.store(batch)?;
            }
            let (report, batcher) = match reader.join() {
                Ok(result) => result?,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            Ok((report, ingest.commit_with(batcher)?))
        })?;
        report.accepted = counts.accepted;
        report.duplicates = counts.duplicates;
        report.unattributed = counts.unattributed;
        report.late = counts.late;
        report.expired = counts.expired;
        report.unknown_strategies = counts.unknown_strategies;
        Ok(report)
    }

    /// Ingest several batches (HTTP requests) in one transaction — one fsync for all of them — each
    /// batch still all or nothing: every batch is checked first, and a bad one is refused alone.
    /// The outer error is a failure of the whole transaction.
    pub fn ingest_batches(
        &mut self,
        batches: &[(&[u8], Option<Format>)],
        options: &IngestOptions<'_>,
    ) -> Result<Vec<Result<IngestReport>>> {
        let context = self.read_context(options)?;
        let source = Path::new("request body");
        let mut results: Vec<Result<IngestReport>> = Vec::with_capacity(batches.len());
        for (body, format) in batches {
            let options = IngestOptions { format: *format, skip_bad: false, ..*options };
            let mut report = IngestReport::default();
            results.push(
                read_events(source, &mut &body[..], &options, &context, &mut report, &mut |_| Ok(())).map(|()| report),
            );
        }
        let mut ingest = self.db.ingest(options.now.unix_seconds())?;
        for ((body, format), result) in batches.iter().zip(results.iter_mut()) {
            let Ok(report) = result else { continue };
            let options = IngestOptions { format: *format, skip_bad: false, ..*options };
            let before = ingest.counts().clone();
            let mut discard = IngestReport::default();
            read_events(source, &mut &body[..], &options, &context, &mut discard, &mut |event| ingest.add(event))?;
            ingest.flush()?;
            let after = ingest.counts();
            report.accepted = after.accepted - before.accepted;
            report.duplicates = after.duplicates - before.duplicates;
            report.unattributed = after.unattributed - before.unattributed;
            report.late = after.late - before.late;
            report.expired = after.expired - before.expired;
            for (strategy, count) in &after.unknown_strategies {
                let earlier = before.unknown_strategies.get(strategy).copied().unwrap_or(0);
                if *count > earlier {
                    report.unknown_strategies.insert(strategy.clone(), count - earlier);
                }
            }
        }
        ingest.commit()?;
        Ok(results)
    }

    fn read_context(&self, options: &IngestOptions<'_>) -> Result<ReadContext> {
        let known = crate::policy::known_strategies(&self.policies).iter().map(|s| s.to_string()).collect();
        let last_eval = self.db.meta("last_evaluation")?.and_then(|v| v.parse().ok());
        let horizon = if options.check_skew {
            options.now.unix_seconds() + self.config.max_clock_skew.0.seconds()
        } else {
            Seconds::MAX
        };
        Ok(ReadContext { known, last_eval, horizon, skew: self.config.max_clock_skew.0 })
    }

    /// Each metric's baseline for `release` (cached per activation), from `[monitoring] baseline`.
    pub fn baselines(&mut self, info: &ReleaseInfo) -> Result<BTreeMap<String, Option<f64>>> {
        let key = format!("{}@{}", info.release_id, info.deployment_timestamp.unix_seconds());
        if let Some(found) = self.baselines.get(&key) {
            return Ok(found.clone());
        }
        let deployed = info.deployment_timestamp.unix_seconds();
        let out = match self.config.baseline {
            BaselineSource::Validation => {
                let mut out = self.validation_baselines(&info.manifest_path)?;
                // The backtest scores signals and returns, not the producers' own fields: a field
                // metric it did not report takes its baseline from the trailing window.
                if self.policies.iter().any(|p| p.field.is_some() && out.get(&p.name).copied().flatten().is_none()) {
                    let trailing = self.trailing_baselines(deployed)?;
                    for policy in self.policies.iter().filter(|p| p.field.is_some()) {
                        if out.get(&policy.name).copied().flatten().is_none() {
                            out.insert(policy.name.clone(), trailing.get(&policy.name).copied().flatten());
                        }
                    }
                }
                out
            }
            BaselineSource::Trailing => self.trailing_baselines(deployed)?,
        };
        self.baselines.insert(key, out.clone());
        Ok(out)
    }

    /// Baselines from the validation backtest of the manifest at `manifest_path` (relative to the
    /// workspace), checked against the hash the manifest recorded.
    pub fn validation_baselines(&self, manifest_path: &RelPath) -> Result<BTreeMap<String, Option<f64>>> {
        let manifest = shipshape_core::pipeline::manifest::load(&manifest_path.under(&self.workspace.root))?;
        let bundle = manifest.manifest.audit_bundle.under(&self.workspace.root);
        let validation = match shipshape_core::pipeline::validate::read(&bundle)? {
            Some((validation, bytes)) => {
                // Checked on every read: the validation must be the one the manifest recorded.
                if manifest.manifest.validation.sha256 != Some(shipshape_core::infra::hash::Digest::of(&bytes)) {
                    return Err(Error::invalid(
                        bundle.join("validation.yaml"),
                        format!("does not match the hash recorded in {manifest_path}: the baseline cannot be trusted"),
                    ));
                }
                validation.backtest
            }
            None => None,
        };
        let mut out = BTreeMap::new();
        for policy in &self.policies {
            // The backtest's per-strategy statistics of the metric's strategies, pooled; else (an
            // external backtest) the metric it reported under the metric's name.
            let value = validation.as_ref().and_then(|backtest| {
                let mut pooled: Option<shipshape_metrics::Stats> = None;
                for (strategy, stats) in &backtest.statistics {
                    if policy.watches(strategy) {
                        pooled.get_or_insert_with(Default::default).merge(stats);
                    }
                }
                match pooled {
                    Some(stats) => policy.kind.compute(&stats, backtest.confidence, self.unit).value,
                    None => backtest.metrics.get(&policy.name).and_then(|m| m.value),
                }
            });
            out.insert(policy.name.clone(), value);
        }
        Ok(out)
    }

    /// Baselines from the events of the `baseline_window` before `deployed` (none below `min_samples`).
    pub fn trailing_baselines(&self, deployed: Seconds) -> Result<BTreeMap<String, Option<f64>>> {
        let from = deployed - self.config.baseline_window.0.seconds();
        let mut out = BTreeMap::new();
        for policy in &self.policies {
            let value = match &policy.field {
                Some(field) => policy
                    .kind
                    .compute_field(&self.db.field_window(None, &policy.strategies, field, from, deployed)?, 0.95),
                None => {
                    policy.kind.compute(&self.db.window_of(None, &policy.strategies, from, deployed)?, 0.95, self.unit)
                }
            };
            let enough = value.samples >= u64::from(self.config.min_samples.0);
            out.insert(policy.name.clone(), value.value.filter(|_| enough));
        }
        Ok(out)
    }

    /// `policy` with the sequential detector's design effect estimated from the one-minute blocks
    /// of `[from, to)` when the config leaves it to be estimated (hit ratio and precision only).
    fn with_design_effect(
        &self,
        policy: &MetricPolicy,
        release: &str,
        from: Seconds,
        to: Seconds,
    ) -> Result<MetricPolicy> {
        let mut policy = policy.clone();
        let ratio =
            matches!(policy.kind, shipshape_metrics::MetricKind::HitRatio | shipshape_metrics::MetricKind::Precision);
        let wants = [&policy.heightened, &policy.normal].iter().any(|m| m.rule.sequential.is_some_and(|s| s.estimate));
        if !ratio || !wants {
            return Ok(policy);
        }
        let blocks = self.db.minute_blocks(release, &policy.strategies, from, to)?;
        let kind = policy.kind;
        let phi = crate::judge::dispersion(blocks.iter().map(|b| match kind {
            shipshape_metrics::MetricKind::Precision => (b.longs, b.long_wins),
            _ => (b.trades, b.hits),
        }));
        for mode in [&mut policy.heightened, &mut policy.normal] {
            if let Some(sequential) = mode.rule.sequential.as_mut().filter(|s| s.estimate) {
                sequential.design_effect = phi;
            }
        }
        Ok(policy)
    }

    /// The dead-man's switch for `active` at `now` (see [`crate::silence`]); `None` when it is off
    /// or no session is open.
    pub fn silence(&self, active: &Active, now: Seconds) -> Result<Option<(MetricPolicy, Evaluation)>> {
        if self.config.silence.after.is_none() {
            return Ok(None);
        }
        let last = self.db.last_minute(&active.release_id)?;
        Ok(crate::silence::judge(&self.config, active.deployed_at, active.heightened_end, last, now, self.unit))
    }

    /// The metrics of the active release at `now`, without touching alert state.
    pub fn measure(&self, active: &Active, now: Seconds) -> Result<Vec<(MetricPolicy, Evaluation)>> {
        let deployed = active.deployed_at;
        let end = active.heightened_end;
        let mut out = Vec::new();
        for policy in &self.policies {
            let (from, to) = window_at(policy, deployed, end, now);
            let release = Some(active.release_id.as_str());
            let baseline = active.baselines.get(&policy.name).copied().flatten();
            let evaluation = match &policy.field {
                Some(field) => {
                    let mode = crate::evaluate::mode_at(now, end);
                    let rule = &policy.rules(mode).rule;
                    let stats = self.db.field_window(release, &policy.strategies, field, from, to)?;
                    let value = policy.kind.compute_field(&stats, rule.significance.unwrap_or(0.95));
                    let verdict = match baseline {
                        Some(baseline) => crate::judge::judge(&value, baseline, rule),
                        None => crate::judge::Verdict::InsufficientData { samples: value.samples },
                    };
                    Evaluation { mode, window: (from, to), value, baseline, verdict }
                }
                None => {
                    let stats = self.db.window_of(release, &policy.strategies, from, to)?;
                    let policy = self.with_design_effect(policy, &active.release_id, from.max(now - 24 * 3600), now)?;
                    evaluate_with(|_, _| stats, deployed, &policy, baseline, end, now, self.unit)
                }
            };
            out.push((policy.clone(), evaluation));
        }
        Ok(out)
    }

    /// One evaluation pass at `now`: every metric of the active release judged, the alert state
    /// machine stepped, transitions and notifications recorded in one transaction; then, when
    /// enabled and due, the automatic rollback. Delivery is separate ([`Monitor::deliver`]).
    pub fn evaluate(&mut self, now: Time) -> Result<Pass> {
        let info = registry::get_active_release(&self.workspace, now)?;
        let active = match &info {
            Some(info) => Some(self.active(info)?),
            None => None,
        };
        let mut pass = self.evaluate_release(active.as_ref(), now)?;
        if let Some(info) = info.as_ref().filter(|_| self.config.auto_rollback.enabled) {
            pass.auto_rollback = self.auto_rollback(info, now)?;
        }
        Ok(pass)
    }

    /// Close the open alerts of every release but the active one as `superseded`, now — what the
    /// next evaluation would do, done at the rollback or deploy that made them stale.
    pub fn close_superseded(&mut self, now: Time) -> Result<()> {
        let Some(info) = registry::get_active_release(&self.workspace, now)? else { return Ok(()) };
        let recorder = self.db.record()?;
        recorder.close_stale(info.release_id.as_str(), info.deployment_timestamp.unix_seconds(), now.unix_seconds())?;
        recorder.commit_closed()
    }

    /// The registry's release as the monitor judges it.
    pub fn active(&mut self, info: &ReleaseInfo) -> Result<Active> {
        Ok(Active {
            release_id: info.release_id.to_string(),
            deployed_at: info.deployment_timestamp.unix_seconds(),
            heightened_end: info.heightened_monitoring_end.unix_seconds(),
            baselines: self.baselines(info)?,
        })
    }

    /// One pass for `active` (no auto-rollback: see [`Monitor::evaluate`]).
    pub fn evaluate_release(&mut self, active: Option<&Active>, now: Time) -> Result<Pass> {
        let at = now.unix_seconds();
        let mut pass = Pass {
            at: now.instant(),
            release_id: active.map(|a| a.release_id.clone()),
            deployed_at: active.and_then(|a| Timestamp::from_second(a.deployed_at).ok()),
            mode: active.map(|a| crate::evaluate::mode_at(at, a.heightened_end)),
            heightened_until: active.and_then(|a| Timestamp::from_second(a.heightened_end).ok()),
            metrics: Vec::new(),
            notifications: Vec::new(),
            auto_rollback: None,
        };
        let mut measured = match active {
            Some(active) => self.measure(active, at)?,
            None => Vec::new(),
        };
        if let Some(active) = active
            && let Some(silence) = self.silence(active, at)?
        {
            measured.push(silence);
        }
        let sinks: Vec<String> = self.config.sinks.iter().map(|s| s.name()).collect();
        let environment = self.workspace.config.release.environment.to_string();
        let eval_interval = self.config.eval_interval.0.seconds();
        let path = self.db.path().to_path_buf();
        let activation = active.map_or(0, |a| a.deployed_at);
        let recorder = self.db.record()?;
        if let Some(release) = &pass.release_id {
            recorder.close_stale(release, activation, at)?;
        }
        let release = pass.release_id.clone().unwrap_or_default();
        for (policy, evaluation) in measured {
            let rules = policy.rules(evaluation.mode);
            let (state, mut alert_id) = recorder.state(&release, &policy.name)?;
            let (next, effects) = alert::step(state, &evaluation.verdict, at, &rules.cadence);
            let measured = Measured {
                release: &release,
                strategy: &policy.strategy,
                metric: &policy.name,
                mode: evaluation.mode.as_str(),
                value: evaluation.value.value,
                baseline: evaluation.baseline,
                threshold: rules.rule.threshold,
                drop: evaluation.verdict.drop(),
                samples: evaluation.value.samples as i64,
                window: evaluation.window,
            };
            if next.is_open() && !state.is_open() {
                alert_id = Some(recorder.open_alert(&measured, at)?);
            }
            if let Some(id) = alert_id {
                let (new_state, severity) = match (&state, &next) {
                    (_, State::Pending { .. }) => (Some("pending"), None),
                    (_, State::Firing { severity, .. }) => (Some("firing"), Some(severity.as_str())),
                    (State::Firing { .. }, State::Resolved { .. }) => (Some("resolved"), None),
                    (State::Pending { .. }, _) => (Some("cleared"), None),
                    _ => (None, None),
                };
                if let Some(new_state) = new_state {
                    recorder.update_alert(id, new_state, severity, &measured, at)?;
                }
            }
            let notify = effects.iter().find_map(|e| match e {
                Effect::Notify { reason, severity } => Some((*reason, *severity)),
                Effect::Transition { .. } => None,
            });
            for effect in &effects {
                if let Effect::Transition { from: before, to: after } = effect {
                    let severity = match after {
                        State::Firing { severity, .. } => Some(severity.as_str()),
                        _ => notify.map(|(_, s)| s.as_str()),
                    };
                    recorder.transition(alert_id, before, after, severity, notify.map(|(r, _)| r), &measured, at)?;
                }
            }
            if let (Some((reason, severity)), Some(id)) = (notify, alert_id) {
                let started = match (&next, &state) {
                    (State::Firing { since, .. }, _) | (_, State::Firing { since, .. }) => *since,
                    _ => at,
                };
                let resolved = reason == NotifyReason::Resolved;
                let ends_at = if resolved { at } else { at + rules.cadence.repeat_every + 2 * eval_interval };
                let notification = Notification {
                    reason,
                    alert_id: id,
                    status: if resolved { "resolved".into() } else { "firing".into() },
                    severity,
                    release_id: release.clone(),
                    environment: environment.clone(),
                    mode: evaluation.mode,
                    strategy: policy.strategy.clone(),
                    metric: policy.name.clone(),
                    value: measured.value,
                    baseline: measured.baseline,
                    drop: measured.drop,
                    threshold: measured.threshold,
                    samples: evaluation.value.samples,
                    window_from: ts(measured.window.0),
                    window_to: ts(measured.window.1),
                    started_at: ts(started),
                    at: ts(at),
                    ends_at: ts(ends_at),
                    summary: summary(&measured, resolved, severity),
                };
                let payload = serde_json::to_string(&notification)
                    .map_err(|e| Error::invalid(&path, format!("encoding a notification: {e}")))?;
                recorder.enqueue(id, &sinks, &payload, sinks::wall_seconds())?;
                pass.notifications.push(notification);
            }
            recorder.save_state(&measured, &next, alert_id, activation)?;
            let interval = (evaluation.value.ci_low, evaluation.value.ci_high);
            recorder.evaluation(&measured, interval, evaluation.verdict.name(), at)?;
            pass.metrics.push(MetricReport {
                metric: policy.name.clone(),
                strategy: policy.strategy.clone(),
                threshold: measured.threshold,
                evaluation,
                state: next,
                alert_id: alert_id.filter(|_| next.is_open() || matches!(next, State::Resolved { .. })),
            });
        }
        recorder.commit(at)?;
        Ok(pass)
    }

    /// Roll the active release back when it has had `critical_firings` critical firings within
    /// `within` — at most once per release, with the alerts as the recorded reason.
    fn auto_rollback(&mut self, info: &ReleaseInfo, now: Time) -> Result<Option<AutoRollback>> {
        let at = now.unix_seconds();
        let policy = &self.config.auto_rollback;
        let since = at - policy.within.0.seconds();
        let release = info.release_id.as_str();
        let firings = self.db.critical_firings(release, since, at)?;
        if firings.len() < policy.critical_firings.0 as usize {
            return Ok(None);
        }
        let reason = format!(
            "auto-rollback: {} critical alerts within {}: {}",
            firings.len(),
            policy.within.0,
            firings
                .iter()
                .map(|f| format!(
                    "{} at {} ({} vs baseline {})",
                    f.metric,
                    ts(f.at),
                    f.value.map_or("n/a".into(), |v| format!("{v:.4}")),
                    f.baseline.map_or("n/a".into(), |v| format!("{v:.4}"))
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
        // Once per release — the claim is the row — and again, with backoff, while it fails, for
        // `retry_for` after the first attempt.
        let retry_for = policy.retry_for.0.seconds();
        let Some(attempt) = self.db.claim_auto_rollback(release, at, &reason, retry_for)? else {
            return Ok(None);
        };
        let request = deploy::RollbackRequest {
            to: None,
            reason: reason.clone(),
            by: "shipshape-monitor".into(),
            dry_run: false,
        };
        let outcome =
            match deploy::rollback(&self.workspace, &request, now, &NoProgress, &mut |_| {}, &mut |_| Ok(true)) {
                Ok(deploy::RollbackOutcome::Done(plan)) => format!("rolled back to {}", plan.to.release_id),
                Ok(_) => "not applied".to_string(),
                Err(e) => format!("failed: {e}"),
            };
        let outcome = if outcome.starts_with("rolled back") {
            self.db.auto_rollback_outcome(release, &outcome, None)?;
            self.close_superseded(now)?;
            outcome
        } else {
            // 1, 2, 4 … minutes, at most 15, while within `retry_for` of the first attempt.
            let first = self.db.auto_rollback_started(release)?.unwrap_or(at);
            let backoff = (60i64 << (attempt.saturating_sub(1)).min(10)).min(15 * 60);
            let next = at + backoff;
            let again = next - first <= retry_for;
            let outcome = if again {
                format!("{outcome} (attempt {attempt}; next attempt from {})", ts(next))
            } else {
                format!("{outcome} (attempt {attempt}; no more attempts: roll back by hand)")
            };
            self.db.auto_rollback_outcome(release, &outcome, again.then_some(next))?;
            self.notify_auto_rollback_failure(info, &outcome, at)?;
            outcome
        };
        Ok(Some(AutoRollback { release_id: info.release_id.to_string(), reason, outcome }))
    }

    /// Tell every sink that an automatic rollback failed (each attempt).
    fn notify_auto_rollback_failure(&mut self, info: &ReleaseInfo, outcome: &str, at: Seconds) -> Result<()> {
        let sinks: Vec<String> = self.config.sinks.iter().map(|s| s.name()).collect();
        let mode = crate::evaluate::mode_at(at, info.heightened_monitoring_end.unix_seconds());
        let notification = Notification {
            reason: NotifyReason::AutoRollbackFailed,
            alert_id: 0,
            status: "firing".into(),
            severity: crate::judge::Severity::Critical,
            release_id: info.release_id.to_string(),
            environment: self.workspace.config.release.environment.to_string(),
            mode,
            strategy: "-".into(),
            metric: "auto_rollback".into(),
            value: None,
            baseline: None,
            drop: None,
            threshold: 0.0,
            samples: 0,
            window_from: ts(at),
            window_to: ts(at),
            started_at: ts(at),
            at: ts(at),
            ends_at: ts(at + 3600),
            summary: format!("automatic rollback of {} failed: {outcome}", info.release_id),
        };
        let payload = serde_json::to_string(&notification)
            .map_err(|e| Error::invalid(self.db.path(), format!("encoding a notification: {e}")))?;
        self.db.enqueue_note(&sinks, &payload, sinks::wall_seconds())
    }

    /// Deliver due notifications to the configured sinks.
    pub fn deliver(&self, log: &mut dyn FnMut(&str)) -> Result<Delivery> {
        sinks::deliver(&self.db, &self.config.sinks, &self.workspace.root, sinks::wall_seconds(), log)
    }
}

/// What reading events needs from the monitor.
struct ReadContext {
    known: Vec<String>,
    last_eval: Option<Seconds>,
    horizon: Seconds,
    skew: shipshape_core::infra::clock::Duration,
}

/// Parse, check and attribute every event of `reader`, handing each to `sink`.
fn read_events(
    source: &Path,
    reader: &mut dyn BufRead,
    options: &IngestOptions<'_>,
    context: &ReadContext,
    report: &mut IngestReport,
    sink: &mut dyn FnMut(&NewEvent<'_>) -> Result<()>,
) -> Result<()> {
    let IngestOptions { format, skip_bad, now, .. } = *options;
    // A JSON array of events (`json.dumps(records)`, `df.to_json(orient="records")`) is read as
    // the JSON lines it holds, one element per line.
    let mut converted;
    let starts_with_array = reader.fill_buf().is_ok_and(shipshape_metrics::event::is_json_array);
    let (reader, format): (&mut dyn BufRead, Option<Format>) = if starts_with_array {
        let lines = shipshape_metrics::event::read_json_array(&[], &mut *reader)
            .map_err(|e| Error::io(source, "reading", e))?
            .map_err(|e| Error::parse(source, 1, 1, e.to_string()))?;
        converted = std::io::Cursor::new(lines.into_bytes());
        (&mut converted, Some(Format::JsonLines))
    } else {
        (reader, format)
    };
    let mut buffer = Vec::with_capacity(4096);
    let mut header: Option<CsvHeader> = None;
    let mut format = format;
    let mut line_number = 0u64;
    let read_error = |e: std::io::Error| Error::io(source, "reading", e);
    let mut bad_lines = BadLines::new(skip_bad);
    while let Some(read) = next_line(reader, &mut buffer).map_err(read_error)? {
        line_number += 1;
        let line = line_number as usize;
        let mut bad = |message: String| bad_lines.record(source, line, &message);
        if let Err(message) = read {
            bad(message)?;
            continue;
        }
        let Ok(text) = std::str::from_utf8(&buffer) else {
            bad("not UTF-8".into())?;
            continue;
        };
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let format =
            *format.get_or_insert(if text.trim_start().starts_with('{') { Format::JsonLines } else { Format::Csv });
        let parsed: std::result::Result<EventRef<'_>, EventError> = match format {
            Format::JsonLines => parse_json_line(text),
            Format::Csv => match &header {
                None => {
                    header = Some(
                        CsvHeader::parse(text)
                            .map_err(|e| Error::parse(source, line_number as usize, 1, format!("CSV header: {e}")))?,
                    );
                    continue;
                }
                Some(header) => header.parse_row(text),
            },
        };
        report.lines += 1;
        let event = match parsed {
            Ok(event) => event,
            Err(e) => {
                bad(e.to_string())?;
                continue;
            }
        };
        let at = event.ts.as_second();
        if at > context.horizon {
            bad(format!(
                "`ts`: {} is in the future (the clock says {}; at most {} of skew is accepted)",
                event.ts,
                now.instant(),
                context.skew
            ))?;
            continue;
        }
        let (release_id, attributed) = match (&event.release_id, options.timeline.at(at)) {
            (Some(id), _) => (id.as_ref(), Attribution::Producer),
            (None, Some(id)) => (id, Attribution::Time),
            (None, None) => ("", Attribution::None),
        };
        let derived;
        let id = match &event.id {
            Some(id) => id.as_ref(),
            None => {
                derived = content_id(
                    &event.ts.to_string(),
                    &event.strategy,
                    &event.symbol,
                    event.signal.as_i64(),
                    event.outcome.as_i64(),
                    event.ret,
                );
                derived.as_str()
            }
        };
        let new = NewEvent {
            id,
            ts: at,
            strategy: &event.strategy,
            symbol: &event.symbol,
            signal: event.signal,
            outcome: event.outcome,
            ret: event.ret,
            release_id,
            attributed,
            late: context.last_eval.is_some_and(|last| at < last),
            known_strategy: context.known.iter().any(|k| shipshape_core::config::wildcard_match(k, &event.strategy)),
            metrics: &event.metrics,
        };
        sink(&new)?;
    }
    report.skipped += bad_lines.skipped;
    let room = REPORTED_SKIPS.saturating_sub(report.skipped_examples.len());
    report.skipped_examples.extend(bad_lines.examples.into_iter().take(room));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_finds_the_release_active_at_a_time() {
        let timeline = Timeline::from_points(vec![(200, "b".into()), (100, "a".into()), (300, "a".into())]);
        assert_eq!(timeline.at(99), None);
        assert_eq!(timeline.at(100), Some("a"));
        assert_eq!(timeline.at(250), Some("b"));
        assert_eq!(timeline.at(10_000), Some("a"));
    }
}
