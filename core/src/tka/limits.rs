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

/// Steps when looking for a common AUM with a remote's sync offer, and when collecting the AUMs
/// it lacks (`maxSyncIter`, `ts:tka/limits.go`).
pub const MAX_SYNC_ITERATIONS: usize = 2000;
/// Steps back from our head when listing offer ancestors or looking for the remote's head in our
/// chain (`maxSyncHeadIntersectionIter`, `ts:tka/limits.go`).
pub const MAX_SYNC_HEAD_INTERSECTION_ITERATIONS: usize = 400;
/// Steps back from the head before the first ancestor an offer lists (`ancestorsSkipStart`,
/// `ts:tka/sync.go`).
pub const OFFER_ANCESTOR_SKIP_START: usize = 4;
/// Bits the skip grows by after each listed ancestor: 4, 16, 64, 256 (`ancestorsSkipShift`,
/// `ts:tka/sync.go`).
pub const OFFER_ANCESTOR_SKIP_SHIFT: u32 = 2;
/// Ancestors a [`super::SyncOffer`] holds. Ours list at most 5 (four skips fit in
/// [`MAX_SYNC_HEAD_INTERSECTION_ITERATIONS`], then the oldest); the reference takes any number
/// from a remote, we refuse an offer with more (ours, not the reference's).
pub const MAX_OFFER_ANCESTORS: usize = 16;
/// AUMs back from the head that compaction always keeps (`CompactionDefaults.MinChain`,
/// `ts:tka/limits.go`).
pub const COMPACTION_MIN_CHAIN: usize = 24;
/// AUMs committed less than this long ago are never compacted away (`CompactionDefaults.MinAge`,
/// 14 days, `ts:tka/limits.go`).
pub const COMPACTION_MIN_AGE_SECS: u64 = 14 * 24 * 60 * 60;
