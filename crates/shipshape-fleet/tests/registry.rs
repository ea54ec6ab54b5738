//! The registry's conformance suite: one story, run against the embedded SQLite backend always and
//! against a real PostgreSQL when `SHIPSHAPE_TEST_POSTGRES` names one (scripts/test.sh starts it;
//! each run makes a database of its own, so every run starts from an empty one).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use shipshape_fleet::error::Error;
use shipshape_fleet::registry::{Access, HostReport, MIGRATIONS, Registry, Target, Who};

/// A fresh, empty registry of each backend: (name, URL), with a directory for SQLite files.
fn backends(dir: &Path) -> Vec<(String, String)> {
    let mut out = vec![("sqlite".to_string(), format!("sqlite:{}", dir.join("fleet.db").display()))];
    if let Ok(base) = std::env::var("SHIPSHAPE_TEST_POSTGRES") {
        let name = format!(
            "shipshape_{}_{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000
        );
        let mut admin = postgres::Client::connect(&base, postgres::NoTls).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
        out.push(("postgres".to_string(), url));
    }
    out
}

fn target(release: &str, sequence: u64) -> Target {
    Target {
        release_id: release.into(),
        manifest_sha256: format!("sha256:{:064x}", sequence),
        sequence,
        chain: "production".into(),
    }
}

fn report(env: &str, host: &str, release: &str, sequence: u64, health: &str, at: i64) -> HostReport {
    HostReport {
        environment: env.into(),
        host: host.into(),
        release_id: release.into(),
        sequence,
        generation: 1,
        health: health.into(),
        message: format!("{health} {release}"),
        drift: false,
        firing_alerts: 0,
        running_since: at,
        heartbeat_at: at,
        canary_generation: 0,
    }
}

fn open(url: &str, dir: &Path) -> Registry {
    Registry::open(url, dir, &Access::default()).unwrap()
}

#[test]
fn the_registry_story_holds_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for (name, url) in backends(dir.path()) {
        let mut r = open(&url, dir.path());
        assert_eq!(r.version().unwrap() as usize, MIGRATIONS.len(), "{name}");
        // Opening again migrates nothing.
        assert_eq!(open(&url, dir.path()).version().unwrap() as usize, MIGRATIONS.len());

        // A pointer moves by compare-and-swap: from nothing (generation 0), then from 1.
        assert_eq!(r.desired("staging").unwrap(), None);
        let first = r
            .move_pointer("staging", 0, &target("release_a", 1), "set", &Who { by: "alice", note: "first", at: 100 })
            .unwrap();
        assert_eq!((first.generation, first.release_id.as_str(), first.moved_by.as_str()), (1, "release_a", "alice"));
        let stale = r.move_pointer("staging", 0, &target("release_b", 2), "set", &Who { by: "bob", note: "", at: 110 });
        assert!(matches!(stale, Err(Error::Conflict(_))), "{name}: {stale:?}");
        assert_eq!(
            r.desired("staging").unwrap().unwrap().release_id,
            "release_a",
            "{name}: a lost race changes nothing"
        );
        let second = r
            .move_pointer("staging", 1, &target("release_b", 2), "promote", &Who { by: "bob", note: "soaked", at: 120 })
            .unwrap();
        assert_eq!(second.generation, 2);

        // Hosts report; a healthy release becomes good; what changes is history.
        r.report(&report("staging", "web-1", "release_b", 2, "healthy", 130)).unwrap();
        r.report(&report("staging", "web-1", "release_b", 2, "healthy", 160)).unwrap(); // a heartbeat: no event
        r.report(&report("staging", "web-2", "release_b", 2, "refused", 131)).unwrap();
        let hosts = r.hosts(Some("staging")).unwrap();
        assert_eq!(
            hosts.iter().map(|h| (h.host.as_str(), h.health.as_str(), h.heartbeat_at)).collect::<Vec<_>>(),
            vec![("web-1", "healthy", 160), ("web-2", "refused", 131)],
            "{name}"
        );
        let history = r.history(Some("staging"), 10).unwrap();
        let kinds: Vec<(&str, &str, &str)> =
            history.iter().map(|e| (e.kind.as_str(), e.host.as_str(), e.release_id.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                ("refused", "web-2", "release_b"),
                ("applied", "web-1", "release_b"),
                ("promote", "", "release_b"),
                ("set", "", "release_a")
            ],
            "{name}"
        );
        assert_eq!(
            (history[2].by.as_str(), history[2].from_release.as_str(), history[2].note.as_str()),
            ("bob", "release_a", "soaked")
        );

        // Last known good: release_a ran and was good; release_c is rolled back to it.
        r.report(&report("staging", "web-1", "release_a", 1, "healthy", 90)).unwrap();
        r.report(&report("staging", "web-1", "release_b", 2, "healthy", 170)).unwrap();
        r.move_pointer("staging", 2, &target("release_c", 3), "promote", &Who { by: "carol", note: "", at: 200 })
            .unwrap();
        r.report(&report("staging", "web-1", "release_c", 3, "healthy", 210)).unwrap();
        assert_eq!(r.last_known_good("staging").unwrap().as_deref(), Some("release_b"), "{name}");
        r.move_pointer(
            "staging",
            3,
            &target("release_b", 2),
            "rollback",
            &Who { by: "dave", note: "regression", at: 220 },
        )
        .unwrap();
        let statuses = r.statuses("staging").unwrap();
        assert!(statuses.iter().any(|(id, _, s)| id == "release_c" && s == "rolled_back"), "{name}: {statuses:?}");
        // A rolled-back release is never good again, even if a host still reports it healthy.
        r.report(&report("staging", "web-2", "release_c", 3, "healthy", 225)).unwrap();
        assert!(r.statuses("staging").unwrap().iter().any(|(id, _, s)| id == "release_c" && s == "rolled_back"));
        assert_eq!(r.last_known_good("staging").unwrap().as_deref(), Some("release_a"), "{name}: not the current one");
        r.release_failed("staging", "release_a", 1, 230).unwrap();
        assert_eq!(r.last_known_good("staging").unwrap(), None, "{name}: a failed release is not good");

        // Two operators move the same pointer at once: exactly one wins.
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<_> = ["erin", "frank"]
            .into_iter()
            .map(|who| {
                let (url, dir, barrier) = (url.clone(), dir.path().to_path_buf(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let mut mine = Registry::open(&url, &dir, &Access::default()).unwrap();
                    let generation = mine.desired("staging").unwrap().unwrap().generation;
                    barrier.wait();
                    mine.move_pointer(
                        "staging",
                        generation,
                        &target(&format!("release_{who}"), 9),
                        "promote",
                        &Who { by: who, note: "", at: 300 },
                    )
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{name}: {results:?}");
        assert!(results.iter().any(|r| matches!(r, Err(Error::Conflict(_)))), "{name}");

        // A host name is claimed by one agent at a time.
        let mut other = open(&url, dir.path());
        assert!(r.claim_host("staging", "web-1", "agent-1", 1000, 60).unwrap(), "{name}");
        assert!(
            !other.claim_host("staging", "web-1", "agent-2", 1010, 60).unwrap(),
            "{name}: a second agent for web-1"
        );
        assert!(other.claim_host("staging", "web-2", "agent-2", 1010, 60).unwrap());
        drop(r);
        if name == "postgres" {
            // The claim ends with its session.
            assert!(other.claim_host("staging", "web-1", "agent-2", 1020, 60).unwrap());
        } else {
            // The claim ends when it expires unrenewed.
            assert!(other.claim_host("staging", "web-1", "agent-2", 1061, 60).unwrap());
        }
    }
}

/// PostgreSQL wakes a waiting agent at the commit of a pointer move (LISTEN/NOTIFY); SQLite has no
/// notifications, and its wait is the timer.
#[test]
fn a_pointer_move_wakes_a_waiting_agent() {
    let dir = tempfile::tempdir().unwrap();
    for (name, url) in backends(dir.path()) {
        let mut waiting = open(&url, dir.path());
        let mover_url = url.clone();
        let mover_dir = dir.path().to_path_buf();
        let mover = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut r = Registry::open(&mover_url, &mover_dir, &Access::default()).unwrap();
            r.move_pointer("production", 0, &target("release_a", 1), "set", &Who { by: "alice", note: "", at: 1 })
                .unwrap();
        });
        let started = Instant::now();
        let timeout = Duration::from_secs(if name == "postgres" { 5 } else { 1 });
        let woke = waiting.wait(timeout).unwrap();
        mover.join().unwrap();
        if name == "postgres" {
            assert!(woke, "notified");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "woken by the notify, not the timeout: {:?}",
                started.elapsed()
            );
        } else {
            assert!(!woke);
        }
        assert_eq!(waiting.desired("production").unwrap().unwrap().release_id, "release_a", "{name}");
    }
}

/// A registry made by an earlier shipshape (schema version 1) is brought up to date with its data;
/// one newer than this shipshape knows is refused.
#[test]
fn migrations_run_from_each_earlier_version() {
    let dir = tempfile::tempdir().unwrap();
    for (name, url) in backends(dir.path()) {
        for from in 1..MIGRATIONS.len() {
            // A fresh database per starting version.
            let url = if name == "sqlite" {
                format!("sqlite:{}", dir.path().join(format!("v{from}.db")).display())
            } else {
                fresh_pg(&url, from)
            };
            let sql_url = url.clone();
            let mut old = open_at(&sql_url, dir.path(), from);
            assert_eq!(old.version().unwrap() as usize, from);
            old.move_pointer(
                "staging",
                0,
                &target("release_a", 1),
                "set",
                &Who { by: "alice", note: "before the upgrade", at: 10 },
            )
            .unwrap();
            drop(old);
            let mut new = open(&url, dir.path());
            assert_eq!(new.version().unwrap() as usize, MIGRATIONS.len(), "{name} from {from}");
            assert_eq!(new.desired("staging").unwrap().unwrap().note, "before the upgrade");
            new.report(&report("staging", "web-1", "release_a", 1, "healthy", 20)).unwrap();
            assert_eq!(new.last_known_good("staging").unwrap(), None, "the current release is not a rollback target");
        }
    }
    // From the future: refused, naming the versions.
    let path = dir.path().join("future.db");
    let url = format!("sqlite:{}", path.display());
    drop(open(&url, dir.path()));
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)", []).unwrap();
    let error = Registry::open(&url, dir.path(), &Access::default()).err().unwrap();
    assert!(error.to_string().contains("schema version 99 is newer than this shipshape knows"), "{error}");
}

fn fresh_pg(url: &str, from: usize) -> String {
    let base = std::env::var("SHIPSHAPE_TEST_POSTGRES").unwrap();
    let name = format!("{}_v{from}", url.rsplit_once('/').unwrap().1);
    let mut admin = postgres::Client::connect(&base, postgres::NoTls).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    format!("{}/{name}", base.rsplit_once('/').unwrap().0)
}

/// A registry at schema version `version`, as an earlier shipshape left it.
fn open_at(url: &str, dir: &Path, version: usize) -> Registry {
    let sql: Box<dyn shipshape_fleet::registry::Sql> = match url.strip_prefix("sqlite:") {
        Some(path) => Box::new(shipshape_fleet::registry::sqlite::SqliteSql::open(&dir.join(path)).unwrap()),
        None => Box::new(shipshape_fleet::registry::postgres::PgSql::connect(url, &Access::default()).unwrap()),
    };
    let mut registry = Registry::over(sql);
    registry.migrate_to(version).unwrap();
    registry
}

/// Bad input: a URL of another scheme, a password in the URL, a CA file that is missing or holds
/// no certificate (checked before any connection).
#[test]
fn bad_registry_urls_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    let ca = |name: &str| Access { password: None, ca_file: Some(dir.path().join(name)) };
    for (url, access, expected) in [
        ("mysql://db/x", Access::default(), "the registry is postgres://user@host:port/database or sqlite:PATH"),
        ("postgres://u:secret@127.0.0.1/x", Access::default(), "the URL holds a password"),
        ("postgres://u@db.example.com/x", ca("missing.pem"), "missing.pem: reading [fleet] registry_ca_file"),
        (
            "postgres://u@127.0.0.1/x?sslmode=require",
            ca("empty.pem"),
            "empty.pem: [fleet] registry_ca_file holds no PEM certificate",
        ),
    ] {
        let error = Registry::open(url, dir.path(), &access).err().unwrap();
        assert!(error.to_string().contains(expected), "{url}: {error}");
        assert!(!error.to_string().contains("secret"), "the password is never printed: {error}");
    }
}

/// TLS to PostgreSQL (the test server has a certificate for 127.0.0.1 from a CA made by
/// scripts/services.sh): trusted through `registry_ca_file`, the session is encrypted and the
/// registry works over it; the system's bundle does not know that CA, and a name the certificate
/// does not carry (`localhost`) is refused — nothing falls back to plain text.
#[test]
fn tls_to_postgresql_is_verified() {
    use shipshape_fleet::registry::postgres::PgSql;
    let (Ok(base), Ok(ca)) = (std::env::var("SHIPSHAPE_TEST_POSTGRES"), std::env::var("SHIPSHAPE_TEST_POSTGRES_CA"))
    else {
        eprintln!("no PostgreSQL with TLS (scripts/services.sh starts one): skipped");
        return;
    };
    let trusted = Access { password: None, ca_file: Some(ca.into()) };
    let url = format!("{base}?sslmode=require");
    let mut sql = PgSql::connect(&url, &trusted).unwrap();
    assert!(sql.encrypted().unwrap(), "sslmode=require gives an encrypted session");
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::open(&url, dir.path(), &trusted).unwrap();
    assert_eq!(registry.version().unwrap() as usize, MIGRATIONS.len());
    registry.pointers().unwrap();
    // Loopback without sslmode: plain text (the socket never leaves the host).
    assert!(!PgSql::connect(&base, &Access::default()).unwrap().encrypted().unwrap());
    // The system's CA bundle does not vouch for the test CA.
    let error = PgSql::connect(&url, &Access::default()).err().unwrap().to_string();
    assert!(error.contains("connecting over verified TLS") && error.contains("UnknownIssuer"), "{error}");
    // The certificate names 127.0.0.1, not localhost.
    let error = PgSql::connect(&url.replace("127.0.0.1", "localhost"), &trusted).err().unwrap().to_string();
    assert!(error.contains("certificate not valid for name \"localhost\""), "{error}");
}
