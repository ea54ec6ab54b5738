//! Named operators: who may read, send events or change state through `serve`, each with a token
//! stored only as an argon2id hash in `release/operators.toml` (or the file given to `serve
//! --operators`). A token is `ss1.<id>.<secret>`: the id finds the record, one argon2 verification
//! checks the secret, and a verified token is remembered in memory (by its SHA-256) so the engine's
//! frequent event posts do not pay argon2 each time. The file is read again when it changes, so
//! `operator add` and `operator remove` take effect without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use shipshape_core::Error;

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read the dashboard and the JSON API.
    Viewer,
    /// Read, and send events (`POST /api/v1/events`): the trading engine's role.
    Engine,
    /// Everything: events, evaluations, rollbacks.
    Operator,
}

impl Role {
    /// Its name in the file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Engine => "engine",
            Role::Operator => "operator",
        }
    }

    /// Parse `viewer`, `engine` or `operator`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "engine" => Some(Role::Engine),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

/// One operator as the file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorRecord {
    /// Their name, as history and logs show it.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// The token's id (its second part).
    pub id: String,
    /// The argon2id hash of the token's secret (PHC string).
    pub hash: String,
    /// When the token was made.
    pub added: String,
}

/// The operators file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorsFile {
    /// Every operator.
    #[serde(default)]
    pub operators: Vec<OperatorRecord>,
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operator {
    /// Their name.
    pub name: String,
    /// Their role.
    pub role: Role,
}

/// The default operators file of a workspace.
pub fn default_path(root: &Path) -> PathBuf {
    root.join("release").join("operators.toml")
}

fn invalid(path: &Path, message: impl Into<String>) -> Error {
    Error::invalid(path, message.into())
}

/// Read `path`: an absent file is no operators; a malformed one is an error naming the place.
pub fn load(path: &Path) -> shipshape_core::Result<OperatorsFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OperatorsFile::default()),
        Err(source) => {
            return Err(Error::Io { path: path.to_path_buf(), action: "reading the operators file", source });
        }
    };
    let file: OperatorsFile = toml::from_str(&text).map_err(|e| invalid(path, e.to_string()))?;
    for (i, op) in file.operators.iter().enumerate() {
        if !valid_name(&op.name) {
            return Err(invalid(
                path,
                format!("operators[{i}].name `{}`: letters, digits, `.`, `_`, `-`, `@`", op.name),
            ));
        }
        if PasswordHash::new(&op.hash).is_err() {
            return Err(invalid(path, format!("operators[{i}] ({}): `hash` is not an argon2 PHC string", op.name)));
        }
        if file.operators[..i].iter().any(|o| o.name == op.name || o.id == op.id) {
            return Err(invalid(path, format!("operators[{i}] ({}): a second operator with this name or id", op.name)));
        }
    }
    Ok(file)
}

/// Operator names: what history and logs can print safely.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// Write `file` to `path` atomically (a temporary file renamed over it).
pub fn save(path: &Path, file: &OperatorsFile) -> shipshape_core::Result<()> {
    let text = format!(
        "# shipshape operators: names, roles and argon2id hashes of their tokens (never the tokens).\n# Managed with `shipshape operator add|remove|list`.\n\n{}",
        toml::to_string(file).map_err(|e| invalid(path, e.to_string()))?
    );
    let io = |action: &'static str| move |source| Error::Io { path: path.to_path_buf(), action, source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating the operators file's directory"))?;
    }
    let temporary = path.with_extension("toml.tmp");
    {
        use std::io::Write as _;
        let mut out = std::fs::File::create(&temporary).map_err(io("writing the operators file"))?;
        out.write_all(text.as_bytes()).and_then(|()| out.sync_all()).map_err(io("writing the operators file"))?;
    }
    std::fs::rename(&temporary, path).map_err(io("replacing the operators file"))
}

fn hasher() -> argon2::Argon2<'static> {
    // OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane (the crate's defaults).
    argon2::Argon2::default()
}

/// Add `name` with `role` to the file at `path`; the new token (shown once, never stored).
pub fn add(path: &Path, name: &str, role: Role, now: &str) -> shipshape_core::Result<String> {
    if !valid_name(name) {
        return Err(Error::Usage(format!("operator name `{name}`: 1 to 64 letters, digits, `.`, `_`, `-` or `@`")));
    }
    let mut file = load(path)?;
    if file.operators.iter().any(|o| o.name == name) {
        return Err(Error::Usage(format!(
            "operator `{name}` exists: `shipshape operator remove {name}` first to give them a new token"
        )));
    }
    let id = crate::random_hex(4)?;
    let secret = crate::random_hex(32)?;
    let salt_bytes = hex_bytes(&crate::random_hex(16)?);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| Error::Usage(format!("salt: {e}")))?;
    let hash = hasher()
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|e| Error::Usage(format!("hashing the token: {e}")))?
        .to_string();
    file.operators.push(OperatorRecord { name: name.into(), role, id: id.clone(), hash, added: now.into() });
    save(path, &file)?;
    Ok(format!("ss1.{id}.{secret}"))
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect()
}

/// Remove `name`; `false` when there was no such operator.
pub fn remove(path: &Path, name: &str) -> shipshape_core::Result<bool> {
    let mut file = load(path)?;
    let before = file.operators.len();
    file.operators.retain(|o| o.name != name);
    if file.operators.len() == before {
        return Ok(false);
    }
    save(path, &file)?;
    Ok(true)
}

/// The operators a running server knows: the file (re-read when it changes), the verified-token
/// cache, and the single token of `--token-file` (or the one made at start), named `serve-token`.
pub struct Registry {
    path: PathBuf,
    serve_token: String,
    inner: Mutex<Loaded>,
}

#[derive(Default)]
struct Loaded {
    /// The file's modification time, size and inode when read (`save` renames a new file in, so
    /// the inode changes even within one timestamp tick).
    modified: Option<(SystemTime, u64, u64)>,
    file: OperatorsFile,
    /// SHA-256 of a verified token → who.
    verified: HashMap<[u8; 32], Operator>,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or one that matches nobody.
    Unknown,
    /// The operators file cannot be read.
    Broken(String),
}

impl Registry {
    /// Operators from `path`, plus `serve_token`.
    pub fn new(path: PathBuf, serve_token: String) -> Registry {
        Registry { path, serve_token, inner: Mutex::new(Loaded::default()) }
    }

    /// The file this server reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who `token` belongs to, if it was verified before (no password hash is computed, and the file
    /// is not re-read: for logs, after a request's own check).
    pub fn cached(&self, token: &str) -> Option<Operator> {
        if same(token, &self.serve_token) {
            return Some(Operator { name: "serve-token".into(), role: Role::Operator });
        }
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).verified.get(&digest).cloned()
    }

    /// Who `token` belongs to.
    pub fn identify(&self, token: &str) -> Result<Operator, Refusal> {
        if same(token, &self.serve_token) {
            return Ok(Operator { name: "serve-token".into(), role: Role::Operator });
        }
        let mut loaded = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let modified = std::fs::metadata(&self.path).ok().and_then(|m| {
            use std::os::unix::fs::MetadataExt as _;
            Some((m.modified().ok()?, m.len(), m.ino()))
        });
        if modified != loaded.modified || (modified.is_none() && !loaded.file.operators.is_empty()) {
            let file = load(&self.path).map_err(|e| Refusal::Broken(e.to_string()))?;
            *loaded = Loaded { modified, file, verified: HashMap::new() };
        }
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(who) = loaded.verified.get(&digest) {
            return Ok(who.clone());
        }
        let mut parts = token.splitn(3, '.');
        let (Some("ss1"), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Refusal::Unknown);
        };
        let Some(record) = loaded.file.operators.iter().find(|o| o.id == id) else { return Err(Refusal::Unknown) };
        let hash = PasswordHash::new(&record.hash).map_err(|e| Refusal::Broken(e.to_string()))?;
        if hasher().verify_password(secret.as_bytes(), &hash).is_err() {
            return Err(Refusal::Unknown);
        }
        let who = Operator { name: record.name.clone(), role: record.role };
        loaded.verified.insert(digest, who.clone());
        Ok(who)
    }
}

/// Constant-time string comparison (tokens, the CSRF token).
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_verified_then_cached_and_removal_takes_effect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operators.toml");
        let token = add(&path, "alice", Role::Operator, "2026-12-02T00:00:00Z").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(token.rsplit('.').next().unwrap()), "the secret is never stored");
        assert!(text.contains("$argon2id$"), "{text}");
        let registry = Registry::new(path.clone(), "x".repeat(40));
        assert_eq!(registry.identify(&token).unwrap(), Operator { name: "alice".into(), role: Role::Operator });
        assert_eq!(registry.identify(&token).unwrap().name, "alice");
        // The same token with its last character changed (to another one, whatever it was).
        let last = if token.ends_with('0') { '1' } else { '0' };
        let wrong = format!("{}{last}", &token[..token.len() - 1]);
        assert_ne!(wrong, token);
        assert_eq!(registry.identify(&wrong), Err(Refusal::Unknown));
        assert_eq!(registry.identify("ss1.nope.nope"), Err(Refusal::Unknown));
        assert_eq!(registry.identify(&"x".repeat(40)).unwrap().name, "serve-token");
        assert!(add(&path, "alice", Role::Viewer, "now").is_err(), "names are unique");
        assert!(add(&path, "bad name", Role::Viewer, "now").is_err());
        // Removed: refused at once, although verified before (the file changed).
        assert!(remove(&path, "alice").unwrap());
        assert_eq!(registry.identify(&token), Err(Refusal::Unknown));
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operators.toml");
        std::fs::write(&path, "[[operators]]\nname = \"a\"\nrole = \"root\"\nid = \"1\"\nhash = \"x\"\nadded = \"\"\n")
            .unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(error.contains("operators.toml") && error.contains("role"), "{error}");
    }
}
