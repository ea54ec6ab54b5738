//! `shipshape calibrate`: what the monitoring policy will do for a trade rate — each detector's
//! detection delay for a range of drops and its false alarms in quiet operation, by simulation
//! (see `shipshape_monitor::calibrate`).

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::json;
use shipshape_core::config::Detector;
use shipshape_monitor::calibrate::{DetectorFigures, Scenario, calibrate, simulable};

use crate::cli::CalibrateArgs;
use crate::context::Context;

/// `shipshape calibrate`.
pub fn run(context: &Context, args: &CalibrateArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let config = &workspace.config.monitoring;
    let policies = shipshape_monitor::policy::policies(config);
    let policy = match &args.metric {
        Some(name) => policies.iter().find(|p| &p.name == name).with_context(|| {
            format!(
                "no metric `{name}` in {}: the metrics are {}",
                workspace.config.path.display(),
                policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?,
        None => policies.iter().find(|p| simulable(p.kind)).context("no hit_ratio or precision metric to simulate")?,
    };
    if !simulable(policy.kind) {
        bail!(
            "calibrate simulates Bernoulli outcomes: `{}` is a {} metric; name a hit_ratio or precision metric with --metric",
            policy.name,
            policy.kind
        );
    }
    let now = context.now();
    let trades_per_hour = match args.trade_rate {
        Some(rate) if rate > 0.0 && rate.is_finite() => rate,
        Some(rate) => bail!("--trade-rate {rate}: give a number of trades per hour above 0"),
        None => measured_rate(&workspace, policy, now.unix_seconds())?.with_context(|| {
            format!("no stored events of `{}` in the last 7 days to measure a trade rate from: give --trade-rate N (trades per hour)", policy.strategy)
        })?,
    };
    let baseline = match args.baseline {
        Some(b) if b > 0.0 && b < 1.0 => b,
        Some(b) => bail!("--baseline {b}: a ratio metric's baseline lies between 0 and 1"),
        None => active_baseline(&workspace, &policy.name, now)?.with_context(|| {
            format!("no active release with a baseline for `{}`: give --baseline (e.g. 0.62)", policy.name)
        })?,
    };
    let drops: Vec<f64> = match &args.drops {
        Some(text) => text
            .split(',')
            .map(|d| d.trim().parse::<f64>().ok().filter(|d| (0.0..1.0).contains(d)))
            .collect::<Option<Vec<_>>>()
            .with_context(|| format!("--drops {text}: give relative drops between 0 and 1, e.g. 0.03,0.1,0.4"))?,
        None => vec![0.03, 0.05, 0.10, 0.20, 0.40],
    };
    let hours_ok = args.hours > 0.0 && args.hours <= 24.0 * 90.0;
    let days_ok = (0.0..=3650.0).contains(&args.quiet_days);
    if !hours_ok || !days_ok {
        bail!("--hours must lie in (0, 2160] and --quiet-days in [0, 3650]");
    }
    let scenario = Scenario {
        trades_per_hour,
        baseline,
        horizon_minutes: (args.hours * 60.0) as i64,
        trials: args.trials as usize,
        seed: args.seed,
        heightened_seconds: i64::from(config.heightened_hours.0) * 3600,
        eval_interval: config.eval_interval.0.seconds(),
    };
    let mut figures = Vec::new();
    for detector in [Detector::Window, Detector::Sequential] {
        let mut variant = config.clone();
        variant.detector = detector;
        let policies = shipshape_monitor::policy::policies(&variant);
        let Some(p) = policies.iter().find(|p| p.name == policy.name) else { continue };
        figures.push(calibrate(p, &scenario, &drops, args.quiet_days));
    }
    if args.json {
        super::print_json(&json!({
            "metric": policy.name,
            "trades_per_hour": trades_per_hour,
            "baseline": baseline,
            "heightened_threshold": policy.heightened.rule.threshold,
            "horizon_hours": args.hours,
            "trials": args.trials,
            "seed": args.seed,
            "configured_detector": match config.detector { Detector::Window => "window", Detector::Sequential => "sequential" },
            "detectors": figures,
        }))?;
        return super::ok();
    }
    println!(
        "{}: {trades_per_hour:.0} trades/h, baseline {baseline:.4}, heightened threshold {} ({} runs of {} h per drop, seed {})",
        policy.name, policy.heightened.rule.threshold, args.trials, args.hours, args.seed
    );
    for f in &figures {
        print_detector(f, config.detector);
    }
    super::ok()
}

fn minutes(m: Option<f64>) -> String {
    m.map_or_else(|| "never".into(), |m| format!("{m:.0} min"))
}

fn print_detector(f: &DetectorFigures, configured: Detector) {
    let is_configured =
        matches!((f.detector, configured), ("window", Detector::Window) | ("sequential", Detector::Sequential));
    println!();
    println!("{} detector{}", f.detector, if is_configured { " (configured)" } else { "" });
    println!("  {:>6}  {:>9}  {:>10}  {:>10}  {:>10}", "drop", "detected", "median", "p95", "slowest");
    for d in &f.delays {
        println!(
            "  {:>5.0}%  {:>4} of {:<2}  {:>10}  {:>10}  {:>10}",
            d.drop * 100.0,
            d.detected,
            d.trials,
            minutes(d.median_minutes),
            minutes(d.p95_minutes),
            minutes(d.slowest_minutes)
        );
    }
    println!(
        "  false alarms in quiet operation: {:.2} per 30 days ({:.0} days simulated)",
        f.false_alarms_per_30_days, f.quiet_days
    );
}

/// Trades per hour of the metric's strategies over the last 7 days of stored events.
fn measured_rate(
    workspace: &shipshape_core::layout::Workspace,
    policy: &shipshape_monitor::evaluate::MetricPolicy,
    now: i64,
) -> anyhow::Result<Option<f64>> {
    let path = workspace.root.join(shipshape_monitor::db::DB_PATH);
    if !path.exists() {
        return Ok(None);
    }
    let db = shipshape_monitor::db::Db::open(&path)?;
    let week = 7 * 24 * 3600;
    let stats = db.window_of(None, &policy.strategies, now - week, now)?;
    Ok((stats.trades > 0).then(|| stats.trades as f64 / (7.0 * 24.0)))
}

/// The active release's baseline of `metric`.
fn active_baseline(
    workspace: &shipshape_core::layout::Workspace,
    metric: &str,
    now: shipshape_core::infra::clock::Time,
) -> anyhow::Result<Option<f64>> {
    let Some(info) = shipshape_core::registry::get_active_release(workspace, now)? else { return Ok(None) };
    let mut monitor = shipshape_monitor::monitor::Monitor::open(workspace.clone())?;
    Ok(monitor.baselines(&info)?.get(metric).copied().flatten())
}
