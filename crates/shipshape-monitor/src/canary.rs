//! Canary judgement: the candidate against the stable release, in the same market at the same time.
//!
//! Time is cut into blocks (an hour by default). In each block where both releases have samples,
//! the metric is computed for each and their difference `d = candidate − stable` taken: trades within
//! a block are correlated (the same market moves them), blocks much less so, so the blocks' differences
//! are the observations. A market-wide change (a regime change moving both releases) cancels out of `d`.
//!
//! Over the `n` blocks so far, with mean `m` and sample standard deviation `s`, the
//! [`half_width`] of an anytime-valid confidence sequence (the normal-mixture boundary of Robbins,
//! in the asymptotic form of Waudby-Smith et al., *Time-uniform central limit theory*, 2021) bounds
//! the true mean difference at every evaluation at once, so looking after each block does not inflate
//! the error rates the way repeated fixed-sample tests would:
//!
//! ```text
//! half-width(n) = s · sqrt( 2 (n ρ² + 1) / (n² ρ²) · ln( sqrt(n ρ² + 1) / α ) ),
//! ρ² = (−2 ln α + ln(−2 ln α + 1)) / n*        (tightest at n* blocks)
//! ```
//!
//! Two separate decisions per metric: **harm** when `m + half-width < −harm_margin` (the candidate
//! is worse than the stable by more than the margin, with confidence 1 − α) and **non-inferior**
//! when `m − half-width > −noninferiority_margin`. Fewer than [`MIN_BLOCKS`] blocks, or no
//! variation, is **inconclusive** — never a pass.

use serde::{Deserialize, Serialize};
use shipshape_metrics::metric::{MetricKind, SharpeUnit};
use shipshape_metrics::stats::{FieldStats, Stats};

use crate::alert::Seconds;
use crate::db::Db;
use crate::error::Result;
use crate::evaluate::MetricPolicy;

/// The fewest blocks a verdict rests on.
pub const MIN_BLOCKS: usize = 4;

/// How the comparison is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSettings {
    /// Block length in seconds.
    pub block: Seconds,
    /// Confidence of the sequence (e.g. 0.95: α = 0.05).
    pub confidence: f64,
    /// The number of blocks the boundary is tightest at.
    pub tightest_at: f64,
    /// Harm margin for ratios (hit ratio, precision), in the metric's unit (0.02 = 2 points).
    pub harm_margin_ratio: f64,
    /// Harm margin for return metrics (Sharpe per trade, mean return, win/loss).
    pub harm_margin_return: f64,
    /// Non-inferiority margin for ratios.
    pub noninferiority_margin_ratio: f64,
    /// Non-inferiority margin for return metrics.
    pub noninferiority_margin_return: f64,
    /// Harm margin for a producer's field metrics, relative to the stable's value (0.1 = 10 %).
    pub harm_margin_field: f64,
    /// Non-inferiority margin for field metrics, relative to the stable's value.
    pub noninferiority_margin_field: f64,
}

impl Default for CompareSettings {
    fn default() -> Self {
        CompareSettings {
            block: 3600,
            confidence: 0.95,
            tightest_at: 24.0,
            harm_margin_ratio: 0.02,
            harm_margin_return: 0.05,
            noninferiority_margin_ratio: 0.02,
            noninferiority_margin_return: 0.05,
            harm_margin_field: 0.1,
            noninferiority_margin_field: 0.1,
        }
    }
}

impl CompareSettings {
    fn margins(&self, kind: MetricKind) -> (f64, f64) {
        match kind {
            MetricKind::HitRatio | MetricKind::Precision => (self.harm_margin_ratio, self.noninferiority_margin_ratio),
            _ => (self.harm_margin_return, self.noninferiority_margin_return),
        }
    }
}

/// One metric's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The candidate is worse by more than the harm margin: abort.
    Harm,
    /// The candidate is not worse by more than the non-inferiority margin.
    NonInferior,
    /// Not enough evidence either way (no data is this, never a pass).
    Inconclusive,
}

/// One metric compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The metric's name (`[[monitoring.metrics]]`).
    pub metric: String,
    /// Blocks where both releases had samples.
    pub blocks: usize,
    /// Samples of the candidate over those blocks (trades, longs for precision).
    pub candidate_samples: u64,
    /// Samples of the stable release over those blocks.
    pub stable_samples: u64,
    /// The candidate's value over the whole period, and the stable's (pooled, for people).
    pub candidate_value: Option<f64>,
    /// See `candidate_value`.
    pub stable_value: Option<f64>,
    /// Mean of the blocks' differences (candidate − stable).
    pub difference: Option<f64>,
    /// The confidence sequence's lower end.
    pub low: Option<f64>,
    /// Its upper end.
    pub high: Option<f64>,
    /// The harm margin applied.
    pub harm_margin: f64,
    /// The non-inferiority margin applied.
    pub noninferiority_margin: f64,
    /// The verdict.
    pub verdict: Verdict,
}

/// The normal-mixture confidence sequence's half-width after `n` observations of standard
/// deviation `sd`, at two-sided level `alpha`, tightest near `n_star` observations.
pub fn half_width(n: usize, sd: f64, alpha: f64, n_star: f64) -> f64 {
    let n = n as f64;
    let a = alpha.clamp(1e-12, 0.5);
    let rho2 = (-2.0 * a.ln() + (-2.0 * a.ln() + 1.0).ln()) / n_star.max(1.0);
    let inner = 2.0 * (n * rho2 + 1.0) / (n * n * rho2) * (((n * rho2 + 1.0).sqrt()) / a).ln();
    sd * inner.max(0.0).sqrt()
}

/// One block's values of a metric: the candidate's and the stable's, with their samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockValues {
    /// The candidate's value (`None`: too few samples in the block).
    pub candidate: Option<f64>,
    /// Its samples.
    pub candidate_samples: u64,
    /// The stable's value.
    pub stable: Option<f64>,
    /// Its samples.
    pub stable_samples: u64,
}

/// Compare the pairs of per-block statistics `(candidate, stable)` for `kind`.
pub fn compare_blocks(
    metric: &str,
    kind: MetricKind,
    blocks: &[(Stats, Stats)],
    settings: &CompareSettings,
    unit: SharpeUnit,
) -> Comparison {
    let (harm_margin, noninferiority_margin) = settings.margins(kind);
    let (mut pooled_candidate, mut pooled_stable) = (Stats::default(), Stats::default());
    let values: Vec<BlockValues> = blocks
        .iter()
        .map(|(candidate, stable)| {
            pooled_candidate.merge(candidate);
            pooled_stable.merge(stable);
            let c = kind.compute(candidate, settings.confidence, unit);
            let s = kind.compute(stable, settings.confidence, unit);
            BlockValues { candidate: c.value, candidate_samples: c.samples, stable: s.value, stable_samples: s.samples }
        })
        .collect();
    let pooled = (
        kind.compute(&pooled_candidate, settings.confidence, unit).value,
        kind.compute(&pooled_stable, settings.confidence, unit).value,
    );
    judge_blocks(metric, &values, pooled, (harm_margin, noninferiority_margin), false, settings)
}

/// Compare the pairs of per-block field statistics for a field metric (`field_mean`,
/// `field_rate`): its margins are relative to the stable release's value over the step
/// (`[canary] harm_margin_field`), and `lower_is_better` (slippage, rejects) flips the sign so
/// that harm is always "worse".
pub fn compare_field_blocks(
    metric: &str,
    kind: MetricKind,
    blocks: &[(FieldStats, FieldStats)],
    lower_is_better: bool,
    settings: &CompareSettings,
) -> Comparison {
    let (mut pooled_candidate, mut pooled_stable) = (FieldStats::default(), FieldStats::default());
    let values: Vec<BlockValues> = blocks
        .iter()
        .map(|(candidate, stable)| {
            pooled_candidate.merge(candidate);
            pooled_stable.merge(stable);
            let c = kind.compute_field(candidate, settings.confidence);
            let s = kind.compute_field(stable, settings.confidence);
            BlockValues { candidate: c.value, candidate_samples: c.samples, stable: s.value, stable_samples: s.samples }
        })
        .collect();
    let pooled = (
        kind.compute_field(&pooled_candidate, settings.confidence).value,
        kind.compute_field(&pooled_stable, settings.confidence).value,
    );
    let scale = pooled.1.map_or(0.0, f64::abs);
    let margins = (settings.harm_margin_field * scale, settings.noninferiority_margin_field * scale);
    judge_blocks(metric, &values, pooled, margins, lower_is_better, settings)
}

/// The confidence sequence over the blocks' differences and the verdict (see the module's text).
fn judge_blocks(
    metric: &str,
    values: &[BlockValues],
    (candidate_value, stable_value): (Option<f64>, Option<f64>),
    (harm_margin, noninferiority_margin): (f64, f64),
    lower_is_better: bool,
    settings: &CompareSettings,
) -> Comparison {
    // In "higher is better" units: a lower-is-better metric's difference is flipped.
    let sign = if lower_is_better { -1.0 } else { 1.0 };
    let mut differences = Vec::new();
    let (mut candidate_samples, mut stable_samples) = (0, 0);
    for block in values {
        if let (Some(cv), Some(sv)) = (block.candidate, block.stable) {
            differences.push(sign * (cv - sv));
            candidate_samples += block.candidate_samples;
            stable_samples += block.stable_samples;
        }
    }
    let n = differences.len();
    let mut out = Comparison {
        metric: metric.to_string(),
        blocks: n,
        candidate_samples,
        stable_samples,
        candidate_value,
        stable_value,
        difference: None,
        low: None,
        high: None,
        harm_margin,
        noninferiority_margin,
        verdict: Verdict::Inconclusive,
    };
    if n == 0 {
        return out;
    }
    let mean = differences.iter().sum::<f64>() / n as f64;
    out.difference = Some(mean);
    // The boundary is asymptotic: with two or three blocks the sample deviation itself is too
    // uncertain to lean on (it can come out near zero by chance), so no verdict before
    // `MIN_BLOCKS` blocks.
    if n < MIN_BLOCKS {
        return out;
    }
    let variance = differences.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
    let sd = variance.sqrt();
    if !sd.is_finite() || sd <= 0.0 {
        return out;
    }
    let width = half_width(n, sd, 1.0 - settings.confidence, settings.tightest_at);
    let (low, high) = (mean - width, mean + width);
    out.low = Some(low);
    out.high = Some(high);
    out.verdict = if high < -harm_margin {
        Verdict::Harm
    } else if low > -noninferiority_margin {
        Verdict::NonInferior
    } else {
        Verdict::Inconclusive
    };
    out
}

/// Compare `candidate` with `stable` over `[from, to)` for every metric of `policies` (signal and
/// field metrics), reading the monitor's database block by block.
pub fn compare(
    db: &Db,
    policies: &[MetricPolicy],
    stable: &str,
    candidate: &str,
    (from, to): (Seconds, Seconds),
    settings: &CompareSettings,
    unit: SharpeUnit,
) -> Result<Vec<Comparison>> {
    let block = settings.block.max(60);
    let mut out = Vec::new();
    for policy in policies {
        if let (true, Some(field)) = (policy.kind.is_field(), policy.field.as_deref()) {
            let mut pairs = Vec::new();
            let mut start = from.div_euclid(block) * block;
            while start < to {
                let end = (start + block).min(to);
                let lower = start.max(from);
                let c = db.field_window(Some(candidate), &policy.strategies, field, lower, end)?;
                let s = db.field_window(Some(stable), &policy.strategies, field, lower, end)?;
                pairs.push((c, s));
                start += block;
            }
            let lower_is_better = policy.heightened.rule.lower_is_better;
            out.push(compare_field_blocks(&policy.name, policy.kind, &pairs, lower_is_better, settings));
            continue;
        }
        if policy.kind.is_field() {
            continue;
        }
        let mut pairs = Vec::new();
        let mut start = from.div_euclid(block) * block;
        while start < to {
            let end = (start + block).min(to);
            let lower = start.max(from);
            let c = db.window_of(Some(candidate), &policy.strategies, lower, end)?;
            let s = db.window_of(Some(stable), &policy.strategies, lower, end)?;
            pairs.push((c, s));
            start += block;
        }
        out.push(compare_blocks(&policy.name, policy.kind, &pairs, settings, unit));
    }
    Ok(out)
}

/// What [`simulate`] runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanaryScenario {
    /// Trades per hour of both releases together (Poisson arrivals).
    pub trades_per_hour: f64,
    /// The candidate's share of them.
    pub fraction: f64,
    /// The stable release's true hit ratio.
    pub baseline: f64,
    /// Hours simulated per run.
    pub hours: f64,
    /// Runs.
    pub trials: usize,
    /// The first run's seed.
    pub seed: u64,
}

/// What [`simulate`] found for one gap between the candidate and the stable release.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// How much worse the candidate's true hit ratio is (0 for an equal candidate).
    pub gap: f64,
    /// Share of runs aborted within the horizon.
    pub aborted: f64,
    /// Median and 90th percentile hours to the abort, over the runs that aborted.
    pub abort_hours_median: Option<f64>,
    /// See `abort_hours_median`.
    pub abort_hours_p90: Option<f64>,
    /// Share of runs shown non-inferior within the horizon (before any abort).
    pub noninferior: f64,
    /// Median hours to non-inferiority, over the runs that got there.
    pub noninferior_hours_median: Option<f64>,
    /// Runs.
    pub trials: usize,
}

/// Predict a canary's decisions on a ratio metric (hit ratio, precision) by simulation: trades
/// arrive as a Poisson process at `trades_per_hour`, a share `fraction` traded by the candidate;
/// each is right with the stable's probability `baseline`, or `baseline − gap` for the candidate.
/// After every block the judgement above runs on the blocks so far. Seeded and pure.
pub fn simulate(settings: &CompareSettings, scenario: &CanaryScenario, gap: f64) -> Prediction {
    let CanaryScenario { trades_per_hour, fraction, baseline, hours, trials, seed } = *scenario;
    let block_hours = settings.block.max(60) as f64 / 3600.0;
    let blocks = (hours / block_hours).ceil().max(1.0) as usize;
    let (mut abort_at, mut ni_at) = (Vec::new(), Vec::new());
    let mut rng = crate::calibrate::Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66);
    let draw = |rng: &mut crate::calibrate::Rng, n: u64, p: f64| {
        let mut stats = Stats::default();
        for _ in 0..n {
            let right = rng.uniform() < p;
            let (outcome, ret) = if right {
                (shipshape_metrics::Signal::Long, 0.004)
            } else {
                (shipshape_metrics::Signal::Short, -0.004)
            };
            stats.add(shipshape_metrics::Signal::Long, outcome, ret);
        }
        stats
    };
    for _ in 0..trials {
        let mut pairs = Vec::with_capacity(blocks);
        let mut noninferior = None;
        for b in 0..blocks {
            let n_candidate = rng.poisson(trades_per_hour * fraction * block_hours);
            let n_stable = rng.poisson(trades_per_hour * (1.0 - fraction) * block_hours);
            let candidate = draw(&mut rng, n_candidate, (baseline - gap).clamp(0.0, 1.0));
            let stable = draw(&mut rng, n_stable, baseline);
            pairs.push((candidate, stable));
            let c = compare_blocks("simulated", MetricKind::HitRatio, &pairs, settings, SharpeUnit::PerTrade);
            let elapsed = (b + 1) as f64 * block_hours;
            if c.verdict == Verdict::Harm {
                abort_at.push(elapsed);
                break;
            }
            if c.verdict == Verdict::NonInferior && noninferior.is_none() {
                noninferior = Some(elapsed);
            }
        }
        ni_at.extend(noninferior);
    }
    let quantile = |values: &mut Vec<f64>, q: f64| -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some(values[((values.len() - 1) as f64 * q).round() as usize])
    };
    let share = |n: usize| n as f64 / trials.max(1) as f64;
    Prediction {
        gap,
        aborted: share(abort_at.len()),
        abort_hours_median: quantile(&mut abort_at, 0.5),
        abort_hours_p90: quantile(&mut abort_at, 0.9),
        noninferior: share(ni_at.len()),
        noninferior_hours_median: quantile(&mut ni_at, 0.5),
        trials,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use shipshape_metrics::event::Signal;

    use super::*;

    /// A block of `n` long trades with a share `right` of them right (deterministic spread).
    fn block(n: usize, right: f64, phase: f64) -> Stats {
        let mut stats = Stats::default();
        for i in 0..n {
            let hit = ((i as f64) * 0.618_033_988_75 + phase).fract() < right;
            let (outcome, ret) = if hit { (Signal::Long, 0.004) } else { (Signal::Short, -0.004) };
            stats.add(Signal::Long, outcome, ret);
        }
        stats
    }

    fn run(blocks: usize, candidate: f64, stable: f64, per_block: usize) -> Comparison {
        let pairs: Vec<_> = (0..blocks)
            .map(|b| {
                // Block-to-block market noise moving both releases together.
                let market = 0.05 * ((b as f64 * 1.7).sin());
                (
                    block(per_block, candidate + market, b as f64 * 0.37),
                    block(per_block * 9, stable + market, b as f64 * 0.11),
                )
            })
            .collect();
        compare_blocks("hit", MetricKind::HitRatio, &pairs, &CompareSettings::default(), SharpeUnit::PerTrade)
    }

    #[test]
    fn a_clearly_worse_candidate_is_harm() {
        let c = run(12, 0.45, 0.56, 60);
        assert_eq!(c.verdict, Verdict::Harm, "{c:?}");
        assert!(c.high.unwrap() < -0.02);
    }

    #[test]
    fn an_equal_candidate_becomes_non_inferior_with_enough_blocks_and_never_harm() {
        let early = run(2, 0.56, 0.56, 60);
        assert_ne!(early.verdict, Verdict::Harm);
        let late = run(48, 0.56, 0.56, 200);
        assert_eq!(late.verdict, Verdict::NonInferior, "{late:?}");
    }

    #[test]
    fn no_data_or_one_block_is_inconclusive() {
        let none = compare_blocks("hit", MetricKind::HitRatio, &[], &CompareSettings::default(), SharpeUnit::PerTrade);
        assert_eq!((none.verdict, none.blocks), (Verdict::Inconclusive, 0));
        let empty = vec![(Stats::default(), block(100, 0.5, 0.0)); 10];
        let c = compare_blocks("hit", MetricKind::HitRatio, &empty, &CompareSettings::default(), SharpeUnit::PerTrade);
        assert_eq!((c.verdict, c.blocks), (Verdict::Inconclusive, 0), "candidate silent: no pass");
        assert_eq!(run(1, 0.3, 0.6, 100).verdict, Verdict::Inconclusive);
    }

    #[test]
    fn a_regime_change_moving_both_is_not_harm() {
        // Both lose 10 % of their hit ratio halfway through: the differences stay near zero.
        let pairs: Vec<_> = (0..24)
            .map(|b| {
                let level = if b < 12 { 0.56 } else { 0.56 * 0.9 };
                (block(80, level, b as f64 * 0.21), block(720, level, b as f64 * 0.13))
            })
            .collect();
        let c = compare_blocks("hit", MetricKind::HitRatio, &pairs, &CompareSettings::default(), SharpeUnit::PerTrade);
        assert_ne!(c.verdict, Verdict::Harm, "{c:?}");
    }

    #[test]
    fn simulation_aborts_large_gaps_fast_and_rarely_aborts_an_equal_candidate() {
        let settings = CompareSettings::default();
        let scenario = |trials, seed| CanaryScenario {
            trades_per_hour: 2000.0,
            fraction: 0.1,
            baseline: 0.56,
            hours: 48.0,
            trials,
            seed,
        };
        let bad = simulate(&settings, &scenario(20, 1), 0.12);
        assert_eq!(bad.aborted, 1.0, "{bad:?}");
        assert!(bad.abort_hours_p90.unwrap() <= 12.0, "{bad:?}");
        let small = simulate(&settings, &scenario(20, 1), 0.04);
        assert!(small.abort_hours_median.unwrap_or(f64::INFINITY) > bad.abort_hours_median.unwrap(), "{small:?}");
        let equal = simulate(&settings, &scenario(40, 2), 0.0);
        assert!(equal.aborted <= 0.05, "false aborts: {equal:?}");
        assert!(equal.noninferior > 0.5, "{equal:?}");
        assert_eq!(simulate(&settings, &scenario(20, 1), 0.12), bad, "seeded: the same figures");
    }

    #[test]
    fn a_field_metric_where_lower_is_better_is_harm_when_the_candidate_is_higher() {
        // Slippage in bps: the stable about 1.0, the candidate about 1.5 (worse: higher).
        let block = |n: usize, mean: f64, phase: usize| {
            let mut stats = FieldStats::default();
            for i in 0..n {
                stats.add(mean + 0.2 * (((i + phase) % 7) as f64 - 3.0) / 3.0);
            }
            stats
        };
        let pairs: Vec<_> =
            (0..10).map(|b| (block(50, 1.5 + 0.01 * b as f64, b), block(450, 1.0 + 0.01 * b as f64, b + 3))).collect();
        let settings = CompareSettings::default();
        let worse = compare_field_blocks("slippage", MetricKind::FieldMean, &pairs, true, &settings);
        assert_eq!(worse.verdict, Verdict::Harm, "{worse:?}");
        assert!(
            (worse.harm_margin - 0.1 * worse.stable_value.unwrap()).abs() < 1e-12,
            "relative to the stable's value"
        );
        // The same numbers where higher is better: the candidate is better, never harm.
        let better = compare_field_blocks("fill_rate", MetricKind::FieldMean, &pairs, false, &settings);
        assert_eq!(better.verdict, Verdict::NonInferior, "{better:?}");
    }

    #[test]
    fn the_half_width_shrinks_like_one_over_root_n_and_widens_with_confidence() {
        let w = |n| half_width(n, 1.0, 0.05, 24.0);
        assert!(w(10) > w(40) && w(40) > w(160));
        let ratio = w(100) / w(400);
        assert!((1.6..2.4).contains(&ratio), "{ratio}");
        assert!(half_width(20, 1.0, 0.01, 24.0) > half_width(20, 1.0, 0.05, 24.0));
        // Wider than the fixed-sample interval at the same n (the price of looking every time).
        assert!(w(24) > 1.96 / 24f64.sqrt());
    }
}
