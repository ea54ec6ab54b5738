//! Helpers for the post-deploy watch: a deployed example workspace, deterministic outcome events,
//! ingest and evaluate through the real binary.

use std::fs;
use std::path::PathBuf;

use jiff::Timestamp;
use serde_json::Value;

use super::{Setup, stderr_of};

pub const DEPLOY: &str = "2025-10-13T09:00:00Z";
pub const MINUTE: i64 = 60;
pub const HOUR: i64 = 3600;

pub fn at(offset: i64) -> String {
    Timestamp::from_second(DEPLOY.parse::<Timestamp>().unwrap().as_second() + offset).unwrap().to_string()
}

/// A workspace with one release deployed at DEPLOY, `extra` appended to its shipshape.toml.
pub fn deployed(extra: &str) -> (Setup, PathBuf) {
    let s = Setup::new("copy");
    if !extra.is_empty() {
        let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
        fs::write(s.ws.path("shipshape.toml"), format!("{config}\n{extra}")).unwrap();
    }
    let manifest = s.release(DEPLOY);
    let output = s.deploy(DEPLOY, &manifest);
    assert!(output.status.success(), "{}", stderr_of(&output));
    (s, manifest)
}

/// Deterministic outcome events: `per_minute` intraday trades a minute from `from` for `minutes`,
/// a share `hit` of them right (evenly spread), returns ±0.4 %; plus `swing_per_minute` swing
/// trades (all long) of which a share `precision` win.
pub fn events(
    from: i64,
    minutes: i64,
    per_minute: i64,
    hit: f64,
    swing_per_minute: i64,
    precision: f64,
    tag: &str,
) -> String {
    let mut out = String::new();
    let mut n = 0u64;
    for minute in 0..minutes {
        let ts = at(from + minute * MINUTE + 30);
        for k in 0..per_minute {
            n += 1;
            let right = ((n as f64) * 0.618_033_988_75).fract() < hit;
            let signal = if k % 2 == 0 { 1 } else { -1 };
            let outcome = if right { signal } else { -signal };
            let ret = if right { 0.004 } else { -0.004 };
            out.push_str(&format!(
                "{{\"id\":\"{tag}-{n}\",\"ts\":\"{ts}\",\"strategy\":\"intraday\",\"symbol\":\"S{k}\",\"signal\":{signal},\"outcome\":{outcome},\"return\":{ret}}}\n"
            ));
        }
        for k in 0..swing_per_minute {
            n += 1;
            let win = ((n as f64) * 0.618_033_988_75).fract() < precision;
            let outcome = if win { 1 } else { -1 };
            let ret = if win { 0.01 } else { -0.01 };
            out.push_str(&format!(
                "{{\"id\":\"{tag}-{n}\",\"ts\":\"{ts}\",\"strategy\":\"swing\",\"symbol\":\"W{k}\",\"signal\":1,\"outcome\":{outcome},\"return\":{ret}}}\n"
            ));
        }
    }
    out
}

pub fn ingest(s: &Setup, now: &str, text: &str) -> Value {
    let file = s.ws.temp.path().join("events.jsonl");
    fs::write(&file, text).unwrap();
    let output = s.ws.cmd_at(now).arg("ingest").arg(&file).arg("--json").output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

pub fn evaluate(s: &Setup, offset: i64) -> (Value, i32) {
    let output = s.ws.cmd_at(&at(offset)).args(["evaluate", "--json"]).output().unwrap();
    assert!(matches!(output.status.code(), Some(0 | 4)), "{}", stderr_of(&output));
    (serde_json::from_slice(&output.stdout).unwrap(), output.status.code().unwrap())
}

pub fn metric<'a>(pass: &'a Value, name: &str) -> &'a Value {
    pass["pass"]["metrics"].as_array().unwrap().iter().find(|m| m["metric"] == name).unwrap()
}

pub fn state(pass: &Value, name: &str) -> String {
    metric(pass, name)["state"]["state"].as_str().unwrap().to_string()
}

/// The release's intraday hit-ratio baseline (from its validation backtest).
pub fn baseline(s: &Setup) -> f64 {
    let (pass, _) = evaluate(s, MINUTE);
    metric(&pass, "intraday_hit_ratio")["baseline"].as_f64().unwrap()
}

/// Evaluate every 10 minutes over `[from, to]`; the hit ratio's states in order.
pub fn run(s: &Setup, from: i64, to: i64) -> Vec<(i64, String)> {
    let mut states = Vec::new();
    let mut offset = from;
    while offset <= to {
        let (pass, _) = evaluate(s, offset);
        states.push((offset, state(&pass, "intraday_hit_ratio")));
        offset += 10 * MINUTE;
    }
    states
}
