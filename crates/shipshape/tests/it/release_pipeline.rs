//! The story's integration suite (its `tests/integration/test_release_pipeline`), run through the
//! real binary on copies of the example workspace: the story's four named tests
//! (`test_release_manifest_generation`, `test_monitoring_release_registration`,
//! `test_heightened_monitoring_alerts`, `test_rollback_plan_execution`), the 48 h transition, and
//! the whole story end to end (`test_story_end_to_end`). Deeper tests of each part live beside it
//! (deploy.rs, monitoring.rs, approvals.rs, dashboard.rs, …).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use crate::util::http::get_json;
use crate::util::watch::{HOUR, MINUTE, at, baseline, deployed, evaluate, events, ingest, metric, run, state};
use crate::util::{Setup, TestWorkspace, assert_one_line_error, sha256sum, stderr_of, two_releases, yaml_value};
use jiff::Timestamp;
use serde_json::{Value, json};

const NOW: &str = "2025-10-12T19:00:00+05:30";

/// Story test: the manifest's structure, every schema field, and every hash checked against an
/// independent SHA-256 (coreutils).
#[test]
fn test_release_manifest_generation() {
    let ws = TestWorkspace::example_git();
    let head = ws.git(&["rev-parse", "HEAD"]);

    let audit = ws.cmd_at("2025-10-12T18:30:00+05:30").args(["audit", "--json"]).assert().success();
    let summary: Value = serde_json::from_slice(&audit.get_output().stdout).unwrap();
    assert_eq!(summary["bundle"], "release/audit_20251012_183000/bundle.yaml");
    assert_eq!(summary["artifacts"], 4);
    let bundle_path = ws.path("release/audit_20251012_183000/bundle.yaml");
    assert_eq!(summary["bundle_sha256"], sha256sum(&bundle_path));

    let bundle = yaml_value(&bundle_path);
    assert_eq!(bundle["schema_version"], 1);
    assert_eq!(bundle["bundle_id"], "audit_20251012_183000");
    assert_eq!(bundle["created"], "2025-10-12T18:30:00+05:30");
    assert_eq!(bundle["tool"], json!({"name": "shipshape", "version": env!("CARGO_PKG_VERSION")}));
    assert_eq!(bundle["git"], json!({"commit": head, "branch": "release/v1.0.0", "tag": "v1.0.0", "dirty": false}));
    let bundle_paths: Vec<&str> =
        bundle["artifacts"].as_array().unwrap().iter().map(|a| a["path"].as_str().unwrap()).collect();
    assert_eq!(
        bundle_paths,
        ["search_space.yaml", "src/app/config.py", "data/models/student_model.pkl", "notebooks/accuracy_report.ipynb"]
    );
    for artifact in bundle["artifacts"].as_array().unwrap() {
        let file = ws.path(artifact["path"].as_str().unwrap());
        assert_eq!(artifact["hash"], sha256sum(&file));
        assert_eq!(artifact["size"], fs::metadata(&file).unwrap().len());
    }

    ws.cmd_at("2025-10-12T18:45:00+05:30").arg("validate").assert().success();
    let validation_path = ws.path("release/audit_20251012_183000/validation.yaml");

    let output = ws
        .cmd_at(NOW)
        .args(["manifest", "--type", "minor", "--deployer", "engineering_lead", "--build-id", "build_12345"])
        .args(["--ticket", "SQNT-123", "--ticket", "SQNT-124"])
        .assert()
        .success();
    let printed = String::from_utf8(output.get_output().stdout.clone()).unwrap();
    assert_eq!(printed.trim(), "release/manifests/release_20251012_190000.yaml");
    let manifest_path = ws.path(printed.trim());
    let m = yaml_value(&manifest_path);

    // Every top-level field, in the documented order.
    let keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected_keys = vec![
        "schema_version",
        "release_id",
        "release_type",
        "sequence",
        "created",
        "expires",
        "audit_bundle",
        "audit_bundle_sha256",
        "validation",
        "approval_policy",
        "previous_manifest",
        "previous_manifest_sha256",
        "deployment",
        "artifacts",
        "rollback_plan",
        "monitoring",
        "metadata",
    ];
    let mut sorted_keys = keys.clone();
    sorted_keys.sort();
    expected_keys.sort();
    assert_eq!(sorted_keys, expected_keys);
    assert_eq!(m["schema_version"], 2);
    assert_eq!(m["release_id"], "release_20251012_190000");
    assert_eq!(m["release_type"], "minor");
    assert_eq!(m["sequence"], 1);
    assert_eq!(m["created"], NOW);
    assert_eq!(m["expires"], "2025-10-19T19:00:00+05:30");
    assert_eq!(m["audit_bundle"], "release/audit_20251012_183000");
    assert_eq!(m["audit_bundle_sha256"], sha256sum(&bundle_path));
    assert_eq!(
        m["validation"],
        json!({"status": "passed", "sha256": sha256sum(&validation_path), "failed_items": [], "overridden": false})
    );
    assert_eq!(
        m["approval_policy"],
        json!({"path": "release/policy.yaml", "sha256": sha256sum(&ws.path("release/policy.yaml"))})
    );
    assert_eq!(m["previous_manifest"], Value::Null);
    assert_eq!(m["previous_manifest_sha256"], Value::Null);
    // The story's block, named for what it records: when and by whom the release was prepared.
    assert_eq!(
        m["deployment"],
        json!({"prepared_at": NOW, "prepared_by": "engineering_lead", "environment": "production"})
    );

    let kinds: Vec<&str> = m["artifacts"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(kinds.len(), 3);
    for kind in ["configs", "models", "notebooks"] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
    let mut count = 0;
    for (kind, list) in m["artifacts"].as_object().unwrap() {
        for artifact in list.as_array().unwrap() {
            count += 1;
            let path = artifact["path"].as_str().unwrap();
            let workspace_file = ws.path(path);
            let hash = sha256sum(&workspace_file);
            assert_eq!(artifact["hash"], hash, "{path}");
            assert_eq!(artifact["size"], fs::metadata(&workspace_file).unwrap().len(), "{path}");
            let backup = format!("release/backups/release_20251012_190000/{path}");
            assert_eq!(artifact["backup"], backup);
            assert_eq!(sha256sum(&ws.path(&backup)), hash, "backup of {path}");
            // The store object is named by its hash, holds those bytes, and is read-only.
            let hex = &hash["sha256:".len()..];
            let object = ws.path(&format!("release/store/sha256/{}/{}", &hex[..2], &hex[2..]));
            assert_eq!(sha256sum(&object), hash);
            assert_eq!(fs::metadata(&object).unwrap().permissions().mode() & 0o222, 0, "object is read-only");
            if kind == "models" {
                assert_eq!(artifact["version"], "v1.0_20251010");
            } else {
                assert!(artifact.get("version").is_none(), "{path}");
            }
        }
    }
    assert_eq!(count, 4);
    assert_eq!(
        m["rollback_plan"],
        json!({"previous_release_id": null, "previous_manifest": null, "restore_commands": [], "verification_steps": []})
    );
    assert_eq!(m["monitoring"]["heightened_period_hours"], 48);
    assert_eq!(
        m["monitoring"]["alert_thresholds"],
        json!({"intraday_hit_ratio_drop": 0.05, "swing_precision_drop": 0.05, "intraday_sharpe_drop": 0.15})
    );
    assert_eq!(m["monitoring"]["alert_frequency_hours"], 2.0);
    assert_eq!(
        m["monitoring"]["normal_alert_thresholds"],
        json!({"intraday_hit_ratio_drop": 0.1, "swing_precision_drop": 0.1, "intraday_sharpe_drop": 0.25})
    );
    assert_eq!(m["monitoring"]["normal_alert_frequency_hours"], 6.0);
    assert_eq!(
        m["metadata"],
        json!({
            "git_commit": head, "git_branch": "release/v1.0.0", "git_tag": "v1.0.0", "git_dirty": false,
            "build_id": "build_12345", "jira_tickets": ["SQNT-123", "SQNT-124"], "tool_version": env!("CARGO_PKG_VERSION"),
        })
    );

    ws.cmd().args(["verify", "--integrity-only", "--artifacts"]).assert().success();
}

/// The second manifest chains to the first; its rollback plan, run as written, restores the first
/// release's files, which `verify --artifacts` on the first manifest then confirms.
#[test]
fn second_manifest_chains_and_its_rollback_plan_works() {
    let ws = TestWorkspace::example_git();
    // Without a [deploy] target the rollback plan restores the workspace files from the backups
    // (the deploy tests cover the plan that runs `shipshape rollback`).
    let config = fs::read_to_string(ws.path("shipshape.toml")).unwrap();
    ws.write("shipshape.toml", config.split("\n[deploy]\n").next().unwrap().as_bytes());
    ws.git(&["commit", "-q", "-am", "no deploy target"]);
    let first = ws.release("2025-10-12T19:00:00+05:30", &[]);
    let original_config = fs::read(ws.path("src/app/config.py")).unwrap();
    let tuned = String::from_utf8(original_config.clone()).unwrap().replace("0.62", "0.64");
    ws.write("src/app/config.py", tuned.as_bytes());
    ws.write("search_space.yaml", b"student_model: {}\n");
    let second = ws.release("2025-10-13T09:00:00+05:30", &["--type", "hotfix"]);
    let m = yaml_value(&second);
    assert_eq!(m["sequence"], 2);
    assert_eq!(m["previous_manifest"], "release/manifests/release_20251012_190000.yaml");
    assert_eq!(m["previous_manifest_sha256"], sha256sum(&first));
    assert_eq!(m["rollback_plan"]["previous_release_id"], "release_20251012_190000");
    assert_eq!(m["metadata"]["git_dirty"], true, "tracked files were edited");
    ws.cmd().args(["verify", "--integrity-only"]).assert().success();

    for command in m["rollback_plan"]["restore_commands"].as_array().unwrap() {
        let command = command.as_str().unwrap();
        let command = command.replacen("shipshape", assert_cmd::cargo::cargo_bin("shipshape").to_str().unwrap(), 1);
        let status = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(&ws.root)
            .env("SHIPSHAPE_NOW", NOW)
            .status()
            .unwrap();
        assert!(status.success(), "{command}");
    }
    assert_eq!(fs::read(ws.path("src/app/config.py")).unwrap(), original_config);
    for step in m["rollback_plan"]["verification_steps"].as_array().unwrap() {
        let step = step.as_str().unwrap().replacen(
            "shipshape",
            assert_cmd::cargo::cargo_bin("shipshape").to_str().unwrap(),
            1,
        );
        let status =
            Command::new("sh").arg("-c").arg(&step).current_dir(&ws.root).env("SHIPSHAPE_NOW", NOW).status().unwrap();
        assert!(status.success(), "{step}");
    }
}

/// Identical bytes are stored once; backups are hard links into the store.
#[test]
fn unchanged_artifacts_are_deduplicated() {
    let ws = TestWorkspace::example();
    ws.release("2025-10-12T19:00:00+05:30", &[]);
    ws.write("search_space.yaml", b"student_model: {learning_rate: 0.01}\n");
    ws.release("2025-10-12T20:00:00+05:30", &[]);
    let objects = walk_files(&ws.path("release/store/sha256"));
    assert_eq!(objects.len(), 5, "4 artifacts + 1 changed one: {objects:?}");
    let model_a = ws.path("release/backups/release_20251012_190000/data/models/student_model.pkl");
    let model_b = ws.path("release/backups/release_20251012_200000/data/models/student_model.pkl");
    assert_eq!(fs::metadata(&model_a).unwrap().ino(), fs::metadata(&model_b).unwrap().ino());
}

/// Two manifests made in the same second get distinct, increasing ids.
#[test]
fn release_ids_are_unique_within_a_second() {
    let ws = TestWorkspace::example();
    let a = ws.release(NOW, &[]);
    let b = ws.release(NOW, &[]);
    assert_eq!(a.file_name().unwrap(), "release_20251012_190000.yaml");
    assert_eq!(b.file_name().unwrap(), "release_20251012_190001.yaml");
    assert_eq!(yaml_value(&b)["sequence"], 2);
    let bundles: Vec<_> = fs::read_dir(ws.path("release"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.starts_with("audit_").then_some(name)
        })
        .collect();
    assert_eq!(bundles.len(), 2, "{bundles:?}");
}

/// Environments keep separate sequences and chains.
#[test]
fn environments_have_their_own_sequence() {
    let ws = TestWorkspace::example();
    ws.release("2025-10-12T19:00:00+05:30", &[]);
    let staging = ws.release("2025-10-12T19:10:00+05:30", &["--environment", "staging"]);
    let production = ws.release("2025-10-12T19:20:00+05:30", &[]);
    assert_eq!(yaml_value(&staging)["sequence"], 1);
    assert_eq!(yaml_value(&staging)["previous_manifest"], Value::Null);
    assert_eq!(yaml_value(&production)["sequence"], 2);
    assert_eq!(yaml_value(&production)["previous_manifest"], "release/manifests/release_20251012_190000.yaml");
}

/// Without git the audit still works, records null and warns.
#[test]
fn audit_without_git_records_null_with_a_warning() {
    let ws = TestWorkspace::example();
    let output = ws.cmd().arg("audit").assert().success();
    let stderr = String::from_utf8_lossy(&output.get_output().stderr).into_owned();
    assert!(stderr.contains("warning:") && stderr.contains("not in a git repository"), "{stderr}");
    let bundle = yaml_value(&ws.path("release/audit_20251012_190000/bundle.yaml"));
    assert_eq!(bundle["git"], Value::Null);
    assert_eq!(bundle["warnings"].as_array().unwrap().len(), 1);
}

/// `--quiet` prints only the result.
#[test]
fn quiet_prints_only_the_result() {
    let ws = TestWorkspace::example_git();
    let output = ws.cmd().args(["--quiet", "audit"]).assert().success();
    assert!(output.get_output().stderr.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&output.get_output().stdout).trim(),
        "release/audit_20251012_190000/bundle.yaml"
    );
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

const A: &str = "2025-10-12T19:00:00+05:30";
const B: &str = "2025-10-12T20:00:00+05:30";
const LATER: &str = "2025-10-12T21:00:00+05:30";

/// Story test: deploy A, deploy B, roll back: the target equals A byte for byte; and B's rollback
/// plan, run as written, does the same.
#[test]
fn test_rollback_plan_execution() {
    for mode in ["copy", "symlink"] {
        let s = Setup::new(mode);
        let (a, b) = two_releases(&s, A, B);
        assert!(s.deploy(A, &a).status.success());
        s.assert_holds(&a, &b);
        let output = s.deploy(B, &b);
        assert!(output.status.success(), "{}", stderr_of(&output));
        s.assert_holds(&b, &a);
        let output = s.shipshape(LATER, &["rollback", "--yes", "--reason", "hit ratio regression"]);
        assert!(output.status.success(), "{mode}: {}", stderr_of(&output));
        s.assert_holds(&a, &b);
        let history = String::from_utf8(s.shipshape(LATER, &["history"]).stdout).unwrap();
        assert!(
            history.contains("rollback       release_20251012_190000 (from release_20251012_200000)")
                && history.contains("hit ratio regression"),
            "{history}"
        );

        // Forward again, then B's rollback plan exactly as written in its manifest.
        assert!(s.deploy("2025-10-12T22:00:00+05:30", &b).status.success());
        s.assert_holds(&b, &a);
        let plan = &yaml_value(&b)["rollback_plan"];
        let binary = assert_cmd::cargo::cargo_bin("shipshape");
        for key in ["restore_commands", "verification_steps"] {
            for command in plan[key].as_array().unwrap() {
                let command = command.as_str().unwrap();
                assert!(command.starts_with("shipshape "), "{command}");
                let status = Command::new("sh")
                    .arg("-c")
                    .arg(command.replacen("shipshape", binary.to_str().unwrap(), 1))
                    .current_dir(&s.ws.root)
                    .env("SHIPSHAPE_NOW", "2025-10-12T23:00:00+05:30")
                    .status()
                    .unwrap();
                assert!(status.success(), "{mode}: {command}");
            }
        }
        s.assert_holds(&a, &b);
        let active = yaml_value(&s.ws.path("data/monitoring/releases/active_release.yaml"));
        assert_eq!(active["release_id"], "release_20251012_190000");
        assert_eq!(active["activated_by"], "rollback");
    }
}

#[test]
fn test_monitoring_release_registration() {
    let (s, manifest) = deployed("");
    let release = yaml_value(&manifest)["release_id"].as_str().unwrap().to_string();
    let active = yaml_value(&s.ws.path("data/monitoring/releases/active_release.yaml"));
    assert_eq!(active["release_id"], release.as_str());
    assert_eq!(active["heightened_hours"], 48);
    assert_eq!(
        active["heightened_monitoring_end"].as_str().unwrap().parse::<Timestamp>().unwrap().to_string(),
        at(48 * HOUR)
    );
    assert!(s.ws.path(&format!("data/monitoring/releases/{release}.yaml")).exists());
    // Heightened until 48 h after the deploy, then normal by itself; status and the evaluation agree.
    for (offset, mode) in
        [(HOUR, "heightened"), (48 * HOUR - 1, "heightened"), (48 * HOUR, "normal"), (90 * HOUR, "normal")]
    {
        let status = s.shipshape(&at(offset), &["status", "--json"]);
        let status: Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(status["monitoring_mode"], mode, "status at +{offset}s");
        let (pass, _) = evaluate(&s, offset);
        assert_eq!(pass["pass"]["mode"], mode, "evaluate at +{offset}s");
        assert_eq!(pass["pass"]["release_id"], release.as_str());
        // The windows never reach before the deploy.
        for m in pass["pass"]["metrics"].as_array().unwrap() {
            assert!(
                m["window"][0].as_str().unwrap().parse::<Timestamp>().unwrap() >= at(0).parse::<Timestamp>().unwrap()
            );
        }
    }
    // Without events every metric is insufficient data, never healthy.
    let (pass, _) = evaluate(&s, 2 * HOUR);
    for name in ["intraday_hit_ratio", "swing_precision", "intraday_sharpe"] {
        assert_eq!(state(&pass, name), "insufficient_data", "{name}");
    }
}

#[test]
fn test_heightened_monitoring_alerts() {
    // A 7 % drop at ten trades a minute: fires in heightened mode within the first 2 hours, only
    // after three consecutive breaching evaluations.
    let (s, _) = deployed("");
    let base = baseline(&s);
    ingest(&s, &at(3 * HOUR), &events(0, 180, 10, base * 0.93, 0, 0.0, "h7"));
    let states = run(&s, 10 * MINUTE, 2 * HOUR);
    let first_firing = states.iter().position(|(_, st)| st == "firing").expect("no alert within 2 hours");
    assert!(first_firing >= 2, "{states:?}");
    assert_eq!(states[first_firing - 1].1, "pending", "{states:?}");
    assert_eq!(states[first_firing - 2].1, "pending", "{states:?}");
    let alerts: Value =
        serde_json::from_slice(&s.shipshape(&at(2 * HOUR), &["alerts", "--json", "--state", "firing"]).stdout).unwrap();
    let alert = &alerts.as_array().unwrap()[0];
    assert_eq!(alert["metric"], "intraday_hit_ratio");
    assert_eq!(alert["mode"], "heightened");
    assert_eq!(alert["threshold"], 0.05);
    assert!(alert["samples"].as_i64().unwrap() > 600);
    assert!((alert["baseline"].as_f64().unwrap() - base).abs() < 1e-12);

    // The same 7 % drop in normal mode (after 48 h, threshold 10 %): no alert.
    let (s, _) = deployed("");
    let base = baseline(&s);
    ingest(&s, &at(60 * HOUR), &events(48 * HOUR, 12 * 60, 10, base * 0.93, 0, 0.0, "n7"));
    let states = run(&s, 48 * HOUR + 10 * MINUTE, 60 * HOUR);
    assert!(states.iter().all(|(_, st)| st == "inactive" || st == "insufficient_data"), "{states:?}");

    // A 3 % drop alerts in neither mode.
    let (s, _) = deployed("");
    let base = baseline(&s);
    ingest(&s, &at(3 * HOUR), &events(0, 180, 10, base * 0.97, 0, 0.0, "h3"));
    ingest(&s, &at(60 * HOUR), &events(48 * HOUR, 12 * 60, 10, base * 0.97, 0, 0.0, "n3"));
    for (from, to) in [(10 * MINUTE, 3 * HOUR), (48 * HOUR + HOUR, 60 * HOUR)] {
        let states = run(&s, from, to);
        assert!(states.iter().all(|(_, st)| st == "inactive" || st == "insufficient_data"), "{states:?}");
    }
}

/// The 48 h transition: a 7 % regression fires during the heightened period and, once the normal
/// policy (24 h window, 10 % threshold) takes over by itself at 48 h, resolves with a notification.
#[test]
fn test_48h_transition_to_normal_monitoring() {
    let (s, _) = deployed("");
    let base = baseline(&s);
    ingest(&s, &at(51 * HOUR), &events(0, 50 * 60, 10, base * 0.93, 0, 0.0, "t48"));
    let early = run(&s, 10 * MINUTE, 2 * HOUR);
    assert!(early.iter().any(|(_, st)| st == "firing"), "{early:?}");
    let (pass, _) = evaluate(&s, 47 * HOUR);
    assert_eq!(
        (pass["pass"]["mode"].as_str(), state(&pass, "intraday_hit_ratio").as_str()),
        (Some("heightened"), "firing")
    );
    let (pass, _) = evaluate(&s, 48 * HOUR + 10 * MINUTE);
    assert_eq!(pass["pass"]["mode"], "normal");
    let hit = metric(&pass, "intraday_hit_ratio");
    assert_eq!(hit["threshold"], 0.1);
    let edge = |i: usize| hit["window"][i].as_str().unwrap().parse::<Timestamp>().unwrap().as_second();
    assert_eq!(edge(1) - edge(0), 24 * HOUR);
    assert_eq!(state(&pass, "intraday_hit_ratio"), "resolved");
    let status: Value =
        serde_json::from_slice(&s.shipshape(&at(48 * HOUR + 10 * MINUTE), &["status", "--json"]).stdout).unwrap();
    assert_eq!(status["monitoring_mode"], "normal");
    let notifications = fs::read_to_string(s.ws.path("data/monitoring/alerts.jsonl")).unwrap();
    let resolved: Vec<Value> = notifications
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|n| n["reason"] == "resolved" && n["metric"] == "intraday_hit_ratio")
        .collect();
    assert_eq!(resolved.len(), 1, "{notifications}");
    assert_eq!(resolved[0]["mode"], "normal");
}

fn shipshape_ok(s: &Setup, now: &str, args: &[&str]) -> String {
    let output = s.shipshape(now, args);
    assert!(output.status.success(), "{args:?}: {}", stderr_of(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// The whole story through the real binary: init; audit, validate, manifest, approvals by the two
/// roles, verify, deploy; a hotfix deployed; post-deploy events with a regression; alerts in
/// heightened mode (on disk, from the CLI and over the API); a manual rollback; the hotfix again with
/// auto-rollback on, rolled back by the monitor; status and history.
#[test]
fn test_story_end_to_end() {
    // init writes a workspace skeleton that works with the other commands.
    let fresh = tempfile::tempdir().unwrap();
    let output =
        Command::new(assert_cmd::cargo::cargo_bin("shipshape")).arg("init").arg(fresh.path()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for file in ["shipshape.toml", "Makefile", "release/policy.yaml", "release/allowed_signers", "release/.gitignore"] {
        assert!(fresh.path().join(file).is_file(), "init did not write {file}");
    }

    // The example workspace, two approvers with keys made now.
    let s = Setup::new("copy");
    let john = s.ws.temp.path().join("john");
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "john", "-f"])
            .arg(&john)
            .status()
            .unwrap()
            .success()
    );
    let mut signers = fs::read_to_string(s.ws.path("release/allowed_signers")).unwrap();
    let public = fs::read_to_string(john.with_extension("pub")).unwrap();
    signers.push_str(&format!("john@example.com namespaces=\"engineering-lead@shipshape\" {public}"));
    fs::write(s.ws.path("release/allowed_signers"), signers).unwrap();
    let (t0, t1) = (at(-HOUR), at(0));

    // Release 1 (minor: both roles), deployed.
    shipshape_ok(&s, &t0, &["audit"]);
    shipshape_ok(&s, &t0, &["validate"]);
    let first = s.ws.path(shipshape_ok(&s, &t0, &["manifest", "--type", "minor", "--deployer", "jane"]).trim());
    let first_str = first.to_str().unwrap();
    let jane = s.key.to_str().unwrap();
    let verify = s.shipshape(&t0, &["verify", first_str]);
    assert_eq!(verify.status.code(), Some(1), "no approvals yet: not verified");
    shipshape_ok(&s, &t0, &["approve", first_str, "--role", "risk-manager", "--key", jane]);
    shipshape_ok(&s, &t0, &["approve", first_str, "--role", "engineering-lead", "--key", john.to_str().unwrap()]);
    shipshape_ok(&s, &t0, &["verify", first_str, "--artifacts"]);
    shipshape_ok(&s, &t0, &["deploy", first_str, "--yes"]);
    let first_id = yaml_value(&first)["release_id"].as_str().unwrap().to_string();
    for (path, hash) in crate::util::files_of(&first) {
        assert_eq!(sha256sum(&s.target.join(&path)), hash, "{path} in production");
    }

    // Release 2 (hotfix), deployed: heightened monitoring for 48 h.
    let space = fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
    s.ws.write("search_space.yaml", format!("{space}# tuned\n").as_bytes());
    let second = s.release(&t1);
    shipshape_ok(&s, &t1, &["deploy", second.to_str().unwrap(), "--yes"]);
    let second_id = yaml_value(&second)["release_id"].as_str().unwrap().to_string();
    let active = yaml_value(&s.ws.path("data/monitoring/releases/active_release.yaml"));
    assert_eq!(
        (active["release_id"].as_str(), active["heightened_monitoring_active"].as_bool()),
        (Some(second_id.as_str()), Some(true))
    );

    // Its first hour: the model regressed. Alerts fire in heightened mode.
    let base = baseline(&s);
    ingest(&s, &at(HOUR), &events(0, 60, 10, base * 0.8, 0, 0.0, "live1"));
    let states = run(&s, 10 * MINUTE, HOUR);
    assert!(states.iter().any(|(_, st)| st == "firing"), "{states:?}");
    let alerts: Value =
        serde_json::from_str(&shipshape_ok(&s, &at(HOUR), &["alerts", "--state", "firing", "--json"])).unwrap();
    let hit = alerts.as_array().unwrap().iter().find(|a| a["metric"] == "intraday_hit_ratio").unwrap();
    assert_eq!((hit["mode"].as_str(), hit["release_id"].as_str()), (Some("heightened"), Some(second_id.as_str())));
    assert!(fs::read_to_string(s.ws.path("data/monitoring/alerts.jsonl")).unwrap().contains("\"reason\":\"firing\""));

    // The same seen over the API.
    let token_file = s.ws.temp.path().join("token");
    fs::write(&token_file, "0123456789abcdef0123456789abcdef-story").unwrap();
    let mut server =
        s.ws.std_cmd(&at(HOUR))
            .args(["serve", "--bind", "127.0.0.1:0", "--token-file"])
            .arg(&token_file)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take().unwrap()), &mut line).unwrap();
    let address = line.trim().strip_prefix("listening on http://").unwrap().to_string();
    let status = get_json(&address, "/api/v1/status");
    assert_eq!(status["active_release"]["release_id"], second_id.as_str());
    assert_eq!(status["active_release"]["mode"], "heightened");
    assert_eq!(status["active_release"]["manifest"]["rollback_target"], first_id.as_str());
    assert!(status["firing_alerts"].as_u64().unwrap() >= 1);
    let firing = get_json(&address, "/api/v1/alerts?state=firing");
    assert!(firing.as_array().unwrap().iter().any(|a| a["metric"] == "intraday_hit_ratio"));
    server.kill().unwrap();
    server.wait().unwrap();

    // A manual rollback: production holds release 1 again.
    shipshape_ok(&s, &at(90 * MINUTE), &["rollback", "--yes", "--reason", "hit ratio regression"]);
    for (path, hash) in crate::util::files_of(&first) {
        assert_eq!(sha256sum(&s.target.join(&path)), hash, "{path} after the rollback");
    }

    // The hotfix once more, now with auto-rollback on; the regression continues.
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    fs::write(s.ws.path("shipshape.toml"), config.replacen("enabled = false", "enabled = true", 1)).unwrap();
    shipshape_ok(&s, &at(2 * HOUR), &["deploy", second.to_str().unwrap(), "--yes"]);
    ingest(&s, &at(4 * HOUR), &events(2 * HOUR, 120, 10, 0.35, 4, 0.3, "live2"));
    let mut auto = None;
    let mut offset = 2 * HOUR + 10 * MINUTE;
    while offset <= 4 * HOUR && auto.is_none() {
        let (pass, code) = evaluate(&s, offset);
        if code == 4 {
            auto = Some(pass["pass"]["auto_rollback"].clone());
        }
        offset += 10 * MINUTE;
    }
    let auto = auto.expect("the monitor did not roll back");
    assert_eq!(auto["outcome"], format!("rolled back to {first_id}").as_str());

    // Status and history tell the story.
    let status: Value = serde_json::from_str(&shipshape_ok(&s, &at(5 * HOUR), &["status", "--json"])).unwrap();
    assert_eq!(status["active_release"]["release_id"], first_id.as_str());
    assert_eq!(status["in_sync"], true);
    let history: Value = serde_json::from_str(&shipshape_ok(&s, &at(5 * HOUR), &["history", "--json"])).unwrap();
    let actions: Vec<(String, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap().to_string(), e["by"].as_str().unwrap().to_string()))
        .collect();
    let expected_actions = ["deploy", "deploy", "rollback", "deploy", "rollback"];
    assert_eq!(actions.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), expected_actions, "{history}");
    assert_eq!(actions[4].1, "shipshape-monitor");
    let analytics: Value = serde_json::from_str(&shipshape_ok(&s, &at(5 * HOUR), &["analytics", "--json"])).unwrap();
    assert_eq!((analytics["30d"]["deploys"].as_u64(), analytics["30d"]["failed_deploys"].as_u64()), (Some(3), Some(2)));
}

/// Two manifests in a row from the same bytes are refused (nothing written), unless asked for with
/// `--allow-identical`; a manifest that releases what the active release already holds is warned of.
#[test]
fn an_identical_manifest_is_refused_and_no_change_from_the_active_release_is_warned() {
    let ws = TestWorkspace::example();
    let first = ws.release("2025-10-12T19:00:00+05:30", &[]);
    ws.cmd_at("2025-10-12T19:30:00+05:30").arg("audit").assert().success();
    ws.cmd_at("2025-10-12T19:30:00+05:30").args(["--quiet", "validate"]).assert().success();
    let before = ws.snapshot();
    let output = ws.cmd_at("2025-10-12T19:30:00+05:30").args(["manifest", "--type", "hotfix"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert_one_line_error(&output, "release_20251012_190000 already releases exactly these 4 artifacts");
    assert!(stderr_of(&output).contains("--allow-identical"));
    crate::util::assert_same_tree(&before, &ws.snapshot(), "a refused identical manifest");
    let output = ws
        .cmd_at("2025-10-12T19:30:00+05:30")
        .args(["manifest", "--type", "hotfix", "--allow-identical"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    // Once something changes, a manifest is made without a word.
    let space = std::fs::read_to_string(ws.path("search_space.yaml")).unwrap();
    ws.write("search_space.yaml", format!("{space}# tuned\n").as_bytes());
    ws.cmd_at("2025-10-12T19:40:00+05:30").arg("audit").assert().success();
    ws.cmd_at("2025-10-12T19:40:00+05:30").args(["--quiet", "validate"]).assert().success();
    let output = ws.cmd_at("2025-10-12T19:40:00+05:30").args(["manifest", "--type", "hotfix"]).output().unwrap();
    assert!(output.status.success() && !stderr_of(&output).contains("warning"), "{}", stderr_of(&output));
    let _ = first;

    // The active release A; B changed a file; a change reverted makes the bytes of A again.
    let s = Setup::new("copy");
    let a = s.release("2025-10-12T19:00:00+05:30");
    assert!(s.deploy("2025-10-12T19:00:00+05:30", &a).status.success());
    let space = std::fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
    s.ws.write("search_space.yaml", format!("{space}# experiment\n").as_bytes());
    s.ws.release("2025-10-12T19:30:00+05:30", &["--type", "hotfix"]);
    s.ws.write("search_space.yaml", space.as_bytes());
    s.ws.cmd_at("2025-10-12T19:45:00+05:30").arg("audit").assert().success();
    s.ws.cmd_at("2025-10-12T19:45:00+05:30").args(["--quiet", "validate"]).assert().success();
    let output = s.ws.cmd_at("2025-10-12T19:45:00+05:30").args(["manifest", "--type", "hotfix"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("warning: nothing changed from the active release release_20251012_190000"),
        "{}",
        stderr_of(&output)
    );
}

/// What goes into git: after a release is made, approved and deployed in the example (a git
/// repository), `git status` lists only what is meant to be committed — the audit bundle, the
/// manifest and its approvals — and nothing of the store, backups, journal, state, lock, monitor
/// data or the deploy target. `init` writes the same ignore files.
#[test]
fn git_status_after_a_release_lists_only_what_is_committed() {
    let s = Setup::new("copy");
    s.ws.git(&["init", "-q"]);
    s.ws.git(&["add", "-A"]);
    s.ws.git(&["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "base"]);
    let manifest = s.release("2025-10-12T19:00:00+05:30");
    assert!(s.deploy("2025-10-12T19:00:00+05:30", &manifest).status.success());
    let output = s.ws.cmd_at("2025-10-12T19:10:00+05:30").args(["evaluate"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let status = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=all"])
        .current_dir(&s.ws.root)
        .output()
        .unwrap();
    let listed = String::from_utf8(status.stdout).unwrap();
    let paths: Vec<&str> = listed.lines().map(|l| &l[3..]).collect();
    assert!(!paths.is_empty());
    for path in &paths {
        let committed = path.starts_with("release/audit_")
            || (path.starts_with("release/manifests/") && path.ends_with(".yaml"))
            || *path == "shipshape.toml"; // the test's own [deploy] section
        assert!(committed, "`{path}` shows in git status: {listed}");
    }
    assert!(paths.iter().any(|p| p.ends_with(".approvals.yaml")), "{listed}");
    // A workspace from `init` ignores the same.
    let dir = tempfile::tempdir().unwrap();
    s.ws.cmd().current_dir(dir.path()).args(["init", "fresh"]).assert().success();
    assert_eq!(
        fs::read_to_string(dir.path().join("fresh/release/.gitignore")).unwrap(),
        fs::read_to_string(s.ws.path("release/.gitignore")).unwrap(),
        "the example's release/.gitignore is the one init writes"
    );
    assert!(fs::read_to_string(dir.path().join("fresh/data/monitoring/.gitignore")).unwrap().contains("\n*\n"));
}

/// `shipshape diff`: the active release against the newest manifest by default (or any two named),
/// artifacts added and changed with sizes and hashes, a unified diff of a changed text file read from
/// the store, and the same as JSON.
#[test]
fn diff_shows_what_a_release_changes() {
    let s = Setup::new("copy");
    let (a, _b) = two_releases(&s, "2025-10-12T19:00:00+05:30", "2025-10-12T20:00:00+05:30");
    assert!(s.deploy("2025-10-12T19:00:00+05:30", &a).status.success());
    // The workspace changes after B was made: diff reads the store, not the workspace.
    s.ws.write("src/app/config.py", b"edited after the manifest\n");
    let output = s.shipshape("2025-10-12T20:00:00+05:30", &["diff"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.starts_with(
            "release_20251012_190000 -> release_20251012_200000: 1 added, 2 changed, 0 removed, 2 unchanged"
        ),
        "{text}"
    );
    assert!(text.contains("  added    notebooks/drift_report.ipynb"), "{text}");
    assert!(text.contains("  changed  src/app/config.py"), "{text}");
    assert!(text.contains("--- a/src/app/config.py\n+++ b/src/app/config.py\n@@"), "{text}");
    assert!(
        text.contains(
            "\n-    intraday_confidence_threshold: float = 0.62\n+    intraday_confidence_threshold: float = 0.64\n"
        ),
        "{text}"
    );
    let json: Value = serde_json::from_slice(
        &s.shipshape(
            "2025-10-12T20:00:00+05:30",
            &["diff", "release_20251012_200000", "release_20251012_190000", "--json"],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(json["from"], "release_20251012_200000");
    let removed: Vec<&Value> =
        json["artifacts"].as_array().unwrap().iter().filter(|a| a["change"] == "removed").collect();
    assert_eq!(removed.len(), 1, "{json}");
    assert_eq!(removed[0]["path"], "notebooks/drift_report.ipynb");
    assert_eq!(removed[0]["old"]["sha256"], sha256sum(&s.ws.path("notebooks/drift_report.ipynb")).as_str());
    // The deploy plan and rollback --dry-run print the same summary.
    let plan = s.shipshape("2025-10-12T20:00:00+05:30", &["deploy", "release_20251012_200000", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains(
            "release release_20251012_190000 -> release_20251012_200000: 1 added, 2 changed, 0 removed, 2 unchanged"
        ),
        "{plan:?}"
    );
}

/// A schema-1 manifest (the story's `deployment.timestamp`/`deployer`, as made before schema 2)
/// is still read: approved, verified and deployed, and a schema-2 manifest chains after it; a
/// schema this version does not know is refused with the reason.
#[test]
fn schema_1_manifests_are_still_read_and_unknown_schemas_refused() {
    let s = Setup::new("copy");
    let t0 = "2025-10-12T19:00:00Z";
    let old = s.ws.release(t0, &["--type", "hotfix"]);
    let text = fs::read_to_string(&old).unwrap();
    assert!(text.contains("prepared_at: ") && text.contains("prepared_by: "), "{text}");
    let v1 = text
        .replace("schema_version: 2\n", "schema_version: 1\n")
        .replace("  prepared_at: ", "  timestamp: ")
        .replace("  prepared_by: ", "  deployer: ");
    assert_ne!(v1, text);
    fs::write(&old, &v1).unwrap();
    let approve = |manifest: &std::path::Path, now: &str| {
        let output =
            s.ws.cmd_at(now)
                .arg("approve")
                .arg(manifest)
                .args(["--role", "risk-manager", "--key"])
                .arg(&s.key)
                .output()
                .unwrap();
        assert!(output.status.success(), "{}", stderr_of(&output));
    };
    approve(&old, t0);
    let output = s.deploy(t0, &old);
    assert!(output.status.success(), "a schema-1 manifest deploys: {}", stderr_of(&output));
    let t1 = "2025-10-12T20:00:00Z";
    let config = fs::read_to_string(s.ws.path("src/app/config.py")).unwrap();
    s.ws.write("src/app/config.py", format!("{config}# next\n").as_bytes());
    let new = s.ws.release(t1, &["--type", "hotfix"]);
    approve(&new, t1);
    let output = s.ws.cmd_at(t1).args(["verify"]).arg(&new).output().unwrap();
    assert!(output.status.success(), "schema 2 chained after schema 1: {}", stderr_of(&output));
    let output = s.deploy(t1, &new);
    assert!(output.status.success(), "{}", stderr_of(&output));
    // A manifest from a future shipshape.
    let future = fs::read_to_string(&new).unwrap().replace("schema_version: 2\n", "schema_version: 3\n");
    fs::write(&new, future).unwrap();
    let output = s.ws.cmd_at(t1).args(["verify"]).arg(&new).output().unwrap();
    assert!(!output.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&output.stdout), stderr_of(&output));
    assert!(all.contains("schema_version 3 is not supported (this shipshape reads 1 and 2)"), "{all}");
}
