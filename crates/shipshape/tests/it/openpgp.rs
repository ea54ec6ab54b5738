//! OpenPGP approvals with the real GnuPG: gpg signs → shipshape counts it; shipshape-recorded
//! signatures → `gpgv` accepts them; expired and revoked keys are refused although `gpg --verify`
//! exits 0 for an expired key.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{TestWorkspace, assert_one_line_error, stderr_of, yaml_value};

const CHECK_FAILED: i32 = 1;

struct Gpg {
    home: PathBuf,
}

impl Gpg {
    fn new(dir: &Path) -> Gpg {
        let home = dir.join("gnupg");
        fs::create_dir_all(&home).unwrap();
        fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        Gpg { home }
    }

    fn run(&self, args: &[&str]) -> Output {
        let output =
            Command::new("gpg").env("GNUPGHOME", &self.home).args(["--batch", "--quiet"]).args(args).output().unwrap();
        assert!(output.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output
    }

    /// A new signing key; returns its fingerprint.
    fn key(&self, uid: &str, expiry: &str) -> String {
        self.run(&[
            "--passphrase",
            "",
            "--pinentry-mode",
            "loopback",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            expiry,
        ]);
        let listing = String::from_utf8(self.run(&["--with-colons", "--list-keys", uid]).stdout).unwrap();
        listing.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap().to_string()
    }

    fn export(&self, fingerprint: &str, to: &Path) {
        let armored = self.run(&["--armor", "--export", fingerprint]).stdout;
        fs::write(to, armored).unwrap();
    }

    fn revoke(&self, fingerprint: &str) {
        let certificate =
            fs::read_to_string(self.home.join("openpgp-revocs.d").join(format!("{fingerprint}.rev"))).unwrap();
        let path = self.home.join("revoke.asc");
        fs::write(
            &path,
            certificate.replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        )
        .unwrap();
        self.run(&["--import", path.to_str().unwrap()]);
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").env("GNUPGHOME", &self.home).args(["--kill", "gpg-agent"]).status();
    }
}

struct Setup {
    ws: TestWorkspace,
    gpg: Gpg,
    rita: String,
    eddie: String,
    manifest: PathBuf,
}

/// The example with two OpenPGP approvers in the policy: Rita (risk-manager, key expires in a year)
/// and Eddie (engineering-lead), released as a minor release.
fn setup() -> Setup {
    let ws = TestWorkspace::example();
    let gpg = Gpg::new(ws.temp.path());
    let rita = gpg.key("Rita Risk <rita@example.com>", "1y");
    let eddie = gpg.key("Eddie Eng <eddie@example.com>", "never");
    fs::create_dir_all(ws.path("release/pgp_keys")).unwrap();
    gpg.export(&rita, &ws.path("release/pgp_keys/rita.asc"));
    gpg.export(&eddie, &ws.path("release/pgp_keys/eddie.asc"));
    let policy = fs::read_to_string(ws.path("release/policy.yaml"))
        .unwrap()
        .replace(
            "    display_name: Risk Manager\n",
            &format!("    display_name: Risk Manager\n    pgp_fingerprints: [{rita}]\n"),
        )
        .replace(
            "    display_name: Engineering Lead\n",
            &format!("    display_name: Engineering Lead\n    pgp_fingerprints: [{eddie}]\n"),
        );
    fs::write(ws.path("release/policy.yaml"), policy).unwrap();
    let manifest = ws.release("2025-10-12T19:00:00+05:30", &[]);
    Setup { ws, gpg, rita, eddie, manifest }
}

impl Setup {
    fn approve_gpg(&self, role: &str, fingerprint: &str) -> Output {
        self.ws
            .cmd()
            .env("GNUPGHOME", &self.gpg.home)
            .arg("approve")
            .arg(&self.manifest)
            .args(["--role", role, "--gpg", fingerprint])
            .output()
            .unwrap()
    }

    fn verify_at(&self, now: &str) -> (i32, String) {
        let output = self.ws.cmd_at(now).arg("verify").arg(&self.manifest).output().unwrap();
        (output.status.code().unwrap(), String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn approvals_file(&self) -> PathBuf {
        self.manifest.with_file_name(format!("{}.approvals.yaml", self.manifest.file_stem().unwrap().to_str().unwrap()))
    }
}

#[test]
fn gpg_signatures_count_and_gpgv_accepts_the_recorded_ones() {
    let s = setup();
    let output = s.approve_gpg("risk-manager", &s.rita);
    assert!(output.status.success(), "{}", stderr_of(&output));
    // An approver who signs with plain gpg and hands over the .asc file.
    let signature = s.ws.temp.path().join("eddie.asc");
    let status = Command::new("gpg")
        .env("GNUPGHOME", &s.gpg.home)
        .args(["--batch", "--yes", "--armor", "--detach-sign", "--local-user", &s.eddie, "--output"])
        .arg(&signature)
        .arg(&s.manifest)
        .status()
        .unwrap();
    assert!(status.success());
    let output =
        s.ws.cmd()
            .arg("approve")
            .arg(&s.manifest)
            .args(["--role", "engineering-lead", "--signature"])
            .arg(&signature)
            .output()
            .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let (code, stdout) = s.verify_at("2025-10-12T19:00:00+05:30");
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("counted  risk-manager       Rita Risk <rita@example.com>"), "{stdout}");
    let file = yaml_value(&s.approvals_file());
    assert_eq!(file["approvals"][0]["backend"], "openpgp");
    assert_eq!(file["approvals"][0]["key_fingerprint"], s.rita.as_str());

    // gpgv, GnuPG's own verifier, accepts each recorded signature over the manifest's bytes.
    let keyring = s.ws.temp.path().join("keyring.gpg");
    fs::write(&keyring, s.gpg.run(&["--export", &s.rita, &s.eddie]).stdout).unwrap();
    for index in 0..2 {
        let sig = s.ws.temp.path().join(format!("recorded{index}.asc"));
        fs::write(&sig, file["approvals"][index]["signature"].as_str().unwrap()).unwrap();
        let output = Command::new("gpgv").arg("--keyring").arg(&keyring).arg(&sig).arg(&s.manifest).output().unwrap();
        assert!(output.status.success(), "gpgv: {}", String::from_utf8_lossy(&output.stderr));
    }
}

#[test]
fn expired_and_revoked_keys_are_refused() {
    let s = setup();
    assert!(s.approve_gpg("risk-manager", &s.rita).status.success());
    assert!(s.approve_gpg("engineering-lead", &s.eddie).status.success());
    // Two years on, Rita's key has expired: gpg would still exit 0, shipshape refuses it.
    let (code, stdout) = s.verify_at("2028-12-01T00:00:00Z");
    assert_eq!(code, CHECK_FAILED);
    assert!(
        stdout.contains(&format!(
            "REFUSED  risk-manager       Rita Risk <rita@example.com>: OpenPGP key {} expired at",
            s.rita
        )),
        "{stdout}"
    );
    assert!(stdout.contains("counted  engineering-lead"), "Eddie's key does not expire: {stdout}");
    // Eddie's key is revoked, and the team's copy of it updated.
    s.gpg.revoke(&s.eddie);
    s.gpg.export(&s.eddie, &s.ws.path("release/pgp_keys/eddie.asc"));
    let (code, stdout) = s.verify_at("2025-10-12T19:00:00+05:30");
    assert_eq!(code, CHECK_FAILED);
    assert!(stdout.contains(&format!("OpenPGP key {} is revoked", s.eddie)), "{stdout}");
    // A signature Eddie made before the revocation is not accepted either.
    let earlier = s.ws.temp.path().join("eddie-earlier.asc");
    fs::write(&earlier, yaml_value(&s.approvals_file())["approvals"][1]["signature"].as_str().unwrap()).unwrap();
    fs::remove_file(s.approvals_file()).unwrap();
    let output =
        s.ws.cmd()
            .arg("approve")
            .arg(&s.manifest)
            .args(["--role", "engineering-lead", "--signature"])
            .arg(&earlier)
            .output()
            .unwrap();
    assert_eq!(output.status.code(), Some(CHECK_FAILED), "{}", stderr_of(&output));
    assert_one_line_error(&output, "is revoked");
    assert!(!s.approvals_file().exists(), "nothing recorded");
}

#[test]
fn wrong_role_and_tampering_are_refused() {
    let s = setup();
    let output = s.approve_gpg("engineering-lead", &s.rita);
    assert_eq!(output.status.code(), Some(CHECK_FAILED));
    assert_one_line_error(&output, &format!("OpenPGP key {} is not listed for role engineering-lead", s.rita));
    assert!(s.approve_gpg("risk-manager", &s.rita).status.success());
    let mut bytes = fs::read(&s.manifest).unwrap();
    bytes.push(b'\n');
    fs::write(&s.manifest, bytes).unwrap();
    let (code, stdout) = s.verify_at("2025-10-12T19:00:00+05:30");
    assert_eq!(code, CHECK_FAILED);
    assert!(stdout.contains("the signature does not match this manifest's bytes"), "{stdout}");
}

#[test]
fn malformed_public_keys_are_clear_errors() {
    let s = setup();
    fs::write(
        s.ws.path("release/pgp_keys/broken.asc"),
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64\n-----END PGP PUBLIC KEY BLOCK-----\n",
    )
    .unwrap();
    let output = s.approve_gpg("risk-manager", &s.rita);
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert_one_line_error(&output, "release/pgp_keys/broken.asc: not an armored OpenPGP public key");
}
