//! Disablement secrets: the `disablement-secret:` text form the CLI prints, and the Argon2i KDF
//! whose outputs a state stores (`DisablementKDF`, `ts:tka/state.go`).
//!
//! The KDF needs 16 MiB of working memory, more than a microcontroller has and more than a
//! `no_std` build may assume, so it exists only with the `std` feature. Without it, a node
//! cannot check a disablement secret and must keep tailnet lock on.

use core::fmt;

/// Argon2i parameters of the reference: 4 passes, 16 MiB, 4 lanes, 32-byte output.
pub const KDF_PASSES: u32 = 4;
pub const KDF_MEMORY_KIB: u32 = 16 * 1024;
pub const KDF_LANES: u32 = 4;
/// The fixed salt (`disablementSalt`).
pub const KDF_SALT: &[u8] = b"tailscale network-lock disablement salt";

/// Longest secret we parse; the CLI generates 32 bytes.
pub const MAX_SECRET_LEN: usize = 64;

/// Text prefix of a disablement secret as `tailscale lock init` prints it.
pub const SECRET_PREFIX: &str = "disablement-secret:";

/// A disablement secret. No `Display`: print it only through [`DisablementSecret::cli`].
#[derive(Clone, PartialEq, Eq)]
pub struct DisablementSecret {
    bytes: [u8; MAX_SECRET_LEN],
    len: usize,
}

impl DisablementSecret {
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut out = DisablementSecret { bytes: [0; MAX_SECRET_LEN], len: bytes.len() };
        out.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(out)
    }

    /// Parses `disablement-secret:<hex>` (either case, as the CLI's `hex.DecodeString`).
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix(SECRET_PREFIX)?.as_bytes();
        if hex.len() % 2 != 0 || hex.len() / 2 > MAX_SECRET_LEN {
            return None;
        }
        let mut out = DisablementSecret { bytes: [0; MAX_SECRET_LEN], len: hex.len() / 2 };
        for (b, pair) in out.bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16);
            *b = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(out)
    }

    pub fn expose(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// `disablement-secret:<UPPER HEX>`, as `tailscale lock init` prints it.
    pub fn cli(&self) -> impl fmt::Display + '_ {
        struct Cli<'a>(&'a [u8]);
        impl fmt::Display for Cli<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SECRET_PREFIX)?;
                self.0.iter().try_for_each(|b| write!(f, "{b:02X}"))
            }
        }
        Cli(self.expose())
    }
}

impl fmt::Debug for DisablementSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("disablement-secret:<redacted>")
    }
}

/// The disablement value of a secret: Argon2i (version 0x13) with the reference's parameters.
#[cfg(feature = "std")]
pub fn kdf(secret: &[u8]) -> [u8; 32] {
    use argon2::{Algorithm, Argon2, Params, Version};
    let mut out = [0u8; 32];
    let hashed =
        Params::new(KDF_MEMORY_KIB, KDF_PASSES, KDF_LANES, Some(out.len())).map_err(|_| ()).and_then(|p| {
            Argon2::new(Algorithm::Argon2i, Version::V0x13, p)
                .hash_password_into(secret, KDF_SALT, &mut out)
                .map_err(|_| ())
        });
    // The parameters are constants that argon2 accepts; an empty secret is allowed by Argon2.
    // Should the crate ever refuse them, the all-zero output matches no real disablement value.
    if hashed.is_err() {
        out = [0; 32];
    }
    out
}
