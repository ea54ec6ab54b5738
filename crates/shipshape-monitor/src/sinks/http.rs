//! Posting to HTTP(S) sinks: reqwest's blocking client over rustls, the system's CA bundle (or the
//! sink's `ca_file` alone), a deadline per request, redirects refused, and the secret parts —
//! webhook URLs, routing keys — read at delivery from the environment or a file and never put in an
//! error message.

use std::path::Path;
use std::time::Duration;

/// A sink's secret read now: from `env` (an environment variable), `file` (its first line,
/// relative to `root`) or the literal. Errors name where it was looked for, never the value.
pub(crate) fn secret(
    root: &Path,
    literal: Option<&str>,
    env: Option<&str>,
    file: Option<&str>,
    what: &str,
) -> Result<String, String> {
    let value = match (literal, env, file) {
        (_, Some(var), _) => {
            std::env::var(var).map_err(|_| format!("{what}: the environment variable {var} is not set"))?
        }
        (_, _, Some(path)) => {
            let path = root.join(path);
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{what}: {}: {e}", path.display()))?;
            text.lines().next().unwrap_or_default().to_string()
        }
        (Some(value), _, _) => value.to_string(),
        _ => return Err(format!("{what}: not configured")),
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(format!("{what}: empty"));
    }
    Ok(value)
}

/// A client for one sink: `timeout` for the whole request, no redirects, trusting `ca_file`'s
/// certificates only when given (relative to `root`).
pub(crate) fn client(
    root: &Path,
    ca_file: Option<&str>,
    timeout: Duration,
) -> Result<reqwest::blocking::Client, String> {
    let mut builder = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("shipshape/", env!("CARGO_PKG_VERSION")));
    if let Some(file) = ca_file {
        let path = root.join(file);
        let pem = std::fs::read(&path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: not PEM certificates: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("ca_file {}: holds no certificate", path.display()));
        }
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| format!("building the HTTPS client: {}", chain(&e)))
}

/// POST `body` (JSON) to `url`; `Ok` on a 2xx answer. A failure names the sink (`name`, never the
/// URL, which may be the secret) and the cause: TLS, timeout, a redirect refused, the status.
pub(crate) fn post(client: &reqwest::blocking::Client, url: &str, name: &str, body: String) -> Result<(), String> {
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .map_err(|e| format!("{name}: {}", chain(&e.without_url())))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    if status.is_redirection() {
        return Err(format!("{name}: HTTP {status}: redirects are not followed (configure the final URL)"));
    }
    let text: String = response.text().unwrap_or_default().chars().take(200).collect();
    Err(format!("{name}: HTTP {status}: {text}"))
}

/// An error and its causes on one line (reqwest's own message is terse: "error sending request").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
