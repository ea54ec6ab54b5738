//! Post-deploy monitoring through the real binary: registration and the 48-hour heightened period,
//! alerts in heightened vs normal mode, significance, notification sinks against a real HTTP
//! receiver, auto-rollback, replay, and ingest's bad input.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use crate::util::watch::{DEPLOY, HOUR, MINUTE, at, baseline, deployed, evaluate, events, ingest, run, state};
use crate::util::{Setup, assert_one_line_error, stderr_of, yaml_value};
use jiff::Timestamp;
use serde_json::Value;

#[test]
fn small_samples_do_not_fire_large_ones_do() {
    // An 11 % drop from few trades (one a minute) stays quiet for the first 20 minutes; with the
    // significance test off the same trades fire.
    for (significance, expect_fire) in [("", false), ("[monitoring]\nsignificance_test = false\n", true)] {
        let extra = if significance.is_empty() { String::new() } else { significance.to_string() };
        let s = Setup::new("copy");
        if !extra.is_empty() {
            let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
            fs::write(s.ws.path("shipshape.toml"), config.replace("[monitoring]\n", &extra)).unwrap();
        }
        let manifest = s.release(DEPLOY);
        assert!(s.deploy(DEPLOY, &manifest).status.success());
        let base = baseline(&s);
        ingest(&s, &at(HOUR), &events(0, 50, 1, base * 0.89, 0, 0.0, "small"));
        let states = run(&s, 30 * MINUTE, 50 * MINUTE);
        assert_eq!(states.iter().any(|(_, st)| st == "firing"), expect_fire, "{significance}: {states:?}");
    }
}

/// A minimal HTTP server on loopback that records each request's path and body.
type Requests = Arc<Mutex<Vec<(String, String)>>>;

fn receiver(status: u16) -> (String, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut data = Vec::new();
            let mut buffer = [0u8; 8192];
            loop {
                let n = stream.read(&mut buffer).unwrap();
                data.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&data).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        let path = head.split_whitespace().nth(1).unwrap().to_string();
                        record.lock().unwrap().push((path, body.to_string()));
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let _ = stream.write_all(format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").as_bytes());
        }
    });
    (url, seen)
}

#[test]
fn notifications_reach_alertmanager_and_webhooks_and_failures_are_retried_later() {
    let (alertmanager, am_seen) = receiver(200);
    let (webhook, hook_seen) = receiver(200);
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let extra = format!(
        "[[monitoring.sinks]]\nkind = \"alertmanager\"\nurl = \"{alertmanager}\"\n\n[[monitoring.sinks]]\nkind = \"webhook\"\nurl = \"{webhook}/hook\"\n\n[[monitoring.sinks]]\nkind = \"webhook\"\nurl = \"{dead}/down\"\ntimeout = \"2s\"\n\n[[monitoring.sinks]]\nkind = \"jsonl\"\npath = \"data/monitoring/alerts.jsonl\"\n"
    );
    let (s, manifest) = deployed(&extra);
    let release = yaml_value(&manifest)["release_id"].as_str().unwrap().to_string();
    let base = baseline(&s);
    ingest(&s, &at(3 * HOUR), &events(0, 180, 10, base * 0.80, 0, 0.0, "am"));
    let states = run(&s, 10 * MINUTE, HOUR + 30 * MINUTE);
    assert!(states.iter().any(|(_, st)| st == "firing"), "{states:?}");

    let am = am_seen.lock().unwrap().clone();
    let (path, body) = am.iter().find(|(_, b)| b.contains("intraday_hit_ratio")).expect("nothing reached alertmanager");
    assert_eq!(path, "/api/v2/alerts");
    let alerts: Value = serde_json::from_str(body).unwrap();
    let labels = &alerts[0]["labels"];
    assert_eq!(labels["alertname"], "shipshape_intraday_hit_ratio");
    assert_eq!(labels["release_id"], release.as_str());
    assert_eq!(labels["mode"], "heightened");
    assert_eq!(labels["strategy"], "intraday");
    assert_eq!(labels["metric"], "intraday_hit_ratio");
    assert_eq!(labels["severity"], "critical");
    let starts: Timestamp = alerts[0]["startsAt"].as_str().unwrap().parse().unwrap();
    let ends: Timestamp = alerts[0]["endsAt"].as_str().unwrap().parse().unwrap();
    assert!(ends > starts, "endsAt keeps the alert active until the next re-notification");

    let hooks = hook_seen.lock().unwrap().clone();
    let (path, body) = &hooks[0];
    assert_eq!(path, "/hook");
    let notification: Value = serde_json::from_str(body).unwrap();
    assert_eq!(notification["reason"], "firing");
    assert_eq!(notification["release_id"], release.as_str());

    // The dead webhook did not block anything; its notifications wait in the outbox with a retry time.
    let lines = fs::read_to_string(s.ws.path("data/monitoring/alerts.jsonl")).unwrap();
    assert!(lines.lines().count() >= 2 && lines.contains("\"reason\":\"firing\""), "{lines}");
    let db = rusqlite::Connection::open(s.ws.path("data/monitoring/monitor.db")).unwrap();
    let (waiting, attempts, error): (i64, i64, String) = db
        .query_row(
            "SELECT count(*), max(attempts), max(last_error) FROM outbox WHERE delivered_at IS NULL AND sink LIKE 'webhook:%/down'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert!(waiting >= 2 && attempts >= 1, "{waiting} {attempts}");
    assert!(error.contains("/down"), "{error}");
    let delivered: i64 =
        db.query_row("SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL", [], |row| row.get(0)).unwrap();
    assert!(delivered >= 6, "{delivered}");
}

#[test]
fn auto_rollback_after_three_critical_alerts_happens_once() {
    let s = Setup::new("copy");
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    fs::write(s.ws.path("shipshape.toml"), config.replace("enabled = false", "enabled = true")).unwrap();
    let first = s.release("2025-10-12T09:00:00Z");
    assert!(s.deploy("2025-10-12T09:00:00Z", &first).status.success());
    // Two hotfix manifests made and never approved or deployed lie between the two releases: the
    // auto-rollback goes to the release that ran before (last known good), not to the manifest
    // before the active one in the chain.
    for (n, time) in ["2025-10-12T10:00:00Z", "2025-10-12T11:00:00Z"].iter().enumerate() {
        let space = fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
        s.ws.write("search_space.yaml", format!("{space}# hotfix attempt {n}\n").as_bytes());
        s.ws.release(time, &["--type", "hotfix"]);
    }
    let space = fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
    s.ws.write("search_space.yaml", format!("{space}# tuned\n").as_bytes());
    let second = s.release(DEPLOY);
    assert!(s.deploy(DEPLOY, &second).status.success());
    let first_id = yaml_value(&first)["release_id"].as_str().unwrap().to_string();
    let second_id = yaml_value(&second)["release_id"].as_str().unwrap().to_string();
    // A broken model: every metric collapses.
    ingest(&s, &at(3 * HOUR), &events(0, 180, 10, 0.35, 4, 0.30, "bad"));
    let mut rolled_back = None;
    let mut offset = 10 * MINUTE;
    while offset <= 2 * HOUR {
        let (pass, code) = evaluate(&s, offset);
        if code == 4 {
            assert!(rolled_back.is_none(), "rolled back twice");
            let auto = &pass["pass"]["auto_rollback"];
            assert_eq!(auto["release_id"], second_id.as_str());
            assert_eq!(auto["outcome"], format!("rolled back to {first_id}").as_str());
            rolled_back = Some(offset);
        }
        offset += 10 * MINUTE;
    }
    assert!(rolled_back.is_some_and(|t| t <= 2 * HOUR), "no auto-rollback");
    let active = yaml_value(&s.ws.path("data/monitoring/releases/active_release.yaml"));
    assert_eq!(active["release_id"], first_id.as_str());
    let history: Value = serde_json::from_slice(&s.shipshape(&at(3 * HOUR), &["history", "--json"]).stdout).unwrap();
    let entries = history.as_array().unwrap();
    let rollbacks: Vec<&Value> = entries.iter().filter(|e| e["action"] == "rollback").collect();
    assert_eq!(rollbacks.len(), 1, "{history}");
    assert_eq!(rollbacks[0]["by"], "shipshape-monitor");
    let reason = rollbacks[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("auto-rollback: 3 critical alerts within 1h"), "{reason}");
    assert!(reason.contains("intraday_hit_ratio") && reason.contains("intraday_sharpe"), "{reason}");
    // The rolled-back release's alerts are closed as `superseded` at the rollback — not left
    // firing, nor later shown `resolved` as though the metric had recovered.
    let alerts: Value =
        serde_json::from_slice(&s.shipshape(&at(3 * HOUR), &["alerts", "--release", &second_id, "--json"]).stdout)
            .unwrap();
    let states: Vec<&str> = alerts.as_array().unwrap().iter().map(|a| a["state"].as_str().unwrap()).collect();
    assert!(states.contains(&"superseded"), "{states:?}");
    assert!(!states.iter().any(|st| ["firing", "pending", "resolved"].contains(st)), "{states:?}");
    // The target holds the first release again.
    crate::util::files_of(&first)
        .iter()
        .for_each(|(path, hash)| assert_eq!(&crate::util::sha256sum(&s.target.join(path)), hash));
}

#[test]
fn replay_shows_the_alerts_history_would_have_raised() {
    let (s, _) = deployed("");
    let base = baseline(&s);
    let file = s.ws.temp.path().join("history.jsonl");
    // Three healthy hours, then a release with a 20 % drop.
    let mut text = events(-3 * HOUR, 180, 10, base, 0, 0.0, "before");
    text.push_str(&events(0, 180, 10, base * 0.8, 0, 0.0, "after"));
    fs::write(&file, text).unwrap();
    let output =
        s.ws.cmd_at(&at(10 * HOUR))
            .arg("replay")
            .arg("--events")
            .arg(&file)
            .args(["--release-at", &at(-3 * HOUR), "--release-at", &at(0), "--json"])
            .output()
            .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ingest"]["accepted"], 3600);
    let notifications = report["notifications"].as_array().unwrap();
    let firing: Vec<&Value> = notifications.iter().filter(|n| n["reason"] == "firing").collect();
    assert!(firing.iter().all(|n| n["release_id"] == "replay-2"), "{notifications:?}");
    let hit = firing.iter().find(|n| n["metric"] == "intraday_hit_ratio").expect("the regression is caught");
    let fired: Timestamp = hit["at"].as_str().unwrap().parse().unwrap();
    let delay = fired.as_second() - at(0).parse::<Timestamp>().unwrap().as_second();
    assert!(delay <= 2 * HOUR, "{hit}");
    // The figures calibrate prints, for what happened: the delay after the deploy, the episodes.
    assert_eq!(report["detector"], "window");
    let detection = report["detections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["release_id"] == "replay-2" && d["metric"] == "intraday_hit_ratio")
        .unwrap();
    assert_eq!(detection["first_firing_minutes"].as_f64(), Some(delay as f64 / 60.0), "{detection}");
    assert!(detection["episodes"].as_u64().unwrap() >= 1);
    let quiet = report["detections"].as_array().unwrap().iter().filter(|d| d["release_id"] == "replay-1");
    assert!(quiet.into_iter().all(|d| d["first_firing_minutes"].is_null() && d["episodes"] == 0));
    assert!(report["alerts_per_30_days"].as_f64().unwrap() > 0.0);
    // The replay touched nothing in the workspace's own database.
    let alerts: Value = serde_json::from_slice(&s.shipshape(&at(10 * HOUR), &["alerts", "--json"]).stdout).unwrap();
    assert_eq!(alerts, serde_json::json!([]));
    let text = s.shipshape(&at(10 * HOUR), &["replay", "--events", file.to_str().unwrap(), "--release-at", &at(0)]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("firing") && text.contains("intraday_hit_ratio: first fired"), "{text}");
    assert!(text.contains("alert episodes per 30 days of replayed time"), "{text}");
}

#[test]
fn ingest_refuses_bad_input_and_stores_nothing() {
    let (s, _) = deployed("");
    let file = s.ws.temp.path().join("bad.jsonl");
    let good = events(0, 1, 3, 0.5, 0, 0.0, "ok");
    let now = at(HOUR);
    let count = |s: &Setup| -> i64 {
        let db = rusqlite::Connection::open(s.ws.path("data/monitoring/monitor.db")).unwrap();
        db.query_row("SELECT count(*) FROM events", [], |row| row.get(0)).unwrap_or(0)
    };
    for (text, needle) in [
        (format!("{good}{{\"ts\":\"yesterday\"}}\n"), "bad.jsonl:4:"),
        (format!("{good}{{\"id\":\"x\",\"ts\":\"2025-10-13T09:00:00Z\",\"strategy\":\"intraday\",\"symbol\":\"A\",\"signal\":2,\"outcome\":1,\"return\":0.1}}\n"), "`signal`"),
        (
            "{\"id\":\"f\",\"ts\":\"2030-01-01T00:00:00Z\",\"strategy\":\"intraday\",\"symbol\":\"A\",\"signal\":1,\"outcome\":1,\"return\":0.1}\n".to_string(),
            "in the future",
        ),
        (format!("{good}\u{0}\u{ff}garbage\n"), "bad.jsonl:4:"),
    ] {
        fs::write(&file, &text).unwrap();
        let output = s.ws.cmd_at(&now).arg("ingest").arg(&file).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
        assert_one_line_error(&output, needle);
        assert_eq!(count(&s), 0, "nothing stored after {needle}");
    }
    // --skip-bad stores the good lines and reports the bad ones; unknown strategies are stored and reported.
    let text = format!(
        "{good}not json\n{{\"id\":\"u\",\"ts\":\"2025-10-13T09:05:00Z\",\"strategy\":\"options\",\"symbol\":\"A\",\"signal\":1,\"outcome\":1,\"return\":0.1}}\n"
    );
    fs::write(&file, text).unwrap();
    let output = s.ws.cmd_at(&now).arg("ingest").arg(&file).args(["--skip-bad", "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["accepted"], 4);
    assert_eq!(report["skipped"], 1);
    assert_eq!(report["unknown_strategies"]["options"], 1);
    assert_eq!(count(&s), 4);
    // Standard input, CSV.
    let csv = "ts,strategy,symbol,signal,outcome,return,id\n2025-10-13T09:06:00Z,intraday,A,1,-1,-0.01,c1\n";
    let output =
        s.ws.cmd_at(&now).args(["ingest", "-", "--format", "csv", "--json"]).write_stdin(csv).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(count(&s), 5);
}

#[test]
fn invalid_monitoring_settings_are_refused_at_load() {
    for (extra, needle) in [
        (
            "[[monitoring.sinks]]\nkind = \"webhook\"\nurl = \"ftp://hooks.example.com/x\"\n",
            "monitoring.sinks[2]: expected an https://",
        ),
        (
            "[[monitoring.sinks]]\nkind = \"slack\"\nurl = \"https://u:p@hooks.example.com/x\"\n",
            "credentials in the URL are refused",
        ),
        (
            "[[monitoring.sinks]]\nkind = \"slack\"\nurl_env = \"A\"\nurl_file = \"b\"\n",
            "give only one of `url`, `url_env`, `url_file`",
        ),
        ("[[monitoring.sinks]]\nkind = \"teams\"\n", "needs `url`, `url_env` or `url_file`"),
        ("[[monitoring.sinks]]\nkind = \"pagerduty\"\n", "needs `routing_key_env` or `routing_key_file`"),
        ("[[monitoring.sinks]]\nkind = \"pagerduty\"\nrouting_key = \"abc\"\n", "unknown field `routing_key`"),
        ("[[monitoring.sinks]]\nkind = \"jsonl\"\npath = \"../outside.jsonl\"\n", "monitoring.sinks[2]"),
        ("[[monitoring.sinks]]\nkind = \"pager\"\n", "monitoring.sinks"),
    ] {
        let s = Setup::new("copy");
        let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
        fs::write(s.ws.path("shipshape.toml"), format!("{config}\n{extra}")).unwrap();
        let before = crate::util::snapshot(&s.ws.root);
        let output = s.shipshape(DEPLOY, &["evaluate"]);
        assert_eq!(output.status.code(), Some(2), "{extra}: {}", stderr_of(&output));
        assert_one_line_error(&output, needle);
        assert!(stderr_of(&output).contains("shipshape.toml"), "{}", stderr_of(&output));
        crate::util::assert_same_tree(&before, &crate::util::snapshot(&s.ws.root), extra);
    }
    // Negative windows, thresholds and durations, an unknown metric kind.
    for (from, to, needle) in [
        (
            "heightened = { window = \"6h\", threshold = 0.05 }",
            "heightened = { window = \"6h\", threshold = -0.05 }",
            "monitoring.metrics[0].heightened.threshold",
        ),
        (
            "heightened = { window = \"6h\", threshold = 0.05 }",
            "heightened = { window = \"-6h\", threshold = 0.05 }",
            "monitoring.metrics[0].heightened.window",
        ),
        ("kind = \"precision\"", "kind = \"recall\"", "monitoring.metrics[1].kind"),
        ("within = \"1h\"", "within = \"-1h\"", "monitoring.auto_rollback.within"),
    ] {
        let s = Setup::new("copy");
        let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
        assert!(config.contains(from), "{from}");
        fs::write(s.ws.path("shipshape.toml"), config.replace(from, to)).unwrap();
        let output = s.shipshape(DEPLOY, &["evaluate"]);
        assert_eq!(output.status.code(), Some(2));
        assert_one_line_error(&output, needle);
    }
}

#[test]
fn a_release_deployed_again_starts_with_fresh_alerts() {
    let s = Setup::new("copy");
    let first = s.release("2025-10-13T07:00:00Z");
    assert!(s.deploy("2025-10-13T07:00:00Z", &first).status.success());
    let space = fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
    s.ws.write("search_space.yaml", format!("{space}# tuned\n").as_bytes());
    let second = s.release(DEPLOY);
    assert!(s.deploy(DEPLOY, &second).status.success());
    let second_id = yaml_value(&second)["release_id"].as_str().unwrap().to_string();
    ingest(&s, &at(3 * HOUR), &events(0, 90, 10, 0.40, 0, 0.0, "r"));
    let states = run(&s, 10 * MINUTE, 90 * MINUTE);
    assert_eq!(states.last().unwrap().1, "firing", "{states:?}");
    // Rolled back, then deployed again two hours later: the old episode is closed, the new
    // activation starts from nothing (its window begins at the new deploy: no samples yet).
    assert!(s.shipshape(&at(2 * HOUR), &["rollback", "--yes"]).status.success());
    assert!(s.deploy(&at(4 * HOUR), &second).status.success());
    let (pass, _) = evaluate(&s, 4 * HOUR + 10 * MINUTE);
    assert_eq!(state(&pass, "intraday_hit_ratio"), "insufficient_data");
    let alerts: Value =
        serde_json::from_slice(&s.shipshape(&at(5 * HOUR), &["alerts", "--json", "--release", &second_id]).stdout)
            .unwrap();
    let alerts = alerts.as_array().unwrap();
    assert!(!alerts.is_empty());
    assert!(alerts.iter().all(|a| a["state"] == "superseded" || a["state"] == "cleared"), "{alerts:?}");
}

/// A database that is not one (here: garbage where `monitor.db` should be) is a database failure,
/// with its own exit code (75), naming the file — not an I/O error on the user's files (74), and
/// not bad input (2).
#[test]
fn a_broken_monitoring_database_exits_75_naming_it() {
    let (s, _) = deployed("");
    let db = s.ws.path("data/monitoring/monitor.db");
    fs::create_dir_all(db.parent().unwrap()).unwrap();
    fs::write(&db, vec![0x5a; 64 * 1024]).unwrap();
    for args in [&["evaluate"][..], &["alerts"][..]] {
        let output = s.shipshape(&at(HOUR), args);
        assert_eq!(output.status.code(), Some(75), "{args:?}: {}", stderr_of(&output));
        let stderr = stderr_of(&output);
        assert!(stderr.contains("data/monitoring/monitor.db") && stderr.contains("not a database"), "{stderr}");
    }
}

/// Firing alerts are not hidden: `status` lists the active release's firing and pending alerts with
/// the next step and exits 6; `evaluate --fail-on firing` exits 6 once an alert fires (0 before), so
/// cron and CI notice.
#[test]
fn status_and_evaluate_fail_on_report_firing_alerts_with_exit_6() {
    let (s, _) = deployed("");
    let base = baseline(&s);
    // evaluate prints its time in the pinned offset, like every other command.
    let local = s.ws.cmd_at("2025-10-13T14:32:00+05:30").args(["evaluate", "--no-deliver"]).output().unwrap();
    assert!(String::from_utf8_lossy(&local.stdout).contains(" at 2025-10-13T14:32:00+05:30 ("), "{local:?}");
    let quiet = s.ws.cmd_at(&at(2 * MINUTE)).args(["evaluate", "--fail-on", "firing"]).output().unwrap();
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr_of(&quiet));
    let status = s.shipshape(&at(2 * MINUTE), &["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("alerts:          none firing or pending"));
    assert_eq!(status.status.code(), Some(0));
    ingest(&s, &at(3 * HOUR), &events(0, 180, 10, base * 0.80, 0, 0.0, "fail-on"));
    let mut codes = Vec::new();
    let mut offset = 10 * MINUTE;
    while offset <= HOUR + 30 * MINUTE {
        let output = s.ws.cmd_at(&at(offset)).args(["evaluate", "--fail-on", "firing"]).output().unwrap();
        codes.push(output.status.code().unwrap());
        offset += 10 * MINUTE;
    }
    assert_eq!(codes[0], 0, "not firing at the first breach: {codes:?}");
    assert_eq!(*codes.last().unwrap(), 6, "{codes:?}");
    let status = s.shipshape(&at(HOUR + 30 * MINUTE), &["status"]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(status.status.code(), Some(6), "{text}");
    assert!(text.contains("alerts:          FIRING: #") && text.contains("intraday_hit_ratio"), "{text}");
    assert!(text.contains("next step:") && text.contains("shipshape alerts --state firing"), "{text}");
    let json: Value =
        serde_json::from_slice(&s.shipshape(&at(HOUR + 30 * MINUTE), &["status", "--json"]).stdout).unwrap();
    assert!(!json["alerts"]["firing"].as_array().unwrap().is_empty(), "{json}");
}

/// An automatic rollback that fails (here: another process holds the workspace lock) is notified
/// to every sink and tried again at a later evaluation, after its backoff, where it succeeds.
#[test]
fn a_failed_auto_rollback_is_notified_and_retried() {
    let s = Setup::new("copy");
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    fs::write(s.ws.path("shipshape.toml"), config.replace("enabled = false", "enabled = true")).unwrap();
    let first = s.release("2025-10-12T09:00:00Z");
    assert!(s.deploy("2025-10-12T09:00:00Z", &first).status.success());
    let space = fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
    s.ws.write("search_space.yaml", format!("{space}# tuned\n").as_bytes());
    let second = s.release(DEPLOY);
    assert!(s.deploy(DEPLOY, &second).status.success());
    let first_id = yaml_value(&first)["release_id"].as_str().unwrap().to_string();
    ingest(&s, &at(3 * HOUR), &events(0, 180, 10, 0.35, 4, 0.30, "bad"));
    // Hold the workspace lock (an flock, as shipshape takes it) while the evaluations run.
    let holder = fs::OpenOptions::new().read(true).write(true).open(s.ws.path("release/.lock")).unwrap();
    holder.try_lock().unwrap();
    let mut offset = 10 * MINUTE;
    let mut failed_at = None;
    while offset <= 2 * HOUR && failed_at.is_none() {
        let output = s.ws.cmd_at(&at(offset)).args(["evaluate", "--json"]).output().unwrap();
        let pass: Value = serde_json::from_slice(&output.stdout).unwrap();
        if let Some(outcome) = pass["pass"]["auto_rollback"]["outcome"].as_str() {
            assert_eq!(output.status.code(), Some(1), "{outcome}");
            assert!(outcome.starts_with("failed:") && outcome.contains("attempt 1; next attempt from"), "{outcome}");
            failed_at = Some(offset);
        }
        offset += 10 * MINUTE;
    }
    let failed_at = failed_at.expect("the auto-rollback was tried");
    // The dashboard's status shows the failed attempt and when the next one comes.
    let status = {
        use tower::ServiceExt;
        let clock: std::sync::Arc<dyn shipshape_core::infra::clock::Clock> =
            std::sync::Arc::new(shipshape_core::infra::clock::FixedClock(at(failed_at).parse().unwrap()));
        let monitor =
            shipshape_monitor::monitor::Monitor::open(shipshape_core::layout::Workspace::open(&s.ws.root).unwrap())
                .unwrap();
        let state =
            shipshape_web::AppState::new(monitor, clock, "0123456789abcdef0123456789abcdef-monitoring".into()).unwrap();
        let router = shipshape_web::router(state, 1 << 20);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let request = axum::http::Request::get("/api/v1/status").body(axum::body::Body::empty()).unwrap();
            let response = router.oneshot(request).await.unwrap();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            serde_json::from_slice::<Value>(&body).unwrap()
        })
    };
    assert!(status["auto_rollback"]["outcome"].as_str().unwrap().starts_with("failed:"), "{status}");
    assert_eq!(status["auto_rollback"]["attempts"], 1);
    assert!(status["auto_rollback"]["next_attempt"].is_string(), "{status}");
    drop(holder);
    let sink = fs::read_to_string(s.ws.path("data/monitoring/alerts.jsonl")).unwrap();
    assert!(sink.contains("\"reason\":\"auto_rollback_failed\"") && sink.contains("automatic rollback of"), "{sink}");
    // The next evaluation after the backoff tries again, and rolls back.
    let output = s.ws.cmd_at(&at(failed_at + 10 * MINUTE)).args(["evaluate", "--json"]).output().unwrap();
    let pass: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(pass["pass"]["auto_rollback"]["outcome"], format!("rolled back to {first_id}").as_str(), "{pass}");
    assert_eq!(output.status.code(), Some(4));
    let active = yaml_value(&s.ws.path("data/monitoring/releases/active_release.yaml"));
    assert_eq!(active["release_id"], first_id.as_str());
}

/// A team's own strategies and metrics, monitored end to end: `[[monitoring.metrics]]` naming
/// `momentum` and a glob `mean_*`, trailing baselines from the events before the deploy; after a
/// regression the alerts fire, reach the JSON-lines sink, and the dashboard's API serves their
/// series — with no "no monitoring policy watches" note for the team's strategies.
#[test]
fn a_teams_own_strategies_and_metrics_are_monitored_end_to_end() {
    let s = Setup::new("copy");
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    let (start, end) = (config.find("# What to watch:").unwrap(), config.find("# Roll back automatically").unwrap());
    let ours = r#"[[monitoring.metrics]]
name = "momentum_hit_ratio"
strategies = ["momentum"]
kind = "hit_ratio"
heightened = { window = "1h", threshold = 0.05 }
normal = { window = "1d", threshold = 0.10 }

[[monitoring.metrics]]
name = "reversion_mean_return"
strategies = ["mean_*"]
kind = "mean_return"
heightened = { window = "1h", threshold = 0.002 }
normal = { window = "1d", threshold = 0.004 }

[[monitoring.metrics]]
name = "momentum_win_loss"
strategies = ["momentum"]
kind = "win_loss"
heightened = { window = "1h", threshold = 0.2 }
normal = { window = "1d", threshold = 0.2 }

"#;
    let config = format!("{}{ours}{}", &config[..start], &config[end..])
        .replace("[monitoring]\n", "[monitoring]\nbaseline = \"trailing\"\nbaseline_window = \"1d\"\n");
    fs::write(s.ws.path("shipshape.toml"), config).unwrap();
    // Two hours before the deploy: momentum right 60 % of the time, mean reversion earning 0.3 %.
    let lines = |from: i64, minutes: i64, hit: f64, reversion_return: f64, tag: &str| {
        let mut out = String::new();
        for minute in 0..minutes {
            let ts = at(from + minute * MINUTE + 30);
            for k in 0..10 {
                let n = minute * 10 + k;
                let right = ((n as f64) * 0.618_033_988_75).fract() < hit;
                let (outcome, ret) = if right { (1, 0.004) } else { (-1, -0.004) };
                out.push_str(&format!("{{\"id\":\"{tag}-m{n}\",\"ts\":\"{ts}\",\"strategy\":\"momentum\",\"symbol\":\"S{k}\",\"signal\":1,\"outcome\":{outcome},\"return\":{ret}}}\n"));
            }
            for k in 0..5 {
                let n = minute * 5 + k;
                let ret = reversion_return + if k % 2 == 0 { 0.001 } else { -0.001 };
                let outcome = if ret > 0.0 { 1 } else { -1 };
                out.push_str(&format!("{{\"id\":\"{tag}-r{n}\",\"ts\":\"{ts}\",\"strategy\":\"mean_reversion\",\"symbol\":\"R{k}\",\"signal\":1,\"outcome\":{outcome},\"return\":{ret}}}\n"));
            }
        }
        out
    };
    let before = ingest(&s, &at(-MINUTE), &lines(-2 * HOUR, 120, 0.6, 0.003, "before"));
    assert_eq!(before["unknown_strategies"], serde_json::json!({}), "the team's strategies are watched: {before}");
    let manifest = s.release(DEPLOY);
    assert!(s.deploy(DEPLOY, &manifest).status.success());
    // After it: momentum right 40 % of the time, mean reversion losing 0.2 %.
    ingest(&s, &at(HOUR), &lines(0, 60, 0.4, -0.002, "after"));
    let mut fired = Vec::new();
    for offset in [20, 30, 40, 50, 60] {
        let (pass, _) = evaluate(&s, offset * MINUTE);
        for name in ["momentum_hit_ratio", "reversion_mean_return"] {
            let m = crate::util::watch::metric(&pass, name);
            assert!(m["baseline"].is_number(), "{name} has a trailing baseline: {m}");
            if state(&pass, name) == "firing" && !fired.contains(&name) {
                fired.push(name);
            }
        }
    }
    assert_eq!(fired, ["momentum_hit_ratio", "reversion_mean_return"], "both regressions fire");
    // Wins and losses are both ±0.4 %: a win/loss ratio of 1 before and after, so no alert.
    let (pass, _) = evaluate(&s, 60 * MINUTE);
    let win_loss = crate::util::watch::metric(&pass, "momentum_win_loss");
    assert!((win_loss["value"]["value"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{win_loss}");
    assert!((win_loss["baseline"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{win_loss}");
    assert_eq!(state(&pass, "momentum_win_loss"), "inactive");
    let sink = fs::read_to_string(s.ws.path("data/monitoring/alerts.jsonl")).unwrap();
    for (name, strategy) in [("momentum_hit_ratio", "momentum"), ("reversion_mean_return", "mean_*")] {
        let line = sink.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|v| v["metric"] == name);
        let line = line.unwrap_or_else(|| panic!("{name} missing from the sink: {sink}"));
        assert_eq!((line["reason"].as_str(), line["strategy"].as_str()), (Some("firing"), Some(strategy)), "{line}");
    }
    // The dashboard's API serves the team's metric, and /metrics names it.
    let token = s.ws.temp.path().join("token");
    fs::write(&token, "0123456789abcdef0123456789abcdef-token\n").unwrap();
    let mut child =
        s.ws.std_cmd(&at(HOUR))
            .args(["serve", "--bind", "127.0.0.1:0", "--token-file"])
            .arg(&token)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let address = line.trim().strip_prefix("listening on http://").unwrap().to_string();
    let series = crate::util::http::get_json(&address, "/api/v1/metrics/momentum_hit_ratio");
    let (metrics_status, metrics) = crate::util::http::request(&address, "GET", "/metrics", &[], b"");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(series["strategy"], "momentum");
    assert!(series["points"].as_array().unwrap().len() >= 5, "{series}");
    assert_eq!(metrics_status, 200);
    assert!(metrics.contains("momentum_hit_ratio") && metrics.contains("reversion_mean_return"), "{metrics}");
}

/// The dead-man's switch: inside the configured trading session (NSE hours, in IST), a release
/// that receives no events for `after` fires `events_received` (critical) to the sinks; outside the
/// session nothing is judged (the alert stays as it was); the next session's events resolve it.
/// A malformed session is refused at load, naming the key.
#[test]
fn silence_inside_a_trading_session_fires_and_outside_it_is_expected() {
    let s = Setup::new("copy");
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    let silence = "\n[monitoring.silence]\nafter = \"30m\"\nsessions = [{ days = \"mon-fri\", from = \"09:15\", to = \"15:30\", utc_offset = \"+05:30\" }]\n";
    fs::write(s.ws.path("shipshape.toml"), format!("{config}{silence}")).unwrap();
    // DEPLOY is Monday 2025-10-13 09:00 UTC = 14:30 IST, inside the session.
    let manifest = s.release(DEPLOY);
    assert!(s.deploy(DEPLOY, &manifest).status.success());
    ingest(&s, &at(11 * MINUTE), &events(0, 10, 2, 0.6, 1, 0.6, "early"));
    let silence_state = |offset: i64| {
        let (pass, _) = evaluate(&s, offset);
        pass["pass"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == "events_received")
            .map(|m| (m["state"]["state"].as_str().unwrap().to_string(), m["value"]["value"].as_f64().unwrap()))
    };
    let (state, minutes) = silence_state(20 * MINUTE).expect("judged inside the session");
    assert_eq!(state, "inactive");
    assert!((9.0..=11.0).contains(&minutes), "about 10 minutes since the last event: {minutes}");
    let (state, _) = silence_state(45 * MINUTE).unwrap();
    assert_eq!(state, "firing", "35 minutes without an event inside the session");
    let sink = fs::read_to_string(s.ws.path("data/monitoring/alerts.jsonl")).unwrap();
    let fired: Value =
        serde_json::from_str(sink.lines().find(|l| l.contains("events_received")).expect("notified")).unwrap();
    assert_eq!((fired["reason"].as_str(), fired["severity"].as_str()), (Some("firing"), Some("critical")));
    // 15:40 IST: the session is over; silence is expected and the alert is left as it was.
    assert_eq!(silence_state(70 * MINUTE), None);
    let alerts = s.shipshape(&at(70 * MINUTE), &["alerts", "--json"]);
    let alerts: Value = serde_json::from_slice(&alerts.stdout).unwrap();
    assert!(alerts.as_array().unwrap().iter().any(|a| a["metric"] == "events_received" && a["state"] == "firing"));
    // Saturday: no session.
    assert_eq!(silence_state(5 * 24 * HOUR), None);
    // Tuesday 09:20 IST (03:50 UTC): the engine reports again; the alert resolves.
    let tuesday = 24 * HOUR - 5 * HOUR - 10 * MINUTE;
    ingest(&s, &at(tuesday), &events(tuesday - 5 * MINUTE, 4, 2, 0.6, 1, 0.6, "tuesday"));
    let (state, _) = silence_state(tuesday).unwrap();
    assert_eq!(state, "resolved");
    // A malformed session is refused at load, naming the key; nothing changes.
    let bad = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap().replace("mon-fri", "mon-fry");
    fs::write(s.ws.path("shipshape.toml"), bad).unwrap();
    let output = s.shipshape(&at(tuesday), &["evaluate"]);
    assert_eq!(output.status.code(), Some(2));
    assert_one_line_error(&output, "monitoring.silence.sessions[0].days: `fry` is not a day");
}

/// The sequential detector end to end through the binary: evaluated every minute (which the
/// always-valid test allows without extra false alarms), a broken model (a 40 % drop at 50 trades
/// a minute) fires within 5 minutes of the deploy, and a release as good as its baseline stays
/// quiet at the same cadence. `calibrate` simulates a Sharpe metric too, and asks for what it
/// cannot measure.
#[test]
fn the_sequential_detector_catches_a_broken_model_within_minutes() {
    for (hit_share, expect_fire) in [(0.6, true), (1.0, false)] {
        let (s, _) = deployed("");
        let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
        let config = config
            .replace("detector = \"window\"", "detector = \"sequential\"")
            .replace("eval_interval = \"10m\"", "eval_interval = \"1m\"");
        fs::write(s.ws.path("shipshape.toml"), config).unwrap();
        let base = baseline(&s);
        ingest(&s, &at(10 * MINUTE), &events(0, 10, 50, base * hit_share, 0, 0.0, "broken"));
        let mut fired_at = None;
        for minute in 1..=8 {
            let (pass, _) = evaluate(&s, minute * MINUTE);
            if state(&pass, "intraday_hit_ratio") == "firing" {
                fired_at.get_or_insert(minute);
            }
        }
        match expect_fire {
            true => assert!(fired_at.is_some_and(|m| m <= 5), "a 40 % drop fired at {fired_at:?}"),
            false => assert_eq!(fired_at, None, "a healthy release alerted"),
        }
    }
    // calibrate simulates a Sharpe metric with normally distributed returns: a drop of twice the
    // threshold at 3,000 trades/h is caught by the sequential test in minutes, by the window rule
    // in 30 (three breaches ten minutes apart).
    let s = Setup::new("copy");
    let sharpe = ["calibrate", "--metric", "intraday_sharpe", "--trade-rate", "3000", "--baseline", "0.08"];
    let output = s
        .shipshape(DEPLOY, &[&sharpe[..], &["--sd", "0.01", "--drops", "0.3", "--quiet-days", "0", "--json"]].concat());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let figures: Value = serde_json::from_slice(&output.stdout).unwrap();
    let metric = &figures["metrics"][0];
    assert_eq!(
        (metric["kind"].as_str(), metric["outcomes"].as_str(), metric["drop"].as_str()),
        (Some("sharpe"), Some("normal"), Some("absolute"))
    );
    let delay = |detector: &str| {
        let d = metric["detectors"].as_array().unwrap().iter().find(|d| d["detector"] == detector).unwrap();
        (d["delays"][0]["detected"].as_u64().unwrap(), d["delays"][0]["median_minutes"].as_f64().unwrap())
    };
    let (detected, median) = delay("sequential");
    assert!(detected == 8 && median <= 10.0, "sequential: {detected} of 8, median {median} min");
    assert_eq!(delay("window"), (8, 30.0));
    // What it cannot know is asked for by name, and nothing is written.
    let output = s.shipshape(DEPLOY, &sharpe);
    assert_eq!(output.status.code(), Some(2));
    assert_one_line_error(&output, "measure the deviation of `intraday_sharpe` from: give --sd");
    let output = s.shipshape(DEPLOY, &["calibrate", "--trade-rate", "100"]);
    assert_eq!(output.status.code(), Some(2));
    assert_one_line_error(&output, "give --baseline");
    let output = s.shipshape(
        DEPLOY,
        &["calibrate", "--metric", "intraday_hit_ratio", "--trade-rate", "100", "--baseline", "0.6", "--drops", "1.5"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert_one_line_error(&output, "--drops 1.5: give relative drops between 0 and 1");
}

/// A producer's own numeric fields as metrics: `"metrics": {"slippage_bps": …, "rejected": …}` in
/// JSON lines before the deploy (the trailing baseline), the same fields as `metrics.<name>`
/// columns of a CSV after it; a lower-is-better `field_mean` and `field_rate` fire when slippage
/// and rejections rise. A bad field name or a non-number is refused naming `metrics`, storing nothing.
#[test]
fn a_producers_numeric_fields_are_monitored() {
    let s = Setup::new("copy");
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    let (start, end) = (config.find("# What to watch:").unwrap(), config.find("# The dead-man's switch").unwrap());
    let ours = r#"[[monitoring.metrics]]
name = "momentum_slippage"
strategies = ["momentum"]
kind = "field_mean"
field = "slippage_bps"
direction = "lower"
heightened = { window = "1h", threshold = 0.5 }
normal = { window = "1d", threshold = 1.0 }

[[monitoring.metrics]]
name = "momentum_rejections"
strategies = ["momentum"]
kind = "field_rate"
field = "rejected"
direction = "lower"
heightened = { window = "1h", threshold = 0.05 }
normal = { window = "1d", threshold = 0.05 }

"#;
    let config = format!("{}{ours}{}", &config[..start], &config[end..])
        .replace("[monitoring]\n", "[monitoring]\nbaseline = \"trailing\"\nbaseline_window = \"1d\"\n");
    fs::write(s.ws.path("shipshape.toml"), config).unwrap();
    // Before the deploy: slippage 1 bp on average, one order in 50 rejected.
    let mut before = String::new();
    for i in 0..1200 {
        let ts = at(-2 * HOUR + i * 6);
        let slippage = if i % 2 == 0 { 0.5 } else { 1.5 };
        let rejected = u8::from(i % 50 == 0);
        before.push_str(&format!("{{\"id\":\"b{i}\",\"ts\":\"{ts}\",\"strategy\":\"momentum\",\"symbol\":\"S\",\"signal\":1,\"outcome\":1,\"return\":0.001,\"metrics\":{{\"slippage_bps\":{slippage},\"rejected\":{rejected}}}}}\n"));
    }
    let report = ingest(&s, &at(-MINUTE), &before);
    assert_eq!(report["accepted"], 1200, "{report}");
    let manifest = s.release(DEPLOY);
    assert!(s.deploy(DEPLOY, &manifest).status.success());
    // After it, as CSV: slippage 2.5 bp, one order in five rejected.
    let mut after = String::from("id,ts,strategy,symbol,signal,outcome,return,metrics.slippage_bps,metrics.rejected\n");
    for i in 0..600 {
        let ts = at(i * 6);
        let slippage = if i % 2 == 0 { 2.0 } else { 3.0 };
        let rejected = u8::from(i % 5 == 0);
        after.push_str(&format!("a{i},{ts},momentum,S,1,1,0.001,{slippage},{rejected}\n"));
    }
    let file = s.ws.temp.path().join("after.csv");
    fs::write(&file, &after).unwrap();
    let output = s.ws.cmd_at(&at(HOUR)).arg("ingest").arg(&file).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let (pass, _) = evaluate(&s, HOUR);
    for name in ["momentum_slippage", "momentum_rejections"] {
        let m = crate::util::watch::metric(&pass, name);
        assert!(m["baseline"].is_number() && m["value"]["value"].is_number(), "{m}");
    }
    assert!((crate::util::watch::metric(&pass, "momentum_slippage")["baseline"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!(
        (crate::util::watch::metric(&pass, "momentum_slippage")["value"]["value"].as_f64().unwrap() - 2.5).abs() < 1e-9
    );
    let mut fired = std::collections::BTreeSet::new();
    for offset in [HOUR, HOUR + 10 * MINUTE, HOUR + 20 * MINUTE] {
        let (pass, _) = evaluate(&s, offset);
        for name in ["momentum_slippage", "momentum_rejections"] {
            if state(&pass, name) == "firing" {
                fired.insert(name);
            }
        }
    }
    assert_eq!(fired.len(), 2, "both rises fire: {fired:?}");
    // Bad fields are refused, naming the field, and nothing is stored.
    for bad in [
        r#"{"id":"x1","ts":"2025-10-13T10:00:00Z","strategy":"momentum","symbol":"S","signal":1,"outcome":1,"return":0.0,"metrics":{"Slippage":1}}"#,
        r#"{"id":"x2","ts":"2025-10-13T10:00:00Z","strategy":"momentum","symbol":"S","signal":1,"outcome":1,"return":0.0,"metrics":{"slippage_bps":"high"}}"#,
    ] {
        let output = s.ws.cmd_at(&at(2 * HOUR)).args(["ingest", "-"]).write_stdin(format!("{bad}\n")).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        assert_one_line_error(&output, "`metrics`");
    }
}
