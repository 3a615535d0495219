//! The ts2021 control client: `GET /key`, the `POST /ts2021` upgrade, Noise (core::control::noise),
//! HTTP/2 inside, and the `/machine/register` and `/machine/map` calls.
//!
//! Layers, bottom up: [`transport`] dials TCP and, for `https://`, TLS (rustls, system CA
//! bundle); [`http1`] is the tiny HTTP/1.1 client for `/key` and the upgrade; [`noise_io`] runs
//! the handshake and turns the record stream into a byte stream for h2; [`session`] is one
//! control connection with register and map on it.

pub mod http1;
pub mod noise_io;
pub mod session;
pub mod tls_crypto;
pub mod transport;

use std::fmt;

/// Why talking to the control server failed. Messages are one line and never hold secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// The login server URL is not usable.
    BadUrl(String),
    /// DNS, TCP, TLS or timeout: the server could not be reached.
    Unreachable(String),
    /// The server answered, but not in the protocol we speak.
    Protocol(String),
    /// The server refused us (HTTP error status or `Error` in a response).
    Refused(String),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::BadUrl(m) => write!(f, "invalid login server URL: {m}"),
            ControlError::Unreachable(m) => write!(f, "cannot reach the login server: {m}"),
            ControlError::Protocol(m) => write!(f, "control protocol error: {m}"),
            ControlError::Refused(m) => write!(f, "the login server refused: {m}"),
        }
    }
}

impl std::error::Error for ControlError {}

/// A parsed login server URL: `http://` or `https://`, host, optional port, no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// Default ports of the two schemes.
const HTTP_PORT: u16 = 80;
const HTTPS_PORT: u16 = 443;

impl ServerUrl {
    pub fn parse(url: &str) -> Result<ServerUrl, ControlError> {
        let bad = |why: &str| ControlError::BadUrl(format!("\"{url}\": {why}"));
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("must start with https:// (or http:// for a plain-HTTP server)"));
        };
        let authority = rest.trim_end_matches('/');
        // Control characters too: the host ends up in a Host header (DERP host names come
        // from control's DERP map).
        if authority.is_empty()
            || authority.contains(['/', '?', '#', '@', ' '])
            || authority.bytes().any(|b| b.is_ascii_control())
        {
            return Err(bad("expected scheme://host[:port] with no path"));
        }
        let default_port = if tls { HTTPS_PORT } else { HTTP_PORT };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("bad port")),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad("bad port"))?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(ServerUrl { tls, host, port })
    }

    /// `host[:port]` as the Host header wants it (port omitted when default).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let default_port = if self.tls { HTTPS_PORT } else { HTTP_PORT };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    pub fn base(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_login_server_urls() {
        let u = ServerUrl::parse("https://control.tinytail.test").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "control.tinytail.test", 443));
        assert_eq!(u.authority(), "control.tinytail.test");
        let u = ServerUrl::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "127.0.0.1", 8080));
        assert_eq!(u.base(), "http://127.0.0.1:8080");
        let u = ServerUrl::parse("https://[::1]:8443").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.authority()), ("::1", 8443, "[::1]:8443".to_string()));
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "control.example.com",
            "ftp://x",
            "https://",
            "https://x/path",
            "https://x:port",
            "https://u@x",
            "https://a\r\nb:443",
            "https://a\tb",
            "https://[::1]\n:1",
            "https://h:\u{e9}",
            "https://h:99999",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
