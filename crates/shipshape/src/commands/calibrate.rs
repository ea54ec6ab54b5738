//! `shipshape calibrate`: what the monitoring policy will do for a trade rate — each detector's
//! detection delay for a range of drops and its false alarms in quiet operation, by simulation
//! (see `shipshape_monitor::calibrate`).

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::json;
use shipshape_core::config::Detector;
use shipshape_monitor::calibrate::{DetectorFigures, Outcomes, Scenario, calibrate, outcomes};
use shipshape_monitor::evaluate::MetricPolicy;
use shipshape_monitor::judge::DropKind;

use crate::cli::CalibrateArgs;
use crate::context::Context;

/// What one metric is simulated with, and where each figure came from.
struct Inputs {
    trades_per_hour: f64,
    baseline: f64,
    sd: Option<f64>,
    drops: Vec<f64>,
}

/// `shipshape calibrate`: every configured metric (or `--metric`), each detector.
pub fn run(context: &Context, args: &CalibrateArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let config = &workspace.config.monitoring;
    let policies = shipshape_monitor::policy::policies(config);
    let chosen: Vec<&MetricPolicy> = match &args.metric {
        Some(name) => vec![policies.iter().find(|p| &p.name == name).with_context(|| {
            format!(
                "--metric {name}: no such metric (configured: {})",
                policies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?],
        None => policies.iter().filter(|p| outcomes(p.kind).is_some()).collect(),
    };
    if let Some(fraction) = args.canary {
        return canary(context, &workspace, args, fraction, &chosen);
    }
    let hours_ok = args.hours > 0.0 && args.hours <= 24.0 * 90.0;
    let days_ok = (0.0..=3650.0).contains(&args.quiet_days);
    if !hours_ok || !days_ok {
        bail!("--hours must lie in (0, 2160] and --quiet-days in [0, 3650]");
    }
    if let Some(sd) = args.sd
        && !(sd > 0.0 && sd.is_finite())
    {
        bail!("--sd {sd}: give a standard deviation above 0");
    }
    let now = context.now();
    let mut monitor = shipshape_monitor::monitor::Monitor::open(workspace.clone())?;
    let active = shipshape_core::registry::get_active_release(&workspace, now)?;
    let baselines = match &active {
        Some(info) => monitor.baselines(info)?,
        None => Default::default(),
    };
    let db_path = workspace.root.join(shipshape_monitor::db::DB_PATH);
    let db = if db_path.exists() { Some(shipshape_monitor::db::Db::open(&db_path)?) } else { None };
    let mut results = Vec::new();
    let mut skipped: Vec<(String, String)> = Vec::new();
    for policy in chosen {
        let inputs = match inputs(args, policy, db.as_ref(), baselines.get(&policy.name).copied().flatten(), now) {
            Ok(inputs) => inputs,
            // Named: its error is the command's; one of all: skipped, and said why.
            Err(e) if args.metric.is_some() => return Err(e),
            Err(e) => {
                skipped.push((policy.name.clone(), format!("{e:#}")));
                continue;
            }
        };
        let scenario = Scenario {
            trades_per_hour: inputs.trades_per_hour,
            baseline: inputs.baseline,
            horizon_minutes: (args.hours * 60.0) as i64,
            trials: args.trials as usize,
            seed: args.seed,
            heightened_seconds: i64::from(config.heightened_hours.0) * 3600,
            eval_interval: config.eval_interval.0.seconds(),
            sd: inputs.sd,
            sharpe_unit: monitor.unit(),
        };
        let mut figures = Vec::new();
        for detector in [Detector::Window, Detector::Sequential] {
            let mut variant = config.clone();
            variant.detector = detector;
            let variants = shipshape_monitor::policy::policies(&variant);
            let Some(p) = variants.iter().find(|p| p.name == policy.name) else { continue };
            figures.push(calibrate(p, &scenario, &inputs.drops, args.quiet_days).with_context(|| {
                format!(
                    "`{}`: no {} trades give a baseline of {} and the drops {:?}",
                    policy.name,
                    if outcomes(policy.kind) == Some(Outcomes::Bernoulli) {
                        "right-or-wrong"
                    } else {
                        "normally distributed"
                    },
                    inputs.baseline,
                    inputs.drops
                )
            })?);
        }
        results.push((policy, inputs, figures));
    }
    if results.is_empty() {
        let reasons: Vec<String> = skipped.iter().map(|(m, why)| format!("{m}: {why}")).collect();
        bail!(
            "no metric could be simulated ({})",
            if reasons.is_empty() { "none configured".into() } else { reasons.join("; ") }
        );
    }
    if args.json {
        super::print_json(&json!({
            "horizon_hours": args.hours,
            "trials": args.trials,
            "seed": args.seed,
            "configured_detector": match config.detector { Detector::Window => "window", Detector::Sequential => "sequential" },
            "metrics": results.iter().map(|(policy, inputs, figures)| json!({
                "metric": policy.name,
                "kind": policy.kind.name(),
                "outcomes": outcomes(policy.kind),
                "trades_per_hour": inputs.trades_per_hour,
                "baseline": inputs.baseline,
                "sd": inputs.sd,
                "drop": drop_word(policy),
                "heightened_threshold": policy.heightened.rule.threshold,
                "detectors": figures,
            })).collect::<Vec<_>>(),
            "skipped": skipped.iter().map(|(m, why)| json!({"metric": m, "reason": why})).collect::<Vec<_>>(),
        }))?;
        return super::ok();
    }
    for (i, (policy, inputs, figures)) in results.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let sd = inputs.sd.map(|sd| format!(", sd {sd}")).unwrap_or_default();
        println!(
            "{} ({}): {:.0} trades/h, baseline {:.4}{sd}, heightened threshold {} {} ({} runs of {} h per drop, seed {})",
            policy.name,
            policy.kind,
            inputs.trades_per_hour,
            inputs.baseline,
            policy.heightened.rule.threshold,
            drop_word(policy),
            args.trials,
            args.hours,
            args.seed
        );
        for f in figures {
            print_detector(f, config.detector, policy.heightened.rule.kind);
        }
    }
    for (metric, why) in &skipped {
        context.note(format!("{metric} not simulated: {why}"));
    }
    super::ok()
}

fn drop_word(policy: &MetricPolicy) -> &'static str {
    match policy.heightened.rule.kind {
        DropKind::Relative => "relative",
        DropKind::Absolute => "absolute",
    }
}

/// The trade rate, baseline, deviation and drops for `policy`: the arguments, else measured from
/// the stored events (the last 7 days) and the active release's baseline.
fn inputs(
    args: &CalibrateArgs,
    policy: &MetricPolicy,
    db: Option<&shipshape_monitor::db::Db>,
    active_baseline: Option<f64>,
    now: shipshape_core::infra::clock::Time,
) -> anyhow::Result<Inputs> {
    let week_to = now.unix_seconds();
    let week_from = week_to - 7 * 24 * 3600;
    let week = match db {
        Some(db) => Some(db.window_of(None, &policy.strategies, week_from, week_to)?),
        None => None,
    };
    let trades_per_hour = match args.trade_rate {
        Some(rate) if rate > 0.0 && rate.is_finite() => rate,
        Some(rate) => bail!("--trade-rate {rate}: give a number of trades per hour above 0"),
        None => week.filter(|w| w.trades > 0).map(|w| w.trades as f64 / (7.0 * 24.0)).with_context(|| {
            format!(
                "no stored events of {} in the last 7 days to measure a trade rate from: give --trade-rate N (trades per hour)",
                policy.strategies.join(", ")
            )
        })?,
    };
    let bernoulli = outcomes(policy.kind) == Some(Outcomes::Bernoulli);
    let baseline = match args.baseline {
        Some(b) if bernoulli && !(b > 0.0 && b < 1.0) => {
            bail!("--baseline {b}: a ratio metric's baseline lies between 0 and 1")
        }
        Some(b) if !b.is_finite() => bail!("--baseline {b}: give a number"),
        Some(b) => b,
        None => active_baseline
            .with_context(|| format!("no active release with a baseline for `{}`: give --baseline", policy.name))?,
    };
    let sd = match (outcomes(policy.kind), args.sd) {
        (Some(Outcomes::Bernoulli), _) => None,
        (_, Some(sd)) => Some(sd),
        (_, None) => {
            let measured = match (&policy.field, db) {
                (Some(field), Some(db)) => db
                    .field_window(None, &policy.strategies, field, week_from, week_to)?
                    .moments()
                    .map(|(_, variance)| variance.sqrt()),
                (None, _) => week.and_then(|w| w.std_return()),
                (Some(_), None) => None,
            };
            Some(measured.filter(|sd| *sd > 0.0).with_context(|| {
                format!(
                    "no stored events of the last 7 days to measure the deviation of `{}` from: give --sd",
                    policy.name
                )
            })?)
        }
    };
    let drops: Vec<f64> = match &args.drops {
        Some(text) => {
            let parsed: Option<Vec<f64>> = text.split(',').map(|d| d.trim().parse::<f64>().ok()).collect();
            let relative = policy.heightened.rule.kind == DropKind::Relative;
            parsed.filter(|ds| ds.iter().all(|d| d.is_finite() && *d >= 0.0 && (!relative || *d < 1.0))).with_context(
                || match relative {
                    true => format!("--drops {text}: give relative drops between 0 and 1, e.g. 0.03,0.1,0.4"),
                    false => {
                        format!("--drops {text}: give absolute drops of `{}` of 0 or more, e.g. 0.1,0.25", policy.name)
                    }
                },
            )?
        }
        None => match policy.heightened.rule.kind {
            DropKind::Relative => vec![0.03, 0.05, 0.10, 0.20, 0.40],
            // Absolute: multiples of the heightened threshold, from half of it to eight times it.
            DropKind::Absolute => {
                [0.5, 1.0, 2.0, 4.0, 8.0].iter().map(|m| m * policy.heightened.rule.threshold).collect()
            }
        },
    };
    Ok(Inputs { trades_per_hour, baseline, sd, drops })
}

fn minutes(m: Option<f64>) -> String {
    m.map_or_else(|| "never".into(), |m| format!("{m:.0} min"))
}

fn print_detector(f: &DetectorFigures, configured: Detector, drop: DropKind) {
    let is_configured =
        matches!((f.detector, configured), ("window", Detector::Window) | ("sequential", Detector::Sequential));
    println!();
    println!("{} detector{}", f.detector, if is_configured { " (configured)" } else { "" });
    println!("  {:>6}  {:>9}  {:>10}  {:>10}  {:>10}", "drop", "detected", "median", "p95", "slowest");
    for d in &f.delays {
        println!(
            "  {:>6}  {:>4} of {:<2}  {:>10}  {:>10}  {:>10}",
            match drop {
                DropKind::Relative => format!("{:.0}%", d.drop * 100.0),
                DropKind::Absolute => format!("{:.4}", d.drop),
            },
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

/// `calibrate --canary FRACTION`: the canary's decision times for a trade rate and fraction.
fn canary(
    context: &Context,
    workspace: &shipshape_core::layout::Workspace,
    args: &CalibrateArgs,
    fraction: f64,
    chosen: &[&MetricPolicy],
) -> anyhow::Result<ExitCode> {
    if !(fraction > 0.0 && fraction < 1.0) {
        bail!("--canary {fraction}: give the candidate's fraction of capital, above 0 and below 1 (0.1 = 10 %)");
    }
    if !(args.canary_hours > 0.0 && args.canary_hours <= 24.0 * 90.0) {
        bail!("--canary-hours must lie in (0, 2160]");
    }
    let gaps: Vec<f64> = match &args.gaps {
        Some(text) => text
            .split(',')
            .map(|g| g.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0 && *v < 1.0))
            .collect::<Option<Vec<_>>>()
            .with_context(|| format!("--gaps `{text}`: give absolute gaps from 0 to below 1, comma-separated"))?,
        None => vec![0.02, 0.05, 0.1],
    };
    let ratio = chosen
        .iter()
        .find(|p| matches!(p.kind, shipshape_metrics::MetricKind::HitRatio | shipshape_metrics::MetricKind::Precision))
        .context("--canary: no hit ratio or precision metric is configured to predict with")?;
    let now = context.now();
    let mut monitor = shipshape_monitor::monitor::Monitor::open(workspace.clone())?;
    let baseline = match args.baseline {
        Some(b) => Some(b),
        None => match shipshape_core::registry::get_active_release(workspace, now)? {
            Some(info) => monitor.baselines(&info)?.get(&ratio.name).copied().flatten(),
            None => None,
        },
    }
    .filter(|b| *b > 0.0 && *b < 1.0)
    .context("--canary: give --baseline (the stable release's hit ratio, e.g. 0.55)")?;
    let rate = args
        .trade_rate
        .filter(|r| *r > 0.0 && r.is_finite())
        .context("--canary: give --trade-rate (trades per hour)")?;
    let settings = shipshape_monitor::rollout::settings_of(&workspace.config.canary);
    let mut rows = Vec::new();
    for gap in gaps.iter().copied().chain(std::iter::once(0.0).filter(|_| !gaps.contains(&0.0))) {
        let scenario = shipshape_monitor::canary::CanaryScenario {
            trades_per_hour: rate,
            fraction,
            baseline,
            hours: args.canary_hours,
            trials: args.trials as usize,
            seed: args.seed,
        };
        rows.push(shipshape_monitor::canary::simulate(&settings, &scenario, gap));
    }
    if args.json {
        super::print_json(&json!({
            "metric": ratio.name, "fraction": fraction, "trades_per_hour": rate, "baseline": baseline,
            "hours": args.canary_hours, "trials": args.trials, "seed": args.seed, "predictions": rows,
        }))?;
        return super::ok();
    }
    println!(
        "canary at {:.0} % of {rate} trades/h, {} baseline {baseline}, {} runs of {} h, blocks of {} s:",
        fraction * 100.0,
        ratio.name,
        args.trials,
        args.canary_hours,
        settings.block
    );
    let hours = |h: Option<f64>| h.map_or_else(|| "–".to_string(), |h| format!("{h:.0} h"));
    for row in &rows {
        if row.gap == 0.0 {
            println!(
                "  equal candidate: false aborts {:.0} %; non-inferior in {:.0} % of runs, median {}",
                row.aborted * 100.0,
                row.noninferior * 100.0,
                hours(row.noninferior_hours_median)
            );
        } else {
            println!(
                "  {:.3} worse: aborted in {:.0} % of runs, median {}, 90 % within {}",
                row.gap,
                row.aborted * 100.0,
                hours(row.abort_hours_median),
                hours(row.abort_hours_p90)
            );
        }
    }
    super::ok()
}
