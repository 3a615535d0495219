//! Which peers tailnet lock lets through (`tkaFilterNetmapLocked` and `rotationTracker` in
//! `ts:ipn/ipnlocal/tailnet-lock.go`): the one decision the datapath asks of this module.

use heapless::Vec;

#[cfg(doc)]
use super::sig::RotationDetails;
use super::sig::{node_key_authorized, SigKind};
use super::State;
use crate::key::NodePublic;

/// Peers one filter call can judge; a netmap with more is refused as a whole.
pub const MAX_PEERS: usize = 1024;

/// A peer as the netmap gives it.
#[derive(Clone, Copy, Debug)]
pub struct Peer<'a> {
    pub node_key: NodePublic,
    /// `Node.KeySignature`, the serialized node-key signature (may be empty).
    pub key_signature: &'a [u8],
    /// `UnsignedPeerAPIOnly`: exempt from tailnet lock, reachable only on PeerAPI.
    pub unsigned_peer_api_only: bool,
}

/// The verdict on one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PeerVerdict {
    Authorized,
    /// Exempt from tailnet lock (PeerAPI only).
    Exempt,
    /// No signature at all.
    Unsigned,
    /// The signature does not authorize its node key under the current state.
    BadSignature,
    /// Validly signed, but a later rotation (or an equally long competing rotation from the
    /// same root signature) made this key obsolete.
    ObsoleteByRotation,
}

impl PeerVerdict {
    /// True if the datapath may talk to the peer.
    pub fn allowed(self) -> bool {
        matches!(self, PeerVerdict::Authorized | PeerVerdict::Exempt)
    }
}

/// The outcome for a whole netmap.
#[derive(Debug)]
pub struct FilterResult {
    /// One verdict per peer, in the netmap's order.
    pub verdicts: Vec<PeerVerdict, MAX_PEERS>,
    /// Our own signature does not verify: other locked nodes will drop us.
    pub self_locked_out: bool,
}

/// Too many peers for [`MAX_PEERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyPeers;

/// What the rotation rules need of one peer's signature chain: the wrapping key of its root
/// when that root is a Direct signature (`Some(None)`: Direct without a 32-byte key, which the
/// reference's string key groups together too), and how many keys it rotated away from.
/// Keeping this instead of each peer's [`RotationDetails`] (16 keys each) takes the call's
/// stack from ~600 KB to ~40 KB at [`MAX_PEERS`]: routers run this on a task's stack.
#[derive(Clone, Copy, Default)]
struct Chain {
    direct_root: Option<Option<[u8; 32]>>,
    depth: u8,
}

/// Judges every peer and ourselves against `state`.
pub fn filter_peers(
    state: &State,
    self_key: &NodePublic,
    self_signature: &[u8],
    peers: &[Peer<'_>],
) -> Result<FilterResult, TooManyPeers> {
    if peers.len() > MAX_PEERS {
        return Err(TooManyPeers);
    }
    // Peer indices sorted by node key: a chain's previous keys find their peers by binary search.
    let mut order = [0u16; MAX_PEERS];
    let order = &mut order[..peers.len()];
    for (i, slot) in order.iter_mut().enumerate() {
        // MAX_PEERS fits in u16.
        *slot = i as u16;
    }
    order.sort_unstable_by_key(|&i| peers[usize::from(i)].node_key);
    let key_of = |i: u16| &peers[usize::from(i)].node_key;

    let mut verdicts: Vec<PeerVerdict, MAX_PEERS> = Vec::new();
    let mut chains = [Chain::default(); MAX_PEERS];
    // Rule 1 of `mark_obsolete`: the peer's key is a previous key of some chain.
    let mut rotated_away = [false; MAX_PEERS];
    for (i, peer) in peers.iter().enumerate() {
        let (verdict, details) = if peer.unsigned_peer_api_only {
            (PeerVerdict::Exempt, None)
        } else if peer.key_signature.is_empty() {
            (PeerVerdict::Unsigned, None)
        } else {
            match node_key_authorized(state, &peer.node_key, peer.key_signature) {
                Ok(details) => (PeerVerdict::Authorized, details),
                Err(_) => (PeerVerdict::BadSignature, None),
            }
        };
        // Capacity equals MAX_PEERS, checked above.
        let _ = verdicts.push(verdict);
        let Some(details) = details else { continue };
        for prev in &details.prev_node_keys {
            let first = order.partition_point(|&j| key_of(j) < prev);
            for &j in order[first..].iter().take_while(|&&j| key_of(j) == prev) {
                rotated_away[usize::from(j)] = true;
            }
        }
        chains[i] = Chain {
            direct_root: (details.initial_kind == SigKind::Direct).then_some(details.initial_wrapping_pubkey),
            // At most MAX_PREV_NODE_KEYS + 1.
            depth: details.prev_node_keys.len() as u8,
        };
    }
    let n = peers.len();
    mark_obsolete(&chains[..n], &rotated_away[..n], &mut verdicts);
    let self_locked_out = node_key_authorized(state, self_key, self_signature).is_err();
    Ok(FilterResult { verdicts, self_locked_out })
}

/// The rotation tracker's rules:
/// 1. every key a rotation chain names as previous is obsolete (`rotated_away`);
/// 2. among the remaining peers whose chains start at the same Direct signature's wrapping
///    key, the one with the most previous keys wins and the rest are obsolete; if the top two
///    tie, all of them are obsolete. Credential-rooted chains are exempt from rule 2 (one
///    reusable wrapped auth key may legitimately start many chains).
///
/// The reference walks its groups in Go map order and lets rule 2's marks of one group affect
/// the next; we walk groups in netmap order. The outcomes differ only when one group's losers
/// are members of another group, which takes two roots sharing node keys.
fn mark_obsolete(chains: &[Chain], rotated_away: &[bool], verdicts: &mut [PeerVerdict]) {
    let mut obsolete = [false; MAX_PEERS];
    let obsolete = &mut obsolete[..chains.len()];
    obsolete.copy_from_slice(rotated_away);
    let root_of = |i: usize| chains[i].direct_root;
    for leader in 0..chains.len() {
        let Some(root) = root_of(leader) else { continue };
        // Handle each group once, at its first member.
        if (0..leader).any(|j| root_of(j) == Some(root)) {
            continue;
        }
        let members = || (leader..chains.len()).filter(move |&j| root_of(j) == Some(root));
        let live = |j: &usize| !rotated_away[*j];
        let depth = |j: usize| chains[j].depth;
        let mut best: Option<(u8, usize)> = None; // (depth, index of first member with it)
        let mut tie = false;
        for j in members().filter(live) {
            match best {
                Some((d, _)) if depth(j) == d => tie = true,
                Some((d, _)) if depth(j) < d => {}
                _ => {
                    best = Some((depth(j), j));
                    tie = false;
                }
            }
        }
        let Some((_, winner)) = best else { continue };
        for j in members().filter(live) {
            if tie || j != winner {
                obsolete[j] = true;
            }
        }
    }
    for (v, o) in verdicts.iter_mut().zip(obsolete.iter()) {
        // The reference drops obsolete keys whatever else it decided, exempt peers included.
        if *o && v.allowed() {
            *v = PeerVerdict::ObsoleteByRotation;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::key::NlPublic;
    use crate::tka::sig::build;
    use crate::tka::{verify, TrustedKey};

    const TRUSTED: [u8; 32] = [1; 32];
    const NODE_NL: [u8; 32] = [2; 32];

    fn state() -> State {
        let mut s = State::default();
        s.keys.push(TrustedKey::ed25519(verify::public_of(&TRUSTED), 1)).unwrap();
        s
    }

    fn direct(node: &NodePublic) -> heapless::Vec<u8, 512> {
        let mut buf = [0u8; 512];
        let n =
            build::direct(&mut buf, &TRUSTED, node, Some(&NlPublic(verify::public_of(&NODE_NL)))).unwrap();
        heapless::Vec::from_slice(&buf[..n]).unwrap()
    }

    fn rotate(prev: &[u8], node: &NodePublic) -> heapless::Vec<u8, 512> {
        let mut buf = [0u8; 512];
        let n = build::rotation(&mut buf, &NODE_NL, node, prev).unwrap();
        heapless::Vec::from_slice(&buf[..n]).unwrap()
    }

    fn peer(node_key: NodePublic, key_signature: &[u8]) -> Peer<'_> {
        Peer { node_key, key_signature, unsigned_peer_api_only: false }
    }

    #[test]
    fn unsigned_and_badly_signed_peers_are_dropped_and_we_see_our_own_lockout() {
        let (me, a, b, c) =
            (NodePublic([9; 32]), NodePublic([10; 32]), NodePublic([11; 32]), NodePublic([12; 32]));
        let sig_a = direct(&a);
        let peers = [
            peer(a, &sig_a),
            peer(b, &[]),
            peer(c, &sig_a),
            Peer { node_key: NodePublic([13; 32]), key_signature: &[], unsigned_peer_api_only: true },
        ];
        let r = filter_peers(&state(), &me, &[], &peers).unwrap();
        assert_eq!(
            &r.verdicts[..],
            &[PeerVerdict::Authorized, PeerVerdict::Unsigned, PeerVerdict::BadSignature, PeerVerdict::Exempt]
        );
        assert!(r.self_locked_out);
        let mine = direct(&me);
        assert!(!filter_peers(&state(), &me, &mine, &peers).unwrap().self_locked_out);
    }

    #[test]
    fn rotated_away_keys_and_tied_rotations_are_obsolete() {
        let (n1, n2, n3, n4) =
            (NodePublic([21; 32]), NodePublic([22; 32]), NodePublic([23; 32]), NodePublic([24; 32]));
        let d1 = direct(&n1);
        let r2 = rotate(&d1, &n2);
        let r3 = rotate(&r2, &n3);
        // n1 and n2 still appear with their old signatures; n3's chain names both as previous.
        let peers = [peer(n1, &d1), peer(n2, &r2), peer(n3, &r3)];
        let r = filter_peers(&state(), &n3, &r3, &peers).unwrap();
        assert_eq!(
            &r.verdicts[..],
            &[PeerVerdict::ObsoleteByRotation, PeerVerdict::ObsoleteByRotation, PeerVerdict::Authorized]
        );
        // Two clones rotated once each from the same Direct signature: neither can be trusted.
        let r4 = rotate(&d1, &n4);
        let peers = [peer(n2, &r2), peer(n4, &r4)];
        let r = filter_peers(&state(), &n3, &r3, &peers).unwrap();
        assert_eq!(&r.verdicts[..], &[PeerVerdict::ObsoleteByRotation, PeerVerdict::ObsoleteByRotation]);
        // The longer chain wins over the shorter one.
        let peers = [peer(n3, &r3), peer(n4, &r4)];
        let r = filter_peers(&state(), &n3, &r3, &peers).unwrap();
        assert_eq!(&r.verdicts[..], &[PeerVerdict::Authorized, PeerVerdict::ObsoleteByRotation]);
    }

    #[test]
    fn a_full_netmap_fits_a_small_stack() {
        // The old per-peer RotationDetails took ~600 KB of stack; 256 KB (debug build) must do.
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                // The frame is sized for MAX_PEERS whatever the count, so a few peers show it.
                let (n1, n2) = (NodePublic([21; 32]), NodePublic([22; 32]));
                let r2 = rotate(&direct(&n1), &n2);
                let peers = [peer(n2, &r2); 4];
                let r = filter_peers(&state(), &NodePublic([9; 32]), &[], &peers).unwrap();
                // Equal chains from one Direct root: a tie, so all are obsolete.
                r.verdicts.iter().all(|v| *v == PeerVerdict::ObsoleteByRotation)
            })
            .unwrap();
        assert!(handle.join().unwrap());
    }
}
