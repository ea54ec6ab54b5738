//! Signed approvals: interoperability with the real `ssh-keygen`, and every threat the approvals
//! issue lists, each refused with a message naming the rule that refused it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{TestWorkspace, assert_one_line_error, stderr_of, yaml_value};

const NOW: &str = "2025-10-12T19:00:00+05:30";
const CHECK_FAILED: i32 = 1;
const BAD_INPUT: i32 = 2;

fn keygen(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let path = dir.join(name);
    let mut command = Command::new("ssh-keygen");
    command.args(["-q", "-N", "", "-C", name, "-f"]).arg(&path);
    match kind {
        "ecdsa" => command.args(["-t", "ecdsa", "-b", "256"]),
        "rsa" => command.args(["-t", "rsa", "-b", "2048"]),
        _ => command.args(["-t", "ed25519"]),
    };
    assert!(command.status().unwrap().success());
    path
}

fn public(key: &Path) -> String {
    fs::read_to_string(key.with_extension("pub")).unwrap().trim().to_string()
}

struct Setup {
    ws: TestWorkspace,
    keys: PathBuf,
    manifest: PathBuf,
}

impl Setup {
    /// The example released (minor) with signers: jane (risk-manager), john (engineering-lead).
    fn new() -> Setup {
        let ws = TestWorkspace::example();
        let keys = ws.temp.path().join("keys");
        fs::create_dir_all(&keys).unwrap();
        let jane = keygen(&keys, "jane", "ed25519");
        let john = keygen(&keys, "john", "ecdsa");
        add_signer(&ws, &format!("jane@example.com namespaces=\"risk-manager@shipshape\" {}", public(&jane)));
        add_signer(&ws, &format!("john@example.com namespaces=\"engineering-lead@shipshape\" {}", public(&john)));
        let manifest = ws.release(NOW, &[]);
        Setup { ws, keys, manifest }
    }

    fn key(&self, name: &str) -> PathBuf {
        self.keys.join(name)
    }

    fn approve(&self, manifest: &Path, role: &str, key: &str) -> std::process::Output {
        self.ws.cmd().arg("approve").arg(manifest).args(["--role", role, "--key"]).arg(self.key(key)).output().unwrap()
    }

    /// `verify` an hour after the manifests of these tests are made (19:00, 20:00), as a deploy would.
    fn verify(&self, manifest: &Path) -> (i32, String) {
        let output = self.ws.cmd_at("2025-10-12T21:00:00+05:30").arg("verify").arg(manifest).output().unwrap();
        (output.status.code().unwrap(), String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn approvals_file(&self, manifest: &Path) -> PathBuf {
        manifest.with_file_name(format!("{}.approvals.yaml", manifest.file_stem().unwrap().to_str().unwrap()))
    }
}

fn add_signer(ws: &TestWorkspace, line: &str) {
    let path = ws.path("release/allowed_signers");
    let mut text = fs::read_to_string(&path).unwrap();
    text.push_str(line);
    text.push('\n');
    fs::write(path, text).unwrap();
}

/// The signature text of approval `index` in an approvals file.
fn signature_of(approvals_file: &Path, index: usize) -> String {
    yaml_value(approvals_file)["approvals"][index]["signature"].as_str().unwrap().to_string()
}

#[test]
fn two_roles_meet_the_minor_threshold() {
    let s = Setup::new();
    let (code, stdout) = s.verify(&s.manifest);
    assert_eq!(code, CHECK_FAILED);
    assert!(stdout.contains("FAIL approvals") && stdout.contains("minor release needs more approvals"), "{stdout}");
    assert!(s.approve(&s.manifest, "risk-manager", "jane").status.success());
    let (code, stdout) = s.verify(&s.manifest);
    assert_eq!(code, CHECK_FAILED, "one role is not enough for minor: {stdout}");
    let output = s.approve(&s.manifest, "engineering-lead", "john");
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("threshold is met"));
    let (code, stdout) = s.verify(&s.manifest);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("counted  risk-manager") && stdout.contains("counted  engineering-lead"), "{stdout}");
    let file = yaml_value(&s.approvals_file(&s.manifest));
    assert_eq!(file["approvals"][0]["role"], "risk-manager");
    assert_eq!(file["approvals"][0]["email"], "jane@example.com");
    assert_eq!(file["approvals"][0]["name"], "jane");
    assert_eq!(file["approvals"][0]["backend"], "ssh");
    assert_eq!(file["approvals"][0]["timestamp"], NOW);
    assert!(file["approvals"][0]["key_fingerprint"].as_str().unwrap().starts_with("SHA256:"));
}

/// shipshape signs → `ssh-keygen -Y verify` accepts (ed25519 and ecdsa).
#[test]
fn ssh_keygen_verifies_our_signatures() {
    let s = Setup::new();
    for (key, role, principal) in
        [("jane", "risk-manager", "jane@example.com"), ("john", "engineering-lead", "john@example.com")]
    {
        let output = s.approve(&s.manifest, role, key);
        assert!(output.status.success(), "{key}: {}", stderr_of(&output));
        let index = if key == "jane" { 0 } else { 1 };
        let signature = s.ws.temp.path().join(format!("{key}.sig"));
        fs::write(&signature, signature_of(&s.approvals_file(&s.manifest), index)).unwrap();
        let output = Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(s.ws.path("release/allowed_signers"))
            .args(["-I", principal, "-n", &format!("{role}@shipshape"), "-s"])
            .arg(&signature)
            .stdin(fs::File::open(&s.manifest).unwrap())
            .output()
            .unwrap();
        assert!(output.status.success(), "{key}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(
            String::from_utf8_lossy(&output.stdout)
                .contains(&format!("Good \"{role}@shipshape\" signature for {principal}"))
        );
    }
}

/// `ssh-keygen -Y sign` signs → shipshape counts it.
#[test]
fn ssh_keygen_signatures_count() {
    let s = Setup::new();
    for (key, role) in [("jane", "risk-manager"), ("john", "engineering-lead")] {
        let status = Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", &format!("{role}@shipshape"), "-f"])
            .arg(s.key(key))
            .arg(&s.manifest)
            .status()
            .unwrap();
        assert!(status.success());
        let signature = s.ws.temp.path().join(format!("{key}.sig"));
        fs::rename(s.manifest.with_extension("yaml.sig"), &signature).unwrap();
        let output =
            s.ws.cmd()
                .arg("approve")
                .arg(&s.manifest)
                .args(["--role", role, "--signature"])
                .arg(&signature)
                .output()
                .unwrap();
        assert!(output.status.success(), "{key}: {}", stderr_of(&output));
    }
    assert_eq!(s.verify(&s.manifest).0, 0);
}

fn threat(output: std::process::Output, rule: &str) {
    assert_eq!(output.status.code(), Some(CHECK_FAILED), "{}", stderr_of(&output));
    assert_one_line_error(&output, rule);
}

#[test]
fn one_byte_changed_or_a_trailing_newline_voids_the_approvals() {
    for change in ["byte", "newline"] {
        let s = Setup::new();
        assert!(s.approve(&s.manifest, "risk-manager", "jane").status.success());
        assert!(s.approve(&s.manifest, "engineering-lead", "john").status.success());
        let mut bytes = fs::read(&s.manifest).unwrap();
        if change == "byte" {
            let at = String::from_utf8_lossy(&bytes).find("prepared_by: ").unwrap() + "prepared_by: ".len();
            bytes[at] ^= 0x20; // toggles the case of the preparer's first letter
        } else {
            bytes.push(b'\n');
        }
        fs::write(&s.manifest, bytes).unwrap();
        let (code, stdout) = s.verify(&s.manifest);
        assert_eq!(code, CHECK_FAILED, "{change}");
        assert_eq!(
            stdout.matches("the signature does not match this manifest's bytes").count(),
            2,
            "{change}: {stdout}"
        );
    }
}

#[test]
fn wrong_key_and_unknown_key_are_refused() {
    let s = Setup::new();
    // john's key is listed, but only for engineering-lead.
    threat(s.approve(&s.manifest, "risk-manager", "john"), "namespaces= does not include risk-manager@shipshape");
    // mallory's key is not listed at all.
    keygen(&s.keys, "mallory", "ed25519");
    let output =
        s.ws.cmd()
            .arg("approve")
            .arg(&s.manifest)
            .args(["--role", "risk-manager", "--email", "jane@example.com", "--key"])
            .arg(s.key("mallory"))
            .output()
            .unwrap();
    threat(output, "is not in allowed_signers");
    // Nothing was recorded.
    assert!(!s.approvals_file(&s.manifest).exists());
}

#[test]
fn keys_outside_their_validity_are_refused() {
    let s = Setup::new();
    let old = keygen(&s.keys, "old", "ed25519");
    let new = keygen(&s.keys, "new", "ed25519");
    add_signer(
        &s.ws,
        &format!("old@example.com namespaces=\"risk-manager@shipshape\",valid-before=\"20250101Z\" {}", public(&old)),
    );
    add_signer(
        &s.ws,
        &format!("new@example.com namespaces=\"risk-manager@shipshape\",valid-after=\"20300101Z\" {}", public(&new)),
    );
    threat(s.approve(&s.manifest, "risk-manager", "old"), "valid-before");
    threat(s.approve(&s.manifest, "risk-manager", "new"), "valid-after");
}

#[test]
fn an_approval_made_for_another_role_is_refused() {
    let s = Setup::new();
    // jane signs in the engineering-lead namespace, then tries to file it as risk-manager.
    let status = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", "engineering-lead@shipshape", "-f"])
        .arg(s.key("jane"))
        .arg(&s.manifest)
        .status()
        .unwrap();
    assert!(status.success());
    let output =
        s.ws.cmd()
            .arg("approve")
            .arg(&s.manifest)
            .args(["--role", "risk-manager", "--signature"])
            .arg(s.manifest.with_extension("yaml.sig"))
            .output()
            .unwrap();
    threat(output, "was made for namespace `engineering-lead@shipshape`");
}

#[test]
fn the_same_key_twice_does_not_pad_a_threshold() {
    let s = Setup::new();
    // A major release needs two engineering leads.
    let major = s.ws.release("2025-10-12T20:00:00+05:30", &["--type", "major"]);
    assert!(s.approve(&major, "engineering-lead", "john").status.success());
    threat(
        s.approve(&major, "engineering-lead", "john"),
        "already approved this release as engineering-lead: one key counts once",
    );
    // Even if the duplicate is pasted into the file by hand, verify counts it once.
    let path = s.approvals_file(&major);
    let text = fs::read_to_string(&path).unwrap();
    let entry = text.split_once("approvals:\n").unwrap().1.to_string();
    fs::write(&path, format!("{text}{entry}")).unwrap();
    let (code, stdout) = s.verify(&major);
    assert_eq!(code, CHECK_FAILED);
    assert!(stdout.contains("REFUSED") && stdout.contains("one key counts once"), "{stdout}");
    assert!(stdout.contains("1 of 2 needed from engineering-lead"), "{stdout}");
}

#[test]
fn one_person_does_not_count_for_two_roles() {
    let s = Setup::new();
    // jane also holds an engineering-lead key.
    let second = keygen(&s.keys, "jane2", "ed25519");
    add_signer(&s.ws, &format!("jane@example.com namespaces=\"engineering-lead@shipshape\" {}", public(&second)));
    assert!(s.approve(&s.manifest, "risk-manager", "jane").status.success());
    threat(
        s.approve(&s.manifest, "engineering-lead", "jane2"),
        "the policy does not let one person count for two roles",
    );
    // A policy that allows it (in a new manifest, since each manifest pins its policy's hash).
    let policy = fs::read_to_string(s.ws.path("release/policy.yaml")).unwrap();
    fs::write(
        s.ws.path("release/policy.yaml"),
        policy.replace("allow_one_person_multiple_roles: false", "allow_one_person_multiple_roles: true"),
    )
    .unwrap();
    let next = s.ws.release("2025-10-12T20:00:00+05:30", &[]);
    assert!(s.approve(&next, "risk-manager", "jane").status.success());
    assert!(s.approve(&next, "engineering-lead", "jane2").status.success());
    assert_eq!(s.verify(&next).0, 0);
}

#[test]
fn an_approval_copied_from_another_release_is_refused() {
    let s = Setup::new();
    assert!(s.approve(&s.manifest, "risk-manager", "jane").status.success());
    let other = s.ws.release("2025-10-12T20:00:00+05:30", &[]);
    let text = fs::read_to_string(s.approvals_file(&s.manifest)).unwrap();
    let other_id = other.file_stem().unwrap().to_str().unwrap();
    fs::write(s.approvals_file(&other), text.replace("release_20251012_190000", other_id)).unwrap();
    let (code, stdout) = s.verify(&other);
    assert_eq!(code, CHECK_FAILED);
    assert!(stdout.contains("REFUSED") && stdout.contains("the approval was made for another manifest"), "{stdout}");
}

#[test]
fn a_changed_policy_is_refused() {
    let s = Setup::new();
    let policy = fs::read_to_string(s.ws.path("release/policy.yaml")).unwrap();
    fs::write(s.ws.path("release/policy.yaml"), format!("{policy}# loosened by someone\n")).unwrap();
    threat(s.approve(&s.manifest, "risk-manager", "jane"), "the policy file changed since");
    let (code, stdout) = s.verify(&s.manifest);
    assert_eq!(code, CHECK_FAILED);
    assert!(stdout.contains("FAIL approvals") && stdout.contains("the policy file changed since"), "{stdout}");
}

#[test]
fn an_expired_manifest_fails_verification() {
    let s = Setup::new();
    assert!(s.approve(&s.manifest, "risk-manager", "jane").status.success());
    assert!(s.approve(&s.manifest, "engineering-lead", "john").status.success());
    let output = s.ws.cmd_at("2025-10-20T19:00:00+05:30").arg("verify").arg(&s.manifest).output().unwrap();
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("FAIL expiry") && stdout.contains("expired at 2025-10-19T19:00:00+05:30"), "{stdout}");
    // Auditing an old release still works.
    s.ws.cmd_at("2025-10-20T19:00:00+05:30").args(["verify", "--integrity-only"]).arg(&s.manifest).assert().success();
}

#[test]
fn malformed_allowed_signers_and_signatures_are_clear_errors() {
    let s = Setup::new();
    add_signer(&s.ws, "jane@example.com namespaces=\"risk-manager@shipshape ssh-ed25519 AAAA");
    let output = s.approve(&s.manifest, "risk-manager", "jane");
    assert_eq!(output.status.code(), Some(BAD_INPUT), "{}", stderr_of(&output));
    let lines = fs::read_to_string(s.ws.path("release/allowed_signers")).unwrap().lines().count();
    assert_one_line_error(&output, &format!("release/allowed_signers:{lines}:1:"));

    let s = Setup::new();
    let bogus = s.ws.temp.path().join("bogus.sig");
    for (content, why) in [
        ("not a signature", "does not start with `-----BEGIN SSH SIGNATURE-----`"),
        ("-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n", "damaged or truncated"),
        ("", "it is empty"),
        ("\0\0\u{1}garbage\0", "it is not text"),
        ("-----BEGIN SSH SIGNATURE-----\n\0AAAA\n-----END SSH SIGNATURE-----\n", "it is not text"),
    ] {
        fs::write(&bogus, content).unwrap();
        let output =
            s.ws.cmd()
                .arg("approve")
                .arg(&s.manifest)
                .args(["--role", "risk-manager", "--signature"])
                .arg(&bogus)
                .output()
                .unwrap();
        assert_eq!(output.status.code(), Some(BAD_INPUT), "{content:?}: {}", stderr_of(&output));
        assert_one_line_error(&output, "bogus.sig: not an SSH signature");
        assert!(stderr_of(&output).contains(why), "{content:?}: {}", stderr_of(&output));
        assert!(!stderr_of(&output).contains("PEM preamble"), "{content:?}: jargon: {}", stderr_of(&output));
    }
    // And a malformed signature pasted into the approvals file is refused by verify, not a panic.
    assert!(s.approve(&s.manifest, "risk-manager", "jane").status.success());
    let path = s.approvals_file(&s.manifest);
    let text = fs::read_to_string(&path).unwrap();
    let start = text.find("    U1NIU0").unwrap();
    fs::write(&path, format!("{}    garbage\n    -----END SSH SIGNATURE-----\n", &text[..start])).unwrap();
    let (code, stdout) = s.verify(&s.manifest);
    assert_eq!(code, CHECK_FAILED);
    assert!(stdout.contains("REFUSED") && stdout.contains("not an SSH signature"), "{stdout}");
}

#[test]
fn unknown_role_and_rsa_keys_are_refused() {
    let s = Setup::new();
    let output = s.approve(&s.manifest, "cfo", "jane");
    assert_eq!(output.status.code(), Some(BAD_INPUT));
    assert_one_line_error(&output, "unknown role `cfo`");
    let rsa = keygen(&s.keys, "rsa", "rsa");
    add_signer(&s.ws, &format!("rsa@example.com namespaces=\"risk-manager@shipshape\" {}", public(&rsa)));
    let status = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", "risk-manager@shipshape", "-f"])
        .arg(&rsa)
        .arg(&s.manifest)
        .status()
        .unwrap();
    assert!(status.success());
    let output =
        s.ws.cmd()
            .arg("approve")
            .arg(&s.manifest)
            .args(["--role", "risk-manager", "--signature"])
            .arg(s.manifest.with_extension("yaml.sig"))
            .output()
            .unwrap();
    threat(output, "key type ssh-rsa is not in the policy's allowed_key_types");
}

#[test]
fn manifest_sign_adds_the_deployers_approval() {
    let s = Setup::new();
    let space = fs::read_to_string(s.ws.path("search_space.yaml")).unwrap();
    s.ws.write("search_space.yaml", format!("{space}# hotfix\n").as_bytes());
    s.ws.cmd_at("2025-10-12T20:00:00+05:30").arg("audit").assert().success();
    s.ws.cmd_at("2025-10-12T20:00:00+05:30").arg("validate").assert().success();
    let output =
        s.ws.cmd_at("2025-10-12T20:00:00+05:30")
            .args(["manifest", "--type", "hotfix", "--sign"])
            .arg(s.key("john"))
            .args(["--sign-role", "engineering-lead"])
            .output()
            .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let manifest = s.ws.path(String::from_utf8_lossy(&output.stdout).trim());
    assert_eq!(s.verify(&manifest).0, 0, "a hotfix needs one approval from either role");
}

/// Our reading of allowed_signers agrees with ssh-keygen's on what it accepts and rejects.
#[test]
fn allowed_signers_decisions_match_ssh_keygen() {
    let s = Setup::new();
    let jane = public(&s.key("jane"));
    let status = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", "risk-manager@shipshape", "-f"])
        .arg(s.key("jane"))
        .arg(&s.manifest)
        .status()
        .unwrap();
    assert!(status.success());
    let signature = s.manifest.with_extension("yaml.sig");
    let cases = [
        (format!("jane@example.com {jane}"), true),
        (format!("jane@example.com namespaces=\"risk-manager@shipshape\" {jane}"), true),
        (format!("jane@example.com namespaces=\"*@shipshape\" {jane}"), true),
        (format!("jane@example.com namespaces=\"engineering-lead@shipshape\" {jane}"), false),
        (format!("*@example.com {jane}"), true),
        (format!("\"bob@example.com,jane@example.com\" {jane}"), true),
        (format!("*@example.com,!jane@example.com {jane}"), false),
        (format!("bob@example.com {jane}"), false),
        (format!("jane@example.com valid-before=\"20200101\" {jane}"), false),
        (format!("jane@example.com valid-after=\"20990101\" {jane}"), false),
        (format!("jane@example.com valid-after=\"20200101\",valid-before=\"20990101Z\" {jane}"), true),
        (format!("jane@example.com cert-authority {jane}"), false),
    ];
    for (line, expected) in cases {
        fs::write(s.ws.path("release/allowed_signers"), format!("# test\n{line}\n")).unwrap();
        let ssh_keygen = Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(s.ws.path("release/allowed_signers"))
            .args(["-I", "jane@example.com", "-n", "risk-manager@shipshape", "-s"])
            .arg(&signature)
            .stdin(fs::File::open(&s.manifest).unwrap())
            .output()
            .unwrap()
            .status
            .success();
        let ours =
            s.ws.cmd()
                .arg("approve")
                .arg(&s.manifest)
                .args(["--role", "risk-manager", "--email", "jane@example.com", "--signature"])
                .arg(&signature)
                .output()
                .unwrap();
        let _ = fs::remove_file(s.approvals_file(&s.manifest));
        assert_eq!(ssh_keygen, expected, "ssh-keygen on {line}");
        assert_eq!(ours.status.success(), expected, "shipshape on {line}: {}", stderr_of(&ours));
    }
}

/// Anti-rollback: once a manifest is accepted in an environment (the deploy step records it), an
/// older one, or another with the same sequence, is refused.
#[test]
fn anti_rollback_refuses_older_and_conflicting_manifests() {
    let s = Setup::new();
    let second = s.ws.release("2025-10-12T20:00:00+05:30", &[]);
    for manifest in [&s.manifest, &second] {
        assert!(s.approve(manifest, "risk-manager", "jane").status.success());
        assert!(s.approve(manifest, "engineering-lead", "john").status.success());
    }
    let state = s.ws.path("release/state/anti_rollback.yaml");
    fs::create_dir_all(state.parent().unwrap()).unwrap();
    let accepted = |digest: &str| {
        format!(
            "schema_version: 1\nenvironments:\n  production:\n    sequence: 2\n    release_id: release_20251012_200000\n    manifest_sha256: {digest}\n    accepted: \"2025-10-12T20:30:00+05:30\"\n"
        )
    };
    fs::write(&state, accepted(&crate::util::sha256sum(&second))).unwrap();
    assert_eq!(s.verify(&second).0, 0);
    let (code, stdout) = s.verify(&s.manifest);
    assert_eq!(code, CHECK_FAILED);
    assert!(stdout.contains("FAIL anti-rollback") && stdout.contains("sequence 1 is below"), "{stdout}");
    assert!(stdout.contains("shipshape rollback"), "says what to do instead: {stdout}");
    fs::write(&state, accepted(&format!("sha256:{}", "0".repeat(64)))).unwrap();
    let (code, stdout) = s.verify(&second);
    assert_eq!(code, CHECK_FAILED);
    assert!(
        stdout.contains("FAIL anti-rollback") && stdout.contains("already accepted in production with different bytes"),
        "{stdout}"
    );
}

#[test]
fn expired_or_broken_manifests_are_not_approved() {
    let s = Setup::new();
    let output =
        s.ws.cmd_at("2025-10-20T19:00:00+05:30")
            .arg("approve")
            .arg(&s.manifest)
            .args(["--role", "risk-manager", "--key"])
            .arg(s.key("jane"))
            .output()
            .unwrap();
    threat(output, "expired at 2025-10-19T19:00:00+05:30");
    let backup = s.ws.path("release/backups/release_20251012_190000/search_space.yaml");
    fs::remove_file(&backup).unwrap();
    fs::write(&backup, "tampered\n").unwrap();
    threat(s.approve(&s.manifest, "risk-manager", "jane"), "fails verification, so it cannot be approved: backup");
    assert!(!s.approvals_file(&s.manifest).exists());
}

/// Keys the Rust SSH library cannot read (PEM-format keys; about one ssh-keygen ECDSA key in 400)
/// are signed through ssh-keygen, and the approval counts the same.
#[test]
fn keys_the_library_cannot_read_are_signed_through_ssh_keygen() {
    let s = Setup::new();
    let path = s.keys.join("pem");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-b", "256", "-m", "PEM", "-N", "", "-C", "Pam Pem", "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(fs::read_to_string(&path).unwrap().starts_with("-----BEGIN EC PRIVATE KEY-----"));
    add_signer(&s.ws, &format!("pam@example.com namespaces=\"risk-manager@shipshape\" {}", public(&path)));
    let output = s.approve(&s.manifest, "risk-manager", "pem");
    assert!(output.status.success(), "{}", stderr_of(&output));
    let file = yaml_value(&s.approvals_file(&s.manifest));
    assert_eq!(file["approvals"][0]["name"], "Pam Pem");
    assert_eq!(file["approvals"][0]["email"], "pam@example.com");
}

/// `approve --key` with a passphrase-protected key signs through `ssh-keygen -Y sign`, which asks
/// for the passphrase (here through SSH_ASKPASS); a wrong passphrase is a clear refusal.
#[test]
fn a_passphrase_protected_key_signs_through_ssh_keygen() {
    let s = Setup::new();
    let key = s.keys.join("locked");
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "open sesame", "-C", "locked", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    add_signer(&s.ws, &format!("locked@example.com namespaces=\"risk-manager@shipshape\" {}", public(&key)));
    let askpass = |passphrase: &str| {
        let script = s.keys.join(format!("askpass-{}", passphrase.len()));
        fs::write(&script, format!("#!/bin/sh\necho '{passphrase}'\n")).unwrap();
        fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        script
    };
    let approve = |script: &Path| {
        s.ws.cmd()
            .env("SSH_ASKPASS", script)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .arg("approve")
            .arg(&s.manifest)
            .args(["--role", "risk-manager", "--key"])
            .arg(&key)
            .output()
            .unwrap()
    };
    let wrong = approve(&askpass("not it"));
    assert_eq!(wrong.status.code(), Some(BAD_INPUT), "{}", stderr_of(&wrong));
    assert_one_line_error(&wrong, "the key is passphrase-protected and ssh-keygen could not sign with it");
    assert!(!s.approvals_file(&s.manifest).exists(), "nothing recorded");
    let right = approve(&askpass("open sesame"));
    assert!(right.status.success(), "{}", stderr_of(&right));
    assert!(fs::read_to_string(s.approvals_file(&s.manifest)).unwrap().contains("role: risk-manager"));
}
