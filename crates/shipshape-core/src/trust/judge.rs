//! The judge of approvals: the signatures in a manifest's approvals file against the policy the
//! manifest recorded, the `allowed_signers` file and the OpenPGP keys.
//!
//! Each role signs in its own namespace (`risk-manager@shipshape`), so an approval cannot be moved
//! to another role. An approval counts only when every rule holds — known role, allowed key type,
//! the role's namespace, the recorded fingerprint, a matching allowed_signers line (key, principal =
//! the approver's email, `namespaces=`, `valid-after`/`valid-before` now), and a signature that
//! verifies over the manifest's bytes — and then only once per key and, unless the policy allows
//! it, once per person across roles. Every refusal says which rule refused it.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;
use ssh_key::{HashAlg, PublicKey};

use crate::error::{Error, Result};
use crate::infra::clock::Time;
use crate::infra::hash::Digest;
use crate::layout::{Workspace, approvals_path};
use crate::model::approvals::{APPROVALS_SCHEMA, Approval, ApprovalsFile, Backend};
use crate::model::manifest::LoadedManifest;
use crate::model::policy::Policy;
use crate::trust::allowed_signers::{self, AllowedSigner};

/// Read a manifest's approvals (none when the file does not exist).
pub fn load(loaded: &LoadedManifest) -> Result<ApprovalsFile> {
    let path = approvals_path(&loaded.path);
    if !path.exists() {
        return Ok(ApprovalsFile {
            schema_version: APPROVALS_SCHEMA,
            release_id: loaded.manifest.release_id.clone(),
            approvals: Vec::new(),
        });
    }
    let (file, _): (ApprovalsFile, Vec<u8>) = crate::infra::yaml::read(&path)?;
    if file.schema_version != APPROVALS_SCHEMA {
        return Err(Error::invalid(&path, format!("schema_version {} is not supported", file.schema_version)));
    }
    if file.release_id != loaded.manifest.release_id {
        return Err(Error::invalid(
            &path,
            format!("holds approvals for {}, not {}", file.release_id, loaded.manifest.release_id),
        ));
    }
    Ok(file)
}

/// What judging needs: the policy the manifest recorded, and the signers.
#[derive(Debug, Clone)]
pub struct Judge {
    /// The policy.
    pub policy: Policy,
    /// Where it was read from (for messages).
    pub policy_path: PathBuf,
    /// The allowed signers.
    pub signers: Vec<AllowedSigner>,
    /// OpenPGP public keys.
    pub pgp_keys: Vec<crate::trust::openpgp::PublicKeyFile>,
}

/// Load the policy the manifest recorded (refusing one whose bytes changed) and the signers file.
pub fn judge_for(workspace: &Workspace, loaded: &LoadedManifest) -> Result<Judge> {
    let Some(reference) = &loaded.manifest.approval_policy else {
        return Err(Error::Check(format!(
            "{} records no approval policy (there was no {} when it was made): it cannot be approved; make a new manifest",
            workspace.display(&loaded.path),
            workspace.config.approvals.policy
        )));
    };
    let policy_path = reference.path.under(&workspace.root);
    let (policy, bytes) = Policy::load(&policy_path)?;
    let actual = Digest::of(&bytes);
    if actual != reference.sha256 {
        return Err(Error::Check(format!(
            "{}: the policy file changed since {} was made (it hashes to {actual}, the manifest recorded {}); \
             approvals are judged only by the policy a manifest recorded: restore it or make a new manifest",
            reference.path, loaded.manifest.release_id, reference.sha256
        )));
    }
    let signers_path = workspace.root.join(&workspace.config.approvals.allowed_signers);
    let signers = if signers_path.exists() { allowed_signers::load(&signers_path)? } else { Vec::new() };
    let pgp_keys = crate::trust::openpgp::load_keys(&workspace.root.join(&workspace.config.approvals.pgp_keys))?;
    Ok(Judge { policy, policy_path, signers, pgp_keys })
}

/// Why one approval does or does not count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalCheck {
    /// The role the signature approves for.
    pub role: String,
    /// The approver's name, as given when signing.
    pub name: String,
    /// The approver's email: the principal `allowed_signers` must list for the key.
    pub email: String,
    /// Fingerprint as recorded.
    pub key_fingerprint: String,
    /// Whether it counts.
    pub counted: bool,
    /// Why not, when it does not.
    pub reason: Option<String>,
}

/// One requirement's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequirementStatus {
    /// Roles that count.
    pub roles: Vec<String>,
    /// How many are needed.
    pub needed: u32,
    /// Who counted.
    pub approvers: Vec<String>,
    /// Whether enough did.
    pub met: bool,
}

/// The judgement of a manifest's approvals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalReport {
    /// The release type judged.
    pub release_type: String,
    /// Every approval and its verdict.
    pub checks: Vec<ApprovalCheck>,
    /// Every requirement of the release type.
    pub requirements: Vec<RequirementStatus>,
    /// All requirements met.
    pub threshold_met: bool,
}

impl Judge {
    fn unknown_role(&self, role: &str) -> String {
        format!(
            "unknown role `{role}`: the policy's roles are {}",
            self.policy.roles.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    }

    /// Check one approval of `manifest_bytes` by its backend; `Ok` carries the key's fingerprint.
    pub fn check(&self, approval: &Approval, manifest_bytes: &[u8], now: Time) -> std::result::Result<String, String> {
        match approval.backend {
            Backend::Ssh => self.check_ssh(approval, manifest_bytes, now),
            Backend::Openpgp => self.check_openpgp(approval, manifest_bytes, now),
        }
    }

    /// Check one OpenPGP approval.
    pub fn check_openpgp(
        &self,
        approval: &Approval,
        manifest_bytes: &[u8],
        now: Time,
    ) -> std::result::Result<String, String> {
        let role = &approval.role;
        let role_def = self.policy.roles.get(role).ok_or_else(|| self.unknown_role(role))?;
        if !self.policy.allowed_key_types.iter().any(|t| t == "openpgp") {
            return Err("OpenPGP keys are not in the policy's allowed_key_types".into());
        }
        let (fingerprint, key) =
            crate::trust::openpgp::check(&approval.signature, manifest_bytes, &self.pgp_keys, now)?;
        if !role_def.pgp_fingerprints.iter().any(|f| f.eq_ignore_ascii_case(&fingerprint)) {
            return Err(format!(
                "OpenPGP key {fingerprint} is not listed for role {role} (pgp_fingerprints in the policy)"
            ));
        }
        if !fingerprint.eq_ignore_ascii_case(&approval.key_fingerprint) {
            return Err(format!(
                "the recorded key fingerprint {} is not the signing key's {fingerprint}",
                approval.key_fingerprint
            ));
        }
        let emails = crate::trust::openpgp::emails(key);
        if !emails.contains(&approval.email.to_lowercase()) {
            return Err(format!("{} is not a user id of OpenPGP key {fingerprint}", approval.email));
        }
        Ok(fingerprint)
    }

    /// Check one SSH approval of `manifest_bytes`; `Ok` carries the signing key's fingerprint.
    pub fn check_ssh(
        &self,
        approval: &Approval,
        manifest_bytes: &[u8],
        now: Time,
    ) -> std::result::Result<String, String> {
        let role = &approval.role;
        let namespace = self.policy.namespace(role).ok_or_else(|| self.unknown_role(role))?;
        let signature = crate::trust::read_ssh_signature(&approval.signature)
            .map_err(|e| format!("the signature is not an SSH signature: {e}"))?;
        let key = PublicKey::from(signature.public_key().clone());
        let key_type = key.algorithm().as_str().to_string();
        if !self.policy.allowed_key_types.contains(&key_type) {
            return Err(format!("key type {key_type} is not in the policy's allowed_key_types"));
        }
        if signature.namespace() != namespace {
            return Err(format!(
                "the signature was made for namespace `{}`, but role {role} signs as `{namespace}`: an approval cannot move between roles",
                signature.namespace()
            ));
        }
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        if fingerprint != approval.key_fingerprint {
            return Err(format!(
                "the recorded key fingerprint {} is not the signing key's {fingerprint}",
                approval.key_fingerprint
            ));
        }
        let same_key: Vec<&AllowedSigner> =
            self.signers.iter().filter(|s| !s.cert_authority && s.key.key_data() == signature.public_key()).collect();
        if same_key.is_empty() {
            return Err(format!("key {fingerprint} is not in allowed_signers"));
        }
        let for_principal: Vec<&&AllowedSigner> =
            same_key.iter().filter(|s| s.matches_principal(&approval.email)).collect();
        if for_principal.is_empty() {
            return Err(format!("allowed_signers does not list key {fingerprint} for principal {}", approval.email));
        }
        let for_namespace: Vec<&&&AllowedSigner> =
            for_principal.iter().filter(|s| s.allows_namespace(&namespace)).collect();
        if for_namespace.is_empty() {
            return Err(format!(
                "allowed_signers does not let {} sign as {role} (namespaces= does not include {namespace}; line {})",
                approval.email, for_principal[0].line
            ));
        }
        let mut validity = Err(String::new());
        for signer in &for_namespace {
            validity = signer
                .valid_at(now.instant())
                .map_err(|reason| format!("{reason} (allowed_signers line {})", signer.line));
            if validity.is_ok() {
                break;
            }
        }
        validity?;
        key.verify(&namespace, manifest_bytes, &signature).map_err(|_| {
            "the signature does not match this manifest's bytes: the manifest changed after it was signed, or the approval was made for another manifest".to_string()
        })?;
        Ok(fingerprint)
    }

    /// Judge every approval and the release type's threshold.
    pub fn judge(&self, loaded: &LoadedManifest, approvals: &[Approval], now: Time) -> ApprovalReport {
        let mut checks = Vec::with_capacity(approvals.len());
        let mut counted: Vec<(String, String)> = Vec::new(); // (role, approver)
        let mut by_key: HashMap<String, String> = HashMap::new(); // fingerprint -> role
        let mut by_person: HashMap<String, String> = HashMap::new(); // email -> role
        for approval in approvals {
            let verdict = self.check(approval, &loaded.bytes, now).and_then(|fingerprint| {
                let person = approval.email.to_lowercase();
                if let Some(role) = by_key.get(&fingerprint) {
                    return Err(format!(
                        "key {fingerprint} already approved this release as {role}: one key counts once"
                    ));
                }
                match by_person.get(&person) {
                    Some(role) if role == &approval.role => {
                        return Err(format!(
                            "{} already approved this release as {role}: one person counts once per role",
                            approval.email
                        ));
                    }
                    Some(role) if !self.policy.allow_one_person_multiple_roles => {
                        return Err(format!(
                            "{} already counted as {role}: the policy does not let one person count for two roles",
                            approval.email
                        ));
                    }
                    _ => {}
                }
                by_key.insert(fingerprint, approval.role.clone());
                by_person.insert(person, approval.role.clone());
                Ok(())
            });
            if verdict.is_ok() {
                counted.push((approval.role.clone(), format!("{} <{}>", approval.name, approval.email)));
            }
            checks.push(ApprovalCheck {
                role: approval.role.clone(),
                name: approval.name.clone(),
                email: approval.email.clone(),
                key_fingerprint: approval.key_fingerprint.clone(),
                counted: verdict.is_ok(),
                reason: verdict.err(),
            });
        }
        let release_type = loaded.manifest.release_type;
        let requirements: Vec<RequirementStatus> = self
            .policy
            .release_types
            .get(&release_type)
            .map(|list| {
                list.iter()
                    .map(|requirement| {
                        let approvers: Vec<String> = counted
                            .iter()
                            .filter(|(role, _)| requirement.roles.contains(role))
                            .map(|(_, who)| who.clone())
                            .collect();
                        RequirementStatus {
                            roles: requirement.roles.clone(),
                            needed: requirement.count,
                            met: approvers.len() as u32 >= requirement.count,
                            approvers,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let threshold_met = !requirements.is_empty() && requirements.iter().all(|r| r.met);
        ApprovalReport { release_type: release_type.to_string(), checks, requirements, threshold_met }
    }
}

/// Judge a manifest's approvals (loading the policy it recorded and the signers).
pub fn verify_approvals(workspace: &Workspace, loaded: &LoadedManifest, now: Time) -> Result<ApprovalReport> {
    let judge = judge_for(workspace, loaded)?;
    let file = load(loaded)?;
    Ok(judge.judge(loaded, &file.approvals, now))
}
