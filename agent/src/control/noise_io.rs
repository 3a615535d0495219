//! From a URL to a byte stream that HTTP/2 can run on: key discovery, the upgrade, the Noise
//! handshake, and two small tasks that seal and open records (core::control::noise does the
//! crypto; here is only the I/O). The early payload is peeled off before h2 sees the stream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tinytail_core::control::frame::{self, EarlyPrefix, EARLY_PAYLOAD_PEEK};
use tinytail_core::control::noise::{
    Initiator, NoiseError, Opener, Sealer, HEADER_LEN, MAX_PLAINTEXT_LEN, MAX_RECORD_LEN,
};
use tinytail_core::control::CAPABILITY_VERSION;
use tinytail_core::key::{MachinePublic, PrivateKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

use super::http1::{self, HANDSHAKE_HEADER, KEY_RESPONSE_MAX, UPGRADE_PATH, UPGRADE_PROTOCOL};
use super::transport;
use super::{ControlError, ServerUrl};
use crate::tailcfg;

/// Bytes buffered between the record tasks and h2, per direction.
const PIPE_CAPACITY: usize = 64 << 10;
/// Server error messages are capped by the server below 64 KiB; we show at most this much.
const ERROR_TEXT_MAX: usize = 512;

/// Fetches the server's Noise public key (`GET /key?v=N`, protocol.md §1.1).
pub async fn fetch_server_key(
    url: &ServerUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<MachinePublic, ControlError> {
    let mut io = transport::dial(url, tls).await?;
    let path = format!("/key?v={CAPABILITY_VERSION}");
    let (head, rest) =
        http1::request(&mut io, "GET", &url.authority(), &path, &[("Connection", "close")]).await?;
    if head.status != 200 {
        return Err(ControlError::Protocol(format!(
            "GET {path} answered HTTP {}; is this a Tailscale control server?",
            head.status
        )));
    }
    let body = http1::read_body(&mut io, &head, rest, KEY_RESPONSE_MAX).await?;
    let key: tailcfg::KeyResponse = serde_json::from_slice(&body).map_err(|_| {
        ControlError::Protocol(format!("GET {path}: not a key response; is this a Tailscale control server?"))
    })?;
    let key = MachinePublic::parse(&key.public_key)
        .map_err(|e| ControlError::Protocol(format!("server key: {e}")))?;
    if key.is_zero() {
        return Err(ControlError::Protocol("control server is too old: it has no Noise key".into()));
    }
    Ok(key)
}

/// An established Noise channel: a plaintext byte stream plus what the server sent first.
pub struct NoiseChannel {
    pub stream: Replay<DuplexStream>,
    pub early: Option<tailcfg::EarlyNoise>,
}

/// Upgrades a fresh connection to Noise with our machine key.
pub async fn connect(
    url: &ServerUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
    server_key: &MachinePublic,
    machine_key: &PrivateKey,
) -> Result<NoiseChannel, ControlError> {
    let protocol = |e: NoiseError| ControlError::Protocol(format!("Noise handshake: {e}"));
    let (initiator, init) =
        Initiator::start(machine_key, server_key, crate::random::bytes32(), CAPABILITY_VERSION)
            .map_err(protocol)?;
    let mut io = transport::dial(url, tls).await?;
    let handshake = http1::base64(&init);
    let headers =
        [("Upgrade", UPGRADE_PROTOCOL), ("Connection", "upgrade"), (HANDSHAKE_HEADER, handshake.as_str())];
    let (head, leftover) = http1::request(&mut io, "POST", &url.authority(), UPGRADE_PATH, &headers).await?;
    if head.status != 101 {
        return Err(ControlError::Protocol(format!(
            "POST {UPGRADE_PATH} answered HTTP {} instead of 101",
            head.status
        )));
    }
    let mut reader = Buffered { io, pending: leftover };

    let mut header = [0u8; HEADER_LEN];
    reader.read_exact(&mut header).await?;
    let transport = match Initiator::response_len(&header) {
        Ok(len) => {
            let mut response = vec![0u8; len];
            response[..HEADER_LEN].copy_from_slice(&header);
            reader.read_exact(&mut response[HEADER_LEN..]).await?;
            initiator.finish(&response).map_err(protocol)?
        }
        Err(NoiseError::ServerError { len }) => {
            let mut text = vec![0u8; len.min(ERROR_TEXT_MAX)];
            reader.read_exact(&mut text).await?;
            let text: String = String::from_utf8_lossy(&text).chars().filter(|c| !c.is_control()).collect();
            return Err(ControlError::Refused(format!("Noise handshake: {text}")));
        }
        Err(e) => return Err(protocol(e)),
    };

    let (app, pipe) = tokio::io::duplex(PIPE_CAPACITY);
    let (pipe_read, pipe_write) = tokio::io::split(pipe);
    let Buffered { io, pending } = reader;
    let (net_read, net_write) = tokio::io::split(io);
    crate::task::spawn(pump_in(Buffered { io: net_read, pending }, transport.recv, pipe_write));
    crate::task::spawn(pump_out(pipe_read, transport.send, net_write));

    let mut app = app;
    let mut peek = [0u8; EARLY_PAYLOAD_PEEK];
    app.read_exact(&mut peek)
        .await
        .map_err(|e| ControlError::Protocol(format!("reading after handshake: {e}")))?;
    match frame::early_prefix(&peek).map_err(|e| ControlError::Protocol(e.to_string()))? {
        EarlyPrefix::Payload(len) => {
            let mut json = vec![0u8; len];
            app.read_exact(&mut json)
                .await
                .map_err(|e| ControlError::Protocol(format!("early payload: {e}")))?;
            let early = serde_json::from_slice(&json)
                .map_err(|e| ControlError::Protocol(format!("early payload: {e}")))?;
            Ok(NoiseChannel { stream: Replay { prefix: Vec::new(), inner: app }, early: Some(early) })
        }
        EarlyPrefix::Http2 => {
            Ok(NoiseChannel { stream: Replay { prefix: peek.to_vec(), inner: app }, early: None })
        }
    }
}

/// Network -> records -> plaintext to h2. Ends (closing the pipe, which h2 sees as EOF) on the
/// first error: a failed record kills the receive side (protocol.md §1.4).
async fn pump_in<R: AsyncRead + Unpin>(
    mut net: Buffered<R>,
    mut opener: Opener,
    mut pipe: tokio::io::WriteHalf<DuplexStream>,
) {
    let mut record = vec![0u8; MAX_RECORD_LEN];
    loop {
        let mut header = [0u8; HEADER_LEN];
        if net.read_exact(&mut header).await.is_err() {
            break;
        }
        let Ok(len) = Opener::record_len(&header) else { break };
        record[..HEADER_LEN].copy_from_slice(&header);
        if net.read_exact(&mut record[HEADER_LEN..len]).await.is_err() {
            break;
        }
        let Ok(plain) = opener.open(&mut record[..len]) else { break };
        if !plain.is_empty() && pipe.write_all(plain).await.is_err() {
            break;
        }
    }
    let _ = pipe.shutdown().await;
}

/// h2's bytes -> records -> network.
async fn pump_out<W: AsyncWrite + Unpin>(
    mut pipe: tokio::io::ReadHalf<DuplexStream>,
    mut sealer: Sealer,
    mut net: W,
) {
    let mut plain = vec![0u8; MAX_PLAINTEXT_LEN];
    let mut record = vec![0u8; MAX_RECORD_LEN];
    loop {
        let n = match pipe.read(&mut plain).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Ok(len) = sealer.seal(&plain[..n], &mut record) else { break };
        if net.write_all(&record[..len]).await.is_err() || net.flush().await.is_err() {
            break;
        }
    }
    let _ = net.shutdown().await;
}

/// A reader with bytes already read past the HTTP head.
struct Buffered<R> {
    io: R,
    pending: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Buffered<R> {
    async fn read_exact(&mut self, out: &mut [u8]) -> Result<(), ControlError> {
        let from_pending = self.pending.len().min(out.len());
        out[..from_pending].copy_from_slice(&self.pending[..from_pending]);
        self.pending.drain(..from_pending);
        self.io
            .read_exact(&mut out[from_pending..])
            .await
            .map(|_| ())
            .map_err(|e| ControlError::Unreachable(format!("control connection: {e}")))
    }
}

/// A stream that first yields `prefix` (bytes peeked for the early payload that turned out to be
/// HTTP/2), then reads from `inner`; writes go straight through.
pub struct Replay<S> {
    prefix: Vec<u8>,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.drain(..n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
