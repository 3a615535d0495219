//! Node-key signatures (`ts:tka/sig.go`): the zero-copy view [`NodeKeySignature`], its
//! canonical encoding, verification against a [`State`], rotation details, building, and the
//! wrapped pre-auth key form.

use core::fmt;

use heapless::Vec;

use super::cbor::{
    self, decode_struct, write_bytes, write_head, ByteField, CborError, HashSink, Reader, Sink, MAJOR_MAP,
    MAJOR_UINT,
};
use super::{verify, State, TkaError};
use crate::key::{NlPublic, NodePublic};

/// `SigKind` (`ts:tka/sig.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SigKind {
    Invalid,
    /// Signed by a trusted key over a node key.
    Direct,
    /// Signed by the wrapping key of the nested signature over a new node key.
    Rotation,
    /// Signed by a trusted key over a wrapping key only; authorizes nothing on its own.
    Credential,
    Unknown(u8),
}

impl SigKind {
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => SigKind::Invalid,
            1 => SigKind::Direct,
            2 => SigKind::Rotation,
            3 => SigKind::Credential,
            other => SigKind::Unknown(other),
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            SigKind::Invalid => 0,
            SigKind::Direct => 1,
            SigKind::Rotation => 2,
            SigKind::Credential => 3,
            SigKind::Unknown(v) => v,
        }
    }

    /// The name the reference prints (`SigKind.String`), with `Sig?<n>` for unknown kinds.
    pub fn name_for_display(self) -> impl fmt::Display {
        struct Name(SigKind);
        impl fmt::Display for Name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    SigKind::Unknown(n) => write!(f, "Sig?<{n}>"),
                    kind => f.write_str(kind.name()),
                }
            }
        }
        Name(self)
    }

    /// The name the reference prints (`SigKind.String`).
    pub fn name(self) -> &'static str {
        match self {
            SigKind::Invalid => "invalid",
            SigKind::Direct => "direct",
            SigKind::Rotation => "rotation",
            SigKind::Credential => "credential",
            SigKind::Unknown(_) => "unknown",
        }
    }
}

const NKS_KIND: u64 = 1;
const NKS_PUBKEY: u64 = 2;
const NKS_KEY_ID: u64 = 3;
const NKS_SIGNATURE: u64 = 4;
const NKS_NESTED: u64 = 5;
const NKS_WRAPPING: u64 = 6;
const NKS_FIELDS: &[u64] = &[NKS_KIND, NKS_PUBKEY, NKS_KEY_ID, NKS_SIGNATURE, NKS_NESTED, NKS_WRAPPING];

/// Binary node key form inside signatures: `"np"` + 32 bytes (`NodePublic.MarshalBinary`).
pub const NODE_KEY_BINARY_PREFIX: &[u8; 2] = b"np";

/// Previous node keys a rotation chain may carry before it is re-rooted (`maxPrevKeys` in
/// `ts:tka/sig.go` `maybeTrimRotationSignatureChain`); chains nest at most 16 CBOR levels.
pub const MAX_PREV_NODE_KEYS: usize = 15;

/// A decoded node-key signature, borrowing its bytes. Nested signatures are decoded on demand
/// from `nested`, which was fully checked when the outer one was read.
#[derive(Clone, Copy, Debug)]
pub struct NodeKeySignature<'a> {
    pub kind: SigKind,
    pub pubkey: Option<ByteField<'a>>,
    pub key_id: Option<ByteField<'a>>,
    pub signature: Option<ByteField<'a>>,
    nested: Option<(&'a [u8], usize)>,
    pub wrapping_pubkey: Option<ByteField<'a>>,
}

/// What a valid rotation signature says about the chain it extends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationDetails {
    /// Node keys rotated away from, newest first.
    pub prev_node_keys: Vec<NodePublic, { MAX_PREV_NODE_KEYS + 1 }>,
    /// The kind of the signature at the root of the chain (Direct or Credential).
    pub initial_kind: SigKind,
    /// The wrapping key of that root signature, if it had one of 32 bytes (its raw bytes
    /// otherwise compare unequal to every real key, as in the reference's string key).
    pub initial_wrapping_pubkey: Option<[u8; 32]>,
}

impl<'a> NodeKeySignature<'a> {
    /// Decodes a serialized signature with the reference decoder's rules.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, TkaError> {
        cbor::check_well_formed(bytes)?;
        Ok(Self::decode_at(&mut Reader::new(bytes, 0))?)
    }

    fn decode_at(r: &mut Reader<'a>) -> Result<Self, CborError> {
        let mut sig = NodeKeySignature {
            kind: SigKind::Invalid,
            pubkey: None,
            key_id: None,
            signature: None,
            nested: None,
            wrapping_pubkey: None,
        };
        decode_struct(r, NKS_FIELDS, |field, r| {
            match field {
                NKS_KIND => sig.kind = SigKind::from_u8(r.uint(u64::from(u8::MAX))? as u8),
                NKS_PUBKEY => sig.pubkey = r.byte_field()?,
                NKS_KEY_ID => sig.key_id = r.byte_field()?,
                NKS_SIGNATURE => sig.signature = r.byte_field()?,
                NKS_NESTED => {
                    if r.peek()?.is_nil() {
                        r.head()?;
                        sig.nested = None;
                    } else {
                        let start = r.pos;
                        Self::decode_at(r)?;
                        sig.nested = Some((r.data, start));
                    }
                }
                _ => sig.wrapping_pubkey = r.byte_field()?,
            }
            Ok(())
        })?;
        Ok(sig)
    }

    /// The signature this one wraps (Rotation only).
    pub fn nested(&self) -> Option<NodeKeySignature<'a>> {
        let (data, at) = self.nested?;
        // Checked in full when the outer signature was decoded.
        Self::decode_at(&mut Reader::new(data, at)).ok()
    }

    /// Writes the canonical encoding, with or without this level's signature field.
    pub fn encode(&self, out: &mut impl Sink, with_signature: bool) {
        let nonempty = |f: Option<ByteField<'a>>| f.filter(|b| !b.is_empty());
        let pubkey = nonempty(self.pubkey);
        let key_id = nonempty(self.key_id);
        let signature = nonempty(self.signature).filter(|_| with_signature);
        let nested = self.nested();
        let wrapping = nonempty(self.wrapping_pubkey);
        let n = 1
            + pubkey.is_some() as u64
            + key_id.is_some() as u64
            + signature.is_some() as u64
            + nested.is_some() as u64
            + wrapping.is_some() as u64;
        write_head(out, MAJOR_MAP, n);
        write_head(out, MAJOR_UINT, NKS_KIND);
        write_head(out, MAJOR_UINT, u64::from(self.kind.to_u8()));
        for (field, value) in [(NKS_PUBKEY, pubkey), (NKS_KEY_ID, key_id), (NKS_SIGNATURE, signature)] {
            if let Some(v) = value {
                write_head(out, MAJOR_UINT, field);
                v.encode(out);
            }
        }
        if let Some(nested) = nested {
            write_head(out, MAJOR_UINT, NKS_NESTED);
            nested.encode(out, true);
        }
        if let Some(w) = wrapping {
            write_head(out, MAJOR_UINT, NKS_WRAPPING);
            w.encode(out);
        }
    }

    /// BLAKE2s-256 over the encoding without this level's signature: what the signer signs.
    pub fn sig_hash(&self) -> [u8; 32] {
        let mut h = HashSink(blake2::Blake2s256::default());
        self.encode(&mut h, false);
        blake2::Digest::finalize(h.0).into()
    }

    /// The key that must sign a rotation wrapping this signature: our wrapping key, or, for a
    /// rotation without one, that of the signature we wrap.
    pub fn wrapping_public(&self) -> Option<ByteField<'a>> {
        if let Some(w) = self.wrapping_pubkey.filter(|w| !w.is_empty()) {
            return Some(w);
        }
        match self.kind {
            SigKind::Rotation => self.nested()?.wrapping_public(),
            _ => None,
        }
    }

    /// The ID of the trusted key the chain of signatures ends at. Unverified.
    pub fn authorizing_key_id(&self) -> Result<ByteField<'a>, TkaError> {
        match self.kind {
            SigKind::Direct | SigKind::Credential => {
                self.key_id.filter(|k| !k.is_empty()).ok_or(TkaError::Invalid("signature without a key ID"))
            }
            SigKind::Rotation => self
                .nested()
                .ok_or(TkaError::Invalid("rotation signature without a nested signature"))?
                .authorizing_key_id(),
            _ => Err(TkaError::Invalid("unknown signature kind")),
        }
    }

    /// Checks this signature (and what it nests) authorizes `node_key` under `trusted`, the
    /// trusted key named by [`Self::authorizing_key_id`]. `node_key` is ignored for credentials.
    fn verify(&self, node_key: &[u8; 34], trusted: &super::state::TrustedKey) -> Result<(), TkaError> {
        if self.kind != SigKind::Credential && !self.pubkey.is_some_and(|p| p.eq_bytes(node_key)) {
            return Err(TkaError::WrongNodeKey);
        }
        let sig_hash = self.sig_hash();
        let signature = self.signature.and_then(|s| s.to_array::<64>());
        match self.kind {
            SigKind::Rotation => {
                let nested = self.nested().ok_or(TkaError::Invalid("rotation without a nested signature"))?;
                let wrapping = nested.wrapping_public().ok_or(TkaError::Invalid("no rotation key"))?;
                let wrapping =
                    wrapping.to_array::<32>().ok_or(TkaError::Invalid("rotation key is not 32 bytes"))?;
                if !signature.is_some_and(|s| verify::go_stdlib(&wrapping, &sig_hash, &s)) {
                    return Err(TkaError::BadSignature);
                }
                let nested_key = if nested.kind == SigKind::Credential {
                    [0u8; 34]
                } else {
                    nested.pubkey.and_then(|p| binary_node_key(&p)).ok_or(TkaError::WrongNodeKey)?
                };
                nested.verify(&nested_key, trusted)
            }
            SigKind::Direct | SigKind::Credential => {
                if self.nested.is_some() {
                    return Err(TkaError::Invalid("direct and credential signatures cannot nest"));
                }
                let public = trusted.ed25519_public().ok_or(TkaError::BadSignature)?;
                if !signature.is_some_and(|s| verify::zip215(&public, &sig_hash, &s)) {
                    return Err(TkaError::BadSignature);
                }
                Ok(())
            }
            _ => Err(TkaError::Invalid("unknown signature kind")),
        }
    }

    /// Rotation details (`rotationDetails`): `None` for non-rotation signatures.
    pub fn rotation_details(&self) -> Result<Option<RotationDetails>, TkaError> {
        if self.kind != SigKind::Rotation {
            return Ok(None);
        }
        let mut prev = Vec::new();
        let mut nested = self.nested();
        let mut initial = None;
        while let Some(n) = nested {
            if let Some(p) = n.pubkey.filter(|p| !p.is_empty()) {
                let key = binary_node_key(&p).ok_or(TkaError::WrongNodeKey)?;
                let mut raw = [0u8; 32];
                raw.copy_from_slice(&key[2..]);
                prev.push(NodePublic(raw)).map_err(|_| TkaError::Unsupported("rotation chain too long"))?;
            }
            initial = Some(n);
            if n.kind != SigKind::Rotation {
                break;
            }
            nested = n.nested();
        }
        let initial = initial.ok_or(TkaError::Invalid("rotation without a nested signature"))?;
        Ok(Some(RotationDetails {
            prev_node_keys: prev,
            initial_kind: initial.kind,
            initial_wrapping_pubkey: initial.wrapping_pubkey.and_then(|w| w.to_array::<32>()),
        }))
    }
}

/// The multi-line form `tailscale lock` prints for a signature (`NodeKeySignature.String`):
/// one `Field: value` line per set field, nested signatures indented by two spaces.
impl fmt::Display for NodeKeySignature<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_lines(f, 0)
    }
}

impl NodeKeySignature<'_> {
    fn write_lines(&self, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        let indent = |f: &mut fmt::Formatter<'_>| (0..depth).try_for_each(|_| f.write_str("  "));
        // Every line but the first starts with a newline, so the output has no trailing one.
        if depth > 0 {
            f.write_str("\n")?;
        }
        indent(f)?;
        write!(f, "SigKind: {}", self.kind.name_for_display())?;
        if let Some(p) = self.pubkey.filter(|p| !p.is_empty()) {
            f.write_str("\n")?;
            indent(f)?;
            f.write_str("Pubkey: ")?;
            match binary_node_key(&p) {
                Some(key) => {
                    let mut raw = [0u8; 32];
                    raw.copy_from_slice(&key[2..]);
                    // The reference prints nothing for the all-zero key.
                    if raw != [0; 32] {
                        write!(f, "{}", NodePublic(raw).short())?;
                    }
                }
                None if p.len() >= 2 && p.iter().take(2).eq(NODE_KEY_BINARY_PREFIX.iter().copied()) => {
                    write!(f, "<error: incorrect len for NodePublic ({} != 34)>", p.len())?
                }
                None => f.write_str("<error: missing/incorrect type prefix np>")?,
            }
        }
        for (label, field) in [("KeyID", self.key_id), ("WrappingPubkey", self.wrapping_pubkey)] {
            if let Some(k) = field.filter(|k| !k.is_empty()) {
                // Shorter IDs are zero-padded and longer ones cut to 32 bytes, as the reference's
                // `NLPublicFromEd25519Unsafe` does.
                let mut raw = [0u8; 32];
                raw.iter_mut().zip(k.iter()).for_each(|(r, b)| *r = b);
                f.write_str("\n")?;
                indent(f)?;
                write!(f, "{label}: {}", NlPublic(raw).cli())?;
            }
        }
        if let Some(nested) = self.nested() {
            f.write_str("\n")?;
            indent(f)?;
            f.write_str("Nested:")?;
            nested.write_lines(f, depth + 1)?;
        }
        Ok(())
    }
}

/// `"np"` + 32 bytes, the only binary node key form the reference parses.
fn binary_node_key(field: &ByteField<'_>) -> Option<[u8; 34]> {
    let key = field.to_array::<34>()?;
    (key[..2] == NODE_KEY_BINARY_PREFIX[..]).then_some(key)
}

/// The binary form of a node key inside signatures.
pub fn node_key_binary(key: &NodePublic) -> [u8; 34] {
    let mut out = [0u8; 34];
    out[..2].copy_from_slice(NODE_KEY_BINARY_PREFIX);
    out[2..].copy_from_slice(&key.0);
    out
}

/// `NodeKeyAuthorizedWithDetails`: does `signature` authorize `node_key` under `state`?
/// Returns rotation details for rotation signatures.
pub fn node_key_authorized(
    state: &State,
    node_key: &NodePublic,
    signature: &[u8],
) -> Result<Option<RotationDetails>, TkaError> {
    let sig = NodeKeySignature::decode(signature)?;
    if sig.kind == SigKind::Credential {
        return Err(TkaError::Invalid("a credential cannot authorize a node by itself"));
    }
    let key_id = sig.authorizing_key_id()?;
    let trusted = state.key(&key_id).ok_or(TkaError::UntrustedSigner)?;
    sig.verify(&node_key_binary(node_key), trusted)?;
    sig.rotation_details()
}

/// Building signatures: what `tailscale lock sign`, a node-key rotation and a wrapped auth key
/// produce. Each writes canonical bytes into `out` and returns their length.
pub mod build {
    use super::*;

    /// A Direct signature by the trusted key `signer_seed` over `node_key`, naming
    /// `rotation_key` (the node's own tailnet-lock key) as the key allowed to rotate it.
    pub fn direct(
        out: &mut [u8],
        signer_seed: &[u8; 32],
        node_key: &NodePublic,
        rotation_key: Option<&NlPublic>,
    ) -> Result<usize, TkaError> {
        let id = verify::public_of(signer_seed);
        let pubkey = node_key_binary(node_key);
        let fields = Fields {
            kind: SigKind::Direct,
            pubkey: Some(&pubkey),
            key_id: Some(&id),
            nested: None,
            wrapping: rotation_key.map(|k| &k.0),
        };
        sign_into(out, &fields, signer_seed)
    }

    /// A Credential by the trusted key `signer_seed` over the wrapping key `wrapping`.
    pub fn credential(
        out: &mut [u8],
        signer_seed: &[u8; 32],
        wrapping: &[u8; 32],
    ) -> Result<usize, TkaError> {
        let id = verify::public_of(signer_seed);
        let fields = Fields {
            kind: SigKind::Credential,
            pubkey: None,
            key_id: Some(&id),
            nested: None,
            wrapping: Some(wrapping),
        };
        sign_into(out, &fields, signer_seed)
    }

    /// A Rotation over `new_node_key`, wrapping the signature `previous`, signed with the
    /// wrapping key's seed (the node's tailnet-lock key, or a wrapped auth key's key). The
    /// previous chain is used as is; callers re-root chains longer than
    /// [`MAX_PREV_NODE_KEYS`] keys.
    pub fn rotation(
        out: &mut [u8],
        wrapping_seed: &[u8; 32],
        new_node_key: &NodePublic,
        previous: &[u8],
    ) -> Result<usize, TkaError> {
        let nested = NodeKeySignature::decode(previous)?;
        let pubkey = node_key_binary(new_node_key);
        let fields = Fields {
            kind: SigKind::Rotation,
            pubkey: Some(&pubkey),
            key_id: None,
            nested: Some(&nested),
            wrapping: None,
        };
        sign_into(out, &fields, wrapping_seed)
    }

    struct Fields<'f, 'a> {
        kind: SigKind,
        pubkey: Option<&'f [u8; 34]>,
        key_id: Option<&'f [u8; 32]>,
        nested: Option<&'f NodeKeySignature<'a>>,
        wrapping: Option<&'f [u8; 32]>,
    }

    fn write(out: &mut impl Sink, f: &Fields<'_, '_>, signature: Option<&[u8; 64]>) {
        let n = 1
            + f.pubkey.is_some() as u64
            + f.key_id.is_some() as u64
            + signature.is_some() as u64
            + f.nested.is_some() as u64
            + f.wrapping.is_some() as u64;
        write_head(out, MAJOR_MAP, n);
        write_head(out, MAJOR_UINT, NKS_KIND);
        write_head(out, MAJOR_UINT, u64::from(f.kind.to_u8()));
        if let Some(p) = f.pubkey {
            write_head(out, MAJOR_UINT, NKS_PUBKEY);
            write_bytes(out, p);
        }
        if let Some(k) = f.key_id {
            write_head(out, MAJOR_UINT, NKS_KEY_ID);
            write_bytes(out, k);
        }
        if let Some(s) = signature {
            write_head(out, MAJOR_UINT, NKS_SIGNATURE);
            write_bytes(out, s);
        }
        if let Some(n) = f.nested {
            write_head(out, MAJOR_UINT, NKS_NESTED);
            n.encode(out, true);
        }
        if let Some(w) = f.wrapping {
            write_head(out, MAJOR_UINT, NKS_WRAPPING);
            write_bytes(out, w);
        }
    }

    fn sign_into(out: &mut [u8], fields: &Fields<'_, '_>, seed: &[u8; 32]) -> Result<usize, TkaError> {
        let mut h = HashSink(blake2::Blake2s256::default());
        write(&mut h, fields, None);
        let sig_hash: [u8; 32] = blake2::Digest::finalize(h.0).into();
        let signature = verify::sign(seed, &sig_hash);
        let mut sink = cbor::SliceSink::new(out);
        write(&mut sink, fields, Some(&signature));
        if sink.overflow {
            return Err(TkaError::BufferTooSmall);
        }
        Ok(sink.len)
    }
}

/// A pre-auth key with tailnet-lock wrapping: `<authkey>--TL<credential>-<private key>`, both
/// parts unpadded standard base64 (`tka.DecodeWrappedAuthkey`).
pub struct WrappedAuthKey<'a> {
    /// The plain auth key, what is sent as `Auth.AuthKey`.
    pub auth_key: &'a str,
    /// The Credential signature, decoded from base64 into the caller's buffer.
    pub credential: &'a [u8],
    /// The ed25519 seed of the wrapping key (the first half of Go's 64-byte private key).
    pub wrapping_seed: [u8; 32],
}

/// Splits a wrapped auth key. Returns `Ok(None)` for a key without wrapping, like the reference,
/// which also treats a malformed wrapping as no wrapping (returning the key unchanged).
pub fn unwrap_auth_key<'a>(key: &'a str, credential_buf: &'a mut [u8]) -> Option<WrappedAuthKey<'a>> {
    let (auth_key, suffix) = key.split_once("--TL")?;
    let (sig_b64, priv_b64) = suffix.split_once('-')?;
    let mut private = [0u8; 64];
    if base64_raw_std_decode(priv_b64.as_bytes(), &mut private)? != 64 {
        return None;
    }
    let n = base64_raw_std_decode(sig_b64.as_bytes(), credential_buf)?;
    let credential = &credential_buf[..n];
    NodeKeySignature::decode(credential).ok()?;
    let mut wrapping_seed = [0u8; 32];
    wrapping_seed.copy_from_slice(&private[..32]);
    Some(WrappedAuthKey { auth_key, credential, wrapping_seed })
}

/// Unpadded standard-alphabet base64 (Go's `RawStdEncoding`, which also refuses non-zero
/// trailing bits). Returns the decoded length, or `None` if invalid or `out` is too small.
pub fn base64_raw_std_decode(text: &[u8], out: &mut [u8]) -> Option<usize> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    if text.len() % 4 == 1 {
        return None;
    }
    let mut n = 0;
    for chunk in text.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | value(c)?;
        }
        let bytes = chunk.len() * 6 / 8;
        let spare_bits = chunk.len() * 6 - bytes * 8;
        if acc & ((1 << spare_bits) - 1) != 0 {
            return None;
        }
        acc >>= spare_bits;
        for i in (0..bytes).rev() {
            *out.get_mut(n + bytes - 1 - i)? = (acc >> (8 * i)) as u8;
        }
        n += bytes;
    }
    Some(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::tka::TrustedKey;

    #[test]
    fn base64_matches_go_raw_std_encoding() {
        let mut out = [0u8; 8];
        assert_eq!(base64_raw_std_decode(b"aGVsbG8", &mut out), Some(5));
        assert_eq!(&out[..5], b"hello");
        assert_eq!(base64_raw_std_decode(b"aGVsbG9", &mut out), None, "non-zero trailing bits");
        assert_eq!(base64_raw_std_decode(b"aGVsbG8=", &mut out), None, "padding");
        assert_eq!(base64_raw_std_decode(b"a", &mut out), None);
        assert_eq!(base64_raw_std_decode(b"aGVsbG8gd29ybGQ", &mut out), None, "output too small");
    }

    #[test]
    fn a_rotation_chain_verifies_and_names_its_previous_keys() {
        let trusted = [1u8; 32];
        let node_nl = [2u8; 32];
        let mut state = State::default();
        state.keys.push(TrustedKey::ed25519(verify::public_of(&trusted), 1)).unwrap();
        let (n1, n2) = (NodePublic([5; 32]), NodePublic([6; 32]));
        let mut d = [0u8; 512];
        let dn = build::direct(&mut d, &trusted, &n1, Some(&NlPublic(verify::public_of(&node_nl)))).unwrap();
        let mut r = [0u8; 512];
        let rn = build::rotation(&mut r, &node_nl, &n2, &d[..dn]).unwrap();
        assert_eq!(node_key_authorized(&state, &n1, &d[..dn]), Ok(None));
        let details = node_key_authorized(&state, &n2, &r[..rn]).unwrap().unwrap();
        assert_eq!(&details.prev_node_keys[..], &[n1]);
        assert_eq!(details.initial_kind, SigKind::Direct);
        // Signed by the trusted key instead of the node's wrapping key: refused.
        let bad = build::rotation(&mut r, &trusted, &n2, &d[..dn]).unwrap();
        assert_eq!(node_key_authorized(&state, &n2, &r[..bad]), Err(TkaError::BadSignature));
    }
}
