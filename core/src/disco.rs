//! Disco: the peer-discovery messages tailscaled uses to find and keep direct UDP paths
//! (`ts:disco/disco.go`; protocol notes §6).
//!
//! Wire form, sent as a UDP datagram or inside a DERP packet:
//! `magic "TS💬" (6) | sender disco public key (32) | nonce (24) | NaCl box (payload + 16 tag)`,
//! the box between the two disco keys (X25519 + XSalsa20-Poly1305). Inside: type (1), version
//! (1, 0 today; trailing bytes ignored), payload. [`Envelope`] is the zero-copy view of the outer
//! form; [`Message`] the parsed inner one. The caller supplies random nonces (core has no RNG).

use core::net::{IpAddr, Ipv6Addr, SocketAddr};

use crypto_box::aead::{generic_array::GenericArray, AeadInPlace};
use crypto_box::{PublicKey, SalsaBox, SecretKey};

use crate::key::{DiscoPublic, NodePublic, KEY_LEN};

/// `"TS💬"`.
pub const MAGIC: [u8; 6] = [0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac];
pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Magic + sender key + nonce.
pub const HEADER_LEN: usize = MAGIC.len() + KEY_LEN + NONCE_LEN;
/// Transaction id of a ping, echoed by its pong.
pub const TX_ID_LEN: usize = 12;
/// One endpoint in CallMeMaybe and a pong's source: 16-byte IP (IPv4 v4-mapped) + BE port.
pub const ENDPOINT_LEN: usize = 18;

/// Message types (`ts:disco/disco.go`).
pub mod kind {
    pub const PING: u8 = 0x01;
    pub const PONG: u8 = 0x02;
    pub const CALL_ME_MAYBE: u8 = 0x03;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DiscoError {
    /// Shorter than magic + key + nonce + tag, or not starting with the magic.
    NotDisco,
    /// The box did not open: wrong keys or tampered bytes.
    Unauthenticated,
    /// The plaintext is too short for its type.
    Malformed,
    /// The output buffer cannot hold the message.
    BufferTooSmall,
}

impl core::fmt::Display for DiscoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DiscoError::NotDisco => "not a disco packet",
            DiscoError::Unauthenticated => "disco box did not open",
            DiscoError::Malformed => "malformed disco message",
            DiscoError::BufferTooSmall => "buffer too small for the disco message",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DiscoError {}

/// True for a datagram that is disco rather than WireGuard or STUN (`LooksLikeDiscoWrapper`).
pub fn looks_like_disco(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN && datagram.starts_with(&MAGIC)
}

/// The outer packet, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub sender: DiscoPublic,
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    pub sealed: &'a [u8],
}

impl<'a> Envelope<'a> {
    pub fn parse(datagram: &'a [u8]) -> Result<Self, DiscoError> {
        if !looks_like_disco(datagram) || datagram.len() < HEADER_LEN + TAG_LEN {
            return Err(DiscoError::NotDisco);
        }
        let mut sender = [0u8; KEY_LEN];
        sender.copy_from_slice(&datagram[MAGIC.len()..MAGIC.len() + KEY_LEN]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&datagram[MAGIC.len() + KEY_LEN..HEADER_LEN]);
        Ok(Envelope { sender: DiscoPublic(sender), nonce, sealed: &datagram[HEADER_LEN..] })
    }
}

/// A parsed disco message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// `node_key` is absent from very old clients; `padding` bytes probe the path MTU.
    Ping { tx_id: [u8; TX_ID_LEN], node_key: Option<NodePublic>, padding: usize },
    /// `src` is our address as the responder saw it (a STUN answer for free).
    Pong { tx_id: [u8; TX_ID_LEN], src: SocketAddr },
    /// The sender's endpoints; only to be believed when it came via DERP.
    CallMeMaybe(Endpoints<'a>),
    /// A type we do not handle (peer relay messages and future ones): dropped by the caller.
    Other(u8),
}

/// CallMeMaybe's endpoint list, decoded lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints<'a>(&'a [u8]);

impl<'a> Iterator for Endpoints<'a> {
    type Item = SocketAddr;
    fn next(&mut self) -> Option<SocketAddr> {
        let (head, rest) = self.0.split_first_chunk::<ENDPOINT_LEN>()?;
        self.0 = rest;
        Some(read_endpoint(head))
    }
}

impl<'a> Message<'a> {
    /// Parses a plaintext (type, version, payload).
    pub fn parse(plain: &'a [u8]) -> Result<Self, DiscoError> {
        let [kind, _version, payload @ ..] = plain else {
            return Err(DiscoError::Malformed);
        };
        match *kind {
            kind::PING => {
                let (tx_id, rest) = payload.split_first_chunk::<TX_ID_LEN>().ok_or(DiscoError::Malformed)?;
                let (node_key, padding) = match rest.split_first_chunk::<KEY_LEN>() {
                    Some((key, padding)) => (Some(NodePublic(*key)), padding.len()),
                    None if rest.is_empty() => (None, 0),
                    None => return Err(DiscoError::Malformed),
                };
                Ok(Message::Ping { tx_id: *tx_id, node_key, padding })
            }
            kind::PONG => {
                let (tx_id, rest) = payload.split_first_chunk::<TX_ID_LEN>().ok_or(DiscoError::Malformed)?;
                let (endpoint, _) = rest.split_first_chunk::<ENDPOINT_LEN>().ok_or(DiscoError::Malformed)?;
                Ok(Message::Pong { tx_id: *tx_id, src: read_endpoint(endpoint) })
            }
            kind::CALL_ME_MAYBE => {
                // The reference reads an empty list when the length is off; so do we.
                let list = if payload.len() % ENDPOINT_LEN == 0 { payload } else { &[][..] };
                Ok(Message::CallMeMaybe(Endpoints(list)))
            }
            other => Ok(Message::Other(other)),
        }
    }

    /// Writes the plaintext into `out`; returns its length.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, DiscoError> {
        let mut w = Writer { out, at: 0 };
        match self {
            Message::Ping { tx_id, node_key, padding } => {
                w.put(&[kind::PING, 0])?;
                w.put(tx_id)?;
                if let Some(key) = node_key {
                    w.put(&key.0)?;
                }
                w.zeros(*padding)?;
            }
            Message::Pong { tx_id, src } => {
                w.put(&[kind::PONG, 0])?;
                w.put(tx_id)?;
                w.put(&write_endpoint(*src))?;
            }
            Message::CallMeMaybe(endpoints) => {
                w.put(&[kind::CALL_ME_MAYBE, 0])?;
                for e in *endpoints {
                    w.put(&write_endpoint(e))?;
                }
            }
            Message::Other(_) => return Err(DiscoError::Malformed),
        }
        Ok(w.at)
    }
}

impl<'a> Endpoints<'a> {
    /// A list of endpoints already in wire form (N x 18 bytes; see [`write_endpoint`]).
    pub fn from_wire(bytes: &'a [u8]) -> Self {
        Endpoints(&bytes[..bytes.len() - bytes.len() % ENDPOINT_LEN])
    }
}

/// The NaCl box between our disco key and one peer's, precomputed once per peer.
pub struct DiscoBox {
    shared: SalsaBox,
}

impl DiscoBox {
    pub fn new(our_private: &[u8; KEY_LEN], peer: &DiscoPublic) -> Self {
        let shared = SalsaBox::new(&PublicKey::from_bytes(peer.0), &SecretKey::from_bytes(*our_private));
        DiscoBox { shared }
    }

    /// Opens an envelope into `out` and parses it; the message borrows `out`.
    pub fn open<'b>(&self, envelope: &Envelope<'_>, out: &'b mut [u8]) -> Result<Message<'b>, DiscoError> {
        // NaCl's box format: the Poly1305 tag comes first, then the ciphertext.
        let (tag, body) = envelope.sealed.split_at_checked(TAG_LEN).ok_or(DiscoError::NotDisco)?;
        let body_len = body.len();
        let buf = out.get_mut(..body_len).ok_or(DiscoError::BufferTooSmall)?;
        buf.copy_from_slice(body);
        let tag = GenericArray::from_slice(tag);
        self.shared
            .decrypt_in_place_detached(GenericArray::from_slice(&envelope.nonce), &[], buf, tag)
            .map_err(|_| DiscoError::Unauthenticated)?;
        Message::parse(&out[..body_len])
    }

    /// Seals `message` from `sender` (our disco public key) with `nonce` into `out`; returns the
    /// datagram's length.
    pub fn seal(
        &self,
        sender: &DiscoPublic,
        nonce: [u8; NONCE_LEN],
        message: &Message<'_>,
        out: &mut [u8],
    ) -> Result<usize, DiscoError> {
        let body_at = HEADER_LEN + TAG_LEN;
        let plain_len = message.write(out.get_mut(body_at..).ok_or(DiscoError::BufferTooSmall)?)?;
        let total = body_at + plain_len;
        out[..MAGIC.len()].copy_from_slice(&MAGIC);
        out[MAGIC.len()..MAGIC.len() + KEY_LEN].copy_from_slice(&sender.0);
        out[MAGIC.len() + KEY_LEN..HEADER_LEN].copy_from_slice(&nonce);
        let tag = self
            .shared
            .encrypt_in_place_detached(GenericArray::from_slice(&nonce), &[], &mut out[body_at..total])
            .map_err(|_| DiscoError::BufferTooSmall)?;
        // NaCl's box format: tag first (what Go's box.SealAfterPrecomputation writes).
        out[HEADER_LEN..body_at].copy_from_slice(&tag);
        Ok(total)
    }
}

/// 16-byte IP (IPv4 as v4-mapped IPv6) + big-endian port.
pub fn write_endpoint(addr: SocketAddr) -> [u8; ENDPOINT_LEN] {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let mut out = [0u8; ENDPOINT_LEN];
    out[..16].copy_from_slice(&ip.octets());
    out[16..].copy_from_slice(&addr.port().to_be_bytes());
    out
}

fn read_endpoint(bytes: &[u8; ENDPOINT_LEN]) -> SocketAddr {
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&bytes[..16]);
    let ip = Ipv6Addr::from(ip);
    let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
    SocketAddr::new(ip, u16::from_be_bytes([bytes[16], bytes[17]]))
}

struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), DiscoError> {
        let end = self.at + bytes.len();
        self.out.get_mut(self.at..end).ok_or(DiscoError::BufferTooSmall)?.copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }

    fn zeros(&mut self, n: usize) -> Result<(), DiscoError> {
        let end = self.at + n;
        self.out.get_mut(self.at..end).ok_or(DiscoError::BufferTooSmall)?.fill(0);
        self.at = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(seed: u8) -> ([u8; 32], DiscoPublic) {
        let secret = SecretKey::from_bytes([seed; 32]);
        ([seed; 32], DiscoPublic(*secret.public_key().as_bytes()))
    }

    fn round_trip(message: Message<'_>) -> ([u8; 256], usize) {
        let (a_priv, a_pub) = keypair(1);
        let (b_priv, b_pub) = keypair(2);
        let mut wire = [0u8; 256];
        let len = DiscoBox::new(&a_priv, &b_pub).seal(&a_pub, [7; NONCE_LEN], &message, &mut wire).unwrap();
        assert!(looks_like_disco(&wire[..len]));
        let envelope = Envelope::parse(&wire[..len]).unwrap();
        assert_eq!(envelope.sender, a_pub);
        let mut plain = [0u8; 256];
        let opened = DiscoBox::new(&b_priv, &a_pub).open(&envelope, &mut plain).unwrap();
        let mut again = [0u8; 256];
        let n = opened.write(&mut again).unwrap();
        let mut original = [0u8; 256];
        let m = message.write(&mut original).unwrap();
        assert_eq!(&again[..n], &original[..m], "what opens is what was sealed");
        (plain, n)
    }

    #[test]
    fn ping_pong_and_call_me_maybe_survive_the_box() {
        round_trip(Message::Ping { tx_id: [3; 12], node_key: Some(NodePublic([9; 32])), padding: 5 });
        round_trip(Message::Ping { tx_id: [3; 12], node_key: None, padding: 0 });
        round_trip(Message::Pong { tx_id: [4; 12], src: "198.18.0.2:41641".parse().unwrap() });
        round_trip(Message::Pong { tx_id: [4; 12], src: "[2001:db8:1::2]:41641".parse().unwrap() });
        let list =
            [write_endpoint("198.18.0.2:41641".parse().unwrap()), write_endpoint("[::1]:1".parse().unwrap())];
        let flat: [u8; 36] = {
            let mut f = [0u8; 36];
            f[..18].copy_from_slice(&list[0]);
            f[18..].copy_from_slice(&list[1]);
            f
        };
        let (plain, n) = round_trip(Message::CallMeMaybe(Endpoints::from_wire(&flat)));
        let Message::CallMeMaybe(endpoints) = Message::parse(&plain[..n]).unwrap() else { panic!() };
        let mut it = endpoints;
        assert_eq!(it.next(), Some("198.18.0.2:41641".parse().unwrap()));
        assert_eq!(it.next(), Some("[::1]:1".parse().unwrap()));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn wrong_key_or_tampering_fails_to_open() {
        let (a_priv, a_pub) = keypair(1);
        let (_, b_pub) = keypair(2);
        let (c_priv, _) = keypair(3);
        let mut wire = [0u8; 128];
        let msg = Message::Ping { tx_id: [1; 12], node_key: None, padding: 0 };
        let len = DiscoBox::new(&a_priv, &b_pub).seal(&a_pub, [0; NONCE_LEN], &msg, &mut wire).unwrap();
        let mut out = [0u8; 128];
        let env = Envelope::parse(&wire[..len]).unwrap();
        assert_eq!(DiscoBox::new(&c_priv, &a_pub).open(&env, &mut out), Err(DiscoError::Unauthenticated));
        wire[len - 1] ^= 1;
        let env = Envelope::parse(&wire[..len]).unwrap();
        let (b_priv, _) = keypair(2);
        assert_eq!(DiscoBox::new(&b_priv, &a_pub).open(&env, &mut out), Err(DiscoError::Unauthenticated));
    }

    #[test]
    fn short_or_foreign_datagrams_are_not_disco() {
        assert_eq!(Envelope::parse(&MAGIC), Err(DiscoError::NotDisco));
        let mut wg = [0u8; 148];
        wg[0] = 1; // a WireGuard handshake initiation
        assert!(!looks_like_disco(&wg));
        assert_eq!(Envelope::parse(&wg), Err(DiscoError::NotDisco));
    }

    #[test]
    fn inner_messages_are_checked_for_length() {
        assert_eq!(Message::parse(&[]), Err(DiscoError::Malformed));
        assert_eq!(Message::parse(&[kind::PING, 0, 1, 2]), Err(DiscoError::Malformed));
        assert_eq!(
            Message::parse(&[kind::PONG, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DiscoError::Malformed)
        );
        // A ping with a partial node key is malformed; an odd-sized CallMeMaybe is an empty list.
        let mut ping = [0u8; 2 + 12 + 20];
        ping[0] = kind::PING;
        assert_eq!(Message::parse(&ping), Err(DiscoError::Malformed));
        let cmm = [kind::CALL_ME_MAYBE, 0, 1, 2, 3];
        let Message::CallMeMaybe(mut list) = Message::parse(&cmm).unwrap() else { panic!() };
        assert_eq!(list.next(), None);
        assert_eq!(Message::parse(&[0x07, 0]), Ok(Message::Other(0x07)));
    }

    #[test]
    fn small_buffers_are_errors() {
        let (a_priv, a_pub) = keypair(1);
        let msg = Message::Ping { tx_id: [1; 12], node_key: None, padding: 100 };
        let mut small = [0u8; 80];
        assert_eq!(
            DiscoBox::new(&a_priv, &a_pub).seal(&a_pub, [0; 24], &msg, &mut small),
            Err(DiscoError::BufferTooSmall)
        );
    }
}
