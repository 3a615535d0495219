//! One control connection: HTTP/2 over the Noise channel, with `/machine/register` and the
//! `/machine/map` stream on it (protocol.md §1.5-3.2).

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::RecvStream;
use tinytail_core::control::frame;
use tinytail_core::key::{MachinePublic, PrivateKey};

use super::{noise_io, ControlError, ServerUrl};
use crate::tailcfg::{MapRequest, MapResponse, RegisterRequest, RegisterResponse};

/// The register response is read with a 1 MiB cap (`direct.go` `decode`).
const REGISTER_RESPONSE_MAX: usize = 1 << 20;
/// tailscaled kills a map poll after this long without any message (`direct.go` `watchdogTimeout`).
pub const MAP_WATCHDOG: Duration = Duration::from_secs(120);
/// Cap on one decompressed map response.
const MAP_DECODED_MAX: u64 = 16 << 20;
/// Cap on a `/machine/tka/*` answer (tailscaled reads at most 10 MiB of a sync).
const TKA_RESPONSE_MAX: usize = 10 << 20;
/// Cap on a small JSON reply (set-dns answers `{}`).
const SMALL_RESPONSE_MAX: usize = 64 << 10;
/// When set, every map message is logged in full (development only: it holds the whole netmap).
const DEBUG_MAP_ENV: &str = "TINYTAIL_DEBUG_MAP";
/// A PingRequest's HEAD times out after this long (`direct.go` `answerPing`).
pub const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// An open control session.
#[derive(Clone)]
pub struct Session {
    send: SendRequest<Bytes>,
    authority: String,
}

impl Session {
    /// Dials, upgrades, runs the Noise handshake and starts HTTP/2 on top.
    pub async fn open(
        url: &ServerUrl,
        tls: Option<&Arc<rustls::ClientConfig>>,
        server_key: &MachinePublic,
        machine_key: &PrivateKey,
    ) -> Result<Session, ControlError> {
        let channel = noise_io::connect(url, tls, server_key, machine_key).await?;
        let (send, connection) = h2::client::handshake(channel.stream)
            .await
            .map_err(|e| ControlError::Protocol(format!("HTTP/2 over Noise: {e}")))?;
        crate::task::spawn(async move {
            let _ = connection.await;
        });
        Ok(Session { send, authority: url.authority() })
    }

    /// `POST /machine/register`.
    pub async fn register(&self, req: &RegisterRequest<'_>) -> Result<RegisterResponse, ControlError> {
        let body = serde_json::to_vec(req).map_err(|e| ControlError::Protocol(e.to_string()))?;
        let (status, mut recv) = self.post("/machine/register", body).await?;
        let bytes = read_all(&mut recv, REGISTER_RESPONSE_MAX).await?;
        if status != 200 {
            return Err(ControlError::Refused(format!("register: HTTP {status}: {}", one_line(&bytes))));
        }
        let resp: RegisterResponse = serde_json::from_slice(&bytes)
            .map_err(|e| ControlError::Protocol(format!("register response: {e}")))?;
        if !resp.error.is_empty() {
            return Err(ControlError::Refused(format!("register: {}", one_line(resp.error.as_bytes()))));
        }
        Ok(resp)
    }

    /// `POST /machine/map` with `Stream: true`: the long poll.
    pub async fn map_stream(&self, req: &MapRequest<'_>) -> Result<MapStream, ControlError> {
        let body = serde_json::to_vec(req).map_err(|e| ControlError::Protocol(e.to_string()))?;
        let (status, mut recv) = self.post("/machine/map", body).await?;
        if status != 200 {
            let bytes = read_all(&mut recv, REGISTER_RESPONSE_MAX).await.unwrap_or_default();
            return Err(ControlError::Refused(format!("map: HTTP {status}: {}", one_line(&bytes))));
        }
        Ok(MapStream { body: recv, buf: Vec::new(), compressed: req.compress == "zstd" })
    }

    /// A "lite" map update (`OmitPeers`, no stream): pushes Hostinfo without disturbing the poll.
    pub async fn lite_update(&self, req: &MapRequest<'_>) -> Result<(), ControlError> {
        let body = serde_json::to_vec(req).map_err(|e| ControlError::Protocol(e.to_string()))?;
        let (status, mut recv) = self.post("/machine/map", body).await?;
        let _ = read_all(&mut recv, REGISTER_RESPONSE_MAX).await;
        if status != 200 {
            return Err(ControlError::Refused(format!("map update: HTTP {status}")));
        }
        Ok(())
    }

    /// One `/machine/tka/<rpc>` call: a GET with a JSON body, as tailscaled sends them
    /// (lock-cert.md §A.1). A status other than 200 fails as tailscale words it.
    pub async fn tka<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        rpc: &str,
        req: &Req,
    ) -> Result<Resp, ControlError> {
        let body = serde_json::to_vec(req).map_err(|e| ControlError::Protocol(e.to_string()))?;
        let (status, mut recv) =
            self.send_with_body(http::Method::GET, &format!("/machine/tka/{rpc}"), body).await?;
        let bytes = read_all(&mut recv, TKA_RESPONSE_MAX).await?;
        if status != 200 {
            return Err(ControlError::Refused(format!("request returned ({status}): {}", one_line(&bytes))));
        }
        serde_json::from_slice(&bytes).map_err(|e| ControlError::Protocol(format!("tka {rpc} response: {e}")))
    }

    /// HEAD over Noise, to answer a PingRequest with `URLIsNoise`.
    pub async fn head(&self, url: &str) -> Result<u16, ControlError> {
        let req = http::Request::builder()
            .method(http::Method::HEAD)
            .uri(url)
            .body(())
            .map_err(|e| ControlError::Protocol(format!("ping URL: {e}")))?;
        let mut send = self.send.clone().ready().await.map_err(h2_error)?;
        let (response, _) = send.send_request(req, true).map_err(h2_error)?;
        let response = response.await.map_err(h2_error)?;
        Ok(response.status().as_u16())
    }

    /// `POST /machine/set-dns`: control publishes our ACME DNS-01 TXT record. Returns the
    /// status and (up to 200 bytes of) the reply, for the caller to word.
    pub async fn set_dns(&self, req: &crate::tailcfg::SetDnsRequest) -> Result<(u16, String), ControlError> {
        let body = serde_json::to_vec(req).map_err(|e| ControlError::Protocol(e.to_string()))?;
        let (status, mut recv) = self.post("/machine/set-dns", body).await?;
        let bytes = read_all(&mut recv, SMALL_RESPONSE_MAX).await?;
        Ok((status, one_line(&bytes)))
    }

    /// POSTs `body` to a URL control gave us (a c2n reply), over Noise. Returns the status.
    pub async fn post_to_url(&self, url: &str, body: Vec<u8>) -> Result<u16, ControlError> {
        let (status, _) = self.send_to(http::Method::POST, url.to_string(), body).await?;
        Ok(status)
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> Result<(u16, RecvStream), ControlError> {
        self.send_with_body(http::Method::POST, path, body).await
    }

    async fn send_with_body(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, RecvStream), ControlError> {
        self.send_to(method, format!("https://{}{path}", self.authority), body).await
    }

    /// One request with a body to a full URI over the Noise channel: status and body stream.
    async fn send_to(
        &self,
        method: http::Method,
        uri: String,
        body: Vec<u8>,
    ) -> Result<(u16, RecvStream), ControlError> {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .map_err(|e| ControlError::Protocol(e.to_string()))?;
        let mut send = self.send.clone().ready().await.map_err(h2_error)?;
        let (response, mut stream) = send.send_request(req, false).map_err(h2_error)?;
        stream.send_data(Bytes::from(body), true).map_err(h2_error)?;
        let response = response.await.map_err(h2_error)?;
        let status = response.status().as_u16();
        Ok((status, response.into_body()))
    }
}

/// The body of a streaming map poll: length-prefixed, optionally zstd-compressed JSON messages.
pub struct MapStream {
    body: RecvStream,
    buf: Vec<u8>,
    compressed: bool,
}

impl MapStream {
    /// The next map response (keep-alives included). Fails on EOF, a stream error, or
    /// [`MAP_WATCHDOG`] without any message.
    pub async fn next(&mut self) -> Result<MapResponse, ControlError> {
        loop {
            if let Some((message, used)) =
                frame::next_map_message(&self.buf).map_err(|e| ControlError::Protocol(e.to_string()))?
            {
                let json = if self.compressed { zstd_decode(message)? } else { message.to_vec() };
                self.buf.drain(..used);
                if std::env::var_os(DEBUG_MAP_ENV).is_some() {
                    crate::log::log(&format!("map message: {}", String::from_utf8_lossy(&json)));
                }
                return serde_json::from_slice(&json)
                    .map_err(|e| ControlError::Protocol(format!("map response: {e}")));
            }
            let chunk = tokio::time::timeout(MAP_WATCHDOG, self.body.data()).await.map_err(|_| {
                ControlError::Unreachable(format!("no map message for {}s", MAP_WATCHDOG.as_secs()))
            })?;
            let chunk = match chunk {
                Some(c) => c.map_err(h2_error)?,
                None => return Err(ControlError::Unreachable("control server ended the map stream".into())),
            };
            let _ = self.body.flow_control().release_capacity(chunk.len());
            self.buf.extend_from_slice(&chunk);
        }
    }
}

/// One zstd frame per message (protocol.md §3.2).
pub(crate) fn zstd_decode(frame: &[u8]) -> Result<Vec<u8>, ControlError> {
    let mut input = frame;
    let decoder = ruzstd::decoding::StreamingDecoder::new(&mut input)
        .map_err(|e| ControlError::Protocol(format!("zstd: {e}")))?;
    let mut out = Vec::new();
    decoder
        .take(MAP_DECODED_MAX + 1)
        .read_to_end(&mut out)
        .map_err(|e| ControlError::Protocol(format!("zstd: {e}")))?;
    if out.len() as u64 > MAP_DECODED_MAX {
        return Err(ControlError::Protocol("map response too large after decompression".into()));
    }
    Ok(out)
}

async fn read_all(body: &mut RecvStream, limit: usize) -> Result<Vec<u8>, ControlError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(h2_error)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if out.len() + chunk.len() > limit {
            return Err(ControlError::Protocol(format!("response larger than {limit} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn h2_error(e: h2::Error) -> ControlError {
    ControlError::Unreachable(format!("control connection: {e}"))
}

/// Server text, squeezed to one printable line of bounded length.
fn one_line(bytes: &[u8]) -> String {
    let text: String =
        String::from_utf8_lossy(bytes).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let text = text.trim();
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `printf '{"KeepAlive":true}\n' | zstd -19`: one frame (raw block, content checksum).
    const KEEPALIVE_ZSTD: &[u8] = &[
        0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x68, 0x99, 0x00, 0x00, 0x7b, 0x22, 0x4b, 0x65, 0x65, 0x70, 0x41, 0x6c,
        0x69, 0x76, 0x65, 0x22, 0x3a, 0x74, 0x72, 0x75, 0x65, 0x7d, 0x0a, 0xf3, 0x65, 0x32, 0x21,
    ];

    #[test]
    fn decodes_a_zstd_map_frame() {
        let json = zstd_decode(KEEPALIVE_ZSTD).unwrap();
        let resp: MapResponse = serde_json::from_slice(&json).unwrap();
        assert!(resp.keep_alive);
    }

    #[test]
    fn garbage_is_a_zstd_error_not_a_panic() {
        assert!(zstd_decode(b"not zstd at all").is_err());
        assert!(zstd_decode(&KEEPALIVE_ZSTD[..10]).is_err());
    }

    #[test]
    fn server_text_becomes_one_short_line() {
        assert_eq!(one_line(b"bad\nkey\r\n"), "bad key");
        assert_eq!(one_line(&[b'x'; 300]).chars().count(), 201);
    }
}
