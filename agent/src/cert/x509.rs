//! Certificates read without an X.509 crate. Status, renewal and ARI need a dozen leaf fields
//! (validity, names, serial, authority key id, public key); an X.509 crate would bring its own
//! ASN.1 stack into a binary with a 2 MB budget, so a small DER walker reads them, webpki
//! (already linked by rustls) checks chains, and ring (rustls's provider) makes P-256 keys and
//! signs CSRs. Certificates come from a CA or the flash store, so every read is length-checked
//! and malformed input is an error, never a panic; errors never quote key material.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

use super::CertStatus;
use crate::clock;

/// What the agent reads from a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// The subjectAltName's dNSName entries, in order.
    pub dns_names: Vec<String>,
    pub common_name: Option<String>,
    /// The serial INTEGER's content bytes as encoded (a leading 0x00 kept), as ARI wants them.
    pub serial: Vec<u8>,
    pub authority_key_id: Option<Vec<u8>>,
    /// The whole SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
}

/// Why a certificate, key or CSR could not be read or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Error(String);

impl fmt::Display for X509Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for X509Error {}

/// A stored or issued certificate's status, with its leaf whenever the leaf parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub status: CertStatus,
    pub leaf: Option<LeafInfo>,
}

/// Reads the fields of [`LeafInfo`] from a certificate's DER.
pub fn parse_leaf(der: &[u8]) -> Result<LeafInfo, X509Error> {
    let mut outer = Der::new(der);
    let mut certificate = Der::new(outer.expect(SEQUENCE, "certificate")?);
    outer.finish("certificate")?;
    let tbs = certificate.expect(SEQUENCE, "tbsCertificate")?;
    certificate.expect(SEQUENCE, "signatureAlgorithm")?;
    certificate.expect(BIT_STRING, "signatureValue")?;
    certificate.finish("certificate")?;

    let mut tbs = Der::new(tbs);
    tbs.optional(VERSION, "version")?;
    let serial = tbs.expect(INTEGER, "serialNumber")?;
    if serial.is_empty() {
        return Err(X509Error("serialNumber: empty".into()));
    }
    tbs.expect(SEQUENCE, "signature")?;
    tbs.expect(SEQUENCE, "issuer")?;
    let mut validity = Der::new(tbs.expect(SEQUENCE, "validity")?);
    let not_before = time(validity.element("notBefore")?)?;
    let not_after = time(validity.element("notAfter")?)?;
    validity.finish("validity")?;
    let common_name = common_name(tbs.expect(SEQUENCE, "subject")?)?;
    let spki = tbs.element("subjectPublicKeyInfo")?;
    if spki.tag != SEQUENCE {
        return Err(X509Error("subjectPublicKeyInfo: not a SEQUENCE".into()));
    }
    tbs.optional(ISSUER_UNIQUE_ID, "issuerUniqueID")?;
    tbs.optional(SUBJECT_UNIQUE_ID, "subjectUniqueID")?;
    let mut leaf = LeafInfo {
        not_before,
        not_after,
        dns_names: Vec::new(),
        common_name,
        serial: serial.to_vec(),
        authority_key_id: None,
        spki: spki.whole.to_vec(),
    };
    if let Some(extensions) = tbs.optional(EXTENSIONS, "extensions")? {
        read_extensions(extensions, &mut leaf)?;
    }
    tbs.finish("tbsCertificate")?;
    Ok(leaf)
}

/// A fresh ECDSA P-256 key, PKCS#8 v1 DER.
pub fn new_key_pkcs8() -> Result<Vec<u8>, X509Error> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
        .map(|document| document.as_ref().to_vec())
        .map_err(|_| X509Error("key generation failed".into()))
}

/// A PKCS#8 key as a `PRIVATE KEY` PEM block (base64 in 64-column lines), as tailscaled writes
/// its key files.
pub fn key_pem(pkcs8: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(pkcs8);
    let mut pem = String::with_capacity(encoded.len() + encoded.len() / 64 + 64);
    pem.push_str("-----BEGIN PRIVATE KEY-----\n");
    for (i, c) in encoded.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            pem.push('\n');
        }
        pem.push(c);
    }
    pem.push_str("\n-----END PRIVATE KEY-----\n");
    pem
}

/// A PKCS#10 certificate request for `domain` (subject CN and a subjectAltName dNSName), signed
/// ecdsa-with-SHA256 by the P-256 key `key_pkcs8`.
pub fn csr_der(domain: &str, key_pkcs8: &[u8]) -> Result<Vec<u8>, X509Error> {
    if domain.is_empty() || !domain.is_ascii() {
        return Err(X509Error("CSR: the name must be non-empty ASCII".into()));
    }
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key_pkcs8, &rng)
        .map_err(|e| X509Error(format!("CSR: not a P-256 PKCS#8 key ({e})")))?;
    let algorithm = tlv(SEQUENCE, &[&tlv(OID, &[OID_EC_PUBLIC_KEY]), &tlv(OID, &[OID_P256])]);
    let spki = tlv(SEQUENCE, &[&algorithm, &tlv(BIT_STRING, &[&[0], key.public_key().as_ref()])]);
    // RFC 5280's upper bound for a CN; a longer name goes in the SAN only (CAs refuse the CSR).
    let subject = if domain.len() <= COMMON_NAME_MAX {
        let cn = tlv(SEQUENCE, &[&tlv(OID, &[OID_COMMON_NAME]), &tlv(UTF8_STRING, &[domain.as_bytes()])]);
        tlv(SEQUENCE, &[&tlv(SET, &[&cn])])
    } else {
        tlv(SEQUENCE, &[])
    };
    let names = tlv(SEQUENCE, &[&tlv(DNS_NAME, &[domain.as_bytes()])]);
    let san = tlv(SEQUENCE, &[&tlv(OID, &[OID_SUBJECT_ALT_NAME]), &tlv(OCTET_STRING, &[&names])]);
    let request =
        tlv(SEQUENCE, &[&tlv(OID, &[OID_EXTENSION_REQUEST]), &tlv(SET, &[&tlv(SEQUENCE, &[&san])])]);
    let info = tlv(SEQUENCE, &[&tlv(INTEGER, &[&[0]]), &subject, &spki, &tlv(CSR_ATTRIBUTES, &[&request])]);
    let signature = key.sign(&rng, &info).map_err(|_| X509Error("CSR: signing failed".into()))?;
    let signature_algorithm = tlv(SEQUENCE, &[&tlv(OID, &[OID_ECDSA_WITH_SHA256])]);
    Ok(tlv(SEQUENCE, &[&info, &signature_algorithm, &tlv(BIT_STRING, &[&[0], signature.as_ref()])]))
}

/// The status of a PEM chain and its key for `domain` at `now` (unix seconds). The chain is
/// verified as a TLS server certificate against `roots`, or, without roots, against its own last
/// certificate: like tailscaled, an unknown CA (Pebble, a private ACME server) is accepted, but
/// the chain must still be consistent and signed.
pub fn check(
    chain_pem: &[u8],
    key_pkcs8: &[u8],
    domain: &str,
    now: i64,
    roots: Option<&rustls::RootCertStore>,
) -> Checked {
    check_at(chain_pem, key_pkcs8, domain, Some(now), roots)
}

/// [`check`] at `now`, or, when `now` is `None` (our clock is not set, the date unknown), every
/// check but the validity period's: the chain is verified as of the leaf's `notBefore`, and a
/// certificate is never called expired or not yet valid on a guess of the date.
pub fn check_at(
    chain_pem: &[u8],
    key_pkcs8: &[u8],
    domain: &str,
    now: Option<i64>,
    roots: Option<&rustls::RootCertStore>,
) -> Checked {
    if chain_pem.iter().all(u8::is_ascii_whitespace) {
        return Checked { status: CertStatus::Missing, leaf: None };
    }
    let invalid = |why: String| Checked { status: CertStatus::Invalid(why), leaf: None };
    let chain = match read_chain(chain_pem) {
        Ok(chain) => chain,
        Err(e) => return invalid(e.0),
    };
    let leaf = match chain.first().map(|der| parse_leaf(der)) {
        Some(Ok(leaf)) => leaf,
        Some(Err(e)) => return invalid(format!("leaf certificate: {e}")),
        None => return invalid("no certificate in the PEM".into()),
    };
    let status = judge(&chain, &leaf, key_pkcs8, domain, now, roots);
    Checked { status, leaf: Some(leaf) }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix seconds, as certificates' times are shown.
pub fn rfc3339(unix: i64) -> String {
    clock::rfc3339(unix)
}

/// The checks of [`check`] after the leaf parsed, in the order their answers take precedence.
fn judge(
    chain: &[CertificateDer<'static>],
    leaf: &LeafInfo,
    key_pkcs8: &[u8],
    domain: &str,
    now: Option<i64>,
    roots: Option<&rustls::RootCertStore>,
) -> CertStatus {
    if let Err(why) = key_matches(key_pkcs8, &leaf.spki) {
        return CertStatus::Invalid(why);
    }
    if !leaf.dns_names.iter().any(|name| name_matches(name, domain)) {
        let names = leaf.dns_names.join(", ");
        return CertStatus::Invalid(format!("certificate is not for {domain} (its names: {names})"));
    }
    if let Some(now) = now {
        if now > leaf.not_after {
            return CertStatus::Expired;
        }
        if now < leaf.not_before {
            return CertStatus::Invalid("not yet valid".into());
        }
    }
    match verify_chain(chain, domain, now.unwrap_or(leaf.not_before), roots) {
        Ok(()) => CertStatus::Valid,
        Err(why) => CertStatus::Invalid(why),
    }
}

/// Every CERTIFICATE block of a PEM text, in order.
fn read_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, X509Error> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| X509Error(format!("certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(X509Error("no certificate in the PEM".into()));
    }
    Ok(chain)
}

/// Whether the private key's public half is the certificate's key. The reasons never quote
/// the key.
fn key_matches(key_pkcs8: &[u8], spki: &[u8]) -> Result<(), String> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8));
    // ECDSA only, the kind of key we make: the generic loader would link RSA and Ed25519
    // signing for a check that can only fail with them.
    let signing = rustls::crypto::ring::sign::any_ecdsa_type(&key)
        .map_err(|_| "private key: not a readable PKCS#8 ECDSA key".to_string())?;
    match signing.public_key() {
        Some(public) if public.as_ref() == spki => Ok(()),
        _ => Err("private key does not match certificate".into()),
    }
}

/// A SAN dNSName against the name asked for: equal ignoring ASCII case, or a wildcard `*.rest`
/// standing for exactly one non-empty label before `rest`.
fn name_matches(san: &str, domain: &str) -> bool {
    if san.eq_ignore_ascii_case(domain) {
        return true;
    }
    match (san.strip_prefix("*."), domain.split_once('.')) {
        (Some(rest), Some((label, domain_rest))) => {
            !label.is_empty() && !rest.is_empty() && rest.eq_ignore_ascii_case(domain_rest)
        }
        _ => false,
    }
}

/// webpki's path building and name check for a TLS server certificate.
fn verify_chain(
    chain: &[CertificateDer<'static>],
    domain: &str,
    now: i64,
    roots: Option<&rustls::RootCertStore>,
) -> Result<(), String> {
    let Some((leaf, rest)) = chain.split_first() else {
        return Err("no certificate in the PEM".into());
    };
    let end_entity = webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("leaf certificate: {e}"))?;
    let own_anchor;
    let (anchors, intermediates) = match roots {
        Some(store) => (&store.roots[..], rest),
        None => {
            let (last, middle) = chain.split_last().unwrap_or((leaf, &[]));
            let anchor = webpki::anchor_from_trusted_cert(last)
                .map_err(|e| format!("chain's last certificate: {e}"))?;
            own_anchor = [anchor];
            (&own_anchor[..], middle.get(1..).unwrap_or_default())
        }
    };
    let time = UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64));
    end_entity
        .verify_for_usage(
            crate::control::tls_crypto::SIGNATURE_ALGORITHMS.all,
            anchors,
            intermediates,
            time,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| format!("chain does not verify: {e}"))?;
    let name = ServerName::try_from(domain).map_err(|e| format!("{domain}: {e}"))?;
    end_entity.verify_is_valid_for_subject_name(&name).map_err(|e| format!("name does not verify: {e}"))
}

/// The first common name of a subject Name in a string type we read; `None` without one.
fn common_name(name: &[u8]) -> Result<Option<String>, X509Error> {
    let mut relative_names = Der::new(name);
    while !relative_names.is_empty() {
        let mut attributes = Der::new(relative_names.expect(SET, "subject RDN")?);
        while !attributes.is_empty() {
            let mut attribute = Der::new(attributes.expect(SEQUENCE, "subject attribute")?);
            let kind = attribute.expect(OID, "subject attribute type")?;
            let value = attribute.element("subject attribute value")?;
            attribute.finish("subject attribute")?;
            if kind != OID_COMMON_NAME {
                continue;
            }
            match value.tag {
                UTF8_STRING | PRINTABLE_STRING | IA5_STRING => {
                    let text = std::str::from_utf8(value.body)
                        .map_err(|_| X509Error("subject CN: not UTF-8".into()))?;
                    return Ok(Some(text.to_string()));
                }
                _ => {}
            }
        }
    }
    Ok(None)
}

/// The subjectAltName and authorityKeyIdentifier from a `[3]` extensions field.
fn read_extensions(explicit: &[u8], leaf: &mut LeafInfo) -> Result<(), X509Error> {
    let mut wrapper = Der::new(explicit);
    let mut extensions = Der::new(wrapper.expect(SEQUENCE, "extensions")?);
    wrapper.finish("extensions")?;
    let (mut seen_san, mut seen_aki) = (false, false);
    while !extensions.is_empty() {
        let mut extension = Der::new(extensions.expect(SEQUENCE, "extension")?);
        let id = extension.expect(OID, "extnID")?;
        extension.optional(BOOLEAN, "critical")?;
        let value = extension.expect(OCTET_STRING, "extnValue")?;
        extension.finish("extension")?;
        if id == OID_SUBJECT_ALT_NAME {
            if std::mem::replace(&mut seen_san, true) {
                return Err(X509Error("subjectAltName: twice".into()));
            }
            leaf.dns_names = dns_names(value)?;
        } else if id == OID_AUTHORITY_KEY_ID {
            if std::mem::replace(&mut seen_aki, true) {
                return Err(X509Error("authorityKeyIdentifier: twice".into()));
            }
            leaf.authority_key_id = key_identifier(value)?;
        }
    }
    Ok(())
}

/// The dNSName entries of a GeneralNames value; other kinds (IP, email, URI...) are skipped.
fn dns_names(value: &[u8]) -> Result<Vec<String>, X509Error> {
    let mut wrapper = Der::new(value);
    let mut names = Der::new(wrapper.expect(SEQUENCE, "subjectAltName")?);
    wrapper.finish("subjectAltName")?;
    let mut found = Vec::new();
    while !names.is_empty() {
        let name = names.element("subjectAltName entry")?;
        if name.tag == DNS_NAME {
            if !name.body.is_ascii() {
                return Err(X509Error("subjectAltName dNSName: not ASCII".into()));
            }
            found.push(String::from_utf8_lossy(name.body).into_owned());
        }
    }
    Ok(found)
}

/// The keyIdentifier of an AuthorityKeyIdentifier value, if it has one.
fn key_identifier(value: &[u8]) -> Result<Option<Vec<u8>>, X509Error> {
    let mut wrapper = Der::new(value);
    let mut fields = Der::new(wrapper.expect(SEQUENCE, "authorityKeyIdentifier")?);
    wrapper.finish("authorityKeyIdentifier")?;
    Ok(fields.optional(KEY_IDENTIFIER, "keyIdentifier")?.map(<[u8]>::to_vec))
}

/// A UTCTime `YYMMDDHHMMSSZ` (years 50-99 are 19xx, 00-49 are 20xx, RFC 5280 4.1.2.5.1) or a
/// GeneralizedTime `YYYYMMDDHHMMSSZ` as unix seconds; other forms are refused, as RFC 5280
/// requires of certificates.
fn time(element: Tlv<'_>) -> Result<i64, X509Error> {
    let bad = || X509Error("validity: not a YYMMDDHHMMSSZ UTCTime or YYYYMMDDHHMMSSZ GeneralizedTime".into());
    let body = element.body;
    let (year, rest) = match (element.tag, body.len()) {
        (UTC_TIME, 13) => {
            let yy = decimal(body.get(..2)).ok_or_else(bad)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, body.get(2..).ok_or_else(bad)?)
        }
        (GENERALIZED_TIME, 15) => (decimal(body.get(..4)).ok_or_else(bad)?, body.get(4..).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    let field = |at: usize| decimal(rest.get(at..at + 2)).ok_or_else(bad);
    let (month, day, hour, minute, second) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    let in_range = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !in_range || rest.get(10..) != Some(b"Z") {
        return Err(bad());
    }
    Ok(clock::days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// ASCII digits (at most 4 here) as a number; `None` for anything else or nothing.
fn decimal(digits: Option<&[u8]>) -> Option<i64> {
    let digits = digits.filter(|d| !d.is_empty())?;
    digits.iter().try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// One DER element: its tag, its contents, and its whole encoding (tag and length included).
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
    whole: &'a [u8],
}

/// Reads DER elements one after another from a byte string, checking every length against what
/// is left. Only the low tag numbers (0-30) that X.509 uses; lengths in DER's shortest form.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn element(&mut self, what: &str) -> Result<Tlv<'a>, X509Error> {
        let truncated = || X509Error(format!("{what}: truncated"));
        let input = self.rest;
        let (&tag, after_tag) = input.split_first().ok_or_else(truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(X509Error(format!("{what}: high tag number")));
        }
        let (&first, after_first) = after_tag.split_first().ok_or_else(truncated)?;
        let (len, after_len) = if first < 0x80 {
            (usize::from(first), after_first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return Err(X509Error(format!("{what}: unsupported length form")));
            }
            let bytes = after_first.get(..count).ok_or_else(truncated)?;
            let len = bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
            if bytes.first() == Some(&0) || len < 0x80 {
                return Err(X509Error(format!("{what}: length not in DER's shortest form")));
            }
            (len, after_first.get(count..).ok_or_else(truncated)?)
        };
        let body = after_len.get(..len).ok_or_else(truncated)?;
        let header = input.len() - after_len.len();
        let whole = input.get(..header + len).ok_or_else(truncated)?;
        self.rest = after_len.get(len..).ok_or_else(truncated)?;
        Ok(Tlv { tag, body, whole })
    }

    /// The contents of the next element, which must have `tag`.
    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], X509Error> {
        let element = self.element(what)?;
        if element.tag != tag {
            return Err(X509Error(format!("{what}: tag {:#04x}, expected {tag:#04x}", element.tag)));
        }
        Ok(element.body)
    }

    /// The contents of the next element if it has `tag`; nothing read otherwise.
    fn optional(&mut self, tag: u8, what: &str) -> Result<Option<&'a [u8]>, X509Error> {
        if self.rest.first() == Some(&tag) {
            self.expect(tag, what).map(Some)
        } else {
            Ok(None)
        }
    }

    fn finish(&self, what: &str) -> Result<(), X509Error> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(X509Error(format!("{what}: trailing bytes")))
        }
    }
}

/// One DER element from its contents' parts.
fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let significant = bytes.iter().skip_while(|&&b| b == 0).count();
        out.push(0x80 | significant as u8);
        out.extend_from_slice(&bytes[bytes.len() - significant..]);
    }
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

// DER tags (X.680 universal tags; context tags from RFC 5280 and RFC 2986).
const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
/// TBSCertificate `version [0] EXPLICIT`.
const VERSION: u8 = 0xa0;
const ISSUER_UNIQUE_ID: u8 = 0x81;
const SUBJECT_UNIQUE_ID: u8 = 0x82;
/// TBSCertificate `extensions [3] EXPLICIT`.
const EXTENSIONS: u8 = 0xa3;
/// GeneralName `dNSName [2] IMPLICIT IA5String`.
const DNS_NAME: u8 = 0x82;
/// AuthorityKeyIdentifier `keyIdentifier [0] IMPLICIT OCTET STRING`.
const KEY_IDENTIFIER: u8 = 0x80;
/// CertificationRequestInfo `attributes [0] IMPLICIT SET OF Attribute`.
const CSR_ATTRIBUTES: u8 = 0xa0;

// Object identifiers, content bytes.
/// 2.5.4.3
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// 2.5.29.17
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// 2.5.29.35
const OID_AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];
/// 1.2.840.10045.2.1
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7 (prime256v1)
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// 1.2.840.10045.4.3.2
const OID_ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// 1.2.840.113549.1.9.14 (PKCS #9 extensionRequest)
const OID_EXTENSION_REQUEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e];
/// RFC 5280's ub-common-name.
const COMMON_NAME_MAX: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    // Made by fixtures/gen.sh; the expected values below are what `openssl x509 -noout -text
    // -dates -serial` printed for them.
    const CA: &[u8] = include_bytes!("fixtures/ca.pem");
    const OTHER_CA: &[u8] = include_bytes!("fixtures/other-ca.pem");
    const LEAF: &[u8] = include_bytes!("fixtures/leaf.pem");
    const LEAF_2050: &[u8] = include_bytes!("fixtures/leaf-2050.pem");
    const EXPIRED: &[u8] = include_bytes!("fixtures/expired.pem");
    const OTHER_NAME: &[u8] = include_bytes!("fixtures/other-name.pem");
    const WILDCARD: &[u8] = include_bytes!("fixtures/wildcard.pem");
    const IP_SAN: &[u8] = include_bytes!("fixtures/ip-san.pem");
    const RSA: &[u8] = include_bytes!("fixtures/rsa.pem");
    /// The key of every EC leaf above.
    const LEAF_KEY: &[u8] = include_bytes!("fixtures/leaf.key.der");
    const OTHER_KEY: &[u8] = include_bytes!("fixtures/other.key.der");

    const DOMAIN: &str = "router.tail1234.ts.net";
    /// 2026-06-01T00:00:00Z: inside every fixture's validity but the expired leaf's.
    const NOW: i64 = 1_780_272_000;
    /// Jun  1 00:00:00 2025 GMT
    const LEAF_NOT_BEFORE: i64 = 1_748_736_000;
    /// Jun  1 12:00:00 2034 GMT
    const LEAF_NOT_AFTER: i64 = 2_032_776_000;
    /// The CA's subject key identifier, 73:23:63:D2:84:AF:BE:66:BF:07:87:6F:F4:05:77:22:49:A5:0D:54
    const CA_KEY_ID: [u8; 20] = [
        0x73, 0x23, 0x63, 0xd2, 0x84, 0xaf, 0xbe, 0x66, 0xbf, 0x07, 0x87, 0x6f, 0xf4, 0x05, 0x77, 0x22, 0x49,
        0xa5, 0x0d, 0x54,
    ];

    fn der(pem: &[u8]) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem).expect("fixture PEM").to_vec()
    }

    fn leaf_of(pem: &[u8]) -> LeafInfo {
        parse_leaf(&der(pem)).expect("fixture parses")
    }

    fn chain(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
    }

    fn status(chain_pem: &[u8], key: &[u8], domain: &str, now: i64) -> CertStatus {
        check(chain_pem, key, domain, now, None).status
    }

    #[test]
    fn reads_an_ec_leaf_as_openssl_does() {
        let leaf = leaf_of(LEAF);
        assert_eq!(leaf.not_before, LEAF_NOT_BEFORE);
        assert_eq!(leaf.not_after, LEAF_NOT_AFTER);
        assert_eq!(leaf.dns_names, [DOMAIN]);
        assert_eq!(leaf.common_name.as_deref(), Some(DOMAIN));
        // serial=D00DFEED01020304; its INTEGER carries a leading zero (the high bit is set).
        assert_eq!(leaf.serial, [0x00, 0xd0, 0x0d, 0xfe, 0xed, 0x01, 0x02, 0x03, 0x04]);
        assert_eq!(leaf.authority_key_id.as_deref(), Some(&CA_KEY_ID[..]));
        // `openssl x509 -noout -pubkey | openssl pkey -pubin -outform DER`
        let spki =
            hex("3059301306072a8648ce3d020106082a8648ce3d0301070342000453a10af496fd3ddbe25cdb7a386d82\
             7432010c5b368fe29a7e3e96b169391d8f5d8b17540e898497589327bf7b3419423491d56960ff4fca42\
             7938e00890acf1");
        assert_eq!(leaf.spki, spki);
    }

    #[test]
    fn reads_generalized_time_after_2049() {
        let leaf = leaf_of(LEAF_2050);
        assert_eq!(leaf.not_before, LEAF_NOT_BEFORE);
        // notAfter=Mar 15 08:09:10 2051 GMT (GENERALIZEDTIME :20510315080910Z)
        assert_eq!(leaf.not_after, 2_562_480_550);
        assert_eq!(rfc3339(leaf.not_after), "2051-03-15T08:09:10Z");
        assert_eq!(leaf.serial, [0x0a, 0x0b, 0x0c]);
    }

    #[test]
    fn reads_a_ca_without_san_or_authority_key_id() {
        let ca = leaf_of(CA);
        assert_eq!(ca.common_name.as_deref(), Some("tinytail test CA"));
        assert!(ca.dns_names.is_empty());
        assert_eq!(ca.authority_key_id, None);
        assert_eq!(ca.serial, [0x01]);
        // Jan  1 00:00:00 2025 GMT .. Jan  1 00:00:00 2035 GMT
        assert_eq!((ca.not_before, ca.not_after), (1_735_689_600, 2_051_222_400));
    }

    #[test]
    fn reads_an_rsa_leaf() {
        let leaf = leaf_of(RSA);
        assert_eq!(leaf.dns_names, ["rsa.example.com"]);
        assert_eq!(leaf.common_name.as_deref(), Some("rsa.example.com"));
        assert_eq!(leaf.serial, [0x07]);
        // RSA 2048: a 294-byte SPKI with the rsaEncryption algorithm and NULL parameters.
        assert_eq!(leaf.spki.len(), 294);
        assert!(leaf.spki.starts_with(&hex("30820122300d06092a864886f70d0101010500")));
    }

    #[test]
    fn skips_san_entries_that_are_not_dns_names() {
        // IP Address:192.0.2.1, email:admin@example.com, DNS:router.tail1234.ts.net,
        // URI:https://example.com/, DNS:lan.example
        assert_eq!(leaf_of(IP_SAN).dns_names, [DOMAIN, "lan.example"]);
    }

    #[test]
    fn reads_both_time_forms_and_refuses_others() {
        let at = |tag: u8, text: &str| time(Tlv { tag, body: text.as_bytes(), whole: &[] });
        assert_eq!(at(UTC_TIME, "700101000000Z"), Ok(0));
        assert_eq!(at(UTC_TIME, "491231235959Z"), Ok(2_524_607_999)); // 2049
        assert_eq!(at(UTC_TIME, "500101000000Z"), Ok(-631_152_000)); // 1950
        assert_eq!(at(UTC_TIME, "261204115353Z"), Ok(1_796_385_233));
        assert_eq!(at(GENERALIZED_TIME, "20261204115353Z"), Ok(1_796_385_233));
        assert_eq!(at(GENERALIZED_TIME, "20240229000000Z"), Ok(1_709_164_800));
        for (tag, text) in [
            (UTC_TIME, "2612041153Z"),
            (UTC_TIME, "261204115353+0100"),
            (UTC_TIME, "2612041153530"),
            (UTC_TIME, "261304115353Z"),
            (UTC_TIME, "260230115353Z"),
            (UTC_TIME, "261204245353Z"),
            (UTC_TIME, "26120411536 Z"),
            (UTC_TIME, "+61204115353Z"),
            (GENERALIZED_TIME, "20261204115353.5Z"),
            (GENERALIZED_TIME, "20230229000000Z"),
            (GENERALIZED_TIME, "261204115353Z"),
            (INTEGER, "261204115353Z"),
        ] {
            assert!(at(tag, text).is_err(), "{tag:#x} {text} was accepted");
        }
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(1_796_385_233), "2026-12-04T11:53:53Z");
        assert_eq!(rfc3339(LEAF_NOT_AFTER), "2034-06-01T12:00:00Z");
    }

    #[test]
    fn good_chain_is_valid_with_its_own_anchor_and_with_roots() {
        let good = chain(&[LEAF, CA]);
        let checked = check(&good, LEAF_KEY, DOMAIN, NOW, None);
        assert_eq!(checked.status, CertStatus::Valid);
        assert_eq!(checked.leaf, Some(leaf_of(LEAF)));

        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(der(CA))).expect("CA is a trust anchor");
        assert_eq!(check(&good, LEAF_KEY, DOMAIN, NOW, Some(&roots)).status, CertStatus::Valid);
        // With roots given, the chain need not carry the root.
        assert_eq!(check(LEAF, LEAF_KEY, DOMAIN, NOW, Some(&roots)).status, CertStatus::Valid);
        // Names compare without case.
        assert_eq!(status(&good, LEAF_KEY, "Router.Tail1234.TS.net", NOW), CertStatus::Valid);
    }

    #[test]
    fn wrong_key_is_invalid() {
        let checked = check(&chain(&[LEAF, CA]), OTHER_KEY, DOMAIN, NOW, None);
        assert_eq!(checked.status, CertStatus::Invalid("private key does not match certificate".into()));
        assert_eq!(checked.leaf, Some(leaf_of(LEAF)));
        let fresh = new_key_pkcs8().expect("key");
        assert_eq!(
            status(&chain(&[LEAF, CA]), &fresh, DOMAIN, NOW),
            CertStatus::Invalid("private key does not match certificate".into())
        );
        // An RSA leaf with our EC key, and a key that is no key.
        assert!(matches!(
            status(&chain(&[RSA, CA]), LEAF_KEY, "rsa.example.com", NOW),
            CertStatus::Invalid(_)
        ));
        let CertStatus::Invalid(why) = status(&chain(&[LEAF, CA]), b"not a key", DOMAIN, NOW) else {
            panic!("a broken key passed");
        };
        assert!(!why.contains("not a key"), "{why}");
    }

    #[test]
    fn wrong_name_is_invalid() {
        assert!(matches!(status(&chain(&[OTHER_NAME, CA]), LEAF_KEY, DOMAIN, NOW), CertStatus::Invalid(_)));
        assert!(matches!(
            status(&chain(&[LEAF, CA]), LEAF_KEY, "other.tail1234.ts.net", NOW),
            CertStatus::Invalid(_)
        ));
        // Prefix and suffix tricks.
        for domain in ["router.tail1234.ts.net.evil", "xrouter.tail1234.ts.net", "tail1234.ts.net"] {
            assert!(
                matches!(status(&chain(&[LEAF, CA]), LEAF_KEY, domain, NOW), CertStatus::Invalid(_)),
                "{domain}"
            );
        }
    }

    #[test]
    fn wildcard_stands_for_one_label() {
        let wildcard = chain(&[WILDCARD, CA]);
        assert_eq!(status(&wildcard, LEAF_KEY, DOMAIN, NOW), CertStatus::Valid);
        for domain in ["a.router.tail1234.ts.net", "tail1234.ts.net", ".tail1234.ts.net"] {
            assert!(matches!(status(&wildcard, LEAF_KEY, domain, NOW), CertStatus::Invalid(_)), "{domain}");
        }
        assert!(name_matches("*.example.com", "a.EXAMPLE.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.", "a."));
        assert!(!name_matches("a*.example.com", "ab.example.com"));
    }

    #[test]
    fn chain_from_an_unrelated_ca_is_invalid() {
        let CertStatus::Invalid(why) = status(&chain(&[LEAF, OTHER_CA]), LEAF_KEY, DOMAIN, NOW) else {
            panic!("a chain ending in an unrelated CA passed");
        };
        assert!(why.contains("UnknownIssuer"), "{why}");

        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(der(OTHER_CA))).expect("CA is a trust anchor");
        let checked = check(&chain(&[LEAF, CA]), LEAF_KEY, DOMAIN, NOW, Some(&roots));
        assert!(matches!(checked.status, CertStatus::Invalid(_)), "{:?}", checked.status);
        // A leaf alone is its own anchor, and it did not sign itself.
        assert!(matches!(status(LEAF, LEAF_KEY, DOMAIN, NOW), CertStatus::Invalid(_)));
    }

    #[test]
    fn expired_and_not_yet_valid() {
        let checked = check(&chain(&[EXPIRED, CA]), LEAF_KEY, DOMAIN, NOW, None);
        assert_eq!(checked.status, CertStatus::Expired);
        // notAfter=Apr  1 00:00:00 2025 GMT
        assert_eq!(checked.leaf.map(|l| l.not_after), Some(1_743_465_600));
        assert_eq!(status(&chain(&[LEAF, CA]), LEAF_KEY, DOMAIN, LEAF_NOT_AFTER + 1), CertStatus::Expired);
        assert_eq!(status(&chain(&[LEAF, CA]), LEAF_KEY, DOMAIN, LEAF_NOT_AFTER), CertStatus::Valid);
        assert_eq!(
            status(&chain(&[LEAF, CA]), LEAF_KEY, DOMAIN, LEAF_NOT_BEFORE - 1),
            CertStatus::Invalid("not yet valid".into())
        );
    }

    /// Our clock not set: the date is unknown, so neither "expired" nor "not yet valid" is
    /// decided (the certificate is kept and served); everything else is still checked.
    #[test]
    fn without_a_set_clock_validity_dates_are_not_judged() {
        let undated = |pem: &[u8], key: &[u8]| check_at(pem, key, DOMAIN, None, None).status;
        assert_eq!(undated(&chain(&[EXPIRED, CA]), LEAF_KEY), CertStatus::Valid);
        assert_eq!(undated(&chain(&[LEAF, CA]), LEAF_KEY), CertStatus::Valid);
        assert!(
            matches!(undated(&chain(&[LEAF, CA]), OTHER_KEY), CertStatus::Invalid(_)),
            "the key still counts"
        );
        assert!(
            matches!(undated(&chain(&[LEAF, OTHER_CA]), LEAF_KEY), CertStatus::Invalid(_)),
            "the chain still counts"
        );
    }

    #[test]
    fn missing_and_unreadable_chains() {
        assert_eq!(
            check(b"", LEAF_KEY, DOMAIN, NOW, None),
            Checked { status: CertStatus::Missing, leaf: None }
        );
        assert_eq!(status(b" \n", LEAF_KEY, DOMAIN, NOW), CertStatus::Missing);
        for bad in [
            &b"no PEM here"[..],
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\nMIIB",
        ] {
            let checked = check(bad, LEAF_KEY, DOMAIN, NOW, None);
            assert!(matches!(checked.status, CertStatus::Invalid(_)), "{:?}", checked.status);
            assert_eq!(checked.leaf, None);
        }
    }

    #[test]
    fn key_pem_reads_back() {
        let key = new_key_pkcs8().expect("key");
        let pem = key_pem(&key);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.ends_with("\n-----END PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|line| line.len() <= 64));
        let read = PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("PEM reads back");
        assert_eq!(read.secret_der(), &key[..]);
        let long = key_pem(&[7; 200]);
        assert_eq!(long.lines().nth(1).map(str::len), Some(64));
    }

    #[test]
    fn csr_verifies_with_openssl() {
        let key = new_key_pkcs8().expect("key");
        let csr = csr_der(DOMAIN, &key).expect("CSR");
        let path = std::env::temp_dir().join(format!("tinytail-x509-csr-{}.der", std::process::id()));
        std::fs::write(&path, &csr).expect("CSR written");
        let output = std::process::Command::new("openssl")
            .args(["req", "-inform", "DER", "-verify", "-noout", "-text", "-in"])
            .arg(&path)
            .output();
        let _ = std::fs::remove_file(&path);
        let Ok(output) = output else {
            println!("openssl is missing: CSR not checked against it");
            return;
        };
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{text}");
        assert!(
            text.contains("verify OK") || text.contains("Certificate request self-signature verify OK"),
            "{text}"
        );
        assert!(text.contains(&format!("CN = {DOMAIN}")), "{text}");
        assert!(text.contains(&format!("DNS:{DOMAIN}")), "{text}");
        assert!(text.contains("ecdsa-with-SHA256"), "{text}");
        assert!(text.contains("NIST CURVE: P-256"), "{text}");
    }

    #[test]
    fn csr_for_a_long_name_has_no_cn() {
        let key = new_key_pkcs8().expect("key");
        let long = format!("{}.tail1234.ts.net", "a".repeat(60));
        let csr = csr_der(&long, &key).expect("CSR");
        assert!(csr.windows(long.len()).filter(|w| *w == long.as_bytes()).count() == 1);
        assert!(csr_der("", &key).is_err());
        assert!(csr_der("ünicode.example", &key).is_err());
        let Err(e) = csr_der(DOMAIN, b"not a key") else { panic!("a broken key signed") };
        assert!(!e.to_string().contains("not a key"), "{e}");
    }

    #[test]
    fn der_lengths_are_checked() {
        assert!(Der::new(&[0x30, 0x81, 0x05]).element("x").is_err()); // long form, short value
        assert!(Der::new(&[0x30, 0x82, 0x00, 0x80]).element("x").is_err()); // leading zero
        assert!(Der::new(&[0x30, 0x80, 0x00, 0x00]).element("x").is_err()); // indefinite
        assert!(Der::new(&[0x30, 0x85, 1, 0, 0, 0, 0]).element("x").is_err()); // 5 length bytes
        assert!(Der::new(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).element("x").is_err()); // past the end
        assert!(Der::new(&[0x1f, 0x01, 0x00]).element("x").is_err()); // high tag number
        let long = tlv(OCTET_STRING, &[&[9; 300]]);
        let element = Der::new(&long).element("x").expect("tlv's own output");
        assert_eq!((element.tag, element.body.len(), element.whole.len()), (OCTET_STRING, 300, 304));
    }

    #[test]
    fn hostile_leaf_bytes_never_panic() {
        let good = der(LEAF);
        for end in 0..good.len() {
            assert!(parse_leaf(&good[..end]).is_err(), "truncated at {end} parsed");
        }
        let mut flipped = good.clone();
        for bit in 0..good.len().min(600) * 8 {
            flipped[bit / 8] ^= 1 << (bit % 8);
            let _ = parse_leaf(&flipped);
            flipped[bit / 8] ^= 1 << (bit % 8);
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(parse_leaf(&trailing).is_err());
    }
}
