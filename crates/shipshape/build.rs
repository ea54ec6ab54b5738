//! Embed the example workspace (`examples/sensequant`) so `shipshape demo` works from any directory
//! and from an installed binary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("example dir").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "__pycache__" || name.starts_with(".#") {
            continue;
        }
        // release/ is generated, except the files a team writes by hand.
        let in_release = path.parent().and_then(|p| p.file_name()).is_some_and(|n| n == "release");
        if in_release && !matches!(name, "policy.yaml" | "allowed_signers" | ".gitignore") {
            continue;
        }
        if path.is_dir() {
            collect(&path, out);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
            out.push(path);
        }
    }
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../../examples/sensequant").canonicalize().expect("examples/sensequant exists");
    let mut files = Vec::new();
    collect(&root, &mut files);
    let mut code = String::from(
        "/// The example workspace's files: (relative path, executable, bytes).\npub const EXAMPLE_FILES: &[(&str, bool, &[u8])] = &[\n",
    );
    for path in files {
        let relative = path.strip_prefix(&root).expect("under root").to_string_lossy().replace('\\', "/");
        let executable = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o111 != 0).unwrap_or(false)
        };
        writeln!(code, "    ({relative:?}, {executable}, include_bytes!({:?})),", path.display().to_string())
            .expect("write");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("example_files.rs");
    std::fs::write(out, code).expect("write example_files.rs");
}
