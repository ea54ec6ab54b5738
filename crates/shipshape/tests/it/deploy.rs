//! The deploy engine through the real binary: the story's rollback test, crash safety at every
//! step (failpoints and a real kill -9) in both modes, a full disk, post-deploy check failure with
//! automatic rollback, concurrent deploys, tampered objects and paths escaping the target.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{Setup, assert_one_line_error, files_of, stderr_of, two_releases, yaml_value};
use shipshape_core::config::DeployMode;
use shipshape_core::deploy::failpoint;

const CHECK_FAILED: i32 = 1;
const BAD_INPUT: i32 = 2;
const LOCKED: i32 = 3;
const ROLLED_BACK: i32 = 4;

const A: &str = "2025-10-12T19:00:00+05:30";
const B: &str = "2025-10-12T20:00:00+05:30";
const LATER: &str = "2025-10-12T21:00:00+05:30";

fn deploy_with_failpoint(s: &Setup, manifest: &Path, failpoint: &str) -> Output {
    s.ws.cmd_at(B).env(failpoint::VARIABLE, failpoint).arg("deploy").arg(manifest).arg("--yes").output().unwrap()
}

/// Every crash point of a transaction that writes `files` files in `mode`, named by the engine
/// itself (a renamed failpoint changes this list instead of silently never firing), then "none".
fn steps(mode: &str, files: usize) -> Vec<String> {
    let mode = if mode == "copy" { DeployMode::Copy } else { DeployMode::Symlink };
    let mut steps = failpoint::crash_points(mode, files);
    steps.push("none".into());
    steps
}

/// A step other than "none" must have aborted the process (a signal, no exit code).
fn assert_crashed_at(output: &Output, mode: &str, step: &str) {
    if step == "none" {
        assert!(output.status.success(), "{mode}: {}", stderr_of(output));
    } else {
        assert!(
            output.status.code().is_none() && stderr_of(output).contains(&format!("failpoint {step}: aborting")),
            "{mode} {step}: the step did not crash: {:?} {}",
            output.status,
            stderr_of(output)
        );
    }
}

/// A crash at every step of a deploy leaves, after `recover`, exactly the old or exactly the new
/// release: the old before the commit point, the new after it.
#[test]
fn crash_at_every_deploy_step_recovers_to_old_or_new() {
    for mode in ["copy", "symlink"] {
        for step in steps(mode, 2) {
            let step = step.as_str();
            let s = Setup::new(mode);
            let (a, b) = two_releases(&s, A, B);
            assert!(s.deploy(A, &a).status.success());
            let output = deploy_with_failpoint(&s, &b, step);
            assert_crashed_at(&output, mode, step);
            let crashed = step != "none";
            // Any mutating command recovers first; `recover` does only that.
            let output = s.shipshape(LATER, &["recover"]);
            assert!(output.status.success(), "{mode} {step}: {}", stderr_of(&output));
            let forward = !crashed || !failpoint::is_before_commit(step);
            if forward {
                s.assert_holds(&b, &a);
            } else {
                s.assert_holds(&a, &b);
            }
            let status = s.shipshape(LATER, &["status"]);
            assert!(
                status.status.success(),
                "{mode} {step}: status after recovery: {}",
                String::from_utf8_lossy(&status.stdout)
            );
            let expected = if forward { "release_20251012_200000" } else { "release_20251012_190000" };
            assert!(
                String::from_utf8_lossy(&status.stdout).contains(&format!("active release:  {expected}")),
                "{mode} {step}"
            );
            // Recovery is idempotent, and every journal is finished: retired to done/.
            let again = String::from_utf8(s.shipshape(LATER, &["recover"]).stdout).unwrap();
            assert!(again.contains("nothing to recover"), "{mode} {step}: {again}");
            let open: Vec<_> = fs::read_dir(s.ws.path("release/journal"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".jsonl"))
                .collect();
            assert!(open.is_empty(), "{mode} {step}: unfinished journals left: {open:?}");
            assert_eq!(fs::read_dir(s.ws.path("release/journal/done")).unwrap().count(), 2, "{mode} {step}");
        }
    }
}

/// The same for a rollback interrupted at every step.
#[test]
fn crash_at_every_rollback_step_recovers_to_old_or_new() {
    for mode in ["copy", "symlink"] {
        // In symlink mode a rollback reuses the earlier release's intact directory: nothing is
        // staged, so there are no staging crash points to pass.
        let reused = |step: &String| mode == "copy" || !step.starts_with("staging:");
        for step in steps(mode, 2).into_iter().filter(reused) {
            let step = step.as_str();
            let s = Setup::new(mode);
            let (a, b) = two_releases(&s, A, B);
            assert!(s.deploy(A, &a).status.success());
            assert!(s.deploy(B, &b).status.success());
            let output =
                s.ws.cmd_at(LATER).env(failpoint::VARIABLE, step).args(["rollback", "--yes"]).output().unwrap();
            assert_crashed_at(&output, mode, step);
            let crashed = step != "none";
            // The next mutating command recovers first: here, a dry run is not one, so recover.
            assert!(s.shipshape(LATER, &["recover"]).status.success());
            let back = !crashed || !failpoint::is_before_commit(step);
            if back {
                s.assert_holds(&a, &b);
            } else {
                s.assert_holds(&b, &a);
            }
        }
    }
}

/// A real `kill -9` in the middle of copying a large model.
#[test]
fn kill_9_during_deploy_recovers() {
    for mode in ["copy", "symlink"] {
        let s = Setup::new(mode);
        let a = s.release(A);
        let big: Vec<u8> = (0..64 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        s.ws.write("data/models/student_model.pkl", &big);
        let b = s.release(B);
        assert!(s.deploy(A, &a).status.success());
        let mut child =
            s.ws.std_cmd(B)
                .arg("deploy")
                .arg(&b)
                .arg("--yes")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150));
        let _ = Command::new("kill").args(["-9", &child.id().to_string()]).status();
        let _ = child.wait();
        assert!(s.shipshape(LATER, &["recover"]).status.success());
        let status = String::from_utf8(s.shipshape(LATER, &["status"]).stdout).unwrap();
        if status.contains("release_20251012_200000") {
            s.assert_holds(&b, &a);
        } else {
            s.assert_holds(&a, &b);
        }
    }
}

/// A full disk: the deploy is refused (or fails) cleanly and the target is unchanged.
#[test]
fn full_disk_leaves_the_target_unchanged() {
    let s = Setup::new("copy");
    let a = s.release(A);
    fs::create_dir_all(&s.target).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&s.target)
        .status()
        .map(|st| st.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("SKIPPED full_disk_leaves_the_target_unchanged: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(s.target.clone());
    assert!(s.deploy(A, &a).status.success());
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    s.ws.write("data/models/student_model.pkl", &big);
    let b = s.release(B);
    let before = crate::util::snapshot(&s.target);
    let output = s.deploy(B, &b);
    assert_eq!(output.status.code(), Some(CHECK_FAILED), "{}", stderr_of(&output));
    assert_one_line_error(&output, "bytes free, the deploy needs");
    crate::util::assert_same_tree(&before, &crate::util::snapshot(&s.target), "a deploy onto a full disk");
    s.assert_holds(&a, &b);
    // Past the free-space check (debug builds can skip it), the write itself hits ENOSPC: the
    // staged files are removed and the old release stays, exactly.
    let output =
        s.ws.cmd_at(B)
            .env(failpoint::VARIABLE, failpoint::SKIP_SPACE_CHECK)
            .arg("deploy")
            .arg(&b)
            .arg("--yes")
            .output()
            .unwrap();
    assert_eq!(output.status.code(), Some(74), "{}", stderr_of(&output));
    assert_one_line_error(&output, "No space left on device");
    s.assert_holds(&a, &b);
    let journal = fs::read_dir(s.ws.path("release/journal/done"))
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(journal.contains("\"outcome\":\"failed\""), "{journal}");
}

/// A tmpfs mounted at `dir` (holding what `dir` held), unmounted on drop; `None` where mounting is
/// not allowed (not root).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount_over(dir: &Path, size: &str) -> Option<SmallDisk> {
        let saved = dir.with_extension("saved");
        fs::rename(dir, &saved).unwrap();
        fs::create_dir(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|st| st.success());
        if !mounted {
            fs::remove_dir(dir).unwrap();
            fs::rename(&saved, dir).unwrap();
            return None;
        }
        assert!(Command::new("cp").arg("-a").arg(saved.join(".")).arg(dir).status().unwrap().success());
        Some(SmallDisk(dir.to_path_buf()))
    }

    /// Fill the disk, then free `free` bytes (rounded to pages by tmpfs).
    fn leave_free(&self, free: u64) {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = fs::File::create(&path).unwrap();
        let chunk = vec![0xA5u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        while file.write_all(&[0xA5]).is_ok() {}
        drop(file);
        let size = fs::metadata(&path).unwrap().len();
        fs::File::options().write(true).open(&path).unwrap().set_len(size.saturating_sub(free)).unwrap();
    }

    fn free_all(&self) {
        let _ = fs::remove_file(self.0.join("filler"));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A full disk under the workspace (journal, registry, anti-rollback state) at many free-space
/// levels, from none to plenty. Each deploy of B over A ends one of three ways, and each way tells
/// the truth: refused or undone before the commit point (exit 74, A exactly, status clean); past it
/// (exit 5 "is live … run `shipshape recover`", B exactly, `status` exit 5 naming the unfinished
/// transaction, and `rollback` recovers first — completing B — before going back to A); or done.
#[test]
fn disk_full_before_and_after_the_commit_point_says_which() {
    let s = Setup::new("copy");
    let (a, b) = two_releases(&s, A, B);
    assert!(s.deploy(A, &a).status.success());
    let pristine_ws = s.ws.temp.path().join("pristine-ws");
    let pristine_target = s.ws.temp.path().join("pristine-prod");
    let copy = |from: &Path, to: &Path| {
        let _ = fs::remove_dir_all(to);
        fs::create_dir_all(to).unwrap();
        assert!(Command::new("cp").arg("-a").arg(from.join(".")).arg(to).status().unwrap().success());
    };
    copy(&s.ws.root, &pristine_ws);
    copy(&s.target, &pristine_target);
    let Some(disk) = SmallDisk::mount_over(&s.ws.root, "8m") else {
        eprintln!("SKIPPED disk_full_before_and_after_the_commit_point_says_which: cannot mount a tmpfs (needs root)");
        return;
    };
    let mut endings = std::collections::BTreeSet::new();
    for pages in [0u64, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32, 256] {
        // Back to: A deployed, B approved, nothing pending.
        for entry in fs::read_dir(&s.ws.root).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { fs::remove_dir_all(&path).unwrap() } else { fs::remove_file(&path).unwrap() }
        }
        copy(&pristine_ws, &s.ws.root);
        copy(&pristine_target, &s.target);
        disk.leave_free(pages * 4096);
        let output = s.deploy(B, &b);
        let stderr = stderr_of(&output);
        let code = output.status.code();
        let live_is_b = match code {
            Some(0) => true,
            Some(74) => {
                assert!(stderr.contains("No space left on device"), "{pages} pages: {stderr}");
                false
            }
            Some(5) => {
                assert!(stderr.contains("run `shipshape recover`"), "{pages} pages: {stderr}");
                stderr.contains("release_20251012_200000 is live: the deploy passed its commit point")
            }
            _ => panic!("{pages} pages free: exit {code:?}: {stderr}"),
        };
        eprintln!("{pages} pages free: exit {code:?}, B live: {live_is_b}");
        endings.insert((code, live_is_b));
        if live_is_b {
            s.assert_holds(&b, &a)
        } else {
            s.assert_holds(&a, &b)
        }
        // Still full: status tells what production serves.
        let status = s.shipshape(LATER, &["status"]);
        let text = String::from_utf8_lossy(&status.stdout).into_owned();
        if code == Some(5) {
            assert_eq!(status.status.code(), Some(5), "{pages} pages: {text}");
            assert!(text.contains("UNFINISHED:") && text.contains("shipshape recover"), "{pages} pages: {text}");
        } else {
            let active = if live_is_b { "release_20251012_200000" } else { "release_20251012_190000" };
            assert!(text.contains(&format!("active release:  {active}")), "{pages} pages: {text}");
            assert!(text.contains("in sync") && status.status.success(), "{pages} pages: {text}");
        }
        // Space freed: a rollback recovers first, then goes back to A whatever the deploy left.
        disk.free_all();
        let output = s.shipshape(LATER, &["rollback", "--yes"]);
        if live_is_b {
            assert!(output.status.success(), "{pages} pages: {}", stderr_of(&output));
            if code == Some(5) {
                assert!(stderr_of(&output).contains("recovered interrupted transaction"), "{pages} pages");
            }
            let history = String::from_utf8(s.shipshape(LATER, &["history"]).stdout).unwrap();
            let deployed = history.find("deploy         release_20251012_200000");
            let rolled = history.find("rollback       release_20251012_190000");
            assert!(deployed.is_some() && deployed < rolled, "{pages} pages: {history}");
        } else {
            assert_eq!(output.status.code(), Some(2), "{pages} pages: {}", stderr_of(&output));
            assert!(stderr_of(&output).contains("no last known good release"), "{pages} pages");
        }
        s.assert_holds(&a, &b);
        let status = s.shipshape(LATER, &["status"]);
        assert!(status.status.success(), "{pages} pages: {}", String::from_utf8_lossy(&status.stdout));
    }
    assert!(endings.contains(&(Some(74), false)), "no level failed before the commit point: {endings:?}");
    assert!(endings.contains(&(Some(5), true)), "no level failed after the commit point: {endings:?}");
    assert!(endings.contains(&(Some(0), true)), "no level had room enough: {endings:?}");
}

/// A deploy that changes nothing — not confirmed, a dry run, an unapproved manifest — leaves no
/// trace in a target that did not exist: no directory, no `.shipshape/`, no lock file.
#[test]
fn refused_deploys_leave_no_directory_behind() {
    for mode in ["copy", "symlink"] {
        let s = Setup::new(mode);
        let a = s.release(A);
        let unapproved = s.ws.release(B, &["--type", "hotfix"]);
        let no_terminal = s.ws.cmd_at(A).arg("deploy").arg(&a).output().unwrap();
        assert_eq!(no_terminal.status.code(), Some(BAD_INPUT), "{}", stderr_of(&no_terminal));
        let dry = s.ws.cmd_at(A).arg("deploy").arg(&a).arg("--dry-run").output().unwrap();
        assert!(dry.status.success(), "{}", stderr_of(&dry));
        let untrusted = s.deploy(B, &unapproved);
        assert_eq!(untrusted.status.code(), Some(CHECK_FAILED), "{}", stderr_of(&untrusted));
        let recover = s.shipshape(B, &["recover"]);
        assert!(recover.status.success(), "{}", stderr_of(&recover));
        assert!(!s.target.exists(), "{mode}: {:?}", crate::util::snapshot(&s.target).keys().collect::<Vec<_>>());
        // …and the first real deploy creates it.
        assert!(s.deploy(A, &a).status.success());
        s.assert_holds(&a, &a);
    }
}

/// The registry lost its active release (deleted, restored from an old backup): `status` does not
/// say "nothing deployed" while the target holds a release; it says what the target holds and how
/// to re-register it, and that command works without rewriting a file.
#[test]
fn status_tells_when_the_target_holds_a_release_the_registry_lost() {
    for mode in ["copy", "symlink"] {
        let s = Setup::new(mode);
        let a = s.release(A);
        assert!(s.deploy(A, &a).status.success());
        fs::remove_file(s.ws.path("data/monitoring/releases/active_release.yaml")).unwrap();
        let status = s.shipshape(LATER, &["status"]);
        let text = String::from_utf8_lossy(&status.stdout).into_owned();
        assert_eq!(status.status.code(), Some(CHECK_FAILED), "{mode}: {text}");
        assert!(
            text.contains("none registered, but the target")
                && text.contains("holds release_20251012_190000")
                && text.contains("shipshape deploy release/manifests/release_20251012_190000.yaml"),
            "{mode}: {text}"
        );
        let json = s.shipshape(LATER, &["status", "--json"]);
        let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(value["target_holds"], "release_20251012_190000", "{mode}");
        let redeploy =
            s.ws.cmd_at(LATER)
                .arg("deploy")
                .arg("release/manifests/release_20251012_190000.yaml")
                .arg("--yes")
                .output()
                .unwrap();
        assert!(redeploy.status.success(), "{mode}: {}", stderr_of(&redeploy));
        let status = s.shipshape(LATER, &["status"]);
        let text = String::from_utf8_lossy(&status.stdout).into_owned();
        assert!(status.status.success() && text.contains("active release:  release_20251012_190000"), "{mode}: {text}");
        s.assert_holds(&a, &a);
    }
}

/// `[deploy] target` may be absolute or climb out of the workspace, but never be the workspace or
/// lie in its release/, .git/ or monitoring registry; the refusal names the file and what it is.
#[test]
fn a_target_inside_the_workspaces_own_directories_is_refused() {
    let s = Setup::new("copy");
    let a = s.release(A);
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    for (target, what) in [
        (".", "the workspace itself"),
        ("release/prod", "the workspace's release/ directory"),
        (".git/prod", "the workspace's .git/ directory"),
        ("data/monitoring/prod", "the monitoring registry"),
    ] {
        s.ws.write(
            "shipshape.toml",
            config.replace("target = \"../prod\"", &format!("target = \"{target}\"")).as_bytes(),
        );
        let output = s.ws.cmd_at(A).arg("deploy").arg(&a).arg("--dry-run").output().unwrap();
        assert_eq!(output.status.code(), Some(BAD_INPUT), "{target}: {}", stderr_of(&output));
        assert_one_line_error(&output, "shipshape.toml: deploy.target");
        assert!(stderr_of(&output).contains(what), "{target}: {}", stderr_of(&output));
        assert!(!s.ws.path(target).join(".shipshape").exists(), "{target}");
    }
    let absolute = s.ws.temp.path().join("abs-prod");
    s.ws.write(
        "shipshape.toml",
        config.replace("target = \"../prod\"", &format!("target = \"{}\"", absolute.display())).as_bytes(),
    );
    assert!(s.deploy(A, &a).status.success());
    assert!(absolute.join("src/app/config.py").is_file());
}

/// A manifest made after "now" (a wrong clock somewhere, or an edited timestamp) is not deployed;
/// within the 5-minute clock-skew allowance it is.
#[test]
fn a_manifest_from_the_future_is_refused() {
    let s = Setup::new("copy");
    let b = s.release(B);
    let output = s.deploy(A, &b); // an hour before it was made
    assert_eq!(output.status.code(), Some(CHECK_FAILED), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("after now") && stderr_of(&output).contains("clock-skew allowance"),
        "{}",
        stderr_of(&output)
    );
    assert!(!s.target.exists(), "nothing was deployed");
    let integrity = s.ws.cmd_at(A).arg("verify").arg("--integrity-only").arg(&b).output().unwrap();
    assert!(integrity.status.success(), "{}", stderr_of(&integrity));
    let said = format!("{}{}", String::from_utf8_lossy(&integrity.stdout), stderr_of(&integrity));
    assert!(said.contains("after now"), "a warning: {said}");
    let output = s.deploy("2025-10-12T19:57:00+05:30", &b); // 3 minutes early: clock skew
    assert!(output.status.success(), "{}", stderr_of(&output));
}

#[test]
fn failing_post_deploy_check_rolls_back_automatically() {
    for mode in ["copy", "symlink"] {
        let checks = "[[deploy.post_deploy_checks]]\nname = \"config loads\"\ncommand = \"grep -q 0.62 \\\"$SHIPSHAPE_TARGET\\\"/src/app/config.py\"\ntimeout = \"30s\"\n";
        let s = Setup::with_checks(mode, checks);
        let (a, b) = two_releases(&s, A, B); // B changes 0.62 to 0.64: the check fails
        assert!(s.deploy(A, &a).status.success(), "A passes its check");
        let output = s.deploy(B, &b);
        assert_eq!(output.status.code(), Some(ROLLED_BACK), "{mode}: {}", stderr_of(&output));
        assert_one_line_error(
            &output,
            "failed its post-deploy check and was rolled back to release_20251012_190000: config loads",
        );
        s.assert_holds(&a, &b);
        let history = String::from_utf8(s.shipshape(LATER, &["history"]).stdout).unwrap();
        assert!(
            history.contains("deploy_failed  release_20251012_200000")
                && history.contains("auto_rollback  release_20251012_190000"),
            "{history}"
        );
        let active = yaml_value(&s.ws.path("data/monitoring/releases/active_release.yaml"));
        assert_eq!(active["release_id"], "release_20251012_190000");
    }
}

/// The example's own post-deploy check passes in both modes: `SHIPSHAPE_TARGET` is the tree being
/// made live (the target in copy mode, the release's directory in symlink mode), so a check written
/// once reads the new release's files in either.
#[test]
fn the_examples_post_deploy_check_passes_in_both_modes() {
    let example = fs::read_to_string(crate::util::example_dir().join("shipshape.toml")).unwrap();
    let checks = &example[example.find("[[deploy.post_deploy_checks]]").expect("the example has a check")..];
    for mode in ["copy", "symlink"] {
        let record = "[[deploy.post_deploy_checks]]\nname = \"record\"\ncommand = \"printf '%s|%s|%s' \\\"$SHIPSHAPE_TARGET\\\" \\\"$SHIPSHAPE_TARGET_ROOT\\\" \\\"$SHIPSHAPE_RELEASE_ID\\\" > ../check_env\"\n";
        let s = Setup::with_checks(mode, &format!("{checks}\n{record}"));
        let a = s.release(A);
        let output = s.deploy(A, &a);
        assert!(output.status.success(), "{mode}: {}", stderr_of(&output));
        let seen = fs::read_to_string(s.ws.temp.path().join("check_env")).unwrap();
        let root = s.target.canonicalize().unwrap();
        let tree = match mode {
            "copy" => root.clone(),
            _ => root.join(".shipshape/releases/release_20251012_190000"),
        };
        assert_eq!(seen, format!("{}|{}|release_20251012_190000", tree.display(), root.display()), "{mode}");
        let history = String::from_utf8(s.shipshape(LATER, &["history"]).stdout).unwrap();
        assert!(!history.contains("auto_rollback"), "{mode}: {history}");
    }
}

/// Rollback goes to the last known good release — the one that ran before — not to the manifest
/// before the active one in the chain: two hotfix manifests made and never approved lie between.
/// `status`, `rollback --dry-run`, the refusal of a release that never ran and `history` all say so.
#[test]
fn rollback_goes_to_the_last_known_good_release_past_unapproved_manifests() {
    let s = Setup::new("copy");
    let a = s.release(A);
    assert!(s.deploy(A, &a).status.success());
    let mut hotfixes = Vec::new();
    for (n, time) in ["2025-10-12T19:20:00+05:30", "2025-10-12T19:40:00+05:30"].iter().enumerate() {
        let space = fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
        s.ws.write("search_space.yaml", format!("{space}# hotfix attempt {n}\n").as_bytes());
        hotfixes.push(s.ws.release(time, &["--type", "hotfix"])); // made, never approved
    }
    let config = fs::read_to_string(s.ws.path("src/app/config.py")).unwrap();
    s.ws.write("src/app/config.py", config.replace("0.62", "0.64").as_bytes());
    let b = s.release(B);
    assert!(crate::util::yaml_value(&b)["rollback_plan"]["previous_release_id"] == "release_20251012_194000");
    assert!(s.deploy(B, &b).status.success());

    let status = String::from_utf8(s.shipshape(LATER, &["status"]).stdout).unwrap();
    assert!(status.contains("rollback to:     release_20251012_190000 (last known good"), "{status}");
    let json: serde_json::Value = serde_json::from_slice(&s.shipshape(LATER, &["status", "--json"]).stdout).unwrap();
    assert_eq!(json["rollback_to"], "release_20251012_190000");
    let dry = s.shipshape(LATER, &["rollback", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr_of(&dry));
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("release_20251012_200000 -> release_20251012_190000"),
        "{:?}",
        dry
    );
    let never_ran = s.shipshape(LATER, &["rollback", "--to", "release_20251012_192000", "--yes"]);
    assert_eq!(never_ran.status.code(), Some(BAD_INPUT));
    assert!(
        stderr_of(&never_ran).contains("it was never deployed here")
            && stderr_of(&never_ran).contains("candidates: release_20251012_190000 (good"),
        "{}",
        stderr_of(&never_ran)
    );
    let output = s.shipshape(LATER, &["rollback", "--yes"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    s.assert_holds(&a, &b);
    let history = String::from_utf8(s.shipshape(LATER, &["history"]).stdout).unwrap();
    assert!(
        history.contains("release_20251012_190000  active") && history.contains("release_20251012_200000  rolled_back"),
        "{history}"
    );
    assert!(
        history.contains(
            "manifests never deployed:\n  release_20251012_194000  superseded\n  release_20251012_192000  superseded"
        ),
        "the hotfixes made and never deployed: {history}"
    );
    // From A, B was rolled back and nothing else ran: no last known good, B is a named candidate.
    let again = s.shipshape(LATER, &["rollback", "--yes"]);
    assert_eq!(again.status.code(), Some(BAD_INPUT));
    assert!(stderr_of(&again).contains("candidates: release_20251012_200000 (rolled_back"), "{}", stderr_of(&again));
}

/// `deploy` with no manifest named takes the newest *approved* one, as the Makefile and docs say,
/// and names in one line the newer manifests it passed over; with none approved it says what to do.
#[test]
fn deploy_without_a_manifest_takes_the_newest_approved_one() {
    let s = Setup::new("copy");
    s.ws.release("2025-10-12T18:00:00+05:30", &["--type", "hotfix"]); // never approved
    let output = s.ws.cmd_at(A).args(["deploy", "--yes"]).output().unwrap();
    assert_eq!(output.status.code(), Some(BAD_INPUT), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("no manifest in release/manifests is approved yet"), "{}", stderr_of(&output));
    assert!(!s.target.exists());
    let (a, b) = two_releases(&s, A, B); // both approved
    let space = fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
    s.ws.write("search_space.yaml", format!("{space}# not reviewed yet\n").as_bytes());
    let newer = s.ws.release("2025-10-12T20:10:00+05:30", &["--type", "hotfix"]);
    let output = s.ws.cmd_at(LATER).args(["deploy", "--yes"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let warning = stderr_of(&output);
    assert!(
        warning.contains(
            "newer manifests not approved yet, passed over: release_20251012_201000; deploying the newest approved one, release_20251012_200000"
        ),
        "{warning}"
    );
    assert_eq!(warning.matches("passed over").count(), 1, "one line: {warning}");
    s.assert_holds(&b, &a);
    let _ = newer;
}

/// A key rotated out (`valid-before` passed) does not block the way back: a rollback judges the
/// approvals of a release that ran as of its first deploy. A new deploy of a manifest that key
/// approved is refused, and a key removed from allowed_signers blocks the rollback too.
#[test]
fn a_rotated_key_does_not_block_a_rollback_but_a_removed_one_does() {
    let s = Setup::new("copy");
    let (a, b) = two_releases(&s, A, B);
    assert!(s.deploy(A, &a).status.success());
    assert!(s.deploy(B, &b).status.success());
    let signers_path = s.ws.path("release/allowed_signers");
    let signers = fs::read_to_string(&signers_path).unwrap();
    fs::write(
        &signers_path,
        signers.replace("jane@example.com namespaces=", "jane@example.com valid-before=\"20251013\",namespaces="),
    )
    .unwrap();
    let two_days_later = "2025-10-14T10:00:00+05:30";
    let verify = s.shipshape(two_days_later, &["verify", b.to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(CHECK_FAILED), "a new deploy judges keys now");
    let dry = s.shipshape(two_days_later, &["rollback", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr_of(&dry));
    // Removed: the rollback is refused (the backup's approvals no longer verify).
    fs::write(&signers_path, signers.lines().filter(|l| !l.starts_with("jane@")).collect::<Vec<_>>().join("\n") + "\n")
        .unwrap();
    let refused = s.shipshape(two_days_later, &["rollback", "--yes"]);
    assert_eq!(refused.status.code(), Some(CHECK_FAILED), "{}", stderr_of(&refused));
    s.assert_holds(&b, &a);
    // Rotated (valid-before passed) but still listed: the rollback goes through.
    fs::write(
        &signers_path,
        signers.replace("jane@example.com namespaces=", "jane@example.com valid-before=\"20251013\",namespaces="),
    )
    .unwrap();
    let output = s.shipshape(two_days_later, &["rollback", "--yes"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    s.assert_holds(&a, &b);
}

#[test]
fn concurrent_deploys_exactly_one_proceeds() {
    let checks = "[[deploy.post_deploy_checks]]\nname = \"slow\"\ncommand = \"sleep 5\"\n";
    let s = Setup::with_checks("copy", checks);
    let a = s.release(A);
    let spawn = || {
        s.ws.std_cmd(A)
            .arg("deploy")
            .arg(&a)
            .arg("--yes")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn();
    // The second starts once the first holds the lock (it then keeps it for the 5 s check): a fixed
    // head start lost the race on a loaded CI machine.
    let holder = s.ws.path("release/.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !fs::read_to_string(&holder).is_ok_and(|text| text.contains("running `deploy`")) {
        assert!(std::time::Instant::now() < deadline, "the first deploy never took the lock");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = spawn().wait_with_output().unwrap();
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr_of(&first));
    assert_eq!(second.status.code(), Some(LOCKED), "{}", stderr_of(&second));
    assert_one_line_error(&second, "is held by pid");
    assert_one_line_error(&second, "running `deploy`");
}

#[test]
fn tampered_store_object_refuses_deploy_and_rollback_before_any_change() {
    let s = Setup::new("copy");
    let (a, b) = two_releases(&s, A, B);
    assert!(s.deploy(A, &a).status.success());
    let hash = files_of(&b)["search_space.yaml"].clone();
    let hex = &hash["sha256:".len()..];
    let object = s.ws.path(&format!("release/store/sha256/{}/{}", &hex[..2], &hex[2..]));
    crate::util::make_writable(&object);
    fs::write(&object, "tampered\n").unwrap();
    let before = crate::util::snapshot(&s.target);
    let output = s.deploy(B, &b);
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    assert_one_line_error(&output, "is not trusted");
    assert!(stderr_of(&output).contains("corrupt"), "{}", stderr_of(&output));
    crate::util::assert_same_tree(&before, &crate::util::snapshot(&s.target), "deploy with a tampered object");
    // Rolling back to a release whose object is tampered is refused too.
    let s = Setup::new("copy");
    let (a, b) = two_releases(&s, A, B);
    assert!(s.deploy(A, &a).status.success());
    assert!(s.deploy(B, &b).status.success());
    let hash = files_of(&a)["search_space.yaml"].clone();
    let hex = &hash["sha256:".len()..];
    let object = s.ws.path(&format!("release/store/sha256/{}/{}", &hex[..2], &hex[2..]));
    crate::util::make_writable(&object);
    fs::write(&object, "tampered\n").unwrap();
    let before = crate::util::snapshot(&s.target);
    let output = s.shipshape(LATER, &["rollback", "--yes"]);
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    assert_one_line_error(&output, "is not trusted");
    crate::util::assert_same_tree(&before, &crate::util::snapshot(&s.target), "rollback to a tampered release");
}

#[test]
fn a_path_escaping_the_target_is_refused() {
    let s = Setup::new("copy");
    let a = s.release(A);
    let elsewhere = s.ws.temp.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::create_dir_all(&s.target).unwrap();
    std::os::unix::fs::symlink(&elsewhere, s.target.join("src")).unwrap();
    let output = s.deploy(A, &a);
    assert_eq!(output.status.code(), Some(BAD_INPUT), "{}", stderr_of(&output));
    assert_one_line_error(&output, "is a symlink in the target, so the path would escape it");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0, "nothing was written outside the target");
}

#[test]
fn status_reports_drift_and_deploy_needs_confirmation() {
    let s = Setup::new("copy");
    let a = s.release(A);
    // No terminal and no --yes: refused, nothing deployed.
    let output = s.ws.cmd_at(A).arg("deploy").arg(&a).output().unwrap();
    assert_eq!(output.status.code(), Some(BAD_INPUT));
    assert_one_line_error(&output, "pass --yes");
    assert!(!s.target.join("src").exists());
    // Dry run: the plan, no change.
    let output = s.ws.cmd_at(A).args(["deploy", "--dry-run"]).output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("add     src/app/config.py"));
    assert!(!s.target.join("src").exists());
    assert!(s.deploy(A, &a).status.success());
    let output = s.shipshape(LATER, &["status"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("in sync") && stdout.contains("heightened, 1d 22h left"),
        "{stdout}"
    );
    fs::write(s.target.join("search_space.yaml"), "edited by hand in production\n").unwrap();
    let output = s.shipshape(LATER, &["status"]);
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    assert!(String::from_utf8_lossy(&output.stdout).contains("DRIFTED: search_space.yaml"));
    // After 48 h, normal monitoring.
    let output = s.shipshape("2025-10-15T19:00:00+05:30", &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["monitoring_mode"], "normal");
    assert_eq!(json["in_sync"], false);
}

/// Releases A, B (the two of `two_releases`) and C (another config change), deployed in turn.
fn three_deployed(s: &Setup) -> (PathBuf, PathBuf, PathBuf) {
    let (a, b) = two_releases(s, A, B);
    let config = fs::read_to_string(s.ws.path("src/app/config.py")).unwrap();
    s.ws.write("src/app/config.py", config.replace("0.64", "0.66").as_bytes());
    let c = s.release(LATER);
    for (manifest, at) in [(&a, A), (&b, B), (&c, LATER)] {
        assert!(s.deploy(at, manifest).status.success());
    }
    (a, b, c)
}

/// Symlink mode keeps every release's directory, sharing unchanged files by hard links — and each
/// link moves the shared inode's ctime. Rolling back to any earlier release (not only the one just
/// replaced) must still find its directory intact and switch by one rename, without copying a byte;
/// while a file edited in place behind shipshape's back (size and mtime restored, so only its ctime
/// tells) is still caught, and its release rebuilt from the store.
#[test]
fn symlink_rollback_to_any_earlier_release_reuses_its_directory() {
    use std::os::unix::fs::MetadataExt;
    let s = Setup::new("symlink");
    let (a, b, c) = three_deployed(&s);
    let id_a = yaml_value(&a)["release_id"].as_str().unwrap().to_string();
    let dir_a = s.target.join(".shipshape/releases").join(&id_a);
    let inodes = |dir: &Path| -> Vec<(String, u64)> {
        files_of(&a).keys().map(|p| (p.clone(), fs::metadata(dir.join(p)).unwrap().ino())).collect()
    };
    let before = inodes(&dir_a);
    let later = "2025-10-12T22:00:00+05:30";
    let output = s.shipshape(later, &["rollback", "--to", &id_a, "--yes"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    s.assert_holds(&a, &c);
    assert_eq!(inodes(&dir_a), before, "A's directory was rebuilt instead of switched to");
    let status = s.shipshape(later, &["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("in sync"), "{}", String::from_utf8_lossy(&status.stdout));

    // An in-place edit of B's copy of the shared search space, with its size and mtime put back.
    let id_b = yaml_value(&b)["release_id"].as_str().unwrap().to_string();
    let edited = s.target.join(".shipshape/releases").join(&id_b).join("search_space.yaml");
    let meta = fs::metadata(&edited).unwrap();
    crate::util::make_writable(&edited);
    let original = fs::read(&edited).unwrap();
    let mut tampered = original.clone();
    tampered[0] ^= 0x20;
    fs::write(&edited, &tampered).unwrap();
    fs::File::options().write(true).open(&edited).unwrap().set_modified(meta.modified().unwrap()).unwrap();
    let output = s.shipshape("2025-10-12T23:00:00+05:30", &["rollback", "--to", &id_b, "--yes"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    s.assert_holds(&b, &a);
}

/// `shipshape rollback` without `--to` restores the last known good release, read from the history:
/// a registry edited by hand to point elsewhere (`rollback_to`, the manifest's chain predecessor,
/// recorded for people) changes nothing.
#[test]
fn default_rollback_goes_to_the_last_known_good_not_the_registrys_hint() {
    let s = Setup::new("symlink");
    let (a, b, c) = three_deployed(&s);
    let id = |m: &Path| yaml_value(m)["release_id"].as_str().unwrap().to_string();
    let active_path = s.ws.path("data/monitoring/releases/active_release.yaml");
    let active = fs::read_to_string(&active_path).unwrap();
    assert!(active.contains(&format!("rollback_to: {}", id(&b))), "{active}");
    fs::write(&active_path, active.replace(&format!("rollback_to: {}", id(&b)), &format!("rollback_to: {}", id(&a))))
        .unwrap();
    let output = s.shipshape("2025-10-12T22:00:00+05:30", &["rollback", "--yes"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    s.assert_holds(&b, &c);
    let history = String::from_utf8(s.shipshape("2025-10-12T22:00:00+05:30", &["history"]).stdout).unwrap();
    let last_entry = history.lines().take_while(|l| !l.is_empty()).last().unwrap();
    assert!(last_entry.contains(&format!("rollback       {} (from {})", id(&b), id(&c))), "{history}");
}

/// Manifests and audit bundles are read through a parse cache (`release/store/parsed/`, written
/// when they are made) — which is trusted only where it reproduces the signed bytes exactly. A
/// forged entry claiming other artifacts changes nothing: verify and deploy read the real manifest.
#[test]
fn a_forged_parse_cache_changes_nothing() {
    let s = Setup::new("copy");
    let a = s.release(A);
    let digest = crate::util::sha256sum(&a).trim_start_matches("sha256:").to_string();
    let cached = s.ws.path(&format!("release/store/parsed/{digest}.json"));
    let json = fs::read_to_string(&cached).expect("the manifest's parse result is cached when it is made");
    let files = files_of(&a);
    let (path, hash) = files.iter().next().unwrap();
    let forged_hash = format!("sha256:{}", "0".repeat(64));
    assert!(json.contains(hash.as_str()));
    fs::write(&cached, json.replace(hash.as_str(), &forged_hash)).unwrap();
    let output = s.shipshape(A, &["verify", a.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(s.deploy(A, &a).status.success());
    assert_eq!(&crate::util::sha256sum(&s.live(path)), hash);
}

/// A deploy that dies as its journal is created (a crash, or a full disk while the plan record is
/// written) leaves an empty journal. It changed nothing: recovery says so, retires the journal and
/// lets the next deploy through — it used to fail every later command with "journal without a plan".
#[test]
fn an_empty_journal_is_discarded_and_the_next_deploy_proceeds() {
    let s = Setup::new("copy");
    let (a, b) = two_releases(&s, A, B);
    assert!(s.deploy(A, &a).status.success());
    let output = deploy_with_failpoint(&s, &b, failpoint::JOURNAL_CREATED);
    assert_crashed_at(&output, "copy", failpoint::JOURNAL_CREATED);
    let open: Vec<_> = fs::read_dir(s.ws.path("release/journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    assert_eq!(open.len(), 1);
    assert_eq!(fs::metadata(&open[0]).unwrap().len(), 0, "the crash left an empty journal");
    let recover = s.shipshape(LATER, &["recover"]);
    assert!(recover.status.success(), "{}", stderr_of(&recover));
    let stdout = String::from_utf8(recover.stdout).unwrap();
    assert!(stdout.contains("discarded: its journal never recorded a plan"), "{stdout}");
    s.assert_holds(&a, &b);
    assert!(!open[0].exists(), "the empty journal is retired to done/");
    let deploy = s.deploy(LATER, &b);
    assert!(deploy.status.success(), "{}", stderr_of(&deploy));
    s.assert_holds(&b, &a);
}

/// A note with terminal controls (ESC sequences, BEL, CR, LF, a bidi override) is stored exactly
/// and printed escaped: `history` cannot clear the screen, retitle the window or forge a line, and
/// `history --json` keeps the exact string.
#[test]
fn user_text_with_terminal_controls_is_printed_escaped_and_stored_exactly() {
    let s = Setup::new("copy");
    let (a, b) = two_releases(&s, A, B);
    assert!(s.deploy(A, &a).status.success());
    assert!(s.deploy(B, &b).status.success());
    let note = "bad model\u{1b}[2J\u{1b}]0;pwned\u{7}\r2025-10-12  deploy ok\nforged line \u{202e}gnp.exe";
    let output = s.shipshape(LATER, &["rollback", "--yes", "--reason", note]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let history = String::from_utf8(s.shipshape(LATER, &["history"]).stdout).unwrap();
    assert!(!history.chars().any(|c| c.is_control() && c != '\n'), "{history:?}");
    assert!(!history.contains('\u{202e}'), "{history:?}");
    let entry_lines = history.lines().take_while(|l| !l.is_empty()).count();
    assert_eq!(entry_lines, 3, "one line per entry, none forged: {history}");
    assert!(
        history.contains("bad model\\e[2J\\e]0;pwned\\u{7}\\r2025-10-12  deploy ok\\nforged line \\u{202e}gnp.exe"),
        "{history}"
    );
    let json: serde_json::Value = serde_json::from_slice(&s.shipshape(LATER, &["history", "--json"]).stdout).unwrap();
    assert_eq!(json.as_array().unwrap().last().unwrap()["reason"], note);
}

/// Paths are user text too: a target directory whose name holds terminal controls is printed
/// escaped by every text command (plan, status, verify, recover), never raw.
#[test]
fn a_hostile_target_path_is_printed_escaped_everywhere() {
    let s = Setup::new("copy");
    let (a, b) = two_releases(&s, A, B);
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    s.ws.write(
        "shipshape.toml",
        config.replace("target = \"../prod\"", "target = \"../prod\\u001b]0;pwned\\u0007\\u001b[2J\"").as_bytes(),
    );
    assert!(s.deploy(A, &a).status.success());
    for args in [
        vec!["deploy", b.to_str().unwrap(), "--dry-run"],
        vec!["status"],
        vec!["verify", a.to_str().unwrap()],
        vec!["recover"],
        vec!["history"],
    ] {
        let output = s.shipshape(B, &args);
        for (stream, text) in
            [("stdout", String::from_utf8_lossy(&output.stdout)), ("stderr", String::from_utf8_lossy(&output.stderr))]
        {
            assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{args:?} {stream}: {text:?}");
        }
        if args[0] == "status" {
            assert!(String::from_utf8_lossy(&output.stdout).contains("prod\\e]0;pwned\\u{7}\\e[2J"), "{:?}", output);
        }
    }
}

/// Anti-rollback does not rest on one file: with `release/state/anti_rollback.yaml` deleted, or
/// edited down, the registry and the history still show that a higher sequence was deployed, so the
/// old manifest is refused — and the discrepancy is reported.
#[test]
fn anti_rollback_survives_a_deleted_or_lowered_state_file() {
    let s = Setup::new("copy");
    let (a, b) = two_releases(&s, A, B);
    assert!(s.deploy(A, &a).status.success());
    assert!(s.deploy(B, &b).status.success());
    let state = s.ws.path("release/state/anti_rollback.yaml");
    let recorded = fs::read_to_string(&state).unwrap();
    assert!(recorded.contains("sequence: 2"), "{recorded}");
    for tamper in ["delete", "lower", "every workspace record"] {
        match tamper {
            "delete" => fs::remove_file(&state).unwrap(),
            "lower" => fs::write(&state, recorded.replace("sequence: 2", "sequence: 1")).unwrap(),
            _ => {
                // The state file, the registry and the history all gone: the target's own record
                // of what it holds is left.
                let _ = fs::remove_file(&state);
                fs::remove_dir_all(s.ws.path("data/monitoring/releases")).unwrap();
                let before = crate::util::snapshot(&s.target);
                let output = s.deploy(LATER, &a);
                assert_eq!(output.status.code(), Some(CHECK_FAILED), "{tamper}: {}", stderr_of(&output));
                assert!(
                    stderr_of(&output).contains("below the release_20251012_200000 that the target"),
                    "{}",
                    stderr_of(&output)
                );
                crate::util::assert_same_tree(&before, &crate::util::snapshot(&s.target), tamper);
                continue;
            }
        }
        let before = crate::util::snapshot(&s.target);
        let output = s.deploy(LATER, &a);
        assert_eq!(output.status.code(), Some(CHECK_FAILED), "{tamper}: {}", stderr_of(&output));
        let stderr = stderr_of(&output);
        assert!(stderr.contains("anti-rollback") && stderr.contains("sequence 1 is below"), "{tamper}: {stderr}");
        crate::util::assert_same_tree(&before, &crate::util::snapshot(&s.target), tamper);
        let verify = s.shipshape(LATER, &["verify", a.to_str().unwrap()]);
        let report = String::from_utf8_lossy(&verify.stdout).to_string() + &stderr_of(&verify);
        assert!(report.contains("the higher record is used"), "{tamper}: {report}");
    }
    s.assert_holds(&b, &a);
}
