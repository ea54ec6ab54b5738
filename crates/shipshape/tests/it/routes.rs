//! Every endpoint of `shipshape serve`, driven in-process through the router (no socket): status
//! codes, content types and the JSON each returns, on a workspace with two deployed releases.

use std::sync::Arc;

use crate::util::{Setup, yaml_value};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use shipshape_core::infra::clock::{Clock, FixedClock};
use shipshape_core::layout::Workspace;
use shipshape_monitor::monitor::Monitor;
use tower::ServiceExt;

const TOKEN: &str = "0123456789abcdef0123456789abcdef-routes";

struct App {
    router: axum::Router,
    csrf: String,
    a: String,
    b: String,
    _setup: Setup,
}

fn app() -> App {
    let s = Setup::new("copy");
    let a = s.release("2025-10-13T07:00:00Z");
    assert!(s.deploy("2025-10-13T07:00:00Z", &a).status.success());
    // Two hotfix manifests made, never approved or deployed: B's chain predecessor is the second,
    // but the dashboard's rollback goes to A, the release that ran before B.
    for (n, time) in ["2025-10-13T07:30:00Z", "2025-10-13T08:00:00Z"].iter().enumerate() {
        let space = std::fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
        s.ws.write("search_space.yaml", format!("{space}# hotfix attempt {n}\n").as_bytes());
        s.ws.release(time, &["--type", "hotfix"]);
    }
    let space = std::fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
    s.ws.write("search_space.yaml", format!("{space}# tuned\n").as_bytes());
    let b = s.release("2025-10-13T09:00:00Z");
    assert!(s.deploy("2025-10-13T09:00:00Z", &b).status.success());
    let clock: Arc<dyn Clock> = Arc::new(FixedClock("2025-10-13T10:00:00Z".parse().unwrap()));
    let monitor = Monitor::open(Workspace::open(&s.ws.root).unwrap()).unwrap();
    let state = shipshape_web::AppState::new(monitor, clock, TOKEN.into()).unwrap();
    let router = shipshape_web::router(state, 1 << 20);
    let id = |m: &std::path::Path| yaml_value(m)["release_id"].as_str().unwrap().to_string();
    App { router, csrf: String::new(), a: id(&a), b: id(&b), _setup: s }
}

async fn send(app: &App, request: Request<Body>) -> (StatusCode, String, String) {
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let kind = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24).await.unwrap();
    (status, kind, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn post(path: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut request = Request::post(path).header("host", "shipshape.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint() {
    let mut app = tokio::task::spawn_blocking(app).await.unwrap();
    let auth = format!("Bearer {TOKEN}");

    let (status, kind, page) = send(&app, get("/")).await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "text/html; charset=utf-8"));
    app.csrf = page.split("name=\"csrf-token\" content=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    assert_eq!(app.csrf.len(), 48);
    assert_eq!(send(&app, get("/healthz")).await.2, "ok\n");

    let (status, _, body) = send(&app, get("/api/v1/status")).await;
    assert_eq!(status, StatusCode::OK);
    let status_json = json(&body);
    assert_eq!(status_json["active_release"]["release_id"], app.b.as_str());
    assert_eq!(status_json["active_release"]["heightened_remaining_seconds"], 47 * 3600);
    assert_eq!(status_json["active_release"]["manifest"]["rollback_target"], app.a.as_str());

    let (_, _, body) = send(&app, get("/api/v1/releases")).await;
    assert_eq!(json(&body)["history"].as_array().unwrap().len(), 2);

    // The engine's view: the active release with its artifacts, cached by ETag.
    let response = app.router.clone().oneshot(get("/api/v1/active")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24).await.unwrap();
    let active = json(&String::from_utf8_lossy(&body));
    assert_eq!(active["release_id"], app.b.as_str());
    assert_eq!(active["mode"], "heightened");
    let first = &active["artifacts"][0];
    assert_eq!(first["sha256"].as_str().unwrap().len(), 64);
    assert!(first["size"].as_u64().is_some() && first["path"].is_string());
    let again = Request::get("/api/v1/active").header("if-none-match", &etag).body(Body::empty()).unwrap();
    let (status, _, body) = send(&app, again).await;
    assert_eq!((status, body.as_str()), (StatusCode::NOT_MODIFIED, ""));
    let stale = Request::get("/api/v1/active").header("if-none-match", "\"other\"").body(Body::empty()).unwrap();
    assert_eq!(send(&app, stale).await.0, StatusCode::OK);
    let (status, _, body) = send(&app, get("/api/v1/active?env=staging")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("staging"), "{body}");
    assert_eq!(send(&app, get("/api/v1/active?bogus=1")).await.0, StatusCode::BAD_REQUEST);
    let (status, _, body) = send(&app, get(&format!("/api/v1/releases/{}", app.a))).await;
    assert_eq!(status, StatusCode::OK);
    let release = json(&body);
    assert_eq!(release["release_id"], app.a.as_str());
    assert_eq!(release["history"][0]["action"], "deploy");
    assert_eq!(release["manifest_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(send(&app, get("/api/v1/releases/release_20000101_000000")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(send(&app, get("/api/v1/releases/..%2Fshipshape")).await.0, StatusCode::NOT_FOUND);
    let (_, _, body) = send(&app, get("/api/v1/checks")).await;
    let checks = json(&body);
    assert_eq!(checks["target"]["in_sync"], true);
    assert_eq!(checks["approvals"]["threshold_met"], true);
    let (_, _, body) = send(&app, get("/api/v1/analytics")).await;
    assert_eq!(json(&body)["30d"]["deploys"], 2);

    // Events in, an evaluation, then alerts and the metric series.
    let events: String = (0..400)
        .map(|i| {
            format!(
                "{{\"id\":\"r{i}\",\"ts\":\"2025-10-13T09:{:02}:00Z\",\"strategy\":\"intraday\",\"symbol\":\"A\",\"signal\":1,\"outcome\":{},\"return\":0.001}}\n",
                i % 60,
                if i % 10 < 3 { 1 } else { -1 }
            )
        })
        .collect();
    let (status, _, body) = send(&app, post("/api/v1/events", &[("authorization", &auth)], &events)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["accepted"], 400);
    // A JSON array of events, as `json.dumps(records)` writes it, words and floats for directions.
    let array = r#"[{"id":"arr1","ts":"2025-10-13T09:05:00Z","strategy":"intraday","symbol":"A","signal":"BUY","outcome":-1.0,"return":-0.001},
        {"id":"arr2","ts":"2025-10-13T09:06:00Z","strategy":"intraday","symbol":"A","signal":"sell","outcome":"SELL","return":0.001}]"#;
    let (status, _, body) =
        send(&app, post("/api/v1/events", &[("authorization", &auth), ("content-type", "application/json")], array))
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["accepted"], 2, "{body}");
    let bad =
        r#"[{"ts":"2025-10-13T09:07:00Z","strategy":"intraday","symbol":"A","signal":1,"outcome":1,"return":NaN}]"#;
    let (status, _, body) = send(&app, post("/api/v1/events", &[("authorization", &auth)], bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("`return`: NaN"), "{body}");
    let (status, _, body) = send(&app, post("/api/v1/evaluate", &[("authorization", &auth)], "")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, body) = send(&app, get("/api/v1/alerts?state=pending")).await;
    assert!(json(&body).as_array().unwrap().iter().any(|a| a["metric"] == "intraday_hit_ratio"), "{body}");
    assert_eq!(send(&app, get("/api/v1/alerts?state=nope")).await.0, StatusCode::BAD_REQUEST);
    let (_, _, body) = send(&app, get("/api/v1/metrics/intraday_hit_ratio")).await;
    let series = json(&body);
    assert_eq!(series["points"][0]["samples"], 402, "the 400 lines and the 2 of the array");
    assert_eq!(series["markers"].as_array().unwrap().len(), 2);
    assert_eq!(
        {
            let edge = |k: &str| {
                series["heightened_window"][k].as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_second()
            };
            edge("to") - edge("from")
        },
        48 * 3600
    );
    assert_eq!(send(&app, get("/api/v1/metrics/nope")).await.0, StatusCode::NOT_FOUND);
    let (status, kind, metrics) = send(&app, get("/metrics")).await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "text/plain; version=0.0.4"));
    assert!(metrics.contains("shipshape_events_accepted_total 402"), "{metrics}");

    // Read-only views.
    let (status, _, manifest) = send(&app, get(&format!("/releases/{}/manifest", app.a))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(manifest.contains(&format!("release_id: {}", app.a)));
    assert_eq!(send(&app, get(&format!("/releases/{}/bundle", app.b))).await.0, StatusCode::OK);
    assert_eq!(send(&app, get("/releases/..%2Fx/manifest")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(send(&app, get("/nope")).await.0, StatusCode::NOT_FOUND);

    // The event stream answers with its hello event.
    let response = app.router.clone().oneshot(get("/api/v1/alerts/stream")).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body().into_data_stream();
    let first = futures_util::StreamExt::next(&mut body).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: hello"), "{first:?}");

    // Rollback: wrong typed id refused; then done.
    let headers = [("authorization", auth.as_str()), ("x-csrf-token", app.csrf.as_str())];
    let wrong = serde_json::json!({ "release_id": app.b }).to_string();
    let (status, _, body) = send(&app, post("/api/v1/rollback", &headers, &wrong)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(json(&body)["expected"], app.a.as_str());
    assert_eq!(send(&app, post("/api/v1/rollback", &headers, "not json")).await.0, StatusCode::BAD_REQUEST);
    let right = serde_json::json!({ "release_id": app.a, "note": "routes test" }).to_string();
    let (status, _, body) = send(&app, post("/api/v1/rollback", &headers, &right)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["rolled_back_to"], app.a.as_str());
    // From A, B (rolled back) is the only candidate, and no release is last known good: typing A
    // again is refused, naming B.
    let (status, _, body) = send(&app, post("/api/v1/rollback", &headers, &right)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(json(&body)["expected"], app.b.as_str());
    assert_eq!(json(&body)["candidates"][0]["status"], "rolled_back");
}
