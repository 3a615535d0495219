//! The page over HTTPS on the tailnet (issue #15): while the node is Running with a tailnet IPv4
//! address and holds a certificate (`tinytail cert`), the page also listens on
//! `<tailnet IPv4>:443` with TLS; the LAN listener stays as configured. The port can be moved
//! with the environment variable `TINYTAIL_WEB_HTTPS_PORT` (tests, or a router that has 443
//! taken).
//!
//! - The certificate is picked per handshake from `Shared.certs.served` by the client's SNI (the
//!   only or first one when the client sends none, as for `https://100.x.y.z/`), so a renewed
//!   certificate is served to the next connection without closing the listener.
//! - A watcher on `agent.changed` binds when the address and a certificate are there, binds
//!   again when the address changes, and stops listening when the certificate goes or the node
//!   stops running. A bind error is logged once per address and retried every
//!   [`BIND_RETRY`] (the tunnel may get its address a moment after the map names it).
//! - A client has [`HANDSHAKE_TIMEOUT`] to finish its TLS handshake, then the LAN listener's
//!   timeouts; connections count against the same limit as the LAN listener's.
//! - Requests must name the certificate's domain or the tailnet address in `Host`
//!   ([`super::host::allowed_tailnet`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::{serve_connection, Via, Web, WebConfig};
use crate::log::log;
use crate::shared::{Agent, Backend, Shared};

/// The HTTPS port, unless [`PORT_ENV`] says otherwise.
pub const DEFAULT_PORT: u16 = 443;
/// Moves the HTTPS listener to another port (tests; a router whose 443 is taken).
pub const PORT_ENV: &str = "TINYTAIL_WEB_HTTPS_PORT";
/// A client has this long to finish the TLS handshake, so nobody holds connections open for
/// free.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon a failed bind is tried again (while the address and a certificate are there).
const BIND_RETRY: Duration = Duration::from_secs(5);

/// The port from [`PORT_ENV`]'s value, if it is a port (not 0), else [`DEFAULT_PORT`].
pub fn port_from_env(value: Option<&str>) -> u16 {
    value.and_then(|v| v.trim().parse::<u16>().ok()).filter(|p| *p != 0).unwrap_or(DEFAULT_PORT)
}

/// Where the HTTPS listener should be now: the tailnet IPv4 address at `port` while the node
/// is Running and has a certificate to serve, else nowhere.
fn wanted(s: &Shared, port: u16) -> Option<SocketAddr> {
    if s.backend != Backend::Running || s.certs.served.is_empty() {
        return None;
    }
    let node = s.netmap.self_node.as_ref()?;
    let ip = node.addresses.iter().map(|p| p.addr).find(IpAddr::is_ipv4)?;
    Some(SocketAddr::new(ip, port))
}

/// Starts the watcher that keeps the HTTPS listener where [`wanted`] says. `slots` is the LAN
/// listener's connection limit, shared.
pub(super) fn start(web: Web, config: Arc<WebConfig>, slots: Arc<Semaphore>) {
    let port = port_from_env(std::env::var(PORT_ENV).ok().as_deref());
    if let Err(e) = watch(web, config, slots, port) {
        log(&format!("web: HTTPS disabled: {e}"));
    }
}

/// The watcher of [`start`], on `port`.
fn watch(
    web: Web,
    config: Arc<WebConfig>,
    slots: Arc<Semaphore>,
    port: u16,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let acceptor = TlsAcceptor::from(server_config(web.node.clone())?);
    Ok(crate::task::spawn(async move {
        let mut changed = web.node.changed.subscribe();
        // The listener's address and its accept task (aborted when dropped).
        let mut serving: Option<(SocketAddr, AbortOnDrop)> = None;
        // The address whose bind error was logged, so a retry does not log it again.
        let mut refused: Option<SocketAddr> = None;
        loop {
            let want = wanted(&web.node.lock(), port);
            if serving.as_ref().map(|(addr, _)| *addr) != want {
                if let Some((addr, _)) = serving.take() {
                    log(&format!("web: stopped listening for HTTPS on {addr}"));
                }
                if let Some(addr) = want {
                    match bind(addr) {
                        Ok(listener) => {
                            log(&format!("web: page also at https://{addr}/ (tailnet)"));
                            refused = None;
                            let task = crate::task::spawn(serve(
                                web.clone(),
                                Arc::clone(&config),
                                listener,
                                acceptor.clone(),
                                Arc::clone(&slots),
                                HANDSHAKE_TIMEOUT,
                            ));
                            serving = Some((addr, AbortOnDrop(task)));
                        }
                        Err(e) if refused != Some(addr) => {
                            log(&format!(
                                "web: cannot listen for HTTPS on {addr}: {e} (trying again every {}s)",
                                BIND_RETRY.as_secs()
                            ));
                            refused = Some(addr);
                        }
                        Err(_) => {}
                    }
                }
            }
            let retry = want.is_some() && serving.is_none();
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                () = tokio::time::sleep(BIND_RETRY), if retry => {}
            }
        }
    }))
}

/// Aborts the task when dropped: the listener closes with it (connections in flight finish).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// The server side of rustls over our provider (control::tls_crypto), with the certificate picked per handshake
/// from the agent's book, and HTTP/1.1 as the only ALPN protocol.
fn server_config(agent: Agent) -> Result<Arc<ServerConfig>, String> {
    // Keys reach rustls as signers already (the resolver's CertifiedKey), so the provider
    // loads none (control::tls_crypto): ring's generic loader stays out of the binary.
    let provider = crate::control::tls_crypto::provider();
    // The agent's clock (crate::clock) for whatever rustls times on our side (ticket ages).
    let mut config = ServerConfig::builder_with_details(provider, Arc::new(crate::clock::Clock))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Served { agent }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the page with TLS on `listener` until the task is aborted. Each connection has
/// `handshake` for its TLS handshake, then [`serve_connection`]'s timeouts.
async fn serve(
    web: Web,
    config: Arc<WebConfig>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    slots: Arc<Semaphore>,
    handshake: Duration,
) {
    let via = match listener.local_addr() {
        Ok(addr) => Via::Tailnet(addr.ip()),
        Err(e) => {
            log(&format!("web: HTTPS listener: {e}"));
            return;
        }
    };
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log(&format!("web: HTTPS accept: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (web, config, acceptor) = (web.clone(), Arc::clone(&config), acceptor.clone());
        crate::task::spawn(async move {
            if let Ok(Ok(tls)) = tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                serve_connection(&web, &config, tls, peer, via).await;
            }
            drop(permit);
        });
    }
}

/// Picks the certificate for each handshake from the agent's book (locked briefly).
struct Served {
    agent: Agent,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Served")
    }
}

impl ResolvesServerCert for Served {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        pick(&self.agent.lock().certs.served, hello.server_name())
    }
}

/// The certificate for a client's SNI: the name's own, else a `*.parent` one covering it; with
/// no SNI (a client that dialled the address) the first. `None` for a name we have nothing for
/// (the handshake fails: better than a certificate for another name).
fn pick(served: &BTreeMap<String, Arc<CertifiedKey>>, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
    let Some(name) = sni else { return served.values().next().cloned() };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    served
        .get(&name)
        .or_else(|| name.split_once('.').and_then(|(_, parent)| served.get(&format!("*.{parent}"))))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;

    use crate::web::{host, Asset, WebState};

    /// Self-signed EC P-256 certificates for `router.tail1234.ts.net` with their keys (PKCS#8
    /// DER), made once with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256
    /// -nodes -days 36500 -subj /CN=router.tail1234.ts.net -addext
    /// subjectAltName=DNS:router.tail1234.ts.net` and `openssl pkcs8 -topk8 -nocrypt -outform
    /// DER`. Test keys only.
    const CERT1: &[u8] = include_bytes!("fixtures/https_cert1.pem");
    const KEY1: &[u8] = include_bytes!("fixtures/https_key1.pk8");
    const CERT2: &[u8] = include_bytes!("fixtures/https_cert2.pem");
    const KEY2: &[u8] = include_bytes!("fixtures/https_key2.pk8");
    const NAME: &str = "router.tail1234.ts.net";
    /// Short, so the test of a silent client does not wait 10 s.
    const TEST_HANDSHAKE: Duration = Duration::from_millis(300);

    fn der(pem: &[u8]) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem).unwrap().to_vec()
    }

    /// Trusts exactly the given certificates (our fixtures are self-signed, so no CA path),
    /// with the handshake signatures checked by ring as usual.
    #[derive(Debug)]
    struct Pinned(Vec<Vec<u8>>);

    impl ServerCertVerifier for Pinned {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            if self.0.iter().any(|c| c.as_slice() == end_entity.as_ref()) {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General("not a pinned certificate".into()))
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
            rustls::crypto::verify_tls12_signature(message, cert, dss, &algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
            rustls::crypto::verify_tls13_signature(message, cert, dss, &algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
        }
    }

    fn connector(sni: bool) -> TlsConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned(vec![der(CERT1), der(CERT2)])))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.enable_sni = sni;
        TlsConnector::from(Arc::new(config))
    }

    /// `GET /` with `host` over TLS: the reply's status line and the certificate the server
    /// showed (DER).
    async fn get(addr: SocketAddr, host: &str, sni: bool) -> (String, Vec<u8>) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from(NAME.to_string()).unwrap();
        let mut tls = connector(sni).connect(name, tcp).await.unwrap();
        let (_, session) = tls.get_ref();
        assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
        let shown = session.peer_certificates().unwrap()[0].to_vec();
        tls.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut reply = Vec::new();
        let _ = tls.read_to_end(&mut reply).await;
        let text = String::from_utf8_lossy(&reply);
        (text.lines().next().unwrap_or_default().to_string(), shown)
    }

    /// A page whose agent serves CERT1 for NAME, with the HTTPS loop on 127.0.0.1:0.
    async fn https_page(dir: &std::path::Path) -> (Web, SocketAddr, tokio::task::JoinHandle<()>) {
        let agent = crate::shared::agent_in(dir, Default::default()).unwrap();
        agent.lock().certs.served.insert(NAME.into(), crate::cert::served_key(CERT1, KEY1).unwrap());
        let web = Web { node: agent.clone(), state: Arc::new(WebState::default()) };
        let config = Arc::new(WebConfig {
            listen: "192.0.2.1:8088".parse().unwrap(),
            assets: &[Asset { path: "/style.css", content_type: "text/css", gzip: &[] }],
            lan_interface: "lan0".into(),
            wan_interface: "wan0".into(),
            listen_any: false,
            host_names: host::default_names("gw", &[]),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(server_config(agent).unwrap());
        let slots = Arc::new(Semaphore::new(super::super::MAX_CONNECTIONS));
        let task = crate::task::spawn(serve(web.clone(), config, listener, acceptor, slots, TEST_HANDSHAKE));
        (web, addr, task)
    }

    #[test]
    fn the_page_over_tls_answers_its_names_and_serves_a_renewed_certificate() {
        let dir = std::env::temp_dir().join(format!("tinytail-web-https-{}", std::process::id()));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (web, addr, task) = https_page(&dir).await;
            // The certificate's name: the page (the first-run setup form, no password yet).
            let (status, shown) = get(addr, NAME, true).await;
            assert_eq!(status, "HTTP/1.1 200 OK");
            assert_eq!(shown, der(CERT1));
            // The tailnet address (here the loopback the test listens on), by a client that
            // sends no SNI: the only certificate.
            let (status, shown) = get(addr, &addr.to_string(), false).await;
            assert_eq!(status, "HTTP/1.1 200 OK");
            assert_eq!(shown, der(CERT1));
            // Another name (DNS rebinding), or the LAN's names: refused as on the LAN.
            for host in ["evil.example", "gw.lan", "192.0.2.1:8088"] {
                let (status, _) = get(addr, host, true).await;
                assert_eq!(status, "HTTP/1.1 403 Forbidden", "{host}");
            }
            // Renewal: the next handshake gets the new certificate, same listener.
            web.node.lock().certs.served.insert(NAME.into(), crate::cert::served_key(CERT2, KEY2).unwrap());
            let (status, shown) = get(addr, NAME, true).await;
            assert_eq!(status, "HTTP/1.1 200 OK");
            assert_eq!(shown, der(CERT2));
            assert!(!task.is_finished());
            // An SNI we have no certificate for: the handshake fails, the listener goes on.
            let tcp = TcpStream::connect(addr).await.unwrap();
            let other = ServerName::try_from("other.example".to_string()).unwrap();
            assert!(connector(true).connect(other, tcp).await.is_err());
            // A client that sends nothing, or plain HTTP, is dropped within the handshake time.
            for garbage in [&b""[..], b"GET / HTTP/1.1\r\nHost: router.tail1234.ts.net\r\n\r\n", &[0x16; 5]] {
                let mut tcp = TcpStream::connect(addr).await.unwrap();
                tcp.write_all(garbage).await.unwrap();
                let mut sink = Vec::new();
                let closed = tokio::time::timeout(TEST_HANDSHAKE * 5, tcp.read_to_end(&mut sink)).await;
                assert!(closed.is_ok(), "{garbage:?}: still open");
            }
            let (status, _) = get(addr, NAME, true).await;
            assert_eq!(status, "HTTP/1.1 200 OK", "the listener still serves");
            task.abort();
        });
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Whether the HTTPS listener answers at `addr` within a second: `want` is what the caller
    /// waits for.
    async fn wait_listening(addr: SocketAddr, want: bool) -> bool {
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_ok() == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[test]
    fn the_watcher_listens_while_running_with_a_certificate_and_stops_without() {
        let dir = std::env::temp_dir().join(format!("tinytail-web-https-watch-{}", std::process::id()));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (web, _, task) = https_page(&dir).await;
            task.abort();
            let agent = web.node.clone();
            agent.lock().certs.served.clear();
            // A free port on the loopback, standing in for the tailnet address.
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            {
                let mut s = agent.lock();
                s.backend = Backend::Running;
                s.netmap.self_node = Some(crate::netmap::Node {
                    addresses: vec![crate::prefix::Prefix::parse("127.0.0.1/32").unwrap()],
                    ..Default::default()
                });
            }
            let config = Arc::new(WebConfig {
                listen: "192.0.2.1:8088".parse().unwrap(),
                assets: &[],
                lan_interface: "lan0".into(),
                wan_interface: "wan0".into(),
                listen_any: false,
                host_names: Vec::new(),
            });
            let slots = Arc::new(Semaphore::new(super::super::MAX_CONNECTIONS));
            let watcher = watch(web.clone(), config, slots, port).unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await; // the watcher's first look
            assert!(wait_listening(addr, false).await, "no certificate, no listener");
            agent.lock().certs.served.insert(NAME.into(), crate::cert::served_key(CERT1, KEY1).unwrap());
            agent.notify();
            assert!(wait_listening(addr, true).await, "a certificate: listening");
            let (status, shown) = get(addr, NAME, true).await;
            assert_eq!((status.as_str(), shown), ("HTTP/1.1 200 OK", der(CERT1)));
            agent.lock().backend = Backend::Stopped;
            agent.notify();
            assert!(wait_listening(addr, false).await, "stopped: not listening");
            agent.lock().backend = Backend::Running;
            agent.notify();
            assert!(wait_listening(addr, true).await, "running again");
            agent.lock().certs.served.clear();
            agent.notify();
            assert!(wait_listening(addr, false).await, "certificate gone: not listening");
            watcher.abort();
        });
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_listener_is_wanted_only_while_running_with_a_certificate_and_an_ipv4() {
        let dir = std::env::temp_dir().join(format!("tinytail-web-https-wanted-{}", std::process::id()));
        let agent = crate::shared::agent_in(&dir, Default::default()).unwrap();
        let mut s = agent.lock();
        s.netmap.self_node = Some(crate::netmap::Node {
            addresses: vec![
                crate::prefix::Prefix::parse("fd7a:115c:a1e0::3/128").unwrap(),
                crate::prefix::Prefix::parse("100.64.0.3/32").unwrap(),
            ],
            ..Default::default()
        });
        s.backend = Backend::Running;
        assert_eq!(wanted(&s, 443), None, "no certificate");
        s.certs.served.insert(NAME.into(), crate::cert::served_key(CERT1, KEY1).unwrap());
        assert_eq!(wanted(&s, 443), Some("100.64.0.3:443".parse().unwrap()));
        assert_eq!(wanted(&s, 8443), Some("100.64.0.3:8443".parse().unwrap()));
        s.backend = Backend::Stopped;
        assert_eq!(wanted(&s, 443), None, "not running");
        s.backend = Backend::Running;
        s.netmap.self_node = None;
        assert_eq!(wanted(&s, 443), None, "no address");
        drop(s);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_port_can_be_moved_by_the_environment() {
        assert_eq!(port_from_env(None), 443);
        assert_eq!(port_from_env(Some("8443")), 8443);
        for bad in ["", "0", "x", "70000", "-1"] {
            assert_eq!(port_from_env(Some(bad)), 443, "{bad}");
        }
    }

    #[test]
    fn certificates_are_picked_by_sni() {
        let one = crate::cert::served_key(CERT1, KEY1).unwrap();
        let two = crate::cert::served_key(CERT2, KEY2).unwrap();
        let served = BTreeMap::from([
            (NAME.to_string(), Arc::clone(&one)),
            ("*.svc.ts.net".to_string(), Arc::clone(&two)),
        ]);
        let is = |got: Option<Arc<CertifiedKey>>, want: &Arc<CertifiedKey>| {
            got.is_some_and(|g| Arc::ptr_eq(&g, want))
        };
        assert!(is(pick(&served, Some(NAME)), &one));
        assert!(is(pick(&served, Some("ROUTER.tail1234.ts.net.")), &one));
        assert!(is(pick(&served, Some("web.svc.ts.net")), &two));
        assert!(pick(&served, Some("a.web.svc.ts.net")).is_none());
        assert!(pick(&served, Some("other.example")).is_none());
        assert!(pick(&served, None).is_some(), "no SNI: the first");
        assert!(pick(&BTreeMap::new(), None).is_none());
    }
}
