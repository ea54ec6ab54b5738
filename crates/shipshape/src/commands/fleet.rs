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

/// The workspace's fleet configuration, or why it has none.
pub(crate) fn fleet_config(workspace: &Workspace) -> anyhow::Result<shipshape_core::config::FleetConfig> {
    workspace.config.fleet.clone().with_context(|| {
        format!(
            "{}: no [fleet] section (registry, store, environments) — docs/fleet.md",
            workspace.config.path.display()
        )
    })
}

/// The workspace's registry, from `[fleet] registry`.
pub fn registry_of(workspace: &Workspace) -> anyhow::Result<shipshape_fleet::registry::Registry> {
    let fleet = fleet_config(workspace)?;
    shipshape_fleet::registry::Registry::from_config(&fleet, &workspace.root)?.with_context(|| {
        format!(
            "{}: [fleet] has no registry = \"…\" (postgres://user@host:port/database or sqlite:PATH)",
            workspace.config.path.display()
        )
    })
}

/// `shipshape promote RELEASE --to ENV`.
pub fn promote(context: &Context, args: &crate::cli::PromoteArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let fleet = fleet_config(&workspace)?;
    let store = remote_store(&workspace)?;
    let mut registry = registry_of(&workspace)?;
    let now = context.now().unix_seconds();
    let by = super::deploy::deployer();
    let note = args.note.clone().unwrap_or_default();
    if args.dry_run {
        // The policy alone: the same checks, no move.
        let policy = fleet
            .environment(&args.to)
            .with_context(|| format!("no environment `{}` in [[fleet.environments]]", args.to))?;
        if let Some(required) = &policy.requires {
            let verdicts = shipshape_fleet::promote::soak(
                &mut registry,
                &fleet,
                &required.0,
                &args.release,
                policy.soak.0.seconds(),
                now,
            )?;
            if args.json {
                super::print_json(&serde_json::json!({ "requires": required.0, "hosts": verdicts }))?;
            } else {
                for v in &verdicts {
                    println!("{} {}: {}", required.0, v.host, if v.problem.is_empty() { "ok" } else { &v.problem });
                }
            }
        }
        return super::ok();
    }
    if !super::deploy::confirm(&format!("promote {} to {}", args.release, args.to), args.yes)? {
        return Err(shipshape_core::Error::Usage("not confirmed: nothing moved".into()).into());
    }
    let who = shipshape_fleet::registry::Who { by: &by, note: &note, at: now };
    let pointer = shipshape_fleet::promote::promote(&mut registry, &store, &fleet, &args.release, &args.to, &who)?;
    if args.json {
        super::print_json(&pointer)?;
    } else {
        println!(
            "{} now desires {} (generation {}, by {}): its agents apply it",
            pointer.environment, pointer.release_id, pointer.generation, pointer.moved_by
        );
    }
    super::ok()
}

/// `shipshape rollback --env ENV [--to RELEASE]`.
pub fn rollback(context: &Context, args: &crate::cli::RollbackArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let environment = args.env.clone().unwrap_or_default();
    let store = remote_store(&workspace)?;
    let mut registry = registry_of(&workspace)?;
    let now = context.now().unix_seconds();
    let reason = args.reason.clone().unwrap_or_else(|| "manual rollback".into());
    if args.dry_run {
        let target = match &args.to {
            Some(to) => to.clone(),
            None => registry.last_known_good(&environment)?.unwrap_or_else(|| "(none)".into()),
        };
        println!("{environment} would roll back to {target}");
        return super::ok();
    }
    if !super::deploy::confirm(&format!("roll {environment} back"), args.yes)? {
        return Err(shipshape_core::Error::Usage("not confirmed: nothing moved".into()).into());
    }
    let pointer = shipshape_fleet::promote::rollback(
        &mut registry,
        &store,
        &environment,
        args.to.as_deref(),
        &shipshape_fleet::registry::Who { by: &super::deploy::deployer(), note: &reason, at: now },
    )?;
    println!(
        "{} rolled back to {} (generation {}, by {}): its agents apply it",
        pointer.environment, pointer.release_id, pointer.generation, pointer.moved_by
    );
    super::ok()
}

/// `shipshape status --env ENV|all`.
pub fn status(context: &Context, args: &crate::cli::StatusArgs) -> anyhow::Result<ExitCode> {
    let workspace = context.workspace()?;
    let fleet = fleet_config(&workspace)?;
    let mut registry = registry_of(&workspace)?;
    let now = context.now().unix_seconds();
    let wanted = args.env.clone().unwrap_or_default();
    let names: Vec<String> = if wanted == "all" {
        fleet.environments.iter().map(|e| e.name.0.clone()).collect()
    } else {
        fleet.environment(&wanted).with_context(|| format!("no environment `{wanted}` in [[fleet.environments]]"))?;
        vec![wanted]
    };
    let out = shipshape_fleet::overview::overview(&mut registry, &fleet, &names, now, 0)?;
    if args.json {
        super::print_json(&out)?;
        return super::ok();
    }
    let mut all_well = true;
    for env in &out {
        match &env.desired {
            Some(d) => println!(
                "{}: desired {} (generation {}, {} by {})",
                env.environment, d.release_id, d.generation, d.action, d.moved_by
            ),
            None => println!("{}: desired (nothing) (generation 0)", env.environment),
        }
        if let Some(c) = &env.canary {
            println!(
                "  canary {} at {} % (steps {}, generation {}, by {})",
                c.release_id, c.percent, c.steps, c.generation, c.moved_by
            );
        }
        for h in &env.hosts {
            all_well &= h.well;
            println!(
                "  {:<16} {:<28} {:<9} heartbeat {:>5} s ago{}{}  {}",
                h.host,
                if h.observed.is_empty() { "(nothing)" } else { h.observed.as_str() },
                h.health,
                h.heartbeat_age_seconds,
                if h.stale { " STALE" } else { "" },
                if h.drift { " DRIFT" } else { "" },
                h.message
            );
            if let Some(c) = &env.canary
                && h.canary_generation != c.generation
            {
                println!(
                    "  {:<16} has not applied canary generation {} yet (at {})",
                    h.host, c.generation, h.canary_generation
                );
            }
        }
    }
    if all_well { super::ok() } else { Ok(ExitCode::from(crate::EXIT_CHECK_FAILED)) }
}

/// `shipshape agent --env ENV`.
pub fn agent(context: &Context, args: &crate::cli::AgentArgs) -> anyhow::Result<ExitCode> {
    let mut workspace = context.workspace()?;
    if let Some(target) = &args.target {
        let deploy = workspace.config.deploy.as_mut().with_context(|| {
            format!(
                "{}: no [deploy] section (mode, post-deploy checks) for the agent to apply with",
                workspace.config.path.display()
            )
        })?;
        deploy.target = context.start_dir.join(target).to_string_lossy().into_owned();
    }
    let host = match &args.host {
        Some(host) => host.clone(),
        None => shipshape_core::infra::user::host_name().context("no host name: give --host NAME")?,
    };
    let options = shipshape_fleet::agent::AgentOptions { environment: args.env.clone(), host };
    let mut agent = shipshape_fleet::agent::Agent::new(workspace, options, context.clock())?;
    let json = args.json;
    let mut log = |pass: &shipshape_fleet::agent::Pass| {
        if json {
            if let Ok(line) = serde_json::to_string(pass) {
                println!("{line}");
            }
        } else {
            println!("{} {}: {}", jiff::Timestamp::now(), pass.outcome, pass.message);
        }
    };
    if args.once {
        let pass = agent.reconcile()?;
        log(&pass);
        return Ok(match pass.outcome.as_str() {
            "refused" | "failed" => ExitCode::from(crate::EXIT_CHECK_FAILED),
            "degraded" => ExitCode::from(crate::EXIT_IO),
            _ => ExitCode::SUCCESS,
        });
    }
    // SIGTERM (systemd's stop) or Ctrl-C: the pass under way finishes — an apply is never cut
    // short by a stop — and the agent exits 0 before the next one.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::spawn(move || {
        runtime.block_on(super::serve::shutdown_signal());
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    agent.run(&|| stop.load(std::sync::atomic::Ordering::SeqCst), &mut log)?;
    eprintln!("stopped: the last pass finished; the target runs what it ran");
    super::ok()
}
