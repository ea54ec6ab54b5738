//! `init`, workspace discovery (`-C`, searching upwards), the Makefile, `--help`, and the demo.

use std::fs;
use std::process::Command;

use crate::util::{TestWorkspace, assert_one_line_error, example_dir};

fn shipshape() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("shipshape").unwrap()
}

#[test]
fn init_scaffolds_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let output = shipshape().current_dir(dir.path()).args(["init", "ws"]).assert().success();
    let stdout = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    let ws = dir.path().join("ws");
    for file in ["shipshape.toml", "Makefile", "release/.gitignore"] {
        assert!(stdout.contains(&format!("created  {}", ws.join(file).display())), "{stdout}");
    }
    assert!(ws.join("release/manifests").is_dir());
    // The config is the documented default: the example workspace's monitoring section, up to its
    // validation section (which the example fills in and the template shows commented out); an
    // empty directory has no artifacts to propose, so they are shown commented out.
    let config = fs::read_to_string(ws.join("shipshape.toml")).unwrap();
    let example = fs::read_to_string(example_dir().join("shipshape.toml")).unwrap();
    let (from, to) = ("# Post-deploy monitoring", "# Validation: `shipshape validate`");
    let section = |text: &str| text[text.find(from).unwrap()..text.find(to).unwrap()].to_string();
    assert_eq!(section(&config), section(&example));
    assert!(config.contains("# [artifacts.configs]") && !config.contains("\n[artifacts."), "{config}");
    assert!(config.contains("# [deploy]"), "a commented [deploy] section");
    fs::write(ws.join("shipshape.toml"), "# mine\n").unwrap();
    let output = shipshape().current_dir(dir.path()).args(["init", "ws"]).assert().success();
    let stdout = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    assert!(stdout.contains("kept") && !stdout.contains("created"), "{stdout}");
    assert_eq!(fs::read_to_string(ws.join("shipshape.toml")).unwrap(), "# mine\n");
}

/// A new user's project — a few YAML configs, a model, a notebook, some code — reaches a deployed,
/// approved release with `shipshape init` and the steps it prints: the includes it proposes match
/// the files (audit passes at once), its starter checklist item gives `validate` something to
/// check, and the commented `[deploy]` section is all that needs editing.
#[test]
fn init_on_a_plain_project_reaches_a_deployed_approved_release_by_its_printed_steps() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("pricing");
    for (path, bytes) in [
        ("config/app.yaml", b"threshold: 0.6\n".to_vec()),
        ("config/limits/risk.yml", b"max_position: 0.05\n".to_vec()),
        ("models/v3/ranker.pkl", (0..4096u32).map(|i| (i % 251) as u8).collect()),
        ("notebooks/eval.ipynb", b"{\"cells\": []}\n".to_vec()),
        ("train.py", b"print('train')\n".to_vec()),
        ("pyproject.toml", b"[project]\nname = 'pricing'\n".to_vec()),
    ] {
        let file = project.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, bytes).unwrap();
    }
    let now = "2025-10-12T19:00:00+05:30";
    let run = |args: &[&str]| {
        let output = shipshape().current_dir(&project).env("SHIPSHAPE_NOW", now).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let printed = run(&["init"]);
    assert!(!printed.contains("/./"), "paths are tidy: {printed}");
    assert!(
        printed.contains("2 configs (config/**/*.yaml, config/**/*.yml); 1 models (models/**/*.pkl); 1 notebooks (notebooks/**/*.ipynb)"),
        "{printed}"
    );
    assert!(
        printed.contains("shipshape approve newest --role ROLE --key KEY")
            && printed.contains("shipshape deploy --yes"),
        "{printed}"
    );
    // Step 1: uncomment [deploy] and set its target.
    let config = fs::read_to_string(project.join("shipshape.toml")).unwrap();
    let config = config
        .replace("# [deploy]\n", "[deploy]\n")
        .replace("# target = \"/srv/my-project\"", "target = \"../production\"  #")
        .replace("# mode = \"copy\"  ", "mode = \"copy\"  #");
    fs::write(project.join("shipshape.toml"), config).unwrap();
    // Step 2.
    run(&["audit"]);
    let validated = run(&["validate"]);
    assert!(validated.contains("release files present"), "{validated}");
    run(&["manifest", "--type", "minor"]);
    // Step 3: the two roles of release/policy.yaml.
    let mut signers = fs::read_to_string(project.join("release/allowed_signers")).unwrap();
    for (who, role) in [("ana", "risk-manager"), ("bo", "engineering-lead")] {
        let key = dir.path().join(who);
        assert!(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&key)
                .status()
                .unwrap()
                .success()
        );
        let public = fs::read_to_string(key.with_extension("pub")).unwrap();
        signers.push_str(&format!("{who}@example.com namespaces=\"{role}@shipshape\" {public}"));
        fs::write(project.join("release/allowed_signers"), &signers).unwrap();
        run(&["approve", "newest", "--role", role, "--key", key.to_str().unwrap()]);
    }
    // Step 4 and 5.
    run(&["verify"]);
    run(&["deploy", "--yes"]);
    let status = run(&["status"]);
    assert!(status.contains("in sync"), "{status}");
    assert_eq!(fs::read(dir.path().join("production/models/v3/ranker.pkl")).unwrap().len(), 4096);
    assert!(!dir.path().join("production/train.py").exists() && !dir.path().join("production/pyproject.toml").exists());
}

#[test]
fn example_makefile_is_the_one_init_writes() {
    let dir = tempfile::tempdir().unwrap();
    shipshape().current_dir(dir.path()).arg("init").assert().success();
    assert_eq!(
        fs::read_to_string(dir.path().join("Makefile")).unwrap(),
        fs::read_to_string(example_dir().join("Makefile")).unwrap()
    );
}

fn make(ws: &TestWorkspace, target: &str) -> std::process::Output {
    Command::new("make")
        .arg("-s")
        .arg(target)
        .arg(format!("SHIPSHAPE={}", assert_cmd::cargo::cargo_bin("shipshape").display()))
        .current_dir(&ws.root)
        .env("SHIPSHAPE_NOW", "2025-10-12T19:00:00+05:30")
        .output()
        .expect("make runs")
}

#[test]
fn makefile_targets_run_shipshape_or_say_plainly_they_cannot() {
    let ws = TestWorkspace::example();
    let help = make(&ws, "help");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for target in [
        "release-audit",
        "release-validate",
        "release-manifest",
        "release-deploy",
        "release-rollback",
        "release-status",
    ] {
        assert!(text.contains(target), "{target} in {text}");
    }
    let manifest = make(&ws, "release-manifest");
    assert!(manifest.status.success(), "{}", String::from_utf8_lossy(&manifest.stderr));
    assert_eq!(ws.manifests().len(), 1);
    assert!(
        String::from_utf8_lossy(&manifest.stdout).contains("ok   gate     intraday hit ratio"),
        "release-manifest runs validation first"
    );
    assert!(String::from_utf8_lossy(&manifest.stdout).contains("verified release_20251012_190000"));
    // The deploy targets run shipshape too (the example deploys into its production/ directory).
    let keys = ws.temp.path();
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "jane", "-f"])
            .arg(keys.join("jane"))
            .status()
            .unwrap()
            .success()
    );
    let public = fs::read_to_string(keys.join("jane.pub")).unwrap();
    let mut signers = fs::read_to_string(ws.path("release/allowed_signers")).unwrap();
    signers.push_str(&format!("jane@example.com namespaces=\"risk-manager@shipshape\" {public}"));
    fs::write(ws.path("release/allowed_signers"), signers).unwrap();
    let make_with = |target: &str, flags: &str, now: &str| {
        Command::new("make")
            .args(["-s", target, flags])
            .arg(format!("SHIPSHAPE={}", assert_cmd::cargo::cargo_bin("shipshape").display()))
            .current_dir(&ws.root)
            .env("SHIPSHAPE_NOW", now)
            .output()
            .unwrap()
    };
    let config = fs::read_to_string(ws.path("src/app/config.py")).unwrap();
    ws.write("src/app/config.py", config.replace("0.62", "0.63").as_bytes()); // the hotfix
    let hotfix = make_with("release-manifest", "MANIFEST_FLAGS=--type hotfix", "2025-10-12T20:00:00+05:30");
    assert!(hotfix.status.success(), "{}", String::from_utf8_lossy(&hotfix.stderr));
    let manifest = ws.manifests().into_iter().rfind(|p| !p.to_string_lossy().ends_with(".approvals.yaml")).unwrap();
    ws.cmd_at("2025-10-12T20:00:00+05:30")
        .arg("approve")
        .arg(&manifest)
        .args(["--role", "risk-manager", "--key"])
        .arg(keys.join("jane"))
        .assert()
        .success();
    let without_yes = make_with("release-deploy", "DEPLOY_FLAGS=", "2025-10-12T20:00:00+05:30");
    assert!(!without_yes.status.success(), "no terminal, no --yes: refused");
    assert!(String::from_utf8_lossy(&without_yes.stderr).contains("pass --yes"));
    let deploy = make_with("release-deploy", "DEPLOY_FLAGS=--yes", "2025-10-12T20:00:00+05:30");
    assert!(deploy.status.success(), "{}", String::from_utf8_lossy(&deploy.stderr));
    assert!(ws.path("production/src/app/config.py").exists());
    let status = make_with("release-status", "DEPLOY_FLAGS=", "2025-10-12T20:00:00+05:30");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(String::from_utf8_lossy(&status.stdout).contains("in sync"));
    let rollback = make_with("release-rollback", "ROLLBACK_FLAGS=--yes", "2025-10-12T20:00:00+05:30");
    // The manifest before it never ran in production: there is no release to go back to, and the
    // refusal says so (rather than "restoring" a release that never ran).
    assert!(!rollback.status.success());
    let stderr = String::from_utf8_lossy(&rollback.stderr);
    assert!(
        stderr.contains("no last known good release") && stderr.contains("no earlier release ran here"),
        "{stderr}"
    );
}

#[test]
fn workspace_is_found_from_a_subdirectory_and_with_dash_c() {
    let ws = TestWorkspace::example();
    let output = ws.cmd().current_dir(ws.path("src/app")).arg("audit").assert().success();
    assert_eq!(
        String::from_utf8_lossy(&output.get_output().stdout).trim(),
        "release/audit_20251012_190000/bundle.yaml"
    );
    ws.cmd().current_dir(ws.path("notebooks")).arg("validate").assert().success();
    let elsewhere = tempfile::tempdir().unwrap();
    ws.cmd_at("2025-10-12T19:00:05+05:30")
        .current_dir(elsewhere.path())
        .args(["-C", ws.path("data/models").to_str().unwrap(), "manifest"])
        .assert()
        .success();
    assert_eq!(ws.manifests().len(), 1);
    let output = shipshape().current_dir(elsewhere.path()).args(["-C", "nowhere", "verify"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_one_line_error(&output, "nowhere");
}

#[test]
fn help_lists_every_command_and_the_exit_codes() {
    let output = shipshape().arg("--help").assert().success();
    let text = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    for command in
        ["init", "audit", "manifest", "verify", "deploy", "serve", "analytics", "demo", "Exit codes", "-C <DIR>"]
    {
        assert!(text.contains(command), "{command} missing from --help:\n{text}");
    }
    // Every subcommand clap knows has an example in its --help.
    let commands: Vec<String> = text
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("  ").filter(|l| !l.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 20, "{commands:?}");
    for command in &commands {
        let output = shipshape().args([command.as_str(), "--help"]).assert().success();
        assert!(
            String::from_utf8_lossy(&output.get_output().stdout).contains("Example"),
            "{command} --help has an example"
        );
    }
}

#[test]
fn bad_flags_exit_2() {
    let output = shipshape().args(["manifest", "--type", "huge"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = shipshape().args(["frobnicate"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn bad_clock_override_is_refused() {
    let ws = TestWorkspace::example();
    let before = ws.snapshot();
    let output = ws.cmd_at("yesterday").arg("audit").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_one_line_error(&output, "SHIPSHAPE_NOW");
    crate::util::assert_same_tree(&before, &ws.snapshot(), "audit with a bad clock");
}

#[test]
fn demo_runs_the_pipeline_and_the_tamper_drill() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("demo");
    let output =
        shipshape().args(["demo", "--dir", target.to_str().unwrap()]).env_remove("SHIPSHAPE_NOW").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for step in [
        "$ shipshape audit",
        "$ shipshape manifest",
        "$ shipshape verify",
        "verified release_",
        "FAIL chain",
        "refused, as it must be",
        "ALERT: intraday_hit_ratio critical drop (heightened mode)",
        "AUTO-ROLLBACK: rolled back to release_",
        "by shipshape-monitor: auto-rollback: 3 critical alerts within 1h",
        "dashboard:       shipshape -C",
    ] {
        assert!(stdout.contains(step), "{step} missing from:\n{stdout}");
    }
    // Everything inside --dir: the workspace, the keys, the tampered copy; nothing beside it.
    let mut inside: Vec<String> =
        fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    inside.sort();
    assert_eq!(inside, ["keys", "tampered", "workspace"]);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "the demo wrote beside its --dir");
    let target = target.join("workspace");
    let names: Vec<String> = fs::read_dir(target.join("release/manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.iter().filter(|n| !n.ends_with(".approvals.yaml")).count(), 2, "{names:?}");
    // The demo workspace verifies on its own afterwards.
    shipshape().current_dir(&target).args(["verify", "--artifacts"]).assert().success();
    let approvals = fs::read_dir(target.join("release/manifests"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".approvals.yaml"))
        .count();
    assert_eq!(approvals, 2, "both releases were approved by the demo's two roles");
    // A non-empty --dir is refused.
    let output = shipshape().args(["demo", "--dir", target.parent().unwrap().to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_one_line_error(&output, "not empty");
}

#[test]
fn demo_ends_serving_the_dashboard_with_a_rollback_target() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("demo");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("shipshape"))
        .args(["demo", "--serve", "--bind", "127.0.0.1:0", "--dir", target.to_str().unwrap()])
        .env_remove("SHIPSHAPE_NOW")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut address = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("listening on http://") {
            address = Some(rest.to_string());
            break;
        }
    }
    let address = address.expect("the demo did not start serving");
    let (status, response) = crate::util::http::request(&address, "GET", "/api/v1/status", &[], b"");
    child.kill().unwrap();
    let stderr = {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut text).unwrap();
        text
    };
    child.wait().unwrap();
    assert_eq!(status, 200, "{response}");
    let body: serde_json::Value = serde_json::from_str(&response).unwrap();
    let active = &body["active_release"];
    assert_eq!(active["mode"], "heightened");
    assert_eq!(active["manifest"]["release_type"], "hotfix");
    assert!(active["manifest"]["rollback_target"].as_str().unwrap().starts_with("release_"));
    assert!(stderr.contains("operator token (this run only"), "{stderr}");
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let output = shipshape().args(["completions", "bash"]).output().unwrap();
    assert!(output.status.success());
    let script = String::from_utf8(output.stdout).unwrap();
    for command in ["deploy", "rollback", "ingest", "evaluate", "serve", "analytics", "--token-file"] {
        assert!(script.contains(command), "{command} missing from the bash completion");
    }
    // The script is valid bash.
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), &script).unwrap();
    assert!(std::process::Command::new("bash").arg("-n").arg(file.path()).status().unwrap().success());
    for shell in ["zsh", "fish"] {
        let output = shipshape().args(["completions", shell]).output().unwrap();
        assert!(output.status.success() && String::from_utf8_lossy(&output.stdout).contains("serve"), "{shell}");
    }
    let output = shipshape().arg("man").output().unwrap();
    assert!(output.status.success());
    let page = String::from_utf8(output.stdout).unwrap();
    assert!(page.contains(".TH shipshape 1") && page.contains(".SH NAME"), "{page}");
    assert!(page.contains("rollback") && page.contains("serve"), "{page}");
    // Each command's own page, as the main page lists them (shipshape-deploy(1), …), and its help.
    let output = shipshape().args(["man", "deploy"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let page = String::from_utf8(output.stdout).unwrap();
    assert!(page.contains(".TH shipshape-deploy 1") && page.contains("\\-\\-dry\\-run"), "{page}");
    let help = shipshape().args(["help", "deploy"]).output().unwrap();
    assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).contains("Usage: shipshape deploy"));
    assert!(shipshape().args(["help", "--help"]).output().unwrap().status.success());
    let unknown = shipshape().args(["man", "deploi"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no command `deploi`: the commands are init, audit"));
    // An unknown shell is bad input.
    assert_eq!(shipshape().args(["completions", "tcsh"]).output().unwrap().status.code(), Some(2));
}

/// After `--role` (and `--sign-role`) bash offers the workspace policy's roles, not file names —
/// run through bash's own completion machinery in the example workspace.
#[test]
fn bash_completion_offers_the_policy_roles_after_role() {
    let ws = TestWorkspace::example();
    let script = ws.temp.path().join("shipshape.bash");
    let output = shipshape().args(["completions", "bash"]).output().unwrap();
    fs::write(&script, &output.stdout).unwrap();
    let binary_dir = assert_cmd::cargo::cargo_bin("shipshape").parent().unwrap().to_path_buf();
    let complete = |words: &str, cword: usize| {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"{words}\"; COMP_POINT=${{#COMP_LINE}}; _shipshape shipshape \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let output = Command::new("bash")
            .args(["-c", &program])
            .current_dir(&ws.root)
            .env("PATH", format!("{}:{}", binary_dir.display(), std::env::var("PATH").unwrap_or_default()))
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let mut offered: Vec<String> = String::from_utf8(output.stdout).unwrap().lines().map(str::to_string).collect();
        offered.sort();
        offered
    };
    assert_eq!(complete("shipshape approve newest --role ''", 4), ["engineering-lead", "risk-manager"]);
    assert_eq!(complete("shipshape approve newest --role ri", 4), ["risk-manager"]);
    assert_eq!(complete("shipshape manifest --sign k --sign-role e", 5), ["engineering-lead"]);
    // Outside a workspace there is nothing to offer, and nothing printed on the terminal.
    let outside = tempfile::tempdir().unwrap();
    let listed = shipshape().current_dir(outside.path()).args(["completions", "--list-roles"]).output().unwrap();
    assert!(listed.status.success() && listed.stdout.is_empty() && listed.stderr.is_empty(), "{listed:?}");
    // A reader that stops early is no panic.
    let piped = Command::new("bash")
        .args(["-c", &format!("{} completions bash | head -1", assert_cmd::cargo::cargo_bin("shipshape").display())])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&piped.stderr));
}

#[test]
fn example_ci_workflow_parses_and_stops_before_deploy() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ci/github/release.yml");
    let text = fs::read_to_string(&path).unwrap();
    let workflow: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(workflow["on"]["push"]["tags"][0], "v*");
    let steps = workflow["jobs"]["manifest"]["steps"].as_array().unwrap();
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    for command in ["shipshape audit", "shipshape validate", "shipshape manifest", "shipshape verify --integrity-only"]
    {
        assert!(runs.iter().any(|r| r.contains(command)), "{command} missing from the workflow");
    }
    assert!(runs.iter().all(|r| !r.contains("shipshape deploy") && !r.contains("shipshape approve")), "{runs:?}");
    let upload =
        steps.iter().find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("actions/upload-artifact"))).unwrap();
    assert!(upload["with"]["path"].as_str().unwrap().contains("release/manifests/"));
}

#[test]
fn a_reader_that_stops_early_is_not_a_panic() {
    // `true` exits at once; shipshape then writes into a closed pipe (EPIPE).
    let ws = TestWorkspace::example();
    let binary = assert_cmd::cargo::cargo_bin("shipshape");
    for command in ["history", "status", "analytics", "analytics --json", "alerts"] {
        let script = format!("(sleep 0.3; exec {} -C {} {command}) | true", binary.display(), ws.root.display());
        let output = Command::new("bash").args(["-o", "pipefail", "-c", &script]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{command}: {stderr}");
        assert_eq!(output.status.code(), Some(0), "{command}: {stderr}");
    }
}
