//! `shipshape ingest`, `evaluate`, `alerts`, `replay`: thin shells over `shipshape-monitor`.

use shipshape_core::infra::text::printable;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use shipshape_core::Error;
use shipshape_core::config::BaselineSource;
use shipshape_core::events::Format;
use shipshape_core::infra::clock::Time;
use shipshape_monitor::alert::State;
use shipshape_monitor::monitor::{IngestOptions, IngestReport, Monitor, Pass, Timeline};

use crate::cli::{AlertStateArg, AlertsArgs, BaselineArg, EvaluateArgs, EventFormat, IngestArgs, ReplayArgs};
use crate::context::Context;

pub(crate) fn parse_time(flag: &str, text: &str) -> anyhow::Result<Time> {
    text.parse::<Time>().map_err(|e| Error::Usage(format!("{flag} `{text}`: {e}")).into())
}

fn open_events(context: &Context, file: &Path) -> anyhow::Result<(PathBuf, Box<dyn std::io::BufRead + Send>)> {
    if file == Path::new("-") {
        return Ok((PathBuf::from("<stdin>"), Box::new(BufReader::with_capacity(1 << 20, std::io::stdin()))));
    }
    let path = context.start_dir.join(file);
    let handle = std::fs::File::open(&path).map_err(|source| Error::Io {
        path: path.clone(),
        action: "opening the events file",
        source,
    })?;
    Ok((path, Box::new(BufReader::with_capacity(1 << 20, handle))))
}

fn print_ingest(context: &Context, report: &IngestReport) {
    println!(
        "stored {} new events ({} already stored, {} lines{})",
        report.accepted,
        report.duplicates,
        report.lines,
        if report.skipped > 0 { format!(", {} bad lines skipped", report.skipped) } else { String::new() }
    );
    for example in &report.skipped_examples {
        context.warn(format!("skipped {example}"));
    }
    if report.unattributed > 0 {
        context.warn(format!(
            "{} events are from before any deploy and name no release_id: stored, not evaluated",
            report.unattributed
        ));
    }
    for (strategy, count) in &report.unknown_strategies {
        context.warn(format!(
            "{count} events of strategy `{strategy}`, which no monitoring policy watches: stored, not evaluated"
        ));
    }
    if report.expired > 0 {
        context.warn(format!(
            "{} events are older than the raw events `shipshape gc` pruned ([retention] raw_events): not stored",
            report.expired
        ));
    }
    if report.late > 0 {
        context.note(format!("{} events are older than the last evaluation: the next one counts them", report.late));
    }
}

/// `shipshape ingest FILE|-`.
pub fn ingest(context: &Context, args: &IngestArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let format = match args.format {
        Some(EventFormat::Jsonl) => Some(Format::JsonLines),
        Some(EventFormat::Csv) => Some(Format::Csv),
        None if args.file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) => Some(Format::Csv),
        None => None,
    };
    let (source, mut reader) = open_events(context, &args.file)?;
    let timeline = Timeline::of(&workspace)?;
    let mut monitor = Monitor::open(workspace)?;
    let options =
        IngestOptions { format, skip_bad: args.skip_bad, timeline: &timeline, now: context.now(), check_skew: true };
    let report = monitor.ingest(&source, &mut reader, &options)?;
    if args.json {
        super::print_json(&report)?;
    } else {
        print_ingest(context, &report);
    }
    super::ok()
}

fn fmt_value(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

fn state_word(state: &State) -> String {
    match state {
        State::Inactive => "ok".into(),
        State::InsufficientData => "insufficient data".into(),
        State::Pending { breaches, .. } => {
            format!("pending ({breaches} breach{})", if *breaches == 1 { "" } else { "es" })
        }
        State::Firing { severity, .. } => format!("FIRING {}", format!("{severity:?}").to_uppercase()),
        State::Resolved { .. } => "resolved".into(),
    }
}

/// One pass, its time in the workspace's display offset (as every other command prints times).
fn print_pass(pass: &Pass, at: shipshape_core::infra::clock::Time) {
    let Some(release) = &pass.release_id else {
        println!("nothing is deployed: no release to evaluate");
        return;
    };
    let mode = pass.mode.map(|m| format!("{m:?}").to_lowercase()).unwrap_or_default();
    println!("release {release} at {at} ({mode} monitoring)");
    for metric in &pass.metrics {
        let e = &metric.evaluation;
        println!(
            "  {:<20} {:>8} vs baseline {:>8}  n={:<7} threshold {:<5} {}",
            metric.metric,
            fmt_value(e.value.value),
            fmt_value(e.baseline),
            e.value.samples,
            metric.threshold,
            state_word(&metric.state)
        );
    }
    for n in &pass.notifications {
        println!("  notify: {}", printable(&n.summary));
    }
    if let Some(auto) = &pass.auto_rollback {
        println!("  AUTO-ROLLBACK of {}: {} ({})", auto.release_id, printable(&auto.outcome), printable(&auto.reason));
    }
}

/// `shipshape evaluate [--at TIME]`.
pub fn evaluate(context: &Context, args: &EvaluateArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let now = match &args.at {
        Some(text) => parse_time("--at", text)?,
        None => context.now(),
    };
    let mut monitor = Monitor::open(workspace)?;
    let pass = monitor.evaluate(now)?;
    let delivery = if args.no_deliver { None } else { Some(monitor.deliver(&mut |line| eprintln!("{line}"))?) };
    if args.json {
        super::print_json(&serde_json::json!({ "pass": pass, "delivery": delivery }))?;
    } else {
        print_pass(&pass, now);
        if let Some(delivery) = delivery.filter(|d| d.failed > 0) {
            context.warn(format!("{} notifications failed and will be retried", delivery.failed));
        }
    }
    match &pass.auto_rollback {
        Some(auto) if auto.outcome.starts_with("failed") => return Ok(ExitCode::from(crate::EXIT_CHECK_FAILED)),
        Some(_) => return Ok(ExitCode::from(crate::EXIT_ROLLED_BACK)),
        None => {}
    }
    if let (Some(fail_on), Some(release)) = (args.fail_on, &pass.release_id) {
        let release = release.to_string();
        let firing = monitor.db.alerts(Some("firing"), Some(&release), 1)?;
        let pending = match fail_on {
            crate::cli::FailOn::Pending => monitor.db.alerts(Some("pending"), Some(&release), 1)?,
            crate::cli::FailOn::Firing => Vec::new(),
        };
        if !firing.is_empty() || !pending.is_empty() {
            context.warn(format!(
                "alerts of {release} are {}: exit {} (--fail-on)",
                if firing.is_empty() { "pending" } else { "firing" },
                crate::EXIT_ALERTS_FIRING
            ));
            return Ok(ExitCode::from(crate::EXIT_ALERTS_FIRING));
        }
    }
    super::ok()
}

fn when(seconds: Option<i64>) -> String {
    seconds.and_then(|s| jiff::Timestamp::from_second(s).ok()).map_or_else(|| "-".into(), |t| t.to_string())
}

/// `shipshape alerts`.
pub fn alerts(context: &Context, args: &AlertsArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let monitor = Monitor::open(workspace)?;
    let state = args.state.map(|s| match s {
        AlertStateArg::Pending => "pending",
        AlertStateArg::Firing => "firing",
        AlertStateArg::Resolved => "resolved",
        AlertStateArg::Cleared => "cleared",
        AlertStateArg::Superseded => "superseded",
    });
    let rows = monitor.db.alerts(state, args.release.as_deref(), args.limit)?;
    if args.json {
        super::print_json(&rows)?;
        return super::ok();
    }
    if rows.is_empty() {
        println!("no alerts");
    }
    for a in rows {
        println!(
            "#{} {:<8} {:<8} {:<20} {:<9} value {} baseline {} drop {} threshold {} n={} {} mode, release {}",
            a.id,
            a.state,
            a.severity.as_deref().unwrap_or("-"),
            printable(&a.metric),
            printable(&a.strategy),
            fmt_value(a.value),
            fmt_value(a.baseline),
            fmt_value(a.drop),
            a.threshold.map_or("-".into(), |t| t.to_string()),
            a.samples.unwrap_or(0),
            a.mode,
            a.release_id
        );
        println!(
            "    started {}  fired {}  resolved {}  window {} .. {}",
            when(Some(a.started_at)),
            when(a.fired_at),
            when(a.resolved_at),
            when(a.window_from),
            when(a.window_to)
        );
    }
    super::ok()
}

/// `shipshape replay --events FILE --release-at TIME...`.
pub fn replay(context: &Context, args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let times = args.release_at.iter().map(|t| parse_time("--release-at", t)).collect::<anyhow::Result<Vec<_>>>()?;
    let (source, mut reader) = open_events(context, &args.events)?;
    let baseline = args.baseline.map(|b| match b {
        BaselineArg::Validation => BaselineSource::Validation,
        BaselineArg::Trailing => BaselineSource::Trailing,
    });
    let report = shipshape_monitor::replay::replay(workspace, &source, &mut reader, &times, baseline, args.skip_bad)?;
    if args.json {
        super::print_json(&report)?;
        return super::ok();
    }
    println!(
        "replayed {} events, {} evaluation passes from {} to {}",
        report.ingest.accepted,
        report.passes,
        report.from.map_or("-".into(), |t| t.to_string()),
        report.to.map_or("-".into(), |t| t.to_string())
    );
    for release in &report.releases {
        let baselines: Vec<String> =
            release.baselines.iter().map(|(name, value)| format!("{name} {}", fmt_value(*value))).collect();
        println!("{} deployed {} (baselines: {})", release.release_id, release.deployed_at, baselines.join(", "));
    }
    if report.notifications.is_empty() {
        println!("no alerts would have been raised");
    }
    for n in &report.notifications {
        println!("{}  {:<9} {}", n.at, n.reason.as_str(), printable(&n.summary));
    }
    for (release, at) in &report.auto_rollbacks {
        println!("{at}  auto-rollback of {release} would have triggered");
    }
    println!("detector: {} (the config's, at its eval_interval, as serve runs it)", report.detector);
    for d in &report.detections {
        match d.first_firing_minutes {
            Some(minutes) => println!(
                "  {} {}: first fired {minutes:.0} min after the deploy ({} episode{})",
                d.release_id,
                d.metric,
                d.episodes,
                if d.episodes == 1 { "" } else { "s" }
            ),
            None => println!("  {} {}: never fired", d.release_id, d.metric),
        }
    }
    if let Some(rate) = report.alerts_per_30_days {
        println!("alert episodes per 30 days of replayed time: {rate:.2} (compare `shipshape calibrate`)");
    }
    super::ok()
}
