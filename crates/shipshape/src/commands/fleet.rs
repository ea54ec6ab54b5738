//! The fleet's commands: `publish` and `fetch` (the remote store); `promote`, `agent` and the
//! environments' status come with the registry.

use std::process::ExitCode;

use anyhow::Context as _;
use shipshape_core::layout::Workspace;
use shipshape_fleet::remote::RemoteStore;

use crate::cli::{FetchArgs, PublishArgs};
use crate::context::Context;

/// The workspace's remote store, from `[fleet] store`.
pub fn remote_store(workspace: &Workspace) -> anyhow::Result<RemoteStore> {
    let fleet = workspace.config.fleet.as_ref().with_context(|| {
        format!(
            "{}: no [fleet] section: name a store (store = \"s3://bucket/prefix\", \"file:///dir\" or a directory) — docs/fleet.md",
            workspace.config.path.display()
        )
    })?;
    let url = fleet.store.as_deref().with_context(|| {
        format!(
            "{}: [fleet] has no store = \"…\" (s3://bucket/prefix, file:///dir or a directory)",
            workspace.config.path.display()
        )
    })?;
    Ok(RemoteStore::open(url, &workspace.root, &fleet.s3)?)
}

fn size(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1.0 { format!("{mib:.1} MiB") } else { format!("{bytes} B") }
}

/// `shipshape publish [RELEASE]`.
pub fn publish(context: &Context, args: &PublishArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let remote = remote_store(&workspace)?;
    let path = shipshape_core::pipeline::manifest::resolve_argument(&workspace, &context.start_dir, &args.manifest)?;
    let progress = context.progress();
    let by = super::deploy::deployer();
    let report = remote.publish(&workspace, &path, &by, context.now(), progress.as_ref())?;
    if args.json {
        super::print_json(&report)?;
        return super::ok();
    }
    println!(
        "published {} to {}: {} objects uploaded ({}), {} already there",
        report.release_id,
        remote.display(),
        report.uploaded,
        size(report.bytes),
        report.present
    );
    super::ok()
}

/// `shipshape fetch RELEASE | --list`.
pub fn fetch(context: &Context, args: &FetchArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let remote = remote_store(&workspace)?;
    let Some(release) = &args.release else {
        let releases = remote.releases()?;
        if args.json {
            super::print_json(&releases)?;
            return super::ok();
        }
        if releases.is_empty() {
            println!("no release published in {}", remote.display());
        }
        for index in &releases {
            println!(
                "{}  {} #{}  published {} by {}",
                index.release_id, index.environment, index.sequence, index.published_at, index.published_by
            );
        }
        return super::ok();
    };
    let progress = context.progress();
    let report = remote.fetch(&workspace, release, progress.as_ref())?;
    // What arrived is judged by this host's own allowed signers and policy, as a deploy would.
    let manifest = report.manifest.clone();
    let verified = shipshape_core::pipeline::verify::trusted(
        &workspace,
        &workspace.root.join(&manifest),
        context.now(),
        &shipshape_core::infra::hash::NoProgress,
    );
    if args.json {
        super::print_json(&serde_json::json!({
            "fetch": report,
            "trusted": verified.is_ok(),
            "problem": verified.as_ref().err().map(|e| e.to_string()),
        }))?;
    } else {
        println!(
            "fetched {} from {}: {} objects downloaded ({}), {} already here, {} records written",
            report.release_id,
            remote.display(),
            report.downloaded,
            size(report.bytes),
            report.present,
            report.records_written
        );
    }
    match verified {
        Ok(_) => {
            if !args.json {
                println!("{manifest}: trusted by this host (approvals, policy, hashes): ready to deploy");
            }
            super::ok()
        }
        Err(e) => Err(e.into()),
    }
}
