//! Every bad input the foundation issue lists: each gets a clear one-line cause naming the file, a
//! non-zero exit code, and leaves every byte on disk as it was.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::util::{TestWorkspace, assert_one_line_error, make_writable, stderr_of};

const BAD_INPUT: i32 = 2;
const CHECK_FAILED: i32 = 1;
const LOCKED: i32 = 3;

/// Run `args` in `ws`, expect `code`, a first stderr line mentioning each needle, and no change on disk.
fn refused(ws: &TestWorkspace, args: &[&str], code: i32, needles: &[&str]) -> String {
    let before = ws.snapshot();
    let output = ws.cmd().args(args).output().unwrap();
    assert_eq!(output.status.code(), Some(code), "{args:?}: {}", stderr_of(&output));
    for needle in needles {
        assert_one_line_error(&output, needle);
    }
    crate::util::assert_same_tree(&before, &ws.snapshot(), &format!("{args:?}"));
    stderr_of(&output)
}

#[test]
fn missing_config_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        assert_cmd::Command::cargo_bin("shipshape").unwrap().current_dir(dir.path()).arg("audit").output().unwrap();
    assert_eq!(output.status.code(), Some(BAD_INPUT));
    assert_one_line_error(&output, "no shipshape.toml");
    assert!(stderr_of(&output).contains("shipshape init"));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn malformed_config_names_file_and_line() {
    let ws = TestWorkspace::example();
    ws.write("shipshape.toml", b"[release]\nenvironment = \"production\n");
    refused(&ws, &["audit"], BAD_INPUT, &["shipshape.toml:2:"]);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let ws = TestWorkspace::example();
    let text = fs::read_to_string(ws.path("shipshape.toml")).unwrap();
    ws.write(
        "shipshape.toml",
        text.replace("manifest_expiry = \"7d\"", "manifest_expiry = \"7d\"\nmanifest_expiryy = \"8d\"").as_bytes(),
    );
    refused(&ws, &["audit"], BAD_INPUT, &["shipshape.toml:16:1:", "release.manifest_expiryy", "unknown field"]);
}

#[test]
fn wrong_type_names_the_key() {
    let ws = TestWorkspace::example();
    let text = fs::read_to_string(ws.path("shipshape.toml")).unwrap();
    ws.write("shipshape.toml", text.replace("heightened_hours = 48", "heightened_hours = \"48\"").as_bytes());
    refused(&ws, &["audit"], BAD_INPUT, &["shipshape.toml:", "monitoring.heightened_hours", "invalid type"]);
}

#[test]
fn glob_matching_nothing_names_line_and_key() {
    let ws = TestWorkspace::example();
    let text = fs::read_to_string(ws.path("shipshape.toml")).unwrap();
    let line = text.lines().position(|l| l.contains("notebooks/**/*.ipynb")).unwrap() + 1;
    ws.write("shipshape.toml", text.replace("notebooks/**/*.ipynb", "reports/**/*.ipynb").as_bytes());
    refused(
        &ws,
        &["audit"],
        BAD_INPUT,
        &[&format!("shipshape.toml:{line}:"), "artifacts.notebooks.include", "matches no file"],
    );
}

#[test]
fn escaping_globs_are_refused() {
    for glob in ["../outside.yaml", "/etc/passwd", "src/../../x"] {
        let ws = TestWorkspace::example();
        let text = fs::read_to_string(ws.path("shipshape.toml")).unwrap();
        ws.write("shipshape.toml", text.replace("\"search_space.yaml\"", &format!("\"{glob}\"")).as_bytes());
        refused(&ws, &["audit"], BAD_INPUT, &["shipshape.toml:", "unsafe path"]);
    }
}

/// The names shipshape keeps in a target (`.shipshape/`, `current`, staging temporaries) are refused
/// at audit time, naming the file, the path and why — before a release could write over the
/// target's own state.
#[test]
fn reserved_target_names_are_refused_at_audit() {
    for (path, needle) in [
        (".shipshape/state.yaml", "`.shipshape/` is reserved"),
        (".ShipShape/lock", "`.shipshape/` is reserved"),
        ("current/config.yaml", "`current` at the top of the tree is reserved"),
        ("conf/.x.yaml.shipshape-20251012T190000-1", "has the form of the temporaries"),
    ] {
        let ws = TestWorkspace::example();
        let file = ws.path(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, b"release_id: forged\n").unwrap();
        let text = fs::read_to_string(ws.path("shipshape.toml")).unwrap();
        let line = format!("\"search_space.yaml\", \"{path}\"");
        ws.write("shipshape.toml", text.replace("\"search_space.yaml\"", &line).as_bytes());
        refused(&ws, &["audit"], BAD_INPUT, &["shipshape.toml", path, needle]);
    }
}

#[test]
fn symlink_out_of_the_workspace_is_refused() {
    let ws = TestWorkspace::example();
    let outside = ws.temp.path().join("secret.py");
    fs::write(&outside, b"API_KEY = 'x'\n").unwrap();
    fs::remove_file(ws.path("src/app/config.py")).unwrap();
    std::os::unix::fs::symlink(&outside, ws.path("src/app/config.py")).unwrap();
    refused(&ws, &["audit"], BAD_INPUT, &["src/app/config.py", "outside"]);
}

#[test]
fn symlink_inside_the_workspace_is_followed() {
    let ws = TestWorkspace::example();
    fs::rename(ws.path("search_space.yaml"), ws.path("src/search_space.yaml")).unwrap();
    std::os::unix::fs::symlink("src/search_space.yaml", ws.path("search_space.yaml")).unwrap();
    ws.cmd().arg("audit").assert().success();
}

#[test]
fn unreadable_file_is_named() {
    let ws = TestWorkspace::example();
    fs::set_permissions(ws.path("src/app/config.py"), fs::Permissions::from_mode(0o000)).unwrap();
    let is_root = fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false);
    if !is_root {
        refused(&ws, &["audit"], BAD_INPUT, &["src/app/config.py", "ermission denied"]);
        return;
    }
    // root reads anything: run the binary as `nobody`, with the workspace otherwise open to it.
    for entry in walk(&ws.temp.path().to_path_buf()) {
        if entry != ws.path("src/app/config.py") {
            let mode = if entry.is_dir() { 0o777 } else { 0o666 };
            fs::set_permissions(&entry, fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    fs::set_permissions(ws.temp.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let before = ws.snapshot();
    let binary = assert_cmd::cargo::cargo_bin("shipshape");
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&binary)
        .arg("audit")
        .current_dir(&ws.root)
        .env("SHIPSHAPE_NOW", "2025-10-12T19:00:00+05:30")
        .output()
        .expect("setpriv (util-linux) runs");
    assert_eq!(output.status.code(), Some(BAD_INPUT), "{}", stderr_of(&output));
    assert_one_line_error(&output, "src/app/config.py");
    assert_one_line_error(&output, "ermission denied");
    crate::util::assert_same_tree(&before, &ws.snapshot(), "the command");
}

fn walk(dir: &std::path::PathBuf) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[test]
fn artifact_changed_between_audit_and_manifest_is_named() {
    let ws = TestWorkspace::example();
    ws.cmd().arg("audit").assert().success();
    ws.cmd().arg("validate").assert().success();
    ws.write("data/models/student_model.pkl", b"retrained in a hurry");
    let stderr =
        refused(&ws, &["manifest"], CHECK_FAILED, &["data/models/student_model.pkl", "changed since the audit"]);
    assert!(stderr.contains("shipshape audit"), "says what to do: {stderr}");
    assert!(!ws.path("release/store/sha256").exists(), "no object was committed");
}

#[test]
fn earlier_manifest_changed_by_one_byte_breaks_the_chain() {
    let ws = TestWorkspace::example();
    let first = ws.release("2025-10-12T19:00:00+05:30", &[]);
    let second = ws.release("2025-10-12T20:00:00+05:30", &[]);
    // One byte of a value: the first hex digit of the recorded bundle hash ('a' <-> 'b', '0' <-> '1', ...).
    let mut bytes = fs::read(&first).unwrap();
    let at = String::from_utf8_lossy(&bytes).find("audit_bundle_sha256: sha256:").unwrap()
        + "audit_bundle_sha256: sha256:".len();
    bytes[at] =
        if bytes[at].is_ascii_digit() { b'0' + (bytes[at] - b'0' + 1) % 10 } else { b'a' + (bytes[at] - b'a' + 1) % 6 };
    fs::write(&first, bytes).unwrap();
    let before = ws.snapshot();
    let output = ws
        .cmd_at("2025-10-12T20:00:00+05:30")
        .args(["verify", "--integrity-only", second.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("FAIL chain") && stdout.contains("release_20251012_190000.yaml was changed"), "{stdout}");
    assert_one_line_error(&output, "release_20251012_200000.yaml failed verification");
    crate::util::assert_same_tree(&before, &ws.snapshot(), "the command");
    // And no new manifest may extend a broken chain.
    ws.cmd().arg("audit").assert().success();
    ws.cmd().arg("validate").assert().success();
    refused(&ws, &["manifest"], CHECK_FAILED, &["not intact"]);
}

#[test]
fn tampered_store_object_is_reported() {
    let ws = TestWorkspace::example();
    let manifest = ws.release("2025-10-12T19:00:00+05:30", &[]);
    let hash = crate::util::yaml_value(&manifest)["artifacts"]["models"][0]["hash"].as_str().unwrap().to_string();
    let hex = &hash["sha256:".len()..];
    let object = ws.path(&format!("release/store/sha256/{}/{}", &hex[..2], &hex[2..]));
    make_writable(&object);
    let mut bytes = fs::read(&object).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&object, bytes).unwrap();
    let before = ws.snapshot();
    let output = ws.cmd().args(["verify", "--integrity-only"]).output().unwrap();
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL store object") && l.contains("student_model.pkl") && l.contains("corrupt")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("FAIL backup") && l.contains("student_model.pkl")),
        "the hard-linked backup is bad too: {stdout}"
    );
    assert_eq!(stdout.lines().filter(|l| l.starts_with("FAIL")).count(), 2, "{stdout}");
    crate::util::assert_same_tree(&before, &ws.snapshot(), "the command");
}

#[test]
fn tampered_backup_is_reported() {
    let ws = TestWorkspace::example();
    ws.release("2025-10-12T19:00:00+05:30", &[]);
    let backup = ws.path("release/backups/release_20251012_190000/src/app/config.py");
    fs::remove_file(&backup).unwrap();
    fs::write(&backup, b"SETTINGS = 'tampered'\n").unwrap();
    let output = ws.cmd().args(["verify", "--integrity-only"]).output().unwrap();
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(failures.len(), 1, "{stdout}");
    assert!(
        failures[0].contains("backup")
            && failures[0].contains("src/app/config.py")
            && failures[0].contains("does not match"),
        "{stdout}"
    );
}

#[test]
fn deleted_store_object_is_reported() {
    let ws = TestWorkspace::example();
    let manifest = ws.release("2025-10-12T19:00:00+05:30", &[]);
    let hash = crate::util::yaml_value(&manifest)["artifacts"]["configs"][0]["hash"].as_str().unwrap().to_string();
    let hex = &hash["sha256:".len()..];
    fs::remove_file(ws.path(&format!("release/store/sha256/{}/{}", &hex[..2], &hex[2..]))).unwrap();
    let output = ws.cmd().args(["verify", "--integrity-only"]).output().unwrap();
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("FAIL store object") && l.contains("missing")), "{stdout}");
}

#[test]
fn manifest_with_unknown_field_is_refused() {
    let ws = TestWorkspace::example();
    let manifest = ws.release("2025-10-12T19:00:00+05:30", &[]);
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, text.replace("sequence: 1\n", "sequence: 1\napproved_by_everyone: true\n")).unwrap();
    refused(
        &ws,
        &["verify", "--integrity-only"],
        BAD_INPUT,
        &["release_20251012_190000.yaml:6:1:", "unknown field `approved_by_everyone`"],
    );
}

#[test]
fn manifest_with_duplicate_key_is_refused() {
    let ws = TestWorkspace::example();
    let manifest = ws.release("2025-10-12T19:00:00+05:30", &[]);
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, text.replace("release_type: minor\n", "release_type: minor\nrelease_type: hotfix\n")).unwrap();
    refused(
        &ws,
        &["verify", "--integrity-only"],
        BAD_INPUT,
        &["release_20251012_190000.yaml:5:1:", "duplicate mapping key: release_type"],
    );
}

#[test]
fn manifest_with_traversal_path_is_refused() {
    let ws = TestWorkspace::example();
    let manifest = ws.release("2025-10-12T19:00:00+05:30", &[]);
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, text.replace("- path: src/app/config.py", "- path: ../../etc/passwd")).unwrap();
    refused(&ws, &["verify", "--integrity-only"], BAD_INPUT, &["release_20251012_190000.yaml:", "unsafe path"]);
}

#[test]
fn manifest_with_reserved_target_path_is_refused() {
    let ws = TestWorkspace::example();
    let manifest = ws.release("2025-10-12T19:00:00+05:30", &[]);
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, text.replace("- path: src/app/config.py", "- path: .shipshape/state.yaml")).unwrap();
    refused(
        &ws,
        &["verify", "--integrity-only"],
        BAD_INPUT,
        &["release_20251012_190000.yaml:", "artifact `.shipshape/state.yaml`", "is reserved"],
    );
}

#[test]
fn manifest_with_wrong_type_is_refused() {
    let ws = TestWorkspace::example();
    let manifest = ws.release("2025-10-12T19:00:00+05:30", &[]);
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, text.replace("sequence: 1\n", "sequence: first\n")).unwrap();
    refused(
        &ws,
        &["verify", "--integrity-only"],
        BAD_INPUT,
        &["release_20251012_190000.yaml:5:11:", "sequence: invalid"],
    );
}

#[test]
fn non_utf8_manifest_is_refused() {
    let ws = TestWorkspace::example();
    let manifest = ws.release("2025-10-12T19:00:00+05:30", &[]);
    let mut bytes = fs::read(&manifest).unwrap();
    bytes.extend_from_slice(b"\xff\xfe\n");
    fs::write(&manifest, bytes).unwrap();
    refused(&ws, &["verify", "--integrity-only"], BAD_INPUT, &["release_20251012_190000.yaml", "UTF-8"]);
}

#[test]
fn nothing_to_verify_or_manifest_yet_says_what_to_do() {
    let ws = TestWorkspace::example();
    refused(&ws, &["verify", "--integrity-only"], BAD_INPUT, &["no manifest", "shipshape audit"]);
    refused(&ws, &["manifest"], BAD_INPUT, &["no audit bundle", "shipshape audit"]);
}

#[test]
fn held_lock_is_refused_at_once() {
    let ws = TestWorkspace::example();
    ws.cmd().arg("audit").assert().success();
    ws.cmd().arg("validate").assert().success();
    let lock = fs::OpenOptions::new().read(true).write(true).open(ws.path("release/.lock")).unwrap();
    lock.try_lock().unwrap();
    let before = ws.snapshot();
    let output = ws.cmd().arg("manifest").output().unwrap();
    assert_eq!(output.status.code(), Some(LOCKED), "{}", stderr_of(&output));
    assert_one_line_error(&output, "release/.lock is held by");
    crate::util::assert_same_tree(&before, &ws.snapshot(), "the command");
    drop(lock);
    ws.cmd().arg("manifest").assert().success();
}

#[test]
fn verify_refuses_a_manifest_outside_the_workspace() {
    let ws = TestWorkspace::example();
    ws.release("2025-10-12T19:00:00+05:30", &[]);
    let elsewhere = ws.temp.path().join("release_20251012_190000.yaml");
    fs::copy(ws.manifests()[0].clone(), &elsewhere).unwrap();
    refused(&ws, &["verify", "--integrity-only", elsewhere.to_str().unwrap()], BAD_INPUT, &["outside the workspace"]);
}

/// A manifest may be named by path, release id or `newest`; a name that matches none (a command
/// copied from the docs with another day's id) is refused listing the newest manifests.
#[test]
fn a_manifest_is_named_by_path_id_or_newest_and_a_wrong_name_lists_the_newest() {
    let ws = TestWorkspace::example();
    ws.release("2025-10-12T19:00:00+05:30", &[]);
    for name in ["newest", "release_20251012_190000", "release/manifests/release_20251012_190000.yaml"] {
        let output = ws.cmd().args(["verify", "--integrity-only", name]).output().unwrap();
        assert!(output.status.success(), "{name}: {}", stderr_of(&output));
    }
    let stderr =
        refused(&ws, &["verify", "release/manifests/release_20260101_090000.yaml"], BAD_INPUT, &["no manifest"]);
    assert!(stderr.contains("the newest is release_20251012_190000"), "{stderr}");
    refused(
        &ws,
        &["approve", "release_20260101_090000", "--role", "risk-manager", "--key", "k"],
        BAD_INPUT,
        &["no manifest release_20260101_090000"],
    );
}
