//! `shipshape calibrate`: what a monitoring policy does for a trade rate, by simulation — the
//! detection delay of each detector for a range of drops, and its false alarms in quiet operation.
//!
//! The simulation runs the monitor's own code on synthetic minutes: trades arrive as a Poisson
//! process at the given rate; from the deploy on each trade is drawn so that the metric's true
//! value is the regressed one ([`Outcomes`]): right or wrong (Bernoulli) for a ratio metric — hit
//! ratio, precision, a field's rate — or a normally distributed value for the others — mean
//! return, Sharpe, win/loss ratio, a field's mean. Every evaluation computes the metric with
//! [`MetricKind::compute`] over the detector's window, judges it with [`judge`] and steps the alert
//! state machine with [`alert::step`] — exactly what `serve` does, minus the database. The window
//! detector is evaluated every `eval_interval`, the sequential one every minute. Pure and seeded:
//! the same arguments give the same figures.

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
    /// The standard deviation of one trade's value (its return; a field's value for `field_mean`),
    /// for the metrics simulated with normal values; ignored for ratio metrics.
    pub sd: Option<f64>,
    /// The unit Sharpe ratios are configured in.
    pub sharpe_unit: SharpeUnit,
}

/// How one trade is drawn for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcomes {
    /// Right with probability p, the metric's value (hit ratio, precision, a field's rate).
    Bernoulli,
    /// A value from a normal distribution of a given standard deviation, its mean set so that the
    /// metric takes the simulated value (mean return, Sharpe, win/loss ratio, a field's mean).
    Normal,
}

/// How trades are drawn for `kind`; `None` for the dead-man's switch, which has no trades to draw.
pub fn outcomes(kind: MetricKind) -> Option<Outcomes> {
    match kind {
        MetricKind::HitRatio | MetricKind::Precision | MetricKind::FieldRate => Some(Outcomes::Bernoulli),
        MetricKind::MeanReturn | MetricKind::Sharpe | MetricKind::WinLoss | MetricKind::FieldMean => {
            Some(Outcomes::Normal)
        }
        MetricKind::Silence => None,
    }
}

/// The kind whose estimator the simulation computes: a field's rate is a ratio like the hit
/// ratio, a field's mean a mean like the mean return (same estimators, same standard errors).
fn simulated_kind(kind: MetricKind) -> MetricKind {
    match kind {
        MetricKind::FieldRate => MetricKind::HitRatio,
        MetricKind::FieldMean => MetricKind::MeanReturn,
        other => other,
    }
}

/// One trade's distribution.
#[derive(Debug, Clone, Copy)]
enum Draw {
    /// Right with this probability.
    Right(f64),
    /// Normal with this mean and standard deviation.
    Normal { mean: f64, sd: f64 },
}

/// The standard normal distribution function (Abramowitz & Stegun 7.1.26, error below 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-z * z).exp();
    if x >= 0.0 { 1.0 - erfc / 2.0 } else { erfc / 2.0 }
}

fn normal_pdf(x: f64) -> f64 {
    (-x * x / 2.0).exp() / (std::f64::consts::TAU).sqrt()
}

/// The win/loss ratio (mean win over mean loss) of a normal value with this mean and deviation.
fn normal_win_loss(mean: f64, sd: f64) -> f64 {
    let a = mean / sd;
    let win = mean + sd * normal_pdf(a) / normal_cdf(a).max(f64::MIN_POSITIVE);
    let loss = -mean + sd * normal_pdf(a) / normal_cdf(-a).max(f64::MIN_POSITIVE);
    win / loss
}

/// The trade distribution under which `kind` has the value `value`; `None` when no distribution
/// of the scenario's shape has it (a win/loss ratio of 0, a ratio outside [0, 1]).
fn draw_for(kind: MetricKind, value: f64, scenario: &Scenario) -> Option<Draw> {
    match outcomes(kind)? {
        Outcomes::Bernoulli => (0.0..=1.0).contains(&value).then_some(Draw::Right(value)),
        Outcomes::Normal => {
            let sd = scenario.sd.filter(|sd| *sd > 0.0 && sd.is_finite())?;
            let mean = match simulated_kind(kind) {
                MetricKind::Sharpe => value / scenario.sharpe_unit.factor() * sd,
                MetricKind::WinLoss => {
                    if value <= 0.0 || !value.is_finite() {
                        return None;
                    }
                    // The ratio rises with the mean: bisect over ±10 deviations.
                    let (mut low, mut high) = (-10.0 * sd, 10.0 * sd);
                    for _ in 0..100 {
                        let mid = (low + high) / 2.0;
                        if normal_win_loss(mid, sd) < value {
                            low = mid;
                        } else {
                            high = mid;
                        }
                    }
                    (low + high) / 2.0
                }
                _ => value,
            };
            Some(Draw::Normal { mean, sd })
        }
    }
}

/// The value a regression of `drop` takes the metric to, measured as `rule` measures drops
/// (relative or absolute; a rise when lower is better).
pub fn regressed(baseline: f64, drop: f64, rule: &crate::judge::Rule) -> f64 {
    let delta = match rule.kind {
        crate::judge::DropKind::Relative => baseline.abs() * drop,
        crate::judge::DropKind::Absolute => drop,
    };
    if rule.lower_is_better { baseline + delta } else { baseline - delta }
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
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(f64::MIN_POSITIVE), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Poisson(λ): Knuth's method below 30, else the normal approximation (rounded, at least 0).
    pub(crate) fn poisson(&mut self, lambda: f64) -> u64 {
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

/// One minute of trades: a Poisson number of long signals, each drawn from `draw` (right means the
/// outcome agrees, so hit ratio and precision see the same Bernoulli draws; a normal value is the
/// trade's return, its sign the outcome).
fn minute(rng: &mut Rng, lambda: f64, draw: Draw) -> Stats {
    let mut stats = Stats::default();
    for _ in 0..rng.poisson(lambda) {
        match draw {
            Draw::Right(p) => {
                let right = rng.uniform() < p;
                stats.add(
                    Signal::Long,
                    if right { Signal::Long } else { Signal::Short },
                    if right { 0.004 } else { -0.004 },
                );
            }
            Draw::Normal { mean, sd } => {
                let value = (mean + sd * rng.normal()).clamp(-1000.0, 1000.0);
                stats.add(Signal::Long, if value > 0.0 { Signal::Long } else { Signal::Short }, value);
            }
        }
    }
    stats
}

/// When the policy first fires on a simulated run (minutes after the deploy), and how many alert
/// episodes fired in all, running `minutes` minutes with trades drawn from `draw`.
fn run(policy: &MetricPolicy, scenario: &Scenario, draw: Draw, minutes: i64, seed: u64) -> (Option<i64>, u64) {
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
        let this = minute(&mut rng, lambda, draw);
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
        let value = simulated_kind(policy.kind).compute(&window, confidence, scenario.sharpe_unit);
        let mut rule = rules.rule;
        // As the monitor does: estimated for hit ratio and precision, else as configured.
        let ratio = matches!(policy.kind, MetricKind::HitRatio | MetricKind::Precision);
        if let Some(sequential) = rule.sequential.as_mut().filter(|s| s.estimate && ratio) {
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

/// The figures of `policy` under `scenario`, for each `drop` (measured as the policy's heightened
/// rule measures drops: relative or absolute), plus the false alarms of `quiet_days` of operation
/// without a regression. `None` when no trade distribution gives the baseline or a regressed value
/// (a ratio outside [0, 1], no standard deviation for a normal metric).
pub fn calibrate(
    policy: &MetricPolicy,
    scenario: &Scenario,
    drops: &[f64],
    quiet_days: f64,
) -> Option<DetectorFigures> {
    let detector = if policy.heightened.rule.sequential.is_some() { "sequential" } else { "window" };
    let quiet = draw_for(policy.kind, scenario.baseline, scenario)?;
    let mut delays = Vec::new();
    for (d, drop) in drops.iter().enumerate() {
        let draw = draw_for(policy.kind, regressed(scenario.baseline, *drop, &policy.heightened.rule), scenario)?;
        let mut firsts: Vec<Option<i64>> = (0..scenario.trials)
            .map(|t| run(policy, scenario, draw, scenario.horizon_minutes, scenario.seed + (d * 1000 + t) as u64).0)
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
        alarms += run(policy, scenario, quiet, minutes, scenario.seed + 1_000_000 + r as u64).1;
    }
    let covered = run_days * runs as f64;
    Some(DetectorFigures {
        detector,
        delays,
        false_alarms_per_30_days: alarms as f64 * 30.0 / covered,
        quiet_days: covered,
    })
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
            sd: None,
            sharpe_unit: SharpeUnit::PerTrade,
        }
    }

    fn figures(policy: &MetricPolicy, scenario: &Scenario, drops: &[f64], quiet_days: f64) -> DetectorFigures {
        calibrate(policy, scenario, drops, quiet_days).expect("a distribution for the scenario")
    }

    /// A metric simulated with normal values, its thresholds absolute (0.001 = one tenth of a
    /// percent of mean return, heightened) as the config writes them.
    fn normal_policy(kind: MetricKind, sequential: bool, threshold: f64) -> MetricPolicy {
        let mut policy = policy(sequential);
        policy.kind = kind;
        for (mode, t) in [(&mut policy.heightened, threshold), (&mut policy.normal, 2.0 * threshold)] {
            mode.rule.kind = DropKind::Absolute;
            mode.rule.threshold = t;
        }
        policy
    }

    /// The metric computed over a million trades drawn for `value` comes out at `value`: the
    /// mapping from a metric's value to the trades' distribution is right for every normal kind.
    #[test]
    fn each_normal_kind_is_drawn_at_the_value_asked_for() {
        let annual = SharpeUnit::Annualised(252.0);
        for (kind, value, unit) in [
            (MetricKind::MeanReturn, 0.0005, SharpeUnit::PerTrade),
            (MetricKind::FieldMean, 1.4, SharpeUnit::PerTrade),
            (MetricKind::Sharpe, 0.08, SharpeUnit::PerTrade),
            (MetricKind::Sharpe, 1.2, annual),
            (MetricKind::WinLoss, 1.15, SharpeUnit::PerTrade),
            (MetricKind::WinLoss, 0.8, SharpeUnit::PerTrade),
        ] {
            let scenario = Scenario { sd: Some(0.01), sharpe_unit: unit, ..scenario(3000.0) };
            let draw = draw_for(kind, value, &scenario).expect("a distribution");
            let mut rng = Rng(11);
            let mut stats = Stats::default();
            for _ in 0..20 {
                stats.merge(&minute(&mut rng, 50_000.0, draw));
            }
            let measured = simulated_kind(kind).compute(&stats, 0.95, unit).value.expect("a value");
            assert!((measured - value).abs() <= 0.03 * value.abs(), "{kind:?} {value}: measured {measured}");
        }
        let scenario = Scenario { sd: None, ..scenario(3000.0) };
        assert!(draw_for(MetricKind::MeanReturn, 0.001, &scenario).is_none(), "no deviation, no distribution");
        assert!(draw_for(MetricKind::HitRatio, 1.2, &scenario).is_none());
        assert!(draw_for(MetricKind::Silence, 0.5, &scenario).is_none());
    }

    /// A mean-return metric with an absolute threshold: a broken model (a drop of four thresholds)
    /// is caught within minutes by the sequential test and in 30 by the window rule; a drop of a
    /// quarter of the threshold rarely fires; quiet operation has no false alarm in 90 days.
    #[test]
    fn a_mean_return_metric_is_calibrated_like_a_ratio() {
        // Returns of 1 % deviation around 0.05 % per trade; the threshold is 0.1 % (absolute).
        let scenario = Scenario { baseline: 0.0005, sd: Some(0.01), ..scenario(3000.0) };
        let sequential =
            figures(&normal_policy(MetricKind::MeanReturn, true, 0.001), &scenario, &[0.00025, 0.004], 90.0);
        let [small, broken] = &sequential.delays[..] else { unreachable!() };
        assert!(small.detected <= 2, "{small:?}");
        assert_eq!(broken.detected, 8, "{broken:?}");
        assert!(broken.slowest_minutes.unwrap() <= 5.0, "{broken:?}");
        assert_eq!(sequential.false_alarms_per_30_days, 0.0);
        let window = figures(&normal_policy(MetricKind::MeanReturn, false, 0.001), &scenario, &[0.004], 0.0);
        assert_eq!(window.delays[0].median_minutes, Some(30.0), "{:?}", window.delays[0]);
    }

    #[test]
    fn a_broken_model_is_caught_within_minutes_by_the_sequential_test_and_in_30_by_the_window_rule() {
        let sequential = figures(&policy(true), &scenario(3000.0), &[0.40], 0.0);
        let delay = &sequential.delays[0];
        assert_eq!(delay.detected, 8);
        assert!(delay.slowest_minutes.unwrap() <= 5.0, "{delay:?}");
        // The window rule needs three breaching evaluations ten minutes apart: 30 minutes at best.
        let window = figures(&policy(false), &scenario(3000.0), &[0.40], 0.0);
        assert_eq!(window.delays[0].median_minutes, Some(30.0), "{:?}", window.delays[0]);
    }

    #[test]
    fn the_same_seed_gives_the_same_figures() {
        let a = figures(&policy(true), &scenario(3000.0), &[0.10], 1.0);
        let b = figures(&policy(true), &scenario(3000.0), &[0.10], 1.0);
        assert_eq!(a.delays[0].median_minutes, b.delays[0].median_minutes);
        assert_eq!(a.false_alarms_per_30_days, b.false_alarms_per_30_days);
    }

    #[test]
    fn the_sequential_test_rarely_fires_on_a_drop_below_half_the_threshold_or_none() {
        // 2 % is inside the null (at most half of the 5 % threshold): rare, however often it looks.
        let figures = figures(&policy(true), &scenario(3000.0), &[0.0, 0.02], 0.0);
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
        let fast = figures(&policy(true), &forty_runs, &[0.03, 0.10, 0.40], 90.0);
        let [three, ten, forty] = &fast.delays[..] else { unreachable!() };
        assert!(three.detected <= 10, "{three:?}");
        assert!(ten.median_minutes.unwrap() <= 20.0 && ten.p95_minutes.unwrap() <= 40.0, "{ten:?}");
        assert!(forty.detected == 40 && forty.slowest_minutes.unwrap() <= 5.0, "{forty:?}");
        assert_eq!(fast.false_alarms_per_30_days, 0.0);
        let slow = figures(
            &policy(true),
            &Scenario { horizon_minutes: 12 * 60, trials: 40, ..scenario(120.0) },
            &[0.10],
            90.0,
        );
        assert!(slow.delays[0].median_minutes.unwrap() <= 360.0, "{:?}", slow.delays[0]);
        assert_eq!(slow.false_alarms_per_30_days, 0.0);
    }
}
