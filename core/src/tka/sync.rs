//! The sync protocol's arithmetic (`ts:tka/sync.go`): what we offer a remote (our head and a
//! sparse list of ancestors), and which of our AUMs a remote lacks given its offer.
//!
//! The agent runs `/machine/tka/sync/offer` with [`sync_offer`], feeds control's answer to
//! [`missing_aums`] (before informing our authority of control's AUMs, as the reference does, so
//! AUMs that lose a fork still reach control) and sends those with `/machine/tka/sync/send`.
//!
//! A remote's offer is untrusted: every walk here is capped by the reference's limits, and an
//! offer shares nothing with our chain is [`TkaError::NoIntersection`].

use heapless::Vec;

use super::chain::{fast_forward, state_at};
use super::limits::{
    MAX_OFFER_ANCESTORS, MAX_SYNC_HEAD_INTERSECTION_ITERATIONS, MAX_SYNC_ITERATIONS,
    OFFER_ANCESTOR_SKIP_SHIFT, OFFER_ANCESTOR_SKIP_START,
};
use super::{AumHash, AumStore, Authority, TkaError};

/// What one side offers: its head and a sparse list of its ancestors, newest first, ending with
/// the oldest AUM it has (`SyncOffer`, `ts:tka/sync.go`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncOffer {
    pub head: AumHash,
    pub ancestors: Vec<AumHash, MAX_OFFER_ANCESTORS>,
}

impl SyncOffer {
    /// From the text form `TKASyncOfferRequest` / `TKASyncOfferResponse` carry (`ToSyncOffer`):
    /// base32 hashes. An offer listing more than [`MAX_OFFER_ANCESTORS`] ancestors is refused
    /// (the reference's own offers list at most 5).
    pub fn from_text<'a>(head: &str, ancestors: impl IntoIterator<Item = &'a str>) -> Result<Self, TkaError> {
        let head = AumHash::parse(head).ok_or(TkaError::Invalid("sync offer head is not an AUM hash"))?;
        let mut out = SyncOffer { head, ancestors: Vec::new() };
        for text in ancestors {
            let hash =
                AumHash::parse(text).ok_or(TkaError::Invalid("sync offer ancestor is not an AUM hash"))?;
            out.ancestors
                .push(hash)
                .map_err(|_| TkaError::Unsupported("sync offer with more than 16 ancestors"))?;
        }
        Ok(out)
    }
}

/// Our offer (`Authority.SyncOffer`): the head, then the AUMs 4, 16, 64 and 256 steps back from
/// it (as far as the chain reaches within 400 steps), then the oldest. As in the reference, the
/// oldest appears twice when it is exactly one of those steps back (a chain of 5 AUMs).
pub fn sync_offer(store: &impl AumStore, authority: &Authority) -> Result<SyncOffer, TkaError> {
    let oldest = authority.oldest();
    let mut out = SyncOffer { head: authority.head(), ancestors: Vec::new() };
    let mut skip = OFFER_ANCESTOR_SKIP_START;
    let mut cursor = authority.head();
    for step in 0..MAX_SYNC_HEAD_INTERSECTION_ITERATIONS {
        if step > 0 && step % skip == 0 {
            push_ancestor(&mut out, cursor)?;
            skip <<= OFFER_ANCESTOR_SKIP_SHIFT;
        }
        if store.get(&cursor).is_none() || cursor == oldest {
            break;
        }
        match store.parent_of(&cursor) {
            Some(parent) => cursor = parent,
            None => break,
        }
    }
    push_ancestor(&mut out, oldest)?;
    Ok(out)
}

fn push_ancestor(offer: &mut SyncOffer, hash: AumHash) -> Result<(), TkaError> {
    // At most 4 skips fit in the walk, plus the oldest: 5 of 16.
    offer.ancestors.push(hash).map_err(|_| TkaError::Unsupported("sync offer ancestors"))
}

/// The AUMs `remote` lacks, oldest first, each passed to `emit` with its hash
/// (`Authority.MissingAUMs` and `computeSyncIntersection`):
///
/// - nothing if the remote's head is ours;
/// - if the remote's head is in our chain at most 400 AUMs back from our head, every AUM after it;
/// - otherwise, the first ancestor the remote lists from which our fork rules lead to our head
///   (looked at newest first), and every AUM after it: if the remote is ahead of us this re-sends
///   AUMs it already has unless it listed our head, which costs it nothing (`inform` skips them);
/// - [`TkaError::NoIntersection`] if no listed AUM leads to our head.
///
/// At most [`MAX_SYNC_ITERATIONS`] AUMs are emitted; a longer run is [`TkaError::IterationLimit`].
/// On an error after some AUMs were emitted (a walk too long, or `emit`'s own error), the caller
/// must drop what it got.
pub fn missing_aums(
    store: &impl AumStore,
    authority: &Authority,
    remote: &SyncOffer,
    mut emit: impl FnMut(&AumHash, &[u8]) -> Result<(), TkaError>,
) -> Result<(), TkaError> {
    let head = authority.head();
    if remote.head == head {
        return Ok(());
    }
    let from = match head_intersection(store, head, remote.head) {
        Some(from) => from,
        None => tail_intersection(store, head, remote)?.ok_or(TkaError::NoIntersection)?,
    };
    let state = state_at(store, from)?;
    fast_forward(store, from, state, MAX_SYNC_ITERATIONS, |hash, bytes| {
        if *hash != from {
            emit(hash, bytes)?;
        }
        Ok(false)
    })?;
    Ok(())
}

/// The remote's head, if we have it and it is at most 400 AUMs back along our chain.
fn head_intersection(store: &impl AumStore, head: AumHash, remote_head: AumHash) -> Option<AumHash> {
    store.get(&remote_head)?;
    let mut cursor = head;
    for _ in 0..MAX_SYNC_HEAD_INTERSECTION_ITERATIONS {
        store.get(&cursor)?;
        if cursor == remote_head {
            return Some(cursor);
        }
        cursor = store.parent_of(&cursor)?;
    }
    None
}

/// The first ancestor in the remote's list that we have and from which the fork rules lead to
/// our head. Unknown ancestors are skipped; a known one whose state cannot be computed is an
/// error, as in the reference.
fn tail_intersection(
    store: &impl AumStore,
    head: AumHash,
    remote: &SyncOffer,
) -> Result<Option<AumHash>, TkaError> {
    for &ancestor in &remote.ancestors {
        if store.get(&ancestor).is_none() {
            continue;
        }
        let state = state_at(store, ancestor)?;
        let (end, _) =
            fast_forward(store, ancestor, state, MAX_SYNC_ITERATIONS, |hash, _| Ok(*hash == head))?;
        if end == head {
            return Ok(Some(ancestor));
        }
    }
    Ok(None)
}

#[cfg(all(test, feature = "std"))]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    extern crate std;
    use super::super::testchain::{Chain, NodeKeys};
    use super::*;
    use std::vec::Vec as StdVec;

    fn offer_of(chain: &Chain) -> SyncOffer {
        sync_offer(&chain.store, &chain.authority).unwrap()
    }

    fn missing(chain: &Chain, remote: &SyncOffer) -> Result<StdVec<AumHash>, TkaError> {
        let mut out = StdVec::new();
        missing_aums(&chain.store, &chain.authority, remote, |h, bytes| {
            assert_eq!(super::super::Aum::decode(bytes).unwrap().hash(), *h);
            out.push(*h);
            Ok(())
        })?;
        Ok(out)
    }

    /// A chain of `len` AUMs: a genesis checkpoint and NoOps, signed if short enough for that
    /// to be quick (the long ones test walks, not weights).
    fn linear(len: usize) -> Chain {
        Chain::loaded(len, 0, len <= 100, |_| 0, 0)
    }

    #[test]
    fn offer_of_a_single_aum_is_the_genesis_twice() {
        let chain = linear(1);
        let offer = offer_of(&chain);
        assert_eq!(offer.head, chain.hashes[0]);
        assert_eq!(offer.ancestors.as_slice(), &[chain.hashes[0]]);
    }

    #[test]
    fn offer_of_five_lists_the_oldest_twice_like_the_reference() {
        let chain = linear(5);
        let offer = offer_of(&chain);
        assert_eq!(offer.head, chain.hashes[4]);
        assert_eq!(offer.ancestors.as_slice(), &[chain.hashes[0], chain.hashes[0]]);
    }

    #[test]
    fn offer_of_100_and_1000_skips_4_16_64_256() {
        let chain = linear(1000);
        let h = |back: usize| chain.hashes[999 - back];
        let offer = offer_of(&chain);
        assert_eq!(offer.head, h(0));
        assert_eq!(offer.ancestors.as_slice(), &[h(4), h(16), h(64), h(256), chain.hashes[0]]);

        let chain = linear(100);
        let h = |back: usize| chain.hashes[99 - back];
        let offer = offer_of(&chain);
        assert_eq!(offer.ancestors.as_slice(), &[h(4), h(16), h(64), chain.hashes[0]]);
    }

    #[test]
    fn remote_behind_gets_what_follows_its_head() {
        let chain = linear(30);
        let behind = chain.prefix(20);
        let got = missing(&chain, &offer_of(&behind)).unwrap();
        assert_eq!(got, chain.hashes[20..].to_vec());
        // And the remote, informed of them, lands on our head.
        let mut behind = behind;
        let bytes: StdVec<StdVec<u8>> = got.iter().map(|h| chain.bytes_of(h)).collect();
        behind.inform(&bytes).unwrap();
        assert_eq!(behind.authority.head(), chain.authority.head());
        assert!(missing(&chain, &offer_of(&behind)).unwrap().is_empty());
    }

    #[test]
    fn remote_behind_beyond_400_is_found_through_its_ancestors() {
        let chain = linear(600);
        let behind = chain.prefix(100);
        // Its head is ours 500 back, beyond the head search, so its first ancestor (AUM 95) is
        // used: it gets AUMs 96 to 99 again (the reference does the same).
        let got = missing(&chain, &offer_of(&behind)).unwrap();
        assert_eq!(got, chain.hashes[96..].to_vec());
    }

    #[test]
    fn remote_equal_gets_nothing() {
        let chain = linear(10);
        assert!(missing(&chain, &offer_of(&chain)).unwrap().is_empty());
    }

    #[test]
    fn remote_ahead_gets_nothing_new() {
        let ahead = linear(30);
        let chain = ahead.prefix(28);
        // Their first ancestor is AUM 25 (4 back from 29): we send 26 and 27, which they have.
        let got = missing(&chain, &offer_of(&ahead)).unwrap();
        assert_eq!(got, ahead.hashes[26..28].to_vec());
        // Ahead by exactly 4: their first ancestor is our head, nothing is sent.
        let chain = ahead.prefix(26);
        assert!(missing(&chain, &offer_of(&ahead)).unwrap().is_empty());
    }

    #[test]
    fn remote_on_a_losing_fork_gets_our_branch() {
        let mut chain = linear(10);
        let mut fork = chain.clone();
        // Both extend AUM 9: ours by a weight-2 signer, theirs by weight 1, so ours wins.
        chain.noop_by(0);
        chain.noop_by(0);
        fork.noop_by(1);
        let got = missing(&chain, &offer_of(&fork)).unwrap();
        // Their offer's first ancestor is 4 back from their head: AUM 6, common to both.
        let fork_offer = offer_of(&fork);
        assert_eq!(fork_offer.ancestors.as_slice(), &[chain.hashes[6], chain.hashes[0]]);
        assert_eq!(got, chain.hashes[7..].to_vec());

        // Once they have our branch, their chain switches to it and they need nothing more.
        let bytes: StdVec<StdVec<u8>> = got.iter().map(|h| chain.bytes_of(h)).collect();
        fork.inform(&bytes).unwrap();
        assert_eq!(fork.authority.head(), chain.authority.head());
    }

    #[test]
    fn we_on_the_losing_fork_send_our_branch_from_the_fork_point() {
        let mut winner = linear(10);
        let mut loser = winner.clone();
        winner.noop_by(0);
        loser.noop_by(1);
        loser.noop_by(1);
        // The loser knows nothing of the winner's head; the winner's first ancestor (AUM 6)
        // leads to the loser's head by the loser's fork rules (it lacks the winner's AUM).
        let got = missing(&loser, &offer_of(&winner)).unwrap();
        assert_eq!(got, loser.hashes[7..].to_vec());
        // The loser informs itself of the winner's AUM: its head moves there, and what it
        // computed before still reaches control (the reference computes it before informing).
        let win_bytes = winner.bytes_of(&winner.authority.head());
        loser.inform(&[win_bytes]).unwrap();
        assert_eq!(loser.authority.head(), winner.authority.head());
    }

    #[test]
    fn unrelated_chain_is_no_intersection() {
        let ours = linear(10);
        let other = Chain::new(&NodeKeys::other());
        assert_eq!(missing(&ours, &offer_of(&other)), Err(TkaError::NoIntersection));
        // A hostile offer naming nothing we have.
        let mut junk = SyncOffer { head: AumHash([7; 32]), ancestors: Vec::new() };
        junk.ancestors.extend((0..MAX_OFFER_ANCESTORS).map(|i| AumHash([i as u8; 32])));
        assert_eq!(missing(&ours, &junk), Err(TkaError::NoIntersection));
        // An empty offer the same.
        let empty = SyncOffer { head: AumHash([9; 32]), ancestors: Vec::new() };
        assert_eq!(missing(&ours, &empty), Err(TkaError::NoIntersection));
    }

    #[test]
    fn offer_text_round_trip_and_limits() {
        let chain = linear(20);
        let offer = offer_of(&chain);
        let head = std::string::ToString::to_string(&offer.head);
        let ancestors: StdVec<std::string::String> =
            offer.ancestors.iter().map(std::string::ToString::to_string).collect();
        let parsed = SyncOffer::from_text(&head, ancestors.iter().map(|s| s.as_str())).unwrap();
        assert_eq!(parsed, offer);
        assert!(matches!(SyncOffer::from_text("nope", []), Err(TkaError::Invalid(_))));
        assert!(matches!(SyncOffer::from_text(&head, ["nope"]), Err(TkaError::Invalid(_))));
        let many = std::vec![head.as_str(); MAX_OFFER_ANCESTORS + 1];
        assert!(matches!(SyncOffer::from_text(&head, many), Err(TkaError::Unsupported(_))));
    }

    #[test]
    fn missing_stops_at_the_sync_iteration_limit() {
        // Opened from a checkpoint half way: opening from the genesis would hit the same limit.
        let chain = Chain::loaded(MAX_SYNC_ITERATIONS + 2, 1000, false, |_| 0, 1000);
        // A remote with only our genesis: 2001 AUMs to send is over the limit.
        let mut remote = SyncOffer { head: chain.hashes[0], ancestors: Vec::new() };
        remote.ancestors.push(chain.hashes[0]).unwrap();
        assert_eq!(missing(&chain, &remote), Err(TkaError::IterationLimit));
    }

    #[test]
    fn any_offer_gives_an_answer_not_a_panic() {
        // Offers mixing our hashes (in any order, repeated) with unknown ones: the answer is a
        // suffix of our chain or no intersection.
        let mut chain = linear(60);
        let mut fork = chain.prefix(30);
        fork.noop_by(1);
        chain.inform(&[fork.bytes_of(&fork.authority.head())]).unwrap();
        let mut known = chain.hashes.clone();
        known.push(fork.authority.head());
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..300 {
            let pick = |n: &mut dyn FnMut() -> u64| {
                let r = n();
                if r & 3 == 0 {
                    AumHash([(r >> 8) as u8; 32])
                } else {
                    known[(r >> 8) as usize % known.len()]
                }
            };
            let head = pick(&mut next);
            let mut offer = SyncOffer { head, ancestors: Vec::new() };
            for _ in 0..next() % (MAX_OFFER_ANCESTORS as u64 + 1) {
                offer.ancestors.push(pick(&mut next)).unwrap();
            }
            match missing(&chain, &offer) {
                Ok(got) => {
                    let from = chain.hashes.len() - got.len();
                    assert_eq!(got, chain.hashes[from..].to_vec(), "{offer:?}");
                }
                Err(e) => assert_eq!(e, TkaError::NoIntersection, "{offer:?}"),
            }
        }
    }

    #[test]
    fn emit_errors_stop_the_walk() {
        let chain = linear(10);
        let behind = chain.prefix(5);
        let mut n = 0;
        let r = missing_aums(&chain.store, &chain.authority, &offer_of(&behind), |_, _| {
            n += 1;
            if n == 2 {
                Err(TkaError::BufferTooSmall)
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err(TkaError::BufferTooSmall));
        assert_eq!(n, 2);
    }
}
