//! Canary releases: a simulated engine reads the allocation file and trades both releases at their
//! fractions, an hour at a time; `shipshape canary evaluate` judges after each hour.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{Setup, files_of, sha256sum, stderr_of, yaml_value};

const DEPLOY: &str = "2025-10-13T08:00:00Z";

/// `hours` after 09:00 on the day of the deploy.
fn at(hours: f64) -> String {
    let seconds = (hours * 3600.0).round() as i64;
    let t = jiff::Timestamp::from_second(1_760_346_000 + seconds).unwrap(); // 2025-10-13T09:00:00Z
    t.to_string()
}

struct Canary {
    s: Setup,
    a: String,
    b: String,
    b_manifest: PathBuf,
}

fn release_id(manifest: &Path) -> String {
    yaml_value(manifest)["release_id"].as_str().unwrap().to_string()
}

/// A deployed (stable) and B approved beside it.
fn setup() -> Canary {
    setup_after(false)
}

/// The same, with an earlier release Z deployed before A when `earlier` (so A can be rolled back).
fn setup_after(earlier: bool) -> Canary {
    let s = Setup::new("copy");
    if earlier {
        let z = s.release("2025-10-13T07:00:00Z");
        assert!(s.deploy("2025-10-13T07:00:00Z", &z).status.success());
        let space = std::fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
        s.ws.write("search_space.yaml", format!("{space}# earlier\n").as_bytes());
    }
    let a_manifest = s.release(DEPLOY);
    let output = s.deploy(DEPLOY, &a_manifest);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let space = std::fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
    s.ws.write("search_space.yaml", format!("{space}# tuned\n").as_bytes());
    let b_manifest = s.release("2025-10-13T08:30:00Z");
    Canary { a: release_id(&a_manifest), b: release_id(&b_manifest), b_manifest, s }
}

impl Canary {
    fn allocation_path(&self) -> PathBuf {
        self.s.target.with_file_name("prod.allocation.yaml")
    }

    fn allocation(&self) -> Value {
        yaml_value(&self.allocation_path())
    }

    fn run(&self, now: &str, args: &[&str]) -> (i32, Value) {
        let mut full = vec!["canary"];
        full.extend_from_slice(args);
        full.push("--json");
        let output = self.s.shipshape(now, &full);
        let code = output.status.code().unwrap_or(-1);
        let value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        assert!(code == 0 || code == 4, "canary {args:?}: {}", stderr_of(&output));
        (code, value)
    }

    /// The simulated engine: reads the allocation, trades `rate` trades an hour split by its
    /// fractions, each release right with its own probability in `quality` (release id → hit
    /// share), during `[from, from + 1h)`; ingests them.
    fn trade_hour(&self, hour: f64, rate: usize, quality: &BTreeMap<String, f64>, seed: u64) {
        let allocation = self.allocation();
        let shares: Vec<(String, f64)> = allocation["releases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["release_id"].as_str().unwrap().to_string(), s["fraction"].as_f64().unwrap()))
            .collect();
        ingest_hour(&self.s, &shares, hour, rate, quality, seed, at);
    }

    fn tree_of(&self, release: &str) -> PathBuf {
        self.s.target.with_file_name("prod.canary").join(release)
    }
}

/// The simulated engine's hour: `rate` trades split by the `shares` (release, fraction), each
/// release right with its probability in `quality` (none: it does not trade), timed from
/// `clock(hour)`; ingested into `s`'s monitor.
fn ingest_hour(
    s: &Setup,
    shares: &[(String, f64)],
    hour: f64,
    rate: usize,
    quality: &BTreeMap<String, f64>,
    seed: u64,
    clock: fn(f64) -> String,
) {
    let mut lines = String::new();
    for (release, fraction) in shares {
        let release = release.as_str();
        let trades = (rate as f64 * fraction).round() as usize;
        let Some(&right) = quality.get(release) else { continue };
        // A seeded generator (xorshift64*): outcomes as random as a market's, and repeatable.
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (release.len() as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
            ^ 0x2545_F491_4F6C_DD1D;
        for c in release.bytes() {
            state = (state ^ u64::from(c)).wrapping_mul(0x100_0000_01B3);
        }
        for k in 0..trades {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let u = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
            let hit = u < right;
            let strategy = if k % 4 == 3 { "swing" } else { "intraday" };
            let (outcome, ret) =
                if hit { (1, 0.004 + 0.001 * ((k % 5) as f64)) } else { (-1, -0.004 - 0.001 * ((k % 3) as f64)) };
            let second = (k * 3599 / trades.max(1)) as f64;
            let ts = clock(hour + second / 3600.0);
            lines.push_str(&format!(
                "{{\"id\":\"h{seed}-{release}-{k}\",\"ts\":\"{ts}\",\"strategy\":\"{strategy}\",\"symbol\":\"S{}\",\"signal\":1,\"outcome\":{outcome},\"return\":{ret},\"release_id\":\"{release}\"}}\n",
                k % 7
            ));
        }
    }
    if lines.is_empty() {
        return;
    }
    let file = s.ws.temp.path().join(format!("hour-{seed}.jsonl"));
    std::fs::write(&file, lines).unwrap();
    let output = s.shipshape(&clock(hour + 1.0), &["ingest", file.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr_of(&output));
}

fn quality(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn a_better_candidate_is_promoted_through_every_step_and_becomes_stable() {
    let c = setup();
    let (_, started) =
        c.run(&at(0.0), &["start", &c.b, "--steps", "10,50,100", "--step-after", "3h", "--min-trades", "100", "--yes"]);
    assert_eq!(started["outcome"], "started");
    // The candidate's tree, complete and verified, beside the untouched stable target.
    for (path, hash) in files_of(&c.b_manifest) {
        assert_eq!(sha256sum(&c.tree_of(&c.b).join(&path)), hash, "{path}");
    }
    let allocation = c.allocation();
    assert_eq!(allocation["generation"], 1);
    let shares: Vec<(String, f64)> = allocation["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["release_id"].as_str().unwrap().to_string(), s["fraction"].as_f64().unwrap()))
        .collect();
    assert_eq!(shares, vec![(c.a.clone(), 0.9), (c.b.clone(), 0.1)]);
    let mut steps = Vec::new();
    let mut promoted_at = None;
    for hour in 0..80 {
        c.trade_hour(f64::from(hour), 3000, &quality(&[(&c.a, 0.55), (&c.b, 0.64)]), hour as u64);
        let (code, result) = c.run(&at(f64::from(hour) + 1.0), &["evaluate"]);
        assert_eq!(code, 0, "{result}");
        match result["outcome"].as_str().unwrap() {
            "stepped" => steps.push((hour, result["to"].as_u64().unwrap())),
            "promoted" => {
                promoted_at = Some(hour);
                break;
            }
            "hold" => {}
            other => panic!("hour {hour}: {other}: {result}"),
        }
    }
    eprintln!("steps {steps:?} promoted at {promoted_at:?}");
    let promoted_at = promoted_at.unwrap_or_else(|| panic!("never promoted; steps {steps:?}"));
    assert_eq!(steps.iter().map(|s| s.1).collect::<Vec<_>>(), vec![50], "{steps:?}");
    assert!(steps[0].0 >= 2, "a step lasts at least --step-after: {steps:?}");
    assert!(promoted_at >= steps[0].0 + 3);
    // B is the stable release now: deployed to the target, the allocation names it alone.
    let status: Value = serde_json::from_slice(&c.s.shipshape(&at(90.0), &["status", "--json"]).stdout).unwrap();
    assert_eq!(status["active_release"]["release_id"], c.b.as_str());
    let allocation = c.allocation();
    assert_eq!(allocation["releases"].as_array().unwrap().len(), 1);
    assert_eq!(allocation["releases"][0]["release_id"], c.b.as_str());
    assert_eq!(allocation["releases"][0]["tree"], c.s.target.canonicalize().unwrap().to_str().unwrap());
    assert!(!c.tree_of(&c.b).exists(), "the candidate's tree is removed once promoted");
    let (_, log) = c.run(&at(90.0), &["log"]);
    let actions: Vec<&str> = log.as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["start", "step", "promote"]);
    let history = String::from_utf8(c.s.shipshape(&at(90.0), &["history"]).stdout).unwrap();
    assert!(history.contains("shipshape-canary (canary)"), "{history}");
}

#[test]
fn a_worse_candidate_is_aborted_and_the_stable_release_is_untouched() {
    let c = setup();
    let before = crate::util::snapshot(&c.s.target);
    c.run(&at(0.0), &["start", &c.b, "--steps", "10,50,100", "--step-after", "3h", "--yes"]);
    let mut aborted = None;
    for hour in 0..24 {
        c.trade_hour(f64::from(hour), 3000, &quality(&[(&c.a, 0.56), (&c.b, 0.44)]), hour as u64);
        let (code, result) = c.run(&at(f64::from(hour) + 1.0), &["evaluate"]);
        if result["outcome"] == "aborted" {
            assert_eq!(code, 4);
            assert!(result["reason"].as_str().unwrap().contains("candidate − stable"), "{result}");
            aborted = Some(hour);
            break;
        }
        assert_eq!(result["outcome"], "hold", "{result}");
    }
    let hour = aborted.expect("a candidate 12 points worse is aborted within a day");
    // Within the time `calibrate` predicts for this rate and fraction (the intraday hit ratio:
    // three of every four trades).
    let output = c.s.shipshape(
        &at(0.0),
        &[
            "calibrate",
            "--canary",
            "0.1",
            "--trade-rate",
            "2250",
            "--baseline",
            "0.56",
            "--gaps",
            "0.12",
            "--trials",
            "40",
            "--json",
        ],
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
    let predicted: Value = serde_json::from_slice(&output.stdout).unwrap();
    let p90 = predicted["predictions"][0]["abort_hours_p90"].as_f64().unwrap();
    assert_eq!(predicted["predictions"][0]["aborted"], 1.0);
    assert!(f64::from(hour + 1) <= p90 + 1.0, "aborted after {} h; calibrate: 90 % within {p90} h", hour + 1);
    assert!(predicted["predictions"][1]["aborted"].as_f64().unwrap() <= 0.1, "an equal candidate: {predicted}");
    let allocation = c.allocation();
    assert_eq!(allocation["releases"].as_array().unwrap().len(), 1);
    assert_eq!(allocation["releases"][0]["release_id"], c.a.as_str());
    assert_eq!(allocation["releases"][0]["fraction"], 1.0);
    assert!(!c.tree_of(&c.b).exists());
    crate::util::assert_same_tree(&before, &crate::util::snapshot(&c.s.target), "the stable target");
    let (_, status) = c.run(&at(30.0), &["status"]);
    assert!(status["canary"].is_null());
}

#[test]
fn no_candidate_events_never_promote_and_a_regime_change_moving_both_does_not_abort() {
    let c = setup();
    c.run(&at(0.0), &["start", &c.b, "--steps", "10,50,100", "--step-after", "1h", "--min-trades", "10", "--yes"]);
    // The engine trades only the stable release (it never loaded the candidate): silence is no pass.
    for hour in 0..6 {
        c.trade_hour(f64::from(hour), 2000, &quality(&[(&c.a, 0.56)]), hour as u64);
        let (_, result) = c.run(&at(f64::from(hour) + 1.0), &["evaluate"]);
        assert_eq!(result["outcome"], "hold", "hour {hour}: {result}");
        assert!(result["reason"].as_str().unwrap().contains("0 of 10 candidate trades"), "{result}");
    }
    // Now both trade; halfway, the market turns and both lose 10 % of their hit ratio.
    for hour in 6..30 {
        let level = if hour < 18 { 0.56 } else { 0.56 * 0.9 };
        c.trade_hour(f64::from(hour), 3000, &quality(&[(&c.a, level), (&c.b, level)]), hour as u64);
        let (code, result) = c.run(&at(f64::from(hour) + 1.0), &["evaluate"]);
        assert_eq!(code, 0, "hour {hour}: a regime change is not the candidate's fault: {result}");
        assert_ne!(result["outcome"], "aborted");
    }
    let (_, status) = c.run(&at(30.0), &["status"]);
    assert!(!status["canary"].is_null(), "still under way: {status}");
    // The before/after watch of the stable release, on the same events, does see a regression:
    // the market's turn reads as one there, and not in the canary's comparison.
    let output = c.s.shipshape(&at(30.0), &["evaluate", "--at", &at(30.0), "--no-deliver", "--json"]);
    let pass: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", stderr_of(&output)));
    let pass = &pass["pass"];
    assert_eq!(pass["release_id"], c.a.as_str());
    let hit = pass["metrics"].as_array().unwrap().iter().find(|m| m["metric"] == "intraday_hit_ratio").unwrap();
    assert_eq!(hit["verdict"]["verdict"], "breach", "the watch sees the regime change as a regression: {hit}");
    assert_eq!(hit["state"]["state"], "pending", "{hit}");
}

#[test]
fn a_rollback_during_a_canary_aborts_it_first_and_manual_overrides_are_recorded() {
    let c = setup_after(true);
    c.run(&at(0.0), &["start", &c.b, "--yes"]);
    // A manual step up, with who and why.
    let (_, stepped) = c.run(&at(0.5), &["promote", "--note", "desk lead's call"]);
    assert_eq!((stepped["outcome"].as_str(), stepped["to"].as_u64()), (Some("stepped"), Some(25)));
    assert_eq!(c.allocation()["generation"], 2);
    // Bad input and a deploy during the canary change nothing.
    let output = c.s.shipshape(&at(0.6), &["canary", "start", &c.b, "--yes"]);
    assert_eq!(output.status.code(), Some(2));
    crate::util::assert_one_line_error(&output, "under way");
    let output = c.s.shipshape(&at(0.6), &["canary", "start", &c.b, "--steps", "10,5,100", "--yes"]);
    assert_eq!(output.status.code(), Some(2));
    let output = c.s.deploy(&at(0.6), &c.b_manifest);
    assert_eq!(output.status.code(), Some(2));
    crate::util::assert_one_line_error(&output, "canary");
    assert_eq!(c.allocation()["generation"], 2);
    // The rollback of the target: the canary is aborted first, then the allocation names the
    // release the target holds after the rollback.
    let output = c.s.shipshape(&at(1.0), &["rollback", "--yes"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains(&format!("canary of {} aborted first", c.b)), "{}", stderr_of(&output));
    let status: Value = serde_json::from_slice(&c.s.shipshape(&at(1.0), &["status", "--json"]).stdout).unwrap();
    let now_active = status["active_release"]["release_id"].as_str().unwrap().to_string();
    assert_ne!(now_active, c.a);
    let allocation = c.allocation();
    assert_eq!(allocation["generation"], 4, "abort (3), then the rollback's release (4)");
    assert_eq!(allocation["releases"].as_array().unwrap().len(), 1);
    assert_eq!(allocation["releases"][0]["release_id"], now_active.as_str());
    assert!(!c.tree_of(&c.b).exists());
    let (_, log) = c.run(&at(2.0), &["log"]);
    let records = log.as_array().unwrap();
    let actions: Vec<&str> = records.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["start", "step", "abort"]);
    assert_eq!(records[1]["reason"], "desk lead's call");
    assert_eq!(records[2]["reason"], "the target is being rolled back");
    let output = c.s.shipshape(&at(2.0), &["canary", "abort"]);
    assert_eq!(output.status.code(), Some(2), "nothing to abort");
}

/// A crash at every point of an allocation change (building the tree, before and after the
/// allocation is replaced) leaves an allocation the engine can read: the old generation or the new
/// one, whose trees are complete.
#[test]
fn a_crash_at_every_step_of_an_allocation_change_leaves_a_consistent_allocation() {
    for point in ["canary-materialise-file", "canary-before-allocation", "canary-after-allocation"] {
        let c = setup();
        let output =
            c.s.ws
                .cmd_at(&at(0.0))
                .args(["canary", "start", &c.b, "--yes"])
                .env("SHIPSHAPE_FAILPOINT", point)
                .output()
                .unwrap();
        assert!(!output.status.success(), "{point}: the failpoint must abort");
        let path = c.allocation_path();
        if path.exists() {
            let allocation = c.allocation();
            let mut sum = 0.0;
            for share in allocation["releases"].as_array().unwrap() {
                sum += share["fraction"].as_f64().unwrap();
                let tree = PathBuf::from(share["tree"].as_str().unwrap());
                let release = share["release_id"].as_str().unwrap();
                if release == c.b {
                    for (file, hash) in files_of(&c.b_manifest) {
                        assert_eq!(sha256sum(&tree.join(&file)), hash, "{point}: {file}");
                    }
                }
            }
            assert!((sum - 1.0).abs() < 1e-9, "{point}: {allocation}");
        }
        // A canary recorded but its allocation not written: the next evaluation repairs it.
        if point != "canary-materialise-file" {
            // (After the allocation was written there is nothing to repair: the state came first.)
            let expected = if point == "canary-before-allocation" { "repaired" } else { "hold" };
            let (_, repaired) = c.run(&at(0.05), &["evaluate"]);
            assert_eq!(repaired["outcome"], expected, "{point}: {repaired}");
            let allocation = c.allocation();
            assert_eq!(allocation["releases"][1]["release_id"], c.b.as_str(), "{point}");
            assert_eq!(allocation["releases"][1]["fraction"], 0.1, "{point}");
            for (file, hash) in files_of(&c.b_manifest) {
                assert_eq!(sha256sum(&c.tree_of(&c.b).join(&file)), hash, "{point}: {file}");
            }
            let (_, held) = c.run(&at(0.06), &["evaluate"]);
            assert_eq!(held["outcome"], "hold", "{point}: repaired once: {held}");
        }
        // Whatever the crash left, abort (or a new start after it) finishes in a consistent state.
        let output = c.s.shipshape(&at(0.1), &["canary", "abort", "--json"]);
        let code = output.status.code();
        assert!(code == Some(0) || code == Some(2), "{point}: {}", stderr_of(&output));
        let (_, started) = c.run(&at(0.2), &["start", &c.b, "--yes"]);
        assert_eq!(started["outcome"], "started", "{point}");
        for (file, hash) in files_of(&c.b_manifest) {
            assert_eq!(sha256sum(&c.tree_of(&c.b).join(&file)), hash, "{point}: rebuilt {file}");
        }
    }
}

/// `serve` judges a canary on its evaluation timer: a harmful candidate is aborted with nobody
/// running a command.
#[test]
fn serve_aborts_a_harmful_canary_by_itself() {
    let c = setup();
    c.run(&at(0.0), &["start", &c.b, "--steps", "10,50,100", "--step-after", "3h", "--yes"]);
    for hour in 0..6 {
        c.trade_hour(f64::from(hour), 3000, &quality(&[(&c.a, 0.56), (&c.b, 0.40)]), hour as u64);
    }
    let server =
        c.s.ws
            .std_cmd(&at(6.0))
            .args(["serve", "--bind", "127.0.0.1:0", "--eval-interval", "1s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while c.allocation()["releases"].as_array().unwrap().len() != 1 {
        assert!(std::time::Instant::now() < deadline, "serve did not abort the canary");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = std::process::Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let output = server.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("canary decision") && log.contains("aborted"), "{log}");
    assert_eq!(c.allocation()["releases"][0]["release_id"], c.a.as_str());
    let (_, log) = c.run(&at(7.0), &["log"]);
    assert_eq!(log.as_array().unwrap().last().unwrap()["by"], "shipshape-canary");
}

#[test]
fn canary_settings_come_from_the_config_and_bad_ones_are_refused_naming_the_file() {
    let c = setup();
    let config = std::fs::read_to_string(c.s.ws.path("shipshape.toml")).unwrap();
    std::fs::write(
        c.s.ws.path("shipshape.toml"),
        format!(
            "{config}\n[canary]\nsteps = [5, 100]\nstep_after = \"90m\"\nmin_trades = 7\nharm_margin_ratio = 0.05\n"
        ),
    )
    .unwrap();
    let (_, started) = c.run(&at(0.0), &["start", &c.b, "--yes"]);
    assert_eq!(started["fraction"], 0.05);
    let (_, status) = c.run(&at(0.5), &["status"]);
    assert_eq!(status["canary"]["step_after_seconds"], 5400);
    assert_eq!(status["canary"]["min_trades"], 7);
    c.run(&at(0.6), &["abort"]);
    for (bad, says) in [("steps = [10, 5, 100]", "canary.steps: steps must increase"), ("margin = 0.1", "margin")] {
        std::fs::write(c.s.ws.path("shipshape.toml"), format!("{config}\n[canary]\n{bad}\n")).unwrap();
        let before = crate::util::snapshot(&c.s.ws.root);
        let output = c.s.shipshape(&at(1.0), &["canary", "start", &c.b, "--yes"]);
        assert_eq!(output.status.code(), Some(2), "{bad}");
        crate::util::assert_one_line_error(&output, "shipshape.toml");
        assert!(stderr_of(&output).contains(says), "{bad}: {}", stderr_of(&output));
        crate::util::assert_same_tree(&before, &crate::util::snapshot(&c.s.ws.root), "the workspace");
    }
}

/// The dashboard's canary panel (both releases, fractions, each metric's comparison and the next
/// decision) and the feed's live canary decisions, in a real browser.
#[test]
fn the_dashboard_shows_the_canary_and_its_decisions_live() {
    use crate::dashboard::Driver;
    use std::time::Duration;
    let c = setup();
    c.run(&at(0.0), &["start", &c.b, "--steps", "10,50,100", "--step-after", "3h", "--yes"]);
    for hour in 0..5 {
        c.trade_hour(f64::from(hour), 3000, &quality(&[(&c.a, 0.56), (&c.b, 0.55)]), hour as u64);
    }
    let (mut child, address) = crate::util::spawn_serve(
        c.s.ws
            .std_cmd(&at(5.0))
            .args(["serve", "--bind", "127.0.0.1:0", "--eval-interval", "1h"])
            .stderr(std::process::Stdio::null()),
    );
    let driver = Driver::start();
    driver.go(&format!("http://{address}/"));
    driver.wait("return !document.getElementById('canary-section').hidden", Duration::from_secs(10));
    let head = driver.text("#canary-head");
    assert!(head.contains(&c.b) && head.contains(&c.a) && head.contains("10 → 50 → 100"), "{head}");
    assert!(
        driver.text("#canary-fractions").contains("trades 10 % of capital"),
        "{}",
        driver.text("#canary-fractions")
    );
    driver.wait(
        "return document.querySelectorAll('#canary-metrics tr[data-metric]').length === 3",
        Duration::from_secs(10),
    );
    let row = driver.text("#canary-metrics tr[data-metric=intraday_hit_ratio]");
    assert!(row.contains('[') && row.ends_with('5'), "the difference with its interval and the blocks: {row}");
    assert!(driver.text("#canary-next").starts_with("next: hold"), "{}", driver.text("#canary-next"));
    // An abort by hand appears in the feed at once (once the live stream is connected), its note
    // as text, and the panel goes.
    driver.wait("return document.getElementById('live').className === 'on'", Duration::from_secs(10));
    let output = c.s.shipshape(&at(5.0), &["canary", "abort", "--note", "drill <b>now</b>"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    driver.wait(
        "return [...document.querySelectorAll('#alerts li[data-canary=abort]')].some(li => li.textContent.includes('drill <b>now</b>'))",
        Duration::from_secs(10),
    );
    assert_eq!(driver.script("return document.querySelectorAll('#alerts b').length"), serde_json::json!(0));
    driver.wait("return document.getElementById('canary-section').hidden", Duration::from_secs(15));
    let _ = child.kill();
    let _ = child.wait();
}

/// An equal candidate is promoted — but only once the step has lasted its session and the
/// candidate has made its minimum trades, and the evidence shows it no worse.
#[test]
fn an_equal_candidate_is_promoted_only_after_the_minimum_trades_and_session() {
    let c = setup();
    c.run(&at(0.0), &["start", &c.b, "--steps", "50,100", "--step-after", "6h", "--min-trades", "20000", "--yes"]);
    let mut promoted = None;
    for hour in 0..40 {
        c.trade_hour(f64::from(hour), 6000, &quality(&[(&c.a, 0.56), (&c.b, 0.56)]), 1000 + hour as u64);
        let (code, result) = c.run(&at(f64::from(hour) + 1.0), &["evaluate"]);
        assert_eq!(code, 0, "an equal candidate is never aborted: {result}");
        if result["outcome"] == "promoted" {
            promoted = Some(hour + 1);
            break;
        }
        assert_eq!(result["outcome"], "hold", "{result}");
        if hour + 1 < 7 {
            // 3,000 candidate trades an hour: 20,000 take seven hours, longer than the session.
            assert!(result["reason"].as_str().unwrap().contains("candidate trades"), "{result}");
        }
    }
    let hours = promoted.expect("an equal candidate is promoted within 40 hours at this rate");
    assert!(hours >= 7, "promoted after {hours} h, before its minimum trades");
}

/// With the fleet the canary is a property of the environment in the registry: every host's agent
/// fetches the candidate, verifies it against its own trust root, builds its tree beside the
/// target and writes its allocation, and reports the canary generation it runs; a step up and the
/// promotion (a pointer move) and an abort reach every host the same way. Against embedded SQLite
/// and, when the test script started one, PostgreSQL.
#[test]
fn a_fleet_canary_reaches_every_host_and_is_promoted_or_aborted_by_pointer_moves() {
    use crate::fleet::{Host, agent_once, at as fat, fleet_toml, json, registries};
    let temp = tempfile::tempdir().unwrap();
    for registry in registries(temp.path()) {
        let store = format!("file://{}", temp.path().join(format!("store-{}", registry.len())).display());
        let s = Setup::new("copy");
        let config = std::fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
        std::fs::write(s.ws.path("shipshape.toml"), format!("{config}{}", fleet_toml(&store, &registry))).unwrap();
        let hosts = [Host::new(&s, "stage-1"), Host::new(&s, "stage-2")];
        let names = ["stage-1", "stage-2"];
        let a_manifest = s.release(&fat(0.0));
        let a = release_id(&a_manifest);
        json(&s.shipshape(&fat(0.0), &["publish", &a, "--json"]));
        json(&s.shipshape(&fat(0.0), &["promote", &a, "--to", "staging", "--yes", "--json"]));
        for (host, name) in hosts.iter().zip(names) {
            assert_eq!(agent_once(host, "staging", name, &fat(0.1))["outcome"], "applied", "{registry}");
        }
        let space = std::fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
        s.ws.write("search_space.yaml", format!("{space}# tuned\n").as_bytes());
        let b_manifest = s.release(&fat(1.0));
        let b = release_id(&b_manifest);
        json(&s.shipshape(&fat(1.0), &["publish", &b, "--json"]));
        let started = json(&s.shipshape(
            &fat(1.0),
            &["canary", "start", &b, "--env", "staging", "--steps", "10,50,100", "--yes", "--json"],
        ));
        assert_eq!(started["generation"], 1, "{registry}");
        let allocation_of = |host: &Host| {
            yaml_value(
                &host
                    .target
                    .with_file_name(format!("{}.allocation.yaml", host.target.file_name().unwrap().to_string_lossy())),
            )
        };
        for (host, name) in hosts.iter().zip(names) {
            let pass = agent_once(host, "staging", name, &fat(1.1));
            assert!(pass["message"].as_str().unwrap().contains(&format!("canary {b} at 10 %")), "{registry}: {pass}");
            let allocation = allocation_of(host);
            assert_eq!(allocation["releases"][0]["release_id"], a.as_str());
            assert_eq!(allocation["releases"][1]["release_id"], b.as_str());
            assert_eq!(allocation["releases"][1]["fraction"], 0.1);
            let tree = std::path::PathBuf::from(allocation["releases"][1]["tree"].as_str().unwrap());
            for (file, hash) in files_of(&b_manifest) {
                assert_eq!(sha256sum(&tree.join(&file)), hash, "{name}: {file}");
            }
            // The stable target still holds A exactly.
            for (file, hash) in files_of(&a_manifest) {
                assert_eq!(sha256sum(&host.target.join(&file)), hash, "{name}: {file}");
            }
        }
        let status = json(&s.shipshape(&fat(1.2), &["canary", "status", "--env", "staging", "--json"]));
        assert_eq!(status["canary"]["percent"], 10);
        assert!(
            status["hosts"].as_array().unwrap().iter().all(|h| h["canary_generation"] == 1),
            "{registry}: {status}"
        );
        let fleet_status = json(&s.shipshape(&fat(1.2), &["status", "--env", "staging", "--json"]));
        let staging = &fleet_status[0];
        assert_eq!(staging["canary"]["release_id"], b.as_str(), "{fleet_status}");
        assert!(staging["hosts"].as_array().unwrap().iter().all(|h| h["canary_generation"] == 1));
        if registry.starts_with("sqlite:") {
            // The dashboard's fleet panel says it too, in a real browser.
            let (mut child, address) = crate::util::spawn_serve(
                s.ws.std_cmd(&fat(1.2))
                    .args(["serve", "--bind", "127.0.0.1:0", "--eval-interval", "1h"])
                    .stderr(std::process::Stdio::null()),
            );
            let driver = crate::dashboard::Driver::start();
            driver.go(&format!("http://{address}/"));
            driver.wait(
                "return document.querySelector('[data-canary-env=staging]') !== null",
                std::time::Duration::from_secs(15),
            );
            let text = driver.text("[data-canary-env=staging]");
            assert!(
                text.contains(&format!("canary {b} at 10 %")) && text.contains("applied by 2 of 2 hosts"),
                "{text}"
            );
            let _ = child.kill();
            let _ = child.wait();
        }
        // A step up, then the promotion: the pointer moves to B, every host deploys it and its
        // allocation names the target alone.
        let stepped =
            json(&s.shipshape(&fat(2.0), &["canary", "promote", "--env", "staging", "--note", "looks fine", "--json"]));
        assert_eq!(stepped["to"], 50);
        for (host, name) in hosts.iter().zip(names) {
            agent_once(host, "staging", name, &fat(2.1));
            assert_eq!(allocation_of(host)["releases"][1]["fraction"], 0.5, "{name}");
        }
        let promoted = json(&s.shipshape(&fat(3.0), &["canary", "promote", "--env", "staging", "--json"]));
        assert_eq!(promoted["outcome"], "promoted");
        for (host, name) in hosts.iter().zip(names) {
            assert_eq!(agent_once(host, "staging", name, &fat(3.1))["outcome"], "applied", "{name}");
            let allocation = allocation_of(host);
            assert_eq!(allocation["releases"].as_array().unwrap().len(), 1, "{name}: {allocation}");
            assert_eq!(allocation["releases"][0]["release_id"], b.as_str());
            for (file, hash) in files_of(&b_manifest) {
                assert_eq!(sha256sum(&host.target.join(&file)), hash, "{name}: {file}");
            }
            assert!(
                !host
                    .target
                    .with_file_name(format!("{}.canary", host.target.file_name().unwrap().to_string_lossy()))
                    .join(&b)
                    .exists()
            );
        }
        let fleet_status = json(&s.shipshape(&fat(3.2), &["status", "--env", "staging", "--json"]));
        assert!(fleet_status.to_string().contains("canary"), "the pointer move is a canary promotion: {fleet_status}");
        // A third release's canary, aborted: every host back to B alone.
        s.ws.write("search_space.yaml", format!("{space}# tuned again\n").as_bytes());
        let c_manifest = s.release(&fat(4.0));
        let c = release_id(&c_manifest);
        json(&s.shipshape(&fat(4.0), &["publish", &c, "--json"]));
        json(&s.shipshape(&fat(4.0), &["canary", "start", &c, "--env", "staging", "--yes", "--json"]));
        for (host, name) in hosts.iter().zip(names) {
            agent_once(host, "staging", name, &fat(4.1));
            assert_eq!(allocation_of(host)["releases"][1]["release_id"], c.as_str());
        }
        let refused = s.shipshape(&fat(4.2), &["canary", "start", &c, "--env", "staging", "--yes"]);
        assert_eq!(refused.status.code(), Some(2), "one canary at a time: {}", stderr_of(&refused));
        json(&s.shipshape(&fat(4.5), &["canary", "abort", "--env", "staging", "--note", "drill", "--json"]));
        for (host, name) in hosts.iter().zip(names) {
            let pass = agent_once(host, "staging", name, &fat(4.6));
            assert!(pass["message"].as_str().unwrap().contains("canary ended"), "{name}: {pass}");
            let allocation = allocation_of(host);
            assert_eq!(allocation["releases"].as_array().unwrap().len(), 1);
            assert_eq!(allocation["releases"][0]["release_id"], b.as_str());
        }
        let status = json(&s.shipshape(&fat(5.0), &["canary", "status", "--env", "staging", "--json"]));
        let kinds: Vec<&str> =
            status["history"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        // (`canary`: the pointer move of the promotion.)
        assert_eq!(
            kinds,
            vec!["canary_abort", "canary_start", "canary_promote", "canary", "canary_step", "canary_start"],
            "{registry}"
        );
        // A rollback of the environment during a canary ends the canary first.
        json(&s.shipshape(&fat(5.0), &["canary", "start", &c, "--env", "staging", "--yes", "--json"]));
        let output = s.shipshape(&fat(5.5), &["rollback", "--env", "staging", "--yes"]);
        assert!(output.status.success(), "{registry}: {}", stderr_of(&output));
        let status = json(&s.shipshape(&fat(5.6), &["canary", "status", "--env", "staging", "--json"]));
        assert!(status["canary"].is_null(), "{registry}: {status}");
        assert_eq!(status["history"][0]["kind"], "canary_abort");
        assert!(status["history"][0]["note"].as_str().unwrap().contains("rolled back"), "{status}");
    }
}

/// The fleet's canary judged from the events the engines of every host send to the builder's
/// `serve` (here, ingested into its monitor): a harmful candidate is aborted in the registry, and
/// the next agent pass gives each host's capital back.
#[test]
fn a_fleet_canary_is_judged_from_the_events_and_aborted_in_the_registry() {
    use crate::fleet::{Host, agent_once, at as fat, fleet_toml, json};
    let temp = tempfile::tempdir().unwrap();
    let store = format!("file://{}", temp.path().join("store").display());
    let registry = format!("sqlite:{}", temp.path().join("fleet.db").display());
    let s = Setup::new("copy");
    let config = std::fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    std::fs::write(s.ws.path("shipshape.toml"), format!("{config}{}", fleet_toml(&store, &registry))).unwrap();
    let host = Host::new(&s, "stage-1");
    let a = release_id(&s.release(&fat(0.0)));
    json(&s.shipshape(&fat(0.0), &["publish", &a, "--json"]));
    json(&s.shipshape(&fat(0.0), &["promote", &a, "--to", "staging", "--yes", "--json"]));
    agent_once(&host, "staging", "stage-1", &fat(0.1));
    let space = std::fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
    s.ws.write("search_space.yaml", format!("{space}# tuned\n").as_bytes());
    let b = release_id(&s.release(&fat(1.0)));
    json(&s.shipshape(&fat(1.0), &["publish", &b, "--json"]));
    json(&s.shipshape(&fat(1.0), &["canary", "start", &b, "--env", "staging", "--steps", "10,100", "--yes", "--json"]));
    agent_once(&host, "staging", "stage-1", &fat(1.1));
    let shares = vec![(a.clone(), 0.9), (b.clone(), 0.1)];
    let mut aborted = None;
    for hour in 0..12 {
        ingest_hour(
            &s,
            &shares,
            1.0 + f64::from(hour),
            3000,
            &quality(&[(&a, 0.56), (&b, 0.40)]),
            500 + hour as u64,
            fat,
        );
        let output = s.shipshape(&fat(2.0 + f64::from(hour)), &["canary", "evaluate", "--env", "staging", "--json"]);
        let result: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", stderr_of(&output)));
        if result["outcome"] == "aborted" {
            assert_eq!(output.status.code(), Some(4));
            aborted = Some(hour);
            break;
        }
        assert_eq!(result["outcome"], "hold", "{result}");
    }
    assert!(aborted.is_some(), "a candidate 16 points worse is aborted");
    let status = json(&s.shipshape(&fat(20.0), &["canary", "status", "--env", "staging", "--json"]));
    assert!(status["canary"].is_null(), "{status}");
    assert_eq!(status["history"][0]["by"], "shipshape-canary");
    assert!(status["history"][0]["note"].as_str().unwrap().contains("harm"), "{status}");
    let pass = agent_once(&host, "staging", "stage-1", &fat(20.1));
    assert!(pass["message"].as_str().unwrap().contains("canary ended"), "{pass}");
}
