//! `shipshape score EVENTS [--skip-bad] [--confidence C] [--sharpe-periods N] [--json]`.

use std::process::ExitCode;

use shipshape_core::events::{self, ReadOptions};
use shipshape_metrics::{MetricKind, SharpeUnit, Stats};

use crate::cli::ScoreArgs;
use crate::context::Context;

/// Score an events file with the metrics library and print the metrics per strategy.
pub fn run(context: &Context, args: &ScoreArgs) -> anyhow::Result<ExitCode> {
    if !(args.confidence > 0.0 && args.confidence < 1.0) {
        return Err(
            shipshape_core::Error::Usage(format!("--confidence {} must be between 0 and 1", args.confidence)).into()
        );
    }
    let unit = match args.sharpe_periods {
        Some(p) if p > 0.0 && p.is_finite() => SharpeUnit::Annualised(p),
        Some(p) => {
            return Err(shipshape_core::Error::Usage(format!("--sharpe-periods {p} must be a positive number")).into());
        }
        None => SharpeUnit::PerTrade,
    };
    let path = context.start_dir.join(&args.events);
    let started = std::time::Instant::now();
    let scored = events::score_file(&path, &args.events, ReadOptions { skip_bad: args.skip_bad })?;
    let seconds = started.elapsed().as_secs_f64();
    let mut groups: Vec<(String, Stats)> = vec![("all".into(), scored.total())];
    groups.extend(scored.by_strategy.iter().map(|(k, v)| (k.clone(), *v)));
    let metrics: Vec<_> = groups
        .iter()
        .map(|(group, stats)| {
            let values: Vec<_> = MetricKind::ALL.iter().map(|k| k.compute(stats, args.confidence, unit)).collect();
            (group.clone(), values)
        })
        .collect();
    if args.json {
        let by_group: serde_json::Map<String, serde_json::Value> = metrics
            .iter()
            .map(|(group, values)| (group.clone(), serde_json::to_value(values).unwrap_or_default()))
            .collect();
        super::print_json(&serde_json::json!({
            "events": scored.events,
            "skipped": scored.skipped,
            "skipped_examples": scored.skipped_examples,
            "first": scored.first_ts.map(|t| t.to_string()),
            "last": scored.last_ts.map(|t| t.to_string()),
            "seconds": seconds,
            "events_per_second": scored.events as f64 / seconds.max(1e-9),
            "metrics": by_group,
        }))?;
    } else {
        println!("{} events ({} skipped) from {}", scored.events, scored.skipped, args.events.display());
        for example in &scored.skipped_examples {
            context.warn(format!("skipped {example}"));
        }
        println!("{:<12} {:<10} {:>10} {:>22} {:>9}", "strategy", "metric", "value", "95% interval", "samples");
        for (group, values) in &metrics {
            for value in values {
                let shown = value.value.map_or_else(|| "n/a".into(), |v| format!("{v:.4}"));
                let interval = match (value.ci_low, value.ci_high) {
                    (Some(low), Some(high)) => format!("[{low:.4}, {high:.4}]"),
                    _ => "-".into(),
                };
                println!("{group:<12} {:<10} {shown:>10} {interval:>22} {:>9}", value.kind.name(), value.samples);
            }
        }
        context.note(format!("Sharpe is {}; scored in {seconds:.3}s", unit.describe()));
    }
    super::ok()
}
