//! HTTPS certificates for the node's tailnet name (issue #15, seed 000): what a stored
//! certificate's status is, when it should be renewed, and the key the HTTPS listener serves.
//! The flow that gets and renews certificates (`tinytail cert`, the renewal task, control's c2n
//! status request) is [`crate::certify`]; this module holds no I/O but the ACME client.
//!
//! [`x509`] reads certificates and builds CSRs (no heap-hungry X.509 crate); [`acme`] is our own
//! small ACME client (RFC 8555 DNS-01, RFC 9773 renewal information) over our HTTP client.

pub mod acme;
pub mod x509;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use serde_json::json;

use crate::clock;
use crate::state::FlashState;

/// First retry after a failed renewal; doubled per failure up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(30);
pub const RETRY_MAX: Duration = Duration::from_secs(6 * 3600);
/// After the CA says `rateLimited`, wait at least this long (Let's Encrypt's limits refill
/// over hours, not seconds).
pub const RETRY_RATE_LIMITED: Duration = Duration::from_secs(3600);
/// Let's Encrypt's "duplicate certificate" limit: at most 5 certificates for the same name set
/// per 7 days. Counted only when the directory is Let's Encrypt's.
pub const DUPLICATE_LIMIT: usize = 5;
pub const DUPLICATE_WINDOW_SECS: i64 = 7 * 24 * 3600;
/// The one-line notice the CLI and the page give before a name's first certificate (seed 000).
pub const CT_NOTICE: &str =
    "Note: the certificate's name will be published in public Certificate Transparency logs, \
     where anyone can read it.";

/// A certificate's status, named as seed 000 (and the admin console) names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertStatus {
    /// Stored, verifies for the name, not expired.
    Valid,
    /// Stored but unusable: the reason (a name or key mismatch, a bad chain, bad PEM).
    Invalid(String),
    /// Stored and past its NotAfter.
    Expired,
    /// Nothing stored for the name.
    Missing,
}

impl CertStatus {
    /// The words seed 000 uses.
    pub fn label(&self) -> &'static str {
        match self {
            CertStatus::Valid => "Valid",
            CertStatus::Invalid(_) => "Invalid",
            CertStatus::Expired => "Certificate expired",
            CertStatus::Missing => "No certificate found",
        }
    }
}

/// What the agent keeps in memory about certificates: the keys it serves and each name's
/// renewal schedule. Lives in `Shared`.
#[derive(Default)]
pub struct Book {
    /// The certificate served for each name (the old one until a new one is stored).
    pub served: BTreeMap<String, Arc<CertifiedKey>>,
    pub renewal: BTreeMap<String, Renewal>,
}

/// One name's renewal state.
#[derive(Debug, Clone, Default)]
pub struct Renewal {
    /// When to renew (unix seconds); `None` until computed from the stored leaf (and ARI).
    pub due: Option<i64>,
    /// Whether `due` came from the CA's renewal information (ARI).
    pub from_ari: bool,
    /// Not before this time after a failure (unix seconds).
    pub retry_at: Option<i64>,
    pub failures: u32,
    pub last_error: Option<String>,
    /// When this agent got certificates for the name (for the CA's duplicate limit).
    pub issued: Vec<i64>,
}

impl Renewal {
    /// Records a failed attempt at `now` for a certificate living `lifetime` seconds; the next
    /// try waits by the backoff, but never more than a tenth of the lifetime (unless the CA
    /// said we hit its limits), so short-lived certificates get retried before they expire.
    pub fn failed(&mut self, now: i64, error: &str, rate_limited: bool, lifetime: i64) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error.to_string());
        let mut delay = retry_delay(self.failures, rate_limited).as_secs() as i64;
        if !rate_limited {
            delay = delay.min((lifetime / 10).max(RETRY_FIRST.as_secs() as i64));
        }
        self.retry_at = Some(now + delay);
    }

    /// Records a stored issuance at `now`: the schedule starts again from the new leaf.
    pub fn succeeded(&mut self, now: i64) {
        self.failures = 0;
        self.last_error = None;
        self.retry_at = None;
        self.due = None;
        self.from_ari = false;
        self.issued.retain(|t| now - t < DUPLICATE_WINDOW_SECS);
        self.issued.push(now);
    }

    /// Whether another issuance now stays within the duplicate-certificate limit.
    pub fn within_duplicate_limit(&self, now: i64) -> bool {
        self.issued.iter().filter(|t| now - **t < DUPLICATE_WINDOW_SECS).count() < DUPLICATE_LIMIT
    }
}

/// Wait before retry number `failures` (1 = the first): 30 s doubling to 6 h.
pub fn retry_delay(failures: u32, rate_limited: bool) -> Duration {
    let doubled = RETRY_FIRST.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let delay = doubled.min(RETRY_MAX);
    if rate_limited {
        delay.max(RETRY_RATE_LIMITED)
    } else {
        delay
    }
}

/// When to renew a certificate: a point of the CA's suggested window (ARI) when it gave one,
/// else two thirds into the lifetime less a jitter of up to 1/30 of it, so routers that got
/// their certificates together do not all come back together. `random` picks the point.
pub fn renew_at(leaf: &x509::LeafInfo, ari: Option<(i64, i64)>, random: u64) -> i64 {
    if let Some((start, end)) = ari.filter(|(s, e)| e >= s) {
        return start + (random % ((end - start) as u64 + 1)) as i64;
    }
    let lifetime = (leaf.not_after - leaf.not_before).max(0);
    let jitter = lifetime / 30;
    leaf.not_before + lifetime * 2 / 3 - (random % (jitter as u64 + 1)) as i64
}

/// A name's stored certificate checked at `now` (`None`: the clock is not set, see
/// [`x509::check_at`]), with its leaf when it parsed.
pub fn stored_status(
    store: &FlashState,
    domain: &str,
    now: Option<i64>,
    roots: Option<&rustls::RootCertStore>,
) -> x509::Checked {
    match store.certificate(domain) {
        None => x509::Checked { status: CertStatus::Missing, leaf: None },
        Some((chain, key)) => x509::check_at(&chain, &key, domain, now, roots),
    }
}

/// The answer to control's c2n `/tls-cert-status` (`tailcfg.C2NTLSCertInfo`, fields omitted
/// when empty as Go's `omitempty` does).
pub fn c2n_json(checked: &x509::Checked) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    match &checked.status {
        CertStatus::Valid => {
            out.insert("Valid".into(), json!(true));
        }
        CertStatus::Expired => {
            out.insert("Expired".into(), json!(true));
        }
        CertStatus::Missing => {
            out.insert("Missing".into(), json!(true));
            out.insert("Error".into(), json!("no certificate"));
        }
        CertStatus::Invalid(why) => {
            out.insert("Error".into(), json!(why));
        }
    }
    if let Some(leaf) = &checked.leaf {
        out.insert("NotBefore".into(), json!(clock::rfc3339(leaf.not_before)));
        out.insert("NotAfter".into(), json!(clock::rfc3339(leaf.not_after)));
    }
    serde_json::Value::Object(out)
}

/// The key rustls serves for a stored chain (PEM) and its PKCS#8 key.
pub fn served_key(chain_pem: &[u8], key_pkcs8: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the chain".into());
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8.to_vec()));
    // Only the kind of key we make (ECDSA P-256); the error names no key bytes.
    let signer = rustls::crypto::ring::sign::any_ecdsa_type(&key)
        .map_err(|_| "the certificate key is not an ECDSA key we can use".to_string())?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

/// A name as `tailscale cert` accepts it: lower case, no trailing dot, letters, digits and
/// hyphens in 1-63 byte labels (at least two), 253 bytes at most; `*.` only in front.
pub fn normalize_domain(given: &str) -> Option<String> {
    let name = given.trim_end_matches('.').to_ascii_lowercase();
    let rest = name.strip_prefix("*.").unwrap_or(&name);
    let labels: Vec<&str> = rest.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    (name.len() <= 253 && labels.len() >= 2 && labels.iter().all(label_ok)).then_some(name)
}

/// One name's status for `tinytail cert --status`, `status --json` and the page.
pub fn status_json(domain: &str, checked: &x509::Checked, renewal: Option<&Renewal>) -> serde_json::Value {
    let mut out = json!({ "Domain": domain, "Status": checked.status.label() });
    if let CertStatus::Invalid(why) = &checked.status {
        out["Error"] = json!(why);
    }
    if let Some(leaf) = &checked.leaf {
        out["NotBefore"] = json!(clock::rfc3339(leaf.not_before));
        out["NotAfter"] = json!(clock::rfc3339(leaf.not_after));
    }
    if let Some(r) = renewal {
        if let Some(due) = r.due {
            out["RenewAt"] = json!(clock::rfc3339(due));
            out["RenewFrom"] = json!(if r.from_ari { "ARI" } else { "lifetime" });
        }
        if let Some(e) = &r.last_error {
            out["LastError"] = json!(e);
        }
        if let Some(t) = r.retry_at {
            out["RetryAt"] = json!(clock::rfc3339(t));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(not_before: i64, not_after: i64) -> x509::LeafInfo {
        x509::LeafInfo {
            not_before,
            not_after,
            dns_names: vec!["a.ts.net".into()],
            common_name: None,
            serial: vec![1],
            authority_key_id: None,
            spki: Vec::new(),
        }
    }

    #[test]
    fn renewal_is_two_thirds_in_less_jitter_without_ari() {
        let l = leaf(1000, 1300);
        assert_eq!(renew_at(&l, None, 0), 1200);
        for r in 0..50 {
            let at = renew_at(&l, None, r * 7919);
            assert!((1190..=1200).contains(&at), "{at}");
        }
        let ninety_days = leaf(0, 90 * 86400);
        assert_eq!(renew_at(&ninety_days, None, 0), 60 * 86400);
    }

    #[test]
    fn renewal_follows_the_ari_window() {
        let l = leaf(1000, 1300);
        for r in 0..50 {
            let at = renew_at(&l, Some((1100, 1150)), r * 31);
            assert!((1100..=1150).contains(&at), "{at}");
        }
        // A window that ends before it starts is ignored.
        assert_eq!(renew_at(&l, Some((1150, 1100)), 0), 1200);
    }

    #[test]
    fn backoff_doubles_to_six_hours_and_respects_rate_limits() {
        assert_eq!(retry_delay(1, false), Duration::from_secs(30));
        assert_eq!(retry_delay(2, false), Duration::from_secs(60));
        assert_eq!(retry_delay(12, false), RETRY_MAX);
        assert_eq!(retry_delay(u32::MAX, false), RETRY_MAX);
        assert_eq!(retry_delay(1, true), RETRY_RATE_LIMITED);
    }

    #[test]
    fn retries_come_before_a_short_certificate_expires() {
        let mut r = Renewal::default();
        for _ in 0..5 {
            r.failed(1000, "ACME server: down", false, 300);
        }
        assert_eq!(r.retry_at, Some(1030));
        let mut long = Renewal::default();
        for _ in 0..5 {
            long.failed(1000, "ACME server: down", false, 90 * 86400);
        }
        assert_eq!(long.retry_at, Some(1000 + 16 * 30));
        let mut limited = Renewal::default();
        limited.failed(1000, "rateLimited", true, 300);
        assert_eq!(limited.retry_at, Some(1000 + 3600));
        assert_eq!(limited.last_error.as_deref(), Some("rateLimited"));
    }

    #[test]
    fn duplicate_limit_counts_the_last_seven_days() {
        let mut r = Renewal::default();
        for i in 0..5 {
            assert!(r.within_duplicate_limit(i));
            r.succeeded(i);
        }
        assert!(!r.within_duplicate_limit(10));
        assert!(r.within_duplicate_limit(DUPLICATE_WINDOW_SECS + 1));
    }

    #[test]
    fn c2n_answer_matches_c2n_tls_cert_info() {
        let missing = x509::Checked { status: CertStatus::Missing, leaf: None };
        assert_eq!(c2n_json(&missing), json!({"Missing": true, "Error": "no certificate"}));
        let valid = x509::Checked { status: CertStatus::Valid, leaf: Some(leaf(0, 86400)) };
        assert_eq!(
            c2n_json(&valid),
            json!({"Valid": true, "NotBefore": "1970-01-01T00:00:00Z", "NotAfter": "1970-01-02T00:00:00Z"})
        );
        let invalid = x509::Checked { status: CertStatus::Invalid("name mismatch".into()), leaf: None };
        assert_eq!(c2n_json(&invalid), json!({"Error": "name mismatch"}));
        let expired = x509::Checked { status: CertStatus::Expired, leaf: Some(leaf(0, 1)) };
        assert_eq!(c2n_json(&expired)["Expired"], json!(true));
    }

    #[test]
    fn domains_are_checked_like_tailscale_cert() {
        assert_eq!(normalize_domain("A.Tail1234.ts.net."), Some("a.tail1234.ts.net".into()));
        assert_eq!(normalize_domain("*.a.ts.net"), Some("*.a.ts.net".into()));
        for bad in ["", "a", "a..b", "-a.b", "a-.b", "a b.c", "a.*.b", "a/b.c", &"x".repeat(64), "é.com"] {
            assert_eq!(normalize_domain(bad), None, "{bad}");
        }
        let long = format!("{}.com", ["a"; 130].join("."));
        assert_eq!(normalize_domain(&long), None);
    }
}
