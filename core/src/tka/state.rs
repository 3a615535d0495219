//! The trusted state an AUM chain arrives at, and how one verified AUM changes it
//! (`ts:tka/state.go` `applyVerifiedAUM`).

use heapless::Vec;

use super::aum::{Aum, AumKind, StateView};
use super::cbor::ByteField;
use super::limits::{MAX_DISABLEMENT_VALUES, MAX_KEYS, MAX_KEY_VOTES, MAX_META_BYTES};
use super::{AumHash, TkaError};
use crate::key::NlPublic;

/// Longest public key we keep. The reference stores any length (and such a key can never sign);
/// a longer one makes us refuse the AUM with [`TkaError::Unsupported`].
pub const MAX_PUBLIC_LEN: usize = 32;

/// A key trusted by tailnet lock. Metadata is not kept: no verdict depends on it once the
/// AUM that carried it was validated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TrustedKey {
    public: [u8; MAX_PUBLIC_LEN],
    public_len: u8,
    /// Fork-resolution weight, 1 to 4096.
    pub votes: u16,
}

impl TrustedKey {
    fn from_view(public: ByteField<'_>, votes: u64) -> Result<Self, TkaError> {
        if public.len() > MAX_PUBLIC_LEN {
            return Err(TkaError::Unsupported("trusted key longer than 32 bytes"));
        }
        let mut out = TrustedKey { public: [0; MAX_PUBLIC_LEN], public_len: public.len() as u8, votes: 0 };
        for (o, b) in out.public.iter_mut().zip(public.iter()) {
            *o = b;
        }
        out.votes = u16::try_from(votes).map_err(|_| TkaError::Invalid("key votes above 4096"))?;
        Ok(out)
    }

    /// A trusted ed25519 key (votes 1 to 4096 in a valid state).
    pub fn ed25519(public: [u8; 32], votes: u16) -> Self {
        TrustedKey { public, public_len: 32, votes }
    }

    /// The key ID, which for ed25519 keys is the public key.
    pub fn id(&self) -> &[u8] {
        &self.public[..usize::from(self.public_len)]
    }

    /// The ed25519 public key, if this key is 32 bytes long (only then can it sign).
    pub fn ed25519_public(&self) -> Option<[u8; 32]> {
        (usize::from(self.public_len) == 32).then_some(self.public)
    }

    /// As a tailnet-lock public key (`tlpub:` in the CLI), if it is 32 bytes long.
    pub fn nl_public(&self) -> Option<NlPublic> {
        self.ed25519_public().map(NlPublic)
    }
}

/// Tailnet-lock state at one AUM: trusted keys, disablement values, the state IDs, and the
/// hash of the AUM it was computed at. About 20 KiB at full capacity.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct State {
    pub last_aum_hash: Option<AumHash>,
    pub disablement_values: Vec<[u8; 32], MAX_DISABLEMENT_VALUES>,
    pub keys: Vec<TrustedKey, MAX_KEYS>,
    pub state_id1: u64,
    pub state_id2: u64,
}

impl State {
    /// The trusted key with this ID.
    pub fn key(&self, id: &ByteField<'_>) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| id.eq_bytes(k.id()))
    }

    /// The trusted key with this 32-byte ID.
    pub fn key_by_id(&self, id: &[u8]) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.id() == id)
    }

    /// The state a checkpoint describes (validated by the caller), at `hash`.
    pub fn from_checkpoint(view: &StateView<'_>, hash: AumHash) -> Result<Self, TkaError> {
        let mut state = State { state_id1: view.state_id1, state_id2: view.state_id2, ..State::default() };
        for value in view.disablement_values() {
            let value =
                value.and_then(|v| v.to_array::<32>()).ok_or(TkaError::Invalid("disablement value"))?;
            state
                .disablement_values
                .push(value)
                .map_err(|_| TkaError::Invalid("too many disablement values"))?;
        }
        for key in view.keys() {
            let key = TrustedKey::from_view(key.id(), key.votes)?;
            state.keys.push(key).map_err(|_| TkaError::TooManyKeys)?;
        }
        state.last_aum_hash = Some(hash);
        Ok(state)
    }

    /// Applies an AUM whose structure and signatures were checked, in place. On error the state
    /// is unchanged.
    pub fn apply(&mut self, aum: &Aum<'_>, hash: AumHash) -> Result<(), TkaError> {
        if let Some(last) = &self.last_aum_hash {
            if !aum.prev.is_some_and(|p| p.eq_bytes(&last.0)) {
                return Err(TkaError::WrongParent);
            }
        }
        match aum.kind {
            AumKind::Checkpoint => {
                let view = aum.state.as_ref().ok_or(TkaError::Invalid("checkpoint without a state"))?;
                if view.state_id1 != self.state_id1 || view.state_id2 != self.state_id2 {
                    return Err(TkaError::Invalid("checkpoint changes the state IDs"));
                }
                *self = State::from_checkpoint(view, hash)?;
                return Ok(());
            }
            AumKind::AddKey => {
                let key = aum.key.as_ref().ok_or(TkaError::Invalid("AddKey without a key"))?;
                if self.key(&key.id()).is_some() {
                    return Err(TkaError::KeyExists);
                }
                let key = TrustedKey::from_view(key.id(), key.votes)?;
                self.keys.push(key).map_err(|_| TkaError::Unsupported("more than 512 trusted keys"))?;
            }
            AumKind::UpdateKey => {
                let id = aum.key_id.unwrap_or(ByteField::Str(&[]));
                let index = self.keys.iter().position(|k| id.eq_bytes(k.id())).ok_or(TkaError::NoSuchKey)?;
                let votes = aum.votes.unwrap_or(u64::from(self.keys[index].votes));
                // The key with its new votes and metadata must still be a valid key.
                if votes == 0 || votes > MAX_KEY_VOTES {
                    return Err(TkaError::Invalid("updated key has invalid votes"));
                }
                if aum.meta.is_some_and(|m| m.byte_count() > MAX_META_BYTES) {
                    return Err(TkaError::Invalid("updated key metadata above 512 bytes"));
                }
                self.keys[index].votes = votes as u16;
            }
            AumKind::RemoveKey => {
                let id = aum.key_id.unwrap_or(ByteField::Str(&[]));
                let index = self.keys.iter().position(|k| id.eq_bytes(k.id())).ok_or(TkaError::NoSuchKey)?;
                self.keys.remove(index);
            }
            AumKind::NoOp | AumKind::Invalid | AumKind::Unknown(_) => {}
        }
        self.last_aum_hash = Some(hash);
        Ok(())
    }

    /// True if `secret` derives (Argon2i, see [`super::disablement`]) to one of the state's
    /// disablement values.
    #[cfg(feature = "std")]
    pub fn check_disablement(&self, secret: &[u8]) -> bool {
        let derived = super::disablement::kdf(secret);
        // Compare all values without an early exit, as the reference does in constant time.
        self.disablement_values.iter().fold(false, |found, v| {
            found | (v.iter().zip(derived.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
        })
    }
}
