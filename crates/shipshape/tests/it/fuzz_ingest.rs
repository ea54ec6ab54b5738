//! Structured fuzzing of the HTTP ingest handler and the read endpoints' query strings, in process
//! through the router (the same mutation engine as the parser fuzzers, `SHIPSHAPE_FUZZ_CASES` cases;
//! `scripts/fuzz.sh` runs it for longer). Every request must be answered — `200` with an ingest
//! report, or a 4xx whose body is JSON with an `error` — never a 5xx, a panic or a hang, and a batch
//! that is refused stores nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use shipshape_core::infra::clock::{Clock, FixedClock};
use shipshape_core::layout::Workspace;
use shipshape_monitor::monitor::Monitor;
use tower::ServiceExt;

#[path = "../../../shipshape-core/tests/common/fuzz_edits.rs"]
mod fuzz_edits;

const TOKEN: &str = "0123456789abcdef0123456789abcdef-fuzzing";

fn cases() -> u32 {
    std::env::var("SHIPSHAPE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

fn seed(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shipshape-core/tests/fuzz_seeds").join(name),
    )
    .unwrap()
}

/// One request through the router: status and body, within a time limit.
fn answer(runtime: &tokio::runtime::Runtime, router: &axum::Router, request: Request<Body>) -> (u16, String) {
    runtime.block_on(async {
        let response = tokio::time::timeout(Duration::from_secs(20), router.clone().oneshot(request))
            .await
            .expect("no answer within 20 s (a hang)")
            .unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 24).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

fn stored(workspace: &std::path::Path) -> i64 {
    let db = rusqlite::Connection::open(workspace.join("data/monitoring/monitor.db")).unwrap();
    db.query_row("SELECT count(*) FROM events", [], |row| row.get(0)).unwrap_or(0)
}

#[test]
fn ingest_and_query_strings_answer_every_request() {
    let s = crate::util::Setup::new("copy");
    let manifest = s.release("2025-10-13T07:00:00Z");
    assert!(s.deploy("2025-10-13T07:00:00Z", &manifest).status.success());
    let clock: Arc<dyn Clock> = Arc::new(FixedClock("2025-10-13T10:00:00Z".parse().unwrap()));
    let monitor = Monitor::open(Workspace::open(&s.ws.root).unwrap()).unwrap();
    let state = shipshape_web::AppState::new(monitor, clock, TOKEN.into()).unwrap();
    let router = shipshape_web::router(state, 1 << 20);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let seeds = [("application/x-ndjson", seed("events.jsonl")), ("text/csv", seed("events.csv"))];
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    });
    let strategy = (fuzz_edits::edits(), 0usize..2, any::<bool>());
    runner
        .run(&strategy, |(edits, which, with_type)| {
            let (kind, seed) = &seeds[which];
            let body = fuzz_edits::apply(seed, &edits);
            let mut request = Request::post("/api/v1/events")
                .header("host", "shipshape.test")
                .header("authorization", format!("Bearer {TOKEN}"));
            if with_type {
                request = request.header("content-type", *kind);
            }
            let before = stored(&s.ws.root);

            let (status, reply) = answer(&runtime, &router, request.body(Body::from(body.clone())).unwrap());
            let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            prop_assert!(status == 200 || (400..500).contains(&status), "{status}: {reply} for {shown:?}");
            let json: serde_json::Value = serde_json::from_str(&reply)
                .map_err(|e| TestCaseError::fail(format!("{status} not JSON ({e}): {reply}")))?;
            if status != 200 {
                prop_assert!(json["error"].is_string(), "{status}: {reply}");
                prop_assert_eq!(stored(&s.ws.root), before, "a refused batch stored events: {}", reply);
            }
            Ok(())
        })
        .unwrap();
    // Query strings and metric names of the read endpoints.
    let paths = ["/api/v1/alerts?", "/api/v1/metrics/", "/api/v1/releases?", "/api/v1/status?", "/releases/"];
    runner
        .run(&(0usize..paths.len(), fuzz_edits::edits()), |(which, edits)| {
            let tail = fuzz_edits::apply(b"state=firing&limit=10&release=release_20251012_190000", &edits);
            let tail: String = tail
                .iter()
                .map(|b| if b.is_ascii_graphic() { (*b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            let uri = format!("{}{}", paths[which], tail.replace('#', "%23"));
            let Ok(request) = Request::get(uri.as_str()).body(Body::empty()) else {
                return Ok(()); // not a URI a client could send
            };
            let (status, reply) = answer(&runtime, &router, request);
            prop_assert!(status < 500, "{uri}: {status} {reply}");
            if status >= 400 {
                let json: serde_json::Value = serde_json::from_str(&reply)
                    .map_err(|e| TestCaseError::fail(format!("{uri}: {status} not JSON ({e}): {reply}")))?;
                prop_assert!(json["error"].is_string(), "{uri}: {reply}");
            }
            Ok(())
        })
        .unwrap();
}
