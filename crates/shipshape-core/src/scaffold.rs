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

/// Scaffold a workspace in `dir` (created if missing).
pub fn init(dir: &Path) -> Result<Vec<Scaffolded>> {
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
        (CONFIG_FILE, CONFIG_TEMPLATE),
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
