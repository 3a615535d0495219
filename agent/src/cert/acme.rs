//! ACME (RFC 8555) through instant-acme, over our own HTTP client: one HTTP/1.1 request per TLS
//! connection on the agent's rustls stack (transport + http1), so no hyper and no second TLS
//! configuration. An issuance is about ten requests; keep-alive would not pay for its code.
//!
//! The flow follows tailscaled's `tailscale cert` (lock-cert.md §B.2): a P-256 account without
//! contact, one order for `dns:<domain>`, DNS-01 with the TXT record published by whoever the
//! caller passes ([`Publish`]), a fresh P-256 key and CSR per certificate, the chain as PEM.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, CertificateIdentifier,
    ChallengeType, HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};

use super::x509;
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
/// RFC 8555's problem type for an account the CA does not know.
const ACCOUNT_GONE: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

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
    /// The account's credentials (instant-acme's JSON, holding the account key) when this
    /// issuance made a new account, to be stored in the same transaction. Secret.
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

fn acme_error(e: instant_acme::Error) -> AcmeError {
    match e {
        instant_acme::Error::Api(problem) => AcmeError::Refused(one_line(&problem.to_string())),
        other => AcmeError::Ca(one_line(&other.to_string())),
    }
}

fn one_line(text: &str) -> String {
    let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    line.chars().take(300).collect()
}

/// Our HTTP client for instant-acme.
#[derive(Clone)]
pub struct Http {
    tls: Arc<rustls::ClientConfig>,
}

impl Http {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Http {
        Http { tls }
    }
}

impl HttpClient for Http {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = Arc::clone(&self.tls);
        Box::pin(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, exchange(&tls, req)).await {
                Ok(result) => result.map_err(|e| instant_acme::Error::Other(e.into())),
                Err(_) => Err(instant_acme::Error::Other("request timed out".into())),
            }
        })
    }
}

/// One request on a fresh connection.
async fn exchange(
    tls: &Arc<rustls::ClientConfig>,
    req: http::Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, String> {
    let (parts, body) = req.into_parts();
    let body = http_body_util::BodyExt::collect(body).await.map_err(|e| e.to_string())?.to_bytes();
    let uri = &parts.uri;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("unsupported URL {uri}")),
    };
    let host = uri.host().ok_or_else(|| format!("no host in {uri}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let url = ServerUrl { tls: https, host, port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }) };
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut headers: Vec<(&str, &str)> = vec![("Connection", "close")];
    for (name, value) in &parts.headers {
        // instant-acme sets its own User-Agent; ours is http1's.
        if name != http::header::USER_AGENT {
            headers.push((name.as_str(), value.to_str().map_err(|_| "non-ASCII header".to_string())?));
        }
    }
    let mut io = transport::dial(&url, Some(tls)).await.map_err(|e| match e {
        // Its own wording names the login server; this is the CA.
        ControlError::Unreachable(why) => format!("cannot reach {why}"),
        other => other.to_string(),
    })?;
    let (head, rest) =
        http1::request_with_body(&mut io, parts.method.as_str(), &url.authority(), path, &headers, &body)
            .await
            .map_err(|e| e.to_string())?;
    let body = http1::read_body(&mut io, &head, rest, RESPONSE_MAX).await.map_err(|e| e.to_string())?;
    let mut response = http::Response::builder().status(head.status);
    for (name, value) in head.headers() {
        response = response.header(name, value);
    }
    let response = response
        .body(http_body_util::Full::new(Bytes::from(body)))
        .map_err(|e| format!("bad response: {e}"))?;
    Ok(BytesResponse::from(response))
}

/// The stored account if it belongs to `directory`, else a new one.
async fn account(
    http: Http,
    directory: &str,
    stored: Option<&str>,
) -> Result<(Account, Option<String>), AcmeError> {
    let builder = Account::builder_with_http(Box::new(http));
    if let Some(json) = stored {
        // A directory change (Let's Encrypt to a test CA and back) needs its own account.
        let same_directory = serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .is_some_and(|v| v.get("directory").and_then(|d| d.as_str()) == Some(directory));
        if same_directory {
            if let Ok(credentials) = serde_json::from_str::<AccountCredentials>(json) {
                return builder.from_credentials(credentials).await.map(|a| (a, None)).map_err(acme_error);
            }
        }
    }
    let new = NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) =
        builder.create(&new, directory.to_string(), None).await.map_err(acme_error)?;
    let json = serde_json::to_string(&credentials).map_err(|e| AcmeError::Ca(format!("account: {e}")))?;
    Ok((account, Some(json)))
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
    let (mut account, mut new_account) = account(http.clone(), directory, stored_account).await?;
    let identifiers = [Identifier::Dns(domain.to_string())];
    let mut order = match account.new_order(&NewOrder::new(&identifiers)).await {
        Ok(order) => order,
        Err(instant_acme::Error::Api(problem))
            if problem.r#type.as_deref() == Some(ACCOUNT_GONE) && new_account.is_none() =>
        {
            // The CA forgot our account (deactivated, or a test CA restarted): make a new one.
            progress("the CA does not know our account any more; creating a new one");
            (account, new_account) = self::account(http, directory, None).await?;
            account.new_order(&NewOrder::new(&identifiers)).await.map_err(acme_error)?
        }
        Err(e) => return Err(acme_error(e)),
    };
    let record = format!("_acme-challenge.{domain}");
    let mut published = Vec::new();
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(acme_error)?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => return Err(AcmeError::Refused(format!("authorization status: {other:?}"))),
            }
            let mut challenge = authz
                .challenge(ChallengeType::Dns01)
                .ok_or_else(|| AcmeError::Refused("the CA offers no dns-01 challenge".into()))?;
            let value = challenge.key_authorization().dns_value();
            progress(&format!("publishing the TXT record {record}"));
            publisher.set(&record, &value).await.map_err(AcmeError::Dns)?;
            published.push(value);
            challenge.set_ready().await.map_err(acme_error)?;
        }
    }
    progress("waiting for the CA to validate the record");
    let validation = RetryPolicy::new().initial_delay(Duration::from_millis(500)).timeout(VALIDATION_WAIT);
    let status = order.poll_ready(&validation).await;
    for value in &published {
        let _ = publisher.clear(&record, value).await;
    }
    match status.map_err(acme_error)? {
        OrderStatus::Ready => {}
        status => return Err(AcmeError::Refused(why_invalid(&mut order, status).await)),
    }
    let key_pkcs8 = x509::new_key_pkcs8().map_err(|e| AcmeError::Ca(e.to_string()))?;
    let csr = x509::csr_der(domain, &key_pkcs8).map_err(|e| AcmeError::Ca(e.to_string()))?;
    progress("the CA validated the record; fetching the certificate");
    order.finalize_csr(&csr).await.map_err(acme_error)?;
    let issuance = RetryPolicy::new().initial_delay(Duration::from_millis(500)).timeout(ISSUANCE_WAIT);
    let chain_pem = order.poll_certificate(&issuance).await.map_err(acme_error)?;
    Ok(Issued { chain_pem, key_pkcs8, new_account })
}

/// The first challenge error of an order that did not become ready, as the CA words it.
async fn why_invalid(order: &mut instant_acme::Order, status: OrderStatus) -> String {
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        for challenge in &authz.challenges {
            if let Some(problem) = &challenge.error {
                return one_line(&problem.to_string());
            }
        }
    }
    format!("order status: {status:?}")
}

/// When the CA suggests renewing `leaf` (ARI, RFC 9773), as unix seconds, or `None` when it
/// offers no renewal information.
pub async fn suggested_renewal(
    http: Http,
    stored_account: &str,
    leaf: &x509::LeafInfo,
) -> Result<Option<(i64, i64)>, AcmeError> {
    let Some(aki) = &leaf.authority_key_id else { return Ok(None) };
    let credentials = serde_json::from_str::<AccountCredentials>(stored_account)
        .map_err(|e| AcmeError::Ca(format!("stored account: {e}")))?;
    let account =
        Account::builder_with_http(Box::new(http)).from_credentials(credentials).await.map_err(acme_error)?;
    let id = CertificateIdentifier::new(aki.as_slice().into(), leaf.serial.as_slice().into());
    match account.renewal_info(&id).await {
        Ok((info, _retry_after)) => {
            let window = info.suggested_window;
            Ok(Some((window.start.unix_timestamp(), window.end.unix_timestamp())))
        }
        Err(instant_acme::Error::Unsupported(_)) => Ok(None),
        Err(e) => Err(acme_error(e)),
    }
}
