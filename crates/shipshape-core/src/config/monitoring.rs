//! `[monitoring]`: windows, thresholds, cadence, baselines, sinks and auto-rollback.

use serde::{Deserialize, Serialize};

use crate::config::{AtLeastOne, Fraction, PositiveDuration, PositiveFloat, PositiveInt};
use crate::infra::clock::Duration;

/// `[monitoring]`: the post-deploy watch. Defaults are the story's.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringConfig {
    /// How long heightened monitoring lasts after a deploy.
    pub heightened_hours: PositiveInt,
    /// How often metrics are evaluated.
    pub eval_interval: PositiveDuration,
    /// How many consecutive breaching evaluations fire an alert.
    pub consecutive_breaches: PositiveInt,
    /// Fewer samples than this in a window is `insufficient_data`, not healthy.
    pub min_samples: PositiveInt,
    /// One-sided confidence a drop must be significant at (0.95).
    pub significance: Fraction,
    /// `false` turns the significance test off (any drop past the threshold counts).
    pub significance_test: bool,
    /// A breach is critical when its drop is at least this many times the threshold.
    pub critical_multiple: AtLeastOne,
    /// Where each metric's baseline comes from: the release's validation backtest, or the trailing
    /// `baseline_window` of events before its deploy.
    pub baseline: BaselineSource,
    /// The trailing window for `baseline = "trailing"`.
    pub baseline_window: PositiveDuration,
    /// Events timestamped further than this in the future are refused (clock skew).
    pub max_clock_skew: PositiveDuration,
    /// The policy during the heightened period.
    pub heightened: ModePolicy,
    /// The policy afterwards.
    pub normal: ModePolicy,
    /// Roll back automatically after repeated critical alerts.
    pub auto_rollback: AutoRollbackConfig,
    /// Where alerts are sent.
    pub sinks: Vec<SinkConfig>,
}

/// Where a metric's baseline comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineSource {
    /// The release's validation backtest (`validation.yaml` in its audit bundle).
    Validation,
    /// The events of the `baseline_window` before the release's deploy.
    Trailing,
}

/// `[monitoring.auto_rollback]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoRollbackConfig {
    /// Off by default.
    pub enabled: bool,
    /// This many critical firings…
    pub critical_firings: PositiveInt,
    /// …within this long roll the active release back, once.
    pub within: PositiveDuration,
    /// A rollback that fails (lock held, full disk, a refused check) is tried again, with backoff
    /// (1, 2, 4 … minutes, at most 15, at the evaluations that follow), for this long after the
    /// first attempt; every failure is notified to every sink.
    pub retry_for: PositiveDuration,
}

impl Default for AutoRollbackConfig {
    fn default() -> Self {
        AutoRollbackConfig {
            enabled: false,
            critical_firings: PositiveInt(3),
            within: PositiveDuration(Duration::hours(1)),
            retry_for: PositiveDuration(Duration::hours(1)),
        }
    }
}

/// One `[[monitoring.sinks]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// One line per notification on standard error (and in `serve`'s log).
    Log,
    /// One JSON object per line appended to `path` (relative to the workspace).
    Jsonl {
        /// The file.
        path: String,
    },
    /// A JSON `POST` of each notification to `url` (http://).
    Webhook {
        /// The endpoint to POST to.
        url: String,
        /// Per request.
        #[serde(default = "default_sink_timeout")]
        timeout: PositiveDuration,
    },
    /// Prometheus Alertmanager's `POST /api/v2/alerts` at `url` (its base, e.g. http://127.0.0.1:9093).
    Alertmanager {
        /// Base URL.
        url: String,
        /// Per request.
        #[serde(default = "default_sink_timeout")]
        timeout: PositiveDuration,
    },
}

fn default_sink_timeout() -> PositiveDuration {
    PositiveDuration(Duration(jiff::SignedDuration::from_secs(5)))
}

impl SinkConfig {
    /// A short name for logs and the outbox: `log`, `jsonl:PATH`, `webhook:URL`, `alertmanager:URL`.
    pub fn name(&self) -> String {
        match self {
            SinkConfig::Log => "log".into(),
            SinkConfig::Jsonl { path } => format!("jsonl:{path}"),
            SinkConfig::Webhook { url, .. } => format!("webhook:{url}"),
            SinkConfig::Alertmanager { url, .. } => format!("alertmanager:{url}"),
        }
    }
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            heightened_hours: PositiveInt(48),
            eval_interval: PositiveDuration(Duration(jiff::SignedDuration::from_mins(10))),
            consecutive_breaches: PositiveInt(3),
            min_samples: PositiveInt(30),
            significance: Fraction(0.95),
            significance_test: true,
            critical_multiple: AtLeastOne(2.0),
            baseline: BaselineSource::Validation,
            baseline_window: PositiveDuration(Duration::hours(7 * 24)),
            max_clock_skew: PositiveDuration(Duration(jiff::SignedDuration::from_mins(5))),
            heightened: ModePolicy::heightened(),
            normal: ModePolicy::normal(),
            auto_rollback: AutoRollbackConfig::default(),
            sinks: vec![SinkConfig::Log],
        }
    }
}

/// Windows, thresholds and notification cadence for one monitoring mode.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModePolicy {
    /// Rolling window for the intraday hit ratio.
    pub intraday_hit_ratio_window: PositiveDuration,
    /// Rolling window for swing precision.
    pub swing_precision_window: PositiveDuration,
    /// Relative drop of the intraday hit ratio that counts as a breach (0.05 = 5 %).
    pub intraday_hit_ratio_drop: Fraction,
    /// Relative drop of swing precision that counts as a breach.
    pub swing_precision_drop: Fraction,
    /// Absolute drop of the intraday Sharpe ratio that counts as a breach.
    pub intraday_sharpe_drop: PositiveFloat,
    /// How often a firing alert is notified again.
    pub notify_every: PositiveDuration,
}

impl ModePolicy {
    /// The story's heightened policy.
    pub fn heightened() -> Self {
        ModePolicy {
            intraday_hit_ratio_window: PositiveDuration(Duration::hours(6)),
            swing_precision_window: PositiveDuration(Duration::hours(24)),
            intraday_hit_ratio_drop: Fraction(0.05),
            swing_precision_drop: Fraction(0.05),
            intraday_sharpe_drop: PositiveFloat(0.15),
            notify_every: PositiveDuration(Duration::hours(2)),
        }
    }

    /// The story's normal policy.
    pub fn normal() -> Self {
        ModePolicy {
            intraday_hit_ratio_window: PositiveDuration(Duration::hours(24)),
            swing_precision_window: PositiveDuration(Duration::hours(90 * 24)),
            intraday_hit_ratio_drop: Fraction(0.10),
            swing_precision_drop: Fraction(0.10),
            intraday_sharpe_drop: PositiveFloat(0.25),
            notify_every: PositiveDuration(Duration::hours(6)),
        }
    }
}

impl Default for ModePolicy {
    fn default() -> Self {
        Self::normal()
    }
}
