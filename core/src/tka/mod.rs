//! Tailnet lock (TKA): verifying, without trusting the coordination server, that every peer's
//! node key was signed by a key the tailnet trusts.
//!
//! Facts from `tailscale.com/tka` (pinned v1.101.0-pre in tests/interop), checked against its
//! source; cross-checked both ways by `tests/interop/tka-check`.
//!
//! - [`aum`]: Authority Update Messages: zero-copy decoding with the reference decoder's rules,
//!   the canonical (CTAP2) re-encoding that hashes are taken over, validation, signatures; and
//!   [`aum::build`] to make them.
//! - [`State`] and [`Authority`]: applying AUMs from a checkpoint, fork resolution, with AUMs
//!   in a caller's [`AumStore`].
//! - [`sig`]: node-key signatures (Direct, Rotation, Credential, wrapped auth keys).
//! - [`filter`]: which peers are authorized, and whether we are locked out.
//! - [`disablement`]: `disablement-secret:` texts; the Argon2i KDF only with `std` (16 MiB).
//! - [`sync`]: the sync protocol's offers and the AUMs a remote lacks (`ts:tka/sync.go`).
//! - [`compact`]: dropping old AUMs (`Compact`, `ts:tka/tailchonk.go`), with a caller's
//!   scratch table instead of the reference's map.
//!
//! Memory: a [`State`] holds up to [`limits::MAX_KEYS`] keys in about 20 KiB; `inform` keeps a
//! second one on the stack while it works, and so do the sync and compaction walks.
//!
//! Known deliberate differences from the reference (inputs it accepts and we refuse, all of
//! which a real tailnet never produces): a trusted key whose public key is longer than 32 bytes;
//! AddKey beyond 512 keys. Nil elements inside the Signatures, Keys or DisablementValues arrays,
//! and a checkpoint LastAUMHash that is neither nil nor bytes, are refused while decoding rather
//! than by validation one step later as in the reference: same verdict, earlier.

pub mod aum;
mod cbor;
pub mod chain;
pub mod compact;
pub mod disablement;
pub mod filter;
pub mod limits;
pub mod revoke;
pub mod sig;
pub mod state;
#[cfg(feature = "std")]
pub mod store;
pub mod sync;
#[cfg(all(test, feature = "std"))]
mod testchain;
pub mod verify;

use core::fmt;

pub use aum::{Aum, AumKind};
pub use cbor::{ByteField, CborError, Sink};
pub use chain::{AumStore, Authority};
pub use compact::{CompactableStore, CompactionOptions, Mark, COMPACTION_DEFAULTS};
pub use sig::{NodeKeySignature, RotationDetails, SigKind};
pub use state::{State, TrustedKey};
pub use sync::{missing_aums, sync_offer, SyncOffer};

/// BLAKE2s-256 of an AUM's canonical encoding. Text form: unpadded RFC 4648 base32 (52
/// characters), as `TKAInfo.Head` and `MapRequest.TKAHead` carry it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AumHash(pub [u8; 32]);

const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

impl AumHash {
    /// Parses the 52-character base32 form (no padding; trailing bits must be zero).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.as_bytes();
        if text.len() != 52 {
            return None;
        }
        let mut out = [0u8; 32];
        let (mut acc, mut bits, mut n) = (0u32, 0u32, 0usize);
        for &c in text {
            let v = BASE32_ALPHABET.iter().position(|&a| a == c)? as u32;
            acc = (acc << 5) | v;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                *out.get_mut(n)? = (acc >> bits) as u8;
                n += 1;
                acc &= (1 << bits) - 1;
            }
        }
        (acc == 0).then_some(AumHash(out))
    }
}

impl fmt::Display for AumHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mut acc, mut bits) = (0u32, 0u32);
        for &b in &self.0 {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                fmt::Write::write_char(f, BASE32_ALPHABET[((acc >> bits) & 31) as usize] as char)?;
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            fmt::Write::write_char(f, BASE32_ALPHABET[((acc << (5 - bits)) & 31) as usize] as char)?;
        }
        Ok(())
    }
}

impl fmt::Debug for AumHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why an AUM, a chain step or a node-key signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TkaError {
    /// Not CBOR the reference would decode into this structure.
    Cbor(CborError),
    /// Decoded, but breaks a rule of the protocol.
    Invalid(&'static str),
    /// An AUM without signatures.
    Unsigned,
    /// A signature by a key not trusted in the state it is checked against.
    UntrustedSigner,
    /// A signature that does not verify.
    BadSignature,
    /// An AUM whose parent is not the head of the state it is applied to.
    WrongParent,
    /// A node-key signature for another node key, or a malformed binary node key.
    WrongNodeKey,
    /// AddKey of a key already trusted.
    KeyExists,
    /// RemoveKey or UpdateKey of a key not trusted.
    NoSuchKey,
    /// A checkpoint with more than 512 keys.
    TooManyKeys,
    /// An AUM the store does not have.
    NotFound,
    /// The AUM tree is deeper than the reference walks.
    IterationLimit,
    /// The store is full.
    StoreFull,
    /// A remote's sync offer shares no AUM with our chain (`ErrNoIntersection`).
    NoIntersection,
    /// The output buffer is too small.
    BufferTooSmall,
    /// Valid for the reference but beyond our fixed capacities (see the module docs).
    Unsupported(&'static str),
}

impl From<CborError> for TkaError {
    fn from(e: CborError) -> Self {
        TkaError::Cbor(e)
    }
}

impl fmt::Display for TkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TkaError::Cbor(e) => write!(f, "tailnet lock: {e}"),
            TkaError::Invalid(why) => write!(f, "tailnet lock: invalid: {why}"),
            TkaError::Unsigned => f.write_str("tailnet lock: unsigned AUM"),
            TkaError::UntrustedSigner => f.write_str("tailnet lock: signed by a key that is not trusted"),
            TkaError::BadSignature => f.write_str("tailnet lock: signature does not verify"),
            TkaError::WrongParent => f.write_str("tailnet lock: AUM does not follow the current head"),
            TkaError::WrongNodeKey => f.write_str("tailnet lock: signature is for another node key"),
            TkaError::KeyExists => f.write_str("tailnet lock: key is already trusted"),
            TkaError::NoSuchKey => f.write_str("tailnet lock: no such trusted key"),
            TkaError::TooManyKeys => f.write_str("tailnet lock: too many keys"),
            TkaError::NotFound => f.write_str("tailnet lock: AUM not found"),
            TkaError::IterationLimit => f.write_str("tailnet lock: AUM chain too long to walk"),
            TkaError::StoreFull => f.write_str("tailnet lock: AUM store is full"),
            TkaError::NoIntersection => f.write_str("tailnet lock: sync offer shares no AUM with our chain"),
            TkaError::BufferTooSmall => f.write_str("tailnet lock: buffer too small"),
            TkaError::Unsupported(why) => write!(f, "tailnet lock: unsupported: {why}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TkaError {}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn aum_hashes_print_as_unpadded_base32() {
        let h = AumHash([0; 32]);
        assert_eq!(h.to_string(), "A".repeat(52));
        let h = AumHash([0xff; 32]);
        // 256 bits: 51 full characters and one of 1 bit, zero-padded.
        assert_eq!(h.to_string(), std::format!("{}Q", "7".repeat(51)));
        let mut raw = [0u8; 32];
        raw.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8 * 7);
        let h = AumHash(raw);
        assert_eq!(AumHash::parse(&h.to_string()), Some(h));
        assert_eq!(AumHash::parse(&std::format!("{}R", "7".repeat(51))), None, "non-zero trailing bits");
        assert_eq!(AumHash::parse("AAAA"), None);
    }
}
