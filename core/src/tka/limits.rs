//! The reference's limits, each named once.

/// Disablement values per state (`maxDisablementValues`, `ts:tka/limits.go`).
pub const MAX_DISABLEMENT_VALUES: usize = 32;
/// Keys in a checkpoint (`maxKeys`, `ts:tka/limits.go`). Also our state's capacity: the
/// reference lets AddKey grow past it, we refuse that AUM (see [`super::TkaError::Unsupported`]).
pub const MAX_KEYS: usize = 512;
/// Key metadata bytes, keys plus values (`maxMetaBytes`, `ts:tka/limits.go`).
pub const MAX_META_BYTES: u64 = 512;
/// Votes of one key (`Key.StaticValidate`, `ts:tka/key.go`).
pub const MAX_KEY_VOTES: u64 = 4096;
/// Steps when walking or replaying the AUM tree (`maxScanIterations`, `ts:tka/limits.go`).
pub const MAX_SCAN_ITERATIONS: usize = 2000;
/// Length of a disablement value and of a generated secret (`disablementLength`,
/// `ts:tka/state.go`).
pub const DISABLEMENT_LEN: usize = 32;
