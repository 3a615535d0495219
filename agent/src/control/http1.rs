//! The HTTP/1.1 this agent needs before Noise takes over: `GET /key?v=N` and the
//! `POST /ts2021` upgrade (protocol.md §1.1-1.2), plus plain HEAD requests for PingRequests
//! outside Noise. Small on purpose: one request per connection, no keep-alive.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::transport::BoxIo;
use super::ControlError;

/// Upgrade token and handshake header (`ts:control/controlhttp/controlhttpcommon`).
pub const UPGRADE_PROTOCOL: &str = "tailscale-control-protocol";
pub const HANDSHAKE_HEADER: &str = "X-Tailscale-Handshake";
/// Path of the upgrade (`ts:control/controlhttp/constants.go`).
pub const UPGRADE_PATH: &str = "/ts2021";
/// The Go client reads at most 64 KiB of `/key` answer (`direct.go` `loadServerPubKeys`).
pub const KEY_RESPONSE_MAX: usize = 64 << 10;
/// Response heads larger than this are refused.
const HEAD_MAX: usize = 16 << 10;

const USER_AGENT: &str = concat!("tinytail/", env!("CARGO_PKG_VERSION"));

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// Sends a request and reads the head; returns the head and the bytes already read past it.
pub async fn request(
    io: &mut BoxIo,
    method: &str,
    authority: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<(Head, Vec<u8>), ControlError> {
    request_with_body(io, method, authority, path, extra, &[]).await
}

/// [`request`] with a body (sent with its Content-Length when not empty).
pub async fn request_with_body(
    io: &mut BoxIo,
    method: &str,
    authority: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Result<(Head, Vec<u8>), ControlError> {
    // The path can come from control (a PingRequest URL) and the authority from the DERP map: a
    // CR or LF in either would end the line early and add headers of the sender's choosing.
    let mut fields = [method, path, authority].into_iter().chain(extra.iter().flat_map(|(n, v)| [*n, *v]));
    if fields.any(|f| f.bytes().any(|b| b.is_ascii_control())) {
        return Err(ControlError::Protocol(format!("control character in an HTTP request to {authority:?}")));
    }
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {USER_AGENT}\r\n");
    for (name, value) in extra {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let io_err = |e: std::io::Error| ControlError::Unreachable(format!("{authority}: {e}"));
    io.write_all(req.as_bytes()).await.map_err(io_err)?;
    io.write_all(body).await.map_err(io_err)?;
    io.flush().await.map_err(io_err)?;

    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = parse_head(&buf[..end])?;
            return Ok((head, buf[end + 4..].to_vec()));
        }
        if buf.len() > HEAD_MAX {
            return Err(ControlError::Protocol("HTTP response head too large".into()));
        }
        let n = io.read(&mut chunk).await.map_err(io_err)?;
        if n == 0 {
            return Err(ControlError::Unreachable(format!(
                "{authority}: connection closed before a response"
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads the body per Content-Length, chunked encoding or connection close, up to `limit`.
pub async fn read_body(
    io: &mut BoxIo,
    head: &Head,
    mut already: Vec<u8>,
    limit: usize,
) -> Result<Vec<u8>, ControlError> {
    let too_big = || ControlError::Protocol(format!("HTTP body larger than {limit} bytes"));
    let io_err = |e: std::io::Error| ControlError::Unreachable(e.to_string());
    if let Some(len) = head.header("content-length") {
        let len: usize =
            len.trim().parse().map_err(|_| ControlError::Protocol("bad Content-Length".into()))?;
        if len > limit {
            return Err(too_big());
        }
        while already.len() < len {
            let mut chunk = vec![0u8; len - already.len()];
            let n = io.read(&mut chunk).await.map_err(io_err)?;
            if n == 0 {
                return Err(ControlError::Protocol("HTTP body cut short".into()));
            }
            already.extend_from_slice(&chunk[..n]);
        }
        already.truncate(len);
        return Ok(already);
    }
    // Chunked or close-delimited: read to EOF (we always send Connection: close), then decode.
    let mut chunk = [0u8; 4096];
    loop {
        if already.len() > limit.saturating_add(HEAD_MAX) {
            return Err(too_big());
        }
        let n = io.read(&mut chunk).await.map_err(io_err)?;
        if n == 0 {
            break;
        }
        already.extend_from_slice(&chunk[..n]);
    }
    if head.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        already = decode_chunked(&already)?;
    }
    if already.len() > limit {
        return Err(too_big());
    }
    Ok(already)
}

fn parse_head(head: &[u8]) -> Result<Head, ControlError> {
    let bad = || ControlError::Protocol("malformed HTTP response".into());
    let text = std::str::from_utf8(head).map_err(|_| bad())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or_else(bad)?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(bad());
    }
    let status = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Head { status, headers })
}

fn decode_chunked(mut body: &[u8]) -> Result<Vec<u8>, ControlError> {
    let bad = || ControlError::Protocol("malformed chunked body".into());
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n").ok_or_else(bad)?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|_| bad())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let data = body.get(..size).ok_or_else(bad)?;
        out.extend_from_slice(data);
        body = body.get(size..).and_then(|rest| rest.strip_prefix(b"\r\n")).ok_or_else(bad)?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Standard base64 with padding, for the handshake header.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The value of `name` in `a=1&b=2` (form or query), `+` as space, percent-decoded; invalid
/// escapes are kept as they are and invalid UTF-8 is replaced, never a panic.
pub fn form_value(encoded: &[u8], name: &str) -> Option<String> {
    encoded.split(|&b| b == b'&').find_map(|pair| {
        let (n, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        (percent_decode(n) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn parses_a_switching_protocols_head() {
        let head = parse_head(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: tailscale-control-protocol\r\nConnection: upgrade",
        )
        .unwrap();
        assert_eq!(head.status, 101);
        assert_eq!(head.header("upgrade"), Some(UPGRADE_PROTOCOL));
        assert!(parse_head(b"garbage").is_err());
    }

    #[test]
    fn decodes_chunked_bodies() {
        assert_eq!(decode_chunked(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
        assert!(decode_chunked(b"zz\r\n").is_err());
        assert!(decode_chunked(b"9\r\nabc").is_err());
    }

    #[test]
    fn hostile_chunk_sizes_and_heads_are_errors() {
        // A size near usize::MAX must not overflow the offset arithmetic.
        assert!(decode_chunked(b"ffffffffffffffff\r\nabc\r\n0\r\n\r\n").is_err());
        assert!(decode_chunked(b"fffffffffffffffff\r\n").is_err());
        assert!(decode_chunked(b"3\r\nabcXY0\r\n\r\n").is_err(), "chunk data must end in CRLF");
        assert!(decode_chunked(b"\xc3\xa9\r\n").is_err());
        for head in [&b"HTTP/1.1 99999 X"[..], b"HTTP/1.1 \xc3\xa9", b"HTTP/1.1", b"", b"HTTP/2 200 OK"] {
            assert!(parse_head(head).is_err(), "{head:?}");
        }
        let head = parse_head(b"HTTP/1.1 200 OK\r\nno colon\r\n:\r\nX-\xc3\xa9: \xe2\x82\xac").unwrap();
        assert_eq!(head.header("x-\u{e9}"), Some("\u{20ac}"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn control_characters_never_reach_the_request_line() {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let mut io: BoxIo = Box::new(ours);
        for (path, authority, extra) in [
            ("/ping\r\nX-Injected: 1", "control.example", ("Connection", "close")),
            ("/ping", "derp.example\r\nX: y", ("Connection", "close")),
            ("/ping", "control.example", ("Connection", "close\nX: y")),
        ] {
            let err = request(&mut io, "HEAD", authority, path, &[extra]).await.unwrap_err();
            assert!(matches!(err, ControlError::Protocol(_)), "{err}");
        }
        drop(io);
        let mut sent = Vec::new();
        theirs.read_to_end(&mut sent).await.unwrap();
        assert!(sent.is_empty(), "nothing was written: {:?}", String::from_utf8_lossy(&sent));
    }
}
