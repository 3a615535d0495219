//! Certificates read without an X.509 crate: a small DER walker for what the status and renewal
//! need, chain checks through webpki (already linked by rustls), and P-256 CSRs signed by ring.
#![allow(dead_code, unused_variables)]

// TEMPORARY interface stubs (replaced by the real module from the cert-x509 branch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    pub not_before: i64,
    pub not_after: i64,
    pub dns_names: Vec<String>,
    pub common_name: Option<String>,
    pub serial: Vec<u8>,
    pub authority_key_id: Option<Vec<u8>>,
    pub spki: Vec<u8>,
}
#[derive(Debug)]
pub struct X509Error(String);
impl std::fmt::Display for X509Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
pub struct Checked {
    pub status: super::CertStatus,
    pub leaf: Option<LeafInfo>,
}
pub fn parse_leaf(der: &[u8]) -> Result<LeafInfo, X509Error> {
    Err(X509Error("stub".into()))
}
pub fn new_key_pkcs8() -> Result<Vec<u8>, X509Error> {
    Err(X509Error("stub".into()))
}
pub fn key_pem(pkcs8: &[u8]) -> String {
    String::new()
}
pub fn csr_der(domain: &str, key_pkcs8: &[u8]) -> Result<Vec<u8>, X509Error> {
    Err(X509Error("stub".into()))
}
pub fn check(
    chain_pem: &[u8],
    key_pkcs8: &[u8],
    domain: &str,
    now: i64,
    roots: Option<&rustls::RootCertStore>,
) -> Checked {
    Checked { status: super::CertStatus::Missing, leaf: None }
}
pub fn rfc3339(unix: i64) -> String {
    String::new()
}
