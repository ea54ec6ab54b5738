//! Every ```sh block in the README and in docs/ is run, in order, against a fresh copy of the example
//! workspace with this build's `shipshape` first on PATH, so the documentation cannot drift from the
//! binary. Blocks in other languages (```bash, ```text, ```toml, ...) are shown, not run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::TestWorkspace;

fn sh_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (number, line) in markdown.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == "```sh" => current = Some((number + 1, String::new())),
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(current.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    blocks
}

fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md"), root.join("examples/sensequant/README.md")];
    let mut stack = vec![root.join("docs")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_sh_block_in_the_docs_runs() {
    let binary_dir = assert_cmd::cargo::cargo_bin("shipshape").parent().unwrap().to_path_buf();
    let path = format!("{}:{}", binary_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut ran = 0;
    for document in documents() {
        let text = fs::read_to_string(&document).unwrap();
        let blocks = sh_blocks(&text);
        if blocks.is_empty() {
            continue;
        }
        // One workspace per document: its blocks build on each other, as a reader's would.
        let ws = TestWorkspace::example_git();
        for (line, block) in blocks {
            let output = Command::new("bash")
                .args(["-euo", "pipefail", "-c", &block])
                .current_dir(&ws.root)
                .env("PATH", &path)
                .env("SHIPSHAPE_NOW", "2025-10-12T19:00:00+05:30")
                .env("WORKSPACE_PARENT", ws.temp.path())
                // The source tree (docs/python.md runs the Python client from clients/python/src).
                .env("SHIPSHAPE_SOURCE", Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}:{line}: block failed ({}):\n{block}\nstdout:\n{}\nstderr:\n{}",
                document.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 2, "expected runnable examples in the docs, found {ran}");
}

#[test]
fn block_extraction() {
    let blocks = sh_blocks("text\n```sh\na\nb\n```\n```bash\nnot run\n```\n```sh\nc\n```\n");
    assert_eq!(blocks, vec![(2, "a\nb\n".to_string()), (9, "c\n".to_string())]);
}
