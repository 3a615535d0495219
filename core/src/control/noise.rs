//! Noise IK (`Noise_IK_25519_ChaChaPoly_BLAKE2s`) as Tailscale's control protocol uses it, for the
//! client (initiator) side, plus the transport records that follow.
//!
//! Facts from `ts:control/controlbase/{handshake,conn,messages}.go`:
//! - prologue `"Tailscale Control Protocol v" + <capver in decimal>`; the server's static key is
//!   known in advance (`<- s`);
//! - the initiation carries a 5-byte header (version u16 BE, type 1, length u16 BE), every other
//!   message a 3-byte one (type, length u16 BE);
//! - transport records are type 4, at most 4096 bytes with header, ChaCha20-Poly1305 with empty
//!   associated data and a nonce of four zero bytes followed by a **big-endian** 64-bit counter.
//!   A stock Noise library uses little-endian there and breaks from the second record on.
//!
//! Sans-I/O: the caller supplies randomness (the ephemeral key), bytes in, bytes out.

use blake2::{Blake2s256, Digest};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};

use crate::key::{MachinePublic, PrivateKey, KEY_LEN};

/// The Noise protocol name; 33 bytes, so it is hashed into the initial chaining key.
const PROTOCOL_NAME: &[u8] = b"Noise_IK_25519_ChaChaPoly_BLAKE2s";
/// Prologue prefix; the capability version follows in decimal (`handshake.go`).
const PROLOGUE_PREFIX: &[u8] = b"Tailscale Control Protocol v";

/// Message types (`messages.go`).
pub const MSG_INITIATION: u8 = 1;
pub const MSG_RESPONSE: u8 = 2;
pub const MSG_ERROR: u8 = 3;
pub const MSG_RECORD: u8 = 4;

/// Header of every message but the initiation: type + u16 BE length.
pub const HEADER_LEN: usize = 3;
/// Header of the initiation: version u16 BE + type + u16 BE length.
const INITIATION_HEADER_LEN: usize = 5;
const TAG_LEN: usize = 16;
/// The initiation: header, ephemeral public key, encrypted static key, tag of the empty payload.
pub const INITIATION_LEN: usize = INITIATION_HEADER_LEN + KEY_LEN + KEY_LEN + TAG_LEN + TAG_LEN;
/// The response: header, server ephemeral public key, tag of the empty payload.
pub const RESPONSE_LEN: usize = HEADER_LEN + KEY_LEN + TAG_LEN;
/// Largest record on the wire, header included (`conn.go` `maxMessageSize`).
pub const MAX_RECORD_LEN: usize = 4096;
/// Largest plaintext one record carries.
pub const MAX_PLAINTEXT_LEN: usize = MAX_RECORD_LEN - HEADER_LEN - TAG_LEN;
/// The counter value that must never be used (`handshake.go` `invalidNonce`).
const INVALID_NONCE: u64 = u64::MAX;

/// Why the handshake or a record failed. None of these carries key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NoiseError {
    /// The server answered with an error message (type 3), `len` bytes of unauthenticated text
    /// that follow the header; read them with [`error_message`].
    ServerError { len: usize },
    /// A message of a type that is not allowed here.
    UnexpectedType(u8),
    /// A message whose length field or size is wrong.
    BadLength,
    /// A key agreement gave the all-zero result (a low-order public key).
    WeakKey,
    /// Authentication failed: wrong server key, tampering, or a protocol-version mismatch.
    Decrypt,
    /// The record counter is exhausted; the connection must be replaced.
    NonceExhausted,
    /// The plaintext does not fit one record, or the output buffer is too small.
    TooBig,
}

impl core::fmt::Display for NoiseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NoiseError::ServerError { .. } => f.write_str("control server refused the Noise handshake"),
            NoiseError::UnexpectedType(t) => write!(f, "unexpected Noise message type {t}"),
            NoiseError::BadLength => f.write_str("Noise message has a wrong length"),
            NoiseError::WeakKey => f.write_str("Noise key agreement gave a zero result"),
            NoiseError::Decrypt => f.write_str("Noise message failed authentication"),
            NoiseError::NonceExhausted => f.write_str("Noise record counter exhausted"),
            NoiseError::TooBig => f.write_str("Noise record too big"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for NoiseError {}

/// Curve25519 public key of a private scalar.
pub fn public_key(private: &PrivateKey) -> [u8; KEY_LEN] {
    x25519_dalek::x25519(private.0, x25519_dalek::X25519_BASEPOINT_BYTES)
}

/// The client side after the initiation was built, waiting for the server's response.
pub struct Initiator {
    state: SymmetricState,
    ephemeral: PrivateKey,
    machine: PrivateKey,
}

impl Initiator {
    /// Builds the 101-byte initiation (`-> e, es, s, ss` with an empty payload). `ephemeral` must
    /// be fresh random bytes; it is clamped here.
    pub fn start(
        machine: &PrivateKey,
        server: &MachinePublic,
        ephemeral: [u8; KEY_LEN],
        protocol_version: u16,
    ) -> Result<(Initiator, [u8; INITIATION_LEN]), NoiseError> {
        let ephemeral = PrivateKey::clamped(ephemeral);
        let mut state = SymmetricState::new(protocol_version, &server.0);
        let mut msg = [0u8; INITIATION_LEN];
        msg[..2].copy_from_slice(&protocol_version.to_be_bytes());
        msg[2] = MSG_INITIATION;
        let payload_len = (INITIATION_LEN - INITIATION_HEADER_LEN) as u16;
        msg[3..5].copy_from_slice(&payload_len.to_be_bytes());

        let (e_pub, rest) = msg[INITIATION_HEADER_LEN..].split_at_mut(KEY_LEN);
        let (s_sealed, payload_tag) = rest.split_at_mut(KEY_LEN + TAG_LEN);
        e_pub.copy_from_slice(&public_key(&ephemeral));
        state.mix_hash(e_pub);
        let k = state.mix_dh(&ephemeral, &server.0)?;
        s_sealed[..KEY_LEN].copy_from_slice(&public_key(machine));
        state.encrypt_and_hash(&k, s_sealed);
        let k = state.mix_dh(machine, &server.0)?;
        state.encrypt_and_hash(&k, payload_tag);
        Ok((Initiator { state, ephemeral, machine: machine.clone() }, msg))
    }

    /// How many bytes the response message has in total, judged from its 3-byte header.
    /// An error message (type 3) gives [`NoiseError::ServerError`] with its text length.
    pub fn response_len(header: &[u8; HEADER_LEN]) -> Result<usize, NoiseError> {
        let len = u16::from_be_bytes([header[1], header[2]]) as usize;
        match header[0] {
            MSG_RESPONSE if HEADER_LEN + len == RESPONSE_LEN => Ok(RESPONSE_LEN),
            MSG_RESPONSE => Err(NoiseError::BadLength),
            MSG_ERROR => Err(NoiseError::ServerError { len }),
            other => Err(NoiseError::UnexpectedType(other)),
        }
    }

    /// Processes the response (`<- e, ee, se`) and splits into the transport state.
    pub fn finish(mut self, response: &[u8]) -> Result<Transport, NoiseError> {
        let header: &[u8; HEADER_LEN] =
            response.get(..HEADER_LEN).and_then(|h| h.try_into().ok()).ok_or(NoiseError::BadLength)?;
        if Self::response_len(header)? != response.len() {
            return Err(NoiseError::BadLength);
        }
        let mut server_ephemeral = [0u8; KEY_LEN];
        server_ephemeral.copy_from_slice(&response[HEADER_LEN..HEADER_LEN + KEY_LEN]);
        self.state.mix_hash(&server_ephemeral);
        self.state.mix_dh(&self.ephemeral, &server_ephemeral)?;
        let k = self.state.mix_dh(&self.machine, &server_ephemeral)?;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&response[HEADER_LEN + KEY_LEN..]);
        self.state.decrypt_and_hash(&k, &mut tag)?;
        let (k1, k2) = hkdf2(&self.state.ck, &[]);
        Ok(Transport {
            send: Sealer { cipher: ChaCha20Poly1305::new(Key::from_slice(&k1)), counter: 0 },
            recv: Opener { cipher: ChaCha20Poly1305::new(Key::from_slice(&k2)), counter: 0 },
            handshake_hash: self.state.h,
        })
    }
}

/// The text of a server error message: the bytes after the 3-byte header, lossily as UTF-8 by the
/// caller. Unauthenticated: show it as a hint only.
pub fn error_message(message: &[u8]) -> &[u8] {
    message.get(HEADER_LEN..).unwrap_or(&[])
}

/// Both directions after a completed handshake.
pub struct Transport {
    pub send: Sealer,
    pub recv: Opener,
    /// The final handshake hash (channel binding).
    pub handshake_hash: [u8; 32],
}

/// Encrypts outgoing records.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    counter: u64,
}

impl Sealer {
    /// Writes one record holding `plaintext` into `out` and returns its length. `plaintext` must be
    /// at most [`MAX_PLAINTEXT_LEN`]; `out` at least `plaintext.len() + 19` bytes.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, NoiseError> {
        let total = HEADER_LEN + plaintext.len() + TAG_LEN;
        if plaintext.len() > MAX_PLAINTEXT_LEN || out.len() < total {
            return Err(NoiseError::TooBig);
        }
        let nonce = next_nonce(&mut self.counter)?;
        out[0] = MSG_RECORD;
        out[1..3].copy_from_slice(&((plaintext.len() + TAG_LEN) as u16).to_be_bytes());
        let body = &mut out[HEADER_LEN..HEADER_LEN + plaintext.len()];
        body.copy_from_slice(plaintext);
        let tag = self.cipher.encrypt_in_place_detached(&nonce, &[], body).map_err(|_| NoiseError::TooBig)?;
        out[HEADER_LEN + plaintext.len()..total].copy_from_slice(&tag);
        Ok(total)
    }
}

/// Decrypts incoming records.
pub struct Opener {
    cipher: ChaCha20Poly1305,
    counter: u64,
}

impl Opener {
    /// Total length of the record whose 3-byte header is given.
    pub fn record_len(header: &[u8; HEADER_LEN]) -> Result<usize, NoiseError> {
        if header[0] != MSG_RECORD {
            return Err(NoiseError::UnexpectedType(header[0]));
        }
        let total = HEADER_LEN + u16::from_be_bytes([header[1], header[2]]) as usize;
        if !(HEADER_LEN + TAG_LEN..=MAX_RECORD_LEN).contains(&total) {
            return Err(NoiseError::BadLength);
        }
        Ok(total)
    }

    /// Decrypts one whole record in place and returns the plaintext inside it. After an error the
    /// receive direction is dead: the caller must drop the connection.
    pub fn open<'a>(&mut self, record: &'a mut [u8]) -> Result<&'a [u8], NoiseError> {
        let header: &[u8; HEADER_LEN] =
            record.get(..HEADER_LEN).and_then(|h| h.try_into().ok()).ok_or(NoiseError::BadLength)?;
        if Self::record_len(header)? != record.len() {
            return Err(NoiseError::BadLength);
        }
        let nonce = next_nonce(&mut self.counter)?;
        let body_len = record.len() - HEADER_LEN - TAG_LEN;
        let (body, tag) = record[HEADER_LEN..].split_at_mut(body_len);
        let tag = Tag::clone_from_slice(tag);
        self.cipher.decrypt_in_place_detached(&nonce, &[], body, &tag).map_err(|_| NoiseError::Decrypt)?;
        Ok(body)
    }
}

/// Four zero bytes, then the counter **big-endian** (`conn.go`; not the Noise spec's order).
fn next_nonce(counter: &mut u64) -> Result<Nonce, NoiseError> {
    if *counter == INVALID_NONCE {
        return Err(NoiseError::NonceExhausted);
    }
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    *counter += 1;
    Ok(Nonce::from(nonce))
}

/// Noise's SymmetricState: chaining key and handshake hash.
struct SymmetricState {
    ck: [u8; 32],
    h: [u8; 32],
}

impl SymmetricState {
    fn new(protocol_version: u16, server_static: &[u8; KEY_LEN]) -> Self {
        let h: [u8; 32] = Blake2s256::digest(PROTOCOL_NAME).into();
        let mut state = SymmetricState { ck: h, h };
        let mut digits = [0u8; 5];
        let digits = decimal(protocol_version, &mut digits);
        let mut hasher = Blake2s256::new();
        hasher.update(state.h);
        hasher.update(PROLOGUE_PREFIX);
        hasher.update(digits);
        state.h = hasher.finalize().into();
        state.mix_hash(server_static);
        state
    }

    fn mix_hash(&mut self, data: &[u8]) {
        let mut hasher = Blake2s256::new();
        hasher.update(self.h);
        hasher.update(data);
        self.h = hasher.finalize().into();
    }

    /// MixKey(DH(private, public)): returns the single-use handshake cipher key.
    fn mix_dh(&mut self, private: &PrivateKey, public: &[u8; KEY_LEN]) -> Result<[u8; 32], NoiseError> {
        let shared = x25519_dalek::x25519(private.0, *public);
        if shared == [0; 32] {
            return Err(NoiseError::WeakKey);
        }
        let (ck, k) = hkdf2(&self.ck, &shared);
        self.ck = ck;
        Ok(k)
    }

    /// Encrypts `buf[..len-16]` in place with nonce 0 and AD = h, writes the tag into the last 16
    /// bytes, and mixes the ciphertext into h.
    fn encrypt_and_hash(&mut self, key: &[u8; 32], buf: &mut [u8]) {
        let split = buf.len() - TAG_LEN;
        let (body, tag_out) = buf.split_at_mut(split);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
        // Encryption only fails for inputs beyond ChaCha20's 256 GiB limit; ours are <= 32 bytes.
        if let Ok(tag) = cipher.encrypt_in_place_detached(&Nonce::default(), &self.h, body) {
            tag_out.copy_from_slice(&tag);
        }
        self.mix_hash(buf);
    }

    fn decrypt_and_hash(&mut self, key: &[u8; 32], buf: &mut [u8]) -> Result<(), NoiseError> {
        let mut sealed = [0u8; KEY_LEN + TAG_LEN];
        let sealed = sealed.get_mut(..buf.len()).ok_or(NoiseError::BadLength)?;
        sealed.copy_from_slice(buf);
        let split = buf.len().checked_sub(TAG_LEN).ok_or(NoiseError::BadLength)?;
        let (body, tag) = buf.split_at_mut(split);
        let tag = Tag::clone_from_slice(tag);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
        cipher
            .decrypt_in_place_detached(&Nonce::default(), &self.h, body, &tag)
            .map_err(|_| NoiseError::Decrypt)?;
        self.mix_hash(sealed);
        Ok(())
    }
}

/// HKDF with HMAC-BLAKE2s, two 32-byte outputs, empty info (Noise's `HKDF(ck, ikm, 2)`).
fn hkdf2(salt: &[u8; 32], ikm: &[u8]) -> ([u8; 32], [u8; 32]) {
    let prk = hmac_blake2s(salt, &[ikm]);
    let first = hmac_blake2s(&prk, &[&[1]]);
    let second = hmac_blake2s(&prk, &[&first, &[2]]);
    (first, second)
}

/// HMAC (RFC 2104) over BLAKE2s-256; block size 64, keys here are 32 bytes.
fn hmac_blake2s(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for (i, b) in key.iter().enumerate() {
        ipad[i] ^= b;
        opad[i] ^= b;
    }
    let mut inner = Blake2s256::new();
    inner.update(ipad);
    for part in parts {
        inner.update(part);
    }
    let inner = inner.finalize();
    let mut outer = Blake2s256::new();
    outer.update(opad);
    outer.update(inner);
    outer.finalize().into()
}

/// `n` in decimal without leading zeros, written into `buf`.
fn decimal(mut n: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The responder here is written from the Noise spec, in the test only, on the same
    //! primitives; interop with the Go implementation is proven end to end against a real
    //! Headscale by `tests/e2e/control.sh`.
    use super::*;

    const VERSION: u16 = 115;

    /// The server side of the handshake, enough to check the client against.
    fn respond(
        server: &PrivateKey,
        server_ephemeral: [u8; 32],
        init: &[u8; INITIATION_LEN],
    ) -> ([u8; RESPONSE_LEN], [u8; 32], [u8; 32], [u8; 32]) {
        let version = u16::from_be_bytes([init[0], init[1]]);
        let mut state = SymmetricState::new(version, &public_key(server));
        let e_client: [u8; 32] = init[5..37].try_into().unwrap();
        state.mix_hash(&e_client);
        let k = state.mix_dh(server, &e_client).unwrap();
        let mut s_sealed: [u8; 48] = init[37..85].try_into().unwrap();
        state.decrypt_and_hash(&k, &mut s_sealed).unwrap();
        let client_static: [u8; 32] = s_sealed[..32].try_into().unwrap();
        let k = state.mix_dh(server, &client_static).unwrap();
        let mut tag: [u8; 16] = init[85..101].try_into().unwrap();
        state.decrypt_and_hash(&k, &mut tag).unwrap();

        let e = PrivateKey::clamped(server_ephemeral);
        let mut msg = [0u8; RESPONSE_LEN];
        msg[0] = MSG_RESPONSE;
        msg[1..3].copy_from_slice(&48u16.to_be_bytes());
        msg[3..35].copy_from_slice(&public_key(&e));
        state.mix_hash(&public_key(&e));
        state.mix_dh(&e, &e_client).unwrap();
        let k = state.mix_dh(&e, &client_static).unwrap();
        state.encrypt_and_hash(&k, &mut msg[35..51]);
        let (k1, k2) = hkdf2(&state.ck, &[]);
        (msg, k1, k2, client_static)
    }

    fn keys() -> (PrivateKey, PrivateKey) {
        (PrivateKey::clamped([7; 32]), PrivateKey::clamped([9; 32]))
    }

    #[test]
    fn initiation_has_the_control_header() {
        let (machine, server) = keys();
        let (_, init) =
            Initiator::start(&machine, &MachinePublic(public_key(&server)), [1; 32], VERSION).unwrap();
        assert_eq!(init.len(), 101);
        assert_eq!(&init[..5], &[0, 115, 1, 0, 96]);
    }

    #[test]
    fn handshake_completes_against_a_responder_and_records_flow_both_ways() {
        let (machine, server) = keys();
        let (initiator, init) =
            Initiator::start(&machine, &MachinePublic(public_key(&server)), [1; 32], VERSION).unwrap();
        let (response, k1, k2, client_static) = respond(&server, [2; 32], &init);
        assert_eq!(client_static, public_key(&machine));
        let mut transport = initiator.finish(&response).unwrap();

        // Client -> server, three records so the big-endian counter matters.
        let server_recv = ChaCha20Poly1305::new(Key::from_slice(&k1));
        for i in 0..3u64 {
            let mut out = [0u8; 64];
            let n = transport.send.seal(b"hello", &mut out).unwrap();
            assert_eq!(&out[..3], &[MSG_RECORD, 0, 21]);
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&i.to_be_bytes());
            let (body, tag) = out[3..n].split_at_mut(5);
            let tag = Tag::clone_from_slice(tag);
            server_recv.decrypt_in_place_detached(&Nonce::from(nonce), &[], body, &tag).unwrap();
            assert_eq!(body, b"hello");
        }

        // Server -> client.
        let server_send = ChaCha20Poly1305::new(Key::from_slice(&k2));
        for i in 0..3u64 {
            let mut record = [0u8; 3 + 4 + 16];
            record[0] = MSG_RECORD;
            record[1..3].copy_from_slice(&20u16.to_be_bytes());
            record[3..7].copy_from_slice(b"pong");
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&i.to_be_bytes());
            let tag =
                server_send.encrypt_in_place_detached(&Nonce::from(nonce), &[], &mut record[3..7]).unwrap();
            record[7..].copy_from_slice(&tag);
            assert_eq!(transport.recv.open(&mut record).unwrap(), b"pong");
        }
    }

    #[test]
    fn little_endian_counter_is_rejected_from_the_second_record() {
        let (machine, server) = keys();
        let (initiator, init) =
            Initiator::start(&machine, &MachinePublic(public_key(&server)), [1; 32], VERSION).unwrap();
        let (response, _, k2, _) = respond(&server, [2; 32], &init);
        let mut transport = initiator.finish(&response).unwrap();
        let server_send = ChaCha20Poly1305::new(Key::from_slice(&k2));
        let mut results = [false; 2];
        for (i, ok) in results.iter_mut().enumerate() {
            let mut record = [0u8; 3 + 1 + 16];
            record[0] = MSG_RECORD;
            record[1..3].copy_from_slice(&17u16.to_be_bytes());
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&(i as u64).to_le_bytes());
            let tag =
                server_send.encrypt_in_place_detached(&Nonce::from(nonce), &[], &mut record[3..4]).unwrap();
            record[4..].copy_from_slice(&tag);
            *ok = transport.recv.open(&mut record).is_ok();
        }
        assert_eq!(results, [true, false]);
    }

    #[test]
    fn wrong_server_key_fails_the_response() {
        let (machine, server) = keys();
        let other = PrivateKey::clamped([3; 32]);
        let (initiator, _) =
            Initiator::start(&machine, &MachinePublic(public_key(&other)), [1; 32], VERSION).unwrap();
        // A response computed by a server that believes the client used `server`'s key.
        let (_, init_for_server) =
            Initiator::start(&machine, &MachinePublic(public_key(&server)), [1; 32], VERSION).unwrap();
        let (response, ..) = respond(&server, [2; 32], &init_for_server);
        assert_eq!(initiator.finish(&response).err(), Some(NoiseError::Decrypt));
    }

    #[test]
    fn version_mismatch_fails_authentication() {
        let (machine, server) = keys();
        let (_, mut init) =
            Initiator::start(&machine, &MachinePublic(public_key(&server)), [1; 32], VERSION).unwrap();
        init[..2].copy_from_slice(&116u16.to_be_bytes());
        let version = u16::from_be_bytes([init[0], init[1]]);
        let mut state = SymmetricState::new(version, &public_key(&server));
        let e_client: [u8; 32] = init[5..37].try_into().unwrap();
        state.mix_hash(&e_client);
        let k = state.mix_dh(&server, &e_client).unwrap();
        let mut s_sealed: [u8; 48] = init[37..85].try_into().unwrap();
        assert_eq!(state.decrypt_and_hash(&k, &mut s_sealed), Err(NoiseError::Decrypt));
    }

    #[test]
    fn server_error_message_is_reported_with_its_length() {
        assert_eq!(Initiator::response_len(&[MSG_ERROR, 0, 12]), Err(NoiseError::ServerError { len: 12 }));
        assert_eq!(Initiator::response_len(&[MSG_RESPONSE, 0, 47]), Err(NoiseError::BadLength));
        assert_eq!(Initiator::response_len(&[9, 0, 48]), Err(NoiseError::UnexpectedType(9)));
        assert_eq!(error_message(b"\x03\x00\x02no"), b"no");
    }

    #[test]
    fn record_length_limits() {
        assert_eq!(Opener::record_len(&[MSG_RECORD, 0x0f, 0xfd]), Ok(4096));
        assert_eq!(Opener::record_len(&[MSG_RECORD, 0x0f, 0xfe]), Err(NoiseError::BadLength));
        assert_eq!(Opener::record_len(&[MSG_RECORD, 0, 15]), Err(NoiseError::BadLength));
        assert_eq!(Opener::record_len(&[MSG_RESPONSE, 0, 48]), Err(NoiseError::UnexpectedType(2)));
    }

    #[test]
    fn tampered_record_is_refused() {
        let (machine, server) = keys();
        let (initiator, init) =
            Initiator::start(&machine, &MachinePublic(public_key(&server)), [1; 32], VERSION).unwrap();
        let (response, ..) = respond(&server, [2; 32], &init);
        let mut transport = initiator.finish(&response).unwrap();
        let mut record = [MSG_RECORD, 0, 17, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(transport.recv.open(&mut record), Err(NoiseError::Decrypt));
    }

    #[test]
    fn oversized_plaintext_is_refused() {
        let (machine, server) = keys();
        let (initiator, init) =
            Initiator::start(&machine, &MachinePublic(public_key(&server)), [1; 32], VERSION).unwrap();
        let (response, ..) = respond(&server, [2; 32], &init);
        let mut transport = initiator.finish(&response).unwrap();
        let big = [0u8; MAX_PLAINTEXT_LEN + 1];
        let mut out = [0u8; MAX_RECORD_LEN + 32];
        assert_eq!(transport.send.seal(&big, &mut out), Err(NoiseError::TooBig));
        assert_eq!(transport.send.seal(&big[..MAX_PLAINTEXT_LEN], &mut out), Ok(MAX_RECORD_LEN));
    }

    /// The Go reference as the server: it accepted our initiation and answered; we finish the
    /// handshake with its response and open every record it sent (five and more: the counter is
    /// big-endian past the first record).
    #[test]
    fn go_reference_server_vector() {
        extern crate std;
        use std::vec::Vec;
        let vector = include_str!("testdata/go_server_vector.txt");
        let field = |name: &str| -> Vec<u8> {
            let line = vector
                .lines()
                .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
                .unwrap();
            let hex = &line.as_bytes()[name.len() + 1..];
            hex.chunks(2).map(|p| u8::from_str_radix(core::str::from_utf8(p).unwrap(), 16).unwrap()).collect()
        };
        let (machine, server) = keys();
        assert_eq!(field("server_key"), server.0);
        let (initiator, init) =
            Initiator::start(&machine, &MachinePublic(public_key(&server)), [1; 32], VERSION).unwrap();
        assert_eq!(field("init"), init, "the initiation the Go server accepted");
        let mut transport = initiator.finish(&field("response")).unwrap();

        let mut wire = field("records");
        let mut plaintext = Vec::new();
        let mut records = 0;
        let mut at = 0;
        while at < wire.len() {
            let header: [u8; HEADER_LEN] = wire[at..at + HEADER_LEN].try_into().unwrap();
            let len = Opener::record_len(&header).unwrap();
            plaintext.extend_from_slice(transport.recv.open(&mut wire[at..at + len]).unwrap());
            at += len;
            records += 1;
        }
        assert!(records >= 5, "{records} records");
        assert_eq!(plaintext, field("plaintext"));
    }

    #[test]
    fn decimal_prologue_digits() {
        let mut buf = [0u8; 5];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(115, &mut buf), b"115");
        assert_eq!(decimal(65535, &mut buf), b"65535");
    }
}
