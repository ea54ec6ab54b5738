//! `shipshape demo [--dir DIR]`: the story on the bundled example, one step at a time.
//!
//! The example workspace is compiled into the binary. The demo writes it to a fresh directory,
//! makes it a git repository (so the audit records a commit and a tag), and runs the pipeline in
//! this process, printing each command before its output, exactly as a person would type it.

use std::fs;
use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};

use crate::cli::{AuditArgs, DemoArgs, ManifestArgs, ReleaseTypeArg, ValidateArgs, VerifyArgs};
use crate::context::Context;

include!(concat!(env!("OUT_DIR"), "/example_files.rs"));

/// Write the example workspace into `dir` (which must be missing or empty).
pub fn write_example(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.next().is_some() {
        bail!("{} is not empty; give --dir a new or empty directory", dir.display());
    }
    for (relative, executable, bytes) in EXAMPLE_FILES {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        if *executable {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

fn step(title: &str) {
    println!("\n==== {title} ====");
}

fn command_line(line: &str) {
    println!("$ {line}");
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Demo Release Manager",
            "-c",
            "user.email=release@sensequant.example",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("running git")?;
    if !status.success() {
        bail!("git {} failed", args.join(" "));
    }
    Ok(())
}

fn expect_success(code: ExitCode, what: &str) -> anyhow::Result<()> {
    if code != ExitCode::SUCCESS {
        bail!("demo step `{what}` did not succeed");
    }
    Ok(())
}

fn default_dir() -> PathBuf {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    std::env::temp_dir().join(format!("shipshape-demo-{}-{stamp}", std::process::id()))
}

fn manifest_args(release_type: ReleaseTypeArg, ticket: &str) -> ManifestArgs {
    ManifestArgs {
        release_type,
        bundle: None,
        deployer: Some("demo-release-manager".into()),
        environment: None,
        build_id: Some("demo-build-1".into()),
        tickets: vec![ticket.into()],
        allow_unvalidated: false,
        allow_identical: false,
        sign: None,
        sign_role: None,
        json: false,
    }
}

fn deploy_args(manifest: Option<PathBuf>) -> crate::cli::DeployArgs {
    crate::cli::DeployArgs { manifest, yes: true, dry_run: false }
}

fn approve_args(manifest: &Path, role: &str, key: &Path) -> crate::cli::ApproveArgs {
    crate::cli::ApproveArgs {
        manifest: manifest.to_path_buf(),
        role: role.into(),
        key: Some(key.to_path_buf()),
        gpg: None,
        signature: None,
        name: None,
        email: None,
    }
}

fn validate_args(checklist: Option<&str>, dry_run: bool) -> ValidateArgs {
    ValidateArgs { bundle: None, checklist: checklist.map(PathBuf::from), skip_bad: false, dry_run, json: false }
}

/// Run the demo.
pub fn run(context: &Context, args: &DemoArgs) -> anyhow::Result<ExitCode> {
    // Everything the demo writes stays inside one directory: the workspace, the demo's keys (kept
    // out of the workspace, as private keys must be) and the tampered copy beside it.
    let root = match &args.dir {
        Some(dir) => context.start_dir.join(dir),
        None => default_dir(),
    };
    if root.exists() && fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))?.next().is_some() {
        bail!("{} is not empty; give --dir a new or empty directory", root.display());
    }
    let (dir, has_git) = setup(context, &root.join("workspace"))?;
    let ws = context.at(dir.clone());
    first_release(&ws)?;
    let (keys, first_rel) = approve_first_release(&ws, &dir)?;
    second_release(&ws, &dir, has_git, &keys)?;
    deploy_and_roll_back(&ws, &first_rel)?;
    let watch_end = watch(&ws, &dir)?;
    let tampered = tamper_drill(context, &dir, &first_rel)?;

    step("Done");
    println!("demo directory:  {}", root.display());
    println!("demo workspace:  {}", dir.display());
    println!("tampered copy:   {}", tampered.display());
    println!("demo keys:       {} (made for this demo only; never commit private keys)", keys.display());
    println!("next steps:      cd {} && shipshape verify --artifacts   (or: make release-manifest)", dir.display());
    println!("production:      {} (the example's deploy target)", dir.join("production").display());
    println!("alerts:          {}", dir.join("data/monitoring/alerts.jsonl").display());
    let serve = args.serve || (!args.no_serve && std::io::stdin().is_terminal() && std::io::stdout().is_terminal());
    if serve {
        serve_dashboard(&ws, args, watch_end)?;
    } else {
        println!(
            "dashboard:       shipshape -C {} serve   (or run the demo on a terminal, or with --serve)",
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A fresh copy of the example workspace, in git when git is there: (its path, whether git is used).
fn setup(context: &Context, dir: &Path) -> anyhow::Result<(PathBuf, bool)> {
    step("Setup: a fresh copy of the SenseQuant example workspace");
    write_example(dir)?;
    let dir = dir.canonicalize()?;
    println!("workspace: {}", dir.display());
    let has_git = git(&dir, &["init", "-q", "-b", "main"]).is_ok()
        && git(&dir, &["add", "-A"]).is_ok()
        && git(&dir, &["commit", "-q", "-m", "SenseQuant v1.0: student model v1.0_20251010"]).is_ok()
        && git(&dir, &["tag", "v1.0.0"]).is_ok();
    if has_git {
        println!("git repository initialised, commit tagged v1.0.0");
    } else {
        context.warn("git is not available: the audit will record null git metadata");
    }

    Ok((dir, has_git))
}

/// Phases 1–3: audit, validation (a strict gate refused first), the manifest.
fn first_release(ws: &Context) -> anyhow::Result<()> {
    step("Phase 1: Release Audit (make release-audit)");
    command_line("shipshape audit");
    expect_success(super::audit::run(ws, &AuditArgs { json: false })?, "audit")?;

    step("Phase 2: Release Validation (make release-validate)");
    command_line("shipshape validate --dry-run");
    expect_success(super::validate::run(ws, &validate_args(None, true))?, "validate --dry-run")?;
    command_line("shipshape validate --checklist checklists/strict.toml   # a deliberately strict gate");
    let strict = super::validate::run(ws, &validate_args(Some("checklists/strict.toml"), false))?;
    if strict == ExitCode::SUCCESS {
        bail!("the strict gate passed; the demo expected it to fail");
    }
    println!("(failed, as intended: exit code 1)");
    command_line("shipshape manifest --type minor");
    match super::manifest::run(ws, &manifest_args(ReleaseTypeArg::Minor, "SQNT-123")) {
        Err(error) => println!("error: {error}\n(refused, as it must be: the bundle's validation failed)"),
        Ok(_) => bail!("manifest accepted a bundle whose validation failed"),
    }
    command_line("shipshape validate");
    expect_success(super::validate::run(ws, &validate_args(None, false))?, "validate")?;

    step("Phase 3: Release Manifest (make release-manifest)");
    command_line(
        "shipshape manifest --type minor --deployer demo-release-manager --build-id demo-build-1 --ticket SQNT-123",
    );
    expect_success(super::manifest::run(ws, &manifest_args(ReleaseTypeArg::Minor, "SQNT-123"))?, "manifest")?;
    command_line("shipshape verify --integrity-only");
    expect_success(
        super::verify::run(ws, &VerifyArgs { manifest: None, artifacts: true, integrity_only: true, json: false })?,
        "verify",
    )?;

    Ok(())
}

/// Two demo keys (outside the workspace) for the story's two roles, and their approvals of the
/// first manifest: (the keys' directory, the manifest's path relative to the workspace).
fn approve_first_release(ws: &Context, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    step("Approvals: the story's two roles sign the manifest's exact bytes");
    let keys = dir.with_file_name("keys");
    fs::create_dir_all(&keys)?;
    let mut signers = fs::read_to_string(dir.join("release/allowed_signers"))?;
    for (who, email, role) in
        [("jane", "jane@sensequant.example", "risk-manager"), ("john", "john@sensequant.example", "engineering-lead")]
    {
        let public =
            shipshape_core::pipeline::approve::generate_ed25519(&keys.join(who), &format!("{who} (demo key)"))?;
        signers.push_str(&format!("{email} namespaces=\"{role}@shipshape\" {public}\n"));
    }
    fs::write(dir.join("release/allowed_signers"), signers)?;
    println!(
        "generated two demo keys in {} (outside the workspace) and added their public keys to release/allowed_signers",
        keys.display()
    );
    let first_manifest = shipshape_core::pipeline::manifest::newest_path(&ws.workspace()?)?;
    let first_rel = first_manifest.strip_prefix(dir)?.to_path_buf();
    for (who, role) in [("jane", "risk-manager"), ("john", "engineering-lead")] {
        command_line(&format!(
            "shipshape approve {} --role {role} --key {}",
            first_rel.display(),
            keys.join(who).display()
        ));
        expect_success(super::approve::run(ws, &approve_args(&first_rel, role, &keys.join(who)))?, "approve")?;
    }
    command_line("shipshape verify");
    expect_success(
        super::verify::run(ws, &VerifyArgs { manifest: None, artifacts: false, integrity_only: false, json: false })?,
        "verify",
    )?;

    Ok((keys, first_rel))
}

/// A tuned search space released as a hotfix, approved by one role; its rollback plan printed.
fn second_release(ws: &Context, dir: &Path, has_git: bool, keys: &Path) -> anyhow::Result<()> {
    step("A second release: a tuned search space, as a hotfix");
    let search_space = dir.join("search_space.yaml");
    let text = fs::read_to_string(&search_space)?.replace("[0.55, 0.60, 0.62, 0.65]", "[0.58, 0.60, 0.62, 0.65]");
    fs::write(&search_space, text)?;
    println!("edited search_space.yaml (intraday_confidence grid)");
    if has_git {
        git(dir, &["commit", "-q", "-am", "Tune intraday confidence grid"])?;
        git(dir, &["tag", "v1.0.1"])?;
    }
    command_line("shipshape audit");
    expect_success(super::audit::run(ws, &AuditArgs { json: false })?, "audit")?;
    command_line("shipshape validate");
    expect_success(super::validate::run(ws, &validate_args(None, false))?, "validate")?;
    command_line(
        "shipshape manifest --type hotfix --deployer demo-release-manager --build-id demo-build-1 --ticket SQNT-124",
    );
    expect_success(super::manifest::run(ws, &manifest_args(ReleaseTypeArg::Hotfix, "SQNT-124"))?, "manifest")?;
    let second_rel =
        shipshape_core::pipeline::manifest::newest_path(&ws.workspace()?)?.strip_prefix(dir)?.to_path_buf();
    command_line(&format!(
        "shipshape approve {} --role engineering-lead --key {}   # a hotfix needs one approval",
        second_rel.display(),
        keys.join("john").display()
    ));
    expect_success(
        super::approve::run(ws, &approve_args(&second_rel, "engineering-lead", &keys.join("john")))?,
        "approve",
    )?;
    command_line("shipshape verify --artifacts");
    expect_success(
        super::verify::run(ws, &VerifyArgs { manifest: None, artifacts: true, integrity_only: false, json: false })?,
        "verify",
    )?;
    let workspace = ws.workspace()?;
    let newest = shipshape_core::pipeline::manifest::newest_path(&workspace)?;
    let loaded = shipshape_core::pipeline::manifest::load(&newest)?;
    println!(
        "\nrollback plan of {} (back to {}):",
        loaded.manifest.release_id,
        loaded.manifest.rollback_plan.previous_release_id.as_ref().map_or("nothing".to_string(), |id| id.to_string())
    );
    for command in &loaded.manifest.rollback_plan.restore_commands {
        println!("  {command}");
    }

    Ok(())
}

/// Phase 4: deploy the first release, then the hotfix; roll back; status and history.
fn deploy_and_roll_back(ws: &Context, first_rel: &Path) -> anyhow::Result<()> {
    step("Phase 4: Production Deployment (make release-deploy)");
    command_line(&format!("shipshape deploy {} --yes", first_rel.display()));
    expect_success(super::deploy::deploy(ws, &deploy_args(Some(first_rel.to_path_buf())))?, "deploy")?;
    command_line("shipshape deploy --yes   # the newest approved manifest: the hotfix");
    expect_success(super::deploy::deploy(ws, &deploy_args(None))?, "deploy")?;
    command_line("shipshape status");
    expect_success(
        super::status::status(ws, &crate::cli::StatusArgs { deep: false, json: false, env: None })?,
        "status",
    )?;

    step("Rollback (make release-rollback)");
    command_line("shipshape rollback --yes --reason \"demo: back to the minor release\"");
    expect_success(
        super::deploy::rollback(
            ws,
            &crate::cli::RollbackArgs {
                to: None,
                env: None,
                reason: Some("demo: back to the minor release".into()),
                yes: true,
                dry_run: false,
            },
        )?,
        "rollback",
    )?;
    command_line("shipshape status");
    expect_success(
        super::status::status(ws, &crate::cli::StatusArgs { deep: false, json: false, env: None })?,
        "status",
    )?;
    command_line("shipshape history");
    expect_success(super::status::history(ws, &crate::cli::HistoryArgs { json: false, all: false })?, "history")?;

    Ok(())
}

/// One byte of the first manifest changed in a copy of the workspace: verification refuses the
/// chain and the approvals. Returns the copy's path.
fn tamper_drill(context: &Context, dir: &Path, first_rel: &Path) -> anyhow::Result<PathBuf> {
    let workspace = context.at(dir.to_path_buf()).workspace()?;
    step("Tamper drill: one byte of the first manifest changed, in a copy of the workspace");
    let tampered = dir.with_file_name("tampered");
    copy_tree(dir, &tampered)?;
    let first =
        shipshape_core::pipeline::manifest::manifest_paths(&workspace)?.into_iter().next().context("first manifest")?;
    let first_in_copy = tampered.join(first.strip_prefix(dir)?);
    let mut bytes = fs::read(&first_in_copy)?;
    const FIELD: &[u8] = b"prepared_by: ";
    let position =
        bytes.windows(FIELD.len()).position(|w| w == FIELD).context("no prepared_by in the first manifest")?;
    bytes[position + FIELD.len()] ^= 0x01;
    fs::write(&first_in_copy, bytes)?;
    println!("changed one byte of {} in {}", first.strip_prefix(dir)?.display(), tampered.display());
    command_line(&format!("shipshape -C {} verify", tampered.display()));
    let code = super::verify::run(
        &context.at(tampered.clone()),
        &VerifyArgs { manifest: None, artifacts: false, integrity_only: false, json: false },
    )?;
    if code == ExitCode::SUCCESS {
        bail!("verify accepted a tampered manifest chain");
    }
    println!("(refused, as it must be: exit code 1)");
    command_line(&format!("shipshape -C {} verify {}", tampered.display(), first_rel.display()));
    let code = super::verify::run(
        &context.at(tampered.clone()),
        &VerifyArgs { manifest: Some(tampered.join(first_rel)), artifacts: false, integrity_only: false, json: false },
    )?;
    if code == ExitCode::SUCCESS {
        bail!("verify accepted approvals of a tampered manifest");
    }
    println!("(refused, as it must be: the approvals no longer match the manifest's bytes)");

    Ok(tampered)
}

/// Outcome events of a regressed model for `(from, to]` (deterministic): intraday trades for five
/// symbols every minute with a hit ratio of 0.42 and losses larger than gains, swing trades every
/// ten minutes with a precision of 0.40.
fn regressed_events(from: i64, to: i64) -> String {
    let mut out = String::new();
    let mut minute = from / 60 + 1;
    while minute * 60 <= to {
        let ts = jiff::Timestamp::from_second(minute * 60).map(|t| t.to_string()).unwrap_or_default();
        for (k, symbol) in ["RELIANCE", "TCS", "INFY", "HDFCBANK", "ICICIBANK"].iter().enumerate() {
            let n = minute * 5 + k as i64;
            let right = ((n as f64) * 0.618_033_988_75).fract() < 0.42;
            let signal = if n % 2 == 0 { 1 } else { -1 };
            let (outcome, ret) = if right { (signal, 0.004) } else { (-signal, -0.005) };
            out.push_str(&format!(
                "{{\"id\":\"live-in-{n}\",\"ts\":\"{ts}\",\"strategy\":\"intraday\",\"symbol\":\"{symbol}\",\"signal\":{signal},\"outcome\":{outcome},\"return\":{ret}}}\n"
            ));
            if minute % 10 == 0 {
                let win = ((n as f64) * 0.414_213_562_37).fract() < 0.40;
                let (outcome, ret) = if win { (1, 0.012) } else { (-1, -0.011) };
                out.push_str(&format!(
                    "{{\"id\":\"live-sw-{n}\",\"ts\":\"{ts}\",\"strategy\":\"swing\",\"symbol\":\"{symbol}\",\"signal\":1,\"outcome\":{outcome},\"return\":{ret}}}\n"
                ));
            }
        }
        minute += 1;
    }
    out
}

/// Phase 5: redeploy the hotfix, then simulate its first hours of production outcomes (with a
/// regression) in ten-minute steps: ingest, evaluate, alert, and — auto-rollback on — roll back.
fn watch(ws: &Context, dir: &Path) -> anyhow::Result<i64> {
    step("Phase 5: the 48-hour watch (shipshape ingest / evaluate / alerts), simulated");
    let config_path = dir.join("shipshape.toml");
    let config = fs::read_to_string(&config_path)?;
    fs::write(&config_path, config.replacen("enabled = false", "enabled = true", 1))?;
    println!("edited shipshape.toml: [monitoring.auto_rollback] enabled = true (3 critical alerts within 1h)");
    command_line("shipshape deploy --yes   # the hotfix again");
    expect_success(super::deploy::deploy(ws, &deploy_args(None))?, "deploy")?;
    let workspace = ws.workspace()?;
    let info = shipshape_core::registry::get_active_release(&workspace, ws.now())?.context("no active release")?;
    let deployed = info.deployment_timestamp;
    println!(
        "\nsimulating the first 2 hours after {} was deployed at {}: every 10 minutes the trading system's",
        info.release_id, deployed
    );
    println!("outcome events are ingested and one evaluation pass runs. The model has regressed.");
    let mut monitor = shipshape_monitor::monitor::Monitor::open(workspace)?;
    let live = dir.join("data/monitoring/live_events.jsonl");
    let mut last = deployed.unix_seconds();
    let mut rolled_back = false;
    for step_number in 1..=12 {
        let now = deployed.plus(jiff::SignedDuration::from_mins(10 * step_number));
        let text = regressed_events(last, now.unix_seconds());
        last = now.unix_seconds();
        fs::write(&live, &text)?;
        let timeline = shipshape_monitor::monitor::Timeline::of(&monitor.workspace)?;
        let options = shipshape_monitor::monitor::IngestOptions {
            format: None,
            skip_bad: false,
            timeline: &timeline,
            now,
            check_skew: true,
        };
        let report = monitor.ingest(&live, &mut text.as_bytes(), &options)?;
        let pass = monitor.evaluate(now)?;
        let states: Vec<String> = pass
            .metrics
            .iter()
            .map(|m| {
                let value = m.evaluation.value.value.map_or("n/a".to_string(), |v| format!("{v:.3}"));
                let state = serde_json::to_value(m.state)
                    .ok()
                    .and_then(|v| v["state"].as_str().map(str::to_string))
                    .unwrap_or_default();
                format!("{} {value} {state}", m.metric)
            })
            .collect();
        println!("+{:>3} min  {:>3} events  {}", step_number * 10, report.accepted, states.join(" | "));
        for notification in &pass.notifications {
            println!("          ALERT: {}", notification.summary);
        }
        monitor.deliver(&mut |_| {})?;
        if let Some(auto) = &pass.auto_rollback {
            println!("          AUTO-ROLLBACK: {} ({})", auto.outcome, auto.reason);
            rolled_back = auto.outcome.starts_with("rolled back");
            let later = ws.pinned(now);
            command_line("shipshape alerts --state firing");
            let alerts = crate::cli::AlertsArgs {
                state: Some(crate::cli::AlertStateArg::Firing),
                release: None,
                limit: 10,
                json: false,
            };
            expect_success(super::monitor::alerts(&later, &alerts)?, "alerts")?;
            command_line("shipshape history");
            expect_success(
                super::status::history(&later, &crate::cli::HistoryArgs { json: false, all: false })?,
                "history",
            )?;
            break;
        }
    }
    if !rolled_back {
        bail!("the simulated regression did not trigger the automatic rollback");
    }
    Ok(last)
}

/// Phase 6: the team fixed the data feed and redeploys the hotfix; the dashboard serves the demo
/// workspace with the clock continuing from the simulation, until Ctrl-C.
fn serve_dashboard(ws: &Context, args: &DemoArgs, watch_end: i64) -> anyhow::Result<()> {
    step("Phase 6: the dashboard (shipshape serve)");
    let end = jiff::Timestamp::from_second(watch_end + 600)?;
    let offset = end.duration_since(jiff::Timestamp::now());
    let later = ws.with_clock(std::sync::Arc::new(shipshape_core::infra::clock::OffsetClock(offset)));
    command_line("shipshape deploy --yes   # the hotfix once more: its regression was a data-feed fault, now fixed");
    expect_success(super::deploy::deploy(&later, &deploy_args(None))?, "deploy")?;
    command_line(&format!("shipshape serve --bind {}", args.bind));
    println!("open the dashboard in a browser; the operator token printed below enables its rollback button.");
    println!("the clock continues from the simulation ({end}); stop with Ctrl-C.");
    // The same defaults as `shipshape serve --bind ADDR` typed at the terminal.
    let cli =
        <crate::cli::Cli as clap::Parser>::try_parse_from(["shipshape", "serve", "--bind", &args.bind.to_string()])?;
    let crate::cli::Command::Serve(serve) = cli.command else {
        anyhow::bail!("internal error: `serve` did not parse as the serve command");
    };
    expect_success(super::serve::run(&later, &serve)?, "serve")
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().context("running cp")?;
    if !status.success() {
        bail!("copying {} to {} failed", from.display(), to.display());
    }
    Ok(())
}
