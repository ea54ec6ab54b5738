//! Relative paths that cannot leave their root.
//!
//! Every path shipshape takes from a file a person wrote (config globs, manifest entries) is a
//! [`RelPath`]: `/`-separated, relative, with no `.`, `..` or empty components, no backslashes or NUL
//! bytes. That rule is lexical and checked at parse time, so a manifest holding `../../etc/passwd`
//! does not even deserialize. [`confine`] adds the filesystem half: it resolves symlinks and refuses a
//! path whose real location is outside the root.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, IoContext, Result};

/// A validated relative path (see the module docs for the rule).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

/// Which rule a path broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRuleError {
    /// Empty string.
    #[error("the path is empty")]
    Empty,
    /// Starts with `/` (or is otherwise absolute).
    #[error("absolute paths are not allowed; write it relative to the workspace")]
    Absolute,
    /// Has a `..` component.
    #[error("`..` is not allowed: paths must stay inside the workspace")]
    ParentComponent,
    /// Has `.` or an empty component (`a//b`, `./a`, `a/`).
    #[error("`.` and empty components are not allowed; write the path in its plain form")]
    NotNormal,
    /// Has a backslash, NUL or other control character.
    #[error("backslashes and control characters are not allowed in paths")]
    BadCharacter,
}

impl RelPath {
    /// Validate `s` as a relative path.
    pub fn new(s: &str) -> std::result::Result<Self, PathRuleError> {
        check_relative(s)?;
        Ok(RelPath(s.to_owned()))
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path joined to `root` (lexically; see [`confine`] for the symlink check).
    pub fn under(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }

    /// Build from a path found under `root` while walking it.
    pub fn from_walk(root: &Path, path: &Path) -> std::result::Result<Self, PathRuleError> {
        let relative = path.strip_prefix(root).map_err(|_| PathRuleError::ParentComponent)?;
        let text = relative.to_str().ok_or(PathRuleError::BadCharacter)?;
        Self::new(text)
    }
}

/// The lexical rule behind [`RelPath`], also used for glob patterns.
pub fn check_relative(s: &str) -> std::result::Result<(), PathRuleError> {
    if s.is_empty() {
        return Err(PathRuleError::Empty);
    }
    if s.starts_with('/') || Path::new(s).is_absolute() {
        return Err(PathRuleError::Absolute);
    }
    if s.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(PathRuleError::BadCharacter);
    }
    for part in s.split('/') {
        match part {
            ".." => return Err(PathRuleError::ParentComponent),
            "" | "." => return Err(PathRuleError::NotNormal),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl Serialize for RelPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        RelPath::new(&s).map_err(|e| serde::de::Error::custom(format!("unsafe path `{s}`: {e}")))
    }
}

/// The names shipshape keeps in a deploy target, which no release file may take: `.shipshape/` (the
/// target's lock, state and, in symlink mode, its releases), `current` (the symlink mode's live link —
/// reserved in both modes so a target can switch modes) and the temporaries a transaction stages
/// beside a file (`.<name>.shipshape-<txid>`). Compared case-insensitively, so a case-folding
/// filesystem cannot be used to reach them. Returns why `path` is refused, or `None`.
pub fn reserved_in_target(path: &RelPath) -> Option<String> {
    let mut parts = path.as_str().split('/');
    let first = parts.next().unwrap_or("");
    if first.eq_ignore_ascii_case(".shipshape") {
        return Some(
            "`.shipshape/` is reserved: shipshape keeps the target's lock, state and releases there; rename the file or exclude it"
                .into(),
        );
    }
    if first.eq_ignore_ascii_case("current") {
        return Some(
            "`current` at the top of the tree is reserved for the symlink mode's live link (in every mode, so a target can switch modes); move the file or exclude it"
                .into(),
        );
    }
    for part in path.as_str().split('/') {
        if part.starts_with('.') && part.to_ascii_lowercase().contains(".shipshape-") {
            return Some(format!(
                "`{part}` has the form of the temporaries a deploy stages in the target (`.<name>.shipshape-<id>`); rename the file or exclude it"
            ));
        }
    }
    None
}

/// Resolve `path` (relative to `root`) through any symlinks and refuse it unless its real location
/// is inside `root`. `origin` names where the path came from, for the error message. Returns the
/// resolved absolute path.
pub fn confine(root: &Path, path: &RelPath, origin: &Path) -> Result<PathBuf> {
    let real_root = root.canonicalize().at(root, "resolving")?;
    let joined = path.under(&real_root);
    let real = joined.canonicalize().at(&joined, "resolving")?;
    if !real.starts_with(&real_root) {
        return Err(Error::UnsafePath {
            origin: origin.to_path_buf(),
            path: path.to_string(),
            reason: format!("it resolves (through a symlink) to {}, outside {}", real.display(), real_root.display()),
        });
    }
    Ok(real)
}

/// True when `path`, taken lexically, stays inside its root (no component climbs above it).
/// The model the property tests compare [`check_relative`] against.
pub fn lexically_inside(path: &Path) -> bool {
    let mut depth = 0i64;
    for component in path.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_plain_relative_paths() {
        for ok in ["a", "src/app/config.py", "data/models/student_model.pkl", "a b/c-d_e.f", "ünï/cödé"] {
            assert!(RelPath::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_each_rule() {
        assert_eq!(RelPath::new(""), Err(PathRuleError::Empty));
        assert_eq!(RelPath::new("/etc/passwd"), Err(PathRuleError::Absolute));
        assert_eq!(RelPath::new("../x"), Err(PathRuleError::ParentComponent));
        assert_eq!(RelPath::new("a/../../x"), Err(PathRuleError::ParentComponent));
        assert_eq!(RelPath::new("./a"), Err(PathRuleError::NotNormal));
        assert_eq!(RelPath::new("a//b"), Err(PathRuleError::NotNormal));
        assert_eq!(RelPath::new("a/"), Err(PathRuleError::NotNormal));
        assert_eq!(RelPath::new("a\\..\\b"), Err(PathRuleError::BadCharacter));
        assert_eq!(RelPath::new("a\0b"), Err(PathRuleError::BadCharacter));
    }

    #[test]
    fn confine_refuses_symlink_out_and_allows_symlink_in() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::fs::write(root.path().join("real"), b"y").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("out")).unwrap();
        std::os::unix::fs::symlink("real", root.path().join("in")).unwrap();
        let origin = Path::new("shipshape.toml");
        let err = confine(root.path(), &RelPath::new("out").unwrap(), origin).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        assert!(confine(root.path(), &RelPath::new("in").unwrap(), origin).is_ok());
    }

    fn component() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-zA-Z0-9_.-]{1,8}",
            1 => Just("..".to_string()),
            1 => Just(".".to_string()),
            1 => Just(String::new()),
        ]
    }

    proptest! {
        /// Whatever the path, an accepted one never climbs out of its root, even lexically.
        #[test]
        fn accepted_paths_stay_inside(parts in prop::collection::vec(component(), 1..6), absolute in any::<bool>()) {
            let text = format!("{}{}", if absolute { "/" } else { "" }, parts.join("/"));
            if let Ok(path) = RelPath::new(&text) {
                prop_assert!(lexically_inside(Path::new(path.as_str())));
                prop_assert!(!text.split('/').any(|p| p == ".." || p == "." || p.is_empty()));
                prop_assert!(!absolute);
                // Joining never yields a path outside the root.
                let root = Path::new("/r/o/o/t");
                prop_assert!(path.under(root).starts_with(root));
            }
        }

        /// Any path with a `..` component is refused, whether or not it would net-escape.
        #[test]
        fn parent_components_always_refused(prefix in prop::collection::vec("[a-z]{1,4}", 0..4), suffix in prop::collection::vec("[a-z]{1,4}", 0..4)) {
            let mut parts = prefix.clone();
            parts.push("..".into());
            parts.extend(suffix);
            prop_assert!(RelPath::new(&parts.join("/")).is_err());
        }

        /// Serde refuses what `new` refuses, so a manifest cannot smuggle a bad path in.
        #[test]
        fn deserialize_agrees_with_new(parts in prop::collection::vec(component(), 1..5)) {
            let text = parts.join("/");
            let via_serde: std::result::Result<RelPath, _> = serde_json::from_value(serde_json::Value::String(text.clone()));
            prop_assert_eq!(via_serde.is_ok(), RelPath::new(&text).is_ok());
        }
    }
}
