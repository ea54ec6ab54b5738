//! Approvals: detached SSH signatures (SSHSIG, as `ssh-keygen -Y sign` and git make them) over a
//! manifest file's exact bytes, kept in `release/manifests/<release_id>.approvals.yaml`, and the
//! judgement of them against the policy the manifest recorded and the `allowed_signers` file.
//!
//! Each role signs in its own namespace (`risk-manager@shipshape`), so an approval cannot be moved
//! to another role. An approval counts only when every rule holds — known role, allowed key type,
//! the role's namespace, the recorded fingerprint, a matching allowed_signers line (key, principal =
//! the approver's email, `namespaces=`, `valid-after`/`valid-before` now), and a signature that
//! verifies over the manifest's bytes — and then only once per key and, unless the policy allows
//! it, once per person across roles. Every refusal says which rule refused it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use crate::error::{Error, Result};
use crate::infra::clock::Time;
use crate::infra::hash::Digest;
use crate::layout::Workspace;
use crate::pipeline::manifest::{LoadedManifest, ReleaseId};
use crate::trust::allowed_signers::{self, AllowedSigner};
use crate::trust::policy::Policy;

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

/// Where a manifest's approvals live.
pub fn approvals_path(manifest_path: &Path) -> PathBuf {
    let stem = manifest_path.file_stem().and_then(|s| s.to_str()).unwrap_or("manifest");
    manifest_path.with_file_name(format!("{stem}.approvals.yaml"))
}

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
    /// Role.
    pub role: String,
    /// Name.
    pub name: String,
    /// Email.
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
        let signature = SshSig::from_pem(approval.signature.trim().as_bytes())
            .map_err(|e| format!("the signature is not an SSH signature ({e})"))?;
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

/// Sign `bytes` in `namespace` with the private key at `key_path`; returns the armored signature,
/// the key's fingerprint and its comment.
///
/// The key is read with the `ssh-key` crate. Keys it cannot read are signed by `ssh-keygen -Y sign`
/// instead: PEM-format keys, and about one ssh-keygen ECDSA key in 400, whose private scalar has a
/// leading zero byte that ssh-key 0.6 rejects ("length invalid").
pub fn sign_ssh(key_path: &Path, namespace: &str, bytes: &[u8]) -> Result<(String, String, String)> {
    let text = crate::infra::atomic::read_text(key_path)?;
    match PrivateKey::from_openssh(text.trim()) {
        Ok(key) if key.is_encrypted() => Err(Error::invalid(
            key_path,
            format!(
                "the key is passphrase-protected: sign with `ssh-keygen -Y sign -n {namespace} -f {} MANIFEST` and pass the .sig file with --signature",
                key_path.display()
            ),
        )),
        Ok(key) => {
            let signature = key
                .sign(namespace, HashAlg::Sha512, bytes)
                .map_err(|e| Error::invalid(key_path, format!("cannot sign with this key ({e})")))?;
            let armored = signature.to_pem(LineEnding::LF).map_err(|e| Error::invalid(key_path, format!("cannot encode the signature ({e})")))?;
            Ok((armored, key.fingerprint(HashAlg::Sha256).to_string(), key.comment().to_string()))
        }
        Err(parse_error) => sign_with_ssh_keygen(key_path, namespace, bytes).map_err(|fallback| {
            Error::invalid(
                key_path,
                format!("not a private key shipshape can read ({parse_error}), and ssh-keygen could not sign with it either ({fallback}); sign with `ssh-keygen -Y sign` and pass --signature"),
            )
        }),
    }
}

fn sign_with_ssh_keygen(
    key_path: &Path,
    namespace: &str,
    bytes: &[u8],
) -> std::result::Result<(String, String, String), String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
        .arg(key_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(bytes).map_err(|e| e.to_string())?;
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    let armored = String::from_utf8(output.stdout).map_err(|e| e.to_string())?;
    let signature = SshSig::from_pem(armored.trim().as_bytes()).map_err(|e| e.to_string())?;
    let key = PublicKey::from(signature.public_key().clone());
    let comment = PublicKey::read_openssh_file(&key_path.with_extension("pub"))
        .map(|k| k.comment().to_string())
        .unwrap_or_default();
    Ok((armored, key.fingerprint(HashAlg::Sha256).to_string(), comment))
}

fn ssh_approval(
    judge: &Judge,
    request: &ApproveRequest,
    signature: String,
    fingerprint: String,
    comment: String,
    key_data: &ssh_key::public::KeyData,
    now: Time,
) -> Result<Approval> {
    let email = match &request.email {
        Some(email) => email.clone(),
        None => judge
            .signers
            .iter()
            .filter(|s| s.key.key_data() == key_data)
            .flat_map(|s| s.principals.iter())
            .find(|p| !p.contains(['*', '?', '!']))
            .cloned()
            .ok_or_else(|| {
                Error::Check(format!("key {fingerprint} is not in allowed_signers; add it there, or pass --email"))
            })?,
    };
    let name = request
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .or(Some(comment).filter(|c| !c.trim().is_empty()))
        .unwrap_or_else(|| email.clone());
    Ok(Approval {
        role: request.role.clone(),
        name,
        email,
        timestamp: now,
        backend: Backend::Ssh,
        key_fingerprint: fingerprint,
        signature,
    })
}

fn pgp_approval(
    judge: &Judge,
    request: &ApproveRequest,
    signature: String,
    bytes: &[u8],
    now: Time,
) -> Result<Approval> {
    let (fingerprint, key) = crate::trust::openpgp::check(&signature, bytes, &judge.pgp_keys, now)
        .map_err(|reason| Error::Check(format!("this approval would not count, so it was not recorded: {reason}")))?;
    let (key_name, key_email) = crate::trust::openpgp::user_identity(key).unwrap_or_default();
    let email = request.email.clone().unwrap_or(key_email);
    let name = request.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or(key_name);
    Ok(Approval {
        role: request.role.clone(),
        name,
        email,
        timestamp: now,
        backend: Backend::Openpgp,
        key_fingerprint: fingerprint,
        signature,
    })
}

/// Generate an unencrypted ed25519 key pair for drills and the demo: the private key at `path`
/// (mode 0600), the public key at `path.pub`. Returns the public key line (`ssh-ed25519 AAAA… comment`).
pub fn generate_ed25519(path: &Path, comment: &str) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
        .map_err(|e| Error::invalid(path, format!("cannot generate a key ({e})")))?;
    key.set_comment(comment);
    let private =
        key.to_openssh(LineEnding::LF).map_err(|e| Error::invalid(path, format!("cannot encode the key ({e})")))?;
    let public =
        key.public_key().to_openssh().map_err(|e| Error::invalid(path, format!("cannot encode the key ({e})")))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Io { path: path.to_path_buf(), action: "creating key file", source: e })?;
    std::io::Write::write_all(&mut file, private.as_bytes()).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        action: "writing key file",
        source: e,
    })?;
    let public_path = path.with_extension("pub");
    crate::infra::atomic::write_atomic(&public_path, format!("{public}\n").as_bytes())?;
    Ok(public)
}

/// What the approver asked.
#[derive(Debug, Clone)]
pub struct ApproveRequest {
    /// The role.
    pub role: String,
    /// Sign with this SSH private key ...
    pub key: Option<PathBuf>,
    /// ... or through the user's gpg with this key id ...
    pub gpg: Option<String>,
    /// ... or import this signature made elsewhere (SSH or OpenPGP, by its armor).
    pub signature: Option<PathBuf>,
    /// Name (default: from the key's comment, or the email).
    pub name: Option<String>,
    /// Email (default: the key's principal in allowed_signers).
    pub email: Option<String>,
}

/// Sign (or import) an approval, check that it counts, and append it to the approvals file.
pub fn approve(
    workspace: &Workspace,
    loaded: &LoadedManifest,
    request: &ApproveRequest,
    now: Time,
) -> Result<ApprovalCheck> {
    if loaded.manifest.expires <= now {
        return Err(Error::Check(format!(
            "{} expired at {}: an expired manifest is never deployed, so it is not approved either; make a new one",
            loaded.manifest.release_id, loaded.manifest.expires
        )));
    }
    // Approve only what is intact: the bundle, validation, chain, store objects and backups.
    let integrity = crate::pipeline::verify::verify_loaded(
        workspace,
        loaded,
        crate::pipeline::verify::VerifyOptions {
            artifacts: false,
            integrity_only: true,
            for_rollback: false,
            use_verified_cache: false,
        },
        now,
        &crate::infra::hash::NoProgress,
    );
    if !integrity.passed() {
        let failures: Vec<String> =
            integrity.failures().map(|c| format!("{} {}: {}", c.check, c.subject, c.detail)).collect();
        return Err(Error::Check(format!(
            "{} fails verification, so it cannot be approved: {}",
            loaded.manifest.release_id,
            failures.join("; ")
        )));
    }
    let judge = judge_for(workspace, loaded)?;
    let Some(namespace) = judge.policy.namespace(&request.role) else {
        return Err(Error::Usage(format!(
            "unknown role `{}`: {} defines {}",
            request.role,
            judge.policy_path.display(),
            judge.policy.roles.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    };
    let approval = match (&request.key, &request.gpg, &request.signature) {
        (Some(key_path), None, None) => {
            let (signature, fingerprint, comment) = sign_ssh(key_path, &namespace, &loaded.bytes)?;
            let parsed =
                SshSig::from_pem(signature.trim().as_bytes()).map_err(|e| Error::invalid(key_path, e.to_string()))?;
            ssh_approval(&judge, request, signature, fingerprint, comment, parsed.public_key(), now)?
        }
        (None, Some(key_id), None) => {
            let signature = crate::trust::openpgp::sign_with_gpg(key_id, &loaded.path)?;
            pgp_approval(&judge, request, signature, &loaded.bytes, now)?
        }
        (None, None, Some(signature_path)) => {
            let text = crate::infra::atomic::read_text(signature_path)?;
            if text.trim_start().starts_with(crate::trust::openpgp::ARMOR_HEADER) {
                pgp_approval(&judge, request, text.trim().to_string() + "\n", &loaded.bytes, now)?
            } else {
                let parsed = SshSig::from_pem(text.trim().as_bytes()).map_err(|e| {
                    Error::invalid(
                        signature_path,
                        format!("not an SSH signature (-----BEGIN SSH SIGNATURE-----) or an OpenPGP one: {e}"),
                    )
                })?;
                let key = PublicKey::from(parsed.public_key().clone());
                let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
                ssh_approval(
                    &judge,
                    request,
                    text.trim().to_string() + "\n",
                    fingerprint,
                    String::new(),
                    parsed.public_key(),
                    now,
                )?
            }
        }
        _ => {
            return Err(Error::Usage(
                "give exactly one of --key (SSH, sign here), --gpg (sign with gpg) or --signature (import)".into(),
            ));
        }
    };
    let _lock = crate::infra::lock::WorkspaceLock::acquire(&workspace.lock_path(), "approve", now)?;
    let mut file = load(loaded)?;
    let mut candidate = file.approvals.clone();
    candidate.push(approval.clone());
    let report = judge.judge(loaded, &candidate, now);
    let check = report.checks.last().cloned().ok_or_else(|| Error::Usage("internal error: no verdict".into()))?;
    if let Some(reason) = &check.reason {
        return Err(Error::Check(format!("this approval would not count, so it was not recorded: {reason}")));
    }
    file.approvals.push(approval);
    let text = format!(
        "# Approvals of {}: detached signatures over the manifest's exact bytes. Added by `shipshape approve`.\n{}",
        loaded.manifest.release_id,
        crate::infra::yaml::to_string(&file)?
    );
    crate::infra::atomic::write_atomic(&approvals_path(&loaded.path), text.as_bytes())?;
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ECDSA signatures made by ssh-key must verify with ssh-key, every time (mpint encoding of r
    /// and s has a leading-zero rule that is easy to get wrong one time in a few hundred).
    #[test]
    fn ecdsa_sign_verify_round_trips() {
        for algorithm in
            [ssh_key::Algorithm::Ed25519, ssh_key::Algorithm::Ecdsa { curve: ssh_key::EcdsaCurve::NistP256 }]
        {
            let key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, algorithm.clone()).unwrap();
            let mut failures = 0;
            for i in 0..300u32 {
                let message = format!("manifest {i}");
                let signature = key.sign("risk-manager@shipshape", HashAlg::Sha512, message.as_bytes()).unwrap();
                let pem = signature.to_pem(LineEnding::LF).unwrap();
                let parsed = SshSig::from_pem(pem.as_bytes()).unwrap();
                if key.public_key().verify("risk-manager@shipshape", message.as_bytes(), &parsed).is_err() {
                    failures += 1;
                }
            }
            assert_eq!(failures, 0, "{algorithm:?}");
        }
    }
}
