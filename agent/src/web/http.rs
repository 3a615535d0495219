//! A small HTTP/1.1 server side, sans-I/O: [`parse_head`] turns bytes into a [`Request`] head,
//! [`Response::encode`] turns a response into bytes. One request per connection
//! (`Connection: close`), no chunked bodies, no pipelining: enough for a page and a JSON API on
//! a LAN, small enough to read in one sitting. Untrusted input gives [`HttpError`]s, never panics.

use std::fmt::Write as _;

pub use crate::control::http1::form_value;

/// The request line and headers together may be at most this long.
pub const MAX_HEAD: usize = 8 << 10;
/// Request bodies (forms, JSON) may be at most this long.
pub const MAX_BODY: usize = 16 << 10;
/// At most this many request headers.
const MAX_HEADERS: usize = 48;

/// Sent with every response: no framing, no inline script, nothing loaded from elsewhere, and
/// forms post only to us. `Referrer-Policy: same-origin` (not `no-referrer`) keeps the `Origin`
/// header of our own form posts, which the CSRF check reads.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
];

/// Why a request could not be read; each maps to a status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// 400: not HTTP/1.x as we speak it.
    Malformed(&'static str),
    /// 413 / 431: over [`MAX_BODY`] or [`MAX_HEAD`].
    TooLarge,
    /// 501: chunked bodies and other transfer codings.
    Unsupported(&'static str),
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) => 400,
            HttpError::TooLarge => 413,
            HttpError::Unsupported(_) => 501,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            HttpError::Malformed(why) | HttpError::Unsupported(why) => why,
            HttpError::TooLarge => "request too large",
        }
    }
}

/// A parsed request. Header names are lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, percent-encoding left as sent.
    pub path: String,
    /// What follows `?`, without it; empty if none.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A cookie's value from the `Cookie` header(s).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_value(self.query.as_bytes(), name)
    }

    /// A field of an `application/x-www-form-urlencoded` body, percent-decoded.
    pub fn form(&self, name: &str) -> Option<String> {
        form_value(&self.body, name)
    }
}

/// Parses the head if `buf` holds all of it: the request (body still empty), the head's length
/// and the body length `Content-Length` announces. `Ok(None)` = read more.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize, usize)>, HttpError> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() >= MAX_HEAD { Err(HttpError::TooLarge) } else { Ok(None) };
    };
    let head_len = end + 4;
    if head_len > MAX_HEAD {
        return Err(HttpError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::Malformed("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed("bad request line"));
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(HttpError::Malformed("only HTTP/1.x is spoken here"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed("bad method"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(HttpError::Malformed("bad request target"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() == MAX_HEADERS {
            return Err(HttpError::TooLarge);
        }
        let (name, value) = line.split_once(':').ok_or(HttpError::Malformed("bad header line"))?;
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(HttpError::Malformed("bad header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let request =
        Request { method: method.into(), path: path.into(), query: query.into(), headers, body: Vec::new() };
    if request.header("transfer-encoding").is_some() {
        return Err(HttpError::Unsupported("transfer codings are not supported; send Content-Length"));
    }
    let lengths: Vec<&str> =
        request.headers.iter().filter(|(n, _)| n == "content-length").map(|(_, v)| v.as_str()).collect();
    let body_len = match lengths.as_slice() {
        [] => 0,
        [one] if !one.is_empty() && one.len() <= 9 && one.bytes().all(|b| b.is_ascii_digit()) => {
            one.parse::<usize>().map_err(|_| HttpError::Malformed("bad Content-Length"))?
        }
        _ => return Err(HttpError::Malformed("bad Content-Length")),
    };
    if body_len > MAX_BODY {
        return Err(HttpError::TooLarge);
    }
    Ok(Some((request, head_len, body_len)))
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A response; [`Response::encode`] adds the length, `Connection: close` and the security
/// headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.into()), ("Cache-Control", "no-store".into())],
            body,
        }
    }

    pub fn html(status: u16, body: String) -> Response {
        Response::new(status, "text/html; charset=utf-8", body.into_bytes())
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Response::new(status, "application/json", body)
    }

    /// The API's error shape: `{"message": "..."}`.
    pub fn json_error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "message": message }))
    }

    pub fn text(status: u16, message: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{message}\n").into_bytes())
    }

    /// 303 See Other: after a form post, the browser loads `location` with GET.
    pub fn see_other(location: &str) -> Response {
        let mut r = Response::new(303, "text/plain; charset=utf-8", Vec::new());
        r.headers.push(("Location", location.into()));
        r
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }

    /// The bytes on the wire. `head_only` leaves the body out (HEAD requests).
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            // Header values are ours, but never let one carry a line break into the head.
            let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            let _ = write!(head, "{name}: {value}\r\n");
        }
        for (name, value) in SECURITY_HEADERS {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        let _ = write!(head, "Content-Length: {}\r\nConnection: close\r\n\r\n", self.body.len());
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<(Request, usize, usize)>, HttpError> {
        parse_head(raw.as_bytes())
    }

    #[test]
    fn parses_a_form_post() {
        let raw = "POST /routes?x=1 HTTP/1.1\r\nHost: 192.0.2.1:8088\r\nContent-Length: 28\r\n\
                   Cookie: a=1; tt_session=abc\r\n\r\ncsrf=t&routes=192.0.2.0%2F24";
        let (req, head_len, body_len) = parse(raw).unwrap().unwrap();
        assert_eq!((req.method.as_str(), req.path.as_str(), req.query.as_str()), ("POST", "/routes", "x=1"));
        assert_eq!(req.header("host"), Some("192.0.2.1:8088"));
        assert_eq!(req.cookie("tt_session"), Some("abc"));
        assert_eq!(req.cookie("nope"), None);
        assert_eq!(body_len, 28);
        let body = &raw.as_bytes()[head_len..];
        assert_eq!(body.len(), body_len);
        let req = Request { body: body.to_vec(), ..req };
        assert_eq!(req.form("routes").as_deref(), Some("192.0.2.0/24"));
        assert_eq!(req.form("csrf").as_deref(), Some("t"));
        assert_eq!(req.query_param("x").as_deref(), Some("1"));
    }

    #[test]
    fn incomplete_head_asks_for_more() {
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    }

    #[test]
    fn oversized_and_odd_requests_are_errors_not_panics() {
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse(&huge), Err(HttpError::TooLarge));
        let big_body = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert_eq!(parse(&big_body), Err(HttpError::TooLarge));
        for bad in [
            "GET / HTTP/2\r\n\r\n",
            "GET /  HTTP/1.1\r\n\r\n",
            "get / HTTP/1.1\r\n\r\n",
            "GET nope HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "\r\n\r\n",
        ] {
            assert!(matches!(parse(bad), Err(HttpError::Malformed(_))), "{bad:?}");
        }
        let chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(chunked).unwrap_err().status(), 501);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: y\r\n")).collect();
        assert_eq!(parse(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Err(HttpError::TooLarge));
        // Not UTF-8.
        assert!(parse_head(b"GET /\xff HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn every_prefix_of_a_request_parses_or_waits() {
        let raw = b"POST /a?b=c HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
        let head_end = raw.len() - 3;
        for end in 0..=raw.len() {
            match parse_head(&raw[..end]) {
                Ok(None) => assert!(end < head_end, "a complete head ({end} bytes) was not parsed"),
                Ok(Some((req, head_len, body_len))) => {
                    assert!(end >= head_end, "parsed a head from {end} bytes, before its end");
                    assert_eq!(
                        (req.path.as_str(), req.query.as_str(), head_len, body_len),
                        ("/a", "b=c", head_end, 3)
                    );
                }
                Err(e) => panic!("prefix of {end} bytes: {e:?}"),
            }
        }
    }

    /// A small fuzz run as an ordinary test: mutated requests (own xorshift, fixed seed) give
    /// errors or requests, never a panic, and never a body length over the cap.
    #[test]
    fn mutated_requests_never_panic() {
        let seed = b"POST /api/v2/device/self/routes?fields=all HTTP/1.1\r\nHost: 192.0.2.1:8088\r\n\
                     Cookie: tt_session=ab; x=y\r\nContent-Length: 24\r\n\r\n{\"routes\":[\"10.0.0.0/8\"]}";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut input = seed.to_vec();
            for _ in 0..(next() % 8 + 1) {
                let at = (next() as usize) % input.len();
                match next() % 4 {
                    0 => input[at] = next() as u8,
                    1 => input.insert(at, b"\r\n:%/? 0123456789"[(next() % 17) as usize]),
                    2 => {
                        input.remove(at);
                    }
                    _ => input.truncate(at),
                }
                if input.is_empty() {
                    input.push(b'G');
                }
            }
            if let Ok(Some((req, head_len, body_len))) = parse_head(&input) {
                assert!(head_len <= input.len() && body_len <= MAX_BODY);
                let req = Request { body: input[head_len..].to_vec(), ..req };
                let _ = (req.form("routes"), req.query_param("fields"), req.cookie("tt_session"));
            }
        }
    }

    #[test]
    fn percent_decoding_tolerates_garbage() {
        assert_eq!(form_value(b"a=%41%4a+b", "a").as_deref(), Some("AJ b"));
        assert_eq!(form_value(b"a=%4", "a").as_deref(), Some("%4"));
        assert_eq!(form_value(b"a=%zz%", "a").as_deref(), Some("%zz%"));
        assert_eq!(form_value(b"a=%ff", "a").as_deref(), Some("\u{fffd}"));
        assert_eq!(form_value(b"x&a", "a").as_deref(), Some(""));
        assert_eq!(form_value(b"", "a"), None);
    }

    #[test]
    fn responses_carry_security_headers_and_no_header_injection() {
        let r = Response::see_other("/\r\nSet-Cookie: evil=1").encode(false);
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 303 See Other\r\n"));
        assert!(text.contains("Location: /Set-Cookie: evil=1\r\n"), "{text}");
        assert!(text.contains("Content-Security-Policy: default-src 'none'; script-src 'self'"));
        assert!(text.contains("frame-ancestors 'none'") && text.contains("X-Frame-Options: DENY"));
        assert!(text.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"));
        let head = Response::text(200, "hi").encode(true);
        assert!(String::from_utf8(head).unwrap().contains("Content-Length: 3\r\n"));
    }

    #[test]
    fn html_escaping() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
