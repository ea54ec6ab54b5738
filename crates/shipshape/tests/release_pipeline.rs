//! The story's pipeline run through the real binary on a copy of the example workspace.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod util;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use serde_json::{Value, json};
use util::{Workspace, sha256sum, yaml_value};

const NOW: &str = "2025-10-12T19:00:00+05:30";

/// Story test: the manifest's structure, every schema field, and every hash checked against an
/// independent SHA-256 (coreutils).
#[test]
fn test_release_manifest_generation() {
    let ws = Workspace::example_git();
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
    assert_eq!(m["schema_version"], 1);
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
    assert_eq!(m["deployment"], json!({"timestamp": NOW, "deployer": "engineering_lead", "environment": "production"}));

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
    let ws = Workspace::example_git();
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
    let ws = Workspace::example();
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
    let ws = Workspace::example();
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
    let ws = Workspace::example();
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
    let ws = Workspace::example();
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
    let ws = Workspace::example_git();
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
