//! OpenSSH `allowed_signers` files, as `ssh-keygen -Y verify` and git read them.
//!
//! Each line: `principals [options] keytype base64-key [comment]`, where principals is a
//! comma-separated list of patterns (`*`, `?`, `!` negation; the list may be double-quoted) and
//! options is a comma-separated list of `cert-authority`, `namespaces="pat,pat"`,
//! `valid-after="YYYYMMDD[HHMM[SS]][Z]"` and `valid-before=...`. Blank lines and `#` comments are
//! ignored. Anything else is an error naming the file and line: a signer file that half-parses is a
//! security problem, not a convenience.
//!
//! shipshape uses the file as ssh-keygen does — key, principal, namespace and validity must all
//! match — and never uses `find-principals`, which ignores namespaces.

use std::path::Path;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use ssh_key::PublicKey;

use crate::error::{Error, Result};

/// One signer line.
#[derive(Debug, Clone)]
pub struct AllowedSigner {
    /// 1-based line in the file.
    pub line: usize,
    /// Principal patterns.
    pub principals: Vec<String>,
    /// `cert-authority`: the key signs certificates (not supported by shipshape: such lines never match).
    pub cert_authority: bool,
    /// `namespaces=`: allowed signature namespaces (patterns); `None` means any.
    pub namespaces: Option<Vec<String>>,
    /// `valid-after=`.
    pub valid_after: Option<Timestamp>,
    /// `valid-before=`.
    pub valid_before: Option<Timestamp>,
    /// The public key.
    pub key: PublicKey,
}

const KEY_TYPES: [&str; 10] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "ssh-dss",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-256",
    "rsa-sha2-512",
];

/// OpenSSH's wildcard match: `*` any run, `?` one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// OpenSSH's pattern-list match: any positive pattern matches and no `!` pattern does.
pub fn pattern_list_match(patterns: &[String], text: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(negated, text) {
                return false;
            }
        } else if wildcard_match(pattern, text) {
            matched = true;
        }
    }
    matched
}

impl AllowedSigner {
    /// Whether `principal` is one of this line's principals.
    pub fn matches_principal(&self, principal: &str) -> bool {
        pattern_list_match(&self.principals, principal)
    }

    /// Whether signatures in `namespace` are allowed for this key.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        self.namespaces.as_ref().is_none_or(|patterns| pattern_list_match(patterns, namespace))
    }

    /// `Err(reason)` when the key is not valid at `at`.
    pub fn valid_at(&self, at: Timestamp) -> std::result::Result<(), String> {
        if let Some(after) = self.valid_after
            && at < after
        {
            return Err(format!("the key is valid only after {after} (valid-after)"));
        }
        if let Some(before) = self.valid_before
            && at >= before
        {
            return Err(format!("the key expired at {before} (valid-before)"));
        }
        Ok(())
    }
}

/// Split off the next whitespace-separated token, honouring double quotes.
fn next_token(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start();
    if text.is_empty() {
        return None;
    }
    let mut in_quotes = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            c if c.is_whitespace() && !in_quotes => return Some((text[..i].to_string(), &text[i..])),
            _ => {}
        }
    }
    Some((text.to_string(), ""))
}

fn unquote(text: &str) -> std::result::Result<String, String> {
    match (text.starts_with('"'), text.ends_with('"') && text.len() >= 2) {
        (true, true) => Ok(text[1..text.len() - 1].to_string()),
        (true, false) => Err("unterminated quote".into()),
        (false, _) if text.contains('"') => Err("stray quote".into()),
        (false, _) => Ok(text.to_string()),
    }
}

/// Split options on commas outside quotes.
fn split_options(text: &str) -> std::result::Result<Vec<String>, String> {
    let mut options = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    for c in text.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                current.push(c);
            }
            ',' if !in_quotes => options.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated quote in options".into());
    }
    options.push(current);
    Ok(options)
}

/// Parse `YYYYMMDD[HHMM[SS]][Z]`: UTC with `Z`, the system's local time otherwise (as ssh-keygen).
fn parse_time(text: &str) -> std::result::Result<Timestamp, String> {
    let (digits, utc) = match text.strip_suffix('Z').or_else(|| text.strip_suffix('z')) {
        Some(d) => (d, true),
        None => (text, false),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&digits.len()) {
        return Err(format!("`{text}` is not a time (YYYYMMDD[HHMM[SS]][Z])"));
    }
    let padded = format!("{digits:0<14}");
    let civil =
        DateTime::strptime("%Y%m%d%H%M%S", &padded).map_err(|_| format!("`{text}` is not a valid date and time"))?;
    let zone = if utc { TimeZone::UTC } else { crate::infra::clock::system_zone().clone() };
    zone.to_timestamp(civil).map_err(|_| format!("`{text}` does not exist in the local time zone"))
}

fn parse_line(line: &str) -> std::result::Result<Option<AllowedSigner>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let (principals, rest) = next_token(trimmed).ok_or("no principals")?;
    let principals: Vec<String> = unquote(&principals)?.split(',').map(str::to_string).collect();
    if principals.iter().any(String::is_empty) {
        return Err("empty principal".into());
    }
    let (mut token, mut rest) = next_token(rest).ok_or("no key after the principals")?;
    let (mut cert_authority, mut namespaces, mut valid_after, mut valid_before) = (false, None, None, None);
    if !KEY_TYPES.contains(&token.as_str()) {
        for option in split_options(&token)? {
            let (name, value) = match option.split_once('=') {
                Some((name, value)) => (name.to_ascii_lowercase(), Some(unquote(value)?)),
                None => (option.to_ascii_lowercase(), None),
            };
            match (name.as_str(), value) {
                ("cert-authority", None) => cert_authority = true,
                ("namespaces", Some(value)) => namespaces = Some(value.split(',').map(str::to_string).collect()),
                ("valid-after", Some(value)) => valid_after = Some(parse_time(&value)?),
                ("valid-before", Some(value)) => valid_before = Some(parse_time(&value)?),
                (other, _) => return Err(format!("unknown or malformed option `{other}`")),
            }
        }
        (token, rest) = next_token(rest).ok_or("no key type after the options")?;
        if !KEY_TYPES.contains(&token.as_str()) {
            return Err(format!("`{token}` is not a key type"));
        }
    }
    let (base64, _comment) = next_token(rest).ok_or("no key after the key type")?;
    let key =
        PublicKey::from_openssh(&format!("{token} {base64}")).map_err(|e| format!("the key does not decode: {e}"))?;
    Ok(Some(AllowedSigner { line: 0, principals, cert_authority, namespaces, valid_after, valid_before, key }))
}

/// Parse an allowed_signers file's text.
pub fn parse(path: &Path, text: &str) -> Result<Vec<AllowedSigner>> {
    let mut signers = Vec::new();
    for (index, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(mut signer)) => {
                signer.line = index + 1;
                signers.push(signer);
            }
            Ok(None) => {}
            Err(reason) => return Err(Error::parse(path, index + 1, 1, reason)),
        }
    }
    Ok(signers)
}

/// Read and parse an allowed_signers file.
pub fn load(path: &Path) -> Result<Vec<AllowedSigner>> {
    let text = crate::infra::atomic::read_text(path)?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGYhF2Vo0fxBzhD8g/6mE8OZm2f1BzPg6A0IFHYq7GT0";

    fn one(line: &str) -> std::result::Result<AllowedSigner, String> {
        parse_line(line).map(|s| s.expect("a signer"))
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*@example.com", "jane@example.com"));
        assert!(wildcard_match("j?ne@*", "jane@x"));
        assert!(!wildcard_match("*@example.com", "jane@example.org"));
        assert!(pattern_list_match(&["*@example.com".into(), "!mallory@example.com".into()], "jane@example.com"));
        assert!(!pattern_list_match(&["*@example.com".into(), "!mallory@example.com".into()], "mallory@example.com"));
    }

    #[test]
    fn parses_options_and_comments() {
        let signer = one(&format!(
            "jane@example.com,\"j s@x\" namespaces=\"risk-manager@shipshape,other@x\",valid-after=\"20250101\",valid-before=\"20300101Z\" {KEY} jane's laptop"
        ))
        .unwrap_err();
        assert!(signer.contains("stray quote") || signer.contains("quote"), "{signer}");
        let signer = one(&format!(
            "jane@example.com namespaces=\"risk-manager@shipshape,other@x\",valid-after=\"20250101\",valid-before=\"20300101Z\" {KEY} jane's laptop"
        ))
        .unwrap();
        assert!(signer.allows_namespace("risk-manager@shipshape"));
        assert!(!signer.allows_namespace("engineering-lead@shipshape"));
        assert!(signer.valid_at("2026-01-01T00:00:00Z".parse().unwrap()).is_ok());
        assert!(signer.valid_at("2031-01-01T00:00:00Z".parse().unwrap()).unwrap_err().contains("valid-before"));
        assert!(signer.matches_principal("jane@example.com"));
        let quoted = one(&format!("\"jane@example.com,bob@example.com\" {KEY}")).unwrap();
        assert!(quoted.matches_principal("bob@example.com") && quoted.namespaces.is_none());
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line() {
        for bad in [
            "jane@example.com".to_string(),
            "jane@example.com ssh-ed25519".to_string(),
            "jane@example.com ssh-ed25519 not-base64!".to_string(),
            format!("jane@example.com bogus-option {KEY}"),
            format!("jane@example.com valid-after=\"2025\" {KEY}"),
            format!("jane@example.com namespaces=\"x {KEY}"),
            format!("jane@example.com ssh-rot13 {}", KEY.split(' ').nth(1).unwrap()),
        ] {
            let err = parse(Path::new("allowed_signers"), &format!("# comment\n\n{bad}\n")).unwrap_err().to_string();
            assert!(err.starts_with("allowed_signers:3:1:"), "{bad}: {err}");
        }
    }
}
