//! `[deploy]` and `[approvals]`: where and how releases are deployed, and where the keys live.

use serde::{Deserialize, Serialize};

use crate::config::PositiveDuration;

/// How files reach production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployMode {
    /// Files at their paths in the target, each renamed over atomically.
    Copy,
    /// Each release materialised once under `.shipshape/releases/<id>/`, `current` switched by rename.
    Symlink,
}

impl DeployMode {
    /// The name `shipshape.toml` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployMode::Copy => "copy",
            DeployMode::Symlink => "symlink",
        }
    }
}

/// A post-deploy check: a command that must exit 0 after the switch, or the deploy is rolled back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostDeployCheck {
    /// What it checks.
    pub name: String,
    /// Run with `sh -c` in the workspace; `SHIPSHAPE_TARGET` (the tree being made live: the target in
    /// copy mode, the release's directory in symlink mode), `SHIPSHAPE_TARGET_ROOT` and
    /// `SHIPSHAPE_RELEASE_ID` are set.
    pub command: String,
    /// Time limit (default 5 minutes).
    #[serde(default)]
    pub timeout: Option<PositiveDuration>,
}

/// `[deploy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// The directory production reads (absolute, or relative to the workspace).
    pub target: String,
    /// `copy` (default) or `symlink`.
    #[serde(default = "default_mode")]
    pub mode: DeployMode,
    /// Commands run after the switch; any failure rolls the deploy back.
    #[serde(default)]
    pub post_deploy_checks: Vec<PostDeployCheck>,
}

fn default_mode() -> DeployMode {
    DeployMode::Copy
}

/// `[approvals]`: where the approval policy and the signers live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// The policy file, relative to the workspace.
    pub policy: String,
    /// The OpenSSH allowed_signers file, relative to the workspace.
    pub allowed_signers: String,
    /// A directory of armored OpenPGP public keys (`*.asc`), relative to the workspace.
    pub pgp_keys: String,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            policy: "release/policy.yaml".into(),
            allowed_signers: "release/allowed_signers".into(),
            pgp_keys: "release/pgp_keys".into(),
        }
    }
}
