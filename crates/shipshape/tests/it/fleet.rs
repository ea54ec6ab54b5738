//! Beyond one machine: releases published to a remote store and fetched by other hosts — a shared
//! directory always, and the S3 server `scripts/test.sh` starts (SeaweedFS on loopback) when
//! `SHIPSHAPE_TEST_S3` names its endpoint. Every host is its own workspace: the team's
//! `shipshape.toml`, its own trust root (allowed signers, policy) and its own target.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use shipshape_core::infra::hash::Digest;
use shipshape_fleet::remote::RemoteStore;

use crate::util::{Setup, copy_tree, files_of, sha256sum, snapshot, stderr_of};

const NOW: &str = "2025-10-12T19:00:00+05:30";

/// The stores the tests run against: a shared directory, and S3 when the test script started one.
fn stores(temp: &Path) -> Vec<(String, String)> {
    let dir = temp.join("shared-store");
    let mut out = vec![(format!("file://{}", dir.display()), String::new())];
    if let Ok(endpoint) = std::env::var("SHIPSHAPE_TEST_S3") {
        // A prefix of its own per test run, so that tests sharing the bucket do not meet.
        let unique = temp.file_name().unwrap().to_string_lossy().to_lowercase().replace(['.', '_'], "-");
        out.push((
            format!("s3://shipshape-test/{unique}"),
            format!("\n[fleet.s3]\nendpoint = \"{endpoint}\"\nallow_http = true\n"),
        ));
    }
    out
}

fn with_fleet(config: &str, store: &str, s3: &str) -> String {
    let base = config.split("\n[fleet]\n").next().unwrap();
    format!("{base}\n[fleet]\nstore = \"{store}\"\n{s3}")
}

/// Another host: the team's config with its own target, its own trust root, nothing else.
pub(crate) struct Host {
    pub(crate) root: PathBuf,
    pub(crate) target: PathBuf,
}

impl Host {
    pub(crate) fn new(s: &Setup, name: &str) -> Host {
        let root = s.ws.temp.path().join(name);
        let target = s.ws.temp.path().join(format!("{name}-target"));
        fs::create_dir_all(root.join("release")).unwrap();
        for file in ["release/allowed_signers", "release/policy.yaml"] {
            fs::copy(s.ws.path(file), root.join(file)).unwrap();
        }
        copy_tree(&s.ws.path("scripts"), &root.join("scripts"));
        let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
        let config = config.replace("target = \"../prod\"", &format!("target = \"{}\"", target.display()));
        fs::write(root.join("shipshape.toml"), config).unwrap();
        Host { root, target }
    }

    fn shipshape(&self, args: &[&str]) -> Output {
        let mut cmd = assert_cmd::Command::cargo_bin("shipshape").unwrap();
        cmd.current_dir(&self.root).env("SHIPSHAPE_NOW", NOW).args(args).output().unwrap()
    }
}

pub(crate) fn json(output: &Output) -> Value {
    assert!(output.status.success(), "{}", stderr_of(output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The builder's workspace with `[fleet] store`, and one approved release.
fn published_setup(store: &str, s3: &str) -> (Setup, PathBuf) {
    let s = Setup::new("copy");
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    fs::write(s.ws.path("shipshape.toml"), with_fleet(&config, store, s3)).unwrap();
    let manifest = s.release(NOW);
    (s, manifest)
}

pub(crate) fn release_id(manifest: &Path) -> String {
    manifest.file_stem().unwrap().to_string_lossy().into_owned()
}

/// The release's artifact objects (unique hashes) and its records.
fn unique_objects(manifest: &Path) -> usize {
    files_of(manifest).values().collect::<std::collections::BTreeSet<_>>().len()
}

#[test]
fn a_release_travels_through_the_store_to_another_host_and_deploys_there() {
    let temp = tempfile::tempdir().unwrap();
    for (store, s3) in stores(temp.path()) {
        let (s, manifest) = published_setup(&store, &s3);
        let id = release_id(&manifest);
        let first = json(&s.shipshape(NOW, &["publish", "--json"]));
        // Artifacts, manifest, approvals, audit bundle, validation record: each object once.
        let records = 4;
        assert_eq!(
            first["uploaded"].as_u64().unwrap() as usize,
            unique_objects(&manifest) + records,
            "{store}: {first}"
        );
        assert_eq!(first["release_id"], id.as_str());
        // Published again: nothing is sent twice.
        let again = json(&s.shipshape(NOW, &["publish", "--json"]));
        assert_eq!((again["uploaded"].as_u64(), again["present"].as_u64()), (Some(0), first["uploaded"].as_u64()));

        let host = Host::new(&s, "host-a");
        fs::write(
            host.root.join("shipshape.toml"),
            with_fleet(&fs::read_to_string(host.root.join("shipshape.toml")).unwrap(), &store, &s3),
        )
        .unwrap();
        let listed = json(&host.shipshape(&["fetch", "--list", "--json"]));
        assert_eq!(listed[0]["release_id"], id.as_str(), "{store}");
        let fetched = json(&host.shipshape(&["fetch", &id, "--json"]));
        assert_eq!(fetched["trusted"], true, "{store}: {fetched}");
        assert_eq!(fetched["fetch"]["downloaded"].as_u64().unwrap() as usize, unique_objects(&manifest));
        // The records are the builder's bytes; the host's trust root is its own, untouched.
        let local = host.root.join(format!("release/manifests/{id}.yaml"));
        assert_eq!(fs::read(&local).unwrap(), fs::read(&manifest).unwrap());
        let output = host.shipshape(&["deploy", &id, "--yes"]);
        assert!(output.status.success(), "{store}: {}", stderr_of(&output));
        for (path, hash) in files_of(&manifest) {
            assert_eq!(sha256sum(&host.target.join(&path)), hash, "{store}: {path} on the host");
        }
        // Fetched again: nothing downloaded.
        let again = json(&host.shipshape(&["fetch", &id, "--json"]));
        assert_eq!(again["fetch"]["downloaded"], 0);
    }
}

#[test]
fn a_corrupted_object_in_the_store_is_refused_and_nothing_is_applied() {
    let temp = tempfile::tempdir().unwrap();
    for (store, s3) in stores(temp.path()) {
        let (s, manifest) = published_setup(&store, &s3);
        let id = release_id(&manifest);
        json(&s.shipshape(NOW, &["publish", "--json"]));
        // The bucket's copy of the model is replaced by other bytes of the same length.
        let (path, hash) = files_of(&manifest).into_iter().find(|(p, _)| p.ends_with(".pkl")).unwrap();
        let digest: Digest = hash.parse().unwrap();
        let hex = digest.hex();
        let size = fs::metadata(s.ws.path(&path)).unwrap().len() as usize;
        let workspace = shipshape_core::layout::Workspace::open(&s.ws.root).unwrap();
        let fleet = workspace.config.fleet.clone().unwrap();
        let remote = RemoteStore::open(&store, &s.ws.root, &fleet.s3).unwrap();
        remote.put_raw(&remote.object_key(&digest), vec![b'x'; size]).unwrap();

        let host = Host::new(&s, "host-b");
        fs::write(
            host.root.join("shipshape.toml"),
            with_fleet(&fs::read_to_string(host.root.join("shipshape.toml")).unwrap(), &store, &s3),
        )
        .unwrap();
        let before = snapshot(&host.root);
        let output = host.shipshape(&["fetch", &id]);
        assert_eq!(output.status.code(), Some(1), "{store}: {}", stderr_of(&output));
        let message = stderr_of(&output);
        assert!(
            message.contains(&format!("object {hash} hashes to")) && message.contains("nothing applied"),
            "{message}"
        );
        // No record left behind, no object under its name, no target.
        let after = snapshot(&host.root);
        let new: Vec<_> =
            after.keys().filter(|p| !before.contains_key(*p) && !p.starts_with("release/store")).collect();
        assert!(new.is_empty(), "{store}: left behind {new:?}");
        assert!(!host.root.join(format!("release/store/sha256/{}/{}", &hex[..2], &hex[2..])).exists());
        assert!(!host.target.exists());
        let output = host.shipshape(&["deploy", &id, "--yes"]);
        assert!(!output.status.success());
    }
}

#[test]
fn an_index_that_names_the_trust_root_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let (store, s3) = stores(temp.path()).remove(0);
    let (s, manifest) = published_setup(&store, &s3);
    let id = release_id(&manifest);
    json(&s.shipshape(NOW, &["publish", "--json"]));
    let workspace = shipshape_core::layout::Workspace::open(&s.ws.root).unwrap();
    let remote = RemoteStore::open(&store, &s.ws.root, &workspace.config.fleet.clone().unwrap().s3).unwrap();
    // A store that lies: its index says the release includes an allowed_signers file.
    let mut index: Value = serde_json::to_value(remote.index(&id).unwrap().unwrap()).unwrap();
    let evil = b"mallory@example.com namespaces=\"risk-manager@shipshape\" ssh-ed25519 AAAA\n".to_vec();
    let digest = Digest::of(&evil);
    remote.put_raw(&remote.object_key(&digest), evil.clone()).unwrap();
    index["records"].as_array_mut().unwrap().push(serde_json::json!({
        "path": "release/allowed_signers", "sha256": digest.to_string(), "size": evil.len()
    }));
    remote.put_raw(&format!("releases/{id}.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let host = Host::new(&s, "host-c");
    fs::write(
        host.root.join("shipshape.toml"),
        with_fleet(&fs::read_to_string(host.root.join("shipshape.toml")).unwrap(), &store, &s3),
    )
    .unwrap();
    let signers = fs::read(host.root.join("release/allowed_signers")).unwrap();
    let output = host.shipshape(&["fetch", &id]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains("names release/allowed_signers: not a release record's path"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(fs::read(host.root.join("release/allowed_signers")).unwrap(), signers);
}

#[test]
fn an_unapproved_release_is_fetched_but_not_trusted_by_the_host() {
    let temp = tempfile::tempdir().unwrap();
    let (store, s3) = stores(temp.path()).remove(0);
    let s = Setup::new("copy");
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    fs::write(s.ws.path("shipshape.toml"), with_fleet(&config, &store, &s3)).unwrap();
    let manifest = s.ws.release(NOW, &["--type", "hotfix"]);
    let id = release_id(&manifest);
    json(&s.shipshape(NOW, &["publish", &id, "--json"]));
    let host = Host::new(&s, "host-d");
    fs::write(
        host.root.join("shipshape.toml"),
        with_fleet(&fs::read_to_string(host.root.join("shipshape.toml")).unwrap(), &store, &s3),
    )
    .unwrap();
    let output = host.shipshape(&["fetch", &id]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_of(&output).contains("is not trusted"), "{}", stderr_of(&output));
    let output = host.shipshape(&["deploy", &id, "--yes"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(!host.target.exists());
    // Bad input: a store URL of an unknown scheme, named in the error.
    let config = fs::read_to_string(host.root.join("shipshape.toml")).unwrap();
    fs::write(host.root.join("shipshape.toml"), with_fleet(&config, "ftp://example.com/x", "")).unwrap();
    let output = host.shipshape(&["fetch", &id]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("ftp://example.com/x: the store is s3://bucket/prefix"),
        "{}",
        stderr_of(&output)
    );
}

/// The fleet configuration every workspace of a test shares: the store, the registry, staging
/// (anything may be promoted there) and production (2 hours in staging first).
pub(crate) fn fleet_toml(store: &str, registry: &str) -> String {
    format!(
        "\n[fleet]\nstore = \"{store}\"\nregistry = \"{registry}\"\n\n[[fleet.environments]]\nname = \"staging\"\n\n[[fleet.environments]]\nname = \"production\"\nrequires = \"staging\"\nsoak = \"2h\"\n"
    )
}

/// Registries to run a fleet story against: embedded SQLite always, PostgreSQL when the test
/// script started one (a fresh database each).
pub(crate) fn registries(temp: &Path) -> Vec<String> {
    let mut out = vec![format!("sqlite:{}", temp.join("fleet.db").display())];
    if let Ok(base) = std::env::var("SHIPSHAPE_TEST_POSTGRES") {
        let name = format!(
            "fleet_{}_{}",
            std::process::id(),
            temp.file_name().unwrap().to_string_lossy().to_lowercase().replace(['.', '-'], "_")
        );
        let mut admin = postgres::Client::connect(&base, postgres::NoTls).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        out.push(format!("{}/{name}", base.rsplit_once('/').unwrap().0));
    }
    out
}

/// `shipshape` in `dir` at time `now`.
fn run_at(dir: &Path, now: &str, args: &[&str]) -> Output {
    let mut cmd = assert_cmd::Command::cargo_bin("shipshape").unwrap();
    cmd.current_dir(dir).env("SHIPSHAPE_NOW", now).args(args).output().unwrap()
}

/// One reconcile pass of the agent of `host` in `env`, at `now`: its pass as JSON.
pub(crate) fn agent_once(host: &Host, env: &str, name: &str, now: &str) -> Value {
    let output = run_at(&host.root, now, &["agent", "--env", env, "--host", name, "--once", "--json"]);
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    serde_json::from_str(text.lines().last().unwrap_or("null"))
        .unwrap_or_else(|_| panic!("{name}: {text} {}", stderr_of(&output)))
}

pub(crate) fn at(hours: f64) -> String {
    let base: jiff::Timestamp = "2025-10-12T13:30:00Z".parse().unwrap();
    base.checked_add(jiff::SignedDuration::from_secs((hours * 3600.0) as i64)).unwrap().to_string()
}

/// Three hosts (one staging, two production), each its own workspace and target, each agent its
/// own process: publish → staging converges → promotion to production refused before the soak →
/// promoted after → both production hosts converge → a regression → the environment rolled back →
/// every host converges back. Then a pointer edited in the database to a lower sequence, or to an
/// unapproved release, is refused by the agent, which keeps what it runs.
#[test]
fn a_fleet_promotes_through_staging_and_rolls_production_back() {
    let temp = tempfile::tempdir().unwrap();
    for registry in registries(temp.path()) {
        let store = format!("file://{}", temp.path().join("store").display());
        let s = Setup::new("copy");
        let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
        let fleet = fleet_toml(&store, &registry);
        fs::write(s.ws.path("shipshape.toml"), format!("{config}{fleet}")).unwrap();
        let hosts: Vec<(Host, &str, &str)> =
            [("stage-1", "staging"), ("prod-1", "production"), ("prod-2", "production")]
                .into_iter()
                .map(|(name, env)| (Host::new(&s, name), name, env))
                .collect();
        let converge = |now: &str, env: &str| -> Vec<String> {
            hosts
                .iter()
                .filter(|(_, _, e)| *e == env)
                .map(|(h, name, e)| agent_once(h, e, name, now)["outcome"].as_str().unwrap().to_string())
                .collect()
        };

        // Release A, published and promoted to staging.
        let a = s.release(&at(0.0));
        let a_id = release_id(&a);
        json(&s.shipshape(&at(0.0), &["publish", &a_id, "--json"]));
        let promoted = json(&s.shipshape(&at(0.0), &["promote", &a_id, "--to", "staging", "--yes", "--json"]));
        assert_eq!((promoted["generation"].as_u64(), promoted["moved_by"].is_string()), (Some(1), true), "{registry}");
        assert_eq!(converge(&at(0.0), "staging"), vec!["applied"], "{registry}");
        assert_eq!(converge(&at(0.0), "production"), vec!["nothing_desired", "nothing_desired"]);
        for (path, hash) in files_of(&a) {
            assert_eq!(sha256sum(&hosts[0].0.target.join(&path)), hash);
        }

        // One hour later: production refuses, naming the soak.
        assert_eq!(converge(&at(1.0), "staging"), vec!["in_sync"], "{registry}");
        let output = s.shipshape(&at(1.0), &["promote", &a_id, "--to", "production", "--yes"]);
        assert_eq!(output.status.code(), Some(1), "{registry}: {}", stderr_of(&output));
        assert!(stderr_of(&output).contains("stage-1 ran it for 3600 s of the 7200 s soak"), "{}", stderr_of(&output));
        // A staging host that stopped reporting does not vouch either.
        let output = s.shipshape(&at(2.5), &["promote", &a_id, "--to", "production", "--yes"]);
        assert!(stderr_of(&output).contains("(stale)"), "{}", stderr_of(&output));
        // Reporting again after the soak: promoted; both production hosts converge.
        converge(&at(2.5), "staging");
        json(&s.shipshape(&at(2.5), &["promote", &a_id, "--to", "production", "--yes", "--json"]));
        assert_eq!(converge(&at(2.5), "production"), vec!["applied", "applied"], "{registry}");

        // Release B goes the same way.
        let space = fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
        s.ws.write("search_space.yaml", format!("# release B\n{space}").as_bytes());
        let b = s.release(&at(3.0));
        let b_id = release_id(&b);
        json(&s.shipshape(&at(3.0), &["publish", &b_id, "--json"]));
        json(&s.shipshape(&at(3.0), &["promote", &b_id, "--to", "staging", "--yes", "--json"]));
        assert_eq!(converge(&at(3.0), "staging"), vec!["applied"]);
        converge(&at(5.5), "staging");
        json(&s.shipshape(&at(5.5), &["promote", &b_id, "--to", "production", "--yes", "--json"]));
        assert_eq!(converge(&at(5.5), "production"), vec!["applied", "applied"]);
        for (host, _, _) in &hosts[1..] {
            for (path, hash) in files_of(&b) {
                assert_eq!(sha256sum(&host.target.join(&path)), hash);
            }
        }
        // Promoting the older A again is refused: going back is a rollback.
        let output = s.shipshape(&at(5.6), &["promote", &a_id, "--to", "production", "--yes"]);
        assert!(stderr_of(&output).contains("going back is a rollback"), "{}", stderr_of(&output));

        // A regression in production: the environment goes back to its last known good, A.
        let output =
            s.shipshape(&at(6.0), &["rollback", "--env", "production", "--reason", "hit ratio regression", "--yes"]);
        assert!(output.status.success(), "{}", stderr_of(&output));
        assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("production rolled back to {a_id}")));
        assert_eq!(converge(&at(6.0), "production"), vec!["rolled_back_to", "rolled_back_to"], "{registry}");
        for (host, _, _) in &hosts[1..] {
            for (path, hash) in files_of(&a) {
                assert_eq!(sha256sum(&host.target.join(&path)), hash, "{registry}: {path} back to A");
            }
        }
        let status = json(&s.shipshape(&at(6.0), &["status", "--env", "all", "--json"]));
        let production = status.as_array().unwrap().iter().find(|e| e["environment"] == "production").unwrap();
        assert_eq!(production["desired"]["release_id"], a_id.as_str());
        assert_eq!(production["desired"]["action"], "rollback");
        assert!(
            production["hosts"].as_array().unwrap().iter().all(|h| h["in_sync"] == true && h["health"] == "healthy")
        );

        // The database edited by hand: staging's pointer set back to A (a lower sequence, not a
        // rollback), then to an unapproved release. The agent refuses both and keeps B.
        edit_pointer(&registry, temp.path(), "staging", &a_id, &fs::read(&a).unwrap(), "set");
        let pass = agent_once(&hosts[0].0, "staging", "stage-1", &at(7.0));
        assert_eq!(pass["outcome"], "refused", "{registry}: {pass}");
        assert!(pass["message"].as_str().unwrap().contains("anti-rollback"), "{pass}");
        assert_eq!(pass["running"], b_id.as_str());
        s.ws.write("search_space.yaml", format!("# release C, never approved\n{space}").as_bytes());
        let c = s.ws.release(&at(7.5), &["--type", "hotfix"]);
        let c_id = release_id(&c);
        json(&s.shipshape(&at(7.5), &["publish", &c_id, "--json"]));
        edit_pointer(&registry, temp.path(), "staging", &c_id, &fs::read(&c).unwrap(), "set");
        let pass = agent_once(&hosts[0].0, "staging", "stage-1", &at(7.6));
        assert_eq!(pass["outcome"], "refused", "{pass}");
        assert!(pass["message"].as_str().unwrap().contains("not trusted"), "{pass}");
        for (path, hash) in files_of(&b) {
            assert_eq!(sha256sum(&hosts[0].0.target.join(&path)), hash, "staging still runs B");
        }
        let status = s.shipshape(&at(7.6), &["status", "--env", "staging"]);
        assert_eq!(status.status.code(), Some(1), "a refused host is not well");
        assert!(String::from_utf8_lossy(&status.stdout).contains("refused"));
    }
}

/// Move a pointer behind shipshape's back, as someone with write access to the database could.
fn edit_pointer(registry: &str, dir: &Path, env: &str, release: &str, manifest: &[u8], action: &str) {
    let digest = Digest::of(manifest).to_string();
    let sql = "UPDATE environments SET release_id = $1, manifest_sha256 = $2, sequence = 1, action = $3, generation = generation + 1 WHERE name = $4";
    match registry.strip_prefix("sqlite:") {
        Some(path) => {
            let conn = rusqlite::Connection::open(dir.join(path)).unwrap();
            conn.execute(&sql.replace('$', "?"), rusqlite::params![release, digest, action, env]).unwrap();
        }
        None => {
            let mut client = postgres::Client::connect(registry, postgres::NoTls).unwrap();
            client.execute(sql, &[&release, &digest, &action, &env]).unwrap();
        }
    }
}

/// An agent killed in the middle of applying a release (a crash before, and one after, the
/// deploy's commit point) converges when it runs again.
#[test]
fn an_agent_killed_during_apply_converges_after_restart() {
    let temp = tempfile::tempdir().unwrap();
    let store = format!("file://{}", temp.path().join("store").display());
    let registry = format!("sqlite:{}", temp.path().join("fleet.db").display());
    let s = Setup::new("copy");
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    fs::write(s.ws.path("shipshape.toml"), format!("{config}{}", fleet_toml(&store, &registry))).unwrap();
    let host = Host::new(&s, "stage-1");
    let a = s.release(&at(0.0));
    let a_id = release_id(&a);
    json(&s.shipshape(&at(0.0), &["publish", &a_id, "--json"]));
    json(&s.shipshape(&at(0.0), &["promote", &a_id, "--to", "staging", "--yes", "--json"]));
    assert_eq!(agent_once(&host, "staging", "stage-1", &at(0.0))["outcome"], "applied");
    let space = fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
    for (n, point) in ["after-plan", "after-registry"].into_iter().enumerate() {
        s.ws.write("search_space.yaml", format!("# change {n}\n{space}").as_bytes());
        let now = at(1.0 + n as f64);
        let next = s.release(&now);
        let next_id = release_id(&next);
        json(&s.shipshape(&now, &["publish", &next_id, "--json"]));
        let desired = json(&s.shipshape(&now, &["status", "--env", "staging", "--json"]));
        let generation = desired[0]["desired"]["generation"].as_u64().unwrap();
        json(&s.shipshape(&now, &["promote", &next_id, "--to", "staging", "--yes", "--json"]));
        let mut cmd = assert_cmd::Command::cargo_bin("shipshape").unwrap();
        let crashed = cmd
            .current_dir(&host.root)
            .env("SHIPSHAPE_NOW", &now)
            .env("SHIPSHAPE_FAILPOINT", point)
            .args(["agent", "--env", "staging", "--host", "stage-1", "--once"])
            .output()
            .unwrap();
        assert!(!crashed.status.success(), "{point}: the agent was killed");
        let pass = agent_once(&host, "staging", "stage-1", &now);
        let expected = if point == "after-plan" { "applied" } else { "in_sync" };
        assert_eq!(pass["outcome"], expected, "{point}: {pass}");
        assert_eq!(pass["generation"].as_u64(), Some(generation + 1));
        for (path, hash) in files_of(&next) {
            assert_eq!(sha256sum(&host.target.join(&path)), hash, "{point}: {path}");
        }
        let leftovers: Vec<_> = fs::read_dir(host.root.join("release/journal"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .collect();
        assert!(leftovers.is_empty(), "{point}: an unfinished journal is left: {leftovers:?}");
    }
}

/// A TCP proxy in front of PostgreSQL that a test can cut (connections reset, new ones refused)
/// and restore: the registry "unreachable" as a network partition makes it.
struct Proxy {
    port: u16,
    upstream: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy {
            port,
            upstream: upstream.to_string(),
            up: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            streams: Default::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: std::net::TcpListener) {
        let (up, streams, upstream) = (self.up.clone(), self.streams.clone(), self.upstream.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while up.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = std::net::TcpStream::connect(&upstream) else { continue };
                streams.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(100)); // the listener closes
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        self.serve(listener);
    }
}

/// A long-running agent against PostgreSQL: woken by the promotion's NOTIFY (not its 8-second
/// timer); the registry cut away (a partition) — it keeps the release it runs and says it is
/// degraded; the registry back — it reports again and follows the next promotion.
#[test]
fn a_running_agent_follows_notifications_and_survives_the_registry_going_away() {
    let Ok(base) = std::env::var("SHIPSHAPE_TEST_POSTGRES") else {
        eprintln!("SHIPSHAPE_TEST_POSTGRES is not set (scripts/test.sh starts PostgreSQL): not run");
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let registry = registries(temp.path()).pop().unwrap();
    let upstream =
        base.trim_start_matches("postgres://").split_once('@').unwrap().1.split('/').next().unwrap().to_string();
    let proxy = Proxy::start(&upstream);
    let proxied = registry.replace(&upstream, &format!("127.0.0.1:{}", proxy.port));
    let store = format!("file://{}", temp.path().join("store").display());
    let s = Setup::new("copy");
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    fs::write(s.ws.path("shipshape.toml"), format!("{config}{}", fleet_toml(&store, &registry))).unwrap();
    let host = Host::new(&s, "stage-1");
    let host_config = fs::read_to_string(host.root.join("shipshape.toml")).unwrap().replace(&registry, &proxied);
    fs::write(host.root.join("shipshape.toml"), host_config.replace("[fleet]\n", "[fleet]\ninterval = \"8s\"\n"))
        .unwrap();

    let now = jiff::Timestamp::now().to_string();
    let a = s.release(&now);
    let a_id = release_id(&a);
    json(&s.shipshape(&now, &["publish", &a_id, "--json"]));
    json(&s.shipshape(&now, &["promote", &a_id, "--to", "staging", "--yes", "--json"]));

    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("shipshape"))
        .current_dir(&host.root)
        .args(["agent", "--env", "staging", "--host", "stage-1", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, passes) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str(&line) {
                let _ = lines.send(value);
            }
        }
    });
    let wait_for = |outcome: &str, release: Option<&str>, within: u64| -> (Value, std::time::Instant) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(within);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let pass = passes.recv_timeout(left).unwrap_or_else(|_| panic!("no `{outcome}` pass within {within} s"));
            if pass["outcome"] == outcome && release.is_none_or(|r| pass["running"] == r) {
                return (pass, std::time::Instant::now());
            }
        }
    };
    wait_for("applied", Some(&a_id), 30);

    // A config-only change, promoted: the notification wakes the agent before its timer would.
    let space = fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
    s.ws.write("search_space.yaml", format!("# B\n{space}").as_bytes());
    let now = jiff::Timestamp::now().to_string();
    let b = s.release(&now);
    let b_id = release_id(&b);
    json(&s.shipshape(&now, &["publish", &b_id, "--json"]));
    std::thread::sleep(std::time::Duration::from_secs(1)); // the agent is waiting again
    let promoted = std::time::Instant::now();
    json(&s.shipshape(&now, &["promote", &b_id, "--to", "staging", "--yes", "--json"]));
    let (_, applied) = wait_for("applied", Some(&b_id), 30);
    let latency = applied - promoted;
    eprintln!("promotion to applied on the host: {latency:?}");
    assert!(latency < std::time::Duration::from_secs(6), "woken by the notification, not the 8 s timer: {latency:?}");

    // The registry goes away: the host keeps B and says so.
    proxy.cut();
    let (pass, _) = wait_for("degraded", None, 30);
    assert_eq!(pass["running"], b_id.as_str());
    assert!(pass["message"].as_str().unwrap().contains("keeping what runs here"), "{pass}");
    for (path, hash) in files_of(&b) {
        assert_eq!(sha256sum(&host.target.join(&path)), hash);
    }
    // Back: it reports again (the timer) and the registry sees it in sync.
    proxy.restore();
    wait_for("in_sync", Some(&b_id), 30);
    let status = json(&s.shipshape(&jiff::Timestamp::now().to_string(), &["status", "--env", "staging", "--json"]));
    let host_state = &status[0]["hosts"][0];
    assert_eq!(
        (host_state["observed"].as_str(), host_state["health"].as_str()),
        (Some(b_id.as_str()), Some("healthy"))
    );
    // systemd's stop: SIGTERM ends the agent cleanly (exit 0) within a second or two.
    let stopping = std::time::Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(stopping.elapsed() < std::time::Duration::from_secs(10), "the agent ignored SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    for (path, hash) in files_of(&b) {
        assert_eq!(sha256sum(&host.target.join(&path)), hash);
    }
}

/// `/metrics` of `shipshape serve` in a workspace with a fleet: per-host gauges of every environment.
/// `GET path` from a `shipshape serve` of `s`'s workspace started at `now` (and stopped after).
fn get_from_serve(s: &Setup, now: &str, path: &str) -> (u16, String) {
    use std::io::BufRead as _;
    let token = s.ws.temp.path().join("token");
    fs::write(&token, "0123456789abcdef0123456789abcdef-test\n").unwrap();
    let mut child =
        s.ws.std_cmd(now)
            .args(["serve", "--bind", "127.0.0.1:0", "--token-file"])
            .arg(&token)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = line.trim().strip_prefix("listening on http://").unwrap().to_string();
    let answer = crate::util::http::request(&address, "GET", path, &[], b"");
    let _ = child.kill();
    let _ = child.wait();
    answer
}

/// A registry that does not answer: the dashboard's fleet endpoint says so (with the error) rather
/// than failing, and `/metrics` reports `shipshape_fleet_registry_up 0` beside everything else.
#[test]
fn an_unreachable_registry_is_reported_not_fatal() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = Setup::new("copy");
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    let store = format!("file://{}", s.ws.temp.path().join("store").display());
    let registry = format!("postgres://shipshape@127.0.0.1:{port}/fleet");
    fs::write(s.ws.path("shipshape.toml"), format!("{config}{}", fleet_toml(&store, &registry))).unwrap();
    let (code, body) = get_from_serve(&s, NOW, "/api/v1/fleet");
    assert_eq!(code, 200, "{body}");
    let fleet: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((fleet["configured"].clone(), fleet["up"].clone()), (Value::Bool(true), Value::Bool(false)), "{body}");
    assert!(fleet["error"].as_str().unwrap().contains(&format!("127.0.0.1:{port}")), "{body}");
    let (code, body) = get_from_serve(&s, NOW, "/metrics");
    assert_eq!(code, 200);
    assert!(body.lines().any(|l| l == "shipshape_fleet_registry_up 0"), "{body}");
    assert!(body.contains("shipshape_events_stored "), "{body}");
    // Without [fleet] the endpoint says the workspace has no fleet.
    let plain = Setup::new("copy");
    let (code, body) = get_from_serve(&plain, NOW, "/api/v1/fleet");
    assert_eq!((code, serde_json::from_str::<Value>(&body).unwrap()["configured"].clone()), (200, Value::Bool(false)));
}

#[test]
fn metrics_expose_every_host_of_the_fleet() {
    let temp = tempfile::tempdir().unwrap();
    let store = format!("file://{}", temp.path().join("store").display());
    let registry = format!("sqlite:{}", temp.path().join("fleet.db").display());
    let s = Setup::new("copy");
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    fs::write(s.ws.path("shipshape.toml"), format!("{config}{}", fleet_toml(&store, &registry))).unwrap();
    let host = Host::new(&s, "stage-1");
    let a = s.release(&at(0.0));
    let a_id = release_id(&a);
    json(&s.shipshape(&at(0.0), &["publish", &a_id, "--json"]));
    json(&s.shipshape(&at(0.0), &["promote", &a_id, "--to", "staging", "--yes", "--json"]));
    assert_eq!(agent_once(&host, "staging", "stage-1", &at(0.0))["outcome"], "applied");
    let (code, body) = get_from_serve(&s, &at(0.01), "/metrics");
    assert_eq!(code, 200);
    for expected in [
        "shipshape_fleet_registry_up 1",
        "shipshape_fleet_host_in_sync{environment=\"staging\",host=\"stage-1\"} 1",
        "shipshape_fleet_host_healthy{environment=\"staging\",host=\"stage-1\"} 1",
        "shipshape_fleet_host_drift{environment=\"staging\",host=\"stage-1\"} 0",
        "shipshape_fleet_host_heartbeat_age_seconds{environment=\"staging\",host=\"stage-1\"} 36",
    ] {
        assert!(body.lines().any(|l| l == expected), "missing `{expected}` in:\n{body}");
    }
    assert!(
        body.contains(&format!(
            "shipshape_fleet_pointer_generation{{environment=\"staging\",release_id=\"{a_id}\"}} 1"
        ))
    );
}

/// Files changed under a host's target: reported as drift (and such a host does not vouch for a
/// promotion); repaired by the agent when the environment says `repair_drift = true`.
#[test]
fn drift_on_a_host_is_reported_and_repaired_when_the_environment_says_so() {
    let temp = tempfile::tempdir().unwrap();
    let store = format!("file://{}", temp.path().join("store").display());
    let registry = format!("sqlite:{}", temp.path().join("fleet.db").display());
    let s = Setup::new("copy");
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    fs::write(s.ws.path("shipshape.toml"), format!("{config}{}", fleet_toml(&store, &registry))).unwrap();
    let host = Host::new(&s, "stage-1");
    let a = s.release(&at(0.0));
    let a_id = release_id(&a);
    json(&s.shipshape(&at(0.0), &["publish", &a_id, "--json"]));
    json(&s.shipshape(&at(0.0), &["promote", &a_id, "--to", "staging", "--yes", "--json"]));
    assert_eq!(agent_once(&host, "staging", "stage-1", &at(0.0))["outcome"], "applied");
    let tampered = host.target.join("search_space.yaml");
    crate::util::make_writable(&tampered);
    fs::write(&tampered, "# edited on the host\n").unwrap();
    let pass = agent_once(&host, "staging", "stage-1", &at(3.0));
    assert_eq!(pass["outcome"], "drift", "{pass}");
    assert!(pass["message"].as_str().unwrap().contains("search_space.yaml"), "{pass}");
    assert_eq!(fs::read_to_string(&tampered).unwrap(), "# edited on the host\n", "reported, not repaired");
    let output = s.shipshape(&at(3.0), &["promote", &a_id, "--to", "production", "--yes"]);
    assert!(stderr_of(&output).contains("stage-1 has drift"), "{}", stderr_of(&output));
    let status = s.shipshape(&at(3.0), &["status", "--env", "staging"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&status.stdout).contains("DRIFT"));
    // The environment repairs drift: the agent re-applies the release.
    let config = fs::read_to_string(host.root.join("shipshape.toml")).unwrap();
    fs::write(
        host.root.join("shipshape.toml"),
        config.replace("name = \"staging\"\n", "name = \"staging\"\nrepair_drift = true\n"),
    )
    .unwrap();
    let pass = agent_once(&host, "staging", "stage-1", &at(3.1));
    assert_eq!(pass["outcome"], "repaired", "{pass}");
    for (path, hash) in files_of(&a) {
        assert_eq!(sha256sum(&host.target.join(&path)), hash, "{path}");
    }
    assert_eq!(agent_once(&host, "staging", "stage-1", &at(3.2))["outcome"], "in_sync");
}

/// Eight operators promote the same release at the same moment, each its own process: exactly one
/// moves the pointer; every other is told the pointer moved meanwhile (exit 3) or that the release
/// is already desired (exit 2) — none fails otherwise, and the history has one promotion.
#[test]
fn concurrent_promotions_exactly_one_wins() {
    let temp = tempfile::tempdir().unwrap();
    for registry in registries(temp.path()) {
        let store = format!("file://{}", temp.path().join("store").display());
        let s = Setup::new("copy");
        let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
        fs::write(s.ws.path("shipshape.toml"), format!("{config}{}", fleet_toml(&store, &registry))).unwrap();
        let a = release_id(&s.release(&at(0.0)));
        json(&s.shipshape(&at(0.0), &["publish", &a, "--json"]));
        let children: Vec<_> = (0..8)
            .map(|i| {
                s.ws.std_cmd(&at(0.0))
                    .args(["promote", &a, "--to", "staging", "--yes", "--note", &format!("operator {i}")])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let codes: Vec<i32> = outputs.iter().map(|o| o.status.code().unwrap_or(-1)).collect();
        assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{registry}: {codes:?}");
        for (code, output) in codes.iter().zip(&outputs) {
            let text = stderr_of(output);
            match code {
                0 => {}
                3 => assert!(text.contains("moved"), "{registry}: {text}"),
                2 => assert!(text.contains("already the desired release"), "{registry}: {text}"),
                _ => panic!("{registry}: exit {code}: {text}"),
            }
        }
        let status = json(&s.shipshape(&at(0.0), &["status", "--env", "staging", "--json"]));
        assert_eq!(status[0]["desired"]["generation"], 1, "{registry}");
        assert_eq!(status[0]["desired"]["release_id"], a.as_str());
        let winner = outputs.iter().position(|o| o.status.success()).unwrap();
        assert_eq!(status[0]["desired"]["note"], format!("operator {winner}"));
    }
}
