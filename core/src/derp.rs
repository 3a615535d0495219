//! DERP framing (`ts:derp/derp.go`; protocol notes §5): after the HTTP upgrade, a stream of
//! frames, each `type (1) | length (4, big-endian) | payload`. Parsing borrows the payload;
//! building writes into a caller buffer. The login's ClientInfo/ServerInfo boxes use the node key
//! and the server's key with the same NaCl box as disco.

use crypto_box::aead::{generic_array::GenericArray, AeadInPlace};
use crypto_box::{PublicKey, SalsaBox, SecretKey};

use crate::key::{NodePublic, KEY_LEN};

pub const HEADER_LEN: usize = 5;
/// Largest frame a client accepts (`derp_client.go`).
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Largest packet carried in SendPacket/RecvPacket (`MaxPacketSize`).
pub const MAX_PACKET_LEN: usize = 64 << 10;
/// `"DERP🔑"`, first bytes of the ServerKey frame.
pub const SERVER_KEY_MAGIC: [u8; 8] = [0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91];
pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
pub const PROTOCOL_VERSION: u32 = 2;

/// Frame types.
pub mod kind {
    pub const SERVER_KEY: u8 = 0x01;
    pub const CLIENT_INFO: u8 = 0x02;
    pub const SERVER_INFO: u8 = 0x03;
    pub const SEND_PACKET: u8 = 0x04;
    pub const RECV_PACKET: u8 = 0x05;
    pub const KEEP_ALIVE: u8 = 0x06;
    pub const NOTE_PREFERRED: u8 = 0x07;
    pub const PEER_GONE: u8 = 0x08;
    pub const PEER_PRESENT: u8 = 0x09;
    pub const PING: u8 = 0x12;
    pub const PONG: u8 = 0x13;
    pub const HEALTH: u8 = 0x14;
    pub const RESTARTING: u8 = 0x15;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DerpError {
    /// A length over [`MAX_FRAME_LEN`].
    FrameTooLong,
    /// A payload too short for its frame type, or a ServerKey without the magic.
    Malformed,
    /// The ServerInfo box did not open.
    Unauthenticated,
    /// The output buffer cannot hold the frame.
    BufferTooSmall,
}

impl core::fmt::Display for DerpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DerpError::FrameTooLong => "DERP frame longer than 1 MiB",
            DerpError::Malformed => "malformed DERP frame",
            DerpError::Unauthenticated => "DERP server info did not open",
            DerpError::BufferTooSmall => "buffer too small for the DERP frame",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DerpError {}

/// Reads a frame header: `Ok(None)` until 5 bytes are there, then the type and payload length.
pub fn read_header(buf: &[u8]) -> Result<Option<(u8, usize)>, DerpError> {
    let Some(&[kind, a, b, c, d]) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if len > MAX_FRAME_LEN {
        return Err(DerpError::FrameTooLong);
    }
    Ok(Some((kind, len)))
}

/// Frames a client receives, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    ServerKey(NodePublic),
    /// Nonce + box of the JSON ServerInfo; open with [`open_server_info`].
    ServerInfo(&'a [u8]),
    RecvPacket {
        src: NodePublic,
        packet: &'a [u8],
    },
    KeepAlive,
    PeerGone {
        peer: NodePublic,
        reason: u8,
    },
    PeerPresent(NodePublic),
    Ping([u8; 8]),
    Pong([u8; 8]),
    /// A problem the server reports; empty means healthy again.
    Health(&'a [u8]),
    /// Reconnect after the first duration, keep trying for the second (milliseconds).
    Restarting {
        reconnect_in_ms: u32,
        try_for_ms: u32,
    },
    /// Unknown types are skipped, as the reference client does.
    Unknown(u8),
}

impl<'a> Frame<'a> {
    pub fn parse(kind: u8, payload: &'a [u8]) -> Result<Self, DerpError> {
        let key =
            |p: &'a [u8]| p.first_chunk::<KEY_LEN>().map(|k| NodePublic(*k)).ok_or(DerpError::Malformed);
        Ok(match kind {
            kind::SERVER_KEY => {
                let rest = payload.strip_prefix(&SERVER_KEY_MAGIC[..]).ok_or(DerpError::Malformed)?;
                Frame::ServerKey(key(rest)?)
            }
            kind::SERVER_INFO => {
                if payload.len() < NONCE_LEN + TAG_LEN {
                    return Err(DerpError::Malformed);
                }
                Frame::ServerInfo(payload)
            }
            kind::RECV_PACKET => Frame::RecvPacket { src: key(payload)?, packet: &payload[KEY_LEN..] },
            kind::KEEP_ALIVE => Frame::KeepAlive,
            kind::PEER_GONE => {
                Frame::PeerGone { peer: key(payload)?, reason: payload.get(KEY_LEN).copied().unwrap_or(0) }
            }
            kind::PEER_PRESENT => Frame::PeerPresent(key(payload)?),
            kind::PING | kind::PONG => {
                let data = *payload.first_chunk::<8>().ok_or(DerpError::Malformed)?;
                if kind == kind::PING {
                    Frame::Ping(data)
                } else {
                    Frame::Pong(data)
                }
            }
            kind::HEALTH => Frame::Health(payload),
            kind::RESTARTING => {
                let b = payload.first_chunk::<8>().ok_or(DerpError::Malformed)?;
                Frame::Restarting {
                    reconnect_in_ms: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                    try_for_ms: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                }
            }
            other => Frame::Unknown(other),
        })
    }
}

/// Writes one frame of `kind` whose payload is `parts` concatenated; returns the frame length.
pub fn write_frame(out: &mut [u8], kind: u8, parts: &[&[u8]]) -> Result<usize, DerpError> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let total = HEADER_LEN + len;
    let frame = out.get_mut(..total).ok_or(DerpError::BufferTooSmall)?;
    frame[0] = kind;
    frame[1..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    let mut at = HEADER_LEN;
    for part in parts {
        frame[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    Ok(total)
}

/// SendPacket to `dst` (a peer's node key).
pub fn write_send_packet(out: &mut [u8], dst: &NodePublic, packet: &[u8]) -> Result<usize, DerpError> {
    if packet.len() > MAX_PACKET_LEN {
        return Err(DerpError::BufferTooSmall);
    }
    write_frame(out, kind::SEND_PACKET, &[&dst.0, packet])
}

/// The ClientInfo login frame: our node key, then a box (our node private key, the server's
/// key) of the JSON `{"version":2,"CanAckPings":true}`. `nonce` must be random.
pub fn write_client_info(
    out: &mut [u8],
    our_private: &[u8; KEY_LEN],
    our_public: &NodePublic,
    server: &NodePublic,
    nonce: [u8; NONCE_LEN],
) -> Result<usize, DerpError> {
    const INFO: &[u8] = br#"{"version":2,"CanAckPings":true}"#;
    let mut sealed = [0u8; INFO.len()];
    sealed.copy_from_slice(INFO);
    let shared = SalsaBox::new(&PublicKey::from_bytes(server.0), &SecretKey::from_bytes(*our_private));
    let tag = shared
        .encrypt_in_place_detached(GenericArray::from_slice(&nonce), &[], &mut sealed)
        .map_err(|_| DerpError::BufferTooSmall)?;
    // NaCl's box format: tag first, then the ciphertext.
    write_frame(out, kind::CLIENT_INFO, &[&our_public.0, &nonce, &tag, &sealed])
}

/// Opens a ServerInfo payload into `out`; returns the JSON bytes.
pub fn open_server_info<'b>(
    payload: &[u8],
    our_private: &[u8; KEY_LEN],
    server: &NodePublic,
    out: &'b mut [u8],
) -> Result<&'b [u8], DerpError> {
    let (nonce, sealed) = payload.split_first_chunk::<NONCE_LEN>().ok_or(DerpError::Malformed)?;
    // NaCl's box format: tag first, then the ciphertext.
    let (tag, body) = sealed.split_at_checked(TAG_LEN).ok_or(DerpError::Malformed)?;
    let body_len = body.len();
    let buf = out.get_mut(..body_len).ok_or(DerpError::BufferTooSmall)?;
    buf.copy_from_slice(body);
    let shared = SalsaBox::new(&PublicKey::from_bytes(server.0), &SecretKey::from_bytes(*our_private));
    shared
        .decrypt_in_place_detached(GenericArray::from_slice(nonce), &[], buf, GenericArray::from_slice(tag))
        .map_err(|_| DerpError::Unauthenticated)?;
    Ok(&out[..body_len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_need_five_bytes_and_a_sane_length() {
        assert_eq!(read_header(&[4, 0, 0]), Ok(None));
        assert_eq!(read_header(&[4, 0, 0, 0, 40]), Ok(Some((4, 40))));
        assert_eq!(read_header(&[5, 0, 0x10, 0, 1]), Err(DerpError::FrameTooLong));
    }

    #[test]
    fn send_packet_round_trips_as_recv_packet() {
        let mut out = [0u8; 128];
        let n = write_send_packet(&mut out, &NodePublic([7; 32]), b"wireguard bytes").unwrap();
        let (kind, len) = read_header(&out[..n]).unwrap().unwrap();
        assert_eq!((kind, len), (kind::SEND_PACKET, 32 + 15));
        // A server relays it as RecvPacket with the same layout (key + packet).
        let frame = Frame::parse(kind::RECV_PACKET, &out[HEADER_LEN..n]).unwrap();
        assert_eq!(frame, Frame::RecvPacket { src: NodePublic([7; 32]), packet: b"wireguard bytes" });
    }

    #[test]
    fn server_key_needs_the_magic() {
        let mut payload = [0u8; 40];
        payload[..8].copy_from_slice(&SERVER_KEY_MAGIC);
        payload[8..].fill(3);
        assert_eq!(Frame::parse(kind::SERVER_KEY, &payload), Ok(Frame::ServerKey(NodePublic([3; 32]))));
        payload[0] = b'X';
        assert_eq!(Frame::parse(kind::SERVER_KEY, &payload), Err(DerpError::Malformed));
    }

    #[test]
    fn client_info_opens_on_the_server_side() {
        let client = SecretKey::from_bytes([1; 32]);
        let server = SecretKey::from_bytes([2; 32]);
        let (client_pub, server_pub) =
            (NodePublic(*client.public_key().as_bytes()), NodePublic(*server.public_key().as_bytes()));
        let mut out = [0u8; 256];
        let n = write_client_info(&mut out, &[1; 32], &client_pub, &server_pub, [9; 24]).unwrap();
        let payload = &out[HEADER_LEN..n];
        assert_eq!(&payload[..32], &client_pub.0);
        // The server opens it with its private key and our public key: same box, other side.
        let mut json = [0u8; 64];
        let opened = open_server_info(&payload[32..], &[2; 32], &client_pub, &mut json).unwrap();
        assert_eq!(opened, br#"{"version":2,"CanAckPings":true}"#);
        let mut bad = [0u8; 64];
        assert_eq!(
            open_server_info(&payload[32..], &[3; 32], &client_pub, &mut bad),
            Err(DerpError::Unauthenticated)
        );
    }

    #[test]
    fn short_payloads_are_malformed_and_unknown_types_skipped() {
        assert_eq!(Frame::parse(kind::RECV_PACKET, &[0; 31]), Err(DerpError::Malformed));
        assert_eq!(Frame::parse(kind::PING, &[0; 7]), Err(DerpError::Malformed));
        assert_eq!(Frame::parse(kind::RESTARTING, &[0; 7]), Err(DerpError::Malformed));
        assert_eq!(Frame::parse(kind::SERVER_INFO, &[0; 39]), Err(DerpError::Malformed));
        assert_eq!(Frame::parse(0x7f, b"future"), Ok(Frame::Unknown(0x7f)));
        assert_eq!(
            Frame::parse(kind::PEER_GONE, &[4; 32]),
            Ok(Frame::PeerGone { peer: NodePublic([4; 32]), reason: 0 })
        );
        assert_eq!(
            Frame::parse(kind::RESTARTING, &[0, 0, 1, 0, 0, 0, 2, 0]),
            Ok(Frame::Restarting { reconnect_in_ms: 256, try_for_ms: 512 })
        );
    }
}
