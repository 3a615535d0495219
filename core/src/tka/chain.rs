//! The AUM chain: bootstrap from a checkpoint, verify and apply updates, and pick the active
//! chain when it forks (`ts:tka/tka.go`).
//!
//! Sans-I/O: AUMs live in a caller's [`AumStore`] (flash on a router, a map in tests). The sync
//! protocol's offers are in [`super::sync`], compaction in [`super::compact`].

use super::aum::{Aum, AumKind};
use super::limits::MAX_SCAN_ITERATIONS;
use super::{AumHash, State, TkaError};

/// Where AUMs are kept. Updates are staged first and committed only if the whole batch verifies.
/// Staged AUMs must be visible to `get`, `parent_of` and `child` until committed or discarded.
pub trait AumStore {
    /// The bytes of a stored (or staged) AUM.
    fn get(&self, hash: &AumHash) -> Option<&[u8]>;
    /// The parent recorded when the AUM was staged; `None` for a genesis or an unknown AUM.
    fn parent_of(&self, hash: &AumHash) -> Option<AumHash>;
    /// The `index`-th child of `parent`, in any stable order.
    fn child(&self, parent: &AumHash, index: usize) -> Option<AumHash>;
    /// True if nothing is stored.
    fn is_empty(&self) -> bool;
    /// Keeps an AUM aside until [`AumStore::commit`] or [`AumStore::discard`].
    fn stage(&mut self, hash: &AumHash, parent: Option<&AumHash>, aum: &[u8]) -> Result<(), TkaError>;
    fn commit(&mut self);
    fn discard(&mut self);
}

/// A verified tailnet-lock authority: the state at the head of the active chain.
#[derive(Clone, Debug)]
pub struct Authority {
    state: State,
    head: AumHash,
    /// The AUM we bootstrapped from; every stored AUM descends from it.
    oldest: AumHash,
}

impl Authority {
    /// Starts from a checkpoint AUM (the genesis, or a later checkpoint from control's
    /// bootstrap answer), which must be signed by keys of its own state. `store` must be empty.
    pub fn bootstrap(store: &mut impl AumStore, genesis: &[u8]) -> Result<Self, TkaError> {
        if !store.is_empty() {
            return Err(TkaError::Invalid("bootstrap into a non-empty store"));
        }
        let aum = Aum::decode(genesis)?;
        if aum.kind != AumKind::Checkpoint {
            return Err(TkaError::Invalid("bootstrap AUM must be a checkpoint"));
        }
        let view = aum.state.ok_or(TkaError::Invalid("bootstrap AUM without a state"))?;
        aum.static_validate()?;
        let hash = aum.hash();
        let state = State::from_checkpoint(&view, hash)?;
        aum.verify_signatures(&State { last_aum_hash: None, ..state.clone() })?;
        store.stage(&hash, aum.parent().as_ref(), genesis)?;
        store.commit();
        Ok(Authority { state, head: hash, oldest: hash })
    }

    /// Resumes from a store this authority's AUMs were committed to, recomputing the active
    /// chain from the bootstrap AUM `oldest`.
    pub fn open(store: &impl AumStore, oldest: AumHash) -> Result<Self, TkaError> {
        let (head, state) = active_chain(store, oldest)?;
        Ok(Authority { state, head, oldest })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Hash of the head AUM (`TKAHead` in map requests).
    pub fn head(&self) -> AumHash {
        self.head
    }

    /// Hash of the oldest AUM of the active chain: the one this authority was bootstrapped from,
    /// or after [`Authority::compact`](super::compact) the checkpoint it compacted to (the
    /// reference's "last active ancestor"). Keep it with the store: [`Authority::open`] needs it.
    pub fn oldest(&self) -> AumHash {
        self.oldest
    }

    /// After compaction: the active chain now starts at `oldest`, a stored ancestor of the head.
    pub(super) fn set_oldest(&mut self, oldest: AumHash) {
        self.oldest = oldest;
    }

    /// Verifies and stores `updates` (oldest first), then moves to the head of the active
    /// chain. Each update must be signed, by keys trusted at its parent, with the parent already
    /// stored or earlier in `updates`. If any update fails, nothing is stored and `self` is
    /// unchanged. AUMs already stored are skipped.
    pub fn inform(&mut self, store: &mut impl AumStore, updates: &[&[u8]]) -> Result<(), TkaError> {
        if updates.is_empty() {
            return Err(TkaError::Invalid("no updates"));
        }
        match self.stage_updates(store, updates) {
            Ok(Some((head, state))) => {
                store.commit();
                self.head = head;
                self.state = state;
                Ok(())
            }
            Ok(None) => {
                store.commit();
                let (head, state) = active_chain(store, self.oldest)?;
                self.head = head;
                self.state = state;
                Ok(())
            }
            Err(e) => {
                store.discard();
                Err(e)
            }
        }
    }

    /// Verifies and stages each update. Returns the new head and state if the updates simply
    /// extended the current head (the common case), or `None` if the active chain must be
    /// recomputed.
    fn stage_updates(
        &self,
        store: &mut impl AumStore,
        updates: &[&[u8]],
    ) -> Result<Option<(AumHash, State)>, TkaError> {
        let mut work = self.state.clone();
        let mut work_at = self.head;
        let mut extends_head = true;
        for bytes in updates {
            let aum = Aum::decode(bytes)?;
            let hash = aum.hash();
            if store.get(&hash).is_some() {
                extends_head = false;
                continue;
            }
            let parent = aum.parent().ok_or(TkaError::WrongParent)?;
            if parent != work_at {
                extends_head = false;
                work = if parent == self.head { self.state.clone() } else { state_at(store, parent)? };
            }
            aum.static_validate()?;
            aum.verify_signatures(&work)?;
            work.apply(&aum, hash)?;
            work_at = hash;
            store.stage(&hash, Some(&parent), bytes)?;
        }
        Ok(extends_head.then_some((work_at, work)))
    }

    /// Checks a node key signature against the current state (see [`super::sig`]).
    pub fn node_key_authorized(
        &self,
        node_key: &crate::key::NodePublic,
        signature: &[u8],
    ) -> Result<Option<super::sig::RotationDetails>, TkaError> {
        super::sig::node_key_authorized(&self.state, node_key, signature)
    }

    /// True if `secret` is a valid disablement secret for this authority.
    #[cfg(feature = "std")]
    pub fn valid_disablement(&self, secret: &[u8]) -> bool {
        self.state.check_disablement(secret)
    }
}

/// The state at a stored AUM: walk back to a checkpoint or a genesis, then replay forward along
/// the same path (`computeStateAt`). Replaying looks the path up again from the target for each
/// step rather than remembering it, trading time on rare fork replays for no allocation.
pub fn state_at(store: &impl AumStore, target: AumHash) -> Result<State, TkaError> {
    let mut cursor = target;
    let mut depth = 0usize;
    let mut state = loop {
        if depth >= MAX_SCAN_ITERATIONS {
            return Err(TkaError::IterationLimit);
        }
        let bytes = store.get(&cursor).ok_or(TkaError::NotFound)?;
        let aum = Aum::decode(bytes)?;
        if aum.kind == AumKind::Checkpoint {
            let view = aum.state.ok_or(TkaError::Invalid("checkpoint without a state"))?;
            break State::from_checkpoint(&view, cursor)?;
        }
        match aum.parent() {
            Some(parent) => cursor = parent,
            None if matches!(aum.kind, AumKind::NoOp | AumKind::AddKey) => {
                let mut genesis = State::default();
                genesis.apply(&aum, cursor)?;
                break genesis;
            }
            None => return Err(TkaError::Invalid("genesis AUM of a kind that cannot start a chain")),
        }
        depth += 1;
    };
    for steps_back in (0..depth).rev() {
        let mut at = target;
        for _ in 0..steps_back {
            at = store.parent_of(&at).ok_or(TkaError::NotFound)?;
        }
        let bytes = store.get(&at).ok_or(TkaError::NotFound)?;
        state.apply(&Aum::decode(bytes)?, at)?;
    }
    Ok(state)
}

/// From the bootstrap AUM, follow the children picked by the fork rules to a head
/// (`computeActiveChain` + `fastForward`). Returns the head and the state there.
pub fn active_chain(store: &impl AumStore, oldest: AumHash) -> Result<(AumHash, State), TkaError> {
    let state = state_at(store, oldest)?;
    fast_forward(store, oldest, state, MAX_SCAN_ITERATIONS, |_, _| Ok(false))
}

/// From `start` (stored, with `state` the state there), follow the children the fork rules pick
/// (`fastForward`). `done` sees each AUM reached, `start` first, and stops the walk by returning
/// true; otherwise it ends at a head. At most `max_steps` AUMs are seen: a longer walk is
/// [`TkaError::IterationLimit`]. Returns the last AUM seen and the state there.
pub fn fast_forward(
    store: &impl AumStore,
    start: AumHash,
    mut state: State,
    max_steps: usize,
    mut done: impl FnMut(&AumHash, &[u8]) -> Result<bool, TkaError>,
) -> Result<(AumHash, State), TkaError> {
    let mut at = start;
    let mut bytes = store.get(&start).ok_or(TkaError::NotFound)?;
    for _ in 0..max_steps {
        if done(&at, bytes)? {
            return Ok((at, state));
        }
        let Some((next, next_bytes)) = pick_next(store, &at, &state)? else {
            return Ok((at, state));
        };
        state.apply(&Aum::decode(next_bytes)?, next)?;
        at = next;
        bytes = next_bytes;
    }
    Err(TkaError::IterationLimit)
}

/// Fork resolution among the children of `parent` (`pickNextAUM`): the highest signature
/// weight in the parent's state wins; on a tie a RemoveKey wins; then the lowest hash.
fn pick_next<'s>(
    store: &'s impl AumStore,
    parent: &AumHash,
    state: &State,
) -> Result<Option<(AumHash, &'s [u8])>, TkaError> {
    let mut best: Option<(u64, bool, AumHash, &'s [u8])> = None;
    for index in 0.. {
        let Some(hash) = store.child(parent, index) else { break };
        let bytes = store.get(&hash).ok_or(TkaError::NotFound)?;
        let aum = Aum::decode(bytes)?;
        let candidate = (aum.weight(state), aum.kind == AumKind::RemoveKey, hash, bytes);
        let better = match &best {
            None => true,
            Some((w, remove, h, _)) => {
                (candidate.0, candidate.1).cmp(&(*w, *remove)).then_with(|| h.0.cmp(&candidate.2 .0)).is_gt()
            }
        };
        if better {
            best = Some(candidate);
        }
    }
    Ok(best.map(|(_, _, hash, bytes)| (hash, bytes)))
}
