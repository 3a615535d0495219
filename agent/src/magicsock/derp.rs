//! One DERP connection (protocol.md §5): TLS to the region's first reachable node, the HTTP
//! upgrade, the ServerKey/ClientInfo/ServerInfo login, then frames both ways until it breaks; it
//! reconnects on its own with backoff. Framing and the login boxes are core::derp's.
//!
//! Plain HTTP is used only with `TS_DEBUG_USE_DERP_HTTP=1` (tailscale's own test switch), and the
//! agent logs it at start.

use std::sync::Arc;
use std::time::Duration;

use tinytail_core::derp::{self, Frame};
use tinytail_core::key::NodePublic;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::control::{http1, transport, ControlError, ServerUrl};
use crate::log::log;
use crate::random;
use crate::tailcfg::{DerpNode, DerpRegion};

/// tailscale's switch for DERP over plain HTTP in tests (`derphttp_client.go`).
pub const PLAIN_HTTP_SWITCH: &str = "TS_DEBUG_USE_DERP_HTTP";
/// The client gives up on a silent server after this long (`derp_client.go` recvTimeout).
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Frames waiting to be written; more are dropped (WireGuard retransmits, disco retries).
pub const SEND_QUEUE: usize = 256;
const RECONNECT_BASE: Duration = Duration::from_millis(250);
const RECONNECT_CAP: Duration = Duration::from_secs(5);

/// What a DERP connection tells the engine.
pub enum DerpEvent {
    /// A packet from `src` (WireGuard or disco).
    Packet {
        region: u32,
        src: NodePublic,
        packet: Vec<u8>,
    },
    Connected {
        region: u32,
    },
    Disconnected {
        region: u32,
        why: String,
    },
}

/// The engine's handle on one region's connection.
pub struct DerpLink {
    pub region: u32,
    /// Whole frames to write (see [`derp::write_send_packet`]).
    pub frames: mpsc::Sender<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DerpLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Who we are to DERP servers.
#[derive(Clone)]
pub struct Identity {
    pub private: [u8; 32],
    pub public: NodePublic,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub plain_http: bool,
}

/// Starts a connection to `region` that keeps itself up until the link is dropped.
pub fn connect(region: DerpRegion, home: bool, id: Identity, events: mpsc::Sender<DerpEvent>) -> DerpLink {
    let (frames, rx) = mpsc::channel(SEND_QUEUE);
    let region_id = region.region_id;
    let task = crate::task::spawn(keep_connected(region, home, id, events, rx));
    DerpLink { region: region_id, frames, task }
}

async fn keep_connected(
    region: DerpRegion,
    home: bool,
    id: Identity,
    events: mpsc::Sender<DerpEvent>,
    mut outbound: mpsc::Receiver<Vec<u8>>,
) {
    let mut failures = 0u32;
    loop {
        let why = match session(&region, home, &id, &events, &mut outbound, &mut failures).await {
            Ok(()) => return, // the engine went away
            Err(e) => e,
        };
        let _ = events.send(DerpEvent::Disconnected { region: region.region_id, why: why.clone() }).await;
        if failures == 0 || failures.is_power_of_two() {
            log(&format!("derp {}: {why}", region.region_id));
        }
        failures = failures.saturating_add(1);
        let backoff = RECONNECT_BASE.saturating_mul(1 << failures.min(5)).min(RECONNECT_CAP);
        // Frames queued while down are stale by the time we are back.
        tokio::time::sleep(backoff).await;
        while outbound.try_recv().is_ok() {}
    }
}

/// One connection's life. `Ok` only when the engine dropped its end.
async fn session(
    region: &DerpRegion,
    home: bool,
    id: &Identity,
    events: &mpsc::Sender<DerpEvent>,
    outbound: &mut mpsc::Receiver<Vec<u8>>,
    failures: &mut u32,
) -> Result<(), String> {
    let (mut io, mut buf) = dial_any(region, id).await?;
    login(&mut io, &mut buf, id).await?;
    if home {
        let mut frame = [0u8; derp::HEADER_LEN + 1];
        let n =
            derp::write_frame(&mut frame, derp::kind::NOTE_PREFERRED, &[&[1]]).map_err(|e| e.to_string())?;
        io.write_all(&frame[..n]).await.map_err(|e| e.to_string())?;
    }
    *failures = 0;
    let _ = events.send(DerpEvent::Connected { region: region.region_id }).await;
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        // Handle every whole frame in the buffer first.
        while let Some((kind, len)) = derp::read_header(&buf).map_err(|e| e.to_string())? {
            if buf.len() < derp::HEADER_LEN + len {
                break;
            }
            let payload = &buf[derp::HEADER_LEN..derp::HEADER_LEN + len];
            match Frame::parse(kind, payload) {
                Ok(Frame::RecvPacket { src, packet }) => {
                    let event = DerpEvent::Packet { region: region.region_id, src, packet: packet.to_vec() };
                    if events.try_send(event).is_err() && events.is_closed() {
                        return Ok(());
                    }
                }
                Ok(Frame::Ping(data)) => {
                    let mut pong = [0u8; derp::HEADER_LEN + 8];
                    let n = derp::write_frame(&mut pong, derp::kind::PONG, &[&data])
                        .map_err(|e| e.to_string())?;
                    io.write_all(&pong[..n]).await.map_err(|e| e.to_string())?;
                }
                Ok(Frame::Health(text)) if !text.is_empty() => {
                    log(&format!(
                        "derp {}: server says: {}",
                        region.region_id,
                        String::from_utf8_lossy(text)
                    ));
                }
                Ok(Frame::Restarting { reconnect_in_ms, .. }) => {
                    return Err(format!("server restarting, back in {reconnect_in_ms} ms"));
                }
                // KeepAlive, PeerGone, PeerPresent, Pong and unknown frames need nothing from us.
                Ok(_) => {}
                Err(e) => return Err(format!("frame type {kind}: {e}")),
            }
            buf.drain(..derp::HEADER_LEN + len);
        }
        tokio::select! {
            read = tokio::time::timeout(READ_TIMEOUT, io.read(&mut chunk)) => {
                let n = read.map_err(|_| "no frame for 120 s".to_string())?.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("server closed the connection".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            frame = outbound.recv() => {
                let Some(frame) = frame else { return Ok(()) };
                io.write_all(&frame).await.map_err(|e| e.to_string())?;
            }
        }
    }
}

/// Dials the region's nodes in order; returns the upgraded stream and bytes read past the head.
async fn dial_any(region: &DerpRegion, id: &Identity) -> Result<(transport::BoxIo, Vec<u8>), String> {
    let mut last = format!("region {} has no nodes", region.region_id);
    for node in &region.nodes {
        match dial(node, id).await {
            Ok(ok) => return Ok(ok),
            Err(e) => last = format!("{}: {e}", node.host_name),
        }
    }
    Err(last)
}

async fn dial(node: &DerpNode, id: &Identity) -> Result<(transport::BoxIo, Vec<u8>), ControlError> {
    let (scheme, default_port) = if id.plain_http { ("http", 80) } else { ("https", 443) };
    let port = if node.derp_port == 0 { default_port } else { node.derp_port };
    let url = ServerUrl::parse(&format!("{scheme}://{}:{port}", node.host_name))?;
    // A node's IPv4 and IPv6 fields pin the addresses to dial, in that order (an IPv4-only or
    // IPv6-only WAN fails the other at once: no route); TLS still checks the host name.
    let pinned: Vec<&str> = [node.ipv4.as_str(), node.ipv6.as_str()]
        .into_iter()
        .filter(|a| !a.is_empty() && *a != "none")
        .collect();
    let (mut io, mut last) = (None, None);
    for address in pinned {
        match transport::dial_at(&url, Some(address), id.tls.as_ref()).await {
            Ok(ok) => {
                io = Some(ok);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut io = match (io, last) {
        (Some(io), _) => io,
        (None, Some(e)) => return Err(e),
        (None, None) => transport::dial_at(&url, None, id.tls.as_ref()).await?, // by name
    };
    let (head, rest) = http1::request(
        &mut io,
        "GET",
        &url.authority(),
        "/derp",
        &[("Upgrade", "DERP"), ("Connection", "Upgrade")],
    )
    .await?;
    if head.status != 101 {
        return Err(ControlError::Protocol(format!("DERP upgrade answered HTTP {}", head.status)));
    }
    Ok((io, rest))
}

/// ServerKey -> ClientInfo -> ServerInfo.
async fn login(io: &mut transport::BoxIo, buf: &mut Vec<u8>, id: &Identity) -> Result<(), String> {
    let (kind, payload) = read_frame(io, buf).await?;
    let server = match Frame::parse(kind, &payload).map_err(|e| e.to_string())? {
        Frame::ServerKey(key) => key,
        _ => return Err(format!("expected the server key, got frame type {kind}")),
    };
    let mut out = [0u8; 256];
    let n = derp::write_client_info(&mut out, &id.private, &id.public, &server, random::bytes24())
        .map_err(|e| e.to_string())?;
    io.write_all(&out[..n]).await.map_err(|e| e.to_string())?;
    let (kind, payload) = read_frame(io, buf).await?;
    match Frame::parse(kind, &payload).map_err(|e| e.to_string())? {
        Frame::ServerInfo(sealed) => {
            let mut json = vec![0u8; sealed.len()];
            derp::open_server_info(sealed, &id.private, &server, &mut json).map_err(|e| e.to_string())?;
        }
        _ => return Err(format!("expected server info, got frame type {kind}")),
    }
    Ok(())
}

/// Reads one whole frame (login only; the steady state reads in the session loop).
async fn read_frame(io: &mut transport::BoxIo, buf: &mut Vec<u8>) -> Result<(u8, Vec<u8>), String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((kind, len)) = derp::read_header(buf).map_err(|e| e.to_string())? {
            if buf.len() >= derp::HEADER_LEN + len {
                let payload = buf[derp::HEADER_LEN..derp::HEADER_LEN + len].to_vec();
                buf.drain(..derp::HEADER_LEN + len);
                return Ok((kind, payload));
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), io.read(&mut chunk))
            .await
            .map_err(|_| "login timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("server closed the connection during login".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
