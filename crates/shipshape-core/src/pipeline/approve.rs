//! `approve`: an approver signs a verified manifest's exact bytes — with an SSH key (SSHSIG, as
//! `ssh-keygen -Y sign` and git make them) or through gpg — and the signature is added to
//! `release/manifests/<release_id>.approvals.yaml`, after [`crate::trust::judge`] has accepted it.

use std::path::{Path, PathBuf};

use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};

use crate::error::{Error, Result};
use crate::infra::clock::Time;
use crate::layout::Workspace;
use crate::layout::approvals_path;
use crate::model::approvals::{Approval, Backend};
use crate::model::manifest::LoadedManifest;
use crate::trust::judge::{ApprovalCheck, Judge, judge_for, load};

/// Sign `bytes` in `namespace` with the private key at `key_path`; returns the armored signature,
/// the key's fingerprint and its comment.
///
/// The key is read with the `ssh-key` crate. Keys it cannot read or use are signed by `ssh-keygen -Y
/// sign` instead: passphrase-protected keys (ssh-keygen asks for the passphrase), PEM-format keys,
/// and about one ssh-keygen ECDSA key in 400, whose private scalar has a leading zero byte that
/// ssh-key 0.6 rejects ("length invalid").
pub fn sign_ssh(key_path: &Path, namespace: &str, bytes: &[u8]) -> Result<(String, String, String)> {
    let text = crate::infra::atomic::read_text(key_path)?;
    match PrivateKey::from_openssh(text.trim()) {
        // A passphrase-protected key: ssh-keygen signs, asking for the passphrase itself (on the
        // terminal, through SSH_ASKPASS, or not at all when the key is in ssh-agent).
        Ok(key) if key.is_encrypted() => sign_with_ssh_keygen(key_path, namespace, bytes).map_err(|fallback| {
            Error::invalid(
                key_path,
                format!(
                    "the key is passphrase-protected and ssh-keygen could not sign with it ({fallback}): run `ssh-keygen -Y sign -n {namespace} -f {} MANIFEST` where it can ask for the passphrase, and pass the .sig file with --signature",
                    key_path.display()
                ),
            )
        }),
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
    let signature = crate::trust::read_ssh_signature(&armored)?;
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
            purpose: crate::pipeline::verify::Purpose::Integrity,
            ..Default::default()
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
            let parsed = crate::trust::read_ssh_signature(&signature)
                .map_err(|e| Error::invalid(key_path, format!("ssh-keygen wrote no readable signature: {e}")))?;
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
                let parsed = crate::trust::read_ssh_signature(&text).map_err(|e| {
                    Error::invalid(signature_path, format!("not an SSH signature or an OpenPGP one: {e}"))
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
                let parsed = ssh_key::SshSig::from_pem(pem.as_bytes()).unwrap();
                if key.public_key().verify("risk-manager@shipshape", message.as_bytes(), &parsed).is_err() {
                    failures += 1;
                }
            }
            assert_eq!(failures, 0, "{algorithm:?}");
        }
    }
}
