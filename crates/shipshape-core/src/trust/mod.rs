//! What decides whether a manifest is trusted: the keys (`allowed_signers`, OpenPGP keys), the
//! approval policy, the pure judge of approvals against them, and the anti-rollback state.
//!
//! These read the on-disk schemas of [`crate::model`] and never the pipeline above them.

pub mod allowed_signers;
pub mod anti_rollback;
pub mod judge;
pub mod openpgp;

/// The armor line an SSH signature (`ssh-keygen -Y sign`) starts with.
pub const SSH_ARMOR_HEADER: &str = "-----BEGIN SSH SIGNATURE-----";

/// Read an armored SSH signature, saying in words what is wrong with one that does not read: not
/// text, no armor line, or damaged inside its armor (the parser's detail in parentheses).
pub fn read_ssh_signature(text: &str) -> std::result::Result<ssh_key::SshSig, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("it is empty".into());
    }
    if trimmed.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err("it is not text (it holds binary or control characters); an SSH signature is the armored text file `ssh-keygen -Y sign` writes".into());
    }
    if !trimmed.starts_with(SSH_ARMOR_HEADER) {
        return Err(format!(
            "it does not start with `{SSH_ARMOR_HEADER}`; an SSH signature is the armored text file `ssh-keygen -Y sign` writes"
        ));
    }
    ssh_key::SshSig::from_pem(trimmed.as_bytes())
        .map_err(|e| format!("its armored body is damaged or truncated, so it cannot be read ({e})"))
}
