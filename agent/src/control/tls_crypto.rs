//! The rustls crypto provider every TLS connection of ours uses (control, DERP, ACME, the
//! HTTPS page) and the certificate checks of `tinytail cert`.
//!
//! ring's own provider brings X25519, P-256 and P-384 key exchange and Ed25519 verification in
//! ring's C code, next to the dalek curve code WireGuard, disco and tailnet lock already link.
//! Here X25519 and Ed25519 come from the dalek crates instead; ring keeps what only it has
//! here: the TLS 1.3 AEADs, HKDF, the RNG, and ECDSA and RSA certificate signatures (the kinds
//! CAs issue). Go's TLS (control, DERP, Headscale, Pebble, testctl) and every browser offer
//! X25519, so no peer of ours needs the NIST groups for key exchange.
//!
//! Certificates are checked against [`crate::clock::Clock`], the agent's clock, not rustls's:
//! callers build their configs with `builder_with_details(provider(), Arc::new(Clock))`.

use std::sync::Arc;

use rustls::crypto::{ActiveKeyExchange, CryptoProvider, SecureRandom, SharedSecret, SupportedKxGroup};
use rustls::crypto::{GetRandomFailed, WebPkiSupportedAlgorithms};
use rustls::pki_types::{alg_id, AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm};
use rustls::{NamedGroup, PeerMisbehaved, SignatureScheme};
use webpki::ring as ring_algs;

/// The provider: ring's TLS 1.3 suites and RNG, dalek's X25519 and Ed25519, no private keys
/// loaded through rustls (see [`super::transport::NoPrivateKeys`]).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: rustls::crypto::ring::DEFAULT_CIPHER_SUITES.to_vec(),
        kx_groups: vec![&X25519],
        signature_verification_algorithms: SIGNATURE_ALGORITHMS,
        secure_random: &Random,
        key_provider: &super::transport::NoPrivateKeys,
    })
}

/// Certificate and handshake signature checks: ring's ECDSA and RSA (what CAs sign with and
/// servers hold), dalek's Ed25519. The mapping is rustls's ring provider's, in its order.
pub static SIGNATURE_ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        ring_algs::ECDSA_P256_SHA256,
        ring_algs::ECDSA_P256_SHA384,
        ring_algs::ECDSA_P384_SHA256,
        ring_algs::ECDSA_P384_SHA384,
        ED25519,
        ring_algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        ring_algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        ring_algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        ring_algs::RSA_PKCS1_2048_8192_SHA256,
        ring_algs::RSA_PKCS1_2048_8192_SHA384,
        ring_algs::RSA_PKCS1_2048_8192_SHA512,
        ring_algs::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
        ring_algs::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
        ring_algs::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    ],
    mapping: &[
        (
            SignatureScheme::ECDSA_NISTP384_SHA384,
            &[ring_algs::ECDSA_P384_SHA384, ring_algs::ECDSA_P256_SHA384],
        ),
        (
            SignatureScheme::ECDSA_NISTP256_SHA256,
            &[ring_algs::ECDSA_P256_SHA256, ring_algs::ECDSA_P384_SHA256],
        ),
        (SignatureScheme::ED25519, &[ED25519]),
        (SignatureScheme::RSA_PSS_SHA512, &[ring_algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY]),
        (SignatureScheme::RSA_PSS_SHA384, &[ring_algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY]),
        (SignatureScheme::RSA_PSS_SHA256, &[ring_algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY]),
        (SignatureScheme::RSA_PKCS1_SHA512, &[ring_algs::RSA_PKCS1_2048_8192_SHA512]),
        (SignatureScheme::RSA_PKCS1_SHA384, &[ring_algs::RSA_PKCS1_2048_8192_SHA384]),
        (SignatureScheme::RSA_PKCS1_SHA256, &[ring_algs::RSA_PKCS1_2048_8192_SHA256]),
    ],
};

/// The operating system's RNG, through ring (as ring's provider does).
#[derive(Debug)]
struct Random;

impl SecureRandom for Random {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), buf).map_err(|_| GetRandomFailed)
    }
}

/// Ephemeral X25519 (RFC 7748) on x25519-dalek.
#[derive(Debug)]
struct X25519Group;

static X25519: X25519Group = X25519Group;

impl SupportedKxGroup for X25519Group {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let mut secret = [0u8; 32];
        Random.fill(&mut secret)?;
        // x25519() clamps the scalar itself.
        let public = x25519_dalek::x25519(secret, x25519_dalek::X25519_BASEPOINT_BYTES);
        Ok(Box::new(X25519Exchange { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// One handshake's key pair; the secret is wiped when the exchange ends either way.
struct X25519Exchange {
    secret: [u8; 32],
    public: [u8; 32],
}

impl ActiveKeyExchange for X25519Exchange {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let peer: [u8; 32] = peer.try_into().map_err(|_| PeerMisbehaved::InvalidKeyShare)?;
        let shared = x25519_dalek::x25519(self.secret, peer);
        // RFC 8446 7.4.2: an all-zero secret (a small-order peer point) must abort.
        if shared == [0u8; 32] {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

impl Drop for X25519Exchange {
    fn drop(&mut self) {
        // Volatile, so the wipe of memory about to be freed is not optimized away.
        for b in self.secret.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference into our own array.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// Ed25519 signatures (RFC 8032) on ed25519-dalek, strict: non-canonical and small-order
/// encodings are refused, as ring refuses them.
#[derive(Debug)]
struct Ed25519Dalek;

static ED25519: &dyn SignatureVerificationAlgorithm = &Ed25519Dalek;

impl SignatureVerificationAlgorithm for Ed25519Dalek {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key: &[u8; 32] = public_key.try_into().map_err(|_| InvalidSignature)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(key).map_err(|_| InvalidSignature)?;
        let signature = ed25519_dalek::Signature::from_slice(signature).map_err(|_| InvalidSignature)?;
        key.verify_strict(message, &signature).map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ED25519
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ED25519
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x25519_agrees_both_ways() {
        let (a, b) = (X25519.start().unwrap(), X25519.start().unwrap());
        let (a_pub, b_pub) = (a.pub_key().to_vec(), b.pub_key().to_vec());
        let ab = a.complete(&b_pub).unwrap();
        let ba = b.complete(&a_pub).unwrap();
        assert_eq!(ab.secret_bytes(), ba.secret_bytes());
    }

    #[test]
    fn x25519_refuses_bad_shares() {
        assert!(X25519.start().unwrap().complete(&[9u8; 31]).is_err());
        // The identity point: the shared secret would be all zeros.
        assert!(X25519.start().unwrap().complete(&[0u8; 32]).is_err());
    }

    #[test]
    fn ed25519_matches_rfc8032() {
        // RFC 8032 7.1, test 2 (one-byte message 0x72).
        let public = hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
        let signature = hex("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
             085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00");
        assert!(ED25519.verify_signature(&public, &[0x72], &signature).is_ok());
        assert!(ED25519.verify_signature(&public, &[0x73], &signature).is_err());
        assert!(ED25519.verify_signature(&public[..31], &[0x72], &signature).is_err());
        assert!(ED25519.verify_signature(&public, &[0x72], &signature[..63]).is_err());
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
