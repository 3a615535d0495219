//! Who may use the page and the API: the admin password (PBKDF2-HMAC-SHA256, salted), browser
//! sessions with a CSRF token each, the login rate limit, the one-time setup code and the API's
//! bearer token. All of it is plain state driven by the caller's `now`; nothing here does I/O.
//!
//! Stored (one record, `ConfigKey::WebPasswordHash`, as text lines; see [`Credentials`]): the
//! password's salt, iteration count and hash, and the API token's id and SHA-256. Never the
//! password or the token themselves. Sessions and the setup code live in memory only: a restart
//! signs everyone out and voids an unused setup code.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use ring::{digest, pbkdf2};

/// PBKDF2 rounds for new password hashes. OWASP's 600 000 would take ~8 s per login on a
/// 580 MHz MIPS router (no SHA extensions); 100 000 is ~1.3 s there and ~30 ms on x86_64, and
/// the rate limit below bounds online guessing. The count is stored with each hash.
pub const PBKDF2_ITERATIONS: u32 = 100_000;
/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longer inputs are refused before hashing (PBKDF2 cost grows with nothing, but bounded input
/// keeps the form and the record small).
pub const MAX_PASSWORD_LEN: usize = 256;
/// Wrong passwords allowed per client address within [`FAILURE_WINDOW`]; the next is refused
/// (HTTP 429) until the window has room again.
pub const FAILURES_ALLOWED: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// A browser session ends after this long idle, or this long after sign-in.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
pub const SESSION_MAX: Duration = Duration::from_secs(12 * 60 * 60);
/// At most this many sessions; the least recently used goes first.
const MAX_SESSIONS: usize = 16;
/// Clients tracked by the rate limit; beyond it the oldest entry is forgotten.
const MAX_TRACKED_CLIENTS: usize = 256;
/// A setup code from `tinytail web setup-code` is good for one use within this time.
pub const SETUP_CODE_TTL: Duration = Duration::from_secs(15 * 60);
/// Prefix of our API tokens, in the style of Tailscale's `tskey-api-…`.
pub const API_TOKEN_PREFIX: &str = "tinytail-api-";

const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
/// Setup codes use letters and digits that are hard to confuse when typed from a console.
const SETUP_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
const SETUP_CODE_LEN: usize = 12;

/// A salted, slow password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: NonZeroU32,
    salt: [u8; SALT_LEN],
    hash: [u8; HASH_LEN],
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(password: &str, iterations: u32, salt: [u8; SALT_LEN]) -> PasswordHash {
        let iterations = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
        let mut hash = [0u8; HASH_LEN];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, password.as_bytes(), &mut hash);
        PasswordHash { iterations, salt, hash }
    }

    /// Constant-time check (ring compares in constant time).
    pub fn verify(&self, password: &str) -> bool {
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            self.iterations,
            &self.salt,
            password.as_bytes(),
            &self.hash,
        )
        .is_ok()
    }

    fn encode(&self) -> String {
        format!("password pbkdf2-sha256 {} {} {}", self.iterations, hex(&self.salt), hex(&self.hash))
    }

    fn parse(fields: &[&str]) -> Option<PasswordHash> {
        let ["pbkdf2-sha256", iterations, salt, hash] = fields else { return None };
        Some(PasswordHash {
            iterations: iterations.parse().ok()?,
            salt: unhex(salt)?.try_into().ok()?,
            hash: unhex(hash)?.try_into().ok()?,
        })
    }
}

/// The API token as stored: its public id and the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    secret_sha256: [u8; 32],
    /// Unix seconds.
    pub created: i64,
}

impl ApiToken {
    /// A new token from 32 random bytes: returns what is stored and the full token, which is
    /// shown once and never again.
    pub fn new(random: [u8; 32], created: i64) -> (ApiToken, String) {
        let id = hex(&random[..6]);
        let secret = hex(&random[6..]);
        let token = ApiToken { id: id.clone(), secret_sha256: sha256(secret.as_bytes()), created };
        (token, format!("{API_TOKEN_PREFIX}{id}-{secret}"))
    }

    /// True if `presented` is this token. The secret has 208 random bits, so one SHA-256
    /// (not a slow hash) is enough; the comparison is constant-time.
    pub fn matches(&self, presented: &str) -> bool {
        let Some((id, secret)) = presented.strip_prefix(API_TOKEN_PREFIX).and_then(|t| t.split_once('-'))
        else {
            return false;
        };
        id == self.id && constant_time_eq(&sha256(secret.as_bytes()), &self.secret_sha256)
    }

    fn encode(&self) -> String {
        format!("api-token {} {} {}", self.id, hex(&self.secret_sha256), self.created)
    }

    fn parse(fields: &[&str]) -> Option<ApiToken> {
        let [id, sha, created] = fields else { return None };
        Some(ApiToken {
            id: id.to_string(),
            secret_sha256: unhex(sha)?.try_into().ok()?,
            created: created.parse().ok()?,
        })
    }
}

/// What the web keeps in the store, as text lines (`password …`, `api-token …`). Unknown lines
/// are dropped; a malformed line is treated as absent (with the password, that means the page
/// asks for a new one, which needs a setup code).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub password: Option<PasswordHash>,
    pub api_token: Option<ApiToken>,
}

impl Credentials {
    pub fn parse(record: &[u8]) -> Credentials {
        let mut out = Credentials::default();
        for line in String::from_utf8_lossy(record).lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.split_first() {
                Some((&"password", rest)) => out.password = PasswordHash::parse(rest),
                Some((&"api-token", rest)) => out.api_token = ApiToken::parse(rest),
                _ => {}
            }
        }
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        let lines: Vec<String> = self
            .password
            .iter()
            .map(PasswordHash::encode)
            .chain(self.api_token.iter().map(ApiToken::encode))
            .collect();
        lines.join("\n").into_bytes()
    }
}

/// Checks a new password; the message is shown on the page.
pub fn check_new_password(password: &str, repeated: &str) -> Result<(), String> {
    if password != repeated {
        return Err("the two passwords differ".into());
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!("use at least {MIN_PASSWORD_LEN} characters"));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!("use at most {MAX_PASSWORD_LEN} bytes"));
    }
    Ok(())
}

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Sent back in every form; compared in constant time.
    pub csrf: String,
    created: Instant,
    last_used: Instant,
    /// A one-shot message for the next page view (the result of the last change).
    pub flash: Option<Flash>,
    /// The API token just created, shown once on the next page view.
    pub new_api_token: Option<String>,
}

/// The outcome of a change, shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

/// Signed-in browsers, keyed by the session cookie's random value.
#[derive(Debug, Default)]
pub struct Sessions {
    by_token: HashMap<String, Session>,
}

impl Sessions {
    /// Starts a session; returns the cookie value.
    pub fn create(&mut self, now: Instant, token: [u8; 32], csrf: [u8; 32]) -> String {
        self.expire(now);
        if self.by_token.len() >= MAX_SESSIONS {
            if let Some(oldest) =
                self.by_token.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone())
            {
                self.by_token.remove(&oldest);
            }
        }
        let token = hex(&token);
        let session =
            Session { csrf: hex(&csrf), created: now, last_used: now, flash: None, new_api_token: None };
        self.by_token.insert(token.clone(), session);
        token
    }

    /// The live session for a cookie value, marked as used now.
    pub fn get(&mut self, token: &str, now: Instant) -> Option<&mut Session> {
        self.expire(now);
        let session = self.by_token.get_mut(token)?;
        session.last_used = now;
        Some(session)
    }

    pub fn remove(&mut self, token: &str) {
        self.by_token.remove(token);
    }

    /// Signs out every browser (after a password change).
    pub fn clear(&mut self) {
        self.by_token.clear();
    }

    fn expire(&mut self, now: Instant) {
        self.by_token.retain(|_, s| {
            now.saturating_duration_since(s.last_used) < SESSION_IDLE
                && now.saturating_duration_since(s.created) < SESSION_MAX
        });
    }
}

/// Wrong-password bookkeeping per client address.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: HashMap<IpAddr, Vec<Instant>>,
}

impl LoginLimiter {
    /// `Err(wait)` when `client` has used up its attempts; the caller must not check the
    /// password then.
    pub fn check(&mut self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let Some(times) = self.failures.get_mut(&client) else { return Ok(()) };
        times.retain(|t| now.saturating_duration_since(*t) < FAILURE_WINDOW);
        if times.len() < FAILURES_ALLOWED {
            return Ok(());
        }
        let oldest = times.iter().min().copied().unwrap_or(now);
        Err(FAILURE_WINDOW.saturating_sub(now.saturating_duration_since(oldest)).max(Duration::from_secs(1)))
    }

    pub fn failed(&mut self, client: IpAddr, now: Instant) {
        if self.failures.len() >= MAX_TRACKED_CLIENTS && !self.failures.contains_key(&client) {
            let stale = self.failures.iter().min_by_key(|(_, t)| t.iter().max().copied()).map(|(ip, _)| *ip);
            if let Some(ip) = stale {
                self.failures.remove(&ip);
            }
        }
        let times = self.failures.entry(client).or_default();
        times.retain(|t| now.saturating_duration_since(*t) < FAILURE_WINDOW);
        times.push(now);
    }

    pub fn succeeded(&mut self, client: IpAddr) {
        self.failures.remove(&client);
    }
}

/// The one-time code `tinytail web setup-code` prints: it lets whoever has a shell on the
/// router set (or reset) the admin password.
#[derive(Debug, Clone)]
pub struct SetupCode {
    code: String,
    issued: Instant,
}

impl SetupCode {
    pub fn new(random: [u8; 32], now: Instant) -> SetupCode {
        let code = random[..SETUP_CODE_LEN]
            .iter()
            .map(|b| SETUP_ALPHABET[usize::from(*b) % SETUP_ALPHABET.len()] as char)
            .collect();
        SetupCode { code, issued: now }
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    /// Whether `given` is this code and still fresh (spaces and dashes ignored, any case).
    pub fn accepts(&self, given: &str, now: Instant) -> bool {
        let given: String =
            given.chars().filter(|c| !matches!(c, ' ' | '-')).map(|c| c.to_ascii_lowercase()).collect();
        now.saturating_duration_since(self.issued) < SETUP_CODE_TTL
            && constant_time_eq(given.as_bytes(), self.code.as_bytes())
    }
}

/// Equal-length inputs are compared without early exit; lengths are not secret here.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 * bytes.len());
    // Writing into a String cannot fail.
    let _ = tinytail_core::key::write_hex(&mut text, bytes);
    text
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tests use few rounds: the count is stored with each hash, so verification is the same.
    const TEST_ROUNDS: u32 = 10;

    #[test]
    fn password_hash_verifies_and_round_trips_through_the_record() {
        let h = PasswordHash::new("correct horse battery", TEST_ROUNDS, [7; SALT_LEN]);
        assert!(h.verify("correct horse battery"));
        assert!(!h.verify("correct horse batterY"));
        assert!(!h.verify(""));
        let (token, full) = ApiToken::new([9; 32], 1_700_000_000);
        let creds = Credentials { password: Some(h.clone()), api_token: Some(token.clone()) };
        let record = creds.encode();
        let text = String::from_utf8(record.clone()).unwrap();
        assert!(!text.contains("correct horse"), "the password is never stored");
        assert!(!text.contains(full.rsplit('-').next().unwrap()), "the token's secret is never stored");
        assert_eq!(Credentials::parse(&record), creds);
        assert!(Credentials::parse(&record).password.unwrap().verify("correct horse battery"));
    }

    #[test]
    fn same_password_different_salt_different_hash() {
        let a = PasswordHash::new("pw-pw-pw-pw", TEST_ROUNDS, [1; SALT_LEN]);
        let b = PasswordHash::new("pw-pw-pw-pw", TEST_ROUNDS, [2; SALT_LEN]);
        assert_ne!(a.encode(), b.encode());
    }

    #[test]
    fn pbkdf2_matches_the_rfc_7914_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256("passwd", "salt", c=1, dkLen=64), first 32 bytes.
        let mut out = [0u8; 32];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, NonZeroU32::MIN, b"salt", b"passwd", &mut out);
        assert_eq!(hex(&out), "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc");
    }

    #[test]
    fn malformed_records_are_absent_not_errors() {
        for bad in [
            &b"password pbkdf2-sha256 x 00 00"[..],
            b"password md5 1 00 00",
            b"password pbkdf2-sha256 10 0011 zz",
            b"api-token a b c",
            b"\xff\xfe",
            b"",
        ] {
            let c = Credentials::parse(bad);
            assert!(c.password.is_none() && c.api_token.is_none(), "{bad:?}");
        }
    }

    #[test]
    fn api_token_matches_only_itself() {
        let (token, full) = ApiToken::new([3; 32], 0);
        assert!(full.starts_with(API_TOKEN_PREFIX));
        assert!(token.matches(&full));
        let mut wrong = full.clone();
        wrong.pop();
        wrong.push('x');
        assert!(!token.matches(&wrong));
        assert!(!token.matches(""));
        assert!(!token.matches(&full.replace(API_TOKEN_PREFIX, "tskey-api-")));
        let (other, other_full) = ApiToken::new([4; 32], 0);
        assert!(!token.matches(&other_full) && !other.matches(&full));
    }

    #[test]
    fn new_password_rules() {
        assert!(check_new_password("long enough!", "long enough!").is_ok());
        assert!(check_new_password("short", "short").is_err());
        assert!(check_new_password("long enough!", "long enough?").is_err());
        assert!(
            check_new_password(&"x".repeat(MAX_PASSWORD_LEN + 1), &"x".repeat(MAX_PASSWORD_LEN + 1)).is_err()
        );
    }

    #[test]
    fn sixth_failure_in_a_minute_is_refused_and_the_window_slides() {
        let mut limiter = LoginLimiter::default();
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let other: IpAddr = "192.0.2.11".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..FAILURES_ALLOWED {
            assert!(limiter.check(ip, t0 + Duration::from_secs(i as u64)).is_ok(), "attempt {}", i + 1);
            limiter.failed(ip, t0 + Duration::from_secs(i as u64));
        }
        let wait = limiter.check(ip, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(limiter.check(other, t0 + Duration::from_secs(10)).is_ok(), "other clients are not affected");
        assert!(limiter.check(ip, t0 + Duration::from_secs(61)).is_ok(), "the first failure left the window");
        limiter.succeeded(ip);
        assert!(limiter.check(ip, t0 + Duration::from_secs(11)).is_ok());
    }

    #[test]
    fn sessions_expire_when_idle_and_are_capped() {
        let mut sessions = Sessions::default();
        let t0 = Instant::now();
        let a = sessions.create(t0, [1; 32], [2; 32]);
        assert_eq!(a.len(), 64);
        assert!(sessions.get(&a, t0 + Duration::from_secs(60)).is_some());
        assert!(sessions.get(&a, t0 + Duration::from_secs(60) + SESSION_IDLE).is_none(), "idle too long");
        let b = sessions.create(t0, [3; 32], [4; 32]);
        for i in 0..MAX_SESSIONS {
            sessions.create(t0 + Duration::from_secs(1 + i as u64), [10 + i as u8; 32], [0; 32]);
        }
        assert!(sessions.get(&b, t0 + Duration::from_secs(100)).is_none(), "least recently used went first");
        assert!(sessions.by_token.len() <= MAX_SESSIONS);
        let c = sessions.create(t0, [99; 32], [98; 32]);
        sessions.remove(&c);
        assert!(sessions.get(&c, t0).is_none());
    }

    #[test]
    fn setup_code_is_one_shaped_and_expires() {
        let t0 = Instant::now();
        let code = SetupCode::new([200; 32], t0);
        assert_eq!(code.code().len(), SETUP_CODE_LEN);
        assert!(code.code().bytes().all(|b| SETUP_ALPHABET.contains(&b)));
        let spaced = code.code().to_uppercase().chars().enumerate().fold(String::new(), |mut s, (i, c)| {
            if i == 4 {
                s.push('-');
            }
            s.push(c);
            s
        });
        assert!(code.accepts(&spaced, t0 + Duration::from_secs(5)));
        assert!(!code.accepts("wrong", t0));
        assert!(!code.accepts(code.code(), t0 + SETUP_CODE_TTL));
    }
}
