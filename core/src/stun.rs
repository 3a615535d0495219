//! STUN binding requests and responses (RFC 5389) as tailscaled's netcheck and endpoint discovery
//! use them (`ts:net/stun/stun.go`): we ask a DERP node's STUN port (3478) what address our UDP
//! socket has from outside, and read the answer from the same socket WireGuard and disco use.
//!
//! Wire form: a 20-byte header `type (2) | attributes length (2) | magic cookie (4) | transaction
//! id (12)`, then attributes `type (2) | length (2) | value, zero-padded to 4 bytes`. [`Message`]
//! is the zero-copy view; [`parse_binding_response`] gives the parsed answer.
//!
//! Our request is byte-for-byte tailscale's: SOFTWARE "tailnode" then FINGERPRINT. The DERP
//! servers' STUN listener (`ParseBindingRequest`) drops requests without both, so neither is
//! optional for us. The caller supplies random transaction ids (core has no RNG).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The header's fixed value at bytes 4..8, also the XOR key of XOR-MAPPED-ADDRESS.
pub const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
pub const HEADER_LEN: usize = 20;
pub const TX_ID_LEN: usize = 12;
/// What tailscale sends, and what its STUN server insists on. Eight bytes, so no padding.
pub const SOFTWARE: &[u8; 8] = b"tailnode";
/// Header + SOFTWARE attribute (4 + 8) + FINGERPRINT attribute (4 + 4).
pub const BINDING_REQUEST_LEN: usize = HEADER_LEN + 4 + SOFTWARE.len() + 8;
/// Header + one XOR-MAPPED-ADDRESS attribute for an IPv6 address (4 + 4 + 16).
pub const MAX_BINDING_RESPONSE_LEN: usize = HEADER_LEN + 4 + 4 + 16;
/// RFC 5389 §15.5: the CRC-32 of the message is XORed with "STUN".
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// A STUN transaction id: chosen by the requester, echoed by the response.
pub type TxId = [u8; TX_ID_LEN];

/// Message types (RFC 5389 §6: method binding, classes request and success response).
pub mod message_type {
    pub const BINDING_REQUEST: u16 = 0x0001;
    pub const BINDING_SUCCESS: u16 = 0x0101;
}

/// Attribute types.
pub mod attribute {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// Not in the RFC: XOR-MAPPED-ADDRESS in the comprehension-optional range, which some servers
    /// send; tailscale reads it the same way, so we do too.
    pub const XOR_MAPPED_ADDRESS_ALT: u16 = 0x8020;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
}

/// Address families inside (XOR-)MAPPED-ADDRESS.
const FAMILY_IPV4: u8 = 0x01;
const FAMILY_IPV6: u8 = 0x02;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StunError {
    /// Shorter than a header, no magic cookie, or a top bit set: not STUN at all.
    NotStun,
    /// STUN, but not a binding success response (a request, an error response, another method).
    NotBindingSuccess,
    /// The declared length runs past the datagram, an attribute runs past the attributes, or an
    /// address attribute is short or of an unknown family.
    MalformedAttributes,
    /// A well-formed response without any mapped address.
    NoAddress,
    /// The output buffer cannot hold the message.
    BufferTooSmall,
}

impl core::fmt::Display for StunError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            StunError::NotStun => "not a STUN packet",
            StunError::NotBindingSuccess => "STUN packet is not a binding success response",
            StunError::MalformedAttributes => "malformed STUN attributes",
            StunError::NoAddress => "STUN response has no mapped address",
            StunError::BufferTooSmall => "buffer too small for the STUN message",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for StunError {}

/// Writes a binding request for `tx_id` into `out`; returns its length ([`BINDING_REQUEST_LEN`]).
pub fn write_binding_request(tx_id: &TxId, out: &mut [u8]) -> Result<usize, StunError> {
    let out = out.get_mut(..BINDING_REQUEST_LEN).ok_or(StunError::BufferTooSmall)?;
    let attributes_len = (BINDING_REQUEST_LEN - HEADER_LEN) as u16;
    out[0..2].copy_from_slice(&message_type::BINDING_REQUEST.to_be_bytes());
    out[2..4].copy_from_slice(&attributes_len.to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC_COOKIE);
    out[8..HEADER_LEN].copy_from_slice(tx_id);
    let software_at = HEADER_LEN;
    out[software_at..software_at + 2].copy_from_slice(&attribute::SOFTWARE.to_be_bytes());
    out[software_at + 2..software_at + 4].copy_from_slice(&(SOFTWARE.len() as u16).to_be_bytes());
    out[software_at + 4..software_at + 4 + SOFTWARE.len()].copy_from_slice(SOFTWARE);
    // The fingerprint covers everything before its own attribute, header length included.
    let fingerprint_at = software_at + 4 + SOFTWARE.len();
    let fingerprint = crc32(&out[..fingerprint_at]) ^ FINGERPRINT_XOR;
    out[fingerprint_at..fingerprint_at + 2].copy_from_slice(&attribute::FINGERPRINT.to_be_bytes());
    out[fingerprint_at + 2..fingerprint_at + 4].copy_from_slice(&4u16.to_be_bytes());
    out[fingerprint_at + 4..BINDING_REQUEST_LEN].copy_from_slice(&fingerprint.to_be_bytes());
    Ok(BINDING_REQUEST_LEN)
}

/// True for a datagram that is STUN rather than WireGuard or disco, as tailscale's `stun.Is`
/// decides: cheap enough to run on every datagram of the shared UDP socket. (Bytes 4..8 of a
/// WireGuard message are a random sender index, so about one in 2^32 handshakes looks like STUN
/// here too; it then fails to parse as a response and is dropped, and the handshake is retried.)
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN && datagram[0] & 0b1100_0000 == 0 && datagram[4..8] == MAGIC_COOKIE
}

/// Reads a binding success response: its transaction id (match it to a request we sent) and the
/// address the server saw us at. XOR-MAPPED-ADDRESS (either type number) wins over
/// MAPPED-ADDRESS; with several of one kind the last counts, as in tailscale. IPv4-mapped IPv6
/// answers come back as IPv4.
pub fn parse_binding_response(datagram: &[u8]) -> Result<(TxId, SocketAddr), StunError> {
    let message = Message::parse(datagram)?;
    if message.message_type() != message_type::BINDING_SUCCESS {
        return Err(StunError::NotBindingSuccess);
    }
    let tx_id = message.tx_id();
    let (mut xor_mapped, mut mapped) = (None, None);
    for attr in message.attributes() {
        let attr = attr?;
        match attr.kind {
            attribute::XOR_MAPPED_ADDRESS | attribute::XOR_MAPPED_ADDRESS_ALT => {
                xor_mapped = Some(read_xor_mapped_address(&tx_id, attr.value)?);
            }
            attribute::MAPPED_ADDRESS => mapped = Some(read_mapped_address(attr.value)?),
            _ => {} // SOFTWARE, FINGERPRINT and the rest tell us nothing we need
        }
    }
    let addr = xor_mapped.or(mapped).ok_or(StunError::NoAddress)?;
    Ok((tx_id, addr))
}

/// Writes the binding success response a STUN server sends for `tx_id` when it sees the request
/// come from `addr` (one XOR-MAPPED-ADDRESS, as tailscale's server does). For tests and
/// simulated networks; returns the length.
pub fn write_binding_response(tx_id: &TxId, addr: SocketAddr, out: &mut [u8]) -> Result<usize, StunError> {
    let mut ip_bytes = [0u8; 16];
    let (family, ip) = match addr.ip() {
        IpAddr::V4(v4) => {
            ip_bytes[..4].copy_from_slice(&v4.octets());
            (FAMILY_IPV4, &ip_bytes[..4])
        }
        IpAddr::V6(v6) => {
            ip_bytes.copy_from_slice(&v6.octets());
            (FAMILY_IPV6, &ip_bytes[..])
        }
    };
    let value_len = 4 + ip.len();
    let len = HEADER_LEN + 4 + value_len;
    let out = out.get_mut(..len).ok_or(StunError::BufferTooSmall)?;
    out[0..2].copy_from_slice(&message_type::BINDING_SUCCESS.to_be_bytes());
    out[2..4].copy_from_slice(&((4 + value_len) as u16).to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC_COOKIE);
    out[8..HEADER_LEN].copy_from_slice(tx_id);
    let value = &mut out[HEADER_LEN..];
    value[0..2].copy_from_slice(&attribute::XOR_MAPPED_ADDRESS.to_be_bytes());
    value[2..4].copy_from_slice(&(value_len as u16).to_be_bytes());
    let value = &mut value[4..];
    value[0] = 0;
    value[1] = family;
    let xor_key = xor_key(tx_id);
    value[2..4].copy_from_slice(&(addr.port() ^ u16::from_be_bytes([xor_key[0], xor_key[1]])).to_be_bytes());
    for ((byte, ip_byte), key_byte) in value[4..].iter_mut().zip(ip).zip(xor_key) {
        *byte = ip_byte ^ key_byte;
    }
    Ok(len)
}

/// A STUN message, borrowed: the header checked and the attributes cut to the declared length
/// (tailscale ignores bytes after them; so do we).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    header: &'a [u8; HEADER_LEN],
    attributes: &'a [u8],
}

impl<'a> Message<'a> {
    pub fn parse(datagram: &'a [u8]) -> Result<Self, StunError> {
        if !is_stun(datagram) {
            return Err(StunError::NotStun);
        }
        let (header, rest) = datagram.split_first_chunk::<HEADER_LEN>().ok_or(StunError::NotStun)?;
        let declared = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let attributes = rest.get(..declared).ok_or(StunError::MalformedAttributes)?;
        Ok(Message { header, attributes })
    }

    /// Method and class together, e.g. [`message_type::BINDING_SUCCESS`].
    pub fn message_type(&self) -> u16 {
        u16::from_be_bytes([self.header[0], self.header[1]])
    }

    pub fn tx_id(&self) -> TxId {
        let mut tx_id = [0u8; TX_ID_LEN];
        tx_id.copy_from_slice(&self.header[8..HEADER_LEN]);
        tx_id
    }

    pub fn attributes(&self) -> Attributes<'a> {
        Attributes { rest: self.attributes }
    }
}

/// The attributes of a [`Message`] in order. Yields one `Err` for a truncated attribute, then
/// stops.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    rest: &'a [u8],
}

/// One attribute: its type and its value without the padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub kind: u16,
    pub value: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<Attribute<'a>, StunError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = core::mem::take(&mut self.rest);
        let Some(([k0, k1, l0, l1], body)) = rest.split_first_chunk::<4>().map(|(h, b)| (*h, b)) else {
            return Some(Err(StunError::MalformedAttributes));
        };
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        // Values are padded to a multiple of 4; the padding must be there, even after the last one.
        let padded = (len + 3) & !3;
        if padded > body.len() {
            return Some(Err(StunError::MalformedAttributes));
        }
        self.rest = &body[padded..];
        Some(Ok(Attribute { kind: u16::from_be_bytes([k0, k1]), value: &body[..len] }))
    }
}

/// XOR-MAPPED-ADDRESS (RFC 5389 §15.2): `0 | family | port ^ cookie[0..2] | address ^ (cookie ++
/// transaction id)`.
fn read_xor_mapped_address(tx_id: &TxId, value: &[u8]) -> Result<SocketAddr, StunError> {
    let (port, masked) = read_address_fields(value)?;
    let key = xor_key(tx_id);
    let port = port ^ u16::from_be_bytes([key[0], key[1]]);
    let mut ip = [0u8; 16];
    for ((byte, masked_byte), key_byte) in ip.iter_mut().zip(masked).zip(key) {
        *byte = masked_byte ^ key_byte;
    }
    Ok(SocketAddr::new(ip_from(&ip[..masked.len()])?, port))
}

/// MAPPED-ADDRESS (RFC 5389 §15.1): `0 | family | port | address`, in the clear.
fn read_mapped_address(value: &[u8]) -> Result<SocketAddr, StunError> {
    let (port, ip) = read_address_fields(value)?;
    Ok(SocketAddr::new(ip_from(ip)?, port))
}

/// The port as written and the address bytes (4 or 16, per family) of either address attribute.
fn read_address_fields(value: &[u8]) -> Result<(u16, &[u8]), StunError> {
    let ([_reserved, family, p0, p1], rest) =
        value.split_first_chunk::<4>().map(|(h, r)| (*h, r)).ok_or(StunError::MalformedAttributes)?;
    let ip_len = match family {
        FAMILY_IPV4 => 4,
        FAMILY_IPV6 => 16,
        _ => return Err(StunError::MalformedAttributes),
    };
    let ip = rest.get(..ip_len).ok_or(StunError::MalformedAttributes)?;
    Ok((u16::from_be_bytes([p0, p1]), ip))
}

/// An address from its 4 or 16 bytes; an IPv4-mapped IPv6 address becomes IPv4, as tailscale
/// unmaps it.
fn ip_from(bytes: &[u8]) -> Result<IpAddr, StunError> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Ok(IpAddr::V6(Ipv6Addr::from(v6)).to_canonical())
    } else {
        Err(StunError::MalformedAttributes)
    }
}

/// The 16 bytes an address is XORed with: the magic cookie, then the transaction id.
fn xor_key(tx_id: &TxId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC_COOKIE);
    key[4..].copy_from_slice(tx_id);
    key
}

/// CRC-32 (IEEE 802.3, reflected), bit by bit: it runs once per 28-byte request, so a 1 KiB
/// table would cost more flash than it saves time.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    const TX: TxId = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A binding success response with the given attributes (already padded), written by hand.
    fn response_with(attributes: &[u8]) -> ([u8; 128], usize) {
        let mut b = [0u8; 128];
        b[0..2].copy_from_slice(&[0x01, 0x01]);
        b[2..4].copy_from_slice(&(attributes.len() as u16).to_be_bytes());
        b[4..8].copy_from_slice(&MAGIC_COOKIE);
        b[8..20].copy_from_slice(&TX);
        b[20..20 + attributes.len()].copy_from_slice(attributes);
        (b, 20 + attributes.len())
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn request_layout() {
        let mut out = [0u8; 64];
        let len = write_binding_request(&TX, &mut out).unwrap();
        assert_eq!(len, 40);
        let b = &out[..len];
        assert_eq!(&b[0..4], &[0x00, 0x01, 0x00, 20]);
        assert_eq!(&b[4..8], &MAGIC_COOKIE);
        assert_eq!(&b[8..20], &TX);
        assert_eq!(&b[20..32], b"\x80\x22\x00\x08tailnode");
        assert_eq!(&b[32..36], &[0x80, 0x28, 0x00, 0x04]);
        let fingerprint = u32::from_be_bytes([b[36], b[37], b[38], b[39]]);
        assert_eq!(fingerprint, crc32(&b[..32]) ^ 0x5354_554e);
        assert!(is_stun(b));
        let message = Message::parse(b).unwrap();
        assert_eq!(message.message_type(), message_type::BINDING_REQUEST);
        assert_eq!(parse_binding_response(b), Err(StunError::NotBindingSuccess));
    }

    #[test]
    fn request_needs_room() {
        let mut out = [0u8; BINDING_REQUEST_LEN - 1];
        assert_eq!(write_binding_request(&TX, &mut out), Err(StunError::BufferTooSmall));
    }

    #[test]
    fn response_round_trip_ipv4_and_ipv6() {
        for a in ["203.0.113.7:41641", "[2001:db8::1]:3478", "0.0.0.0:0", "[ffff::ffff]:65535"] {
            let mut out = [0u8; MAX_BINDING_RESPONSE_LEN];
            let len = write_binding_response(&TX, addr(a), &mut out).unwrap();
            assert!(is_stun(&out[..len]));
            assert_eq!(parse_binding_response(&out[..len]), Ok((TX, addr(a))), "{a}");
        }
    }

    #[test]
    fn xor_mapped_address_by_hand() {
        // 192.0.2.1:32853 from RFC 5769 §2.2's sample response, with our transaction id.
        let port = 32853u16 ^ 0x2112;
        let ip: [u8; 4] = core::array::from_fn(|i| [192, 0, 2, 1][i] ^ MAGIC_COOKIE[i]);
        let mut attr = [0u8; 12];
        attr[0..4].copy_from_slice(&[0x00, 0x20, 0x00, 0x08]);
        attr[4..8].copy_from_slice(&[0, 1, (port >> 8) as u8, port as u8]);
        attr[8..12].copy_from_slice(&ip);
        let (b, len) = response_with(&attr);
        assert_eq!(parse_binding_response(&b[..len]), Ok((TX, addr("192.0.2.1:32853"))));
        // The same under the alternative type number.
        let mut alt = attr;
        alt[0] = 0x80;
        let (b, len) = response_with(&alt);
        assert_eq!(parse_binding_response(&b[..len]), Ok((TX, addr("192.0.2.1:32853"))));
    }

    #[test]
    fn rfc5769_ipv6_response() {
        // RFC 5769 §2.3: sample IPv6 response (SOFTWARE with padding, XOR-MAPPED-ADDRESS,
        // MESSAGE-INTEGRITY, FINGERPRINT).
        let b: [u8; 92] = [
            0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
            0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
            0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
            0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
            0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
            0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
        ];
        let tx = [0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae];
        let want = addr("[2001:db8:1234:5678:11:2233:4455:6677]:32853");
        assert_eq!(parse_binding_response(&b), Ok((tx, want)));
        // Its fingerprint is computed the way ours is.
        assert_eq!(crc32(&b[..84]) ^ FINGERPRINT_XOR, 0xc8fb_0b4c);
    }

    #[test]
    fn mapped_address_is_the_fallback() {
        let mapped = [0x00, 0x01, 0x00, 0x08, 0, 1, 0x0d, 0x96, 198, 51, 100, 9];
        let (b, len) = response_with(&mapped);
        assert_eq!(parse_binding_response(&b[..len]), Ok((TX, addr("198.51.100.9:3478"))));

        // With an XOR-MAPPED-ADDRESS anywhere, that one wins.
        let mut out = [0u8; 64];
        let n = write_binding_response(&TX, addr("203.0.113.1:1"), &mut out).unwrap();
        let mut both = [0u8; 64];
        both[..n - 20].copy_from_slice(&out[20..n]);
        both[n - 20..n - 20 + mapped.len()].copy_from_slice(&mapped);
        let (b, len) = response_with(&both[..n - 20 + mapped.len()]);
        assert_eq!(parse_binding_response(&b[..len]), Ok((TX, addr("203.0.113.1:1"))));
    }

    #[test]
    fn mapped_ipv6_that_holds_ipv4_comes_back_as_ipv4() {
        let mut attr = [0u8; 24];
        attr[0..4].copy_from_slice(&[0x00, 0x01, 0x00, 20]);
        attr[4..8].copy_from_slice(&[0, 2, 0x00, 0x50]);
        attr[8..24].copy_from_slice(&Ipv4Addr::new(192, 0, 2, 33).to_ipv6_mapped().octets());
        let (b, len) = response_with(&attr);
        assert_eq!(parse_binding_response(&b[..len]), Ok((TX, addr("192.0.2.33:80"))));
    }

    #[test]
    fn unknown_attributes_and_trailing_bytes_are_skipped() {
        let mut out = [0u8; 64];
        let n = write_binding_response(&TX, addr("[2001:db8::9]:9"), &mut out).unwrap();
        // An odd-length unknown attribute (padded) in front of the address.
        let mut attrs = [0u8; 64];
        attrs[..8].copy_from_slice(&[0x80, 0x22, 0x00, 0x03, b'a', b'b', b'c', 0]);
        attrs[8..8 + n - 20].copy_from_slice(&out[20..n]);
        let (mut b, len) = response_with(&attrs[..8 + n - 20]);
        b[len..len + 3].copy_from_slice(&[0xff; 3]); // beyond the declared length
        assert_eq!(parse_binding_response(&b[..len + 3]), Ok((TX, addr("[2001:db8::9]:9"))));
    }

    #[test]
    fn truncation_is_an_error() {
        let mut out = [0u8; 64];
        let n = write_binding_response(&TX, addr("[2001:db8::9]:9"), &mut out).unwrap();
        for cut in 0..n {
            let got = parse_binding_response(&out[..cut]);
            let want = if cut < HEADER_LEN { StunError::NotStun } else { StunError::MalformedAttributes };
            assert_eq!(got, Err(want), "cut at {cut}");
        }
        // A declared length that stops inside the attribute.
        out[3] -= 4;
        assert_eq!(parse_binding_response(&out[..n]), Err(StunError::MalformedAttributes));
    }

    #[test]
    fn missing_padding_after_the_last_attribute_is_an_error() {
        let (b, len) = response_with(&[0x80, 0x22, 0x00, 0x03, b'a', b'b', b'c']);
        assert_eq!(parse_binding_response(&b[..len]), Err(StunError::MalformedAttributes));
    }

    #[test]
    fn bad_address_attributes() {
        let cases: [&[u8]; 4] = [
            &[0x00, 0x20, 0x00, 0x08, 0, 3, 0, 0, 1, 2, 3, 4], // unknown family
            &[0x00, 0x20, 0x00, 0x04, 0, 1, 0, 0],             // IPv4 without an address
            &[0x00, 0x01, 0x00, 0x08, 0, 2, 0, 0, 1, 2, 3, 4], // IPv6 with 4 bytes
            &[0x00, 0x01, 0x00, 0x03, 0, 1, 0, 0],             // shorter than its fields
        ];
        for attr in cases {
            let (b, len) = response_with(attr);
            assert_eq!(parse_binding_response(&b[..len]), Err(StunError::MalformedAttributes), "{attr:02x?}");
        }
    }

    #[test]
    fn no_address_is_an_error() {
        let (b, len) =
            response_with(&[0x80, 0x22, 0x00, 0x08, b't', b'a', b'i', b'l', b'n', b'o', b'd', b'e']);
        assert_eq!(parse_binding_response(&b[..len]), Err(StunError::NoAddress));
        let (b, len) = response_with(&[]);
        assert_eq!(parse_binding_response(&b[..len]), Err(StunError::NoAddress));
    }

    #[test]
    fn wrong_class_or_method_is_refused() {
        let mut out = [0u8; 64];
        let n = write_binding_response(&TX, addr("203.0.113.7:1"), &mut out).unwrap();
        for message_type in [0x0001u16, 0x0111, 0x0011, 0x0102] {
            out[0..2].copy_from_slice(&message_type.to_be_bytes());
            assert_eq!(parse_binding_response(&out[..n]), Err(StunError::NotBindingSuccess));
        }
    }

    #[test]
    fn is_stun_rejects_other_traffic() {
        let mut out = [0u8; 64];
        let n = write_binding_request(&TX, &mut out).unwrap();
        assert!(is_stun(&out[..n]));
        assert!(is_stun(&out[..HEADER_LEN]));
        assert!(!is_stun(&out[..HEADER_LEN - 1]));
        let mut top_bits = out;
        top_bits[0] |= 0x40;
        assert!(!is_stun(&top_bits[..n]));
        let mut cookie = out;
        cookie[7] ^= 1;
        assert!(!is_stun(&cookie[..n]));
        // A WireGuard handshake initiation and a disco header are not STUN.
        let mut wireguard = [0u8; 148];
        wireguard[0] = 1;
        wireguard[4..8].copy_from_slice(&[0x9a, 0x3c, 0x01, 0x77]);
        assert!(!is_stun(&wireguard));
        assert!(!is_stun(&crate::disco::MAGIC));
        assert_eq!(parse_binding_response(&top_bits[..n]), Err(StunError::NotStun));
    }
}
