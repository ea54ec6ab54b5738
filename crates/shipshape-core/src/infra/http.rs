//! Checking the URLs of HTTP(S) notification sinks at config load. Sending is the monitor's
//! (reqwest with rustls, in `shipshape_monitor::sinks`); this module only says whether a URL is one
//! a sink can post to, and why not.

/// `Ok` when `url` is `http://` or `https://` with a host, no credentials, no spaces and no
/// fragment; otherwise what is wrong, in words.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("expected an https:// (or http://) URL")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("credentials in the URL are refused (they would be logged): use url_env or url_file".into());
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err("expected a host, e.g. https://hooks.example.com/…".into());
    }
    if url.contains(char::is_whitespace) || url.contains('#') {
        return Err("the URL may not contain spaces or a fragment".into());
    }
    if let Some((host, port)) = authority.rsplit_once(':')
        && !host.ends_with(']')
        && !port.contains(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("bad port `{port}`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(check_url("http://127.0.0.1:9093"), Ok(()));
        assert_eq!(check_url("https://hooks.slack.com/services/T0/B0/x"), Ok(()));
        assert_eq!(check_url("https://[::1]:8443/x?y=1"), Ok(()));
        assert!(check_url("ftp://x").unwrap_err().contains("expected an https://"));
        assert!(check_url("https://").unwrap_err().contains("expected a host"));
        assert!(check_url("https://u:p@host/x").unwrap_err().contains("credentials"));
        assert!(check_url("https://host:99999/x").unwrap_err().contains("bad port"));
        assert!(check_url("https://host/a b").unwrap_err().contains("spaces"));
    }
}
