//! Authority Update Messages: the zero-copy view [`Aum`], its canonical re-encoding, hashes,
//! static validation and signature checks (`ts:tka/aum.go`, `ts:tka/key.go`).

use super::cbor::{
    self, decode_struct, write_bytes, write_head, write_null, write_text, ByteField, CborError, HashSink,
    Reader, Sink, MAJOR_ARRAY, MAJOR_MAP, MAJOR_SIMPLE, MAJOR_UINT,
};
use super::limits::{MAX_DISABLEMENT_VALUES, MAX_KEYS, MAX_KEY_VOTES, MAX_META_BYTES};
use super::state::MAX_PUBLIC_LEN;
use super::{verify, AumHash, TkaError};

/// `AUMKind` (`ts:tka/aum.go`); the numbers are fixed by the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AumKind {
    Invalid,
    AddKey,
    RemoveKey,
    NoOp,
    UpdateKey,
    Checkpoint,
    /// A kind from a newer version: accepted and applied as a no-op, as the reference does.
    Unknown(u8),
}

impl AumKind {
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => AumKind::Invalid,
            1 => AumKind::AddKey,
            2 => AumKind::RemoveKey,
            3 => AumKind::NoOp,
            4 => AumKind::UpdateKey,
            5 => AumKind::Checkpoint,
            other => AumKind::Unknown(other),
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            AumKind::Invalid => 0,
            AumKind::AddKey => 1,
            AumKind::RemoveKey => 2,
            AumKind::NoOp => 3,
            AumKind::UpdateKey => 4,
            AumKind::Checkpoint => 5,
            AumKind::Unknown(v) => v,
        }
    }

    /// The name the reference prints (`AUMKind.String`).
    pub fn name(self) -> &'static str {
        match self {
            AumKind::Invalid => "invalid",
            AumKind::AddKey => "add-key",
            AumKind::RemoveKey => "remove-key",
            AumKind::NoOp => "no-op",
            AumKind::UpdateKey => "update-key",
            AumKind::Checkpoint => "checkpoint",
            AumKind::Unknown(_) => "unknown",
        }
    }
}

/// `KeyKind` 1: the only key kind, an ed25519 public key (`ts:tka/key.go`).
pub const KEY_KIND_25519: u64 = 1;

// CBOR map keys (`keyasint` tags in `ts:tka/aum.go`, `key.go`, `state.go`, `ts:types/tkatype`).
const AUM_KIND: u64 = 1;
const AUM_PREV: u64 = 2;
const AUM_KEY: u64 = 3;
const AUM_KEY_ID: u64 = 4;
const AUM_STATE: u64 = 5;
const AUM_VOTES: u64 = 6;
const AUM_META: u64 = 7;
const AUM_SIGNATURES: u64 = 23;
const AUM_FIELDS: &[u64] =
    &[AUM_KIND, AUM_PREV, AUM_KEY, AUM_KEY_ID, AUM_STATE, AUM_VOTES, AUM_META, AUM_SIGNATURES];

const KEY_KIND: u64 = 1;
const KEY_VOTES: u64 = 2;
const KEY_PUBLIC: u64 = 3;
const KEY_META: u64 = 12;
const KEY_FIELDS: &[u64] = &[KEY_KIND, KEY_VOTES, KEY_PUBLIC, KEY_META];

const STATE_LAST: u64 = 1;
const STATE_DISABLEMENT: u64 = 2;
const STATE_KEYS: u64 = 3;
const STATE_ID1: u64 = 4;
const STATE_ID2: u64 = 5;
const STATE_FIELDS: &[u64] = &[STATE_LAST, STATE_DISABLEMENT, STATE_KEYS, STATE_ID1, STATE_ID2];

const SIG_KEY_ID: u64 = 1;
const SIG_SIGNATURE: u64 = 2;
const SIG_FIELDS: &[u64] = &[SIG_KEY_ID, SIG_SIGNATURE];

/// A decoded AUM, borrowing the bytes it was read from. `None` means the field was absent or
/// nil; `Some` of an empty value is kept apart because the reference's validation tells them
/// apart even where the encoding does not.
#[derive(Clone, Copy, Debug)]
pub struct Aum<'a> {
    pub kind: AumKind,
    pub prev: Option<ByteField<'a>>,
    pub key: Option<KeyView<'a>>,
    pub key_id: Option<ByteField<'a>>,
    pub state: Option<StateView<'a>>,
    pub votes: Option<u64>,
    pub meta: Option<Meta<'a>>,
    pub signatures: Option<Signatures<'a>>,
}

/// A `Key` map inside an AddKey AUM or a checkpoint.
#[derive(Clone, Copy, Debug)]
pub struct KeyView<'a> {
    pub kind: u64,
    pub votes: u64,
    pub public: Option<ByteField<'a>>,
    pub meta: Option<Meta<'a>>,
}

/// The `State` map of a checkpoint.
#[derive(Clone, Copy, Debug)]
pub struct StateView<'a> {
    /// A last AUM hash, which validation refuses inside a checkpoint. Kept (cut or zero-padded
    /// to 32 bytes, as the reference reads it into an array) only to re-encode it exactly.
    pub last_aum_hash: Option<[u8; 32]>,
    pub disablement_values: Option<ArrayView<'a>>,
    pub keys: Option<ArrayView<'a>>,
    pub state_id1: u64,
    pub state_id2: u64,
}

/// The encoded items of an array that was fully checked when it was read.
#[derive(Clone, Copy, Debug)]
pub struct ArrayView<'a> {
    items: &'a [u8],
    pub len: usize,
}

/// A `map[string]string` (key metadata): encoded pairs, checked when read.
#[derive(Clone, Copy, Debug)]
pub struct Meta<'a> {
    pairs: &'a [u8],
    pub len: usize,
}

/// The `Signatures` array of an AUM.
#[derive(Clone, Copy, Debug)]
pub struct Signatures<'a>(ArrayView<'a>);

/// One AUM signature: the signer's key ID and an ed25519 signature over the AUM's SigHash.
#[derive(Clone, Copy, Debug)]
pub struct AumSignature<'a> {
    pub key_id: Option<ByteField<'a>>,
    pub signature: Option<ByteField<'a>>,
}

impl<'a> Aum<'a> {
    /// Decodes an AUM with the reference decoder's rules. Structure only: call
    /// [`Aum::static_validate`] before trusting the contents.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, TkaError> {
        cbor::check_well_formed(bytes)?;
        let mut r = Reader::new(bytes, 0);
        let mut aum = Aum {
            kind: AumKind::Invalid,
            prev: None,
            key: None,
            key_id: None,
            state: None,
            votes: None,
            meta: None,
            signatures: None,
        };
        decode_struct(&mut r, AUM_FIELDS, |field, r| {
            match field {
                AUM_KIND => aum.kind = AumKind::from_u8(r.uint(u64::from(u8::MAX))? as u8),
                AUM_PREV => aum.prev = r.byte_field()?,
                AUM_KEY => aum.key = nil_or(r, KeyView::decode)?,
                AUM_KEY_ID => aum.key_id = r.byte_field()?,
                AUM_STATE => aum.state = nil_or(r, StateView::decode)?,
                AUM_VOTES => aum.votes = nil_or(r, |r| r.uint(u64::MAX))?,
                AUM_META => aum.meta = nil_or(r, Meta::decode)?,
                _ => {
                    aum.signatures = nil_or(r, |r| ArrayView::decode(r, AumSignature::check).map(Signatures))?
                }
            }
            Ok(())
        })?;
        Ok(aum)
    }

    /// The parent hash, if there is one. Like the reference, a parent of the wrong length is
    /// cut or zero-padded to 32 bytes here; applying such an AUM then fails the exact comparison.
    pub fn parent(&self) -> Option<AumHash> {
        let prev = self.prev.filter(|p| !p.is_empty())?;
        let mut out = [0u8; 32];
        for (o, b) in out.iter_mut().zip(prev.iter()) {
            *o = b;
        }
        Some(AumHash(out))
    }

    /// BLAKE2s-256 over the canonical encoding, signatures included.
    pub fn hash(&self) -> AumHash {
        let mut h = HashSink(blake2::Blake2s256::default());
        self.encode(&mut h, true);
        AumHash(blake2::Digest::finalize(h.0).into())
    }

    /// BLAKE2s-256 over the canonical encoding without signatures: what signers sign.
    pub fn sig_hash(&self) -> [u8; 32] {
        let mut h = HashSink(blake2::Blake2s256::default());
        self.encode(&mut h, false);
        blake2::Digest::finalize(h.0).into()
    }

    /// Writes the CTAP2 canonical encoding the reference would produce for this AUM.
    pub fn encode(&self, out: &mut impl Sink, with_signatures: bool) {
        self.encode_with(out, with_signatures, None);
    }

    /// This AUM with one more signature after its own (co-signing a recovery AUM, `tailscale
    /// lock revoke-keys --cosign`): everything else byte for byte, so earlier signatures, which
    /// cover [`Aum::sig_hash`], stay valid.
    pub fn encode_adding_signature(&self, out: &mut impl Sink, key_id: &[u8; 32], signature: &[u8; 64]) {
        self.encode_with(out, true, Some((key_id, signature)));
    }

    fn encode_with(&self, out: &mut impl Sink, with_signatures: bool, extra: Option<(&[u8; 32], &[u8; 64])>) {
        let key_id = self.key_id.filter(|k| !k.is_empty());
        let meta = self.meta.filter(|m| m.len > 0);
        let sigs = self.signatures.filter(|s| with_signatures && s.0.len > 0);
        let n = 2
            + self.key.is_some() as u64
            + key_id.is_some() as u64
            + self.state.is_some() as u64
            + self.votes.is_some() as u64
            + meta.is_some() as u64
            + (sigs.is_some() || extra.is_some()) as u64;
        write_head(out, MAJOR_MAP, n);
        write_head(out, MAJOR_UINT, AUM_KIND);
        write_head(out, MAJOR_UINT, u64::from(self.kind.to_u8()));
        write_head(out, MAJOR_UINT, AUM_PREV);
        encode_byte_field(out, self.prev);
        if let Some(key) = &self.key {
            write_head(out, MAJOR_UINT, AUM_KEY);
            key.encode(out);
        }
        if let Some(id) = key_id {
            write_head(out, MAJOR_UINT, AUM_KEY_ID);
            id.encode(out);
        }
        if let Some(state) = &self.state {
            write_head(out, MAJOR_UINT, AUM_STATE);
            state.encode(out);
        }
        if let Some(votes) = self.votes {
            write_head(out, MAJOR_UINT, AUM_VOTES);
            write_head(out, MAJOR_UINT, votes);
        }
        if let Some(meta) = meta {
            write_head(out, MAJOR_UINT, AUM_META);
            meta.encode(out);
        }
        if sigs.is_some() || extra.is_some() {
            write_head(out, MAJOR_UINT, AUM_SIGNATURES);
            let count = sigs.map_or(0, |s| s.0.len) + extra.is_some() as usize;
            write_head(out, MAJOR_ARRAY, count as u64);
            for sig in sigs.iter().flat_map(|s| s.iter()) {
                sig.encode(out);
            }
            if let Some((id, signature)) = extra {
                write_head(out, MAJOR_MAP, 2);
                write_head(out, MAJOR_UINT, SIG_KEY_ID);
                write_bytes(out, id);
                write_head(out, MAJOR_UINT, SIG_SIGNATURE);
                write_bytes(out, signature);
            }
        }
    }

    /// The reference's `StaticValidate`: which fields each kind may carry, and the limits.
    pub fn static_validate(&self) -> Result<(), TkaError> {
        if let Some(key) = &self.key {
            key.static_validate()?;
        }
        if self.prev.is_some_and(|p| p.is_empty()) {
            return Err(TkaError::Invalid("an absent parent must be nil, not empty"));
        }
        for sig in self.signatures.iter().flat_map(|s| s.iter()) {
            let id_ok = sig.key_id.is_some_and(|k| k.len() == 32);
            let sig_ok = sig.signature.is_some_and(|s| s.len() == 64);
            if !id_ok || !sig_ok {
                return Err(TkaError::Invalid("signature with a malformed key ID or signature"));
            }
        }
        if let Some(state) = &self.state {
            state.static_validate()?;
        }
        let others_absent = |key_id: bool, key: bool, state: bool, votes_meta: bool| {
            (key_id || self.key_id.is_none())
                && (key || self.key.is_none())
                && (state || self.state.is_none())
                && (votes_meta || (self.votes.is_none() && self.meta.is_none()))
        };
        let has_key_id = self.key_id.is_some_and(|k| !k.is_empty());
        match self.kind {
            AumKind::AddKey if self.key.is_none() => Err(TkaError::Invalid("AddKey without a key")),
            AumKind::AddKey if !others_absent(false, true, false, false) => {
                Err(TkaError::Invalid("AddKey may only carry a key"))
            }
            AumKind::RemoveKey if !has_key_id => Err(TkaError::Invalid("RemoveKey without a key ID")),
            AumKind::RemoveKey if !others_absent(true, false, false, false) => {
                Err(TkaError::Invalid("RemoveKey may only carry a key ID"))
            }
            AumKind::UpdateKey if !has_key_id => Err(TkaError::Invalid("UpdateKey without a key ID")),
            AumKind::UpdateKey if self.votes.is_none() && self.meta.is_none() => {
                Err(TkaError::Invalid("UpdateKey changes neither votes nor metadata"))
            }
            AumKind::UpdateKey if !others_absent(true, false, false, true) => {
                Err(TkaError::Invalid("UpdateKey may only carry a key ID, votes and metadata"))
            }
            AumKind::Checkpoint if self.state.is_none() => {
                Err(TkaError::Invalid("Checkpoint without a state"))
            }
            AumKind::Checkpoint if !others_absent(false, false, true, false) => {
                Err(TkaError::Invalid("Checkpoint may only carry a state"))
            }
            _ => Ok(()),
        }
    }

    /// Signature weight against `state`: the votes of the distinct trusted keys that signed.
    /// Signatures by unknown keys count nothing. Used to resolve forks.
    pub fn weight(&self, state: &super::State) -> u64 {
        let mut weight = 0u64;
        let sigs = self.signatures.map(|s| s.iter());
        for (i, sig) in sigs.into_iter().flatten().enumerate() {
            let Some(id) = sig.key_id else { continue };
            let Some(key) = state.key(&id) else { continue };
            let counted_before = self
                .signatures
                .iter()
                .flat_map(|s| s.iter())
                .take(i)
                .any(|earlier| earlier.key_id.is_some_and(|e| e.same_as(&id)));
            if !counted_before {
                weight += u64::from(key.votes);
            }
        }
        weight
    }

    /// The reference's `aumVerify` minus the parent check: at least one signature, and every
    /// signature by a key trusted in `state` and valid under ZIP-215 rules over the SigHash.
    /// Also refuses removing the last trusted key.
    pub fn verify_signatures(&self, state: &super::State) -> Result<(), TkaError> {
        let sigs = self.signatures.filter(|s| s.0.len > 0).ok_or(TkaError::Unsigned)?;
        let sig_hash = self.sig_hash();
        for sig in sigs.iter() {
            let id = sig.key_id.ok_or(TkaError::UntrustedSigner)?;
            let key = state.key(&id).ok_or(TkaError::UntrustedSigner)?;
            let public = key.ed25519_public().ok_or(TkaError::BadSignature)?;
            let signature = sig.signature.and_then(|s| s.to_array::<64>()).ok_or(TkaError::BadSignature)?;
            if !verify::zip215(&public, &sig_hash, &signature) {
                return Err(TkaError::BadSignature);
            }
        }
        if self.kind == AumKind::RemoveKey && state.keys.len() == 1 {
            if let (Some(only), Some(id)) = (state.keys.first(), self.key_id) {
                if id.eq_bytes(only.id()) {
                    return Err(TkaError::Invalid("cannot remove the last trusted key"));
                }
            }
        }
        Ok(())
    }
}

fn nil_or<'a, T>(
    r: &mut Reader<'a>,
    decode: impl FnOnce(&mut Reader<'a>) -> Result<T, CborError>,
) -> Result<Option<T>, CborError> {
    if r.peek()?.is_nil() {
        r.head()?;
        return Ok(None);
    }
    decode(r).map(Some)
}

fn encode_byte_field(out: &mut impl Sink, field: Option<ByteField<'_>>) {
    match field {
        Some(b) => b.encode(out),
        None => write_null(out),
    }
}

impl<'a> KeyView<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, CborError> {
        let mut key = KeyView { kind: 0, votes: 0, public: None, meta: None };
        decode_struct(r, KEY_FIELDS, |field, r| {
            match field {
                KEY_KIND => key.kind = r.uint(u64::from(u8::MAX))?,
                KEY_VOTES => key.votes = r.uint(u64::MAX)?,
                KEY_PUBLIC => key.public = r.byte_field()?,
                _ => key.meta = nil_or(r, Meta::decode)?,
            }
            Ok(())
        })?;
        Ok(key)
    }

    fn encode(&self, out: &mut impl Sink) {
        let meta = self.meta.filter(|m| m.len > 0);
        write_head(out, MAJOR_MAP, 3 + meta.is_some() as u64);
        write_head(out, MAJOR_UINT, KEY_KIND);
        write_head(out, MAJOR_UINT, self.kind);
        write_head(out, MAJOR_UINT, KEY_VOTES);
        write_head(out, MAJOR_UINT, self.votes);
        write_head(out, MAJOR_UINT, KEY_PUBLIC);
        encode_byte_field(out, self.public);
        if let Some(meta) = meta {
            write_head(out, MAJOR_UINT, KEY_META);
            meta.encode(out);
        }
    }

    /// The reference's `Key.StaticValidate`. Note that it does not check the public key's
    /// length: a key of another length can be trusted but can never sign.
    pub fn static_validate(&self) -> Result<(), TkaError> {
        if self.votes > MAX_KEY_VOTES {
            return Err(TkaError::Invalid("key votes above 4096"));
        }
        if self.votes == 0 {
            return Err(TkaError::Invalid("key votes must be non-zero"));
        }
        if self.meta.is_some_and(|m| m.byte_count() > MAX_META_BYTES) {
            return Err(TkaError::Invalid("key metadata above 512 bytes"));
        }
        if self.kind != KEY_KIND_25519 {
            return Err(TkaError::Invalid("unknown key kind"));
        }
        Ok(())
    }

    /// The key ID: for 25519 keys, the public key itself (nil reads as empty).
    pub fn id(&self) -> ByteField<'a> {
        self.public.unwrap_or(ByteField::Str(&[]))
    }
}

impl<'a> StateView<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, CborError> {
        let mut state = StateView {
            last_aum_hash: None,
            disablement_values: None,
            keys: None,
            state_id1: 0,
            state_id2: 0,
        };
        decode_struct(r, STATE_FIELDS, |field, r| {
            match field {
                STATE_LAST => {
                    state.last_aum_hash = r.byte_field()?.map(|b| {
                        let mut out = [0u8; 32];
                        out.iter_mut().zip(b.iter()).for_each(|(o, v)| *o = v);
                        out
                    })
                }
                STATE_DISABLEMENT => {
                    state.disablement_values =
                        nil_or(r, |r| ArrayView::decode(r, |r| r.byte_field().map(|_| ())))?
                }
                STATE_KEYS => {
                    state.keys = nil_or(r, |r| ArrayView::decode(r, |r| KeyView::decode(r).map(|_| ())))?
                }
                STATE_ID1 => state.state_id1 = r.uint(u64::MAX)?,
                _ => state.state_id2 = r.uint(u64::MAX)?,
            }
            Ok(())
        })?;
        Ok(state)
    }

    fn encode(&self, out: &mut impl Sink) {
        let n = 3 + (self.state_id1 != 0) as u64 + (self.state_id2 != 0) as u64;
        write_head(out, MAJOR_MAP, n);
        write_head(out, MAJOR_UINT, STATE_LAST);
        match &self.last_aum_hash {
            Some(h) => write_bytes(out, h),
            None => write_null(out),
        }
        write_head(out, MAJOR_UINT, STATE_DISABLEMENT);
        match self.disablement_values {
            Some(values) => {
                write_head(out, MAJOR_ARRAY, values.len as u64);
                values.byte_fields().for_each(|v| encode_byte_field(out, v));
            }
            None => write_null(out),
        }
        write_head(out, MAJOR_UINT, STATE_KEYS);
        match self.keys {
            Some(keys) => {
                write_head(out, MAJOR_ARRAY, keys.len as u64);
                keys.keys().for_each(|k| k.encode(out));
            }
            None => write_null(out),
        }
        if self.state_id1 != 0 {
            write_head(out, MAJOR_UINT, STATE_ID1);
            write_head(out, MAJOR_UINT, self.state_id1);
        }
        if self.state_id2 != 0 {
            write_head(out, MAJOR_UINT, STATE_ID2);
            write_head(out, MAJOR_UINT, self.state_id2);
        }
    }

    /// The reference's `staticValidateCheckpoint`.
    pub fn static_validate(&self) -> Result<(), TkaError> {
        if self.last_aum_hash.is_some() {
            return Err(TkaError::Invalid("a checkpoint may not name a parent AUM"));
        }
        let values = self.disablement_values.map_or(0, |v| v.len);
        if values == 0 {
            return Err(TkaError::Invalid("a checkpoint needs a disablement value"));
        }
        if values > MAX_DISABLEMENT_VALUES {
            return Err(TkaError::Invalid("too many disablement values"));
        }
        for (i, v) in self.disablement_values().enumerate() {
            if v.is_none_or(|v| v.len() != 32) {
                return Err(TkaError::Invalid("disablement value is not 32 bytes"));
            }
            let v = v.unwrap_or(ByteField::Str(&[]));
            if self.disablement_values().take(i).any(|e| e.is_some_and(|e| e.same_as(&v))) {
                return Err(TkaError::Invalid("duplicate disablement value"));
            }
        }
        let keys = self.keys.map_or(0, |k| k.len);
        if keys == 0 {
            return Err(TkaError::Invalid("a checkpoint needs a key"));
        }
        if keys > MAX_KEYS {
            return Err(TkaError::TooManyKeys);
        }
        // Key IDs seen so far, copied out once: comparing views would re-decode the array for
        // every pair. About 17 KiB of stack at the 512-key limit.
        let mut seen: heapless::Vec<(u8, [u8; MAX_PUBLIC_LEN]), MAX_KEYS> = heapless::Vec::new();
        for key in self.keys() {
            key.static_validate()?;
            let id = key.id();
            if id.len() > MAX_PUBLIC_LEN {
                return Err(TkaError::Unsupported("trusted key longer than 32 bytes"));
            }
            let mut raw = [0u8; MAX_PUBLIC_LEN];
            raw.iter_mut().zip(id.iter()).for_each(|(r, b)| *r = b);
            let entry = (id.len() as u8, raw);
            if seen.contains(&entry) {
                return Err(TkaError::Invalid("duplicate key in checkpoint"));
            }
            seen.push(entry).map_err(|_| TkaError::TooManyKeys)?;
        }
        Ok(())
    }

    pub fn disablement_values(&self) -> impl Iterator<Item = Option<ByteField<'a>>> + 'a {
        self.disablement_values.into_iter().flat_map(|v| v.byte_fields())
    }

    pub fn keys(&self) -> impl Iterator<Item = KeyView<'a>> + 'a {
        self.keys.into_iter().flat_map(|k| k.keys())
    }
}

impl<'a> ArrayView<'a> {
    /// Reads an array, checking each item with `check` so later walks cannot fail.
    fn decode(
        r: &mut Reader<'a>,
        mut check: impl FnMut(&mut Reader<'a>) -> Result<(), CborError>,
    ) -> Result<Self, CborError> {
        let h = r.head()?;
        if h.major != MAJOR_ARRAY {
            return Err(CborError::WrongType);
        }
        let start = r.pos;
        for _ in 0..h.arg {
            check(r)?;
        }
        let len = usize::try_from(h.arg).map_err(|_| CborError::TooLong)?;
        Ok(ArrayView { items: &r.data[start..r.pos], len })
    }

    /// Walks the items; each was decoded successfully when the array was read, so decoding
    /// again cannot fail and an error merely ends the walk.
    fn walk<T>(
        self,
        mut decode: impl FnMut(&mut Reader<'a>) -> Result<T, CborError> + 'a,
    ) -> impl Iterator<Item = T> + 'a {
        let mut r = Reader::new(self.items, 0);
        (0..self.len).map_while(move |_| decode(&mut r).ok())
    }

    fn byte_fields(self) -> impl Iterator<Item = Option<ByteField<'a>>> + 'a {
        self.walk(|r| r.byte_field())
    }

    fn keys(self) -> impl Iterator<Item = KeyView<'a>> + 'a {
        self.walk(KeyView::decode)
    }
}

impl<'a> Meta<'a> {
    /// `parseMapToMap` into `map[string]string`: text (or nil, read as "") keys and values, no
    /// duplicate keys.
    fn decode(r: &mut Reader<'a>) -> Result<Self, CborError> {
        let h = r.head()?;
        if h.major != MAJOR_MAP {
            return Err(CborError::WrongType);
        }
        let start = r.pos;
        for i in 0..h.arg {
            let key = r.text()?;
            r.text()?;
            let mut earlier = Reader::new(r.data, start);
            for _ in 0..i {
                if earlier.text()? == key {
                    return Err(CborError::DuplicateKey);
                }
                earlier.text()?;
            }
        }
        let len = usize::try_from(h.arg).map_err(|_| CborError::TooLong)?;
        Ok(Meta { pairs: &r.data[start..r.pos], len })
    }

    /// The (key, value) pairs in wire order.
    pub fn pairs(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let mut r = Reader::new(self.pairs, 0);
        (0..self.len).map_while(move |_| Some((r.text().ok()?, r.text().ok()?)))
    }

    /// Bytes of keys plus values, the measure the reference limits.
    pub fn byte_count(&self) -> u64 {
        self.pairs().map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }

    /// Canonical order without allocating: repeatedly emit the smallest key above the last one.
    /// Keys are unique (checked when read), so this visits every pair once.
    fn encode(&self, out: &mut impl Sink) {
        write_head(out, cbor::MAJOR_MAP, self.len as u64);
        let mut last: Option<&[u8]> = None;
        for _ in 0..self.len {
            let next = self
                .pairs()
                .filter(|(k, _)| last.is_none_or(|l| cbor::text_key_order(k, l).is_gt()))
                .min_by(|a, b| cbor::text_key_order(a.0, b.0));
            let Some((k, v)) = next else { break };
            write_text(out, k);
            write_text(out, v);
            last = Some(k);
        }
    }
}

impl<'a> Signatures<'a> {
    pub fn len(&self) -> usize {
        self.0.len
    }

    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = AumSignature<'a>> + 'a {
        self.0.walk(AumSignature::decode)
    }
}

impl<'a> AumSignature<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, CborError> {
        let mut sig = AumSignature { key_id: None, signature: None };
        decode_struct(r, SIG_FIELDS, |field, r| {
            match field {
                SIG_KEY_ID => sig.key_id = r.byte_field()?,
                _ => sig.signature = r.byte_field()?,
            }
            Ok(())
        })?;
        Ok(sig)
    }

    fn check(r: &mut Reader<'a>) -> Result<(), CborError> {
        // A nil element decodes to an empty signature in the reference, which validation
        // then refuses; refusing it here gives the same verdict.
        if r.peek()?.major == MAJOR_SIMPLE {
            return Err(CborError::WrongType);
        }
        Self::decode(r).map(|_| ())
    }

    fn encode(&self, out: &mut impl Sink) {
        write_head(out, MAJOR_MAP, 2);
        write_head(out, MAJOR_UINT, SIG_KEY_ID);
        encode_byte_field(out, self.key_id);
        write_head(out, MAJOR_UINT, SIG_SIGNATURE);
        encode_byte_field(out, self.signature);
    }
}

/// Builds canonical AUM bytes (what `tailscale lock init/add/remove` would submit). The result
/// is a plain byte buffer; decode it with [`Aum::decode`] to hash or inspect it.
pub mod build {
    use super::*;
    use crate::key::NlPublic;

    /// What an AUM changes.
    pub enum Change<'k> {
        AddKey {
            key: NlPublic,
            votes: u16,
            meta: &'k [(&'k str, &'k str)],
        },
        RemoveKey {
            key: NlPublic,
        },
        UpdateKey {
            key: NlPublic,
            votes: Option<u16>,
            meta: Option<&'k [(&'k str, &'k str)]>,
        },
        NoOp,
        /// Genesis or a later checkpoint: the full trusted state.
        Checkpoint {
            keys: &'k [(NlPublic, u16)],
            disablement_values: &'k [[u8; 32]],
            state_id1: u64,
            state_id2: u64,
        },
    }

    /// Writes the unsigned AUM into `out`, returning its length.
    pub fn unsigned(out: &mut [u8], prev: Option<&AumHash>, change: &Change<'_>) -> Result<usize, TkaError> {
        let mut sink = cbor::SliceSink::new(out);
        write_aum(&mut sink, prev, change, &[]);
        finish(sink)
    }

    /// Writes the AUM with `signatures` (key ID, signature) attached.
    pub fn signed(
        out: &mut [u8],
        prev: Option<&AumHash>,
        change: &Change<'_>,
        signatures: &[([u8; 32], [u8; 64])],
    ) -> Result<usize, TkaError> {
        let mut sink = cbor::SliceSink::new(out);
        write_aum(&mut sink, prev, change, signatures);
        finish(sink)
    }

    fn finish(sink: cbor::SliceSink<'_>) -> Result<usize, TkaError> {
        if sink.overflow {
            return Err(TkaError::BufferTooSmall);
        }
        Ok(sink.len)
    }

    fn write_aum(
        out: &mut impl Sink,
        prev: Option<&AumHash>,
        change: &Change<'_>,
        sigs: &[([u8; 32], [u8; 64])],
    ) {
        let (kind, fields) = match change {
            Change::AddKey { .. } => (AumKind::AddKey, 1),
            Change::RemoveKey { .. } => (AumKind::RemoveKey, 1),
            Change::UpdateKey { votes, meta, .. } => {
                let meta = meta.is_some_and(|m| !m.is_empty());
                (AumKind::UpdateKey, 1 + votes.is_some() as u64 + meta as u64)
            }
            Change::NoOp => (AumKind::NoOp, 0),
            Change::Checkpoint { .. } => (AumKind::Checkpoint, 1),
        };
        write_head(out, MAJOR_MAP, 2 + fields + (!sigs.is_empty()) as u64);
        write_head(out, MAJOR_UINT, AUM_KIND);
        write_head(out, MAJOR_UINT, u64::from(kind.to_u8()));
        write_head(out, MAJOR_UINT, AUM_PREV);
        match prev {
            Some(p) => write_bytes(out, &p.0),
            None => write_null(out),
        }
        match change {
            Change::AddKey { key, votes, meta } => {
                write_head(out, MAJOR_UINT, AUM_KEY);
                write_key(out, key, *votes, meta);
            }
            Change::RemoveKey { key } => {
                write_head(out, MAJOR_UINT, AUM_KEY_ID);
                write_bytes(out, &key.0);
            }
            Change::UpdateKey { key, votes, meta } => {
                write_head(out, MAJOR_UINT, AUM_KEY_ID);
                write_bytes(out, &key.0);
                if let Some(v) = votes {
                    write_head(out, MAJOR_UINT, AUM_VOTES);
                    write_head(out, MAJOR_UINT, u64::from(*v));
                }
                if let Some(m) = meta.filter(|m| !m.is_empty()) {
                    write_head(out, MAJOR_UINT, AUM_META);
                    write_meta(out, m);
                }
            }
            Change::NoOp => {}
            Change::Checkpoint { keys, disablement_values, state_id1, state_id2 } => {
                write_head(out, MAJOR_UINT, AUM_STATE);
                let n = 3 + (*state_id1 != 0) as u64 + (*state_id2 != 0) as u64;
                write_head(out, MAJOR_MAP, n);
                write_head(out, MAJOR_UINT, STATE_LAST);
                write_null(out);
                write_head(out, MAJOR_UINT, STATE_DISABLEMENT);
                write_head(out, MAJOR_ARRAY, disablement_values.len() as u64);
                disablement_values.iter().for_each(|v| write_bytes(out, v));
                write_head(out, MAJOR_UINT, STATE_KEYS);
                write_head(out, MAJOR_ARRAY, keys.len() as u64);
                keys.iter().for_each(|(k, votes)| write_key(out, k, *votes, &[]));
                for (field, id) in [(STATE_ID1, *state_id1), (STATE_ID2, *state_id2)] {
                    if id != 0 {
                        write_head(out, MAJOR_UINT, field);
                        write_head(out, MAJOR_UINT, id);
                    }
                }
            }
        }
        if !sigs.is_empty() {
            write_head(out, MAJOR_UINT, AUM_SIGNATURES);
            write_head(out, MAJOR_ARRAY, sigs.len() as u64);
            for (id, sig) in sigs {
                write_head(out, MAJOR_MAP, 2);
                write_head(out, MAJOR_UINT, SIG_KEY_ID);
                write_bytes(out, id);
                write_head(out, MAJOR_UINT, SIG_SIGNATURE);
                write_bytes(out, sig);
            }
        }
    }

    fn write_key(out: &mut impl Sink, key: &NlPublic, votes: u16, meta: &[(&str, &str)]) {
        write_head(out, MAJOR_MAP, 3 + (!meta.is_empty()) as u64);
        write_head(out, MAJOR_UINT, KEY_KIND);
        write_head(out, MAJOR_UINT, KEY_KIND_25519);
        write_head(out, MAJOR_UINT, KEY_VOTES);
        write_head(out, MAJOR_UINT, u64::from(votes));
        write_head(out, MAJOR_UINT, KEY_PUBLIC);
        write_bytes(out, &key.0);
        if !meta.is_empty() {
            write_head(out, MAJOR_UINT, KEY_META);
            write_meta(out, meta);
        }
    }

    /// Meta pairs must have distinct keys; they are written in canonical order.
    fn write_meta(out: &mut impl Sink, meta: &[(&str, &str)]) {
        write_head(out, MAJOR_MAP, meta.len() as u64);
        let mut last: Option<&[u8]> = None;
        for _ in 0..meta.len() {
            let next = meta
                .iter()
                .filter(|(k, _)| last.is_none_or(|l| cbor::text_key_order(k.as_bytes(), l).is_gt()))
                .min_by(|a, b| cbor::text_key_order(a.0.as_bytes(), b.0.as_bytes()));
            let Some((k, v)) = next else { break };
            write_text(out, k.as_bytes());
            write_text(out, v.as_bytes());
            last = Some(k.as_bytes());
        }
    }
}
