//! The one HTTP/1.1 client of the tests: a request over a fresh connection (`Connection: close`) to
//! a server on loopback, the status and the body back. Deliberately small and independent of the
//! server's own stack (axum/hyper), so a test sees the bytes a client would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One request; `Err` when the connection fails (a test of a server that was killed expects that).
pub fn try_request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // A server refusing a large body may answer and close before reading all of it.
    let _ = stream.write_all(body);
    // Read the head, then exactly the body (a server may keep the connection open).
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other(head.clone()))?;
    let lower = head.to_ascii_lowercase();
    let length = lower.lines().find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse().ok()));
    let body = match length {
        Some(length) => {
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body)?;
            String::from_utf8_lossy(&body).to_string()
        }
        None => {
            let mut rest = String::new();
            reader.read_to_string(&mut rest)?;
            if lower.contains("transfer-encoding: chunked") { dechunk(&rest) } else { rest }
        }
    };
    Ok((status, body))
}

/// One request that must reach the server.
pub fn request(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    try_request(address, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// `GET path`, which must answer 200 with JSON.
pub fn get_json(address: &str, path: &str) -> serde_json::Value {
    let (status, body) = request(address, "GET", path, &[], b"");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
