//! `shipshape verify [MANIFEST] [--artifacts] [--json]`.

use std::process::ExitCode;

use shipshape_core::pipeline::manifest;
use shipshape_core::pipeline::verify::{self, Purpose, Rehash, VerifyOptions};

use crate::cli::VerifyArgs;
use crate::context::Context;

/// Verify a manifest; exit 0 only when every check holds, 1 listing every mismatch otherwise.
pub fn run(context: &Context, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let path = match &args.manifest {
        Some(path) => manifest::resolve_argument(&workspace, &context.start_dir, path)?,
        None => manifest::newest_path(&workspace)?,
    };
    let progress = context.progress();
    let options = VerifyOptions {
        purpose: if args.integrity_only { Purpose::Integrity } else { Purpose::Deploy },
        rehash: Rehash::Always,
        artifacts: args.artifacts,
    };
    let report = verify::verify(&workspace, &path, options, context.now(), progress.as_ref())?;
    if args.json {
        super::print_json(&serde_json::json!({
            "passed": report.passed(),
            "report": report,
        }))?;
    } else {
        for check in &report.checks {
            let mark = if check.ok { "ok  " } else { "FAIL" };
            println!("{mark} {:<15} {}  {}", check.check, check.subject, check.detail);
        }
        if let Some(approvals) = &report.approvals {
            println!("approvals ({} release):", approvals.release_type);
            if approvals.checks.is_empty() {
                println!(
                    "  none yet: each approver runs `shipshape approve {} --role ROLE --key KEY`",
                    report.manifest
                );
            }
            for check in &approvals.checks {
                let who = format!("{:<18} {} <{}>", check.role, check.name, check.email);
                match &check.reason {
                    None => println!("  counted  {who}  {}", check.key_fingerprint),
                    Some(reason) => println!("  REFUSED  {who}: {reason}"),
                }
            }
        }
        for warning in &report.warnings {
            context.warn(warning);
        }
        let failed = report.failures().count();
        if failed == 0 {
            println!("verified {} ({} checks passed)", report.release_id, report.checks.len());
        } else {
            eprintln!(
                "error: {} failed verification: {failed} of {} checks failed",
                report.manifest,
                report.checks.len()
            );
        }
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::from(crate::EXIT_CHECK_FAILED) })
}
