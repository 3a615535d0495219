//! HTTPS certificates for the node's tailnet name (issue #15, seed 000): `tinytail cert`, ACME
//! DNS-01 through control's `/machine/set-dns` (or a `--dns-hook`), the account key, certificate
//! keys and chains in the store, renewal, and the status the admin console shows.
//!
//! [`x509`] reads certificates and builds CSRs (no heap-hungry X.509 crate); [`acme`] drives
//! instant-acme over our own HTTP client; this module owns the flow and the renewal schedule.

pub mod x509;

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
