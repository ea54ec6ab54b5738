//! `init`: a new workspace's `shipshape.toml`, `release/` folders and `Makefile`.
//!
//! The files are the templates compiled into the binary, so what `init` writes and the defaults the
//! code assumes cannot drift apart (a test parses the template and compares it to the defaults).
//! Nothing that exists is ever overwritten: an existing file is reported and kept.

use std::path::{Path, PathBuf};

use crate::config::{CONFIG_FILE, CONFIG_TEMPLATE};
use crate::error::Result;
use crate::infra::atomic::{create_dir_all_durable, write_new_atomic};

/// The Makefile `init` writes, with the story's targets.
pub const MAKEFILE_TEMPLATE: &str = include_str!("../templates/Makefile");
/// `release/policy.yaml`: the story's two roles.
pub const POLICY_TEMPLATE: &str = include_str!("../templates/policy.yaml");
/// `release/allowed_signers`: comments only; approvers add their public keys.
pub const ALLOWED_SIGNERS_TEMPLATE: &str = include_str!("../templates/allowed_signers");
/// `release/.gitignore`: the store, backups, journal, state and lock are not for version control.
pub const RELEASE_GITIGNORE: &str = include_str!("../templates/release.gitignore");
/// `data/monitoring/.gitignore`: the monitor's database and the release registry are this host's.
pub const MONITORING_GITIGNORE: &str =
    "# The monitor's database and the release registry: this host's state, not for version control.\n*\n";

/// What happened to one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scaffolded {
    /// Newly created.
    Created(PathBuf),
    /// Already there; left as it was.
    Kept(PathBuf),
}

/// Extensions `init` recognises, per artifact kind.
const KINDS: [(&str, &[&str]); 3] = [
    ("configs", &["yaml", "yml", "toml", "json", "ini", "cfg"]),
    ("models", &["pkl", "pickle", "joblib", "onnx", "pt", "pth", "h5", "keras", "safetensors", "cbm", "lgb", "xgb"]),
    ("notebooks", &["ipynb"]),
];

/// Files that look like configs but are the project's own tooling, never released.
const NOT_CONFIGS: [&str; 8] = [
    "shipshape.toml",
    "pyproject.toml",
    "Cargo.toml",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    ".pre-commit-config.yaml",
    "environment.yml",
];

/// What `init` found in the tree: per kind, the include globs that match it (each matches at least
/// one file) and how many files they match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// (kind, globs, files) for each kind with files.
    pub kinds: Vec<(String, Vec<String>, usize)>,
    /// One file found (for the starter checklist item).
    pub example_file: Option<String>,
}

/// Look at the tree under `dir` (not `.git`, `release/`, `data/monitoring/`, hidden directories,
/// virtual environments or build output) and propose include globs for the configs, models and
/// notebooks it holds: `<top dir>/**/*.<ext>` for files in a directory, the name itself at the top.
pub fn propose(dir: &Path) -> Found {
    let skip = |name: &str| {
        name.starts_with('.')
            || ["release", "node_modules", "target", "venv", "env", "__pycache__", "build", "dist"].contains(&name)
    };
    let mut per_kind: Vec<std::collections::BTreeMap<String, usize>> = vec![Default::default(); KINDS.len()];
    let mut example_file = None;
    let walker = walkdir::WalkDir::new(dir).sort_by_file_name().into_iter().filter_entry(|e| {
        let relative = e.path().strip_prefix(dir).unwrap_or(e.path());
        e.depth() == 0
            || !(e.file_type().is_dir()
                && (skip(&e.file_name().to_string_lossy()) || relative == Path::new("data/monitoring")))
    });
    for entry in walker.filter_map(|e| e.ok()).filter(|e| e.file_type().is_file()) {
        let Ok(relative) = entry.path().strip_prefix(dir) else { continue };
        let Some(text) = relative.to_str() else { continue };
        if crate::infra::paths::RelPath::new(text).is_err() || text.contains(['*', '?', '[', '{']) {
            continue;
        }
        let name = entry.file_name().to_string_lossy();
        let Some(extension) = relative.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase) else {
            continue;
        };
        let Some(kind) = KINDS.iter().position(|(_, exts)| exts.contains(&extension.as_str())) else { continue };
        if kind == 0 && (NOT_CONFIGS.contains(&name.as_ref()) || text.starts_with("Makefile")) {
            continue;
        }
        let glob = match text.split_once('/') {
            Some((top, _)) => format!("{top}/**/*.{}", relative.extension().and_then(|e| e.to_str()).unwrap_or("")),
            None => text.to_string(),
        };
        *per_kind[kind].entry(glob).or_default() += 1;
        example_file.get_or_insert_with(|| text.to_string());
    }
    let kinds = KINDS
        .iter()
        .zip(per_kind)
        .filter(|(_, globs)| !globs.is_empty())
        .map(|((kind, _), globs)| {
            let files = globs.values().sum();
            (kind.to_string(), globs.into_keys().collect(), files)
        })
        .collect();
    Found { kinds, example_file }
}

/// The `shipshape.toml` for what was `found`: the template with its `[artifacts.*]` tables replaced
/// by the proposed ones (or a commented example when nothing was found), a starter checklist item
/// and a commented `[deploy]` section.
pub fn config_for(found: &Found) -> String {
    let start = CONFIG_TEMPLATE.find("[artifacts.configs]").unwrap_or(0);
    // Up to the separator line above the monitoring section.
    let end = CONFIG_TEMPLATE
        .find("# Post-deploy monitoring")
        .and_then(|at| CONFIG_TEMPLATE[..at].trim_end_matches('\n').rfind('\n').map(|line| line + 1))
        .unwrap_or(start);
    let mut artifacts = String::new();
    if found.kinds.is_empty() {
        artifacts.push_str("# Nothing recognisable was found: name what you release, e.g.\n# [artifacts.configs]\n# include = [\"config/**/*.yaml\"]\n\n");
    }
    for (kind, globs, files) in &found.kinds {
        let list = globs.iter().map(|g| format!("\"{g}\"")).collect::<Vec<_>>().join(", ");
        artifacts.push_str(&format!("# Found by `shipshape init`: {files} file(s). Narrow or widen as you need.\n[artifacts.{kind}]\ninclude = [{list}]\nexclude = []\n\n"));
    }
    let mut text = format!("{}{}{}", &CONFIG_TEMPLATE[..start], artifacts, &CONFIG_TEMPLATE[end..]);
    if let Some(file) = &found.example_file {
        text.push_str(&format!(
            "\n# A starter checklist item, so `shipshape validate` has something to check; add your tests.\n[[checklist]]\nname = \"release files present\"\nkind = \"file\"\npath = \"{file}\"\nnon_empty = true\n"
        ));
    }
    text.push_str(
        "\n# ---------------------------------------------------------------------------------------------\n# Deploy: where production reads its files. Uncomment and set `target` before `shipshape deploy`.\n# ---------------------------------------------------------------------------------------------\n\n# [deploy]\n# target = \"/srv/my-project\"    # absolute, or relative to this file (e.g. \"../production\")\n# mode = \"copy\"                  # or \"symlink\"\n#\n# [[deploy.post_deploy_checks]]   # run after the switch, with $SHIPSHAPE_TARGET set; failure rolls back\n# name = \"configs load\"\n# command = \"test -s \\\"$SHIPSHAPE_TARGET\\\"/path/to/a/config.yaml\"\n",
    );
    text
}

/// Scaffold a workspace in `dir` (created if missing); the config's includes are proposed from the
/// files already there ([`propose`]).
pub fn init(dir: &Path) -> Result<Vec<Scaffolded>> {
    let found = if dir.exists() { propose(dir) } else { Found::default() };
    init_with(dir, &config_for(&found))
}

fn init_with(dir: &Path, config: &str) -> Result<Vec<Scaffolded>> {
    let mut outcome = Vec::new();
    create_dir_all_durable(dir)?;
    for sub in ["release", "release/manifests", "data/monitoring"] {
        let path = dir.join(sub);
        if path.is_dir() {
            outcome.push(Scaffolded::Kept(path));
        } else {
            create_dir_all_durable(&path)?;
            outcome.push(Scaffolded::Created(path));
        }
    }
    let files: [(&str, &str); 6] = [
        (CONFIG_FILE, config),
        ("Makefile", MAKEFILE_TEMPLATE),
        ("release/.gitignore", RELEASE_GITIGNORE),
        ("data/monitoring/.gitignore", MONITORING_GITIGNORE),
        ("release/policy.yaml", POLICY_TEMPLATE),
        ("release/allowed_signers", ALLOWED_SIGNERS_TEMPLATE),
    ];
    for (name, content) in files {
        let path = dir.join(name);
        if path.exists() || path.symlink_metadata().is_ok() {
            outcome.push(Scaffolded::Kept(path));
        } else if write_new_atomic(&path, content.as_bytes())? {
            outcome.push(Scaffolded::Created(path));
        } else {
            outcome.push(Scaffolded::Kept(path));
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_then_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let first = init(dir.path()).unwrap();
        assert!(first.iter().all(|s| matches!(s, Scaffolded::Created(_))), "{first:?}");
        std::fs::write(dir.path().join("Makefile"), "mine\n").unwrap();
        let second = init(dir.path()).unwrap();
        assert!(second.iter().all(|s| matches!(s, Scaffolded::Kept(_))), "{second:?}");
        assert_eq!(std::fs::read_to_string(dir.path().join("Makefile")).unwrap(), "mine\n");
    }
}
