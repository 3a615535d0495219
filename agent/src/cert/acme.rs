//! ACME (RFC 8555) DNS-01 issuance, our own small client on serde_json and ring. instant-acme
//! 0.8.5 did the same job but cost about 125 KB of the mipsel binary (108 KB of its own symbols
//! plus time, httpdate and http-body-util), over our 120 KB budget for certificates; the part of
//! RFC 8555 we use is a dozen requests.
//!
//! One HTTP/1.1 request per TLS connection on the agent's rustls stack (transport + http1), so
//! no hyper and no second TLS configuration; keep-alive would not pay for its code. Every POST
//! is a flattened JWS signed ES256 (RFC 7515/7518) with the account's P-256 key.
//!
//! The flow follows tailscaled's `tailscale cert` (lock-cert.md §B.2): a P-256 account without
//! contact, one order for `dns:<domain>`, DNS-01 with the TXT record published by whoever the
//! caller passes ([`Publish`]), a fresh P-256 key and CSR per certificate, the chain as PEM.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::digest::{digest, SHA256};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::{Deserialize, Serialize};

use super::x509;
use crate::clock;
use crate::control::{http1, transport, ControlError, ServerUrl};

/// Let's Encrypt's production directory: tailscaled's default.
pub const DEFAULT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Overrides the directory, named as tailscaled names it (Pebble in the tests).
pub const DIRECTORY_ENV: &str = "TS_DEBUG_ACME_DIRECTORY_URL";
/// Cap on one ACME response (a certificate chain is a few KB; a directory less).
const RESPONSE_MAX: usize = 256 << 10;
/// One ACME request, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the CA may take to validate, and then to issue (tailscaled waits without a bound
/// of its own; the CLI's caller would not).
const VALIDATION_WAIT: Duration = Duration::from_secs(90);
const ISSUANCE_WAIT: Duration = Duration::from_secs(60);
/// Order polling: the first wait, and the most we wait between polls whatever the CA's
/// Retry-After says (the bounds above cap the whole).
const POLL_FIRST: Duration = Duration::from_millis(500);
const POLL_MAX: Duration = Duration::from_secs(5);

/// RFC 8555 §6.2 and §7.4.2: request and certificate media types.
const JOSE_JSON: &str = "application/jose+json";
const PEM_CHAIN: &str = "application/pem-certificate-chain";
/// RFC 8555 §6.5: the nonce header on every response.
const REPLAY_NONCE: &str = "Replay-Nonce";
/// RFC 8555 §6.7 problem types we act on.
const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";
const ACCOUNT_GONE: &str = "urn:ietf:params:acme:error:accountDoesNotExist";
/// RFC 8555 §8.4.
const DNS_01: &str = "dns-01";
/// RFC 7518 §3.1: ECDSA P-256 with SHA-256, signature r || s.
const ES256: &str = "ES256";
/// Problem text kept in an error (one line).
const PROBLEM_TEXT_MAX: usize = 300;

/// The ACME directory in use: the environment's override or Let's Encrypt.
pub fn directory_url() -> String {
    std::env::var(DIRECTORY_ENV)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_DIRECTORY.to_string())
}

/// Who publishes the `_acme-challenge` TXT record: control's `/machine/set-dns`, or the user's
/// `--dns-hook`.
pub trait Publish: Sync {
    /// Puts `value` as the TXT record `name` (a fully qualified name without the trailing dot).
    fn set(&self, name: &str, value: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// Removes it again, best effort (control's records expire on their own).
    fn clear(&self, name: &str, value: &str) -> impl Future<Output = Result<(), String>> + Send;
}

/// What one issuance produced.
pub struct Issued {
    /// The leaf then the intermediates, PEM.
    pub chain_pem: String,
    /// The certificate's private key, PKCS#8 DER. Secret.
    pub key_pkcs8: Vec<u8>,
    /// The account (our JSON: directory, account URL, PKCS#8 key) when this issuance made a
    /// new account, to be stored in the same transaction. Secret.
    pub new_account: Option<String>,
}

/// Why an issuance failed: one line, never holding a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcmeError {
    /// The CA could not be reached or spoke no ACME we understand (retry later).
    Ca(String),
    /// The CA refused (validation failed, rate limit, bad request).
    Refused(String),
    /// Publishing the DNS record failed.
    Dns(String),
}

impl std::fmt::Display for AcmeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AcmeError::Ca(m) => write!(f, "ACME server: {m}"),
            AcmeError::Refused(m) => write!(f, "ACME server refused: {m}"),
            AcmeError::Dns(m) => write!(f, "{m}"),
        }
    }
}

fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(PROBLEM_TEXT_MAX).collect()
}

// ---- Wire types (RFC 8555 §7.1, RFC 9773 §4) ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Directory {
    new_nonce: String,
    new_account: String,
    new_order: String,
    #[serde(default)]
    renewal_info: Option<String>,
}

/// Order and authorization states (RFC 8555 §7.1.6), one enum for both.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Status {
    Pending,
    Ready,
    Processing,
    Valid,
    Invalid,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Order {
    status: Status,
    #[serde(default)]
    authorizations: Vec<String>,
    #[serde(default)]
    finalize: String,
    #[serde(default)]
    certificate: Option<String>,
    #[serde(default)]
    error: Option<Problem>,
}

#[derive(Deserialize)]
struct Authorization {
    status: Status,
    #[serde(default)]
    challenges: Vec<Challenge>,
}

#[derive(Deserialize)]
struct Challenge {
    #[serde(rename = "type")]
    kind: String,
    url: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    error: Option<Problem>,
}

/// RFC 7807 problem document as RFC 8555 §6.7 uses it.
#[derive(Deserialize, Default)]
struct Problem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    subproblems: Vec<Problem>,
}

impl Problem {
    /// "detail (type)", subproblems after a semicolon, as one line.
    fn text(&self) -> String {
        let mut text = format!("{} ({})", self.detail, self.kind);
        for sub in &self.subproblems {
            text.push_str(&format!("; {} ({})", sub.detail, sub.kind));
        }
        one_line(&text)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RenewalInfo {
    suggested_window: Window,
}

#[derive(Deserialize)]
struct Window {
    start: String,
    end: String,
}

impl RenewalInfo {
    fn window(&self) -> Result<(i64, i64), AcmeError> {
        let w = &self.suggested_window;
        match (clock::parse_rfc3339(&w.start), clock::parse_rfc3339(&w.end)) {
            (Some(start), Some(end)) if start <= end => Ok((start, end)),
            _ => Err(AcmeError::Ca("renewal information: bad suggestedWindow".into())),
        }
    }
}

/// The account as we store it. Secret: `key` is the account key.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    account: String,
    /// PKCS#8 DER, base64url.
    key: String,
}

fn parse<'a, T: Deserialize<'a>>(what: &str, body: &'a [u8]) -> Result<T, AcmeError> {
    serde_json::from_slice(body).map_err(|e| AcmeError::Ca(one_line(&format!("{what}: {e}"))))
}

// ---- HTTP ----

/// Our HTTP client for the CA: the agent's TLS configuration.
#[derive(Clone)]
pub struct Http {
    tls: Arc<rustls::ClientConfig>,
}

impl Http {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Http {
        Http { tls }
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The problem document of a failed request, or why there is none.
    fn error(&self) -> AcmeError {
        match serde_json::from_slice::<Problem>(&self.body) {
            Ok(p) if !p.kind.is_empty() || !p.detail.is_empty() => AcmeError::Refused(p.text()),
            _ => AcmeError::Ca(format!("HTTP {}", self.status)),
        }
    }

    fn problem_kind(&self) -> Option<String> {
        serde_json::from_slice::<Problem>(&self.body).ok().map(|p| p.kind)
    }

    fn location(&self, what: &str) -> Result<String, AcmeError> {
        self.header("Location")
            .map(str::to_string)
            .ok_or_else(|| AcmeError::Ca(format!("{what}: no Location")))
    }

    /// Retry-After in seconds (the HTTP-date form counts as absent).
    fn retry_after(&self) -> Option<Duration> {
        self.header("Retry-After")?.trim().parse().ok().map(Duration::from_secs)
    }
}

/// One request on a fresh connection, within [`REQUEST_TIMEOUT`].
async fn exchange(
    http: &Http,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, AcmeError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange_now(http, method, url, headers, body)).await {
        Ok(result) => result.map_err(|e| AcmeError::Ca(one_line(&e))),
        Err(_) => Err(AcmeError::Ca(format!("{method} {url}: timed out"))),
    }
}

async fn exchange_now(
    http: &Http,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let (base, path) = split_url(url).ok_or_else(|| format!("unsupported URL {url}"))?;
    let server = ServerUrl::parse(base).map_err(|e| e.to_string())?;
    let mut io = transport::dial(&server, Some(&http.tls)).await.map_err(|e| match e {
        // Its own wording names the login server; this is the CA.
        ControlError::Unreachable(why) => format!("cannot reach {why}"),
        other => other.to_string(),
    })?;
    let mut all = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    let (head, rest) = http1::request_with_body(&mut io, method, &server.authority(), path, &all, body)
        .await
        .map_err(|e| e.to_string())?;
    // A HEAD answer has no body whatever its Content-Length says.
    let body = if method == "HEAD" {
        Vec::new()
    } else {
        http1::read_body(&mut io, &head, rest, RESPONSE_MAX).await.map_err(|e| e.to_string())?
    };
    let headers = head.headers().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    Ok(Response { status: head.status, headers, body })
}

/// `scheme://authority` and the path (with query) of an absolute URL.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let after_scheme = url.find("://")? + 3;
    match url[after_scheme..].find(['/', '?']) {
        Some(i) if url.as_bytes()[after_scheme + i] == b'/' => Some(url.split_at(after_scheme + i)),
        Some(_) => None,
        None => Some((url, "/")),
    }
}

async fn get(http: &Http, url: &str) -> Result<Response, AcmeError> {
    let resp = exchange(http, "GET", url, &[], &[]).await?;
    if resp.status >= 400 {
        return Err(resp.error());
    }
    Ok(resp)
}

// ---- JOSE ----

/// Base64url without padding (RFC 7515 §2), as JWS and ACME want it.
fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The inverse of [`b64url`]; `None` on padding, another alphabet or a length no encoding has.
fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// The public key as a JWK with exactly RFC 7638 §3.2's members, in its order, so that its
/// serde_json form is also the thumbprint's input.
#[derive(Serialize)]
struct Jwk {
    crv: &'static str,
    kty: &'static str,
    x: String,
    y: String,
}

#[derive(Serialize)]
struct Protected<'a> {
    alg: &'static str,
    nonce: &'a str,
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwk: Option<&'a Jwk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

/// RFC 7515 §7.2.2 flattened JSON serialization.
#[derive(Serialize)]
struct Jws {
    protected: String,
    payload: String,
    signature: String,
}

/// An account key and, once registered, the account URL (the JWS `kid`).
struct Account {
    key: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    jwk: Jwk,
    url: String,
}

impl Account {
    fn from_pkcs8(pkcs8: Vec<u8>, url: String) -> Option<Account> {
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &SystemRandom::new()).ok()?;
        // An uncompressed point: 0x04 || x || y.
        let point = key.public_key().as_ref();
        let (x, y) = point.get(1..33).zip(point.get(33..65))?;
        let jwk = Jwk { crv: "P-256", kty: "EC", x: b64url(x), y: b64url(y) };
        Some(Account { key, pkcs8, jwk, url })
    }

    /// The stored account if it belongs to `directory` and its key loads.
    fn load(stored: &str, directory: &str) -> Option<Account> {
        let stored: StoredAccount = serde_json::from_slice(stored.as_bytes()).ok()?;
        if stored.directory != directory || stored.account.is_empty() {
            return None;
        }
        Account::from_pkcs8(b64url_decode(&stored.key)?, stored.account)
    }

    fn store(&self, directory: &str) -> Result<String, AcmeError> {
        let stored = StoredAccount {
            directory: directory.to_string(),
            account: self.url.clone(),
            key: b64url(&self.pkcs8),
        };
        serde_json::to_string(&stored).map_err(|_| AcmeError::Ca("account: not stored".into()))
    }

    /// RFC 8555 §8.1: `token || '.' || base64url(JWK thumbprint)` (RFC 7638).
    fn key_authorization(&self, token: &str) -> Result<String, AcmeError> {
        let jwk = serde_json::to_vec(&self.jwk).map_err(|_| AcmeError::Ca("JWK".into()))?;
        Ok(format!("{token}.{}", b64url(digest(&SHA256, &jwk).as_ref())))
    }

    /// The JWS body of a POST to `url`; `payload` `None` is POST-as-GET (RFC 8555 §6.3).
    /// Before registration (`url` empty) the key goes in as `jwk`, after it as `kid`.
    fn sign(&self, url: &str, nonce: &str, payload: Option<&[u8]>) -> Result<Vec<u8>, AcmeError> {
        let registered = !self.url.is_empty();
        let protected = Protected {
            alg: ES256,
            nonce,
            url,
            jwk: (!registered).then_some(&self.jwk),
            kid: registered.then_some(self.url.as_str()),
        };
        let protected = serde_json::to_vec(&protected).map_err(|_| AcmeError::Ca("JWS header".into()))?;
        let protected = b64url(&protected);
        let payload = payload.map(b64url).unwrap_or_default();
        let signature = self
            .key
            .sign(&SystemRandom::new(), format!("{protected}.{payload}").as_bytes())
            .map_err(|_| AcmeError::Ca("signing failed".into()))?;
        let jws = Jws { protected, payload, signature: b64url(signature.as_ref()) };
        serde_json::to_vec(&jws).map_err(|_| AcmeError::Ca("JWS".into()))
    }
}

// ---- The client ----

/// One conversation with the CA: its directory, the account in use, the next nonce.
struct Client<'a> {
    http: &'a Http,
    directory: Directory,
    account: Account,
    nonce: Option<String>,
}

impl Client<'_> {
    async fn fresh_nonce(&self) -> Result<String, AcmeError> {
        let resp = exchange(self.http, "HEAD", &self.directory.new_nonce, &[], &[]).await?;
        match resp.header(REPLAY_NONCE) {
            Some(nonce) if resp.status < 400 => Ok(nonce.to_string()),
            _ => Err(AcmeError::Ca(format!("newNonce: HTTP {} without a nonce", resp.status))),
        }
    }

    /// A signed POST, whatever its status; a badNonce refusal is retried once with the nonce
    /// that came with it (RFC 8555 §6.5).
    async fn post_any(
        &mut self,
        url: &str,
        payload: Option<&[u8]>,
        accept: Option<&str>,
    ) -> Result<Response, AcmeError> {
        let mut headers = vec![("Content-Type", JOSE_JSON)];
        if let Some(accept) = accept {
            headers.push(("Accept", accept));
        }
        let mut retried = false;
        loop {
            let nonce = match self.nonce.take() {
                Some(nonce) => nonce,
                None => self.fresh_nonce().await?,
            };
            let body = self.account.sign(url, &nonce, payload)?;
            let resp = exchange(self.http, "POST", url, &headers, &body).await?;
            self.nonce = resp.header(REPLAY_NONCE).map(str::to_string);
            if resp.status >= 400 && !retried && resp.problem_kind().as_deref() == Some(BAD_NONCE) {
                retried = true;
                continue;
            }
            return Ok(resp);
        }
    }

    /// [`Client::post_any`], a failure status as an error.
    async fn post(&mut self, url: &str, payload: Option<&[u8]>) -> Result<Response, AcmeError> {
        let resp = self.post_any(url, payload, None).await?;
        if resp.status >= 400 {
            return Err(resp.error());
        }
        Ok(resp)
    }

    /// Registers the (fresh) account key, agreeing to the terms, no contact (RFC 8555 §7.3).
    async fn register(&mut self) -> Result<(), AcmeError> {
        let url = self.directory.new_account.clone();
        let resp = self.post(&url, Some(br#"{"termsOfServiceAgreed":true}"#)).await?;
        self.account.url = resp.location("newAccount")?;
        Ok(())
    }

    /// POSTs newOrder; `Ok(None)` when the CA does not know the account.
    async fn new_order(&mut self, domain: &str) -> Result<Option<(String, Order)>, AcmeError> {
        #[derive(Serialize)]
        struct Identifier<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            value: &'a str,
        }
        #[derive(Serialize)]
        struct NewOrder<'a> {
            identifiers: [Identifier<'a>; 1],
        }
        let payload =
            serde_json::to_vec(&NewOrder { identifiers: [Identifier { kind: "dns", value: domain }] })
                .map_err(|_| AcmeError::Ca("newOrder".into()))?;
        let url = self.directory.new_order.clone();
        let resp = self.post_any(&url, Some(&payload), None).await?;
        if resp.status >= 400 {
            if resp.problem_kind().as_deref() == Some(ACCOUNT_GONE) {
                return Ok(None);
            }
            return Err(resp.error());
        }
        Ok(Some((resp.location("newOrder")?, parse("order", &resp.body)?)))
    }

    async fn fetch<T: for<'de> Deserialize<'de>>(
        &mut self,
        what: &str,
        url: &str,
    ) -> Result<(T, Response), AcmeError> {
        let resp = self.post(url, None).await?;
        Ok((parse(what, &resp.body)?, resp))
    }

    /// Polls the order until it leaves `waiting` states or `limit` passes.
    async fn poll(
        &mut self,
        url: &str,
        waiting: &[Status],
        limit: Duration,
        what: &str,
    ) -> Result<Order, AcmeError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut delay = POLL_FIRST;
        loop {
            let (order, resp): (Order, _) = self.fetch("order", url).await?;
            if !waiting.contains(&order.status) {
                return Ok(order);
            }
            let wait = resp.retry_after().unwrap_or(delay).min(POLL_MAX);
            if tokio::time::Instant::now() + wait > deadline {
                return Err(AcmeError::Ca(format!("{what} took more than {} s", limit.as_secs())));
            }
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(POLL_MAX);
        }
    }

    /// The first challenge error of an order that did not become ready, as the CA words it.
    async fn why_invalid(&mut self, order: &Order) -> String {
        for url in &order.authorizations {
            let Ok((authz, _)) = self.fetch::<Authorization>("authorization", url).await else { break };
            if let Some(problem) = authz.challenges.iter().find_map(|c| c.error.as_ref()) {
                return problem.text();
            }
        }
        match &order.error {
            Some(problem) => problem.text(),
            None => format!("order status: {:?}", order.status),
        }
    }
}

/// A client for `directory` with the stored account, or a new account.
async fn connect<'a>(
    http: &'a Http,
    directory: &str,
    stored: Option<&str>,
) -> Result<(Client<'a>, bool), AcmeError> {
    let dir: Directory = parse("directory", &get(http, directory).await?.body)?;
    // A directory change (Let's Encrypt to a test CA and back) needs its own account.
    if let Some(account) = stored.and_then(|s| Account::load(s, directory)) {
        return Ok((Client { http, directory: dir, account, nonce: None }, false));
    }
    let key = x509::new_key_pkcs8().map_err(|e| AcmeError::Ca(e.to_string()))?;
    let account =
        Account::from_pkcs8(key, String::new()).ok_or_else(|| AcmeError::Ca("account key".into()))?;
    let mut client = Client { http, directory: dir, account, nonce: None };
    client.register().await?;
    Ok((client, true))
}

/// Issues a certificate for `domain`. `progress` gets one line per step for the CLI.
pub async fn issue(
    http: Http,
    directory: &str,
    stored_account: Option<&str>,
    domain: &str,
    publisher: &impl Publish,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Issued, AcmeError> {
    let (mut client, mut created) = connect(&http, directory, stored_account).await?;
    let (order_url, order) = match client.new_order(domain).await? {
        Some(order) => order,
        None if !created => {
            // The CA forgot our account (deactivated, or a test CA restarted): make a new one.
            progress("the CA does not know our account any more; creating a new one");
            (client, created) = connect(&http, directory, None).await?;
            client
                .new_order(domain)
                .await?
                .ok_or_else(|| AcmeError::Refused("the new account is unknown".into()))?
        }
        None => return Err(AcmeError::Refused("the new account is unknown".into())),
    };
    let new_account = if created { Some(client.account.store(directory)?) } else { None };

    let record = format!("_acme-challenge.{domain}");
    let mut published = Vec::new();
    let mut result = Ok(());
    for url in &order.authorizations {
        result = authorize(&mut client, url, &record, publisher, progress, &mut published).await;
        if result.is_err() {
            break;
        }
    }
    let status = match result {
        Ok(()) => {
            progress("waiting for the CA to validate the record");
            let waiting = [Status::Pending, Status::Processing];
            client.poll(&order_url, &waiting, VALIDATION_WAIT, "validation").await
        }
        Err(e) => Err(e),
    };
    for value in &published {
        let _ = publisher.clear(&record, value).await;
    }
    let order = status?;
    if order.status != Status::Ready {
        return Err(AcmeError::Refused(client.why_invalid(&order).await));
    }

    let key_pkcs8 = x509::new_key_pkcs8().map_err(|e| AcmeError::Ca(e.to_string()))?;
    let csr = x509::csr_der(domain, &key_pkcs8).map_err(|e| AcmeError::Ca(e.to_string()))?;
    progress("the CA validated the record; fetching the certificate");
    let finalize = format!(r#"{{"csr":"{}"}}"#, b64url(&csr));
    client.post(&order.finalize, Some(finalize.as_bytes())).await?;
    let waiting = [Status::Ready, Status::Processing];
    let order = client.poll(&order_url, &waiting, ISSUANCE_WAIT, "issuance").await?;
    let certificate = match (order.status, &order.certificate) {
        (Status::Valid, Some(url)) => url.clone(),
        _ => return Err(AcmeError::Refused(client.why_invalid(&order).await)),
    };
    let resp = client.post_any(&certificate, None, Some(PEM_CHAIN)).await?;
    if resp.status >= 400 {
        return Err(resp.error());
    }
    let chain_pem = String::from_utf8(resp.body).map_err(|_| AcmeError::Ca("certificate: not PEM".into()))?;
    Ok(Issued { chain_pem, key_pkcs8, new_account })
}

/// One authorization: nothing if already valid, else publish its DNS-01 record and tell the CA.
async fn authorize(
    client: &mut Client<'_>,
    url: &str,
    record: &str,
    publisher: &impl Publish,
    progress: &(dyn Fn(&str) + Sync),
    published: &mut Vec<String>,
) -> Result<(), AcmeError> {
    let (authz, _): (Authorization, _) = client.fetch("authorization", url).await?;
    match authz.status {
        Status::Valid => return Ok(()),
        Status::Pending => {}
        other => return Err(AcmeError::Refused(format!("authorization status: {other:?}"))),
    }
    let challenge = authz
        .challenges
        .iter()
        .find(|c| c.kind == DNS_01)
        .ok_or_else(|| AcmeError::Refused("the CA offers no dns-01 challenge".into()))?;
    // RFC 8555 §8.4: the TXT value is base64url(SHA-256(key authorization)).
    let key_authorization = client.account.key_authorization(&challenge.token)?;
    let value = b64url(digest(&SHA256, key_authorization.as_bytes()).as_ref());
    progress(&format!("publishing the TXT record {record}"));
    publisher.set(record, &value).await.map_err(AcmeError::Dns)?;
    published.push(value);
    client.post(&challenge.url, Some(b"{}")).await?;
    Ok(())
}

/// RFC 9773 §4.1: `<renewalInfo>/<base64url(AKI keyIdentifier)>.<base64url(serial)>`.
fn renewal_info_url(base: &str, aki: &[u8], serial: &[u8]) -> String {
    format!("{}/{}.{}", base.trim_end_matches('/'), b64url(aki), b64url(serial))
}

/// When the CA suggests renewing `leaf` (ARI, RFC 9773), as unix seconds, or `None` when it
/// offers no renewal information.
pub async fn suggested_renewal(
    http: Http,
    stored_account: &str,
    leaf: &x509::LeafInfo,
) -> Result<Option<(i64, i64)>, AcmeError> {
    let Some(aki) = &leaf.authority_key_id else { return Ok(None) };
    // Only the directory is needed (ARI is an unauthenticated GET). No parser text here: it
    // could quote the secret.
    #[derive(Deserialize)]
    struct DirectoryOnly {
        directory: String,
    }
    let stored: DirectoryOnly = serde_json::from_slice(stored_account.as_bytes())
        .map_err(|_| AcmeError::Ca("stored account: unreadable".into()))?;
    let dir: Directory = parse("directory", &get(&http, &stored.directory).await?.body)?;
    let Some(base) = dir.renewal_info else { return Ok(None) };
    let resp = get(&http, &renewal_info_url(&base, aki, &leaf.serial)).await?;
    let info: RenewalInfo = parse("renewal information", &resp.body)?;
    info.window().map(Some)
}

/// Every ACME response parser over the same bytes, and the error texts made from them; none
/// may panic, and an error is one line. Body of the `acme_response` fuzz target.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let one_line = |e: &AcmeError| assert!(!e.to_string().contains(['\n', '\r']), "{e:?} spans lines");
    if let Ok(dir) = parse::<Directory>("directory", data) {
        for url in [&dir.new_nonce, &dir.new_account, &dir.new_order] {
            let _ = split_url(url);
        }
        if let Some(base) = &dir.renewal_info {
            let _ = split_url(&renewal_info_url(base, data, data));
        }
    }
    if let Ok(order) = parse::<Order>("order", data) {
        for url in order.authorizations.iter().chain(order.certificate.as_ref()).chain([&order.finalize]) {
            let _ = split_url(url);
        }
        let _ = order.error.map(|p| p.text());
    }
    if let Ok(authz) = parse::<Authorization>("authorization", data) {
        for challenge in authz.challenges.iter().filter(|c| c.kind == DNS_01) {
            let _ = split_url(&challenge.url);
            let _ = challenge.error.as_ref().map(Problem::text);
        }
    }
    match parse::<RenewalInfo>("renewal information", data).and_then(|info| info.window()) {
        Ok((start, end)) => assert!(start <= end),
        Err(e) => one_line(&e),
    }
    let retry_after = String::from_utf8_lossy(data).into_owned();
    let resp =
        Response { status: 400, headers: vec![("Retry-After".into(), retry_after)], body: data.to_vec() };
    let _ = resp.retry_after();
    let _ = resp.problem_kind();
    one_line(&resp.error());
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Account::load(text, DEFAULT_DIRECTORY);
        let _ = b64url_decode(text);
    }
    assert_eq!(b64url_decode(&b64url(data)).as_deref(), Some(data));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    /// The x509 tests' fixed P-256 key.
    const KEY: &[u8] = include_bytes!("fixtures/leaf.key.der");

    fn account() -> Account {
        Account::from_pkcs8(KEY.to_vec(), "https://ca.test/acct/1".into()).expect("fixture key")
    }

    /// Expected values computed apart from this code, with openssl and python3:
    ///   openssl pkey -inform DER -in fixtures/leaf.key.der -pubout -outform DER | tail -c 64 > pt
    ///   jwk = '{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}' % (b64u(pt[:32]), b64u(pt[32:]))
    ///   thumbprint = b64u(sha256(jwk)); txt = b64u(sha256("token-xyz." + thumbprint))
    /// (`openssl dgst -sha256 -binary | basenc --base64url` gives the same thumbprint).
    #[test]
    fn thumbprint_key_authorization_and_txt_value() {
        let account = account();
        assert_eq!(
            serde_json::to_string(&account.jwk).unwrap(),
            r#"{"crv":"P-256","kty":"EC","x":"U6EK9Jb9PdviXNt6OG2CdDIBDFs2j-Kafj6WsWk5HY8","y":"XYsXVA6JhJdYkye_ezQZQjSR1Wlg_0_KQnk44AiQrPE"}"#
        );
        let key_authorization = account.key_authorization("token-xyz").unwrap();
        assert_eq!(key_authorization, "token-xyz.-OfwNaX2L5slzQ6u56Cdsu3s59aR88CxlEPjXoRqIGs");
        let txt = b64url(digest(&SHA256, key_authorization.as_bytes()).as_ref());
        assert_eq!(txt, "7A8v1UL-x4nSqTS3xo6b4HBHn7S58J3dQmu-VEHxatk");
    }

    fn decode_jws(body: &[u8]) -> (serde_json::Value, Vec<u8>, String, Vec<u8>) {
        let jws: serde_json::Value = serde_json::from_slice(body).unwrap();
        let field = |k: &str| jws[k].as_str().unwrap().to_string();
        let (protected, payload) = (field("protected"), field("payload"));
        let header = serde_json::from_slice(&b64url_decode(&protected).unwrap()).unwrap();
        let signed = format!("{protected}.{payload}").into_bytes();
        (header, b64url_decode(&payload).unwrap(), field("signature"), signed)
    }

    #[test]
    fn jws_verifies_and_names_the_key_by_kid_once_registered() {
        let mut account = account();
        let public = account.key.public_key().as_ref().to_vec();
        let verify = |signed: &[u8], signature: &str| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
                .verify(signed, &b64url_decode(signature).unwrap())
                .is_ok()
        };

        let body = account.sign("https://ca.test/order/1", "n0nce", Some(br#"{"a":1}"#)).unwrap();
        let (header, payload, signature, signed) = decode_jws(&body);
        assert!(verify(&signed, &signature));
        assert_eq!(
            header,
            serde_json::json!({"alg":"ES256","nonce":"n0nce","url":"https://ca.test/order/1","kid":"https://ca.test/acct/1"})
        );
        assert_eq!(payload, br#"{"a":1}"#);
        let mut tampered = signed.clone();
        tampered[0] ^= 1;
        assert!(!verify(&tampered, &signature));

        // POST-as-GET: the payload is the empty string.
        let jws: serde_json::Value = serde_json::from_slice(&account.sign("u", "n", None).unwrap()).unwrap();
        assert_eq!(jws["payload"], "");

        account.url.clear();
        let (header, _, signature, signed) =
            decode_jws(&account.sign("https://ca.test/new-acct", "n", Some(b"{}")).unwrap());
        assert!(verify(&signed, &signature));
        assert!(header.get("kid").is_none());
        assert_eq!(header["jwk"], serde_json::to_value(&account.jwk).unwrap());
    }

    /// RFC 4648 §10, in the URL alphabet and without padding.
    #[test]
    fn base64url_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(b64url(plain.as_bytes()), encoded);
            assert_eq!(b64url_decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64url_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(b64url_decode("Zm9vY"), None, "a lone sextet");
        assert_eq!(b64url_decode("Zm9v+"), None, "standard alphabet");
        assert_eq!(b64url_decode("Zm8="), None, "padding");
    }

    #[test]
    fn problem_documents_become_one_line_refusals() {
        let resp = |status: u16, body: &str| Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        let limited = r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many certificates\nalready issued","status":429}"#;
        let e = resp(429, limited).error();
        assert_eq!(
            e,
            AcmeError::Refused(
                "too many certificates already issued (urn:ietf:params:acme:error:rateLimited)".into()
            )
        );
        assert!(e.to_string().starts_with("ACME server refused: ") && e.to_string().contains("rateLimited"));

        let compound = r#"{"type":"urn:ietf:params:acme:error:compound","detail":"errors","subproblems":[{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"no","identifier":{"type":"dns","value":"x"}}]}"#;
        assert_eq!(
            resp(400, compound).error(),
            AcmeError::Refused("errors (urn:ietf:params:acme:error:compound); no (urn:ietf:params:acme:error:rejectedIdentifier)".into())
        );
        assert_eq!(resp(502, "<html>bad gateway</html>").error(), AcmeError::Ca("HTTP 502".into()));
        assert_eq!(AcmeError::Ca("HTTP 502".into()).to_string(), "ACME server: HTTP 502");
        let long = format!(r#"{{"type":"t","detail":"{}"}}"#, "x".repeat(1000));
        let AcmeError::Refused(text) = resp(400, &long).error() else { panic!("not a refusal") };
        assert_eq!(text.chars().count(), PROBLEM_TEXT_MAX);
        assert_eq!(
            resp(400, r#"{"type":"urn:ietf:params:acme:error:badNonce"}"#).problem_kind().as_deref(),
            Some(BAD_NONCE)
        );
    }

    #[test]
    fn renewal_info_url_and_window() {
        // RFC 9773 §4.1's example: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
        // serial 00:87:65:43:21.
        let aki = [
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C,
            0xDE, 0x01, 0xC8, 0xD4,
        ];
        let serial = [0x00, 0x87, 0x65, 0x43, 0x21];
        let expected = "https://ca.test/renewal-info/aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";
        assert_eq!(renewal_info_url("https://ca.test/renewal-info", &aki, &serial), expected);
        assert_eq!(renewal_info_url("https://ca.test/renewal-info/", &aki, &serial), expected);

        let info: RenewalInfo = serde_json::from_str(
            r#"{"suggestedWindow":{"start":"2025-01-02T04:00:00Z","end":"2025-01-03T04:00:00Z"},"explanationURL":"https://ca.test/x"}"#,
        )
        .unwrap();
        assert_eq!(info.window(), Ok((1_735_790_400, 1_735_876_800)));
        let backwards: RenewalInfo = serde_json::from_str(
            r#"{"suggestedWindow":{"start":"2025-01-03T04:00:00Z","end":"2025-01-02T04:00:00Z"}}"#,
        )
        .unwrap();
        assert!(backwards.window().is_err());
    }

    #[test]
    fn stored_account_round_trips_for_its_directory_only() {
        let json = account().store("https://ca.test/dir").unwrap();
        let back = Account::load(&json, "https://ca.test/dir").expect("same directory");
        assert_eq!(back.url, "https://ca.test/acct/1");
        assert_eq!(back.pkcs8, KEY);
        assert_eq!(back.jwk.x, account().jwk.x);
        assert!(Account::load(&json, DEFAULT_DIRECTORY).is_none(), "another directory's account");
        // instant-acme's credentials, as older tinytail stored them: a new account.
        let old = r#"{"id":"https://ca.test/acct/1","key_pkcs8":"MIGH","directory":"https://ca.test/dir","urls":null}"#;
        assert!(Account::load(old, "https://ca.test/dir").is_none());
        assert!(Account::load("not json", "https://ca.test/dir").is_none());
        let bad_key = json.replace(&b64url(KEY), "AAAA");
        assert!(Account::load(&bad_key, "https://ca.test/dir").is_none());
    }

    #[test]
    fn urls_split_into_server_and_path() {
        assert_eq!(split_url("https://ca.test:14000/dir"), Some(("https://ca.test:14000", "/dir")));
        assert_eq!(split_url("https://ca.test"), Some(("https://ca.test", "/")));
        assert_eq!(split_url("https://[::1]:14000/a?b=c"), Some(("https://[::1]:14000", "/a?b=c")));
        assert_eq!(split_url("https://ca.test?x"), None);
        assert_eq!(split_url("ca.test/dir"), None);
    }

    #[test]
    fn responses_parse_as_pebble_writes_them() {
        let order: Order = serde_json::from_str(
            r#"{"status":"pending","expires":"2025-01-01T00:00:00Z","identifiers":[{"type":"dns","value":"a.ts.net"}],
               "finalize":"https://ca.test/finalize-order/X","authorizations":["https://ca.test/authZ/Y"]}"#,
        )
        .unwrap();
        assert_eq!(order.status, Status::Pending);
        assert_eq!(order.authorizations, ["https://ca.test/authZ/Y"]);
        let authz: Authorization = serde_json::from_str(
            r#"{"status":"invalid","identifier":{"type":"dns","value":"a.ts.net"},"challenges":[
               {"type":"dns-01","url":"https://ca.test/chalZ/1","token":"tok","status":"invalid",
                "error":{"type":"urn:ietf:params:acme:error:unauthorized","detail":"Correct value not found for DNS challenge","status":403}}]}"#,
        )
        .unwrap();
        assert_eq!(authz.status, Status::Invalid);
        let problem = authz.challenges[0].error.as_ref().unwrap();
        assert_eq!(
            problem.text(),
            "Correct value not found for DNS challenge (urn:ietf:params:acme:error:unauthorized)"
        );
        let odd: Order = serde_json::from_str(r#"{"status":"someday"}"#).unwrap();
        assert_eq!(odd.status, Status::Other);
    }
}
