//! Notifications over HTTPS against a real TLS server on loopback, with a CA and a certificate made
//! in the test (rcgen) and trusted through the sinks' `ca_file`: Slack, PagerDuty (trigger then
//! resolve, one dedup key per episode), Teams and a generic webhook receive their payloads; secrets
//! (webhook URLs, the routing key) come from the environment or a file and appear in no log, error
//! or database row; an untrusted certificate and a redirect are refused.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::util::watch::{DEPLOY, HOUR, MINUTE, at, events, ingest};
use crate::util::{Setup, stderr_of};

/// Requests a receiver saw: path and body.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A test CA, and a server certificate from it for 127.0.0.1.
struct Pki {
    ca_pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key_der: Vec<u8>,
}

fn pki() -> Pki {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "shipshape test CA");
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    Pki { ca_pem: ca.pem(), chain: vec![leaf.der().clone()], key_der: key.serialize_der() }
}

/// An HTTPS server on loopback answering every request with `status` (and `Location` for 3xx),
/// recording what it received. Handshakes a client refuses are just closed connections.
fn https_receiver(pki: &Pki, status: u16) -> (String, Seen) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), rustls::pki_types::PrivateKeyDer::try_from(pki.key_der.clone()).unwrap())
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let Ok(connection) = rustls::ServerConnection::new(Arc::clone(&config)) else { continue };
            let mut tls = rustls::StreamOwned::new(connection, tcp);
            let mut data = Vec::new();
            let mut buffer = [0u8; 8192];
            let request = loop {
                let Ok(n) = tls.read(&mut buffer) else { break None };
                if n == 0 {
                    break None;
                }
                data.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&data).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break Some((head.split_whitespace().nth(1).unwrap_or_default().to_string(), body.to_string()));
                    }
                }
            };
            let Some(request) = request else { continue };
            record.lock().unwrap().push(request);
            let location =
                if (300..400).contains(&status) { "Location: https://example.com/elsewhere\r\n" } else { "" };
            let _ = tls.write_all(
                format!("HTTP/1.1 {status} X\r\n{location}Content-Length: 2\r\nConnection: close\r\n\r\nno").as_bytes(),
            );
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (url, seen)
}

const SLACK_TOKEN: &str = "T0SECRET/B0SECRET/slacksecretxyz";
const ROUTING_KEY: &str = "R0UTINGKEYsecret0123456789abcdef";
const TEAMS_TOKEN: &str = "teamssecretpath";

/// Sinks over HTTPS in the watch workspace `s`, with a silence rule that fires inside the session
/// and resolves when events come back (as in the monitoring tests).
fn workspace(sinks: &str) -> Setup {
    let s = Setup::new("copy");
    let config = fs::read_to_string(s.ws.path("shipshape.toml")).unwrap();
    let silence = "\n[monitoring.silence]\nafter = \"30m\"\nsessions = [{ days = \"mon-fri\", from = \"09:15\", to = \"15:30\", utc_offset = \"+05:30\" }]\n";
    fs::write(s.ws.path("shipshape.toml"), format!("{config}{silence}\n{sinks}")).unwrap();
    let manifest = s.release(DEPLOY);
    assert!(s.deploy(DEPLOY, &manifest).status.success());
    s
}

#[test]
fn https_sinks_deliver_each_payload_and_keep_secrets_out_of_logs() {
    let pki = pki();
    let (server, seen) = https_receiver(&pki, 200);
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca.pem");
    fs::write(&ca, &pki.ca_pem).unwrap();
    let sinks = format!(
        "[[monitoring.sinks]]\nkind = \"slack\"\nurl_env = \"SHIPSHAPE_TEST_SLACK_URL\"\nca_file = \"{ca}\"\n\n\
         [[monitoring.sinks]]\nkind = \"pagerduty\"\nrouting_key_file = \"secrets/pagerduty.key\"\nurl = \"{server}/v2/enqueue\"\nca_file = \"{ca}\"\n\n\
         [[monitoring.sinks]]\nkind = \"teams\"\nurl_file = \"secrets/teams.url\"\nca_file = \"{ca}\"\n\n\
         [[monitoring.sinks]]\nkind = \"webhook\"\nurl = \"{server}/hooks/generic\"\nca_file = \"{ca}\"\n",
        ca = ca.display()
    );
    let s = workspace(&sinks);
    fs::create_dir_all(s.ws.path("secrets")).unwrap();
    fs::write(s.ws.path("secrets/pagerduty.key"), format!("{ROUTING_KEY}\n")).unwrap();
    fs::write(s.ws.path("secrets/teams.url"), format!("{server}/teams/{TEAMS_TOKEN}\n")).unwrap();
    let slack_url = format!("{server}/services/{SLACK_TOKEN}");
    let run = |offset: i64| {
        let output =
            s.ws.cmd_at(&at(offset))
                .env("SHIPSHAPE_TEST_SLACK_URL", &slack_url)
                .args(["evaluate", "--at", &at(offset), "--json"])
                .output()
                .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), stderr_of(&output));
        for secret in [SLACK_TOKEN, ROUTING_KEY, TEAMS_TOKEN] {
            assert!(!text.contains(secret), "a secret in the output: {text}");
        }
        text
    };
    ingest(&s, &at(11 * MINUTE), &events(0, 10, 2, 0.6, 1, 0.6, "early"));
    run(20 * MINUTE);
    run(45 * MINUTE); // 35 minutes without an event inside the session: critical
    let tuesday = 24 * HOUR - 5 * HOUR - 10 * MINUTE;
    ingest(&s, &at(tuesday), &events(tuesday - 5 * MINUTE, 4, 2, 0.6, 1, 0.6, "tuesday"));
    run(tuesday); // resolved

    let seen = seen.lock().unwrap().clone();
    let by_path = |prefix: &str| -> Vec<Value> {
        seen.iter().filter(|(p, _)| p.starts_with(prefix)).map(|(_, b)| serde_json::from_str(b).unwrap()).collect()
    };
    // Slack: Block Kit with a fallback text, a header per transition.
    let slack = by_path(&format!("/services/{SLACK_TOKEN}"));
    assert_eq!(slack.len(), 2, "firing and resolved: {slack:?}");
    assert!(
        slack[0]["blocks"][0]["text"]["text"].as_str().unwrap().starts_with("FIRING critical: events_received"),
        "{}",
        slack[0]
    );
    assert!(slack[1]["blocks"][0]["text"]["text"].as_str().unwrap().starts_with("RESOLVED: events_received"));
    assert!(slack[0]["text"].as_str().unwrap().contains("events_received"));
    // PagerDuty: trigger then resolve, one dedup key for the episode.
    let pd = by_path("/v2/enqueue");
    assert_eq!(pd.len(), 2, "{pd:?}");
    assert_eq!((pd[0]["event_action"].as_str(), pd[1]["event_action"].as_str()), (Some("trigger"), Some("resolve")));
    assert_eq!(pd[0]["routing_key"], ROUTING_KEY);
    assert_eq!(pd[0]["dedup_key"], pd[1]["dedup_key"]);
    assert!(pd[0]["dedup_key"].as_str().unwrap().starts_with("shipshape/"));
    assert_eq!(pd[0]["payload"]["severity"], "critical");
    assert_eq!(pd[0]["payload"]["class"], "events_received");
    // Teams: an Adaptive Card.
    let teams = by_path(&format!("/teams/{TEAMS_TOKEN}"));
    assert_eq!(teams.len(), 2);
    assert_eq!(teams[0]["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive");
    assert_eq!(teams[0]["attachments"][0]["content"]["body"][0]["color"], "Attention");
    assert_eq!(teams[1]["attachments"][0]["content"]["body"][0]["color"], "Good");
    // A generic webhook: the notification object.
    let generic = by_path("/hooks/generic");
    assert_eq!((generic[0]["reason"].as_str(), generic[1]["reason"].as_str()), (Some("firing"), Some("resolved")));

    // Nothing secret in the database: sink names say where the secret comes from.
    let db = rusqlite::Connection::open(s.ws.path("data/monitoring/monitor.db")).unwrap();
    let mut names: Vec<String> = db
        .prepare("SELECT DISTINCT sink FROM outbox ORDER BY sink")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    names.retain(|n| !n.starts_with("jsonl:") && n != "log");
    let port = server.rsplit(':').next().unwrap();
    assert_eq!(
        names,
        [
            "pagerduty:file:secrets/pagerduty.key".to_string(),
            "slack:env:SHIPSHAPE_TEST_SLACK_URL".to_string(),
            "teams:file:secrets/teams.url".to_string(),
            format!(
                "webhook:https://127.0.0.1:{port}/…#{}",
                &shipshape_core::infra::hash::Digest::of(format!("{server}/hooks/generic").as_bytes()).hex()[..8]
            ),
        ]
    );
    let undelivered: i64 =
        db.query_row("SELECT count(*) FROM outbox WHERE delivered_at IS NULL", [], |r| r.get(0)).unwrap();
    assert_eq!(undelivered, 0);
}

/// A certificate the sink does not trust (no `ca_file`: the system's bundle knows nothing of the
/// test CA), a redirect, and a missing secret: each is an error naming the sink and the cause,
/// retried later, never followed, never printing the secret.
#[test]
fn untrusted_certificates_redirects_and_missing_secrets_are_refused() {
    let pki = pki();
    let (untrusted, untrusted_seen) = https_receiver(&pki, 200);
    let (redirecting, _) = https_receiver(&pki, 302);
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca.pem");
    fs::write(&ca, &pki.ca_pem).unwrap();
    let sinks = format!(
        "[[monitoring.sinks]]\nkind = \"webhook\"\nurl = \"{untrusted}/untrusted\"\nname = \"untrusted\"\n\n\
         [[monitoring.sinks]]\nkind = \"slack\"\nurl_env = \"SHIPSHAPE_TEST_REDIRECT_URL\"\nca_file = \"{ca}\"\n\n\
         [[monitoring.sinks]]\nkind = \"pagerduty\"\nrouting_key_env = \"SHIPSHAPE_TEST_UNSET_KEY\"\nurl = \"{untrusted}/v2/enqueue\"\nca_file = \"{ca}\"\n",
        ca = ca.display()
    );
    let s = workspace(&sinks);
    ingest(&s, &at(11 * MINUTE), &events(0, 10, 2, 0.6, 1, 0.6, "early"));
    let secret_url = format!("{redirecting}/services/{SLACK_TOKEN}");
    for offset in [20 * MINUTE, 45 * MINUTE] {
        let output =
            s.ws.cmd_at(&at(offset))
                .env("SHIPSHAPE_TEST_REDIRECT_URL", &secret_url)
                .env_remove("SHIPSHAPE_TEST_UNSET_KEY")
                .args(["evaluate", "--at", &at(offset)])
                .output()
                .unwrap();
        assert!(!stderr_of(&output).contains(SLACK_TOKEN), "{}", stderr_of(&output));
    }
    assert!(untrusted_seen.lock().unwrap().is_empty(), "no request went through an untrusted handshake");
    let db = rusqlite::Connection::open(s.ws.path("data/monitoring/monitor.db")).unwrap();
    let error = |sink: &str| -> String {
        db.query_row("SELECT last_error FROM outbox WHERE sink = ?1 AND delivered_at IS NULL", [sink], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sink}: {e}"))
    };
    let untrusted_error = error("untrusted");
    assert!(untrusted_error.contains("UnknownIssuer"), "{untrusted_error}");
    let redirect_error = error("slack:env:SHIPSHAPE_TEST_REDIRECT_URL");
    assert!(
        redirect_error.contains("302") && redirect_error.contains("redirects are not followed"),
        "{redirect_error}"
    );
    assert!(!redirect_error.contains(SLACK_TOKEN));
    let key_error = error("pagerduty:env:SHIPSHAPE_TEST_UNSET_KEY");
    assert!(key_error.contains("the environment variable SHIPSHAPE_TEST_UNSET_KEY is not set"), "{key_error}");
}
