//! Compaction: dropping AUMs no longer needed to verify the chain or to sync with peers that
//! are not far behind (`Compact` in `ts:tka/tailchonk.go`, `Authority.Compact` in
//! `ts:tka/tka.go`, `CompactionDefaults` in `ts:tka/limits.go`).
//!
//! The reference's rule, step by step (each AUM gets flags in a table):
//! 1. *young*: committed less than `min_age_secs` ago;
//! 2. *active*: the `min_chain` AUMs back from the head, then on back to the first checkpoint
//!    that is not young (or is the genesis): the candidate new oldest AUM; older AUMs of the
//!    active chain are *candidates* for deletion;
//! 3. *leaf*: kept AUMs (active or young) and all their descendants;
//! 4. *ancestor*: the AUMs between each kept AUM and the kept chain. A kept fork that leaves the
//!    active chain before the candidate moves the new oldest back to the first checkpoint at or
//!    before where it leaves;
//! 5. everything else is purged, and the new oldest becomes the authority's
//!    [`Authority::oldest`] (the reference's "last active ancestor"), always a checkpoint or the
//!    chain's first AUM, so [`Authority::open`] works from it.
//!
//! No allocation: the table is a caller's slice of [`Mark`]s, one per stored AUM (33 bytes
//! each), kept sorted by hash. With `std`, [`Authority::compact`] allocates it.
//!
//! Differences from the reference: the clock is the caller's `now_unix`, not the wall clock;
//! and where the reference fails because the walk back for a checkpoint that is not young
//! reaches a young checkpoint whose parent is not stored (a chain bootstrapped less than
//! `min_age_secs` ago from a checkpoint other than the genesis), we stop at that checkpoint:
//! nothing older exists to purge.

use super::aum::{Aum, AumKind};
use super::limits::{COMPACTION_MIN_AGE_SECS, COMPACTION_MIN_CHAIN};
use super::{AumHash, AumStore, Authority, TkaError};

/// How much history compaction keeps (`CompactionOptions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionOptions {
    /// AUMs back from the head always kept (more, to reach a checkpoint). Must not be 0.
    pub min_chain: usize,
    /// AUMs committed less than this many seconds ago are kept. Must not be 0.
    pub min_age_secs: u64,
}

/// The reference's defaults: 24 AUMs and 14 days (`CompactionDefaults`).
pub const COMPACTION_DEFAULTS: CompactionOptions =
    CompactionOptions { min_chain: COMPACTION_MIN_CHAIN, min_age_secs: COMPACTION_MIN_AGE_SECS };

/// A store compaction can list and purge (`CompactableChonk`).
pub trait CompactableStore: AumStore {
    /// Number of stored AUMs.
    fn aum_count(&self) -> usize;
    /// The `index`-th stored AUM (below [`CompactableStore::aum_count`]), in an order that is
    /// stable while the store does not change.
    fn hash_at(&self, index: usize) -> Option<AumHash>;
    /// When the AUM was committed, in the caller's clock (Unix seconds).
    fn committed_at(&self, hash: &AumHash) -> Option<u64>;
    /// Deletes an AUM for good. Its children, if kept, stay reachable with
    /// [`AumStore::child`] and [`AumStore::get`].
    fn purge(&mut self, hash: &AumHash) -> Result<(), TkaError>;
}

/// One row of compaction's table: a stored AUM and what was decided about it.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Mark {
    hash: AumHash,
    flags: u8,
}

impl Mark {
    pub fn hash(&self) -> AumHash {
        self.hash
    }

    /// True if compaction purged this AUM from the store.
    pub fn purged(&self) -> bool {
        self.flags & PURGED != 0
    }
}

// The reference's retainState bits, and two of ours.
const ACTIVE: u8 = 1;
const YOUNG: u8 = 2;
const LEAF: u8 = 4;
const ANCESTOR: u8 = 8;
const CANDIDATE: u8 = 16;
/// Any of these keeps an AUM (`retainAUMMask`).
const RETAIN: u8 = ACTIVE | YOUNG | LEAF | ANCESTOR;
/// Purged (reported to the caller).
const PURGED: u8 = 32;
/// Known not to descend from a kept AUM (a memo for the leaf walk).
const NOT_LEAF: u8 = 64;

impl Authority {
    /// Compacts the store (`Authority.Compact`): purges the AUMs the reference would, and moves
    /// [`Authority::oldest`] to the new oldest AUM of the active chain. `marks` is scratch with
    /// room for every stored AUM ([`TkaError::BufferTooSmall`] otherwise); afterwards its first
    /// entries tell which hashes were purged ([`Mark::purged`]). Returns how many were.
    ///
    /// Nothing is purged if the decision fails. If a purge fails, the ones before it are done,
    /// and [`Authority::oldest`] has moved already (it is valid with or without them).
    pub fn compact_with(
        &mut self,
        store: &mut impl CompactableStore,
        now_unix: u64,
        opts: &CompactionOptions,
        marks: &mut [Mark],
    ) -> Result<usize, TkaError> {
        let (oldest, used) = decide(store, self.head(), now_unix, opts, marks)?;
        self.set_oldest(oldest);
        let mut purged = 0;
        for mark in marks.iter_mut().take(used) {
            if mark.flags & RETAIN == 0 {
                store.purge(&mark.hash)?;
                mark.flags |= PURGED;
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// [`Authority::compact_with`] with an allocated table; returns the purged hashes (for the
    /// caller to delete from durable storage, with the new [`Authority::oldest`] saved).
    #[cfg(feature = "std")]
    pub fn compact(
        &mut self,
        store: &mut impl CompactableStore,
        now_unix: u64,
        opts: &CompactionOptions,
    ) -> Result<std::vec::Vec<AumHash>, TkaError> {
        let mut marks = std::vec![Mark::default(); store.aum_count()];
        self.compact_with(store, now_unix, opts, &mut marks)?;
        Ok(marks.iter().filter(|m| m.purged()).map(|m| m.hash).collect())
    }
}

/// The table of stored AUMs, sorted by hash. Flags of hashes not in it read as 0 and are not
/// kept (the reference's map grows there; nothing reads them back but an error path).
struct Table<'m> {
    marks: &'m mut [Mark],
}

impl Table<'_> {
    fn find(&self, hash: &AumHash) -> Option<usize> {
        self.marks.binary_search_by(|m| m.hash.cmp(hash)).ok()
    }

    fn flags(&self, hash: &AumHash) -> u8 {
        self.find(hash).map_or(0, |i| self.marks[i].flags)
    }

    fn set(&mut self, hash: &AumHash, flags: u8) {
        if let Some(i) = self.find(hash) {
            self.marks[i].flags |= flags;
        }
    }
}

/// Counts steps of a walk; a walk longer than the store is a cycle or a broken store.
struct Steps {
    left: usize,
}

impl Steps {
    fn new(stored: usize) -> Self {
        Steps { left: stored + 1 }
    }

    fn step(&mut self) -> Result<(), TkaError> {
        self.left = self.left.checked_sub(1).ok_or(TkaError::IterationLimit)?;
        Ok(())
    }
}

/// Fills and marks the table; returns the new oldest AUM and how many rows are used.
fn decide(
    store: &impl CompactableStore,
    head: AumHash,
    now: u64,
    opts: &CompactionOptions,
    marks: &mut [Mark],
) -> Result<(AumHash, usize), TkaError> {
    if opts.min_chain == 0 {
        return Err(TkaError::Invalid("compaction min_chain must be set"));
    }
    if opts.min_age_secs == 0 {
        return Err(TkaError::Invalid("compaction min_age_secs must be set"));
    }
    let used = store.aum_count();
    let marks = marks.get_mut(..used).ok_or(TkaError::BufferTooSmall)?;
    for (index, mark) in marks.iter_mut().enumerate() {
        *mark = Mark { hash: store.hash_at(index).ok_or(TkaError::NotFound)?, flags: 0 };
    }
    marks.sort_unstable_by_key(|m| m.hash);
    if marks.windows(2).any(|w| w[0].hash == w[1].hash) {
        return Err(TkaError::Invalid("store lists an AUM twice"));
    }
    let mut table = Table { marks };

    mark_young(store, &mut table, now, opts.min_age_secs)?;
    let candidate = mark_active_chain(store, &mut table, opts.min_chain, head)?;
    mark_descendants(store, &mut table)?;
    let oldest = mark_ancestors(store, &mut table, candidate)?;
    Ok((oldest, used))
}

/// Young: committed after `now - min_age` (`markYoungAUMs`).
fn mark_young(
    store: &impl CompactableStore,
    table: &mut Table<'_>,
    now: u64,
    min_age: u64,
) -> Result<(), TkaError> {
    for mark in table.marks.iter_mut() {
        let at = store.committed_at(&mark.hash).ok_or(TkaError::NotFound)?;
        if at.saturating_add(min_age) > now {
            mark.flags |= YOUNG;
        }
    }
    Ok(())
}

/// Active from the head back to a checkpoint to compact to, candidates beyond
/// (`markActiveChain`). Returns the candidate new oldest AUM.
fn mark_active_chain(
    store: &impl CompactableStore,
    table: &mut Table<'_>,
    min_chain: usize,
    head: AumHash,
) -> Result<AumHash, TkaError> {
    store.get(&head).ok_or(TkaError::NotFound)?;
    let mut next = head;
    let mut steps = Steps::new(table.marks.len());
    // The min_chain newest: a shorter chain is kept whole, from its first stored AUM.
    for _ in 0..min_chain {
        steps.step()?;
        table.set(&next, ACTIVE);
        match store.parent_of(&next) {
            Some(parent) if store.get(&parent).is_some() => next = parent,
            _ => return Ok(next),
        }
    }
    // On to a checkpoint that is old enough, or the genesis.
    let candidate = loop {
        steps.step()?;
        table.set(&next, ACTIVE);
        let aum = Aum::decode(store.get(&next).ok_or(TkaError::NotFound)?)?;
        let parent = store.parent_of(&next);
        if aum.kind == AumKind::Checkpoint {
            let young = table.flags(&next) & YOUNG != 0;
            // Ours: a young checkpoint whose parent we lack ends the walk too.
            if !young || parent.is_none_or(|p| store.get(&p).is_none()) {
                break next;
            }
        }
        let parent =
            parent.ok_or(TkaError::Invalid("compaction found no checkpoint to keep the chain from"))?;
        store.get(&parent).ok_or(TkaError::NotFound)?;
        next = parent;
    };
    // The rest of the active chain may go.
    loop {
        steps.step()?;
        let Some(parent) = store.parent_of(&next) else { break };
        table.set(&parent, CANDIDATE);
        if store.get(&parent).is_none() {
            break;
        }
        next = parent;
    }
    Ok(candidate)
}

/// Kept AUMs and all their descendants get LEAF (`markDescendantAUMs`), found here by walking
/// up from each AUM rather than down from each kept one.
fn mark_descendants(store: &impl CompactableStore, table: &mut Table<'_>) -> Result<(), TkaError> {
    for mark in table.marks.iter_mut() {
        if mark.flags & RETAIN != 0 {
            mark.flags |= LEAF;
        }
    }
    for index in 0..table.marks.len() {
        let start = table.marks[index].hash;
        if table.marks[index].flags & (LEAF | NOT_LEAF) != 0 {
            continue;
        }
        // Up until an AUM whose answer is known, or the top of what is stored.
        let mut steps = Steps::new(table.marks.len());
        let mut cursor = start;
        let leaf = loop {
            steps.step()?;
            let Some(parent) = store.parent_of(&cursor) else { break false };
            let flags = table.flags(&parent);
            if table.find(&parent).is_none() || flags & NOT_LEAF != 0 {
                break false;
            }
            if flags & LEAF != 0 {
                break true;
            }
            cursor = parent;
        };
        // Record the answer along the way up.
        let flag = if leaf { LEAF } else { NOT_LEAF };
        let mut cursor = start;
        let mut steps = Steps::new(table.marks.len());
        while table.flags(&cursor) & (LEAF | NOT_LEAF) == 0 && table.find(&cursor).is_some() {
            steps.step()?;
            table.set(&cursor, flag);
            match store.parent_of(&cursor) {
                Some(parent) => cursor = parent,
                None => break,
            }
        }
    }
    Ok(())
}

/// Joins every kept AUM to the kept chain (`markAncestorIntersectionAUMs`), moving the new
/// oldest back when a kept fork leaves the active chain before it. Returns the new oldest.
fn mark_ancestors(
    store: &impl CompactableStore,
    table: &mut Table<'_>,
    candidate: AumHash,
) -> Result<AumHash, TkaError> {
    let mut oldest = candidate;
    let mut moved = false;
    let stored = table.marks.len();
    for index in 0..stored {
        let Mark { hash: start, flags } = table.marks[index];
        if flags & RETAIN == 0 || flags & ANCESTOR != 0 || start == candidate {
            continue;
        }
        let mut steps = Steps::new(stored);
        let mut cursor = start;
        while table.flags(&cursor) & ANCESTOR == 0 {
            steps.step()?;
            table.set(&cursor, ANCESTOR);
            store.get(&cursor).ok_or(TkaError::NotFound)?;
            let parent = store
                .parent_of(&cursor)
                .ok_or(TkaError::Invalid("compaction reached a genesis without meeting the kept chain"))?;
            let parent_flags = table.flags(&parent);
            if parent_flags & RETAIN != 0 {
                break;
            }
            if parent_flags & CANDIDATE != 0 {
                // This kept AUM leaves the active chain before the new oldest: move it back
                // here, and keep the active chain from here on.
                oldest = parent;
                moved = true;
                table.set(&parent, ANCESTOR);
                let mut on_chain = parent;
                let mut forward = Steps::new(stored);
                'forward: loop {
                    forward.step()?;
                    for k in 0..stored {
                        let Some(child) = store.child(&on_chain, k) else { break };
                        let f = table.flags(&child);
                        if f & CANDIDATE != 0 && f & ACTIVE == 0 {
                            table.set(&child, ANCESTOR);
                            on_chain = child;
                            continue 'forward;
                        }
                    }
                    break;
                }
                break;
            }
            cursor = parent;
        }
    }
    if moved {
        // The moved oldest must be a checkpoint: walk back to one.
        let mut steps = Steps::new(stored);
        let mut cursor = oldest;
        oldest = loop {
            steps.step()?;
            table.set(&cursor, ACTIVE);
            let aum = Aum::decode(store.get(&cursor).ok_or(TkaError::NotFound)?)?;
            if aum.kind == AumKind::Checkpoint {
                break cursor;
            }
            let parent = store
                .parent_of(&cursor)
                .ok_or(TkaError::Invalid("compaction reached a genesis without finding a checkpoint"))?;
            store.get(&parent).ok_or(TkaError::NotFound)?;
            cursor = parent;
        };
    }
    Ok(oldest)
}

#[cfg(all(test, feature = "std"))]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    extern crate std;
    use super::super::sync::{missing_aums, sync_offer};
    use super::super::testchain::{Chain, NodeKeys};
    use super::*;
    use std::vec::Vec;

    const DAY: u64 = 24 * 60 * 60;
    const NOW: u64 = 1_796_256_000; // 2026-12-03

    /// Genesis, then `len - 1` AUMs with a checkpoint every `every`-th (AUM `every`, 2*`every`,
    /// ...), all committed at `at` unless `young_from` says from which AUM on they are a day old.
    fn chain(len: usize, every: usize, at: u64, young_from: Option<usize>) -> Chain {
        let young_from = young_from.unwrap_or(usize::MAX);
        Chain::loaded(len, every, true, |i| if i >= young_from { NOW - DAY } else { at }, 0)
    }

    fn compact(c: &mut Chain) -> Vec<AumHash> {
        let mut purged = c.authority.compact(&mut c.store, NOW, &COMPACTION_DEFAULTS).unwrap();
        purged.sort();
        purged
    }

    fn sorted(mut v: Vec<AumHash>) -> Vec<AumHash> {
        v.sort();
        v
    }

    /// Reopens from the store and checks it lands where the authority is.
    fn assert_reopens(c: &Chain) {
        let reopened = Authority::open(&c.store, c.authority.oldest()).unwrap();
        assert_eq!(reopened.head(), c.authority.head());
        assert_eq!(reopened.state(), c.authority.state());
    }

    #[test]
    fn old_linear_chain_keeps_24_and_back_to_a_checkpoint() {
        let mut c = chain(101, 10, 0, None);
        let purged = compact(&mut c);
        // 24 back from AUM 100 is AUM 77; the next checkpoint back is AUM 70.
        assert_eq!(purged, sorted(c.hashes[..70].to_vec()));
        assert_eq!(c.authority.oldest(), c.hashes[70]);
        assert_eq!(c.store.aum_count(), 31);
        assert_reopens(&c);
        // Again: nothing more to do.
        assert!(compact(&mut c).is_empty());
        assert_eq!(c.authority.oldest(), c.hashes[70]);
    }

    #[test]
    fn the_24th_aum_back_is_kept_even_as_a_checkpoint() {
        // Checkpoint 24 is the 24th AUM back from head 47: kept as one of the 24, so the
        // walk goes on to the genesis and nothing goes.
        let mut c = chain(48, 24, 0, None);
        assert!(compact(&mut c).is_empty());
        assert_eq!(c.authority.oldest(), c.hashes[0]);
        // One more AUM and checkpoint 24 is the first beyond the 24: the chain starts there.
        let mut c = chain(49, 24, 0, None);
        assert_eq!(compact(&mut c), sorted(c.hashes[..24].to_vec()));
        assert_eq!(c.authority.oldest(), c.hashes[24]);
    }

    #[test]
    fn young_aums_are_kept() {
        // AUMs 40 on are a day old: the walk back goes past them to checkpoint 30 (old).
        let mut c = chain(101, 10, NOW - 30 * DAY, Some(40));
        let purged = compact(&mut c);
        assert_eq!(purged, sorted(c.hashes[..30].to_vec()));
        assert_eq!(c.authority.oldest(), c.hashes[30]);
        assert_reopens(&c);
    }

    #[test]
    fn age_boundary_is_strict_like_the_reference() {
        // Committed exactly 14 days ago is old (the reference keeps what is After now-14d).
        let mut c = chain(60, 10, NOW - COMPACTION_MIN_AGE_SECS, None);
        compact(&mut c);
        assert_eq!(c.authority.oldest(), c.hashes[30]);
        // One second later is young: everything stays (back to the genesis checkpoint).
        let mut c = chain(60, 10, NOW - COMPACTION_MIN_AGE_SECS + 1, None);
        assert!(compact(&mut c).is_empty());
        assert_eq!(c.authority.oldest(), c.hashes[0]);
    }

    #[test]
    fn short_chain_is_kept_whole() {
        let mut c = chain(24, 5, 0, None);
        assert!(compact(&mut c).is_empty());
        assert_eq!(c.authority.oldest(), c.hashes[0]);
        let mut c = chain(25, 5, 0, None);
        // 25 AUMs: AUMs 1 to 24 are the 24 newest, the genesis is the checkpoint before them.
        assert!(compact(&mut c).is_empty());
        assert_eq!(c.authority.oldest(), c.hashes[0]);
    }

    #[test]
    fn forks_off_purged_aums_go_unless_young() {
        // An old fork off AUM 50 (which goes): purged with it.
        let mut c = chain(101, 10, 0, None);
        let mut fork = c.prefix(51);
        fork.noop_by(1);
        let old_fork = fork.authority.head();
        c.inform(&[fork.bytes_of(&old_fork)]).unwrap();
        assert_ne!(c.authority.head(), old_fork);
        let purged = compact(&mut c);
        assert!(purged.contains(&old_fork));
        assert_eq!(c.authority.oldest(), c.hashes[70]);

        // A young fork off AUM 55: kept, and the oldest moves back to checkpoint 50 so the
        // fork still joins the chain.
        let mut c = chain(101, 10, 0, None);
        let mut fork = c.prefix(56);
        fork.noop_by(1);
        let young_fork = fork.authority.head();
        c.store.set_now(NOW - DAY);
        c.inform(&[fork.bytes_of(&young_fork)]).unwrap();
        let purged = compact(&mut c);
        assert_eq!(purged, sorted(c.hashes[..50].to_vec()));
        assert_eq!(c.authority.oldest(), c.hashes[50]);
        assert!(c.store.get(&young_fork).is_some());
        assert_reopens(&c);

        // An old fork off AUM 90 (kept): kept as a descendant of a kept AUM.
        let mut c = chain(101, 10, 0, None);
        let mut fork = c.prefix(91);
        fork.noop_by(1);
        let kept_fork = fork.authority.head();
        c.inform(&[fork.bytes_of(&kept_fork)]).unwrap();
        let purged = compact(&mut c);
        assert_eq!(purged, sorted(c.hashes[..70].to_vec()));
        assert!(c.store.get(&kept_fork).is_some());
    }

    #[test]
    fn chain_grows_and_compacts_again() {
        let mut c = chain(101, 10, 0, None);
        compact(&mut c);
        for i in 101..161 {
            if i % 10 == 0 {
                c.checkpoint();
            } else {
                c.noop_by(0);
            }
        }
        assert_reopens(&c);
        let purged = compact(&mut c);
        // 24 back from 160 is 137: checkpoint 130.
        assert_eq!(purged, sorted(c.hashes[70..130].to_vec()));
        assert_reopens(&c);
    }

    #[test]
    fn sync_after_compaction() {
        let mut c = chain(101, 10, 0, None);
        let peer = c.prefix(90);
        let far_peer = c.prefix(40);
        compact(&mut c);
        let mut got = Vec::new();
        let offer = sync_offer(&c.store, &c.authority).unwrap();
        assert_eq!(offer.ancestors.last(), Some(&c.hashes[70]), "the offer ends at the new oldest");
        missing_aums(&c.store, &c.authority, &sync_offer(&peer.store, &peer.authority).unwrap(), |h, _| {
            got.push(*h);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, c.hashes[90..].to_vec());
        // A peer behind by more than we kept shares nothing with us any more.
        let far = sync_offer(&far_peer.store, &far_peer.authority).unwrap();
        assert_eq!(missing_aums(&c.store, &c.authority, &far, |_, _| Ok(())), Err(TkaError::NoIntersection));
        // The other way round: the peer sends us what we lack from our offer.
        let mut peer = peer;
        let mut ahead = c.clone();
        ahead.noop_by(0);
        let mut sent = Vec::new();
        missing_aums(
            &ahead.store,
            &ahead.authority,
            &sync_offer(&peer.store, &peer.authority).unwrap(),
            |_, b| {
                sent.push(b.to_vec());
                Ok(())
            },
        )
        .unwrap();
        peer.inform(&sent).unwrap();
        assert_eq!(peer.authority.head(), ahead.authority.head());
    }

    #[test]
    fn young_checkpoint_bootstrap_without_its_parent() {
        // Bootstrapped a day ago from a checkpoint that is not the genesis (its parent is
        // unknown to us), 30 AUMs since: the reference fails here, we keep everything.
        let mut c = Chain::new(&NodeKeys::default());
        let checkpoint = Chain::checkpoint_aum(&c.keys, Some(&AumHash([5; 32])));
        c.store = Default::default();
        c.store.set_now(NOW - DAY);
        c.authority = Authority::bootstrap(&mut c.store, &checkpoint).unwrap();
        let bootstrapped = c.authority.head();
        c.noops(30);
        assert!(compact(&mut c).is_empty());
        assert_eq!(c.authority.oldest(), bootstrapped);
        assert_eq!(c.store.aum_count(), 31);
    }

    #[test]
    fn options_and_scratch_are_checked() {
        let mut c = chain(30, 10, 0, None);
        let mut marks = [Mark::default(); 29];
        let r = c.authority.compact_with(&mut c.store, NOW, &COMPACTION_DEFAULTS, &mut marks);
        assert_eq!(r, Err(TkaError::BufferTooSmall));
        let mut marks = [Mark::default(); 30];
        let zero = CompactionOptions { min_chain: 0, ..COMPACTION_DEFAULTS };
        assert!(c.authority.compact_with(&mut c.store, NOW, &zero, &mut marks).is_err());
        let zero = CompactionOptions { min_age_secs: 0, ..COMPACTION_DEFAULTS };
        assert!(c.authority.compact_with(&mut c.store, NOW, &zero, &mut marks).is_err());
        assert_eq!(c.store.aum_count(), 30);
        // The scratch reports what went.
        let n = c.authority.compact_with(&mut c.store, NOW, &COMPACTION_DEFAULTS, &mut marks).unwrap();
        // 24 back from AUM 29 is 6; then checkpoint 0 (the genesis): nothing goes.
        assert_eq!(n, 0);
        let opts = CompactionOptions { min_chain: 5, ..COMPACTION_DEFAULTS };
        let n = c.authority.compact_with(&mut c.store, NOW, &opts, &mut marks).unwrap();
        assert_eq!(n, 20);
        let mut purged: Vec<AumHash> = marks.iter().filter(|m| m.purged()).map(|m| m.hash()).collect();
        purged.sort();
        assert_eq!(purged, sorted(c.hashes[..20].to_vec()));
    }
}
