//! The two ed25519 verification rules tailnet lock uses, matched to the reference per signature
//! kind:
//!
//! - AUM signatures and Direct/Credential node-key signatures use `ed25519consensus.Verify`
//!   (`ts:tka/verify.go`, `ts:tka/sig.go`): ZIP-215 rules. Non-canonical encodings of A and R are
//!   accepted, S must be below the group order, and the check is the cofactored equation
//!   `[8][S]B = [8]R + [8][k]A`. ed25519-dalek 2 offers no ZIP-215 verifier (its `verify` is
//!   cofactorless and compares R's bytes), so it is written here on curve25519-dalek, the same
//!   curve code ed25519-dalek and x25519-dalek already link in.
//! - Rotation signatures use Go's `crypto/ed25519.Verify`: cofactorless, S canonical, R compared
//!   as bytes, non-canonical A accepted. That is what ed25519-dalek 2's non-strict `verify` does.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use ed25519_dalek::Verifier;
use sha2::{Digest, Sha512};

/// ZIP-215 verification, as `ed25519consensus.Verify`.
pub fn zip215(public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Some(a) = CompressedEdwardsY(*public).decompress() else { return false };
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signature[..32]);
    let Some(r) = CompressedEdwardsY(r_bytes).decompress() else { return false };
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&signature[32..]);
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else { return false };
    let k = Scalar::from_hash(Sha512::new().chain_update(r_bytes).chain_update(public).chain_update(message));
    // [S]B - [k]A - R, times the cofactor, must be the identity.
    let check = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &(-a), &s) - r;
    check.mul_by_cofactor().is_identity()
}

/// Go `crypto/ed25519.Verify` rules (see the module docs).
pub fn go_stdlib(public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public) else { return false };
    key.verify(message, &ed25519_dalek::Signature::from_bytes(signature)).is_ok()
}

/// Signs with an ed25519 seed (for building AUMs and signatures; verification never needs it).
pub fn sign(seed: &[u8; 32], message: &[u8]) -> [u8; 64] {
    use ed25519_dalek::Signer;
    ed25519_dalek::SigningKey::from_bytes(seed).sign(message).to_bytes()
}

/// The ed25519 public key of a seed.
pub fn public_of(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().to_bytes()
}
