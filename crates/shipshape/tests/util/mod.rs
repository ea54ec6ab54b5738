//! Helpers shared by the integration tests: a fresh copy of the example workspace, the real binary,
//! an independent SHA-256 (coreutils' `sha256sum`), and whole-tree snapshots to prove that a refused
//! command changed nothing on disk.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's example workspace.
pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sensequant")
}

/// Copy a directory tree (regular files and directories; symlinks as symlinks).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            if entry.file_name() == "release" {
                continue;
            }
            copy_tree(&entry.path(), &target);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A fresh copy of the example workspace in a temporary directory; `.0` keeps it alive.
pub struct Workspace {
    pub temp: tempfile::TempDir,
    pub root: PathBuf,
}

impl Workspace {
    pub fn example() -> Workspace {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("sensequant");
        copy_tree(&example_dir(), &root);
        Workspace { temp, root }
    }

    /// The example as a git repository with one commit tagged v1.0.0.
    pub fn example_git() -> Workspace {
        let ws = Workspace::example();
        ws.git(&["init", "-q", "-b", "release/v1.0.0"]);
        ws.git(&["add", "-A"]);
        ws.git(&["commit", "-q", "-m", "initial"]);
        ws.git(&["tag", "v1.0.0"]);
        ws
    }

    pub fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .arg("-C")
            .arg(&self.root)
            .args([
                "-c",
                "user.name=Test",
                "-c",
                "user.email=test@example.com",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "tag.gpgsign=false",
            ])
            .args(args)
            .output()
            .expect("git runs");
        assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The real binary, run in the workspace root with a pinned clock.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("shipshape").unwrap();
        cmd.current_dir(&self.root).env("SHIPSHAPE_NOW", "2025-10-12T19:00:00+05:30").env_remove("NO_COLOR");
        cmd
    }

    pub fn cmd_at(&self, now: &str) -> assert_cmd::Command {
        let mut cmd = self.cmd();
        cmd.env("SHIPSHAPE_NOW", now);
        cmd
    }

    /// Every file under the root (path → bytes, plus mode for symlinks), for "nothing changed".
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        snapshot(&self.root)
    }

    pub fn write(&self, relative: &str, bytes: &[u8]) {
        let path = self.path(relative);
        make_writable(&path);
        fs::write(path, bytes).unwrap();
    }

    pub fn manifests(&self) -> Vec<PathBuf> {
        let dir = self.path("release/manifests");
        let mut out: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(entries) => {
                entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "yaml")).collect()
            }
            Err(_) => Vec::new(),
        };
        out.sort();
        out
    }

    /// audit + validate + manifest, returning the manifest path.
    pub fn release(&self, now: &str, extra: &[&str]) -> PathBuf {
        self.cmd_at(now).arg("audit").assert().success();
        self.cmd_at(now).args(["--quiet", "validate"]).assert().success();
        let output = self.cmd_at(now).arg("manifest").args(extra).assert().success().get_output().stdout.clone();
        self.path(String::from_utf8(output).unwrap().trim())
    }
}

pub fn make_writable(path: &Path) {
    if let Ok(metadata) = fs::metadata(path) {
        let mut permissions = metadata.permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        fs::set_permissions(path, permissions).unwrap();
    }
}

pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                if relative == Path::new(".git") {
                    continue;
                }
                out.insert(relative.join(""), Vec::new());
                walk(&path, root, out);
            } else if kind.is_symlink() {
                out.insert(relative, fs::read_link(&path).unwrap().into_os_string().into_encoded_bytes());
            } else if relative != Path::new("release/.lock") {
                out.insert(relative, fs::read(&path).unwrap());
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// SHA-256 by coreutils, independent of the crate under test.
pub fn sha256sum(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().expect("sha256sum runs");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

/// Parse YAML into a JSON value for field-by-field assertions.
pub fn yaml_value(path: &Path) -> serde_json::Value {
    serde_saphyr::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// stderr as text.
pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Assert that the first line of stderr starts with `error: ` and mentions `needle`.
pub fn assert_one_line_error(output: &std::process::Output, needle: &str) {
    let stderr = stderr_of(output);
    let first = stderr.lines().next().unwrap_or("");
    assert!(first.starts_with("error: "), "stderr: {stderr}");
    assert!(first.contains(needle), "expected {needle:?} in the first line of: {stderr}");
}

/// Assert two snapshots are equal, naming the paths that differ (not dumping bytes).
pub fn assert_same_tree(before: &BTreeMap<PathBuf, Vec<u8>>, after: &BTreeMap<PathBuf, Vec<u8>>, what: &str) {
    let mut differences = Vec::new();
    for (path, bytes) in before {
        match after.get(path) {
            None => differences.push(format!("removed {}", path.display())),
            Some(now) if now != bytes => differences.push(format!("changed {}", path.display())),
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        differences.push(format!("added {}", path.display()));
    }
    assert!(differences.is_empty(), "{what} changed the disk: {differences:?}");
}
