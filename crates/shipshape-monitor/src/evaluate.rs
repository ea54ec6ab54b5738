//! One evaluation of one metric for the active release: which mode applies (heightened for the
//! first hours after the deploy, normal afterwards — the switch needs no one to flip it), which
//! window (never reaching back before the deploy, so a release is judged on its own events only),
//! the metric over that window, and the verdict against the baseline.

use serde::{Deserialize, Serialize};
use shipshape_metrics::{MetricKind, MetricValue, SharpeUnit, Stats};

use crate::alert::{Cadence, Seconds};
use crate::judge::{Rule, Verdict, judge};
use crate::window::Series;

/// Heightened or normal monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The first `heightened_hours` after a deploy.
    Heightened,
    /// After the heightened period: wider windows, looser thresholds.
    Normal,
}

impl Mode {
    /// The mode's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Heightened => "heightened",
            Mode::Normal => "normal",
        }
    }
}

/// The mode at `now` for a release whose heightened window ends at `heightened_end`.
pub fn mode_at(now: Seconds, heightened_end: Seconds) -> Mode {
    if now < heightened_end { Mode::Heightened } else { Mode::Normal }
}

/// What one mode asks of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModeRules {
    /// Rolling window length (seconds).
    pub window: Seconds,
    /// How a value is judged.
    pub rule: Rule,
    /// Firing and re-notification cadence.
    pub cadence: Cadence,
}

/// One monitored metric (e.g. the intraday hit ratio) in both modes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPolicy {
    /// Name, e.g. `intraday_hit_ratio`.
    pub name: String,
    /// The strategies whose events it is computed from, as one label (`intraday`, `momentum,mean_*`).
    pub strategy: String,
    /// The same, as the names and globs to match events' strategies against.
    pub strategies: Vec<String>,
    /// For field kinds: the producer's field it reads.
    #[serde(default)]
    pub field: Option<String>,
    /// Which metric.
    pub kind: MetricKind,
    /// Rules during the heightened period.
    pub heightened: ModeRules,
    /// Rules afterwards.
    pub normal: ModeRules,
}

impl MetricPolicy {
    /// Whether events of `strategy` count toward it.
    pub fn watches(&self, strategy: &str) -> bool {
        self.strategies.iter().any(|pattern| shipshape_core::config::wildcard_match(pattern, strategy))
    }

    /// The rules of `mode`.
    pub fn rules(&self, mode: Mode) -> &ModeRules {
        match mode {
            Mode::Heightened => &self.heightened,
            Mode::Normal => &self.normal,
        }
    }
}

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The mode that applied.
    pub mode: Mode,
    /// The window judged, `[from, to)`.
    #[serde(with = "crate::time_json::pair")]
    pub window: (Seconds, Seconds),
    /// The metric over it.
    pub value: MetricValue,
    /// The baseline (`None`: unknown, so the verdict is insufficient data).
    pub baseline: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
}

/// Evaluate `policy` over `series` (whose origin is the release's deploy) at `now`.
pub fn evaluate(
    series: &Series,
    policy: &MetricPolicy,
    baseline: Option<f64>,
    heightened_end: Seconds,
    now: Seconds,
    unit: SharpeUnit,
) -> Evaluation {
    evaluate_with(|from, to| series.window(from, to), series.origin(), policy, baseline, heightened_end, now, unit)
}

/// The window `policy` judges at `now` for a release deployed at `deployed_at`: `[from, now)`,
/// never before the deploy.
pub fn window_at(
    policy: &MetricPolicy,
    deployed_at: Seconds,
    heightened_end: Seconds,
    now: Seconds,
) -> (Seconds, Seconds) {
    let rules = policy.rules(mode_at(now, heightened_end));
    if rules.rule.sequential.is_some() {
        // The sequential test judges everything since the deploy.
        return (deployed_at, now);
    }
    ((now - rules.window).max(deployed_at), now)
}

/// [`evaluate`] over any source of window statistics (`stats(from, to)`), for a release deployed at
/// `deployed_at`.
pub fn evaluate_with(
    stats: impl FnOnce(Seconds, Seconds) -> Stats,
    deployed_at: Seconds,
    policy: &MetricPolicy,
    baseline: Option<f64>,
    heightened_end: Seconds,
    now: Seconds,
    unit: SharpeUnit,
) -> Evaluation {
    let mode = mode_at(now, heightened_end);
    let rules = policy.rules(mode);
    let (from, to) = window_at(policy, deployed_at, heightened_end, now);
    let confidence = rules.rule.significance.unwrap_or(0.95);
    let value = policy.kind.compute(&stats(from, to), confidence, unit);
    let verdict = match baseline {
        Some(baseline) => judge(&value, baseline, &rules.rule),
        None => Verdict::InsufficientData { samples: value.samples },
    };
    Evaluation { mode, window: (from, to), value, baseline, verdict }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{DropKind, Severity};
    use shipshape_metrics::Signal;

    const HOUR: Seconds = 3600;
    const DEPLOY: Seconds = 1_000_000;

    fn policy() -> MetricPolicy {
        let rule = |threshold| Rule {
            kind: DropKind::Relative,
            threshold,
            min_samples: 30,
            significance: Some(0.95),
            critical_multiple: 2.0,
            lower_is_better: false,
            sequential: None,
        };
        MetricPolicy {
            name: "intraday_hit_ratio".into(),
            strategy: "intraday".into(),
            strategies: vec!["intraday".into()],
            field: None,
            kind: MetricKind::HitRatio,
            heightened: ModeRules {
                window: 6 * HOUR,
                rule: rule(0.05),
                cadence: Cadence { consecutive_breaches: 3, repeat_every: 2 * HOUR },
            },
            normal: ModeRules {
                window: 24 * HOUR,
                rule: rule(0.10),
                cadence: Cadence { consecutive_breaches: 3, repeat_every: 6 * HOUR },
            },
        }
    }

    /// Ten trades a minute (several symbols) from `from` for `hours`, a share `hit` of them right
    /// (deterministic, evenly spread).
    fn trades(series: &mut Series, from: Seconds, hours: i64, hit: f64) {
        for trade in 0..hours * 600 {
            let right = ((trade as f64 * 0.618_034).fract()) < hit;
            let mut stats = Stats::default();
            stats.add(Signal::Long, if right { Signal::Long } else { Signal::Short }, 0.0);
            series.add(from + trade * 6, &stats);
        }
    }

    #[test]
    fn heightened_for_48_hours_then_normal() {
        let end = DEPLOY + 48 * HOUR;
        assert_eq!(mode_at(DEPLOY, end), Mode::Heightened);
        assert_eq!(mode_at(end - 1, end), Mode::Heightened);
        assert_eq!(mode_at(end, end), Mode::Normal);
    }

    #[test]
    fn a_seven_percent_regression_alerts_in_heightened_mode_only() {
        let mut series = Series::new(DEPLOY, 60);
        trades(&mut series, DEPLOY, 72, 0.52); // baseline 0.56: a 7 % drop
        let heightened =
            evaluate(&series, &policy(), Some(0.56), DEPLOY + 48 * HOUR, DEPLOY + 6 * HOUR, SharpeUnit::PerTrade);
        assert_eq!(heightened.mode, Mode::Heightened);
        assert_eq!(heightened.window, (DEPLOY, DEPLOY + 6 * HOUR));
        assert!(matches!(heightened.verdict, Verdict::Breach { severity: Severity::Warning, .. }), "{heightened:?}");
        let normal =
            evaluate(&series, &policy(), Some(0.56), DEPLOY + 48 * HOUR, DEPLOY + 60 * HOUR, SharpeUnit::PerTrade);
        assert_eq!(normal.mode, Mode::Normal);
        assert!(matches!(normal.verdict, Verdict::Healthy { .. }), "{normal:?}");
    }

    #[test]
    fn windows_never_reach_before_the_deploy() {
        let mut series = Series::new(DEPLOY, 60);
        trades(&mut series, DEPLOY, 1, 0.56);
        // Two hours after the deploy, a 6 h window starts at the deploy.
        let evaluation =
            evaluate(&series, &policy(), Some(0.56), DEPLOY + 48 * HOUR, DEPLOY + 2 * HOUR, SharpeUnit::PerTrade);
        assert_eq!(evaluation.window.0, DEPLOY);
        assert_eq!(evaluation.value.samples, 600);
        // Two minutes in: too few samples is insufficient data, not healthy.
        let early = evaluate(&series, &policy(), Some(0.56), DEPLOY + 48 * HOUR, DEPLOY + 2 * 60, SharpeUnit::PerTrade);
        assert!(matches!(early.verdict, Verdict::InsufficientData { samples: 20 }), "{early:?}");
    }
}
