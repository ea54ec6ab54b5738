//! Strict YAML in and deterministic YAML out.
//!
//! Reading: duplicate keys are errors (serde-saphyr's default, pinned here so an upgrade cannot
//! loosen it), unknown fields are refused by `deny_unknown_fields` on every type we read, and any
//! error becomes one line naming the file, line, column and the dotted key. Writing: field order is
//! the struct's, so the same value always yields the same bytes — what approvers sign.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::infra::hash::Digest;

/// Parse `text` (read from `path`) strictly into `T`.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    let mut track = serde_path_to_error::Track::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |deserializer| {
        let deserializer = serde_path_to_error::Deserializer::new(deserializer, &mut track);
        T::deserialize(deserializer)
    });
    result.map_err(|error| {
        let key = track.path().to_string();
        let inner = error.without_snippet();
        let mut message = first_line_without_location(&inner.to_string())
            .replace(", set DuplicateKeyPolicy in Options if acceptable", " (each key may appear once)");
        if let Some(breach) = message.strip_prefix("budget breached: ") {
            message = budget_message(breach);
        }
        if !key.is_empty() && key != "." && !key.contains('?') && !message.contains(&key) {
            message = format!("{key}: {message}");
        }
        match inner.location() {
            Some(location) if location.line() > 0 => {
                Error::parse(path, location.line() as usize, location.column() as usize, message)
            }
            _ => Error::invalid(path, message),
        }
    })
}

/// The YAML reader's safety limits, in words: which limit a file hit (the parser names it by its
/// Rust variant, `CommentBytes { … }`, which means nothing to the person who wrote the file).
fn budget_message(breach: &str) -> String {
    let limit = breach.split([' ', '{', '(']).next().unwrap_or_default();
    let what = match limit {
        "Depth" | "InclusionDepth" | "PropertyExpansionDepth" => "it is nested too deeply (more than 64 levels)",
        "Aliases" | "Anchors" | "AliasAnchorRatio" | "RecordedAnchorEvents" | "RecordedAnchorBytes" | "MergeKeys" => {
            "it uses too many YAML anchors, aliases or merge keys (an alias bomb expands a few lines into gigabytes)"
        }
        "CommentBytes" => "its comments are too long",
        "ScalarBytes" => "its values are too long",
        "InputBytes" => "the file is too large",
        "Events" | "Nodes" => "it has too many YAML nodes",
        "Documents" => "it holds too many YAML documents (shipshape files are one document)",
        "SequenceUnbalanced" => "its sequences are not closed",
        _ => "it exceeds a size limit",
    };
    format!("refused: {what}; shipshape bounds what it reads from YAML so that no file can exhaust memory or time")
}

/// Read and parse a YAML file strictly.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<(T, Vec<u8>)> {
    let bytes = crate::infra::atomic::read(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| Error::invalid(path, format!("not valid UTF-8 (first bad byte at offset {})", e.valid_up_to())))?;
    let value = parse(path, text)?;
    Ok((value, bytes))
}

/// Serialize `value` to YAML text.
pub fn to_string<T: Serialize>(value: &T) -> Result<String> {
    // Plain scalars only: a folded block would split a restore command across lines, which is
    // unpleasant to copy into a terminal at 3 a.m.
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    serde_saphyr::to_string_with_options(value, options)
        .map_err(|e| Error::Usage(format!("internal error serializing YAML: {e}")))
}

fn first_line_without_location(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or(text).trim();
    // saphyr appends " at line L column C"; we report the position ourselves.
    match line.rfind(" at line ") {
        Some(index) => line[..index].to_string(),
        None => line.to_string(),
    }
}

/// Read a YAML document shipshape wrote (a manifest, an audit bundle) strictly — without parsing it
/// again when `parsed` (a directory of parse results named by the SHA-256 of the bytes they came
/// from) holds its value. A cached value is used only if it **serializes to exactly the file's
/// bytes** after their leading comment lines: serialization is deterministic and a strict parse
/// returns what was serialized (tested below), so that value is the one a strict parse would
/// return. A forged, stale or torn cache entry can only miss. Returns the value, the bytes and
/// their digest.
pub fn read_parsed<T: DeserializeOwned + Serialize>(
    path: &Path,
    parsed: Option<&Path>,
) -> Result<(T, Vec<u8>, Digest)> {
    let bytes = crate::infra::atomic::read(path)?;
    let digest = Digest::of(&bytes);
    if let Some(dir) = parsed
        && let Ok(json) = std::fs::read(dir.join(format!("{}.json", digest.hex())))
        && let Ok(value) = serde_json::from_slice::<T>(&json)
        && is_canonical(&bytes, &value)
    {
        return Ok((value, bytes, digest));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| Error::invalid(path, format!("not valid UTF-8 (first bad byte at offset {})", e.valid_up_to())))?;
    let value = parse(path, text)?;
    Ok((value, bytes, digest))
}

/// Record the parse result of `bytes` (which shipshape just wrote from `value`) for
/// [`read_parsed`]. Best effort: a cache that cannot be written is only a slower read later.
pub fn remember_parsed<T: Serialize>(parsed: &Path, bytes: &[u8], value: &T) {
    if !is_canonical(bytes, value) {
        return;
    }
    let Ok(json) = serde_json::to_vec(value) else { return };
    if std::fs::create_dir_all(parsed).is_ok() {
        let _ = crate::infra::atomic::write_atomic(&parsed.join(format!("{}.json", Digest::of(bytes).hex())), &json);
    }
}

/// Whether `bytes` are comment lines followed by exactly the serialization of `value`.
fn is_canonical<T: Serialize>(bytes: &[u8], value: &T) -> bool {
    let Ok(text) = to_string(value) else { return false };
    bytes.strip_suffix(text.as_bytes()).is_some_and(|prefix| {
        prefix.split_inclusive(|b| *b == b'\n').all(|line| line.starts_with(b"#") && line.ends_with(b"\n"))
    })
}

/// Read a cache file shipshape writes for itself (stat caches): JSON — which is YAML too, so a
/// person or a YAML tool reads it as before — parsed as JSON first, ten times faster than YAML on
/// the 200-file states every deploy and rollback reads; a file in the YAML of older versions is
/// still read.
pub fn read_cache<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = crate::infra::atomic::read(path)?;
    if let Ok(value) = serde_json::from_slice(&bytes) {
        return Ok(value);
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| Error::invalid(path, format!("not valid UTF-8 (first bad byte at offset {})", e.valid_up_to())))?;
    parse(path, text)
}

/// Write a cache file read by [`read_cache`], atomically.
pub fn write_cache<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec(value).map_err(|e| Error::invalid(path, e.to_string()))?;
    bytes.push(b'\n');
    crate::infra::atomic::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breached_safety_limit_is_explained_in_words() {
        let deep = format!("a: {}1{}\n", "[".repeat(100), "]".repeat(100));
        let error = parse::<serde_json::Value>(Path::new("release/policy.yaml"), &deep).unwrap_err().to_string();
        assert!(error.starts_with("release/policy.yaml"), "{error}");
        assert!(error.contains("nested too deeply") && !error.contains("budget breached"), "{error}");
    }
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        size: u64,
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        name: String,
        inner: Inner,
    }

    fn parse_doc(text: &str) -> Result<Doc> {
        parse(Path::new("m.yaml"), text)
    }

    #[test]
    fn round_trip() {
        let doc = Doc { name: "a".into(), inner: Inner { size: 3 } };
        let text = to_string(&doc).unwrap();
        assert_eq!(parse_doc(&text).unwrap(), doc);
        assert_eq!(to_string(&doc).unwrap(), text, "serialization is deterministic");
        let long = Doc { name: format!("cp {} {}", "a/".repeat(40), "b/".repeat(40)), inner: Inner { size: 1 } };
        let text = to_string(&long).unwrap();
        assert_eq!(text.lines().count(), 3, "long strings stay on one line: {text}");
        assert_eq!(parse_doc(&text).unwrap(), long);
    }

    #[test]
    fn unknown_field_is_named_with_position() {
        let err = parse_doc("name: a\ninner:\n  size: 3\n  colour: red\n").unwrap_err().to_string();
        assert!(err.starts_with("m.yaml:4:"), "{err}");
        assert!(err.contains("colour"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn duplicate_key_is_refused() {
        let err = parse_doc("name: a\nname: b\ninner:\n  size: 3\n").unwrap_err().to_string();
        assert!(err.starts_with("m.yaml:2:"), "{err}");
        assert!(err.to_lowercase().contains("duplicate"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse_doc("name: a\ninner:\n  size: lots\n").unwrap_err().to_string();
        assert!(err.starts_with("m.yaml:3:"), "{err}");
        assert!(err.contains("inner.size"), "{err}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in ["", ":", "[", "name: [a", "\t\t- x", "*anchor", "name: !!binary zz"] {
            assert!(parse_doc(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn caches_are_json_and_older_yaml_ones_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.yaml");
        let doc = Doc { name: "model.bin".into(), inner: Inner { size: 7 } };
        write_cache(&path, &doc).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(serde_json::from_slice::<Doc>(&bytes).unwrap(), doc, "written as JSON");
        assert_eq!(parse_doc(std::str::from_utf8(&bytes).unwrap()).unwrap(), doc, "which is YAML too");
        assert_eq!(read_cache::<Doc>(&path).unwrap(), doc);
        std::fs::write(&path, "# an older version's cache\nname: model.bin\ninner:\n  size: 7\n").unwrap();
        assert_eq!(read_cache::<Doc>(&path).unwrap(), doc);
        std::fs::write(&path, "name: [").unwrap();
        assert!(read_cache::<Doc>(&path).unwrap_err().to_string().contains("state.yaml"));
    }

    #[test]
    fn a_parse_result_is_used_only_if_it_serializes_to_the_very_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let parsed = dir.path().join("parsed");
        let path = dir.path().join("doc.yaml");
        let doc = Doc { name: "model.bin".into(), inner: Inner { size: 7 } };
        let bytes = format!("# written by shipshape\n# do not edit\n{}", to_string(&doc).unwrap()).into_bytes();
        std::fs::write(&path, &bytes).unwrap();
        remember_parsed(&parsed, &bytes, &doc);
        let cached = parsed.join(format!("{}.json", Digest::of(&bytes).hex()));
        assert!(cached.exists());
        let (read, read_bytes, digest) = read_parsed::<Doc>(&path, Some(&parsed)).unwrap();
        assert_eq!((read, read_bytes, digest), (doc, bytes.clone(), Digest::of(&bytes)));

        // A forged entry (another value under the file's digest) is ignored: the strict parse wins.
        let forged = Doc { name: "evil.bin".into(), inner: Inner { size: 7 } };
        std::fs::write(&cached, serde_json::to_vec(&forged).unwrap()).unwrap();
        assert_eq!(read_parsed::<Doc>(&path, Some(&parsed)).unwrap().0.name, "model.bin");
        // So is a torn one, and a file that is not exactly what shipshape writes is never cached.
        std::fs::write(&cached, b"{\"name\": \"mod").unwrap();
        assert_eq!(read_parsed::<Doc>(&path, Some(&parsed)).unwrap().0.name, "model.bin");
        let edited = b"name: model.bin   # a comment\ninner:\n  size: 7\n".to_vec();
        let value: Doc = parse(&path, std::str::from_utf8(&edited).unwrap()).unwrap();
        remember_parsed(&parsed, &edited, &value);
        assert!(!parsed.join(format!("{}.json", Digest::of(&edited).hex())).exists());
        // Bad input still gets the strict parser's error.
        std::fs::write(&path, b"name: [").unwrap();
        assert!(read_parsed::<Doc>(&path, Some(&parsed)).unwrap_err().to_string().contains("doc.yaml"));
    }
}
