//! The approvals file, `release/manifests/<release_id>.approvals.yaml`: detached signatures over the manifest's exact bytes.

use serde::{Deserialize, Serialize};

use crate::infra::clock::Time;
use crate::model::ids::ReleaseId;

/// Current approvals-file schema.
pub const APPROVALS_SCHEMA: u32 = 1;

/// How an approval was signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// An SSHSIG signature.
    Ssh,
    /// An OpenPGP detached signature.
    Openpgp,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The role approved for (a policy slug).
    pub role: String,
    /// The approver's name.
    pub name: String,
    /// The approver's email: the principal looked up in allowed_signers.
    pub email: String,
    /// When the approval was made (as the approver's machine said).
    pub timestamp: Time,
    /// The signature backend.
    pub backend: Backend,
    /// `SHA256:...` fingerprint of the signing key.
    pub key_fingerprint: String,
    /// The armored signature (written as a YAML literal block, so it can be copied out as is).
    #[serde(serialize_with = "literal_block")]
    pub signature: String,
}

fn literal_block<S: serde::Serializer>(value: &str, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serde_saphyr::LitStr(value).serialize(serializer)
}

/// `<release_id>.approvals.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsFile {
    /// Schema version.
    pub schema_version: u32,
    /// The release approved.
    pub release_id: ReleaseId,
    /// The approvals, in the order they were added.
    pub approvals: Vec<Approval>,
}
