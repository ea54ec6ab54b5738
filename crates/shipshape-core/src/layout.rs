//! The workspace: the directory holding `shipshape.toml`, and the `release/` layout inside it.
//!
//! ```text
//! shipshape.toml
//! release/
//!   .lock                        workspace lock (see `lock`)
//!   audit_<YYYYMMDD_HHMMSS>/     audit bundles (bundle.yaml, later validation.yaml)
//!   manifests/<release_id>.yaml  release manifests (later <release_id>.approvals.yaml beside them)
//!   store/sha256/<2>/<62>        content-addressed object store
//!   backups/<release_id>/<path>  per-release view of the store (hard links)
//! ```

use std::path::{Path, PathBuf};

use crate::config::{CONFIG_FILE, Config};
use crate::error::{Error, IoContext, Result};
use crate::infra::store::Store;

/// The release directory's name, relative to the workspace root.
pub const RELEASE_DIR: &str = "release";

/// An opened workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Absolute, symlink-free root.
    pub root: PathBuf,
    /// Its checked config.
    pub config: Config,
}

impl Workspace {
    /// Find `shipshape.toml` in `start` or the nearest parent directory holding one, and load it.
    pub fn discover(start: &Path) -> Result<Workspace> {
        let start = start.canonicalize().at(start, "resolving")?;
        let mut dir = start.as_path();
        loop {
            let candidate = dir.join(CONFIG_FILE);
            if candidate.is_file() {
                return Self::open(dir);
            }
            match dir.parent() {
                Some(parent) => dir = parent,
                None => break,
            }
        }
        Err(Error::Usage(format!(
            "no {CONFIG_FILE} in {} or any parent directory: run `shipshape init` there to create one, \
             or pass -C DIR to point at a workspace",
            start.display()
        )))
    }

    /// Open the workspace rooted at `root` (which must hold `shipshape.toml`).
    pub fn open(root: &Path) -> Result<Workspace> {
        let root = root.canonicalize().at(root, "resolving")?;
        let config = Config::load(&root.join(CONFIG_FILE))?;
        Ok(Workspace { root, config })
    }

    /// `release/`.
    pub fn release_dir(&self) -> PathBuf {
        self.root.join(RELEASE_DIR)
    }

    /// `release/manifests/`.
    pub fn manifests_dir(&self) -> PathBuf {
        self.release_dir().join("manifests")
    }

    /// `release/backups/`.
    pub fn backups_dir(&self) -> PathBuf {
        self.release_dir().join("backups")
    }

    /// The object store.
    pub fn store(&self) -> Store {
        Store::new(self.release_dir().join("store"))
    }

    /// `release/journal/`: one file per deploy or rollback transaction (`done/` once finished).
    pub fn journal_dir(&self) -> PathBuf {
        self.release_dir().join("journal")
    }

    /// `release/.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.release_dir().join(".lock")
    }

    /// `path` relative to the root, for messages and for paths recorded in files.
    pub fn display<'a>(&self, path: &'a Path) -> std::borrow::Cow<'a, str> {
        match path.strip_prefix(&self.root) {
            Ok(relative) => relative.to_string_lossy(),
            Err(_) => path.to_string_lossy(),
        }
    }

    /// Resolve a path the user typed (absolute, or relative to the current directory) to an
    /// absolute path inside the workspace; refuse it otherwise.
    pub fn resolve_user_path(&self, path: &Path) -> Result<PathBuf> {
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().at(".", "reading the current directory")?.join(path)
        };
        let real = absolute.canonicalize().at(&absolute, "resolving")?;
        if !real.starts_with(&self.root) {
            return Err(Error::UnsafePath {
                origin: PathBuf::from("command line"),
                path: path.display().to_string(),
                reason: format!("it is outside the workspace {}", self.root.display()),
            });
        }
        Ok(real)
    }
}

/// Where a manifest's approvals live.
pub fn approvals_path(manifest_path: &Path) -> PathBuf {
    let stem = manifest_path.file_stem().and_then(|s| s.to_str()).unwrap_or("manifest");
    manifest_path.with_file_name(format!("{stem}.approvals.yaml"))
}

/// Where parse results of the documents in `release/<dir>/` are kept: `release/store/parsed/`
/// (see [`crate::infra::yaml::read_parsed`]); `None` for a file anywhere else.
pub fn parsed_dir_of(path: &Path, dir: &str) -> Option<PathBuf> {
    let parent = path.parent()?;
    let release = parent.parent()?;
    let in_dir =
        if dir == "audit_" { parent.file_name()?.to_str()?.starts_with("audit_") } else { parent.file_name()? == dir };
    (in_dir && release.file_name()? == "release").then(|| release.join("store").join("parsed"))
}
