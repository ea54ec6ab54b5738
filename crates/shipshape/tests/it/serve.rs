//! `shipshape serve` as a real process on loopback: concurrent HTTP ingestion without lost events,
//! batch atomicity (400 with the line number), 401/413, the JSON API and /metrics, graceful
//! shutdown, and a `kill -9` during ingestion that loses no acknowledged event.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::util::http::try_request;
use crate::util::{Setup, stderr_of};
use serde_json::Value;

const DEPLOY: &str = "2025-10-13T09:00:00Z";
const LATER: &str = "2025-10-13T12:00:00Z";

struct Server {
    child: Child,
    address: String,
    token: String,
}

const TOKEN: &str = "0123456789abcdef0123456789abcdef-test-token";

fn start(s: &Setup, extra: &[&str]) -> Server {
    let token_file = s.ws.temp.path().join("operator.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut child =
        s.ws.std_cmd(LATER)
            .args(["serve", "--bind", "127.0.0.1:0", "--token-file"])
            .arg(&token_file)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line}")).to_string();
    Server { child, address, token: TOKEN.to_string() }
}

/// One request with the operator token (when given) and a JSON-lines body; (status, body).
fn http(address: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> std::io::Result<(u16, String)> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/x-ndjson")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    try_request(address, method, path, &headers, body)
}

fn batch(tag: &str, from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| {
            let minute = 1 + i % 170;
            format!(
                "{{\"id\":\"{tag}-{i}\",\"ts\":\"2025-10-13T{:02}:{:02}:00Z\",\"strategy\":\"intraday\",\"symbol\":\"S{}\",\"signal\":1,\"outcome\":{},\"return\":{}}}\n",
                9 + minute / 60,
                minute % 60,
                i % 7,
                if i % 5 < 2 { 1 } else { -1 },
                if i % 5 < 2 { 0.004 } else { -0.004 }
            )
        })
        .collect()
}

fn deployed() -> Setup {
    let s = Setup::new("copy");
    let manifest = s.release(DEPLOY);
    let output = s.deploy(DEPLOY, &manifest);
    assert!(output.status.success(), "{}", stderr_of(&output));
    s
}

#[test]
fn concurrent_ingest_api_metrics_and_graceful_shutdown() {
    let s = deployed();
    let server = start(&s, &["--max-body", "200000"]);
    let (address, token) = (server.address.clone(), server.token.clone());

    // Eight clients, twenty batches of 250 each, all at once: every event stored once.
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let (address, token) = (address.clone(), token.clone());
            std::thread::spawn(move || {
                for b in 0..20 {
                    let body = batch(&format!("c{client}"), b * 250, 250);
                    let (status, text) =
                        http(&address, "POST", "/api/v1/events", Some(&token), body.as_bytes()).unwrap();
                    assert_eq!(status, 200, "{text}");
                    let report: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(report["accepted"], 250);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let status = |address: &str| -> Value {
        serde_json::from_str(&http(address, "GET", "/api/v1/status", None, b"").unwrap().1).unwrap()
    };
    assert_eq!(status(&address)["events_stored"], 40_000);
    // Sending a batch again stores nothing new.
    let (code, text) = http(&address, "POST", "/api/v1/events", Some(&token), batch("c0", 0, 250).as_bytes()).unwrap();
    assert_eq!((code, serde_json::from_str::<Value>(&text).unwrap()["duplicates"].clone()), (200, Value::from(250)));

    // A bad line: 400 naming it, nothing of the batch stored.
    let mut bad = batch("bad", 0, 5);
    bad.insert_str(
        bad.find('\n').unwrap() + 1,
        "{\"id\":\"x\",\"ts\":\"2025-10-13T10:00:00Z\",\"strategy\":\"intraday\"}\n",
    );
    let (code, text) = http(&address, "POST", "/api/v1/events", Some(&token), bad.as_bytes()).unwrap();
    assert_eq!(code, 400, "{text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["line"], 2);
    assert!(error["error"].as_str().unwrap().contains("nothing from this batch was stored"));
    // From the future (beyond the skew tolerance): refused.
    let future = batch("f", 0, 1).replace("2025-10-13T09", "2025-10-14T09");
    assert_eq!(http(&address, "POST", "/api/v1/events", Some(&token), future.as_bytes()).unwrap().0, 400);
    // No token, a wrong token, too large a body.
    assert_eq!(http(&address, "POST", "/api/v1/events", None, batch("n", 0, 1).as_bytes()).unwrap().0, 401);
    assert_eq!(http(&address, "POST", "/api/v1/events", Some("nope"), batch("n", 0, 1).as_bytes()).unwrap().0, 401);
    assert_eq!(
        http(&address, "POST", "/api/v1/events", Some(&token), batch("big", 0, 2000).as_bytes()).unwrap().0,
        413
    );
    assert_eq!(status(&address)["events_stored"], 40_000);

    // One evaluation pass: a 29 % drop of the hit ratio is a breach (pending until the third).
    let (code, text) = http(&address, "POST", "/api/v1/evaluate", Some(&token), b"").unwrap();
    assert_eq!(code, 200, "{text}");
    let pass: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(pass["mode"], "heightened");
    let (code, text) = http(&address, "GET", "/api/v1/alerts?state=pending", None, b"").unwrap();
    assert_eq!(code, 200);
    let alerts: Value = serde_json::from_str(&text).unwrap();
    assert!(alerts.as_array().unwrap().iter().any(|a| a["metric"] == "intraday_hit_ratio"), "{alerts}");
    assert_eq!(http(&address, "GET", "/api/v1/alerts?state=bogus", None, b"").unwrap().0, 400);
    let (_, text) = http(&address, "GET", "/api/v1/metrics/intraday_hit_ratio", None, b"").unwrap();
    let series: Value = serde_json::from_str(&text).unwrap();
    let point = &series["points"].as_array().unwrap()[0];
    assert_eq!(point["samples"], 40_000);
    assert!((point["value"].as_f64().unwrap() - 0.4).abs() < 1e-9, "{point}");
    let (_, text) = http(&address, "GET", "/api/v1/releases", None, b"").unwrap();
    let releases: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(releases["history"][0]["action"], "deploy");
    let (code, metrics) = http(&address, "GET", "/metrics", None, b"").unwrap();
    assert_eq!(code, 200);
    for needle in [
        "shipshape_events_accepted_total 40000",
        "shipshape_events_duplicate_total 250",
        "shipshape_ingest_rejected_total 2",
        "shipshape_heightened_monitoring{release_id=",
        "metric=\"intraday_hit_ratio\",strategy=\"intraday\"} 0.4",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
    assert_eq!(http(&address, "GET", "/nope", None, b"").unwrap().0, 404);

    // SIGTERM: a clean exit.
    assert!(
        std::process::Command::new("kill").arg("-TERM").arg(server.child.id().to_string()).status().unwrap().success()
    );
    let output = server.child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("shut down cleanly"));
}

#[test]
fn refuses_non_loopback_without_a_token_file_and_short_tokens() {
    let s = Setup::new("copy");
    let output = s.shipshape(LATER, &["serve", "--bind", "0.0.0.0:0"]);
    assert_eq!(output.status.code(), Some(2));
    crate::util::assert_one_line_error(&output, "--token-file");
    let short = s.ws.temp.path().join("short.token");
    std::fs::write(&short, "secret\n").unwrap();
    let output = s.shipshape(LATER, &["serve", "--bind", "127.0.0.1:0", "--token-file", short.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    crate::util::assert_one_line_error(&output, "at least 32 characters");
}

#[test]
fn kill_9_during_ingest_loses_no_acknowledged_event() {
    let s = deployed();
    let mut server = start(&s, &[]);
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (address, token, acknowledged) =
                (server.address.clone(), server.token.clone(), std::sync::Arc::clone(&acknowledged));
            std::thread::spawn(move || {
                for b in 0..10_000 {
                    let tag = format!("k{client}");
                    let body = batch(&tag, b * 100, 100);
                    match http(&address, "POST", "/api/v1/events", Some(&token), body.as_bytes()) {
                        Ok((200, _)) => acknowledged.lock().unwrap().push(format!("{tag}-{}", b * 100 + 99)),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for client in clients {
        client.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 4, "too few batches were acknowledged to prove anything: {}", acknowledged.len());
    let db = rusqlite::Connection::open(s.ws.path("data/monitoring/monitor.db")).unwrap();
    for last_id in &acknowledged {
        // The last event of each acknowledged batch, and so the whole batch (one transaction).
        let found: i64 =
            db.query_row("SELECT count(*) FROM events WHERE id = ?1", [last_id], |row| row.get(0)).unwrap();
        assert_eq!(found, 1, "acknowledged event {last_id} was lost");
    }
    let total: i64 = db.query_row("SELECT count(*) FROM events", [], |row| row.get(0)).unwrap();
    assert!(total as usize >= acknowledged.len() * 100);
    assert_eq!(total % 100, 0, "a partial batch was stored");
}

/// The CLI and the server write one database at the same time: `evaluate` (a writer) runs while four
/// clients keep the server's ingest writer busy, and neither side fails with "database is locked"
/// — every writer begins IMMEDIATE, so it waits in SQLite's busy handler instead.
#[test]
fn cli_evaluate_and_server_ingest_write_one_database_at_once() {
    let s = deployed();
    let mut server = start(&s, &["--max-body", "2000000"]);
    let (address, token) = (server.address.clone(), server.token.clone());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (address, token, stop) = (address.clone(), token.clone(), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut sent = 0;
                // Bounded: at most 400 batches per client, and only while the CLI runs.
                while sent < 400 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = batch(&format!("load{client}"), sent * 500, 500);
                    let (status, text) =
                        http(&address, "POST", "/api/v1/events", Some(&token), body.as_bytes()).unwrap();
                    assert_eq!(status, 200, "{text}");
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let mut evaluations = 0;
    for _ in 0..8 {
        let output = s.shipshape(LATER, &["evaluate", "--no-deliver"]);
        assert!(output.status.success(), "evaluate beside a busy server: {}", stderr_of(&output));
        evaluations += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let batches: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(evaluations, 8);
    assert!(batches > 0, "the server took events meanwhile");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
