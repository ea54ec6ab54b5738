//! The dashboard end to end in a real headless Chromium (Debian's `chromium` and `chromedriver`,
//! driven over the W3C WebDriver protocol): the active release panel with its heightened countdown,
//! an alert ingested through the API appearing live within 2 seconds, the rollback dialog refusing a
//! wrong typed id and rolling back on the right one, an HTML payload in a note shown inert, phone
//! width, and the state-changing endpoints refusing requests without token, CSRF token or origin.
//! Also saves a screenshot (`SHIPSHAPE_SCREENSHOT=path` copies it there, e.g. docs/img/dashboard.png).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::http::request;
use crate::util::{Setup, stderr_of, yaml_value};
use serde_json::{Value, json};

const A: &str = "2025-10-13T07:00:00Z";
const B: &str = "2025-10-13T09:00:00Z";
const NOW: &str = "2025-10-13T10:00:00Z";
const TOKEN: &str = "0123456789abcdef0123456789abcdef-browser-test";

pub(crate) struct Driver {
    child: Child,
    address: String,
    session: String,
}

impl Driver {
    pub(crate) fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/test.sh installs it)");
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]
        }}}});
        let (status, body) = request(
            &address,
            "POST",
            "/session",
            &[("Content-Type", "application/json")],
            capabilities.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        let session = serde_json::from_str::<Value>(&body).unwrap()["value"]["sessionId"].as_str().unwrap().to_string();
        Driver { child, address, session }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let payload = if method == "GET" { Vec::new() } else { body.to_string().into_bytes() };
        let (status, text) = request(&self.address, method, &path, &[("Content-Type", "application/json")], &payload);
        assert_eq!(status, 200, "{method} {path}: {text}");
        serde_json::from_str::<Value>(&text).unwrap()["value"].clone()
    }

    pub(crate) fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    pub(crate) fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", json!({ "script": script, "args": [] }))
    }

    fn element(&self, css: &str) -> String {
        let found = self.call("POST", "/element", json!({ "using": "css selector", "value": css }));
        found.as_object().unwrap().values().next().unwrap().as_str().unwrap().to_string()
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/click"), json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/clear"), json!({}));
        self.call("POST", &format!("/element/{id}/value"), json!({ "text": text }));
    }

    pub(crate) fn text(&self, css: &str) -> String {
        self.script(&format!("const e = document.querySelector({css:?}); return e ? e.textContent : null;"))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Wait until `script` returns true; how long it took.
    pub(crate) fn wait(&self, script: &str, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.script(script) == Value::Bool(true) {
                return start.elapsed();
            }
            assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for: {script}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn screenshot(&self) -> Vec<u8> {
        let data = self.call("GET", "/screenshot", Value::Null);
        base64_decode(data.as_str().unwrap())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = request(&self.address, "DELETE", &format!("/session/{}", self.session), &[], b"");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, c)| n | (u32::from(value(*c)) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(s: &Setup) -> Server {
    serve_at(s, "127.0.0.1:0")
}

fn serve_at(s: &Setup, bind: &str) -> Server {
    serve_when(s, bind, NOW)
}

fn serve_when(s: &Setup, bind: &str, now: &str) -> Server {
    let token_file = s.ws.temp.path().join("operator.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let (child, address) = crate::util::spawn_serve(
        s.ws.std_cmd(now).args(["serve", "--bind", bind, "--token-file"]).arg(&token_file).stderr(Stdio::null()),
    );
    Server { child, address }
}

/// Two releases, A deployed then B (B's rollback restores A).
fn two_deployed() -> (Setup, String, String) {
    let s = Setup::new("copy");
    let a = s.release(A);
    assert!(s.deploy(A, &a).status.success());
    let space = std::fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
    s.ws.write("search_space.yaml", format!("{space}# tuned\n").as_bytes());
    let b = s.release(B);
    let output = s.deploy(B, &b);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let id = |m: &std::path::Path| yaml_value(m)["release_id"].as_str().unwrap().to_string();
    (s, id(&a), id(&b))
}

/// `count` events of `strategy` between 09:00 and 10:00 with a share `right` of them right.
fn events(strategy: &str, count: usize, right: f64) -> String {
    (0..count)
        .map(|i| {
            let hit = ((i as f64) * 0.618_033_988_75).fract() < right;
            let (outcome, ret) = if hit { (1, 0.004) } else { (-1, -0.0045) };
            let second = i * 3599 / count;
            format!(
                "{{\"id\":\"{strategy}-{i}\",\"ts\":\"2025-10-13T09:{:02}:{:02}Z\",\"strategy\":\"{strategy}\",\"symbol\":\"S{}\",\"signal\":1,\"outcome\":{outcome},\"return\":{ret}}}\n",
                second / 60,
                second % 60,
                i % 5
            )
        })
        .collect()
}

#[test]
fn dashboard_in_a_real_browser() {
    let (s, a, b) = two_deployed();
    // The first hour after B's deploy: its intraday trades regress; evaluated every 10 minutes.
    let file = s.ws.temp.path().join("intraday.jsonl");
    std::fs::write(&file, events("intraday", 1200, 0.45)).unwrap();
    let output = s.shipshape(NOW, &["ingest", file.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    for minute in (10..=60).step_by(10) {
        let at = format!("2025-10-13T{:02}:{:02}:00Z", 9 + minute / 60, minute % 60);
        assert!(s.shipshape(&at, &["evaluate", "--at", &at, "--no-deliver"]).status.success());
    }
    // A named operator: the token field shows who you are, the history who rolled back.
    let added = s.shipshape(NOW, &["operator", "add", "alice", "--role", "operator"]);
    assert!(added.status.success(), "{}", stderr_of(&added));
    let alice = String::from_utf8(added.stdout).unwrap().trim().to_string();
    let server = serve(&s);
    let url = format!("http://{}/", server.address);
    let driver = Driver::start();
    driver.go(&url);

    // The panel: the deployed release, heightened, a countdown.
    driver
        .wait(&format!("return document.querySelector('#release-id').textContent === {b:?}"), Duration::from_secs(10));
    assert_eq!(driver.text("#mode"), "heightened");
    let countdown = driver.text("#countdown");
    assert!(countdown.starts_with("1d 2") && countdown.contains("left (until 2025-10-15T09:00:00Z)"), "{countdown}");
    assert!(driver.text("#deployed-ago").contains("deployed 1h"), "{}", driver.text("#deployed-ago"));
    assert_eq!(driver.text("#release-type"), "(hotfix)");
    driver.wait("return document.querySelector('#in-sync').textContent.includes('in sync')", Duration::from_secs(10));
    driver.wait(
        "return document.querySelector('#approvals').textContent.includes('risk-manager')",
        Duration::from_secs(10),
    );
    driver.wait("return document.getElementById('live').className === 'on'", Duration::from_secs(10));
    driver.wait("return document.querySelectorAll('#charts svg').length === 3", Duration::from_secs(10));
    driver.wait("return document.querySelectorAll('#history tr').length >= 2", Duration::from_secs(10));
    // Without [fleet] there is no environments panel.
    assert_eq!(driver.script("return document.getElementById('fleet-section').hidden"), Value::Bool(true));

    // The firing intraday alerts are in the feed, and the charts have their evaluations.
    driver.wait(
        "return [...document.querySelectorAll('#alerts li[data-state=firing]')].some(li => li.textContent.includes('intraday_hit_ratio'))",
        Duration::from_secs(5),
    );
    driver.wait("return document.querySelectorAll('#charts circle').length >= 12", Duration::from_secs(5));
    // A new alert through the API (swing precision collapses) appears within 2 seconds, no reload.
    let auth = format!("Bearer {TOKEN}");
    let swing = events("swing", 80, 0.2);
    let (status, text) =
        request(&server.address, "POST", "/api/v1/events", &[("Authorization", &auth)], swing.as_bytes());
    assert_eq!(status, 200, "{text}");
    let (status, text) = request(&server.address, "POST", "/api/v1/evaluate", &[("Authorization", &auth)], b"");
    assert_eq!(status, 200, "{text}");
    let took = driver.wait(
        "return [...document.querySelectorAll('#alerts li[data-alert-id]')].some(li => li.textContent.includes('swing_precision'))",
        Duration::from_secs(2),
    );
    assert!(took <= Duration::from_secs(2), "{took:?}");
    let png = driver.screenshot();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let shot = std::env::temp_dir().join("shipshape-dashboard.png");
    std::fs::write(&shot, &png).unwrap();
    if let Ok(path) = std::env::var("SHIPSHAPE_SCREENSHOT") {
        std::fs::write(path, &png).unwrap();
    }

    // Rollback: the dialog names the release it restores and refuses a wrong typed id.
    driver.type_into("#token-input", "ss1.00000000.not-a-real-token");
    driver.click("#token-save");
    driver
        .wait("return document.querySelector('#token-state').textContent === 'token refused'", Duration::from_secs(10));
    driver.type_into("#token-input", &alice);
    driver.click("#token-save");
    driver.wait(
        "return document.querySelector('#token-state').textContent === 'signed in as alice (operator)'",
        Duration::from_secs(10),
    );
    driver.click("#rollback-open");
    assert_eq!(driver.text("#rollback-target"), a);
    // … and what it changes: the diff summary `shipshape diff` prints, and the artifact changed.
    let summary = driver.text("#rollback-diff");
    assert_eq!(summary, format!("changes: {b} -> {a}: 0 added, 1 changed, 0 removed, 3 unchanged"));
    assert!(driver.text("#rollback-diff-list").contains("changed  search_space.yaml"), "{summary}");
    driver.type_into("#rollback-confirm-input", &b);
    driver.click("#rollback-submit");
    driver.wait(
        "return document.querySelector('#rollback-message').textContent.includes('type the id')",
        Duration::from_secs(10),
    );
    let active = yaml_value(&s.ws.path("data/monitoring/releases/active_release.yaml"));
    assert_eq!(active["release_id"], b.as_str(), "a refused rollback changed nothing");
    // The right id, with a note carrying markup: rolled back, the panel shows A, the note is text.
    driver.type_into("#rollback-confirm-input", &a);
    driver.type_into("#rollback-note", "<img src=x onerror=\"window.pwned=1\">regression");
    driver.click("#rollback-submit");
    driver
        .wait(&format!("return document.querySelector('#release-id').textContent === {a:?}"), Duration::from_secs(20));
    let active = yaml_value(&s.ws.path("data/monitoring/releases/active_release.yaml"));
    assert_eq!(active["release_id"], a.as_str());
    driver
        .wait("return document.querySelector('#history').textContent.includes('<img src=x')", Duration::from_secs(10));
    assert_eq!(driver.script("return document.querySelectorAll('#history img').length"), json!(0));
    assert_eq!(driver.script("return window.pwned === undefined"), json!(true));
    assert!(driver.text("#history").contains("alice via dashboard"), "{}", driver.text("#history"));
    assert_eq!(driver.text("#rollback-open"), "Roll back…");
    // The feed says it too, from the stream's release event: who, and the note as text.
    driver.wait(
        &format!("return [...document.querySelectorAll('#alerts li[data-release-change={a}]')].some(li => li.textContent.includes('rollback by alice via dashboard: <img src=x'))"),
        Duration::from_secs(10),
    );
    assert_eq!(driver.script("return document.querySelectorAll('#alerts img').length"), json!(0));

    // The server restarts: the page's event stream reconnects by itself.
    let address = server.address.clone();
    drop(server);
    driver.wait("return document.getElementById('live').className === 'off'", Duration::from_secs(10));
    let _server = serve_at(&s, &address);
    driver.wait("return document.getElementById('live').className === 'on'", Duration::from_secs(10));
    // After reconnecting the page catches up: B's alerts, closed at the rollback (B is no longer
    // active), show as superseded in the unfiltered feed.
    driver.click("#post-deploy-only");
    driver.wait(
        "return [...document.querySelectorAll('#alerts li[data-alert-id]')].some(li => li.dataset.state === 'superseded')",
        Duration::from_secs(5),
    );

    // Phone width: nothing wider than the screen.
    driver.call("POST", "/window/rect", json!({ "width": 390, "height": 844 }));
    driver.go(&url);
    driver
        .wait(&format!("return document.querySelector('#release-id').textContent === {a:?}"), Duration::from_secs(10));
    assert_eq!(driver.script("return document.documentElement.scrollWidth <= window.innerWidth"), json!(true));
}

/// Named operators end to end: `operator add` prints a token once and stores an argon2id hash;
/// `whoami` names the token's owner; each role may do what it is for and is refused (403, naming
/// the role) beyond it; `operator remove` ends a token at once in the running server; `list` never
/// shows a token or a hash; bad names and roles are refused with nothing written.
#[test]
fn named_operators_have_roles_and_removal_takes_effect_at_once() {
    let (s, a, b) = two_deployed();
    let add = |name: &str, role: &str| {
        let output = s.shipshape(NOW, &["operator", "add", name, "--role", role]);
        assert!(output.status.success(), "{}", stderr_of(&output));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    let (alice, engine, viewer) = (add("alice", "operator"), add("engine-1", "engine"), add("vic", "viewer"));
    let file = std::fs::read_to_string(s.ws.path("release/operators.toml")).unwrap();
    for token in [&alice, &engine, &viewer] {
        assert!(token.starts_with("ss1."), "{token}");
        assert!(!file.contains(token.rsplit('.').next().unwrap()), "a token's secret in the file");
    }
    assert_eq!(file.matches("$argon2id$").count(), 3, "{file}");
    let before = crate::util::snapshot(&s.ws.root);
    for (args, needle) in [
        (vec!["operator", "add", "alice"], "operator `alice` exists"),
        (vec!["operator", "add", "bad name"], "operator name `bad name`"),
        (vec!["operator", "add", "zed", "--role", "root"], "--role `root`: viewer, engine or operator"),
        (vec!["operator", "remove", "nobody"], "no operator `nobody`"),
    ] {
        let output = s.shipshape(NOW, &args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr_of(&output).contains(needle), "{args:?}: {}", stderr_of(&output));
    }
    crate::util::assert_same_tree(&before, &crate::util::snapshot(&s.ws.root), "refused operator commands");
    let list: Value = serde_json::from_slice(&s.shipshape(NOW, &["operator", "list", "--json"]).stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert!(!list.to_string().contains("argon2") && !list.to_string().contains(&alice[8..]), "{list}");

    let server = serve(&s);
    let bearer = |t: &str| format!("Bearer {t}");
    let (status, body) = request(&server.address, "GET", "/api/v1/whoami", &[("Authorization", &bearer(&alice))], b"");
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"name": "alice", "role": "operator"}))
    );
    assert_eq!(request(&server.address, "GET", "/api/v1/whoami", &[("Authorization", "Bearer ss1.x.y")], b"").0, 401);
    let events = events("intraday", 10, 0.6);
    let post = |path: &str, token: &str, body: &[u8]| {
        request(&server.address, "POST", path, &[("Authorization", &bearer(token))], body)
    };
    assert_eq!(post("/api/v1/events", &engine, events.as_bytes()).0, 200);
    let (status, body) = post("/api/v1/events", &viewer, events.as_bytes());
    assert_eq!(status, 403);
    assert!(body.contains("vic is a viewer: this needs the engine role"), "{body}");
    let (status, body) = post("/api/v1/evaluate", &engine, b"");
    assert!(status == 403 && body.contains("needs the operator role"), "{status} {body}");
    assert_eq!(post("/api/v1/evaluate", &alice, b"").0, 200);

    // A rollback by alice is recorded as hers.
    let page = request(&server.address, "GET", "/", &[], b"").1;
    let csrf = page.split("name=\"csrf-token\" content=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let rollback = json!({ "release_id": a, "note": "bad fills" }).to_string();
    let (status, text) = request(
        &server.address,
        "POST",
        "/api/v1/rollback",
        &[("Authorization", &bearer(&alice)), ("X-CSRF-Token", &csrf)],
        rollback.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let history: Value = serde_json::from_slice(&s.shipshape(NOW, &["history", "--json"]).stdout).unwrap();
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["by"].as_str(), last["reason"].as_str()),
        (Some("alice via dashboard"), Some("bad fills")),
        "{last}"
    );
    let _ = b;

    // Removed: refused at once by the running server.
    assert!(s.shipshape(NOW, &["operator", "remove", "alice"]).status.success());
    assert_eq!(request(&server.address, "GET", "/api/v1/whoami", &[("Authorization", &bearer(&alice))], b"").0, 401);
    assert_eq!(post("/api/v1/evaluate", &alice, b"").0, 401);
    assert_eq!(post("/api/v1/events", &engine, events.as_bytes()).0, 200, "the others still work");
}

#[test]
fn state_changing_requests_need_token_csrf_and_same_origin() {
    let (s, a, b) = two_deployed();
    let server = serve(&s);
    let page = request(&server.address, "GET", "/", &[], b"").1;
    let csrf = page.split("name=\"csrf-token\" content=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let auth = format!("Bearer {TOKEN}");
    let body = json!({ "release_id": a }).to_string();
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![("X-CSRF-Token", &csrf)], 401),
        (vec![("Authorization", "Bearer wrong-token-wrong-token-wrong-token"), ("X-CSRF-Token", &csrf)], 401),
        (vec![("Authorization", &auth)], 403),
        (vec![("Authorization", &auth), ("X-CSRF-Token", "forged")], 403),
        (vec![("Authorization", &auth), ("X-CSRF-Token", &csrf), ("Origin", "http://evil.example")], 403),
    ];
    for (headers, expected) in cases {
        let (status, text) = request(&server.address, "POST", "/api/v1/rollback", &headers, body.as_bytes());
        assert_eq!(status, expected, "{headers:?}: {text}");
        let active = yaml_value(&s.ws.path("data/monitoring/releases/active_release.yaml"));
        assert_eq!(active["release_id"], b.as_str(), "{headers:?} changed the active release");
    }
    let events_without_token = request(&server.address, "POST", "/api/v1/events", &[], b"{}");
    assert_eq!(events_without_token.0, 401);
    // Everything right, from the page's own origin: rolled back.
    let origin = format!("http://{}", server.address);
    let (status, text) = request(
        &server.address,
        "POST",
        "/api/v1/rollback",
        &[("Authorization", &auth), ("X-CSRF-Token", &csrf), ("Origin", &origin), ("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["rolled_back_to"], a.as_str());
    let active = yaml_value(&s.ws.path("data/monitoring/releases/active_release.yaml"));
    assert_eq!(active["release_id"], a.as_str());
    // Read-only views: only manifests by release id, escaped.
    assert_eq!(request(&server.address, "GET", "/releases/..%2F..%2Fetc%2Fpasswd/manifest", &[], b"").0, 404);
    assert_eq!(request(&server.address, "GET", "/releases/release_20990101_000000/manifest", &[], b"").0, 404);
    let (status, manifest) = request(&server.address, "GET", &format!("/releases/{a}/manifest"), &[], b"");
    assert_eq!(status, 200);
    assert!(manifest.contains(&format!("release_id: {a}")), "{manifest}");
    let (status, bundle) = request(&server.address, "GET", &format!("/releases/{a}/bundle"), &[], b"");
    assert_eq!(status, 200);
    assert!(bundle.contains("bundle.yaml"));
    assert_eq!(request(&server.address, "GET", "/healthz", &[], b""), (200, "ok\n".into()));
}

/// With `[fleet]`: the environments panel shows each environment's desired release and each host —
/// in sync and healthy, or behind and stale — and follows a promotion without a reload.
#[test]
fn fleet_panel_in_a_real_browser() {
    use crate::fleet::{Host, agent_once, at, fleet_toml, json, release_id};
    let temp = tempfile::tempdir().unwrap();
    let store = format!("file://{}", temp.path().join("store").display());
    let registry = format!("sqlite:{}", temp.path().join("fleet.db").display());
    let s = Setup::new("copy");
    let config = std::fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    std::fs::write(s.ws.path("shipshape.toml"), format!("{config}{}", fleet_toml(&store, &registry))).unwrap();
    let (one, two) = (Host::new(&s, "stage-1"), Host::new(&s, "stage-2"));
    let a = release_id(&s.release(&at(0.0)));
    json(&s.shipshape(&at(0.0), &["publish", &a, "--json"]));
    json(&s.shipshape(&at(0.0), &["promote", &a, "--to", "staging", "--yes", "--note", "first <b>cut</b>", "--json"]));
    // stage-2 reported an hour before: it runs A but is stale by the time the dashboard looks.
    assert_eq!(agent_once(&two, "staging", "stage-2", &at(0.0))["outcome"], "applied");
    assert_eq!(agent_once(&one, "staging", "stage-1", &at(1.0))["outcome"], "applied");

    let server = serve_when(&s, "127.0.0.1:0", &at(1.01));
    let driver = Driver::start();
    driver.go(&format!("http://{}/", server.address));
    driver.wait("return !document.getElementById('fleet-section').hidden", Duration::from_secs(10));
    driver.wait(
        "return document.querySelectorAll('[data-environment=\"staging\"] tr[data-host]').length === 2",
        Duration::from_secs(10),
    );
    let head = driver.text("[data-environment=staging] h3");
    assert!(head.contains(&format!("desired {a} · generation 1 · promote by ")), "{head}");
    assert!(head.contains("first <b>cut</b>"), "the note is shown as text: {head}");
    assert_eq!(driver.script("return document.querySelectorAll('#fleet b').length"), json!(0));
    let row = |host: &str| driver.text(&format!("[data-environment=staging] tr[data-host={host}]"));
    assert!(
        row("stage-1").contains(&a) && row("stage-1").contains("in sync") && row("stage-1").contains("healthy"),
        "{}",
        row("stage-1")
    );
    assert!(row("stage-2").contains("STALE"), "{}", row("stage-2"));
    assert_eq!(driver.script("return document.querySelector('tr[data-host=stage-1]').dataset.well"), json!("true"));
    assert_eq!(driver.script("return document.querySelector('tr[data-host=stage-2]').dataset.well"), json!("false"));
    assert!(driver.text("[data-environment=production] h3").contains("no release yet"));
    assert!(driver.text("[data-environment=production]").contains("promoted from staging after 2h 0m of soak"));

    // A second release promoted to staging: the panel shows stage-1 behind within its refresh.
    let space = std::fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
    s.ws.write("search_space.yaml", format!("{space}# tuned\n").as_bytes());
    let b = release_id(&s.release(&at(1.0)));
    json(&s.shipshape(&at(1.0), &["publish", &b, "--json"]));
    json(&s.shipshape(&at(1.0), &["promote", &b, "--to", "staging", "--yes", "--json"]));
    driver.wait(
        &format!(
            "return document.querySelector('[data-environment=staging] h3').textContent.includes({:?})",
            format!("desired {b} · generation 2")
        ),
        Duration::from_secs(15),
    );
    assert!(row("stage-1").contains("behind"), "{}", row("stage-1"));
    if let Ok(path) = std::env::var("SHIPSHAPE_SCREENSHOT_FLEET") {
        driver.script("document.getElementById('fleet-section').scrollIntoView()");
        std::fs::write(path, driver.screenshot()).unwrap();
    }
    let (code, body) = request(&server.address, "GET", "/api/v1/fleet", &[], b"");
    assert_eq!(code, 200, "{body}");
    let fleet: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(fleet["up"], true);
    assert_eq!(fleet["environments"][0]["desired"]["release_id"], b.as_str());
    assert_eq!(fleet["environments"][0]["hosts"][0]["in_sync"], false);
    assert_eq!(fleet["environments"][0]["history"][0]["kind"], "promote");
}

#[test]
fn the_dashboard_asks_for_a_token_when_reads_need_one() {
    let (s, _a, b) = two_deployed();
    let added = s.shipshape(NOW, &["operator", "add", "vera", "--role", "viewer"]);
    assert!(added.status.success(), "{}", stderr_of(&added));
    let vera = String::from_utf8(added.stdout).unwrap().trim().to_string();
    let token_file = s.ws.temp.path().join("operator.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let (child, address) = crate::util::spawn_serve(
        s.ws.std_cmd(NOW)
            .args(["serve", "--bind", "127.0.0.1:0", "--read-auth", "token", "--token-file"])
            .arg(&token_file)
            .stderr(Stdio::null()),
    );
    let server = Server { address, child };
    let driver = Driver::start();
    driver.go(&format!("http://{}/", server.address));
    driver.wait(
        "return document.querySelector('#token-state').textContent.includes('needs a token to show anything')",
        Duration::from_secs(10),
    );
    assert_ne!(driver.text("#release-id"), b, "nothing is shown without a token");
    driver.type_into("#token-input", &vera);
    driver.click("#token-save");
    // The page reloads with the token: the release, and the live stream (its token in the query).
    driver
        .wait(&format!("return document.querySelector('#release-id').textContent === {b:?}"), Duration::from_secs(15));
    driver.wait("return document.getElementById('live').className === 'on'", Duration::from_secs(10));
    driver.wait(
        "return document.querySelector('#token-state').textContent === 'signed in as vera (viewer)'",
        Duration::from_secs(10),
    );
}
