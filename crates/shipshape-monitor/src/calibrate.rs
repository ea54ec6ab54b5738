//! `shipshape calibrate`: what a monitoring policy does for a trade rate, by simulation — the
//! detection delay of each detector for a range of drops, and its false alarms in quiet operation.
//!
//! The simulation runs the monitor's own code on synthetic minutes: trades arrive as a Poisson
//! process at the given rate, each right with probability `baseline × (1 − drop)` from the deploy on
//! (Bernoulli outcomes; a ratio metric — hit ratio or precision); every evaluation computes the
//! metric with [`MetricKind::compute`] over the detector's window, judges it with [`judge`] and
//! steps the alert state machine with [`alert::step`] — exactly what `serve` does, minus the
//! database. The window detector is evaluated every `eval_interval`, the sequential one every
//! minute. Pure and seeded: the same arguments give the same figures.

use serde::Serialize;
use shipshape_metrics::{MetricKind, SharpeUnit, Signal, Stats};

use crate::alert::{self, Seconds, State};
use crate::evaluate::{MetricPolicy, Mode};
use crate::judge::{BlockSums, judge};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Trades per hour (Poisson arrivals).
    pub trades_per_hour: f64,
    /// The metric's true value before any regression (the baseline it is judged against).
    pub baseline: f64,
    /// Simulated time after each deploy, for the detection runs.
    pub horizon_minutes: i64,
    /// How many runs per drop.
    pub trials: usize,
    /// The seed of the first run.
    pub seed: u64,
    /// Seconds of heightened monitoring after a deploy.
    pub heightened_seconds: Seconds,
    /// Evaluation interval of the window detector.
    pub eval_interval: Seconds,
}

/// One detector's figures for one drop.
#[derive(Debug, Clone, Serialize)]
pub struct Delay {
    /// Relative drop simulated (0.10 = 10 % lower than the baseline).
    pub drop: f64,
    /// Runs in which the metric fired within the horizon.
    pub detected: usize,
    /// Runs.
    pub trials: usize,
    /// Median minutes from the deploy to firing (`None` when half the runs never fired).
    pub median_minutes: Option<f64>,
    /// The 95th percentile of the same (`None` when more than 5 % never fired).
    pub p95_minutes: Option<f64>,
    /// The slowest run (`None` when one never fired).
    pub slowest_minutes: Option<f64>,
}

/// One detector's behaviour.
#[derive(Debug, Clone, Serialize)]
pub struct DetectorFigures {
    /// `window` or `sequential`.
    pub detector: &'static str,
    /// Detection per drop.
    pub delays: Vec<Delay>,
    /// Alerts fired in quiet operation (no regression), per 30 days.
    pub false_alarms_per_30_days: f64,
    /// Simulated quiet days behind that figure.
    pub quiet_days: f64,
}

/// A small, fast, seeded generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Poisson(λ): Knuth's method below 30, else the normal approximation (rounded, at least 0).
    fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let (mut k, mut p) = (0u64, 1.0);
            loop {
                p *= self.uniform();
                if p <= limit {
                    return k;
                }
                k += 1;
            }
        }
        let (u1, u2) = (self.uniform().max(f64::MIN_POSITIVE), self.uniform());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (lambda + z * lambda.sqrt()).round().max(0.0) as u64
    }
}

/// One minute of trades: `n` trades, each right with probability `p` (a long signal; right means
/// the outcome agrees, so hit ratio and precision see the same Bernoulli draws).
fn minute(rng: &mut Rng, lambda: f64, p: f64) -> Stats {
    let mut stats = Stats::default();
    for _ in 0..rng.poisson(lambda) {
        let right = rng.uniform() < p;
        stats.add(Signal::Long, if right { Signal::Long } else { Signal::Short }, if right { 0.004 } else { -0.004 });
    }
    stats
}

/// When the policy first fires on a simulated run (minutes after the deploy), and how many alert
/// episodes fired in all, running `minutes` minutes at true value `p`.
fn run(policy: &MetricPolicy, scenario: &Scenario, p: f64, minutes: i64, seed: u64) -> (Option<i64>, u64) {
    let mut rng = Rng(seed);
    let lambda = scenario.trades_per_hour / 60.0;
    // Prefix sums of the minutes since the deploy: any window is one subtraction.
    let mut prefix: Vec<Stats> = Vec::with_capacity(minutes as usize + 1);
    prefix.push(Stats::default());
    // Prefix sums of each minute's (block present, trades, hits, hits²/trades): the design effect
    // of the last 24 hours' blocks in O(1), as the monitor estimates it (judge::dispersion).
    let mut blocks: Vec<BlockSums> = Vec::with_capacity(minutes as usize + 1);
    blocks.push(BlockSums::default());
    let mut state = State::Inactive;
    let mut first = None;
    let mut episodes = 0;
    for m in 1..=minutes {
        let mut total = *prefix.last().unwrap_or(&Stats::default());
        let this = minute(&mut rng, lambda, p);
        total.merge(&this);
        prefix.push(total);
        let mut sums = *blocks.last().unwrap_or(&BlockSums::default());
        sums.add(this.trades, this.hits);
        blocks.push(sums);
        let now = m * 60;
        let mode = if now < scenario.heightened_seconds { Mode::Heightened } else { Mode::Normal };
        let rules = policy.rules(mode);
        let sequential = rules.rule.sequential.is_some();
        if !sequential && now % scenario.eval_interval.max(60) != 0 {
            continue;
        }
        let from_minute = if sequential { 0 } else { (m - rules.window / 60).max(0) };
        let mut window = prefix[m as usize];
        window.subtract(&prefix[from_minute as usize]);
        let confidence = rules.rule.significance.unwrap_or(0.95);
        let value = policy.kind.compute(&window, confidence, SharpeUnit::PerTrade);
        let mut rule = rules.rule;
        if let Some(sequential) = rule.sequential.as_mut().filter(|s| s.estimate) {
            sequential.design_effect = blocks[m as usize].since(&blocks[(m - 1440).max(0) as usize]).dispersion();
        }
        let verdict = judge(&value, scenario.baseline, &rule);
        let (next, _) = alert::step(state, &verdict, now, &rules.cadence);
        if matches!(next, State::Firing { .. }) && !matches!(state, State::Firing { .. }) {
            episodes += 1;
            first.get_or_insert(m);
        }
        state = next;
    }
    (first, episodes)
}

fn percentile(sorted: &[Option<i64>], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].map(|m| m as f64)
}

/// The figures of `policy` (a ratio metric) under `scenario`, for each relative `drop`, plus the
/// false alarms of `quiet_days` of operation without a regression.
pub fn calibrate(policy: &MetricPolicy, scenario: &Scenario, drops: &[f64], quiet_days: f64) -> DetectorFigures {
    let detector = if policy.heightened.rule.sequential.is_some() { "sequential" } else { "window" };
    let mut delays = Vec::new();
    for (d, drop) in drops.iter().enumerate() {
        let p = scenario.baseline * (1.0 - drop);
        let mut firsts: Vec<Option<i64>> = (0..scenario.trials)
            .map(|t| run(policy, scenario, p, scenario.horizon_minutes, scenario.seed + (d * 1000 + t) as u64).0)
            .collect();
        // Never fired sorts last.
        firsts.sort_by_key(|f| f.unwrap_or(i64::MAX));
        delays.push(Delay {
            drop: *drop,
            detected: firsts.iter().filter(|f| f.is_some()).count(),
            trials: scenario.trials,
            median_minutes: percentile(&firsts, 0.5),
            p95_minutes: percentile(&firsts, 0.95),
            slowest_minutes: firsts.last().copied().flatten().map(|m| m as f64),
        });
    }
    // Quiet operation: runs of 30 days (or less) until `quiet_days` are covered.
    let run_days = quiet_days.min(30.0);
    let runs = (quiet_days / run_days).ceil().max(1.0) as usize;
    let mut alarms = 0;
    for r in 0..runs {
        let minutes = (run_days * 1440.0) as i64;
        alarms += run(policy, scenario, scenario.baseline, minutes, scenario.seed + 1_000_000 + r as u64).1;
    }
    let covered = run_days * runs as f64;
    DetectorFigures { detector, delays, false_alarms_per_30_days: alarms as f64 * 30.0 / covered, quiet_days: covered }
}

/// Whether `kind` can be simulated (Bernoulli outcomes).
pub fn simulable(kind: MetricKind) -> bool {
    matches!(kind, MetricKind::HitRatio | MetricKind::Precision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Cadence;
    use crate::evaluate::ModeRules;
    use crate::judge::{DropKind, Rule, Sequential};

    fn policy(sequential: bool) -> MetricPolicy {
        let rule = |threshold| Rule {
            kind: DropKind::Relative,
            threshold,
            min_samples: 30,
            significance: Some(0.95),
            critical_multiple: 2.0,
            lower_is_better: false,
            sequential: sequential.then_some(Sequential { alpha: 0.2, design_effect: 1.0, estimate: true }),
        };
        let cadence = Cadence { consecutive_breaches: if sequential { 1 } else { 3 }, repeat_every: 7200 };
        MetricPolicy {
            name: "hit".into(),
            strategy: "intraday".into(),
            strategies: vec!["intraday".into()],
            field: None,
            kind: MetricKind::HitRatio,
            heightened: ModeRules { window: 6 * 3600, rule: rule(0.05), cadence },
            normal: ModeRules { window: 24 * 3600, rule: rule(0.10), cadence },
        }
    }

    fn scenario(rate: f64) -> Scenario {
        Scenario {
            trades_per_hour: rate,
            baseline: 0.62,
            horizon_minutes: 6 * 60,
            trials: 8,
            seed: 7,
            heightened_seconds: 48 * 3600,
            eval_interval: 600,
        }
    }

    #[test]
    fn a_broken_model_is_caught_within_minutes_by_the_sequential_test_and_in_30_by_the_window_rule() {
        let sequential = calibrate(&policy(true), &scenario(3000.0), &[0.40], 0.0);
        let delay = &sequential.delays[0];
        assert_eq!(delay.detected, 8);
        assert!(delay.slowest_minutes.unwrap() <= 5.0, "{delay:?}");
        // The window rule needs three breaching evaluations ten minutes apart: 30 minutes at best.
        let window = calibrate(&policy(false), &scenario(3000.0), &[0.40], 0.0);
        assert_eq!(window.delays[0].median_minutes, Some(30.0), "{:?}", window.delays[0]);
    }

    #[test]
    fn the_same_seed_gives_the_same_figures() {
        let a = calibrate(&policy(true), &scenario(3000.0), &[0.10], 1.0);
        let b = calibrate(&policy(true), &scenario(3000.0), &[0.10], 1.0);
        assert_eq!(a.delays[0].median_minutes, b.delays[0].median_minutes);
        assert_eq!(a.false_alarms_per_30_days, b.false_alarms_per_30_days);
    }

    #[test]
    fn the_sequential_test_rarely_fires_on_a_drop_below_half_the_threshold_or_none() {
        // 2 % is inside the null (at most half of the 5 % threshold): rare, however often it looks.
        let figures = calibrate(&policy(true), &scenario(3000.0), &[0.0, 0.02], 0.0);
        for delay in &figures.delays {
            assert!(delay.detected <= 1, "{delay:?}");
        }
    }

    /// Issue 16's targets for the sequential detector (baseline hit ratio 0.62, 5 % heightened
    /// threshold), reproduced on 40 seeded runs per row (8 runs leave a median at the mercy of the
    /// seed): at 3,000 trades/h a 10 % drop within a median of 20 minutes and a 95th percentile of
    /// 40, a 40 % drop within 5 minutes in every run, a 3 % drop firing in at most a quarter of
    /// six-hour runs; at 120 trades/h a 10 % drop within a median of 6 hours; no false alarm in 90
    /// quiet days at either rate. (`shipshape calibrate --trials 40` prints the same.)
    #[test]
    fn the_sequential_detector_meets_the_targets() {
        let forty_runs = Scenario { trials: 40, ..scenario(3000.0) };
        let fast = calibrate(&policy(true), &forty_runs, &[0.03, 0.10, 0.40], 90.0);
        let [three, ten, forty] = &fast.delays[..] else { unreachable!() };
        assert!(three.detected <= 10, "{three:?}");
        assert!(ten.median_minutes.unwrap() <= 20.0 && ten.p95_minutes.unwrap() <= 40.0, "{ten:?}");
        assert!(forty.detected == 40 && forty.slowest_minutes.unwrap() <= 5.0, "{forty:?}");
        assert_eq!(fast.false_alarms_per_30_days, 0.0);
        let slow = calibrate(
            &policy(true),
            &Scenario { horizon_minutes: 12 * 60, trials: 40, ..scenario(120.0) },
            &[0.10],
            90.0,
        );
        assert!(slow.delays[0].median_minutes.unwrap() <= 360.0, "{:?}", slow.delays[0]);
        assert_eq!(slow.false_alarms_per_30_days, 0.0);
    }
}
