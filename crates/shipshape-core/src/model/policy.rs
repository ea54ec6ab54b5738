//! The approval policy (`release/policy.yaml` by default): which roles exist, how each is named in
//! signatures, and how many distinct approvals each release type needs.
//!
//! ```yaml
//! schema_version: 1
//! roles:
//!   engineering-lead: {display_name: Engineering Lead}        # namespace engineering-lead@shipshape
//!   risk-manager: {display_name: Risk Manager, pgp_fingerprints: [...]}
//! release_types:
//!   major:  [{roles: [engineering-lead], count: 2}, {roles: [risk-manager], count: 1}]
//!   minor:  [{roles: [engineering-lead], count: 1}, {roles: [risk-manager], count: 1}]
//!   hotfix: [{roles: [engineering-lead, risk-manager], count: 1}]
//! allow_one_person_multiple_roles: false
//! allowed_key_types: [ssh-ed25519, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, openpgp]
//! ```
//!
//! Each requirement is "`count` distinct approvers from these roles". Every manifest records the
//! policy file's SHA-256; approvals are judged only against the policy it recorded.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::ids::ReleaseType;

/// Current policy schema.
pub const POLICY_SCHEMA: u32 = 1;

/// One role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// How people call it (`Risk Manager`).
    pub display_name: String,
    /// The SSH signature namespace; default `<role>@shipshape`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// OpenPGP keys (full fingerprints) whose holders hold this role.
    #[serde(default)]
    pub pgp_fingerprints: Vec<String>,
}

/// `count` distinct approvers from `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Roles that count towards it.
    pub roles: Vec<String>,
    /// How many distinct approvers.
    pub count: u32,
}

/// The policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Schema version.
    pub schema_version: u32,
    /// Roles by slug.
    pub roles: BTreeMap<String, Role>,
    /// Requirements by release type.
    pub release_types: BTreeMap<ReleaseType, Vec<Requirement>>,
    /// Whether one person may count for two roles.
    #[serde(default)]
    pub allow_one_person_multiple_roles: bool,
    /// Key types accepted for SSH approvals.
    #[serde(default = "default_key_types")]
    pub allowed_key_types: Vec<String>,
}

fn default_key_types() -> Vec<String> {
    ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "openpgp"]
        .map(String::from)
        .to_vec()
}

impl Policy {
    /// The signature namespace of `role`.
    pub fn namespace(&self, role: &str) -> Option<String> {
        self.roles.get(role).map(|r| r.namespace.clone().unwrap_or_else(|| format!("{role}@shipshape")))
    }

    /// Read and check a policy file.
    pub fn load(path: &Path) -> Result<(Policy, Vec<u8>)> {
        let (policy, bytes): (Policy, Vec<u8>) = crate::infra::yaml::read(path)?;
        policy.check(path)?;
        Ok((policy, bytes))
    }

    fn check(&self, path: &Path) -> Result<()> {
        let bad = |message: String| Err(Error::invalid(path, message));
        if self.schema_version != POLICY_SCHEMA {
            return bad(format!("schema_version {} is not supported (expected {POLICY_SCHEMA})", self.schema_version));
        }
        if self.roles.is_empty() {
            return bad("roles: define at least one role".into());
        }
        let mut namespaces = std::collections::HashSet::new();
        for (slug, role) in &self.roles {
            if slug.is_empty()
                || !slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return bad(format!("roles.{slug}: use lowercase letters, digits, `-` or `_`"));
            }
            if role.display_name.trim().is_empty() {
                return bad(format!("roles.{slug}.display_name must not be empty"));
            }
            let namespace = self.namespace(slug).unwrap_or_default();
            if !namespaces.insert(namespace.clone()) {
                return bad(format!(
                    "roles.{slug}: namespace {namespace} is used by two roles; an approval could move between them"
                ));
            }
            for fingerprint in &role.pgp_fingerprints {
                if fingerprint.len() != 40 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return bad(format!(
                        "roles.{slug}.pgp_fingerprints: `{fingerprint}` is not a full 40-hex-digit fingerprint"
                    ));
                }
            }
        }
        for release_type in [ReleaseType::Major, ReleaseType::Minor, ReleaseType::Hotfix] {
            let Some(requirements) = self.release_types.get(&release_type) else {
                return bad(format!(
                    "release_types.{release_type}: say which approvals a {release_type} release needs"
                ));
            };
            if requirements.is_empty() {
                return bad(format!("release_types.{release_type}: list at least one requirement"));
            }
            for requirement in requirements {
                if requirement.count == 0 {
                    return bad(format!("release_types.{release_type}: count must be at least 1"));
                }
                for role in &requirement.roles {
                    if !self.roles.contains_key(role) {
                        return bad(format!("release_types.{release_type}: unknown role `{role}`"));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const STORY_POLICY: &str = "schema_version: 1
roles:
  engineering-lead: {display_name: Engineering Lead}
  risk-manager: {display_name: Risk Manager}
release_types:
  major: [{roles: [engineering-lead], count: 2}, {roles: [risk-manager], count: 1}]
  minor: [{roles: [engineering-lead], count: 1}, {roles: [risk-manager], count: 1}]
  hotfix: [{roles: [engineering-lead, risk-manager], count: 1}]
";

    fn parse(text: &str) -> Result<Policy> {
        let path = Path::new("policy.yaml");
        let policy: Policy = crate::infra::yaml::parse(path, text)?;
        policy.check(path)?;
        Ok(policy)
    }

    #[test]
    fn story_policy() {
        let policy = parse(STORY_POLICY).unwrap();
        assert_eq!(policy.namespace("risk-manager").unwrap(), "risk-manager@shipshape");
        assert!(!policy.allow_one_person_multiple_roles);
        assert!(policy.allowed_key_types.contains(&"ssh-ed25519".to_string()));
    }

    #[test]
    fn rejections() {
        let cases = [
            (STORY_POLICY.replace("  hotfix: [{roles: [engineering-lead, risk-manager], count: 1}]\n", ""), "hotfix"),
            (STORY_POLICY.replace("count: 1}]\n  hotfix", "count: 0}]\n  hotfix"), "at least 1"),
            (STORY_POLICY.replace("[engineering-lead, risk-manager]", "[engineering-lead, cfo]"), "unknown role `cfo`"),
            (
                STORY_POLICY.replace(
                    "{display_name: Risk Manager}",
                    "{display_name: Risk Manager, namespace: engineering-lead@shipshape}",
                ),
                "two roles",
            ),
            (STORY_POLICY.replace("schema_version: 1", "schema_version: 1\nquorum: 3"), "quorum"),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }
}
