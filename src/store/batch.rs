//! One index writer batch: every tree's writes for a run of committed
//! journal entries, applied so that a crash at any point is repaired by
//! replay and a reader never sees half of a message.
//!
//! The writes are made in a fixed order, items → xref → unindexed → dedup →
//! `applied_seq`, and sled recovers a prefix of its log after a crash, so
//! whenever `applied_seq` survives, so did everything before it; when it
//! does not, replay re-files the entries after the older `applied_seq`
//! (a version's key holds its journal seq, so filing it twice writes the same key). A dedup record
//! (which makes a retransmission answered from the table) is never durable
//! without the items it vouches for. Replay runs before the engine serves
//! reads, so no reader sees what a crash left half-filed.
//!
//! Why plain inserts and not `sled::Batch`: the first `apply_batch` (or
//! transaction) switches sled 0.34 into a mode where every operation in the
//! process takes a global read-write lock, and each batch its write side;
//! the pipeline thread's dedup look-ups then wait on the index writer. That
//! cost 30% of lockstep throughput (`scripts/compare_release.sh`). A live
//! reader may see part of a batch being filed; record reads already wait
//! only for what was acknowledged before them.

use super::{identity, DedupKey, DedupRecord, Store, StoreError};
use crate::record::Mapped;

type Writes = Vec<(Vec<u8>, Vec<u8>)>;

/// Writes collected for one [`Store::apply`]. Mapped messages are kept as
/// they are and encoded item by item while they are written, so a message
/// of 340,000 items is never held twice (mapped and encoded) in memory.
#[derive(Default)]
pub struct IndexBatch {
    /// (journal seq, the message's items and identifiers).
    filings: Vec<(u64, Mapped)>,
    unindexed: Writes,
    dedup: Writes,
    /// `applied_seq` after the batch; 0 leaves it as it is.
    applied_seq: u64,
    writes: usize,
}

impl IndexBatch {
    pub fn new() -> IndexBatch {
        IndexBatch::default()
    }

    /// Files a mapped message (journal entry `seq`): whose record it goes
    /// into is decided when the batch is applied (`identity.rs`), after the
    /// messages before it.
    pub fn file(&mut self, seq: u64, mapped: Mapped) {
        self.writes += mapped.items.len() + mapped.identity.local_ids.len() + 1;
        self.filings.push((seq, mapped));
    }

    /// Remembers that journal entry `seq` was accepted but not indexed.
    pub fn unindexed(&mut self, seq: u64, reason: &str) {
        self.unindexed.push((seq.to_be_bytes().to_vec(), reason.as_bytes().to_vec()));
        self.writes += 1;
    }

    pub fn dedup(&mut self, key: &DedupKey, rec: &DedupRecord) {
        self.dedup.push((key.as_bytes().to_vec(), rec.encode()));
        self.writes += 1;
    }

    /// Moves `applied_seq` to `seq` once the rest is written.
    pub fn applied_up_to(&mut self, seq: u64) {
        self.applied_seq = self.applied_seq.max(seq);
    }

    pub fn is_empty(&self) -> bool {
        self.writes == 0 && self.applied_seq == 0
    }
}

impl Store {
    /// Applies a batch in the order the module doc explains, `applied_seq` last.
    ///
    /// # Errors
    /// sled could not write; the index may then hold part of the batch,
    /// which replay from `applied_seq` completes.
    pub fn apply(&self, mut batch: IndexBatch) -> Result<(), StoreError> {
        if let Some(e) = self.faults().hit("store.write") {
            return Err(StoreError::Injected(e));
        }
        let t = self.t()?;
        let total: usize = batch.filings.iter().map(|(_, m)| m.items.len()).sum();
        let mut written = 0;
        // Tests kill the process after the middle item: some items filed, the rest not.
        let mut after_each = || {
            written += 1;
            if written == (total / 2).max(1) {
                self.faults().hit("indexer.mid_batch");
            }
        };
        for (seq, mapped) in std::mem::take(&mut batch.filings) {
            match identity::file_message(&t, seq, mapped, &mut after_each) {
                Ok(None) => {}
                Ok(Some(reason)) => {
                    // Accepted (AA: the sender cannot fix it by resending) but not filed.
                    tracing::info!(seq, reason, "message kept in the journal but not indexed");
                    batch.unindexed(seq, reason);
                }
                // An item that cannot be encoded cannot be filed by a retry
                // either: say so for operators rather than fail the batch forever.
                Err(StoreError::Damaged { .. }) => batch.unindexed(seq, "an item could not be encoded"),
                Err(e) => return Err(e),
            }
        }
        for (tree, writes) in [(&t.unindexed, batch.unindexed), (&t.dedup, batch.dedup)] {
            for (k, v) in writes {
                tree.insert(k, v)?;
            }
        }
        if batch.applied_seq > 0 {
            self.set_applied_seq(batch.applied_seq)?;
        }
        Ok(())
    }
}
