//! `[retention]` and `shipshape gc`: release directories, journals, history, raw events — pruned
//! without losing what rollbacks, statuses and windows need.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::util::watch::{self, MINUTE};
use crate::util::{Setup, files_of, sha256sum, snapshot, stderr_of};

const T: [&str; 6] = [
    "2025-10-12T19:00:00Z",
    "2025-10-12T20:00:00Z",
    "2025-10-12T21:00:00Z",
    "2025-10-12T22:00:00Z",
    "2025-10-12T23:00:00Z",
    "2025-10-13T00:00:00Z",
];

/// Set `key = value` lines in the example's `[retention]` section (which documents every key,
/// `raw_events` commented out).
fn with_retention(s: &Setup, retention: &str) {
    let mut config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    for line in retention.lines() {
        let key = line.split('=').next().unwrap().trim();
        let old = config
            .lines()
            .find(|l| l.starts_with(&format!("{key} =")) || l.starts_with(&format!("# {key} =")))
            .unwrap_or_else(|| panic!("no {key} in the example's [retention]"))
            .to_string();
        config = config.replacen(&old, line, 1);
    }
    fs::write(s.ws.path("shipshape.toml"), config).unwrap();
}

/// A release whose config differs from every other one (`n`).
fn release_n(s: &Setup, n: usize) -> PathBuf {
    let config = fs::read_to_string(s.ws.path("src/app/config.py")).unwrap();
    s.ws.write("src/app/config.py", format!("{config}# release {n}\n").as_bytes());
    s.release(T[n])
}

fn ok(output: std::process::Output, what: &str) -> String {
    assert!(output.status.success(), "{what}: {}", stderr_of(&output));
    String::from_utf8(output.stdout).unwrap()
}

fn release_dirs(s: &Setup) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(s.target.join(".shipshape/releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".state.yaml"))
        .collect();
    names.sort();
    names
}

fn id(manifest: &std::path::Path) -> String {
    manifest.file_stem().unwrap().to_string_lossy().into_owned()
}

/// Symlink mode, keep_releases = 2: after each deploy the oldest directories go — never the
/// active one, never the last known good one (though older than a rolled-back one) — and the
/// releases kept prove themselves intact without a rebuild; a rollback to a pruned release
/// rebuilds it from the store, byte for byte.
#[test]
fn keep_releases_never_prunes_the_active_or_last_known_good_release() {
    let s = Setup::new("symlink");
    with_retention(&s, "keep_releases = 2\nkeep_journals = 2");
    let r: Vec<PathBuf> = (0..4).map(|n| release_n(&s, n)).collect();
    ok(s.deploy(T[0], &r[0]), "deploy r0");
    ok(s.deploy(T[1], &r[1]), "deploy r1");
    ok(s.deploy(T[2], &r[2]), "deploy r2");
    // r2 regressed: back to r1, which becomes the last known good once r3 is deployed.
    ok(s.shipshape("2025-10-12T21:30:00Z", &["rollback", "--yes", "--reason", "regression"]), "rollback to r1");
    let before_r3 = release_dirs(&s);
    assert_eq!(before_r3, [id(&r[1]), id(&r[2])], "after the rollback: r1 (current) and r2 (recent)");
    ok(s.deploy(T[3], &r[3]), "deploy r3");
    // r3 active, r1 last known good; r2 (rolled back) and r0 went.
    assert_eq!(release_dirs(&s), [id(&r[1]), id(&r[3])]);
    assert_eq!(fs::read_dir(s.ws.path("release/journal/done")).unwrap().count(), 2, "keep_journals = 2");
    // r1's unchanged files were hard links shared with the pruned r0: removing r0 moved their
    // ctime, and the prune re-stamped r1's stat cache, so r1 still proves intact without re-hashing.
    assert_stat_cache_current(&s, &id(&r[1]));
    assert_stat_cache_current(&s, &id(&r[3]));
    let status = ok(s.shipshape(T[3], &["status"]), "status");
    assert!(status.contains("in sync"), "{status}");
    // The default rollback goes to the kept last known good release.
    ok(s.shipshape(T[3], &["rollback", "--yes", "--reason", "test"]), "rollback to r1");
    s.assert_holds(&r[1], &r[3]);
    // A rollback to a pruned release (r0) rebuilds its directory from the store.
    ok(s.shipshape(T[3], &["rollback", "--to", &id(&r[0]), "--yes", "--reason", "older"]), "rollback to r0");
    for (path, hash) in files_of(&r[0]) {
        assert_eq!(sha256sum(&s.live(&path)), hash, "{path}");
    }
    let listed = ok(s.shipshape(T[3], &["status", "--deep"]), "status --deep");
    assert!(listed.contains("in sync"), "{listed}");
}

/// Every file of a release directory is exactly as its stat cache records (inode, size, mtime, ctime).
fn assert_stat_cache_current(s: &Setup, release: &str) {
    use std::os::unix::fs::MetadataExt;
    let state: Value =
        serde_json::from_slice(&fs::read(s.target.join(format!(".shipshape/releases/{release}.state.yaml"))).unwrap())
            .unwrap();
    let files = state["files"].as_object().unwrap();
    assert!(!files.is_empty());
    for (path, stat) in files {
        let meta = fs::metadata(s.target.join(".shipshape/releases").join(release).join(path)).unwrap();
        let ctime_ns = meta.ctime() * 1_000_000_000 + meta.ctime_nsec();
        assert_eq!(stat["ctime_ns"].as_i64(), Some(ctime_ns), "{release}/{path}: stale stat cache");
        assert_eq!(stat["ino"].as_u64(), Some(meta.ino()), "{release}/{path}");
    }
}

/// `gc --dry-run` lists every decision and changes nothing; `gc` then does exactly that.
#[test]
fn gc_dry_run_changes_nothing_and_gc_does_what_it_said() {
    let s = Setup::new("symlink");
    let r: Vec<PathBuf> = (0..3).map(|n| release_n(&s, n)).collect();
    for (n, manifest) in r.iter().enumerate() {
        ok(s.deploy(T[n], manifest), "deploy");
    }
    assert_eq!(release_dirs(&s).len(), 3, "the default keep_releases is 5");
    with_retention(&s, "keep_releases = 1\nkeep_journals = 1");
    let before = (snapshot(&s.ws.root), snapshot(&s.target));
    let dry = ok(s.shipshape(T[3], &["gc", "--dry-run"]), "gc --dry-run");
    assert_eq!((snapshot(&s.ws.root), snapshot(&s.target)), before, "a dry run changed the disk");
    assert!(dry.contains(&format!("keep    {}  active", id(&r[2]))), "{dry}");
    assert!(dry.contains(&format!("keep    {}  good", id(&r[1]))) && dry.contains("(last known good)"), "{dry}");
    assert!(dry.contains(&format!("remove  {}  good", id(&r[0]))), "{dry}");
    assert!(dry.contains("finished journals: 3 in release/journal/done/ (keep_journals = 1): remove 2"), "{dry}");
    assert!(dry.contains("dry run: nothing changed"), "{dry}");
    let json: Value = serde_json::from_str(&ok(s.shipshape(T[3], &["gc", "--dry-run", "--json"]), "json")).unwrap();
    assert_eq!(json["gc"]["journals"]["remove"].as_array().unwrap().len(), 2);
    ok(s.shipshape(T[3], &["gc"]), "gc");
    assert_eq!(release_dirs(&s), [id(&r[1]), id(&r[2])]);
    assert_eq!(fs::read_dir(s.ws.path("release/journal/done")).unwrap().count(), 1);
    // The files r1 and r2 shared with r0 had their ctime moved by its removal (a later process
    // than the deploys: a later clock tick); their stat caches were re-stamped.
    assert_stat_cache_current(&s, &id(&r[1]));
    assert_stat_cache_current(&s, &id(&r[2]));
    s.assert_holds(&r[2], &r[0]);
}

/// History compaction: old entries move to the archive, `history` says so, `history --all` shows
/// them, and every release keeps its status (so rollback still goes to the last known good).
#[test]
fn history_compaction_archives_old_entries_and_keeps_statuses() {
    let s = Setup::new("copy");
    let r: Vec<PathBuf> = (0..3).map(|n| release_n(&s, n)).collect();
    ok(s.deploy(T[0], &r[0]), "deploy r0");
    ok(s.deploy(T[1], &r[1]), "deploy r1");
    ok(s.shipshape(T[1], &["rollback", "--yes", "--reason", "regression"]), "rollback to r0");
    ok(s.deploy(T[2], &r[2]), "deploy r2");
    with_retention(&s, "history = \"1d\"\nhistory_entries = 2");
    let later = "2025-10-20T00:00:00Z";
    let statuses = |now: &str| -> Vec<(Value, Value)> {
        let json: Value =
            serde_json::from_str(&ok(s.shipshape(now, &["history", "--json", "--all"]), "history")).unwrap();
        json.as_array().unwrap().iter().map(|e| (e["release_id"].clone(), e["release_status"].clone())).collect()
    };
    let before = statuses(later);
    let status_before: Value = serde_json::from_str(&ok(s.shipshape(later, &["status", "--json"]), "status")).unwrap();
    let out = ok(s.shipshape(later, &["gc"]), "gc");
    assert!(out.contains("history: 4 entries; archived 2 up to"), "{out}");
    let archive: Vec<_> = fs::read_dir(s.ws.path("data/monitoring/releases/history-archive")).unwrap().collect();
    assert_eq!(archive.len(), 2, "one archive file and the lifecycle snapshot");
    let listed = ok(s.shipshape(later, &["history"]), "history");
    assert!(listed.contains("(2 earlier entries archived by shipshape gc"), "{listed}");
    let recent: Value = serde_json::from_str(&ok(s.shipshape(later, &["history", "--json"]), "history")).unwrap();
    assert_eq!(recent.as_array().unwrap().len(), 2);
    assert_eq!(statuses(later), before, "history --all shows every entry with the same statuses");
    let status_after: Value = serde_json::from_str(&ok(s.shipshape(later, &["status", "--json"]), "status")).unwrap();
    assert_eq!(status_after["rollback_to"], status_before["rollback_to"]);
    assert_eq!(status_after["rollback_candidates"], status_before["rollback_candidates"]);
    // r1 was rolled back: the last known good is r0, whose entries are all archived now.
    assert_eq!(status_after["rollback_to"], Value::String(id(&r[0])), "{status_after}");
    // A second gc has nothing to do; recording continues after the compaction.
    let again = ok(s.shipshape(later, &["gc"]), "gc again");
    assert!(again.contains("nothing to archive"), "{again}");
}

/// Raw events older than `raw_events` are deleted; the windows read the aggregates, so an
/// evaluation sees the same numbers; a re-sent old event is refused as expired, not counted twice.
#[test]
fn raw_event_retention_keeps_the_aggregates_and_refuses_expired_events() {
    let (s, _) = watch::deployed("");
    with_retention(&s, "raw_events = \"1h\"");
    let text = watch::events(MINUTE, 120, 4, 0.6, 2, 0.6, "e");
    let first = watch::ingest(&s, &watch::at(121 * MINUTE), &text);
    assert_eq!(first["accepted"], 720);
    let (pass, _) = watch::evaluate(&s, 121 * MINUTE);
    let before = watch::metric(&pass, "intraday_hit_ratio")["value"].clone();
    let now = watch::at(121 * MINUTE);
    let dry = ok(s.shipshape(&now, &["gc", "--dry-run", "--json"]), "gc --dry-run");
    let dry: Value = serde_json::from_str(&dry).unwrap();
    // Events in the first hour (minutes 1..60, at :30) are older than one hour.
    assert_eq!(dry["events"]["removed"], 60 * 6, "{dry}");
    let done: Value = serde_json::from_str(&ok(s.shipshape(&now, &["gc", "--json"]), "gc")).unwrap();
    assert_eq!(done["events"]["removed"], 60 * 6);
    let db = rusqlite::Connection::open(s.ws.path("data/monitoring/monitor.db")).unwrap();
    let raw: i64 = db.query_row("SELECT count(*) FROM events", [], |row| row.get(0)).unwrap();
    assert_eq!(raw, 720 - 360);
    let (pass, _) = watch::evaluate(&s, 121 * MINUTE);
    assert_eq!(watch::metric(&pass, "intraday_hit_ratio")["value"], before, "the window reads the aggregates");
    // The same file again: the pruned half is refused as expired, the rest are duplicates.
    let again = watch::ingest(&s, &now, &text);
    assert_eq!(
        (again["accepted"].as_u64(), again["expired"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(360), Some(360))
    );
    let (pass, _) = watch::evaluate(&s, 121 * MINUTE);
    assert_eq!(watch::metric(&pass, "intraday_hit_ratio")["value"], before, "nothing counted twice");
}
