//! `validate`: the promotion checklist and the dry-run backtest that gate a release.
//!
//! The backtest runs first (built in: score an events file with the metrics library; or external:
//! a command printing `{"metrics": {...}}`), then each checklist item in order: `command` (must exit
//! 0 within its timeout), `file` (must exist, optionally non-empty), `gate` (a backtest metric within
//! `min`/`max`). The outcome is written atomically as `validation.yaml` in the audit bundle; its
//! backtest metrics are the release's baseline for post-deploy monitoring, and `manifest` refuses a
//! bundle whose validation is missing or failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use shipshape_metrics::{MetricKind, SharpeUnit, Stats};

use crate::config::{BacktestConfig, ChecklistItem, load_checklist};
use crate::error::{Error, Result};
use crate::events::{self, ReadOptions};
use crate::infra::clock::Time;
use crate::infra::command::run_shell;
use crate::infra::hash::{Digest, NoProgress, hash_file};
use crate::infra::paths::{RelPath, confine};
use crate::layout::Workspace;
use crate::model::audit::ToolInfo;
use crate::model::validation::{
    BacktestMetric, BacktestResult, ItemResult, Status, VALIDATION_FILE, VALIDATION_SCHEMA, Validation,
};
use crate::pipeline::audit::{self};

/// Default time limit of a `command` item.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// What the user asked.
#[derive(Debug, Clone, Default)]
pub struct ValidateRequest {
    /// The bundle; the newest when `None`.
    pub bundle: Option<PathBuf>,
    /// A checklist file overriding the config's.
    pub checklist_file: Option<PathBuf>,
}

/// What would run: for `--dry-run`, and the first step of a real run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The bundle directory.
    pub bundle_dir: PathBuf,
    /// Where the checklist came from.
    pub checklist_source: String,
    /// The items.
    pub items: Vec<ChecklistItem>,
    /// The backtest.
    pub backtest: Option<BacktestConfig>,
}

impl Plan {
    /// One line per step, as `--dry-run` prints them.
    pub fn describe(&self, workspace: &Workspace) -> Vec<String> {
        let mut lines = vec![format!("bundle: {}", workspace.display(&self.bundle_dir))];
        lines.push(format!("checklist: {}", self.checklist_source));
        match &self.backtest {
            Some(b) => match (&b.events, &b.command) {
                (Some(events), _) => lines.push(format!("backtest: score {} (built in)", events.get_ref())),
                (_, Some(command)) => lines.push(format!("backtest: run `{command}` (timeout {})", b.timeout.0)),
                _ => {}
            },
            None => lines.push("backtest: none configured".into()),
        }
        for item in &self.items {
            lines.push(match item {
                ChecklistItem::Command { name, command, timeout } => {
                    let timeout = timeout.map_or_else(|| "5m".to_string(), |t| t.0.to_string());
                    format!("command  {name}: run `{command}` (timeout {timeout})")
                }
                ChecklistItem::File { name, path, non_empty } => {
                    format!("file     {name}: {path} must exist{}", if *non_empty { " and not be empty" } else { "" })
                }
                ChecklistItem::Gate { name, metric, min, max } => {
                    format!("gate     {name}: {}", bounds(metric, *min, *max))
                }
            });
        }
        lines
    }
}

fn bounds(metric: &str, min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(min), Some(max)) => format!("{min} <= {metric} <= {max}"),
        (Some(min), None) => format!("{metric} >= {min}"),
        (None, Some(max)) => format!("{metric} <= {max}"),
        (None, None) => metric.to_string(),
    }
}

/// Resolve the bundle and the checklist; fail on bad input before anything runs.
pub fn plan(workspace: &Workspace, request: &ValidateRequest) -> Result<Plan> {
    let bundle_dir = audit::resolve_bundle(workspace, request.bundle.as_deref())?;
    audit::read_bundle(&bundle_dir)?;
    let config = &workspace.config;
    let (items, checklist_source) = match (&request.checklist_file, &config.validate.checklist_file) {
        (Some(file), _) => {
            let path = workspace.resolve_user_path(file)?;
            (load_checklist(&path, config.backtest.as_ref())?, workspace.display(&path).into_owned())
        }
        (None, Some(file)) => {
            let relative = RelPath::new(file)
                .map_err(|rule| Error::invalid(&config.path, format!("validate.checklist_file: {rule}")))?;
            let path = confine(&workspace.root, &relative, &config.path)?;
            (load_checklist(&path, config.backtest.as_ref())?, file.clone())
        }
        (None, None) => (config.checklist.clone(), format!("{} [[checklist]]", crate::config::CONFIG_FILE)),
    };
    if items.is_empty() && config.backtest.is_none() {
        return Err(Error::Usage(format!(
            "nothing to validate: add [[checklist]] items or a [backtest] section to {}",
            config.path.display()
        )));
    }
    Ok(Plan { bundle_dir, checklist_source, items, backtest: config.backtest.clone() })
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().min(u128::from(u64::MAX)) as u64
}

/// Run the backtest. `Err` only for bad input (a malformed events file); a failing external
/// command is a failed backtest, recorded.
fn run_backtest(workspace: &Workspace, config: &BacktestConfig) -> Result<BacktestResult> {
    let start = Instant::now();
    let confidence = config.confidence.0;
    let unit = config.sharpe_periods.map_or(SharpeUnit::PerTrade, |p| SharpeUnit::Annualised(p.0));
    let mut result = BacktestResult {
        source: String::new(),
        events_file: None,
        events_sha256: None,
        command: None,
        events: 0,
        skipped_lines: 0,
        period: None,
        confidence,
        sharpe_unit: unit.describe(),
        metrics: BTreeMap::new(),
        statistics: BTreeMap::new(),
        error: None,
        duration_ms: 0,
    };
    if let Some(events) = &config.events {
        let relative = RelPath::new(events.get_ref())
            .map_err(|rule| Error::invalid(&workspace.config.path, format!("backtest.events: {rule}")))?;
        let path = confine(&workspace.root, &relative, &workspace.config.path)?;
        let scored =
            events::score_file(&path, Path::new(relative.as_str()), ReadOptions { skip_bad: config.skip_bad })?;
        let (digest, _) = hash_file(&path, &NoProgress)?;
        result.source = "events".into();
        result.events_file = Some(relative);
        result.events_sha256 = Some(digest);
        result.events = scored.events;
        result.skipped_lines = scored.skipped;
        result.period = scored.first_ts.zip(scored.last_ts).map(|(a, b)| (a.to_string(), b.to_string()));
        let mut add = |name: String, stats: &Stats| {
            for kind in MetricKind::ALL {
                let value = kind.compute(stats, confidence, unit);
                let metric_name = if name.is_empty() { kind.name().to_string() } else { format!("{name}_{kind}") };
                result.metrics.insert(
                    metric_name,
                    BacktestMetric {
                        value: value.value,
                        samples: Some(value.samples),
                        std_error: value.std_error,
                        ci_low: value.ci_low,
                        ci_high: value.ci_high,
                        unit: Some(value.unit),
                    },
                );
            }
        };
        add(String::new(), &scored.total());
        for (strategy, stats) in &scored.by_strategy {
            add(strategy.clone(), stats);
        }
        result.statistics = scored.by_strategy;
    } else if let Some(command) = &config.command {
        result.source = "command".into();
        result.command = Some(command.clone());
        let outcome = run_shell(command, &workspace.root, config.timeout.0.0.unsigned_abs())?;
        if !outcome.succeeded() {
            result.error =
                Some(format!("the backtest command failed: {}; output ends: {}", outcome.describe(), outcome.tail));
        } else {
            match parse_external_metrics(&outcome.stdout) {
                Ok(metrics) => result.metrics = metrics,
                Err(reason) => result.error = Some(reason),
            }
        }
    }
    result.duration_ms = millis(start.elapsed());
    Ok(result)
}

/// Parse an external backtest's stdout: `{"metrics": {"<name>": <number>, ...}}`.
pub fn parse_external_metrics(stdout: &[u8]) -> std::result::Result<BTreeMap<String, BacktestMetric>, String> {
    #[derive(Deserialize)]
    struct Output {
        metrics: BTreeMap<String, serde_json::Value>,
    }
    let text = String::from_utf8_lossy(stdout);
    let output: Output = serde_json::from_str(text.trim()).map_err(|e| {
        let start: String = text.trim().chars().take(80).collect();
        format!("the backtest command must print {{\"metrics\": {{\"<name>\": <number>, ...}}}} on stdout; got `{start}` ({e})")
    })?;
    let mut metrics = BTreeMap::new();
    for (name, value) in output.metrics {
        let number = value
            .as_f64()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("metric `{name}` is {value}, not a finite number"))?;
        metrics.insert(
            name,
            BacktestMetric {
                value: Some(number),
                samples: None,
                std_error: None,
                ci_low: None,
                ci_high: None,
                unit: None,
            },
        );
    }
    Ok(metrics)
}

fn run_item(workspace: &Workspace, item: &ChecklistItem, backtest: Option<&BacktestResult>) -> Result<ItemResult> {
    let start = Instant::now();
    let (status, detail, output_tail) = match item {
        ChecklistItem::Command { command, timeout, .. } => {
            let limit = timeout.map_or(DEFAULT_COMMAND_TIMEOUT, |t| t.0.0.unsigned_abs());
            let outcome = run_shell(command, &workspace.root, limit)?;
            let status = if outcome.succeeded() { Status::Passed } else { Status::Failed };
            (status, format!("`{command}`: {}", outcome.describe()), Some(outcome.tail).filter(|t| !t.is_empty()))
        }
        ChecklistItem::File { path, non_empty, .. } => {
            let relative = RelPath::new(path)
                .map_err(|rule| Error::invalid(&workspace.config.path, format!("checklist: {rule}")))?;
            let (status, detail) = match confine(&workspace.root, &relative, &workspace.config.path) {
                Err(Error::Io { .. }) => (Status::Failed, format!("{path} does not exist")),
                Err(e) => return Err(e),
                Ok(real) => match std::fs::metadata(&real) {
                    Ok(m) if !m.is_file() => (Status::Failed, format!("{path} is not a regular file")),
                    Ok(m) if *non_empty && m.len() == 0 => (Status::Failed, format!("{path} is empty")),
                    Ok(m) => (Status::Passed, format!("{path} exists ({} bytes)", m.len())),
                    Err(e) => (Status::Failed, format!("{path}: {e}")),
                },
            };
            (status, detail, None)
        }
        ChecklistItem::Gate { metric, min, max, .. } => {
            let wanted = bounds(metric, *min, *max);
            let (status, detail) = match backtest {
                None => (Status::Failed, format!("{wanted}: no backtest ran")),
                Some(b) if b.error.is_some() => (Status::Failed, format!("{wanted}: the backtest failed")),
                Some(b) => match b.metrics.get(metric) {
                    None => (Status::Failed, format!("{wanted}: the backtest did not report `{metric}`")),
                    Some(BacktestMetric { value: None, samples, .. }) => {
                        (Status::Failed, format!("{wanted}: insufficient data ({} samples)", samples.unwrap_or(0)))
                    }
                    Some(BacktestMetric { value: Some(value), samples, .. }) => {
                        let ok = min.is_none_or(|m| *value >= m) && max.is_none_or(|m| *value <= m);
                        let samples = samples.map(|n| format!(", {n} samples")).unwrap_or_default();
                        let detail = format!("{metric} = {value:.4}{samples}; required {wanted}");
                        (if ok { Status::Passed } else { Status::Failed }, detail)
                    }
                },
            };
            (status, detail, None)
        }
    };
    Ok(ItemResult {
        name: item.name().to_string(),
        kind: item.kind().to_string(),
        status,
        duration_ms: millis(start.elapsed()),
        detail,
        output_tail,
    })
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct ValidateOutcome {
    /// The result.
    pub validation: Validation,
    /// Where it was written.
    pub path: PathBuf,
}

/// Run the plan and write `validation.yaml` atomically. `Err` for bad input only; failed items are
/// in the outcome.
pub fn run(workspace: &Workspace, plan: &Plan, now: Time) -> Result<ValidateOutcome> {
    let (bundle, bundle_bytes) = audit::read_bundle(&plan.bundle_dir)?;
    let backtest = plan.backtest.as_ref().map(|config| run_backtest(workspace, config)).transpose()?;
    let mut items = Vec::with_capacity(plan.items.len());
    for item in &plan.items {
        items.push(run_item(workspace, item, backtest.as_ref())?);
    }
    let passed =
        items.iter().all(|i| i.status == Status::Passed) && backtest.as_ref().is_none_or(|b| b.error.is_none());
    let validation = Validation {
        schema_version: VALIDATION_SCHEMA,
        bundle_id: bundle.bundle_id,
        bundle_sha256: Digest::of(&bundle_bytes),
        created: now,
        tool: ToolInfo::current(),
        passed,
        checklist: plan.checklist_source.clone(),
        backtest,
        items,
    };
    let text = format!(
        "# shipshape validation of this audit bundle: checklist and dry-run backtest. The backtest\n# metrics are the release's monitoring baseline. Do not edit: manifests record this file's SHA-256.\n{}",
        crate::infra::yaml::to_string(&validation)?
    );
    let _lock = crate::infra::lock::WorkspaceLock::acquire(&workspace.lock_path(), "validate", now)?;
    let path = plan.bundle_dir.join(VALIDATION_FILE);
    crate::infra::atomic::write_atomic(&path, text.as_bytes())?;
    Ok(ValidateOutcome { validation, path })
}

/// Read a bundle's `validation.yaml` with its bytes, if it has one.
pub fn read(bundle_dir: &Path) -> Result<Option<(Validation, Vec<u8>)>> {
    let path = bundle_dir.join(VALIDATION_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let (validation, bytes): (Validation, Vec<u8>) = crate::infra::yaml::read(&path)?;
    Ok(Some((validation, bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_metrics_parse_and_refuse_garbage() {
        let metrics = parse_external_metrics(br#"{"metrics": {"intraday_hit_ratio": 0.56, "custom": 3}}"#).unwrap();
        assert_eq!(metrics["intraday_hit_ratio"].value, Some(0.56));
        for bad in [&b"backtest done"[..], b"{}", br#"{"metrics": {"x": "high"}}"#, br#"{"metrics": {"x": null}}"#] {
            let err = parse_external_metrics(bad).unwrap_err();
            assert!(err.contains("metrics") || err.contains("finite"), "{err}");
        }
    }
}
