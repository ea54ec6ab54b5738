//! Judging one metric evaluation against the release's baseline.
//!
//! A breach needs two things: the drop from the baseline is larger than the mode's threshold
//! (relative for hit ratio and precision, absolute for Sharpe), and the drop is significant for the
//! sample size — the one-sided upper confidence bound of the current value lies below the baseline —
//! so that twenty unlucky trades do not page anyone. Too few samples is `InsufficientData`, never
//! healthy. A breach is critical when the drop is at least `critical_multiple` times the threshold.

use serde::{Deserialize, Serialize};
use shipshape_metrics::MetricValue;
use shipshape_metrics::metric::z_one_sided;

/// How a drop is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropKind {
    /// (baseline − value) / baseline: hit ratio, precision.
    Relative,
    /// baseline − value: Sharpe.
    Absolute,
}

/// Severity of a breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Over the threshold.
    Warning,
    /// At least `critical_multiple` times over it.
    Critical,
}

/// The rule one metric is judged by in the active mode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// How the drop is measured.
    pub kind: DropKind,
    /// The threshold (0.05 = 5 % relative; or an absolute Sharpe drop).
    pub threshold: f64,
    /// Fewer samples than this is insufficient data.
    pub min_samples: u64,
    /// One-sided confidence for significance (e.g. 0.95); `None` turns the test off.
    pub significance: Option<f64>,
    /// Critical when drop ≥ this × threshold.
    pub critical_multiple: f64,
    /// A rise is the regression (slippage, latency): the "drop" is how far the value is above the
    /// baseline, and the significance test uses the lower confidence bound.
    #[serde(default)]
    pub lower_is_better: bool,
    /// The sequential detector instead of the window rule: judge everything since the deploy with
    /// a mixture sequential probability ratio test at this false-alarm probability (see
    /// [`sequential`]); `None`: the story's rule (window, threshold, consecutive breaches).
    #[serde(default)]
    pub sequential: Option<Sequential>,
}

/// The sequential detector's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sequential {
    /// The probability that a release that is no worse than half the threshold ever alerts,
    /// however often it is evaluated (e.g. 0.01).
    pub alpha: f64,
    /// Variance inflation for trades that are correlated within a time block (1: independent).
    pub design_effect: f64,
    /// Estimate the design effect from the blocks (see [`dispersion`]) instead of `design_effect`.
    #[serde(default)]
    pub estimate: bool,
}

/// The design effect of a ratio metric from its one-minute blocks `(trials, successes)`: Pearson's
/// dispersion Σ (s_b − n_b p̄)² / (n_b p̄ (1 − p̄)) over its B − 1 degrees of freedom — about 1 when
/// a block's trades are independent, larger when they move together. At least 1; 1 with fewer
/// than 10 blocks.
pub fn dispersion(blocks: impl Iterator<Item = (u64, u64)>) -> f64 {
    let mut sums = BlockSums::default();
    for (trials, successes) in blocks {
        sums.add(trials, successes);
    }
    sums.dispersion()
}

/// The running sums [`dispersion`] reads: blocks, trials, successes, Σ successes²/trials. They
/// add and subtract, so a sliding set of blocks costs O(1) per block (`calibrate` keeps prefixes).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BlockSums {
    /// Blocks with at least one trial.
    pub blocks: f64,
    /// Σ trials.
    pub trials: f64,
    /// Σ successes.
    pub successes: f64,
    /// Σ successes² / trials.
    pub squares_over_trials: f64,
}

impl BlockSums {
    /// Add one block (an empty one adds nothing).
    pub fn add(&mut self, trials: u64, successes: u64) {
        if trials > 0 {
            let (n, s) = (trials as f64, successes as f64);
            self.blocks += 1.0;
            self.trials += n;
            self.successes += s;
            self.squares_over_trials += s * s / n;
        }
    }

    /// The sums of the blocks in `self` but not in `earlier` (a prefix of them).
    pub fn since(&self, earlier: &BlockSums) -> BlockSums {
        BlockSums {
            blocks: self.blocks - earlier.blocks,
            trials: self.trials - earlier.trials,
            successes: self.successes - earlier.successes,
            squares_over_trials: self.squares_over_trials - earlier.squares_over_trials,
        }
    }

    /// Pearson's dispersion of these blocks (see [`dispersion`]).
    pub fn dispersion(&self) -> f64 {
        if self.blocks < 10.0 || self.trials <= 0.0 {
            return 1.0;
        }
        let p = self.successes / self.trials;
        if p <= 0.0 || p >= 1.0 {
            return 1.0;
        }
        // Σ (s_b − n_b p)² / n_b = Σ s_b²/n_b − 2 p Σ s_b + p² Σ n_b
        let chi2 = (self.squares_over_trials - 2.0 * p * self.successes + p * p * self.trials) / (p * (1.0 - p));
        (chi2 / (self.blocks - 1.0)).max(1.0)
    }
}

/// The mixture SPRT of Johari, Pekelis & Walsh ("Always Valid Inference", 2017) for a mean that
/// must not fall below `boundary`, on a normal approximation: with the estimate `value`, its
/// variance `v` (the squared standard error, times the design effect) and a normal mixture of
/// scale `tau` over the alternatives,
///
/// Λ = √(v / (v + τ²)) · exp(τ² θ² / (2 v (v + τ²))),  θ = boundary − value (the shortfall).
///
/// Under the null (true mean ≥ boundary) Λ is a nonnegative supermartingale in the number of
/// samples, so P(Λ ever ≥ 1/α) ≤ α (Ville's inequality): the false-alarm probability holds however
/// often the test looks. Returns ln Λ (0 when there is no shortfall).
pub fn msprt_log(value: f64, variance: f64, boundary: f64, tau: f64) -> f64 {
    let shortfall = boundary - value;
    if shortfall <= 0.0 || variance <= 0.0 || !variance.is_finite() || tau <= 0.0 {
        return 0.0;
    }
    let t2 = tau * tau;
    0.5 * (variance / (variance + t2)).ln() + t2 * shortfall * shortfall / (2.0 * variance * (variance + t2))
}

/// Judge with the sequential detector: the null is "worse than the baseline by at most half the
/// threshold", the mixture's scale is the whole threshold, and a breach is Λ ≥ 1/α. The value is
/// everything since the deploy (the caller's window). Severity as in [`judge`].
pub fn sequential(current: &MetricValue, baseline: f64, rule: &Rule, settings: &Sequential) -> Verdict {
    let Some(value) = current.value.filter(|_| current.samples >= rule.min_samples) else {
        return Verdict::InsufficientData { samples: current.samples };
    };
    let Some(se) = current.std_error.filter(|se| se.is_finite() && *se > 0.0) else {
        return Verdict::InsufficientData { samples: current.samples };
    };
    // Everything in "higher is better" units: flip a lower-is-better metric.
    let sign = if rule.lower_is_better { -1.0 } else { 1.0 };
    let (value_up, baseline_up) = (sign * value, sign * baseline);
    let step = match rule.kind {
        DropKind::Relative => rule.threshold * baseline.abs(),
        DropKind::Absolute => rule.threshold,
    };
    let drop = match rule.kind {
        DropKind::Relative if baseline.abs() > f64::EPSILON => (baseline_up - value_up) / baseline.abs(),
        DropKind::Relative => 0.0,
        DropKind::Absolute => baseline_up - value_up,
    };
    let variance = se * se * settings.design_effect.max(1.0); // an estimate is filled in by the caller
    let log_lambda = msprt_log(value_up, variance, baseline_up - step / 2.0, step);
    if log_lambda < (1.0 / settings.alpha).ln() {
        return Verdict::Healthy { drop };
    }
    let severity = if drop >= rule.critical_multiple * rule.threshold { Severity::Critical } else { Severity::Warning };
    Verdict::Breach { drop, severity }
}

/// The verdict of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Not enough samples to say.
    InsufficientData {
        /// How many there were.
        samples: u64,
    },
    /// Within bounds (or a drop that is not significant).
    Healthy {
        /// The drop (may be negative: an improvement).
        drop: f64,
    },
    /// A significant drop past the threshold.
    Breach {
        /// How far.
        drop: f64,
        /// How bad.
        severity: Severity,
    },
}

/// Judge `current` against `baseline` under `rule` (by [`sequential`] when the rule says so).
pub fn judge(current: &MetricValue, baseline: f64, rule: &Rule) -> Verdict {
    if let Some(settings) = &rule.sequential {
        return sequential(current, baseline, rule, settings);
    }
    let Some(value) = current.value.filter(|_| current.samples >= rule.min_samples) else {
        return Verdict::InsufficientData { samples: current.samples };
    };
    // How much worse than the baseline: a fall, or a rise for a lower-is-better metric.
    let worse_by = if rule.lower_is_better { value - baseline } else { baseline - value };
    let drop = match rule.kind {
        DropKind::Relative if baseline.abs() > f64::EPSILON => worse_by / baseline.abs(),
        DropKind::Relative => 0.0,
        DropKind::Absolute => worse_by,
    };
    if drop <= rule.threshold {
        return Verdict::Healthy { drop };
    }
    if let Some(confidence) = rule.significance {
        // The value's one-sided upper bound must be below the baseline for the drop to count.
        let se = current.std_error.unwrap_or(f64::INFINITY);
        let margin = z_one_sided(confidence) * se;
        // false for NaN or an unknown error
        let significant = if rule.lower_is_better { value - margin > baseline } else { value + margin < baseline };
        if !significant {
            return Verdict::Healthy { drop };
        }
    }
    let severity = if drop >= rule.critical_multiple * rule.threshold { Severity::Critical } else { Severity::Warning };
    Verdict::Breach { drop, severity }
}

impl Severity {
    /// The severity's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl Verdict {
    /// The verdict's name, as the evaluations table records it.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::InsufficientData { .. } => "insufficient_data",
            Verdict::Healthy { .. } => "healthy",
            Verdict::Breach { severity: Severity::Warning, .. } => "breach_warning",
            Verdict::Breach { severity: Severity::Critical, .. } => "breach_critical",
        }
    }

    /// The measured relative drop, when there was enough data to judge.
    pub fn drop(&self) -> Option<f64> {
        match self {
            Verdict::Healthy { drop } | Verdict::Breach { drop, .. } => Some(*drop),
            Verdict::InsufficientData { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipshape_metrics::{MetricKind, SharpeUnit, Signal, Stats};

    fn hit_ratio(hits: u64, trades: u64) -> MetricValue {
        let mut stats = Stats::default();
        for i in 0..trades {
            let outcome = if i < hits { Signal::Long } else { Signal::Short };
            stats.add(Signal::Long, outcome, 0.0);
        }
        MetricKind::HitRatio.compute(&stats, 0.95, SharpeUnit::PerTrade)
    }

    fn rule(threshold: f64) -> Rule {
        Rule {
            kind: DropKind::Relative,
            threshold,
            min_samples: 30,
            significance: Some(0.95),
            critical_multiple: 2.0,
            lower_is_better: false,
            sequential: None,
        }
    }

    #[test]
    fn a_seven_percent_drop_breaches_heightened_but_not_normal() {
        // Baseline 0.56; now 0.52 over 4 000 trades: a 7.1 % relative drop, clearly significant.
        let current = hit_ratio(2080, 4000);
        assert!(matches!(judge(&current, 0.56, &rule(0.05)), Verdict::Breach { severity: Severity::Warning, .. }));
        assert!(matches!(judge(&current, 0.56, &rule(0.10)), Verdict::Healthy { .. }));
    }

    #[test]
    fn a_three_percent_drop_breaches_neither() {
        let current = hit_ratio(2173, 4000); // 0.543: 3 % below 0.56
        assert!(matches!(judge(&current, 0.56, &rule(0.05)), Verdict::Healthy { .. }));
        assert!(matches!(judge(&current, 0.56, &rule(0.10)), Verdict::Healthy { .. }));
    }

    #[test]
    fn small_samples_are_not_significant_large_ones_are() {
        // The same 0.50 hit ratio (an 11 % drop from 0.56): 40 trades prove nothing, 4 000 do.
        assert!(matches!(judge(&hit_ratio(20, 40), 0.56, &rule(0.05)), Verdict::Healthy { .. }));
        assert!(matches!(
            judge(&hit_ratio(2000, 4000), 0.56, &rule(0.05)),
            Verdict::Breach { severity: Severity::Critical, .. }
        ));
        // Without the significance test, the small sample breaches too.
        let mut no_test = rule(0.05);
        no_test.significance = None;
        assert!(matches!(judge(&hit_ratio(20, 40), 0.56, &no_test), Verdict::Breach { .. }));
    }

    #[test]
    fn too_few_samples_is_insufficient_not_healthy() {
        assert_eq!(judge(&hit_ratio(5, 10), 0.56, &rule(0.05)), Verdict::InsufficientData { samples: 10 });
    }

    #[test]
    fn sharpe_drops_are_absolute() {
        let current = MetricValue {
            kind: MetricKind::Sharpe,
            value: Some(-0.2),
            samples: 5000,
            std_error: Some(0.014),
            ci_low: None,
            ci_high: None,
            confidence: 0.95,
            unit: "per trade".into(),
        };
        let sharpe_rule = Rule {
            kind: DropKind::Absolute,
            threshold: 0.15,
            min_samples: 30,
            significance: Some(0.95),
            critical_multiple: 2.0,
            lower_is_better: false,
            sequential: None,
        };
        assert!(matches!(judge(&current, 0.12, &sharpe_rule), Verdict::Breach { severity: Severity::Critical, .. }));
        assert!(matches!(judge(&current, 0.0, &sharpe_rule), Verdict::Breach { severity: Severity::Warning, .. }));
    }

    #[test]
    fn a_lower_is_better_metric_breaches_when_it_rises_significantly() {
        let rule = Rule { lower_is_better: true, ..rule(0.10) };
        let at = |value: f64, se: f64| MetricValue {
            kind: shipshape_metrics::MetricKind::MeanReturn,
            value: Some(value),
            samples: 500,
            std_error: Some(se),
            ci_low: None,
            ci_high: None,
            confidence: 0.95,
            unit: "x".into(),
        };
        // 30 % above a baseline of 1.0, well outside the noise: a critical breach.
        assert!(matches!(judge(&at(1.3, 0.01), 1.0, &rule), Verdict::Breach { severity: Severity::Critical, .. }));
        // 30 % below it is an improvement.
        assert!(matches!(judge(&at(0.7, 0.01), 1.0, &rule), Verdict::Healthy { drop } if drop < 0.0));
        // 30 % above, but within the noise: healthy.
        assert!(matches!(judge(&at(1.3, 0.5), 1.0, &rule), Verdict::Healthy { .. }));
    }

    #[test]
    fn dispersion_is_one_for_independent_trades_and_more_when_blocks_move_together() {
        // Every block at the mean: under-dispersed, floored at 1.
        assert_eq!(dispersion((0..60).map(|_| (50, 31))), 1.0);
        // Blocks all right or all wrong (trades of a minute move together): 50 trades carry one.
        let together = dispersion((0..60).map(|b| (50, if b % 2 == 0 { 50 } else { 0 })));
        assert!((45.0..=55.0).contains(&together), "{together}");
        // Too few blocks to say.
        assert_eq!(dispersion((0..5).map(|b| (50, if b % 2 == 0 { 50 } else { 0 }))), 1.0);
    }
}
