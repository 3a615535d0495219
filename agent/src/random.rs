//! Randomness from the OS (getrandom): key generation and backoff jitter.

use tinytail_core::key::PrivateKey;

/// 32 random bytes. Without an OS RNG there is no safe way on: abort with a clear message.
pub fn bytes32() -> [u8; 32] {
    bytes()
}

/// A random NaCl box nonce.
pub fn bytes24() -> [u8; 24] {
    bytes()
}

/// A random disco transaction ID (or STUN one).
pub fn bytes12() -> [u8; 12] {
    bytes()
}

fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if let Err(e) = getrandom::fill(&mut out) {
        // Invariant: Linux always has getrandom(2) or /dev/urandom; keys must never be weak.
        panic!("no OS random number generator: {e}");
    }
    out
}

/// A new Curve25519 private key, clamped (node, machine and disco keys alike).
pub fn private_key() -> PrivateKey {
    PrivateKey::clamped(bytes32())
}

/// A uniform value in `0..bound` (bound > 0), for jitter only.
pub fn below(bound: u64) -> u64 {
    let b = bytes32();
    let n = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    n % bound.max(1)
}
