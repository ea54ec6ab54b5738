//! `shipshape audit [--json]`.

use std::process::ExitCode;

use serde_json::json;
use shipshape_core::pipeline::audit;

use crate::cli::AuditArgs;
use crate::context::Context;

/// Inventory the workspace into a new audit bundle and print its path.
pub fn run(context: &Context, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let now = context.now();
    let progress = context.progress();
    let outcome = audit::run(&workspace, now, progress.as_ref())?;
    for warning in &outcome.bundle.warnings {
        context.warn(warning);
    }
    let bundle_path = workspace.display(&outcome.bundle_path).into_owned();
    if args.json {
        let bundle = &outcome.bundle;
        super::print_json(&json!({
            "bundle": bundle_path,
            "bundle_id": bundle.bundle_id,
            "bundle_sha256": shipshape_core::infra::hash::Digest::of(&outcome.bytes),
            "created": bundle.created,
            "artifacts": bundle.totals.artifacts,
            "bytes": bundle.totals.bytes,
            "git": bundle.git,
            "warnings": bundle.warnings,
        }))?;
    } else {
        context.note(format!(
            "audited {} artifacts ({} bytes) into {}",
            outcome.bundle.totals.artifacts, outcome.bundle.totals.bytes, outcome.bundle.bundle_id
        ));
        println!("{bundle_path}");
    }
    super::ok()
}
