//! Structured fuzzing on stable Rust (cargo-fuzz needs nightly): proptest generators mutate real
//! files — a manifest, its approvals, the policy, `allowed_signers`, a journal, JSON-lines and CSV
//! events, `shipshape.toml` — with byte edits, span replacements from a dictionary of hostile YAML,
//! TOML, JSON and CSV values, line shuffles, truncation, deep nesting and alias bombs, then read them
//! through the same public functions the commands use.
//!
//! Every case must end — within [`CASE_LIMIT`], without a panic, within a memory budget — either
//! read, or refused by an error that names the file. A short budget runs with every `scripts/test.sh`
//! (`SHIPSHAPE_FUZZ_CASES`, default 64 per target); `scripts/fuzz.sh` runs for an hour.
//!
//! Each test runs in its own process under nextest, so the counting allocator measures one case.

// The one unsafe code in the project: a global allocator that forwards to the system's and counts.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

#[path = "common/fuzz_edits.rs"]
mod fuzz_edits;
use fuzz_edits::{Edit, apply, edits};

/// Allocated bytes now, and the highest since the last reset.
static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as received.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            grew(new_size as isize - layout.size() as isize);
        }
        p
    }
}

fn grew(by: isize) {
    let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The longest one case may take (a debug build on a busy machine): longer is a hang.
const CASE_LIMIT: Duration = Duration::from_secs(20);

/// Memory one case may add: generous for parsing a few kilobytes, far below what a bomb would take.
fn memory_budget(input: usize) -> isize {
    (64 << 20) + 2000 * input as isize
}

fn cases() -> u32 {
    std::env::var("SHIPSHAPE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

/// Run `read` on the mutated `input` (already written where it reads it) in its own thread: it must
/// return within [`CASE_LIMIT`], without a panic, within the memory budget; an error must name
/// `file`.
fn must_end_cleanly(
    file: &str,
    input: &[u8],
    read: impl FnOnce() -> Result<(), shipshape_core::Error> + Send + 'static,
) -> Result<(), TestCaseError> {
    let (done, finished) = std::sync::mpsc::channel();
    PEAK.store(CURRENT.load(Ordering::Relaxed), Ordering::Relaxed);
    let start = CURRENT.load(Ordering::Relaxed);
    let worker = std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
        let _ = done.send(outcome.map(|r| r.map_err(|e| e.to_string())));
    });
    let shown = String::from_utf8_lossy(&input[..input.len().min(400)]).into_owned();
    let outcome = match finished.recv_timeout(CASE_LIMIT) {
        Ok(outcome) => outcome,
        Err(_) => {
            return Err(TestCaseError::fail(format!("{file}: no answer within {CASE_LIMIT:?} (a hang) on {shown:?}")));
        }
    };
    let _ = worker.join();
    let used = PEAK.load(Ordering::Relaxed) - start;
    prop_assert!(
        used <= memory_budget(input.len()),
        "{file}: {used} bytes allocated reading {} bytes: {shown:?}",
        input.len()
    );
    match outcome {
        Err(_) => Err(TestCaseError::fail(format!("{file}: panicked on {shown:?}"))),
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => {
            prop_assert!(
                message.contains(file),
                "{file}: the refusal does not name the file: {message:?} (input {shown:?})"
            );
            prop_assert!(!message.trim().is_empty(), "{file}: an empty error");
            Ok(())
        }
    }
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        max_shrink_iters: 2000,
        ..Config::default()
    })
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sensequant")
}

fn seed(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_seeds").join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A workspace holding the example's config and policy, the seeds' signers and manifest.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("release/manifests")).unwrap();
    std::fs::copy(example().join("shipshape.toml"), root.join("shipshape.toml")).unwrap();
    std::fs::copy(example().join("release/policy.yaml"), root.join("release/policy.yaml")).unwrap();
    std::fs::write(root.join("release/allowed_signers"), seed("allowed_signers")).unwrap();
    std::fs::write(root.join("release/manifests/release_20251012_190000.yaml"), seed("manifest.yaml")).unwrap();
    dir
}

/// Fuzz one file: each case writes `seed`, mutated, to `path` and calls `read`.
fn fuzz(seed: Vec<u8>, path: &Path, read: impl Fn() -> Result<(), shipshape_core::Error> + Clone + Send + 'static) {
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let path = path.to_path_buf();
    runner()
        .run(&edits(), |edits| {
            let input = apply(&seed, &edits);
            std::fs::write(&path, &input).unwrap();
            must_end_cleanly(&file, &input, read.clone())
        })
        .unwrap();
}

fn now() -> shipshape_core::infra::clock::Time {
    "2025-10-12T20:00:00+05:30".parse().unwrap()
}

#[test]
fn manifest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("release_20251012_190000.yaml");
    let read = path.clone();
    fuzz(seed("manifest.yaml"), &path, move || shipshape_core::pipeline::manifest::load(&read).map(drop));
}

#[test]
fn approvals_and_their_signatures() {
    let dir = workspace();
    let root = dir.path().to_path_buf();
    let path = root.join("release/manifests/release_20251012_190000.approvals.yaml");
    fuzz(seed("approvals.yaml"), &path, move || {
        let workspace = shipshape_core::layout::Workspace::open(&root)?;
        let loaded =
            shipshape_core::pipeline::manifest::load(&root.join("release/manifests/release_20251012_190000.yaml"))?;
        shipshape_core::trust::judge::verify_approvals(&workspace, &loaded, now()).map(drop)
    });
}

#[test]
fn policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    let read = path.clone();
    let seed = std::fs::read(example().join("release/policy.yaml")).unwrap();
    fuzz(seed, &path, move || shipshape_core::model::policy::Policy::load(&read).map(drop));
}

#[test]
fn allowed_signers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allowed_signers");
    let read = path.clone();
    fuzz(seed("allowed_signers"), &path, move || shipshape_core::trust::allowed_signers::load(&read).map(drop));
}

#[test]
fn journal() {
    let dir = workspace();
    let root = dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("release/journal")).unwrap();
    let path = root.join("release/journal/tx_20251012_190000_1_0.jsonl");
    fuzz(seed("journal.jsonl"), &path, move || {
        let workspace = shipshape_core::layout::Workspace::open(&root)?;
        shipshape_core::deploy::pending(&workspace).map(drop)
    });
}

fn score(path: &Path, skip_bad: bool) -> Result<(), shipshape_core::Error> {
    let options = shipshape_core::events::ReadOptions { skip_bad };
    shipshape_core::events::score_file(path, path, options).map(drop)
}

#[test]
fn events_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let read = path.clone();
    fuzz(seed("events.jsonl"), &path, move || score(&read, false).and_then(|()| score(&read, true)));
}

/// The same events as one JSON array (`json.dumps(records)`), read as the lines it holds.
#[test]
fn events_json_array() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.json");
    let read = path.clone();
    let lines = String::from_utf8(seed("events.jsonl")).unwrap();
    let array = format!("[{}]", lines.lines().collect::<Vec<_>>().join(",\n"));
    fuzz(array.into_bytes(), &path, move || score(&read, false).and_then(|()| score(&read, true)));
}

#[test]
fn events_csv() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.csv");
    let read = path.clone();
    fuzz(seed("events.csv"), &path, move || score(&read, false).and_then(|()| score(&read, true)));
}

#[test]
fn config() {
    let dir = workspace();
    let root = dir.path().to_path_buf();
    let seed = std::fs::read(example().join("shipshape.toml")).unwrap();
    let path = root.join("shipshape.toml");
    fuzz(seed, &path, move || shipshape_core::layout::Workspace::open(&root).map(drop));
}

/// The generator itself: edits land where they say, and a bomb is a bomb.
#[test]
fn edits_do_what_they_say() {
    assert_eq!(apply(b"ab\ncd", &[Edit::SwapLines { a: 0, b: 1 }]), b"cd\nab");
    assert_eq!(apply(b"abc", &[Edit::Truncate { at: 1 }]), b"a");
    assert_eq!(apply(b"abc", &[Edit::Replace { at: 1, len: 1, value: 0 }]), b"a~c");
    let bomb = String::from_utf8(apply(b"", &[Edit::AliasBomb { width: 3, depth: 3 }])).unwrap();
    assert!(bomb.contains("bomb2: &b2 [*b1, *b1, *b1]"), "{bomb}");
}
