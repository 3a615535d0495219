//! Retroactive revocation (`tailscale lock revoke-keys`, `MakeRetroactiveRevocation` and
//! `findParentForRewrite` in `ts:tka/tka.go`): a checkpoint that forks the chain from before the
//! revoked keys were trusted, without them. Co-signed by enough trusted keys, it outweighs the
//! branch the revoked keys could have written, so fork resolution erases whatever they did.
//!
//! Difference from the reference: the checkpoint's keys carry no metadata ([`State`] does not
//! keep it); votes, disablement values and state IDs are kept.

use heapless::Vec;

use super::aum::build::{self, Change};
use super::chain::state_at;
use super::limits::{MAX_KEYS, MAX_SCAN_ITERATIONS};
use super::{verify, Aum, AumHash, AumStore, Authority, TkaError};
use crate::key::NlPublic;

/// Where the revocation forks from: walking back from the head, the first AUM at which none of
/// `remove` is trusted and `ours` is (so we can sign the fork), or the oldest AUM we have.
pub fn rewrite_parent(
    store: &impl AumStore,
    authority: &Authority,
    remove: &[NlPublic],
    ours: &NlPublic,
) -> Result<AumHash, TkaError> {
    let mut cursor = authority.head();
    for _ in 0..MAX_SCAN_ITERATIONS {
        if cursor == authority.oldest() {
            return Ok(cursor);
        }
        let state = state_at(store, cursor)?;
        let revoked_trusted = remove.iter().any(|k| state.key_by_id(&k.0).is_some());
        if !revoked_trusted && state.key_by_id(&ours.0).is_some() {
            return Ok(cursor);
        }
        let bytes = store.get(&cursor).ok_or(TkaError::NotFound)?;
        match Aum::decode(bytes)?.parent() {
            Some(parent) => cursor = parent,
            None => return Ok(cursor),
        }
    }
    Err(TkaError::IterationLimit)
}

/// Writes the revocation checkpoint into `out`, signed by `signer_seed`: the current state
/// without `remove`, with `parent` as its parent (from [`rewrite_parent`], or `--fork-from`).
/// Refuses when none of `remove` is trusted now (unless a parent was given) or when no key
/// would be left.
pub fn revocation(
    out: &mut [u8],
    authority: &Authority,
    parent: AumHash,
    remove: &[NlPublic],
    signer_seed: &[u8; 32],
) -> Result<usize, TkaError> {
    let state = authority.state();
    let mut keys: Vec<(NlPublic, u16), MAX_KEYS> = Vec::new();
    for key in &state.keys {
        let Some(public) = key.nl_public() else { continue };
        if !remove.contains(&public) {
            keys.push((public, key.votes)).map_err(|_| TkaError::TooManyKeys)?;
        }
    }
    if keys.is_empty() {
        return Err(TkaError::Invalid("cannot revoke all trusted keys"));
    }
    let change = Change::Checkpoint {
        keys: &keys,
        disablement_values: &state.disablement_values,
        state_id1: state.state_id1,
        state_id2: state.state_id2,
    };
    let n = build::unsigned(out, Some(&parent), &change)?;
    let aum = Aum::decode(&out[..n])?;
    aum.static_validate()?;
    let signature = verify::sign(signer_seed, &aum.sig_hash());
    build::signed(out, Some(&parent), &change, &[(verify::public_of(signer_seed), signature)])
}

/// Adds `signer_seed`'s signature to a recovery AUM (`--cosign`), refusing one it signed already.
pub fn cosign(aum_bytes: &[u8], signer_seed: &[u8; 32], out: &mut [u8]) -> Result<usize, TkaError> {
    let aum = Aum::decode(aum_bytes)?;
    let id = verify::public_of(signer_seed);
    if aum.signatures.iter().flat_map(|s| s.iter()).any(|s| s.key_id.is_some_and(|k| k.eq_bytes(&id))) {
        return Err(TkaError::Invalid("this node has already signed this recovery AUM"));
    }
    let signature = verify::sign(signer_seed, &aum.sig_hash());
    let mut sink = super::cbor::SliceSink::new(out);
    aum.encode_adding_signature(&mut sink, &id, &signature);
    if sink.overflow {
        return Err(TkaError::BufferTooSmall);
    }
    Ok(sink.len)
}

#[cfg(all(test, feature = "std"))]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    extern crate std;
    use super::*;
    use crate::tka::store::MemoryStore;
    use std::vec::Vec as StdVec;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];
    const C: [u8; 32] = [3; 32];

    fn nl(seed: &[u8; 32]) -> NlPublic {
        NlPublic(verify::public_of(seed))
    }

    fn signed(seed: &[u8; 32], prev: Option<&AumHash>, change: &Change<'_>) -> StdVec<u8> {
        let mut buf = [0u8; 4096];
        let n = build::unsigned(&mut buf, prev, change).unwrap();
        let sig = verify::sign(seed, &Aum::decode(&buf[..n]).unwrap().sig_hash());
        let n = build::signed(&mut buf, prev, change, &[(verify::public_of(seed), sig)]).unwrap();
        buf[..n].to_vec()
    }

    /// Genesis trusting A and B; then A adds C (the key later found compromised); then C adds
    /// nothing but a no-op (what a thief would write).
    fn chain() -> (MemoryStore, Authority, AumHash) {
        let mut store = MemoryStore::new();
        let keys = [(nl(&A), 1), (nl(&B), 1)];
        let genesis = signed(
            &A,
            None,
            &Change::Checkpoint { keys: &keys, disablement_values: &[[9; 32]], state_id1: 1, state_id2: 2 },
        );
        let mut authority = Authority::bootstrap(&mut store, &genesis).unwrap();
        let g = authority.head();
        let add_c = signed(&A, Some(&g), &Change::AddKey { key: nl(&C), votes: 1, meta: &[] });
        let by_c = signed(&C, Some(&Aum::decode(&add_c).unwrap().hash()), &Change::NoOp);
        authority.inform(&mut store, &[&add_c, &by_c]).unwrap();
        (store, authority, g)
    }

    #[test]
    fn a_cosigned_revocation_forks_before_the_key_and_wins() {
        let (mut store, mut authority, genesis) = chain();
        assert!(authority.state().key_by_id(&nl(&C).0).is_some());
        let parent = rewrite_parent(&store, &authority, &[nl(&C)], &nl(&B)).unwrap();
        assert_eq!(parent, genesis, "the fork starts before C was added");
        let mut buf = [0u8; 4096];
        let n = revocation(&mut buf, &authority, parent, &[nl(&C)], &B).unwrap();
        let mut cosigned = [0u8; 4096];
        let m = cosign(&buf[..n], &A, &mut cosigned).unwrap();
        assert!(cosign(&cosigned[..m], &A, &mut [0u8; 4096]).is_err(), "A signed it already");
        // The co-signature keeps B's valid: the AUM still verifies against the fork's parent.
        let aum = Aum::decode(&cosigned[..m]).unwrap();
        assert_eq!(aum.signatures.unwrap().len(), 2);
        authority.inform(&mut store, &[&cosigned[..m]]).unwrap();
        assert_eq!(authority.head(), aum.hash(), "the revocation (weight 2) beats C's branch (weight 1)");
        assert!(authority.state().key_by_id(&nl(&C).0).is_none());
        assert!(authority.state().key_by_id(&nl(&A).0).is_some());
    }

    #[test]
    fn revoking_everything_or_with_a_broken_aum_is_refused() {
        let (_, authority, genesis) = chain();
        let mut buf = [0u8; 4096];
        assert!(revocation(&mut buf, &authority, genesis, &[nl(&A), nl(&B), nl(&C)], &A).is_err());
        assert!(cosign(b"\xa1\x01", &A, &mut buf).is_err());
        assert!(cosign(&[], &A, &mut buf).is_err());
    }
}
