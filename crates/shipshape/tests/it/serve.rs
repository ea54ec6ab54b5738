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

/// Read `stream` until the server closes it (or `limit` passes); what was read and whether the
/// server closed the connection.
fn read_until_closed(stream: &mut std::net::TcpStream, limit: Duration) -> (String, bool) {
    use std::io::Read;
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&got).into_owned(), true);
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

/// Thousands of idle connections (more than the connection limit) do not lock anyone out: while they
/// are open, `/healthz` and an authenticated ingest still answer within a second, and the server
/// never holds more connections than its limit.
#[test]
fn thousands_of_idle_connections_do_not_starve_healthz_or_ingest() {
    let s = deployed();
    let mut server = start(&s, &["--max-connections", "256"]);
    let idle: Vec<std::net::TcpStream> = (0..3000)
        .map(|i| std::net::TcpStream::connect(&server.address).unwrap_or_else(|e| panic!("{i}: {e}")))
        .collect();
    let started = std::time::Instant::now();
    let (status, body) = try_request(&server.address, "GET", "/healthz", &[], b"").unwrap();
    let healthz = started.elapsed();
    assert_eq!(status, 200, "{body}");
    let started = std::time::Instant::now();
    let (status, body) =
        http(&server.address, "POST", "/api/v1/events", Some(&server.token), batch("idle", 0, 50).as_bytes()).unwrap();
    let ingest = started.elapsed();
    assert_eq!(status, 200, "{body}");
    eprintln!("with 3000 idle connections open: /healthz {healthz:?}, ingest {ingest:?}");
    assert!(
        healthz < Duration::from_secs(1) && ingest < Duration::from_secs(1),
        "healthz {healthz:?}, ingest {ingest:?}"
    );
    // The server holds at most its limit: all but the newest 256 idle sockets were closed by it.
    let pid = server.child.id();
    let sockets = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
        })
        .count();
    assert!(sockets <= 256 + 8, "the server holds {sockets} sockets");
    let mut oldest = idle.into_iter().next().unwrap();
    let (_, closed) = read_until_closed(&mut oldest, Duration::from_secs(5));
    assert!(closed, "the longest-idle connection was closed to make room");
    stop(&mut server);
}

/// A silent socket, a header sent a byte at a time, a keep-alive connection left idle and a body
/// that stalls are each closed after their own timeout; a declared oversize body gets 413 before it
/// is sent; 405 and a bad query string answer JSON like every other error.
#[test]
fn slow_clients_time_out_and_every_error_is_json() {
    use std::io::Write;
    let s = deployed();
    let mut server =
        start(&s, &["--header-timeout", "1s", "--idle-timeout", "3s", "--body-timeout", "1s", "--max-body", "1000"]);
    let connect = || std::net::TcpStream::connect(&server.address).unwrap();

    let mut silent = connect();
    let (got, closed) = read_until_closed(&mut silent, Duration::from_secs(10));
    assert!(closed && got.is_empty(), "a silent socket is closed: {got:?}");

    let mut trickle = connect();
    let started = std::time::Instant::now();
    let mut closed_while_sending = false;
    for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n" {
        if trickle.write_all(&[*byte]).is_err() {
            closed_while_sending = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (got, closed) = read_until_closed(&mut trickle, Duration::from_secs(10));
    assert!(closed_while_sending || (closed && got.is_empty()), "a half-sent head is closed: {got:?}");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());

    // Keep-alive: a second request after 1.5 s (past the header timeout, within the idle one) is
    // answered on the same connection; left idle, the connection is then closed.
    let mut keep = connect();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.address);
    keep.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    keep.write_all(request.as_bytes()).unwrap();
    let (got, closed) = read_until_closed(&mut keep, Duration::from_secs(10));
    assert_eq!(got.matches("HTTP/1.1 200").count(), 2, "{got}");
    assert!(closed, "an idle keep-alive connection is closed");

    let mut stalled = connect();
    stalled
        .write_all(b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer 0123456789abcdef0123456789abcdef-test-token\r\nContent-Length: 500\r\n\r\n{\"id\":")
        .unwrap();
    let (got, closed) = read_until_closed(&mut stalled, Duration::from_secs(10));
    assert!(got.starts_with("HTTP/1.1 400") && got.contains("--body-timeout"), "{got}");
    assert!(closed, "{got}");

    let mut oversize = connect();
    oversize
        .write_all(b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer 0123456789abcdef0123456789abcdef-test-token\r\nContent-Length: 1000000000\r\n\r\n")
        .unwrap();
    let (got, _) = read_until_closed(&mut oversize, Duration::from_secs(10));
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    let body = &got[got.find("\r\n\r\n").unwrap() + 4..];
    let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {got}"));
    assert!(json["error"].as_str().unwrap().contains("--max-body of 1000"), "{json}");

    for (method, path, status, needle) in [
        ("GET", "/api/v1/events", 405, "allowed: POST"),
        ("DELETE", "/api/v1/status", 405, "allowed: GET"),
        ("GET", "/api/v1/alerts?limit=many", 400, "limit"),
    ] {
        let (code, body) = try_request(&server.address, method, path, &[], b"").unwrap();
        assert_eq!(code, status, "{method} {path}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"));
        assert!(json["error"].as_str().is_some_and(|e| e.contains(needle)), "{method} {path}: {json}");
    }
    stop(&mut server);
}

/// SIGTERM, and the server must exit 0 (a graceful shutdown with connections still open).
fn stop(server: &mut Server) {
    assert!(
        std::process::Command::new("kill").arg("-TERM").arg(server.child.id().to_string()).status().unwrap().success()
    );
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// Off loopback, reads need a token of any role (a viewer's), the page's shell and `/healthz` stay
/// open, the event stream takes the token as a query parameter; `--read-auth open` opens reads
/// again. Every request is logged as JSON with the operator's name and never a token.
#[test]
fn reads_need_a_viewer_token_off_loopback_and_requests_are_logged_as_json_without_secrets() {
    let s = deployed();
    let add = |name: &str, role: &str| {
        let output = s.shipshape(LATER, &["operator", "add", name, "--role", role]);
        assert!(output.status.success(), "{}", stderr_of(&output));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    let viewer = add("vera", "viewer");
    let operator = add("olga", "operator");
    let spawn = |extra: &[&str]| {
        let mut child =
            s.ws.std_cmd(LATER)
                .args(["serve", "--bind", "0.0.0.0:0", "--log-format", "json"])
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().rsplit(':').next().unwrap().to_string();
        (child, format!("127.0.0.1:{port}"))
    };
    let (mut child, address) = spawn(&[]);
    let (status, body) = http(&address, "GET", "/api/v1/status", None, b"").unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("viewer"), "{body}");
    assert_eq!(http(&address, "GET", "/api/v1/active", Some("ss1.nobody.secret"), b"").unwrap().0, 401);
    let (status, body) = http(&address, "GET", "/api/v1/status", Some(&viewer), b"").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(http(&address, "GET", "/healthz", None, b"").unwrap().0, 200);
    assert_eq!(http(&address, "GET", "/", None, b"").unwrap().0, 200);
    // A viewer reads, and may not change anything.
    assert_eq!(http(&address, "POST", "/api/v1/evaluate", Some(&viewer), b"").unwrap().0, 403);
    assert_eq!(http(&address, "POST", "/api/v1/evaluate", Some(&operator), b"").unwrap().0, 200);
    // The stream: refused without a token, served with one in the query string.
    let stream = |query: &str| {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(&address).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(socket, "GET /api/v1/alerts/stream{query} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut head = [0u8; 512];
        let n = socket.read(&mut head).unwrap();
        String::from_utf8_lossy(&head[..n]).into_owned()
    };
    assert!(stream("").starts_with("HTTP/1.1 401"));
    assert!(stream(&format!("?access_token={viewer}")).starts_with("HTTP/1.1 200"));
    terminate(&mut child);
    let log = String::from_utf8(child.wait_with_output().unwrap().stderr).unwrap();
    let records: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let request = |path: &str, status: u64| {
        records.iter().find(|r| r["message"] == "request" && r["path"] == path && r["status"] == status).cloned()
    };
    let refused = request("/api/v1/status", 401).unwrap_or_else(|| panic!("{log}"));
    assert_eq!((refused["method"].as_str(), refused["operator"].as_str()), (Some("GET"), Some("-")));
    assert!(refused["duration_ms"].as_f64().is_some());
    assert_eq!(request("/api/v1/status", 200).unwrap()["operator"], "vera");
    assert_eq!(request("/api/v1/evaluate", 200).unwrap()["operator"], "olga");
    assert_eq!(request("/api/v1/alerts/stream", 200).unwrap()["operator"], "vera");
    assert!(records.iter().any(|r| r["message"] == "evaluation requested" && r["operator"] == "olga"), "{log}");
    for secret in [&viewer, &operator] {
        let tail = secret.rsplit('.').next().unwrap();
        assert!(!log.contains(tail), "a token's secret reached the log:\n{log}");
    }
    // Reads opened by choice.
    let (mut child, address) = spawn(&["--read-auth", "open"]);
    assert_eq!(http(&address, "GET", "/api/v1/status", None, b"").unwrap().0, 200);
    terminate(&mut child);
    child.wait().unwrap();
}

/// SIGTERM, so the server shuts down gracefully and flushes its log.
fn terminate(child: &mut Child) {
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}
