//! An in-memory [`AumStore`] for hosts and tests (`std`), compactable, with what a caller needs
//! to mirror it to durable storage: [`MemoryStore::entries`] to write it out,
//! [`MemoryStore::insert_loaded`] to read it back.

use std::collections::HashMap;
use std::vec::Vec;

use super::compact::CompactableStore;
use super::{Aum, AumHash, AumStore, TkaError};

#[derive(Clone)]
struct Entry {
    parent: Option<AumHash>,
    bytes: Vec<u8>,
    committed_at: u64,
}

#[derive(Default, Clone)]
pub struct MemoryStore {
    aums: HashMap<AumHash, Entry>,
    /// Every stored hash, in the order stored (committed or staged).
    order: Vec<AumHash>,
    /// Children by parent. A purged AUM's list stays (as in the reference's `Mem`): its
    /// surviving children remain findable from it.
    children: HashMap<AumHash, Vec<AumHash>>,
    staged: Vec<AumHash>,
    now: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The time (Unix seconds) recorded as the commit time of AUMs stored from now on. Call it
    /// before each `inform`; without it AUMs count as committed in 1970, old enough to compact.
    pub fn set_now(&mut self, unix: u64) {
        self.now = unix;
    }

    /// When a stored AUM was committed (Unix seconds).
    pub fn committed_at(&self, hash: &AumHash) -> Option<u64> {
        self.aums.get(hash).map(|e| e.committed_at)
    }

    /// Committed AUMs in the order stored: (hash, parent, bytes, commit time).
    pub fn entries(&self) -> impl Iterator<Item = (AumHash, Option<AumHash>, &[u8], u64)> + '_ {
        self.order.iter().filter(|h| !self.staged.contains(h)).filter_map(|h| {
            let e = self.aums.get(h)?;
            Some((*h, e.parent, e.bytes.as_slice(), e.committed_at))
        })
    }

    /// Puts back a committed AUM read from durable storage (as [`MemoryStore::entries`] gave
    /// it). The bytes must decode to an AUM with this hash and parent; they are not verified
    /// otherwise (they were when first stored). Already stored: nothing changes.
    pub fn insert_loaded(
        &mut self,
        hash: AumHash,
        parent: Option<AumHash>,
        bytes: &[u8],
        committed_at: u64,
    ) -> Result<(), TkaError> {
        let aum = Aum::decode(bytes)?;
        if aum.hash() != hash || aum.parent() != parent {
            return Err(TkaError::Invalid("stored AUM does not match its hash or parent"));
        }
        if !self.aums.contains_key(&hash) {
            self.insert(hash, parent, bytes, committed_at);
        }
        Ok(())
    }

    fn insert(&mut self, hash: AumHash, parent: Option<AumHash>, bytes: &[u8], committed_at: u64) {
        self.aums.insert(hash, Entry { parent, bytes: bytes.to_vec(), committed_at });
        self.order.push(hash);
        if let Some(p) = parent {
            self.children.entry(p).or_default().push(hash);
        }
    }

    fn remove(&mut self, hash: &AumHash) {
        if let Some(entry) = self.aums.remove(hash) {
            self.order.retain(|h| h != hash);
            if let Some(parent) = entry.parent {
                if let Some(c) = self.children.get_mut(&parent) {
                    c.retain(|h| h != hash);
                    if c.is_empty() {
                        self.children.remove(&parent);
                    }
                }
            }
        }
    }
}

impl AumStore for MemoryStore {
    fn get(&self, hash: &AumHash) -> Option<&[u8]> {
        self.aums.get(hash).map(|e| e.bytes.as_slice())
    }

    fn parent_of(&self, hash: &AumHash) -> Option<AumHash> {
        self.aums.get(hash).and_then(|e| e.parent)
    }

    fn child(&self, parent: &AumHash, index: usize) -> Option<AumHash> {
        self.children.get(parent).and_then(|c| c.get(index)).copied()
    }

    fn is_empty(&self) -> bool {
        self.aums.is_empty()
    }

    fn stage(&mut self, hash: &AumHash, parent: Option<&AumHash>, aum: &[u8]) -> Result<(), TkaError> {
        if self.aums.contains_key(hash) {
            return Ok(());
        }
        self.insert(*hash, parent.copied(), aum, self.now);
        self.staged.push(*hash);
        Ok(())
    }

    fn commit(&mut self) {
        self.staged.clear();
    }

    fn discard(&mut self) {
        for hash in core::mem::take(&mut self.staged) {
            self.remove(&hash);
        }
    }
}

impl CompactableStore for MemoryStore {
    fn aum_count(&self) -> usize {
        self.order.len()
    }

    fn hash_at(&self, index: usize) -> Option<AumHash> {
        self.order.get(index).copied()
    }

    fn committed_at(&self, hash: &AumHash) -> Option<u64> {
        MemoryStore::committed_at(self, hash)
    }

    fn purge(&mut self, hash: &AumHash) -> Result<(), TkaError> {
        self.remove(hash);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::super::testchain::{Chain, NodeKeys};
    use super::*;

    #[test]
    fn entries_rebuild_the_store_and_the_authority() {
        let mut chain = Chain::new(&NodeKeys::default());
        chain.store.set_now(1000);
        chain.noops(3);
        chain.store.set_now(2000);
        chain.noop_by(1);
        let entries: Vec<_> = chain.store.entries().map(|(h, p, b, t)| (h, p, b.to_vec(), t)).collect();
        assert_eq!(entries.len(), 5);
        assert_eq!(chain.store.aum_count(), 5);
        assert_eq!(entries.iter().map(|e| e.3).collect::<Vec<_>>(), [0, 1000, 1000, 1000, 2000]);

        let mut loaded = MemoryStore::new();
        for (h, p, b, t) in entries.iter().rev() {
            loaded.insert_loaded(*h, *p, b, *t).unwrap();
        }
        assert_eq!(loaded.committed_at(&chain.authority.head()), Some(2000));
        let reopened = super::super::Authority::open(&loaded, chain.authority.oldest()).unwrap();
        assert_eq!(reopened.head(), chain.authority.head());

        // A record that does not match its hash or parent is refused.
        let (h, p, b, t) = &entries[2];
        let mut other = MemoryStore::new();
        assert!(other.insert_loaded(entries[1].0, *p, b, *t).is_err());
        assert!(other.insert_loaded(*h, None, b, *t).is_err());
        assert!(other.insert_loaded(*h, *p, &b[..b.len() - 1], *t).is_err());
        assert!(other.is_empty());
    }

    #[test]
    fn discarded_updates_leave_no_trace() {
        let mut chain = Chain::new(&NodeKeys::default());
        chain.noops(2);
        let before: Vec<_> = chain.store.entries().map(|e| e.0).collect();
        let good = chain.next_noop(0);
        let mut bad = chain.next_noop(1);
        let last = bad.len() - 1;
        bad[last] ^= 1; // breaks the signature
        assert!(chain.authority.inform(&mut chain.store, &[&good, &bad]).is_err());
        let after: Vec<_> = chain.store.entries().map(|e| e.0).collect();
        assert_eq!(before, after);
        assert_eq!(chain.store.aum_count(), before.len());
    }
}
