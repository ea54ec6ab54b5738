//! A small HTTP/1.1 client for notification sinks (webhooks, Alertmanager): `http://` only, one
//! request per connection, a deadline on connect, write and read. TLS is deliberately out of scope:
//! point sinks at a local relay or at Alertmanager on the same network.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// A parsed `http://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Host name or address (IPv6 in brackets).
    pub host: String,
    /// Port (80 when not given).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parse an `http://` URL; explains what is wrong otherwise.
    pub fn parse(url: &str) -> Result<Url, String> {
        if url.starts_with("https://") {
            return Err("https is not supported: use an http:// URL (a local relay or Alertmanager)".into());
        }
        let rest = url.strip_prefix("http://").ok_or("expected an http:// URL")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
            return Err("expected a host, e.g. http://127.0.0.1:9093".into());
        }
        if path.contains(char::is_whitespace) || path.contains('#') {
            return Err("the path may not contain spaces or a fragment".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse::<u16>().map_err(|_| format!("bad port `{port}`"))?)
            }
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err("expected a host".into());
        }
        Ok(Url { host: host.to_string(), port, path: path.to_string() })
    }

    /// The same server with another path.
    pub fn join(&self, path: &str) -> Url {
        let base = self.path.trim_end_matches('/');
        Url { path: format!("{base}{path}"), ..self.clone() }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.path)
    }
}

/// A response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// e.g. 200.
    pub status: u16,
    /// The body (at most 64 KiB are read).
    pub body: String,
}

/// `POST` `body` as JSON to `url`, all within `timeout`.
pub fn post_json(url: &Url, body: &[u8], timeout: Duration) -> std::io::Result<Response> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let address = (url.host.trim_start_matches('[').trim_end_matches(']'), url.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} does not resolve", url.host)))?;
    let mut stream = TcpStream::connect_timeout(&address, left())?;
    stream.set_write_timeout(Some(left()))?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: shipshape/{}\r\n\r\n",
        url.path,
        url.host,
        url.port,
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        stream.set_read_timeout(Some(left()))?;
        let n = stream.read(&mut buffer)?;
        if n == 0 || response.len() > 64 * 1024 {
            break;
        }
        response.extend_from_slice(&buffer[..n]);
        if let Some(end) = find(&response, b"\r\n\r\n") {
            // Stop once the declared body is complete (servers may keep the connection open).
            let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()));
            if length.is_some_and(|length| response.len() >= end + 4 + length) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Ok(Response { status, body })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = Url::parse("http://127.0.0.1:9093").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("127.0.0.1", 9093, "/"));
        assert_eq!(url.join("/api/v2/alerts").to_string(), "http://127.0.0.1:9093/api/v2/alerts");
        let url = Url::parse("http://example.com/hooks/x?a=1").unwrap();
        assert_eq!((url.port, url.path.as_str()), (80, "/hooks/x?a=1"));
        assert!(Url::parse("https://x").unwrap_err().contains("https"));
        assert!(Url::parse("ftp://x").is_err());
        assert!(Url::parse("http://:80/").is_err());
        assert!(Url::parse("http://x:99999/").is_err());
    }

    #[test]
    fn posts_to_a_real_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !String::from_utf8_lossy(&request).contains("{\"a\":1}") {
                let n = stream.read(&mut buffer).unwrap();
                request.extend_from_slice(&buffer[..n]);
            }
            stream.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok").unwrap();
            String::from_utf8(request).unwrap()
        });
        let url = Url::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
        let response = post_json(&url, b"{\"a\":1}", Duration::from_secs(5)).unwrap();
        assert_eq!(response, Response { status: 202, body: "ok".into() });
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("Content-Type: application/json"));
    }

    #[test]
    fn a_dead_server_is_an_error_not_a_hang() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        assert!(post_json(&url, b"{}", Duration::from_secs(2)).is_err());
    }
}
