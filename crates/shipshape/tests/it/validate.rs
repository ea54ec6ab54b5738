//! `validate` and `score`: the promotion checklist, the dry-run backtest, the manifest gate, and every
//! bad input the validation issue lists.

use std::fs;
use std::process::Command;

use crate::util::{TestWorkspace, assert_one_line_error, assert_same_tree, sha256sum, stderr_of, yaml_value};
use serde_json::Value;

const BAD_INPUT: i32 = 2;
const CHECK_FAILED: i32 = 1;
const BUNDLE: &str = "release/audit_20251012_190000";

fn audited() -> TestWorkspace {
    let ws = TestWorkspace::example();
    ws.cmd().arg("audit").assert().success();
    ws
}

fn set_config(ws: &TestWorkspace, from: &str, to: &str) {
    let text = fs::read_to_string(ws.path("shipshape.toml")).unwrap();
    assert!(text.contains(from), "{from}");
    ws.write("shipshape.toml", text.replacen(from, to, 1).as_bytes());
}

/// The backtest's numbers, recomputed by an independent implementation (Python) from the same file.
#[test]
fn backtest_metrics_match_an_independent_computation() {
    let ws = audited();
    ws.cmd().arg("validate").assert().success();
    let validation = yaml_value(&ws.path(&format!("{BUNDLE}/validation.yaml")));
    assert_eq!(validation["passed"], true);
    let script = r#"
import json, math, sys
events = [json.loads(l) for l in open("data/backtest/events.jsonl")]
out = {}
for s in ("intraday", "swing"):
    ev = [e for e in events if e["strategy"] == s]
    trades = [e for e in ev if e["signal"] != 0]
    longs = [e for e in ev if e["signal"] == 1]
    r = [e["return"] for e in trades]
    mean = sum(r) / len(r)
    sd = math.sqrt(sum((x - mean) ** 2 for x in r) / (len(r) - 1))
    out[s + "_hit_ratio"] = sum(e["signal"] == e["outcome"] for e in trades) / len(trades)
    out[s + "_precision"] = sum(e["outcome"] == 1 for e in longs) / len(longs)
    out[s + "_sharpe"] = mean / sd
    out[s + "_trades"] = len(trades)
print(json.dumps(out))
"#;
    let output = Command::new("python3").arg("-c").arg(script).current_dir(&ws.root).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let expected: Value = serde_json::from_slice(&output.stdout).unwrap();
    let metrics = &validation["backtest"]["metrics"];
    for name in [
        "intraday_hit_ratio",
        "intraday_precision",
        "intraday_sharpe",
        "swing_hit_ratio",
        "swing_precision",
        "swing_sharpe",
    ] {
        let ours = metrics[name]["value"].as_f64().unwrap();
        let theirs = expected[name].as_f64().unwrap();
        assert!((ours - theirs).abs() < 1e-9, "{name}: {ours} vs {theirs}");
    }
    assert_eq!(metrics["intraday_hit_ratio"]["samples"], expected["intraday_trades"]);
    let low = metrics["intraday_hit_ratio"]["ci_low"].as_f64().unwrap();
    let high = metrics["intraday_hit_ratio"]["ci_high"].as_f64().unwrap();
    let value = metrics["intraday_hit_ratio"]["value"].as_f64().unwrap();
    assert!(low < value && value < high && high - low < 0.1, "{low} {value} {high}");
    assert_eq!(validation["backtest"]["events_sha256"], sha256sum(&ws.path("data/backtest/events.jsonl")));
    assert_eq!(validation["backtest"]["events"], 1400);
    let kinds: Vec<&str> =
        validation["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["command", "file", "gate", "gate", "gate"]);
    assert!(validation["items"].as_array().unwrap().iter().all(|i| i["status"] == "passed"));
}

#[test]
fn failing_gate_fails_validation_and_blocks_the_manifest() {
    let ws = audited();
    set_config(&ws, "metric = \"intraday_hit_ratio\"\nmin = 0.53", "metric = \"intraday_hit_ratio\"\nmin = 0.60");
    let output = ws.cmd().arg("validate").output().unwrap();
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("FAIL gate     intraday hit ratio") && stdout.contains("required intraday_hit_ratio >= 0.6"),
        "{stdout}"
    );
    assert_one_line_error(&output, "validation failed: intraday hit ratio");
    assert_eq!(yaml_value(&ws.path(&format!("{BUNDLE}/validation.yaml")))["passed"], false);

    let before = ws.snapshot();
    let output = ws.cmd().arg("manifest").output().unwrap();
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    assert_one_line_error(&output, "failed validation (intraday hit ratio)");
    assert_same_tree(&before, &ws.snapshot(), "manifest");

    // The override works, and is recorded visibly.
    let output = ws.cmd().args(["manifest", "--allow-unvalidated"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("--allow-unvalidated overrode it"));
    let m = yaml_value(&ws.manifests()[0]);
    assert_eq!(m["validation"]["status"], "failed");
    assert_eq!(m["validation"]["overridden"], true);
    assert_eq!(m["validation"]["failed_items"], serde_json::json!(["intraday hit ratio"]));
    let output = ws.cmd().args(["verify", "--integrity-only"]).output().unwrap();
    assert!(output.status.success());
    assert!(stderr_of(&output).contains("--allow-unvalidated"), "verify warns: {}", stderr_of(&output));
}

#[test]
fn missing_validation_blocks_the_manifest() {
    let ws = audited();
    let before = ws.snapshot();
    let output = ws.cmd().arg("manifest").output().unwrap();
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    assert_one_line_error(&output, "has not been validated: run `shipshape validate`");
    assert_same_tree(&before, &ws.snapshot(), "manifest");
    ws.cmd().args(["manifest", "--allow-unvalidated"]).assert().success();
    let m = yaml_value(&ws.manifests()[0]);
    assert_eq!(
        m["validation"],
        serde_json::json!({"status": "missing", "sha256": null, "failed_items": [], "overridden": true})
    );
}

#[test]
fn tampered_validation_is_caught_by_verify() {
    let ws = TestWorkspace::example();
    let manifest = ws.release("2025-10-12T19:00:00+05:30", &[]);
    let path = ws.path(&format!("{BUNDLE}/validation.yaml"));
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, format!("{text}# edited\n")).unwrap();
    let output = ws.cmd().args(["verify", "--integrity-only", manifest.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    assert!(String::from_utf8_lossy(&output.stdout).contains("FAIL validation"));
}

#[test]
fn dry_run_lists_and_writes_nothing() {
    let ws = audited();
    let before = ws.snapshot();
    let output = ws.cmd().args(["validate", "--dry-run"]).output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in [
        "backtest: score data/backtest/events.jsonl",
        "command  configs parse",
        "file     accuracy report present",
        "gate     intraday sharpe: intraday_sharpe >= 0.05",
    ] {
        assert!(stdout.contains(line), "{line} in {stdout}");
    }
    assert_same_tree(&before, &ws.snapshot(), "validate --dry-run");
}

#[test]
fn json_output_is_machine_readable() {
    let ws = audited();
    let output = ws.cmd().args(["validate", "--json"]).output().unwrap();
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["result"]["passed"], true);
    assert_eq!(value["validation"], format!("{BUNDLE}/validation.yaml"));
}

/// Run `args`, expect `code` and an error naming each needle, and no validation.yaml written.
fn refused_without_validation(ws: &TestWorkspace, args: &[&str], code: i32, needles: &[&str]) {
    let before = ws.snapshot();
    let output = ws.cmd().args(args).output().unwrap();
    assert_eq!(output.status.code(), Some(code), "{args:?}: {}", stderr_of(&output));
    for needle in needles {
        assert_one_line_error(&output, needle);
    }
    assert_same_tree(&before, &ws.snapshot(), &format!("{args:?}"));
    assert!(!ws.path(&format!("{BUNDLE}/validation.yaml")).exists());
}

fn good_line(i: usize) -> String {
    format!(
        "{{\"id\":\"t{i}\",\"ts\":\"2025-10-13T09:15:00+05:30\",\"strategy\":\"intraday\",\"symbol\":\"TCS\",\"signal\":1,\"outcome\":1,\"return\":0.01}}\n"
    )
}

#[test]
fn bad_events_are_named_by_file_and_line() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad timestamp", good_line(2).replace("+05:30", "").into_bytes(), "`ts`"),
        (
            "signal 2",
            good_line(2).replace("\"signal\":1", "\"signal\":2").into_bytes(),
            "`signal`: 2 is not -1, 0 or 1",
        ),
        ("NaN return", good_line(2).replace("0.01}", "NaN}").into_bytes(), "`return`: NaN or Infinity"),
        ("inf return", good_line(2).replace("0.01}", "1e999}").into_bytes(), "`return`:"),
        ("missing field", good_line(2).replace("\"symbol\":\"TCS\",", "").into_bytes(), "missing field `symbol`"),
        ("non-UTF-8", b"{\"ts\":\"\xff\xfe\"}\n".to_vec(), "UTF-8"),
        (
            "10 MB line",
            [b"{\"x\":\"".to_vec(), vec![b'a'; 10 * 1024 * 1024], b"\"}\n".to_vec()].concat(),
            "longer than 1 MiB",
        ),
    ];
    for (what, second_line, needle) in cases {
        let ws = audited();
        fs::write(ws.path("checklists/none.toml"), "checklist = []\n").unwrap();
        let mut content = good_line(1).into_bytes();
        content.extend_from_slice(&second_line);
        content.extend_from_slice(good_line(3).as_bytes());
        ws.write("data/backtest/events.jsonl", &content);
        refused_without_validation(&ws, &["validate"], BAD_INPUT, &["data/backtest/events.jsonl:2:1:", needle]);
        // validate --skip-bad goes on, and records the skipped line.
        ws.cmd().args(["--quiet", "validate", "--skip-bad", "--checklist", "checklists/none.toml"]).assert().success();
        let validation = yaml_value(&ws.path(&format!("{BUNDLE}/validation.yaml")));
        assert_eq!(
            (validation["backtest"]["events"].as_u64(), validation["backtest"]["skipped_lines"].as_u64()),
            (Some(2), Some(1)),
            "{what}"
        );
        fs::remove_file(ws.path(&format!("{BUNDLE}/validation.yaml"))).unwrap();
        let output = ws.cmd().args(["score", "data/backtest/events.jsonl"]).output().unwrap();
        assert_eq!(output.status.code(), Some(BAD_INPUT), "{what}");
        assert_one_line_error(&output, "data/backtest/events.jsonl:2:1:");
        // --skip-bad counts and reports instead.
        let output = ws.cmd().args(["score", "data/backtest/events.jsonl", "--skip-bad", "--json"]).output().unwrap();
        assert!(output.status.success(), "{what}: {}", stderr_of(&output));
        let value: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!((value["events"].as_u64(), value["skipped"].as_u64()), (Some(2), Some(1)), "{what}");
        assert!(value["skipped_examples"][0].as_str().unwrap().starts_with("data/backtest/events.jsonl:2:"), "{what}");
    }
}

#[test]
fn empty_events_file_and_missing_csv_column() {
    let ws = audited();
    ws.write("data/backtest/events.jsonl", b"");
    refused_without_validation(&ws, &["validate"], BAD_INPUT, &["data/backtest/events.jsonl", "no events"]);
    let csv = ws.path("data/backtest/events.csv");
    fs::write(&csv, "ts,strategy,symbol,signal,return\n2025-10-13T09:15:00Z,swing,TCS,1,0.01\n").unwrap();
    let output = ws.cmd().args(["score", "data/backtest/events.csv"]).output().unwrap();
    assert_eq!(output.status.code(), Some(BAD_INPUT));
    assert_one_line_error(&output, "data/backtest/events.csv:1:1: `outcome`: missing column");
}

#[test]
fn skip_bad_in_config_reports_skipped_lines_in_the_validation() {
    let ws = audited();
    let mut content = fs::read(ws.path("data/backtest/events.jsonl")).unwrap();
    content.extend_from_slice(b"garbage\n");
    ws.write("data/backtest/events.jsonl", &content);
    set_config(&ws, "confidence = 0.95\n", "confidence = 0.95\nskip_bad = true\n");
    ws.cmd().arg("validate").assert().success();
    let validation = yaml_value(&ws.path(&format!("{BUNDLE}/validation.yaml")));
    assert_eq!(validation["backtest"]["skipped_lines"], 1);
}

#[test]
fn unknown_item_kind_and_unknown_metric_are_config_errors() {
    let ws = audited();
    set_config(&ws, "kind = \"file\"", "kind = \"url\"");
    refused_without_validation(&ws, &["validate"], BAD_INPUT, &["shipshape.toml:", "unknown variant `url`"]);
    let ws = audited();
    set_config(&ws, "metric = \"swing_precision\"", "metric = \"swing_sortino\"");
    refused_without_validation(&ws, &["validate"], BAD_INPUT, &["shipshape.toml:", "unknown metric `swing_sortino`"]);
}

#[test]
fn hanging_and_missing_commands_fail_their_item() {
    let ws = audited();
    set_config(
        &ws,
        "command = \"python3 scripts/check_release.py\"\ntimeout = \"1m\"",
        "command = \"sleep 60\"\ntimeout = \"1s\"",
    );
    let started = std::time::Instant::now();
    let output = ws.cmd().arg("validate").output().unwrap();
    assert!(started.elapsed().as_secs() < 20, "the timeout was enforced");
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("timed out after"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let validation = yaml_value(&ws.path(&format!("{BUNDLE}/validation.yaml")));
    assert_eq!(validation["passed"], false);

    let ws = audited();
    set_config(&ws, "command = \"python3 scripts/check_release.py\"", "command = \"no-such-test-runner --all\"");
    let output = ws.cmd().arg("validate").output().unwrap();
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("exit 127: command not found") && stdout.contains("no-such-test-runner"), "{stdout}");
}

#[test]
fn external_backtest_json_and_non_json() {
    let ws = audited();
    fs::write(
        ws.path("backtest.sh"),
        "echo '{\"metrics\": {\"intraday_hit_ratio\": 0.58, \"swing_precision\": 0.62, \"intraday_sharpe\": 0.11}}'\n",
    )
    .unwrap();
    set_config(&ws, "events = \"data/backtest/events.jsonl\"", "command = \"sh backtest.sh\"");
    ws.cmd().arg("validate").assert().success();
    let validation = yaml_value(&ws.path(&format!("{BUNDLE}/validation.yaml")));
    assert_eq!(validation["backtest"]["source"], "command");
    assert_eq!(validation["backtest"]["metrics"]["intraday_hit_ratio"]["value"], 0.58);

    fs::write(ws.path("backtest.sh"), "echo 'backtest finished: hit ratio 58%'\n").unwrap();
    let output = ws.cmd().arg("validate").output().unwrap();
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("FAIL backtest: the backtest command must print {\"metrics\""), "{stdout}");
    assert_one_line_error(&output, "validation failed: backtest");
    let validation = yaml_value(&ws.path(&format!("{BUNDLE}/validation.yaml")));
    assert_eq!(validation["passed"], false);
}

#[test]
fn checklist_file_option() {
    let ws = audited();
    let output = ws.cmd().args(["validate", "--checklist", "checklists/strict.toml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    let validation = yaml_value(&ws.path(&format!("{BUNDLE}/validation.yaml")));
    assert_eq!(validation["checklist"], "checklists/strict.toml");
    fs::write(ws.path("checklists/bad.toml"), "[[checklist]]\nname = \"x\"\nkind = \"gate\"\nmetric = \"hit_ratio\"\n")
        .unwrap();
    let output = ws.cmd().args(["validate", "--checklist", "checklists/bad.toml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(BAD_INPUT));
    assert_one_line_error(&output, "checklists/bad.toml:");
}
