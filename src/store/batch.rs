//! One index writer batch: every tree's writes for a run of committed
//! journal entries, applied so that a crash at any point is repaired by
//! replay and a reader never sees half of a message.
//!
//! The writes are made in a fixed order, items → xref → unindexed → dedup →
//! `applied_seq`, and sled recovers a prefix of its log after a crash, so
//! whenever `applied_seq` survives, so did everything before it; when it
//! does not, replay re-files the entries after the older `applied_seq`
//! (filing is an upsert, so doing it twice is harmless). A dedup record
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

use super::index::{encode_item, item_key, xref_key};
use super::{DedupKey, DedupRecord, Store, StoreError};
use crate::hl7::nhs::NhsNumber;
use crate::record::Mapped;

type Writes = Vec<(Vec<u8>, Vec<u8>)>;

/// Writes collected for one [`Store::apply`].
#[derive(Default)]
pub struct IndexBatch {
    items: Writes,
    xref: Writes,
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

    /// Upserts every item of a mapped message under `nhs`, and its local
    /// identifiers into the cross-reference.
    ///
    /// # Errors
    /// An item could not be encoded.
    pub fn index(&mut self, nhs: &NhsNumber, mapped: &Mapped) -> Result<(), StoreError> {
        let n = nhs.as_str();
        for item in &mapped.items {
            self.items.push((item_key(n, item), encode_item(item)?));
            self.writes += 1;
        }
        for id in &mapped.identity.local_ids {
            self.xref.push((xref_key(&id.organisation, &id.id), n.as_bytes().to_vec()));
            self.writes += 1;
        }
        Ok(())
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

    /// Writes queued so far (for sizing replay batches).
    pub fn len(&self) -> usize {
        self.writes
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
    pub fn apply(&self, batch: IndexBatch) -> Result<(), StoreError> {
        if let Some(e) = self.faults().hit("store.write") {
            return Err(StoreError::Injected(e));
        }
        let t = self.t()?;
        let middle = (batch.items.len() / 2).max(1);
        for (i, (k, v)) in batch.items.into_iter().enumerate() {
            t.items.insert(k, v)?;
            if i + 1 == middle {
                // Tests kill the process here: some items filed, the rest not.
                self.faults().hit("indexer.mid_batch");
            }
        }
        for (tree, writes) in [(&t.xref, batch.xref), (&t.unindexed, batch.unindexed), (&t.dedup, batch.dedup)] {
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
