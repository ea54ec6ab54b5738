//! `shipshape validate [--bundle PATH] [--checklist FILE] [--dry-run] [--json]`.

use std::process::ExitCode;

use shipshape_core::pipeline::validate::{self, ValidateRequest};

use shipshape_core::model::validation::Status;

use crate::cli::ValidateArgs;
use crate::context::Context;

/// Run the checklist and backtest; exit 0 only when every item passed.
pub fn run(context: &Context, args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let request = ValidateRequest {
        bundle: args.bundle.as_ref().map(|b| context.start_dir.join(b)),
        checklist_file: args.checklist.as_ref().map(|c| context.start_dir.join(c)),
    };
    let mut plan = validate::plan(&workspace, &request)?;
    if args.skip_bad
        && let Some(backtest) = plan.backtest.as_mut()
    {
        backtest.skip_bad = true;
    }
    if args.dry_run {
        for line in plan.describe(&workspace) {
            println!("{line}");
        }
        context.note("dry run: nothing was run and nothing was written");
        return super::ok();
    }
    let outcome = validate::run(&workspace, &plan, context.now())?;
    let validation = &outcome.validation;
    if args.json {
        super::print_json(&serde_json::json!({
            "validation": workspace.display(&outcome.path),
            "result": validation,
        }))?;
    } else {
        if let Some(backtest) = &validation.backtest {
            let source = backtest
                .events_file
                .as_ref()
                .map_or_else(|| format!("`{}`", backtest.command.clone().unwrap_or_default()), |f| f.to_string());
            println!(
                "backtest: {source}: {} events, {} skipped lines, Sharpe {}",
                backtest.events, backtest.skipped_lines, backtest.sharpe_unit
            );
            if let Some(error) = &backtest.error {
                println!("FAIL backtest: {error}");
            }
            for (name, metric) in &backtest.metrics {
                let value = metric.value.map_or_else(|| "insufficient data".to_string(), |v| format!("{v:.4}"));
                let interval = match (metric.ci_low, metric.ci_high) {
                    (Some(low), Some(high)) => format!("  [{low:.4}, {high:.4}]"),
                    _ => String::new(),
                };
                let samples = metric.samples.map(|n| format!("  n={n}")).unwrap_or_default();
                println!("  {name:<28} {value:>18}{interval}{samples}");
            }
        }
        for item in &validation.items {
            let mark = if item.status == Status::Passed { "ok  " } else { "FAIL" };
            println!("{mark} {:<8} {:<32} {}", item.kind, item.name, item.detail);
            if item.status == Status::Failed
                && let Some(tail) = &item.output_tail
            {
                for line in tail.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev() {
                    println!("         | {line}");
                }
            }
        }
        println!("{}", workspace.display(&outcome.path));
        if validation.passed {
            context.note(format!("validation passed: {} items", validation.items.len()));
        } else {
            eprintln!("error: validation failed: {}", validation.failed_items().join(", "));
        }
    }
    Ok(if validation.passed { ExitCode::SUCCESS } else { ExitCode::from(crate::EXIT_CHECK_FAILED) })
}
