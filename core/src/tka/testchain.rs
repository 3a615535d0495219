//! Test chains for the sync and compaction tests: a genesis checkpoint over two keys (votes 2
//! and 1), then NoOps and checkpoints signed by one of them, informed into a [`MemoryStore`].
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::vec::Vec;

use super::aum::build::{self, Change};
use super::store::MemoryStore;
use super::{verify, Aum, AumHash, Authority};
use crate::key::NlPublic;

#[derive(Clone)]
pub struct NodeKeys {
    seeds: [[u8; 32]; 2],
}

impl Default for NodeKeys {
    fn default() -> Self {
        NodeKeys { seeds: [[1; 32], [2; 32]] }
    }
}

impl NodeKeys {
    /// Keys of another tailnet.
    pub fn other() -> Self {
        NodeKeys { seeds: [[3; 32], [4; 32]] }
    }
}

#[derive(Clone)]
pub struct Chain {
    pub keys: NodeKeys,
    pub store: MemoryStore,
    pub authority: Authority,
    /// Every AUM this chain appended, genesis first.
    pub hashes: Vec<AumHash>,
}

fn signed(prev: Option<&AumHash>, change: &Change<'_>, by: &[u8; 32]) -> Vec<u8> {
    let mut buf = std::vec![0u8; 4096];
    let n = build::unsigned(&mut buf, prev, change).unwrap();
    let h = Aum::decode(&buf[..n]).unwrap().sig_hash();
    let n = build::signed(&mut buf, prev, change, &[(verify::public_of(by), verify::sign(by, &h))]).unwrap();
    buf.truncate(n);
    buf
}

impl Chain {
    pub fn new(keys: &NodeKeys) -> Self {
        let genesis = Self::checkpoint_aum(keys, None);
        let mut store = MemoryStore::new();
        let authority = Authority::bootstrap(&mut store, &genesis).unwrap();
        let hashes = std::vec![authority.head()];
        Chain { keys: keys.clone(), store, authority, hashes }
    }

    /// A checkpoint of the keys, signed by key 0.
    pub fn checkpoint_aum(keys: &NodeKeys, prev: Option<&AumHash>) -> Vec<u8> {
        let k = [
            (NlPublic(verify::public_of(&keys.seeds[0])), 2),
            (NlPublic(verify::public_of(&keys.seeds[1])), 1),
        ];
        let change =
            Change::Checkpoint { keys: &k, disablement_values: &[[9; 32]], state_id1: 1, state_id2: 2 };
        signed(prev, &change, &keys.seeds[0])
    }

    /// A NoOp on our head signed by key `signer` (not stored).
    pub fn next_noop(&self, signer: usize) -> Vec<u8> {
        signed(Some(&self.authority.head()), &Change::NoOp, &self.keys.seeds[signer])
    }

    /// Appends `n` NoOps signed by key 0 (one inform).
    pub fn noops(&mut self, n: usize) {
        let mut head = self.authority.head();
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let aum = signed(Some(&head), &Change::NoOp, &self.keys.seeds[0]);
            head = Aum::decode(&aum).unwrap().hash();
            self.hashes.push(head);
            batch.push(aum);
        }
        if !batch.is_empty() {
            self.inform(&batch).unwrap();
        }
    }

    /// Appends a NoOp signed by key `signer`.
    pub fn noop_by(&mut self, signer: usize) {
        let aum = self.next_noop(signer);
        self.hashes.push(Aum::decode(&aum).unwrap().hash());
        self.inform(&[aum]).unwrap();
    }

    /// Appends a checkpoint of the (unchanged) keys.
    pub fn checkpoint(&mut self) {
        let aum = Self::checkpoint_aum(&self.keys, Some(&self.authority.head()));
        self.hashes.push(Aum::decode(&aum).unwrap().hash());
        self.inform(&[aum]).unwrap();
    }

    pub fn inform(&mut self, aums: &[Vec<u8>]) -> Result<(), super::TkaError> {
        let refs: Vec<&[u8]> = aums.iter().map(|a| a.as_slice()).collect();
        self.authority.inform(&mut self.store, &refs)
    }

    pub fn bytes_of(&self, hash: &AumHash) -> Vec<u8> {
        super::AumStore::get(&self.store, hash).unwrap().to_vec()
    }

    /// A fresh chain with our first `n` AUMs (loaded, not verified again), with their commit
    /// times.
    pub fn prefix(&self, n: usize) -> Chain {
        let mut store = MemoryStore::new();
        for h in &self.hashes[..n] {
            let at = self.store.committed_at(h).unwrap();
            store
                .insert_loaded(*h, super::AumStore::parent_of(&self.store, h), &self.bytes_of(h), at)
                .unwrap();
        }
        let authority = Authority::open(&store, self.hashes[0]).unwrap();
        Chain { keys: self.keys.clone(), store, authority, hashes: self.hashes[..n].to_vec() }
    }

    /// A linear chain of `len` AUMs built fast: the genesis checkpoint, then NoOps and a
    /// checkpoint at every `every`-th AUM (none if 0), signed by key 0 if `sign` (unsigned ones
    /// are for tests of walks, not of fork weights or of informing a peer), loaded into the
    /// store without verification; AUM `i` committed at `at(i)`. The authority is opened from
    /// AUM `oldest`. AUMs appended later are verified.
    pub fn loaded(len: usize, every: usize, sign: bool, at: impl Fn(usize) -> u64, oldest: usize) -> Chain {
        let keys = NodeKeys::default();
        let k = [
            (NlPublic(verify::public_of(&keys.seeds[0])), 2),
            (NlPublic(verify::public_of(&keys.seeds[1])), 1),
        ];
        let checkpoint =
            Change::Checkpoint { keys: &k, disablement_values: &[[9; 32]], state_id1: 1, state_id2: 2 };
        let mut store = MemoryStore::new();
        let mut hashes = Vec::with_capacity(len);
        let mut buf = std::vec![0u8; 4096];
        for i in 0..len {
            let bytes = if i == 0 {
                Self::checkpoint_aum(&keys, None)
            } else {
                let change = if every > 0 && i % every == 0 { &checkpoint } else { &Change::NoOp };
                if sign {
                    signed(hashes.last(), change, &keys.seeds[0])
                } else {
                    let n = build::unsigned(&mut buf, hashes.last(), change).unwrap();
                    buf[..n].to_vec()
                }
            };
            let hash = Aum::decode(&bytes).unwrap().hash();
            store.insert_loaded(hash, hashes.last().copied(), &bytes, at(i)).unwrap();
            hashes.push(hash);
        }
        let authority = Authority::open(&store, hashes[oldest]).unwrap();
        Chain { keys, store, authority, hashes }
    }
}
