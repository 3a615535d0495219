//! An in-memory [`AumStore`] for hosts and tests (`std`).

use std::collections::HashMap;
use std::vec::Vec;

use super::{AumHash, AumStore, TkaError};

#[derive(Default, Clone)]
pub struct MemoryStore {
    aums: HashMap<AumHash, (Option<AumHash>, Vec<u8>)>,
    children: HashMap<AumHash, Vec<AumHash>>,
    staged: Vec<AumHash>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl AumStore for MemoryStore {
    fn get(&self, hash: &AumHash) -> Option<&[u8]> {
        self.aums.get(hash).map(|(_, b)| b.as_slice())
    }

    fn parent_of(&self, hash: &AumHash) -> Option<AumHash> {
        self.aums.get(hash).and_then(|(p, _)| *p)
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
        self.aums.insert(*hash, (parent.copied(), aum.to_vec()));
        if let Some(p) = parent {
            self.children.entry(*p).or_default().push(*hash);
        }
        self.staged.push(*hash);
        Ok(())
    }

    fn commit(&mut self) {
        self.staged.clear();
    }

    fn discard(&mut self) {
        for hash in self.staged.drain(..) {
            if let Some((Some(parent), _)) = self.aums.remove(&hash) {
                if let Some(c) = self.children.get_mut(&parent) {
                    c.retain(|h| *h != hash);
                }
            }
        }
    }
}
