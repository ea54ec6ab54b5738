//! The validation record, `release/audit_<timestamp>/validation.yaml`: the promotion checklist's results and the dry-run backtest's metrics, which become the release's monitoring baseline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::infra::clock::Time;
use crate::infra::hash::Digest;
use crate::infra::paths::RelPath;
use crate::model::audit::ToolInfo;
use shipshape_metrics::Stats;

/// The file's name inside an audit bundle.
pub const VALIDATION_FILE: &str = "validation.yaml";

/// Current schema.
pub const VALIDATION_SCHEMA: u32 = 1;

/// Passed or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It held.
    Passed,
    /// It did not.
    Failed,
}

/// One checklist item's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemResult {
    /// The item's name.
    pub name: String,
    /// `command`, `file` or `gate`.
    pub kind: String,
    /// Passed or failed.
    pub status: Status,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// What was found.
    pub detail: String,
    /// The end of a command's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tail: Option<String>,
}

/// A backtest metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestMetric {
    /// The value; null when there were too few samples.
    pub value: Option<f64>,
    /// Samples it rests on (built-in backtest only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// Standard error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std_error: Option<f64>,
    /// Confidence interval, low end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_low: Option<f64>,
    /// Confidence interval, high end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_high: Option<f64>,
    /// Unit (`fraction`, `per trade`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// The dry-run backtest's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestResult {
    /// `events` (built in) or `command` (external).
    pub source: String,
    /// The events file (built in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_file: Option<RelPath>,
    /// Its SHA-256, so the baseline is tied to exact data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_sha256: Option<Digest>,
    /// The external command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Events scored.
    pub events: u64,
    /// Bad lines skipped (`skip_bad`).
    pub skipped_lines: u64,
    /// Earliest and latest event times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<(String, String)>,
    /// Confidence of the intervals.
    pub confidence: f64,
    /// Unit of the Sharpe ratios.
    pub sharpe_unit: String,
    /// Metrics by name (`hit_ratio`, `intraday_hit_ratio`, …).
    pub metrics: BTreeMap<String, BacktestMetric>,
    /// Sufficient statistics per strategy, so the monitor can rebuild any metric from them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub statistics: BTreeMap<String, Stats>,
    /// Why the backtest failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

/// `validation.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validation {
    /// Schema version.
    pub schema_version: u32,
    /// The audit bundle validated.
    pub bundle_id: String,
    /// SHA-256 of that bundle's `bundle.yaml` at validation time.
    pub bundle_sha256: Digest,
    /// When the validation ran.
    pub created: Time,
    /// The tool.
    pub tool: ToolInfo,
    /// Every item passed (and the backtest ran).
    pub passed: bool,
    /// Where the checklist came from.
    pub checklist: String,
    /// The backtest, when configured.
    pub backtest: Option<BacktestResult>,
    /// Each checklist item in order.
    pub items: Vec<ItemResult>,
}

impl Validation {
    /// Names of the failed items.
    pub fn failed_items(&self) -> Vec<String> {
        let mut failed: Vec<String> =
            self.items.iter().filter(|i| i.status == Status::Failed).map(|i| i.name.clone()).collect();
        if self.backtest.as_ref().is_some_and(|b| b.error.is_some()) {
            failed.insert(0, "backtest".into());
        }
        failed
    }
}
