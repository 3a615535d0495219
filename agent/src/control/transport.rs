//! Dialing the control server (and later DERP): TCP, then TLS with rustls when the URL says
//! `https://`. Trust comes from the board's CA bundle, or `SSL_CERT_FILE` when set, so a
//! self-hosted Headscale with a private CA works without code changes.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{ControlError, ServerUrl};
use crate::clock;

/// How long DNS + TCP + TLS may take (`ts:control/ts2021/client.go` uses 5 s + 5 s).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Environment variable that overrides the CA bundle, as in Go and OpenSSL.
const SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// A byte stream to the server, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type BoxIo = Box<dyn Io>;

/// The TLS client configuration: our provider (`tls_crypto`), trust from the CA bundle file.
pub fn tls_config(board_ca_bundle: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = root_store(board_ca_bundle)?;
    // Certificates are checked against the agent's clock (crate::clock), not rustls's own.
    let config =
        rustls::ClientConfig::builder_with_details(super::tls_crypto::provider(), Arc::new(clock::Clock))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The trusted roots: `SSL_CERT_FILE` when set, else the board's bundle.
pub fn root_store(board_ca_bundle: &str) -> Result<rustls::RootCertStore, String> {
    let path = std::env::var(SSL_CERT_FILE)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| board_ca_bundle.to_string());
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path).map_err(|e| format!("CA bundle {path}: {e}"))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("CA bundle {path}: {e}"))?;
        // A bundle may hold certificates webpki cannot use; skip those, as OpenSSL does.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("CA bundle {path} holds no usable certificate"));
    }
    Ok(roots)
}

/// A failed handshake in words. A certificate that is "not valid yet" while our clock is not set
/// (a router without a real-time clock before NTP) is our clock's fault, and said so, in the
/// same words every time (the log says it once, not per retry).
fn tls_error(e: &std::io::Error, now: i64) -> String {
    use rustls::CertificateError::{NotValidYet, NotValidYetContext};
    let not_valid_yet = matches!(
        e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(NotValidYet | NotValidYetContext { .. }))
    );
    if not_valid_yet && !clock::is_sane(now) {
        return format!(
            "the server's certificate is not valid yet by this router's clock ({})",
            clock::NOT_SET
        );
    }
    e.to_string()
}

/// We are a TLS client without a client certificate, so we never load a private key: refusing
/// them here keeps ring's key parsing and signing code (RSA, ECDSA, Ed25519) out of the binary
/// (-55 KB on mipsel). The HTTPS page's server uses it too: its keys come ready made from
/// `cert::served_key` (ECDSA only), never through the provider.
#[derive(Debug)]
pub(crate) struct NoPrivateKeys;

impl rustls::crypto::KeyProvider for NoPrivateKeys {
    fn load_private_key(
        &self,
        _key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        Err(rustls::Error::General("tinytail loads no private keys through rustls".into()))
    }
}

/// Connects to the server; TLS iff the URL is `https://`.
pub async fn dial(url: &ServerUrl, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<BoxIo, ControlError> {
    dial_at(url, None, tls).await
}

/// Like [`dial`], but connects to `address` when given (a DERP node's pinned IP) while TLS still
/// verifies the URL's host name.
pub async fn dial_at(
    url: &ServerUrl,
    address: Option<&str>,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<BoxIo, ControlError> {
    let unreachable = |e: String| ControlError::Unreachable(format!("{}: {e}", url.base()));
    let connect = async {
        let tcp = TcpStream::connect((address.unwrap_or(url.host.as_str()), url.port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        if !url.tls {
            return Ok(Box::new(tcp) as BoxIo);
        }
        let config = tls.ok_or_else(|| unreachable("no TLS configuration (CA bundle missing?)".into()))?;
        let name = ServerName::try_from(url.host.clone()).map_err(|e| unreachable(e.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(format!("TLS: {}", tls_error(&e, clock::unix_now()))))?;
        Ok(Box::new(stream) as BoxIo)
    };
    tokio::time::timeout(DIAL_TIMEOUT, connect)
        .await
        .map_err(|_| unreachable(format!("timed out after {}s", DIAL_TIMEOUT.as_secs())))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake_error(e: rustls::CertificateError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::InvalidCertificate(e))
    }

    #[test]
    fn a_certificate_not_valid_yet_is_blamed_on_a_clock_not_set() {
        let early = 1_546_300_800; // 2019
        let context = rustls::CertificateError::NotValidYetContext {
            time: rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(early as u64)),
            not_before: rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                1_790_000_000,
            )),
        };
        for e in [rustls::CertificateError::NotValidYet, context.clone()] {
            let said = tls_error(&handshake_error(e), early);
            assert_eq!(
                said,
                "the server's certificate is not valid yet by this router's clock (clock not set)"
            );
        }
        // With the clock set, the certificate is at fault: rustls's words.
        let said = tls_error(&handshake_error(context), clock::SANE_FLOOR);
        assert!(said.contains("certificate not valid yet") && !said.contains(clock::NOT_SET), "{said}");
        // Another failure while the clock is not set is that failure.
        let said = tls_error(&handshake_error(rustls::CertificateError::UnknownIssuer), early);
        assert!(!said.contains(clock::NOT_SET), "{said}");
    }
}
