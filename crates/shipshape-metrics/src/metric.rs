//! Hit ratio, precision and Sharpe ratio, each with its sample count and uncertainty.
//!
//! - hit ratio: among trades (signal ≠ 0), the share whose signal equals the outcome;
//! - precision: among longs (signal = 1), the share whose outcome is 1;
//! - Sharpe: mean / sample standard deviation of trade returns, per trade, or annualised by √periods.
//!
//! The two ratios carry a Wilson score interval (well-behaved near 0 and 1 and for small n, unlike
//! the normal approximation); Sharpe carries Lo's (2002) standard error √((1 + SR²/2)/n) and the
//! normal interval around it. With too few samples the value is `None`: unknown, never "fine".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::stats::Stats;

/// Which metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Share of trades whose direction was right.
    HitRatio,
    /// Share of long signals that went up.
    Precision,
    /// Mean over standard deviation of trade returns.
    Sharpe,
    /// Mean return per trade.
    MeanReturn,
    /// Mean winning return over mean losing |return|.
    WinLoss,
    /// The mean of a numeric field the producer adds (`field = "slippage_bps"`).
    FieldMean,
    /// The share of events whose field is not zero (`field = "rejected"`).
    FieldRate,
    /// Minutes without any event (the dead-man's switch, `[monitoring.silence]`); not a kind a
    /// `[[monitoring.metrics]]` entry may name.
    Silence,
}

impl MetricKind {
    /// The story's metrics, which the built-in backtest reports by name (every kind is computed
    /// from the per-strategy statistics it also records).
    pub const ALL: [MetricKind; 3] = [MetricKind::HitRatio, MetricKind::Precision, MetricKind::Sharpe];

    /// Every kind a `[[monitoring.metrics]]` entry may name.
    pub const EVERY: [MetricKind; 7] = [
        MetricKind::HitRatio,
        MetricKind::Precision,
        MetricKind::Sharpe,
        MetricKind::MeanReturn,
        MetricKind::WinLoss,
        MetricKind::FieldMean,
        MetricKind::FieldRate,
    ];

    /// Whether it is computed from a producer's field ([`MetricKind::compute_field`]) rather than
    /// from signals, outcomes and returns.
    pub fn is_field(self) -> bool {
        matches!(self, MetricKind::FieldMean | MetricKind::FieldRate)
    }

    /// Compute a field metric from the field's statistics (`None` value for other kinds).
    pub fn compute_field(self, stats: &crate::stats::FieldStats, confidence: f64) -> MetricValue {
        let mut out = MetricValue {
            kind: self,
            value: None,
            samples: stats.n,
            std_error: None,
            ci_low: None,
            ci_high: None,
            confidence,
            unit: "field".into(),
        };
        let z = z_two_sided(confidence);
        match self {
            MetricKind::FieldMean => {
                if let Some((mean, variance)) = stats.moments() {
                    let se = (variance / stats.n as f64).sqrt();
                    out.value = Some(mean);
                    out.std_error = Some(se);
                    out.ci_low = Some(mean - z * se);
                    out.ci_high = Some(mean + z * se);
                }
            }
            MetricKind::FieldRate => {
                return ratio(self, stats.nonzero, stats.n, confidence);
            }
            _ => {}
        }
        out
    }

    /// The name used in configs and outputs.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::HitRatio => "hit_ratio",
            MetricKind::Precision => "precision",
            MetricKind::Sharpe => "sharpe",
            MetricKind::MeanReturn => "mean_return",
            MetricKind::WinLoss => "win_loss",
            MetricKind::FieldMean => "field_mean",
            MetricKind::FieldRate => "field_rate",
            MetricKind::Silence => "silence",
        }
    }

    /// Split a metric name like `intraday_hit_ratio` into strategy and kind; a bare kind
    /// (`hit_ratio`) means every strategy together.
    pub fn split_name(name: &str) -> Option<(Option<&str>, MetricKind)> {
        for kind in MetricKind::ALL {
            if name == kind.name() {
                return Some((None, kind));
            }
            if let Some(strategy) = name.strip_suffix(kind.name()).and_then(|s| s.strip_suffix('_'))
                && !strategy.is_empty()
            {
                return Some((Some(strategy), kind));
            }
        }
        None
    }

    /// Compute this metric from statistics.
    pub fn compute(self, stats: &Stats, confidence: f64, sharpe_unit: SharpeUnit) -> MetricValue {
        match self {
            MetricKind::HitRatio => ratio(self, stats.hits, stats.trades, confidence),
            MetricKind::Precision => ratio(self, stats.long_wins, stats.longs, confidence),
            MetricKind::Sharpe => sharpe(stats, confidence, sharpe_unit),
            MetricKind::MeanReturn => mean_return(stats, confidence),
            MetricKind::WinLoss => {
                let mut out = MetricValue {
                    kind: self,
                    value: None,
                    samples: stats.wins.min(stats.losses),
                    std_error: None,
                    ci_low: None,
                    ci_high: None,
                    confidence,
                    unit: "ratio".into(),
                };
                if let Some((ratio, se)) = stats.win_loss() {
                    let z = z_two_sided(confidence);
                    out.value = Some(ratio);
                    out.std_error = Some(se);
                    out.ci_low = Some(ratio - z * se);
                    out.ci_high = Some(ratio + z * se);
                }
                out
            }
            // Field kinds read the field's statistics (`compute_field`), not these.
            MetricKind::FieldMean | MetricKind::FieldRate => self.compute_field(&Default::default(), confidence),
            MetricKind::Silence => MetricValue {
                kind: self,
                value: None,
                samples: stats.events,
                std_error: None,
                ci_low: None,
                ci_high: None,
                confidence,
                unit: "minutes without events".into(),
            },
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MetricKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MetricKind::EVERY.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            format!("unknown metric `{s}` (expected hit_ratio, precision, sharpe, mean_return, win_loss, field_mean or field_rate)")
        })
    }
}

/// The unit a Sharpe ratio is stated in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "unit", content = "periods")]
pub enum SharpeUnit {
    /// Per trade: no scaling.
    PerTrade,
    /// Annualised: multiplied by √periods (e.g. 252 trading days).
    Annualised(f64),
}

impl SharpeUnit {
    /// What a per-trade ratio is multiplied by (1, or √periods).
    pub fn factor(self) -> f64 {
        match self {
            SharpeUnit::PerTrade => 1.0,
            SharpeUnit::Annualised(periods) => periods.sqrt(),
        }
    }

    /// How the unit reads in output.
    pub fn describe(self) -> String {
        match self {
            SharpeUnit::PerTrade => "per trade".into(),
            SharpeUnit::Annualised(periods) => format!("annualised (×√{periods})"),
        }
    }
}

/// A metric's value over some set of events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    /// Which metric.
    pub kind: MetricKind,
    /// The value, or `None` when there are too few samples to say.
    pub value: Option<f64>,
    /// How many samples it rests on (trades, longs, or trades for Sharpe).
    pub samples: u64,
    /// Standard error of the value.
    pub std_error: Option<f64>,
    /// Lower end of the confidence interval.
    pub ci_low: Option<f64>,
    /// Upper end of the confidence interval.
    pub ci_high: Option<f64>,
    /// The interval's two-sided confidence level (e.g. 0.95).
    pub confidence: f64,
    /// `fraction` for the ratios; the Sharpe unit otherwise.
    pub unit: String,
}

impl MetricValue {
    /// Whether `value` is known.
    pub fn is_known(&self) -> bool {
        self.value.is_some()
    }
}

fn ratio(kind: MetricKind, successes: u64, n: u64, confidence: f64) -> MetricValue {
    let mut out = MetricValue {
        kind,
        value: None,
        samples: n,
        std_error: None,
        ci_low: None,
        ci_high: None,
        confidence,
        unit: "fraction".into(),
    };
    if n == 0 {
        return out;
    }
    let (low, high) = wilson_interval(successes, n, z_two_sided(confidence));
    let p = successes as f64 / n as f64;
    out.value = Some(p);
    out.std_error = Some((p * (1.0 - p) / n as f64).sqrt());
    out.ci_low = Some(low);
    out.ci_high = Some(high);
    out
}

/// The mean trade return with its standard error s/√n (the normal interval around it).
fn mean_return(stats: &Stats, confidence: f64) -> MetricValue {
    let mut out = MetricValue {
        kind: MetricKind::MeanReturn,
        value: None,
        samples: stats.trades,
        std_error: None,
        ci_low: None,
        ci_high: None,
        confidence,
        unit: "return per trade".into(),
    };
    let Some(mean) = stats.mean_return() else { return out };
    out.value = Some(mean);
    if let Some(sd) = stats.std_return().filter(|sd| sd.is_finite()) {
        let se = sd / (stats.trades as f64).sqrt();
        let z = z_two_sided(confidence);
        out.std_error = Some(se);
        out.ci_low = Some(mean - z * se);
        out.ci_high = Some(mean + z * se);
    }
    out
}

fn sharpe(stats: &Stats, confidence: f64, unit: SharpeUnit) -> MetricValue {
    let mut out = MetricValue {
        kind: MetricKind::Sharpe,
        value: None,
        samples: stats.trades,
        std_error: None,
        ci_low: None,
        ci_high: None,
        confidence,
        unit: unit.describe(),
    };
    let (Some(mean), Some(sd)) = (stats.mean_return(), stats.std_return()) else { return out };
    if sd <= 0.0 || !sd.is_finite() {
        return out;
    }
    let per_trade = mean / sd;
    let se = ((1.0 + per_trade * per_trade / 2.0) / stats.trades as f64).sqrt();
    let factor = unit.factor();
    let z = z_two_sided(confidence);
    out.value = Some(per_trade * factor);
    out.std_error = Some(se * factor);
    out.ci_low = Some((per_trade - z * se) * factor);
    out.ci_high = Some((per_trade + z * se) * factor);
    out
}

/// Wilson score interval for `successes` out of `n` at normal quantile `z`.
pub fn wilson_interval(successes: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n_f = n as f64;
    let p = successes as f64 / n_f;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n_f;
    let center = (p + z2 / (2.0 * n_f)) / denominator;
    let half = z * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt() / denominator;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// The normal quantile for a two-sided interval at `confidence` (0.95 → 1.95996…).
pub fn z_two_sided(confidence: f64) -> f64 {
    normal_quantile(0.5 + confidence.clamp(0.0, 0.999_999_999) / 2.0)
}

/// The normal quantile for a one-sided test at `confidence` (0.95 → 1.64485…).
pub fn z_one_sided(confidence: f64) -> f64 {
    normal_quantile(confidence.clamp(1e-12, 1.0 - 1e-12))
}

/// Inverse of the standard normal CDF (Acklam's rational approximation, relative error < 1.2e-9).
#[allow(clippy::excessive_precision)] // the published coefficients, as published
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383577518672690e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    const LOW: f64 = 0.02425;
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    if p < LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Signal;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() < tolerance
    }

    #[test]
    fn quantiles() {
        assert!(close(z_two_sided(0.95), 1.959_963_985, 1e-6));
        assert!(close(z_one_sided(0.95), 1.644_853_627, 1e-6));
        assert!(close(normal_quantile(0.5), 0.0, 1e-12));
        assert!(close(normal_quantile(0.001), -3.090_232_306, 1e-6));
    }

    #[test]
    fn wilson_matches_reference_values() {
        // 8 of 10 at 95 %: (0.4902, 0.9433), as in Wilson (1927) / Newcombe (1998) tables.
        let (low, high) = wilson_interval(8, 10, z_two_sided(0.95));
        assert!(close(low, 0.4902, 1e-4) && close(high, 0.9433, 1e-4), "{low} {high}");
        let (low, high) = wilson_interval(0, 10, z_two_sided(0.95));
        assert!(close(low, 0.0, 1e-12) && close(high, 0.2775, 1e-4), "{low} {high}");
    }

    #[test]
    fn hit_ratio_and_precision() {
        let mut stats = Stats::default();
        stats.add(Signal::Long, Signal::Long, 0.01);
        stats.add(Signal::Long, Signal::Short, -0.01);
        stats.add(Signal::Short, Signal::Short, 0.02);
        stats.add(Signal::Flat, Signal::Long, 0.0);
        let hit = MetricKind::HitRatio.compute(&stats, 0.95, SharpeUnit::PerTrade);
        assert_eq!((hit.value, hit.samples), (Some(2.0 / 3.0), 3));
        let precision = MetricKind::Precision.compute(&stats, 0.95, SharpeUnit::PerTrade);
        assert_eq!((precision.value, precision.samples), (Some(0.5), 2));
        assert!(precision.ci_low.unwrap() < 0.5 && precision.ci_high.unwrap() > 0.5);
    }

    #[test]
    fn sharpe_with_lo_standard_error_and_annualisation() {
        let mut stats = Stats::default();
        for r in [0.01, 0.02, -0.01, 0.03, 0.0] {
            stats.add(Signal::Long, Signal::Long, r);
        }
        let mean = 0.01;
        let sd = (0.001f64 / 4.0).sqrt(); // Σ(x−μ)² = 0 + 1e-4 + 4e-4 + 4e-4 + 1e-4
        let per_trade = MetricKind::Sharpe.compute(&stats, 0.95, SharpeUnit::PerTrade);
        let sr = mean / sd;
        assert!(close(per_trade.value.unwrap(), sr, 1e-9));
        assert!(close(per_trade.std_error.unwrap(), ((1.0 + sr * sr / 2.0) / 5.0).sqrt(), 1e-9));
        assert_eq!(per_trade.unit, "per trade");
        let annual = MetricKind::Sharpe.compute(&stats, 0.95, SharpeUnit::Annualised(252.0));
        assert!(close(annual.value.unwrap(), sr * 252f64.sqrt(), 1e-9));
        assert!(annual.unit.contains("252"));
    }

    #[test]
    fn too_few_samples_is_unknown() {
        let stats = Stats::default();
        for kind in MetricKind::ALL {
            let value = kind.compute(&stats, 0.95, SharpeUnit::PerTrade);
            assert!(!value.is_known(), "{kind}");
        }
        let mut one = Stats::default();
        one.add(Signal::Long, Signal::Long, 0.01);
        assert!(!MetricKind::Sharpe.compute(&one, 0.95, SharpeUnit::PerTrade).is_known());
        let mut constant = Stats::default();
        constant.add(Signal::Long, Signal::Long, 0.01);
        constant.add(Signal::Long, Signal::Long, 0.01);
        assert!(!MetricKind::Sharpe.compute(&constant, 0.95, SharpeUnit::PerTrade).is_known(), "zero variance");
    }

    #[test]
    fn metric_names_split_into_strategy_and_kind() {
        assert_eq!(MetricKind::split_name("intraday_hit_ratio"), Some((Some("intraday"), MetricKind::HitRatio)));
        assert_eq!(MetricKind::split_name("swing_precision"), Some((Some("swing"), MetricKind::Precision)));
        assert_eq!(MetricKind::split_name("sharpe"), Some((None, MetricKind::Sharpe)));
        assert_eq!(MetricKind::split_name("intraday_sortino"), None);
        assert_eq!(MetricKind::split_name("_sharpe"), None);
    }
}
