//! Dedup records handed to the index writer and maybe not yet in sled: a
//! retransmission that arrives in that window still gets the original ACK.

use std::collections::{HashMap, VecDeque};

use crate::store::{DedupKey, DedupRecord};

#[derive(Default)]
pub(super) struct Recent {
    records: HashMap<DedupKey, DedupRecord>,
    /// Keys by journal seq, oldest first, to forget them in order.
    order: VecDeque<(u64, DedupKey)>,
}

impl Recent {
    pub(super) fn insert(&mut self, key: DedupKey, rec: DedupRecord) {
        self.order.push_back((rec.seq, key.clone()));
        self.records.insert(key, rec);
    }

    pub(super) fn get(&self, key: &DedupKey) -> Option<&DedupRecord> {
        self.records.get(key)
    }

    /// Drops the records the index writer has put in sled (seq <= `applied`).
    pub(super) fn forget_applied(&mut self, applied: u64) {
        while self.order.front().is_some_and(|(seq, _)| *seq <= applied) {
            let Some((seq, key)) = self.order.pop_front() else { break };
            // A reused control id may have a newer record under the same key.
            if self.records.get(&key).is_some_and(|r| r.seq == seq) {
                self.records.remove(&key);
            }
        }
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}
