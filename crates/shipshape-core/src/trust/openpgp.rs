//! OpenPGP approvals: detached signatures as `gpg --detach-sign --armor` makes them, verified in pure
//! Rust (rPGP) against public keys kept in `release/pgp_keys/*.asc`, with role membership by key
//! fingerprint in the policy.
//!
//! `gpg --verify` exits 0 for a signature by an expired key, so shipshape judges keys itself: the
//! key's self-signatures must verify, the primary key (and the signing subkey) must not be revoked by
//! a valid revocation signature, and must not be past the expiration time its newest self-signature
//! sets, now.

use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::SignatureType;
use pgp::types::KeyDetails;

use crate::error::{Error, IoContext, Result};
use crate::infra::clock::Time;

/// The armor header of an OpenPGP signature.
pub const ARMOR_HEADER: &str = "-----BEGIN PGP SIGNATURE-----";

/// A public key and the file it came from.
#[derive(Debug, Clone)]
pub struct PublicKeyFile {
    /// The key.
    pub key: SignedPublicKey,
    /// Where it was read from.
    pub path: PathBuf,
}

/// Upper-case hex fingerprint of a key.
pub fn fingerprint_hex(key: &SignedPublicKey) -> String {
    format!("{:X}", key.fingerprint())
}

/// Read every `*.asc` public key in `dir` (none when the directory does not exist).
pub fn load_keys(dir: &Path) -> Result<Vec<PublicKeyFile>> {
    let mut keys = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
        Err(e) => return Err(e).at(dir, "listing"),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "asc"))
        .collect();
    paths.sort();
    for path in paths {
        let text = crate::infra::atomic::read_text(&path)?;
        let (key, _) = SignedPublicKey::from_string(&text).map_err(|e| {
            Error::invalid(
                &path,
                format!("not an armored OpenPGP public key ({e}); export one with `gpg --armor --export FINGERPRINT`"),
            )
        })?;
        key.verify_bindings()
            .map_err(|e| Error::invalid(&path, format!("the key's self-signatures do not verify ({e})")))?;
        keys.push(PublicKeyFile { key, path });
    }
    Ok(keys)
}

/// The emails of the key's user ids (`Name <email>`), lowercased.
pub fn emails(key: &SignedPublicKey) -> Vec<String> {
    key.details
        .users
        .iter()
        .filter_map(|u| {
            let text = String::from_utf8_lossy(u.id.id()).into_owned();
            text.rfind('<').and_then(|open| text[open + 1..].strip_suffix('>').map(str::to_lowercase))
        })
        .collect()
}

/// The primary user id's name and email (`Name <email>`), if the key has one.
pub fn user_identity(key: &SignedPublicKey) -> Option<(String, String)> {
    let user = key.details.users.first()?;
    let text = String::from_utf8_lossy(user.id.id()).into_owned();
    match (text.find('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            Some((text[..open].trim().to_string(), text[open + 1..close].trim().to_string()))
        }
        _ => Some((text.clone(), text)),
    }
}

fn expiry_of(created: u32, signatures: &[&pgp::packet::Signature]) -> Option<u32> {
    // The newest self-signature that states an expiration time decides.
    signatures
        .iter()
        .filter_map(|s| Some((s.created().map(|t| t.as_secs()).unwrap_or(0), s.key_expiration_time()?)))
        .max_by_key(|(when, _)| *when)
        .and_then(|(_, duration)| (duration.as_secs() > 0).then(|| created.saturating_add(duration.as_secs())))
}

fn when(seconds: u32) -> String {
    jiff::Timestamp::from_second(i64::from(seconds)).map(|t| t.to_string()).unwrap_or_else(|_| seconds.to_string())
}

/// Check an armored detached signature over `bytes`; `Ok` carries the primary key's fingerprint
/// and the key itself.
pub fn check<'k>(
    signature: &str,
    bytes: &[u8],
    keys: &'k [PublicKeyFile],
    now: Time,
) -> std::result::Result<(String, &'k SignedPublicKey), String> {
    let (detached, _) =
        DetachedSignature::from_string(signature.trim()).map_err(|e| format!("not an OpenPGP signature ({e})"))?;
    let issuers: Vec<String> = detached.signature.issuer_fingerprint().iter().map(|f| format!("{f:X}")).collect();
    let issuer_ids: Vec<String> = detached.signature.issuer_key_id().iter().map(|k| key_id_hex(k)).collect();
    let matches = |fingerprint: String, key_id: String| issuers.contains(&fingerprint) || issuer_ids.contains(&key_id);
    for file in keys {
        let key = &file.key;
        let primary_fp = fingerprint_hex(key);
        let now_secs = u32::try_from(now.unix_seconds().max(0)).unwrap_or(u32::MAX);
        let self_signatures: Vec<&pgp::packet::Signature> = key
            .details
            .users
            .iter()
            .flat_map(|u| u.signatures.iter())
            .chain(key.details.direct_signatures.iter())
            .collect();
        let primary_revoked = key
            .details
            .revocation_signatures
            .iter()
            .any(|s| s.typ() == Some(SignatureType::KeyRevocation) && s.verify_key(&key.primary_key).is_ok());
        let primary_expiry = expiry_of(key.primary_key.created_at().as_secs(), &self_signatures);
        let judge_key = |revoked: bool, expiry: Option<u32>| -> std::result::Result<(), String> {
            if primary_revoked || revoked {
                return Err(format!("OpenPGP key {primary_fp} is revoked"));
            }
            if let Some(at) = primary_expiry.into_iter().chain(expiry).min()
                && now_secs >= at
            {
                return Err(format!("OpenPGP key {primary_fp} expired at {}", when(at)));
            }
            Ok(())
        };
        if matches(primary_fp.clone(), key_id_hex(&key.legacy_key_id())) {
            judge_key(false, None)?;
            detached.verify(&key.primary_key, bytes).map_err(|_| mismatch())?;
            return Ok((primary_fp, key));
        }
        for subkey in &key.public_subkeys {
            if !matches(format!("{:X}", subkey.key.fingerprint()), key_id_hex(&subkey.key.legacy_key_id())) {
                continue;
            }
            let bindings: Vec<&pgp::packet::Signature> =
                subkey.signatures.iter().filter(|s| s.typ() == Some(SignatureType::SubkeyBinding)).collect();
            if bindings.is_empty() || subkey.verify_bindings(&key.primary_key).is_err() {
                return Err(format!("the signing subkey of {primary_fp} is not validly bound to it"));
            }
            let revoked = subkey.signatures.iter().any(|s| s.typ() == Some(SignatureType::SubkeyRevocation));
            judge_key(revoked, expiry_of(subkey.key.created_at().as_secs(), &bindings))?;
            detached.verify(&subkey.key, bytes).map_err(|_| mismatch())?;
            return Ok((primary_fp, key));
        }
    }
    let who = issuers.first().or(issuer_ids.first()).cloned().unwrap_or_else(|| "an unknown key".into());
    Err(format!("the signing key {who} is not among the OpenPGP public keys in release/pgp_keys"))
}

fn key_id_hex(id: &pgp::types::KeyId) -> String {
    hex::encode_upper(id.as_ref())
}

fn mismatch() -> String {
    "the signature does not match this manifest's bytes: the manifest changed after it was signed, or the approval was made for another manifest".to_string()
}

/// Sign `path` with the user's gpg and key `key_id`; returns the armored signature.
pub fn sign_with_gpg(key_id: &str, path: &Path) -> Result<String> {
    let output = std::process::Command::new("gpg")
        .args(["--batch", "--yes", "--armor", "--detach-sign", "--local-user", key_id, "--output", "-"])
        .arg(path)
        .output()
        .map_err(|e| Error::Io { path: PathBuf::from("gpg"), action: "running gpg", source: e })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Error::invalid(
            path,
            format!("gpg could not sign with {key_id}: {}", stderr.trim().lines().last().unwrap_or("")),
        ));
    }
    String::from_utf8(output.stdout).map_err(|_| Error::invalid(path, "gpg printed a signature that is not text"))
}
