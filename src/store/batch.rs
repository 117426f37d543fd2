//! One index writer batch: every tree's writes for a run of committed
//! journal entries, applied so that a crash at any point is repaired by
//! replay and a reader never sees half of a message.
//!
//! Each tree's writes go in one `sled::Batch`, which sled applies
//! atomically: a record read (a prefix scan of `items`) sees all of a
//! batch's items or none. The trees are written in a fixed order, items →
//! xref → unindexed → dedup → `applied_seq`, and sled recovers a prefix of
//! its log after a crash, so whenever `applied_seq` survives, so did
//! everything before it; when it does not, replay re-files the entries after
//! the older `applied_seq` (filing is an upsert, so doing it twice is
//! harmless). A dedup record (which makes a retransmission answered from
//! the table) is never durable without the items it vouches for.

use super::index::{encode_item, item_key, xref_key};
use super::{DedupKey, DedupRecord, Store, StoreError};
use crate::hl7::nhs::NhsNumber;
use crate::record::Mapped;

/// Writes collected for one [`Store::apply`].
#[derive(Default)]
pub struct IndexBatch {
    items: sled::Batch,
    xref: sled::Batch,
    unindexed: sled::Batch,
    dedup: sled::Batch,
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
            self.items.insert(item_key(n, item), encode_item(item)?);
            self.writes += 1;
        }
        for id in &mapped.identity.local_ids {
            self.xref.insert(xref_key(&id.organisation, &id.id), n.as_bytes());
            self.writes += 1;
        }
        Ok(())
    }

    /// Remembers that journal entry `seq` was accepted but not indexed.
    pub fn unindexed(&mut self, seq: u64, reason: &str) {
        self.unindexed.insert(&seq.to_be_bytes(), reason.as_bytes());
        self.writes += 1;
    }

    pub fn dedup(&mut self, key: &DedupKey, rec: &DedupRecord) {
        self.dedup.insert(key.as_bytes(), rec.encode());
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
    /// Applies a batch: each tree atomically, in the order the module doc
    /// explains, `applied_seq` last.
    ///
    /// # Errors
    /// sled could not write; the index may then hold part of the batch,
    /// which replay from `applied_seq` completes.
    pub fn apply(&self, batch: IndexBatch) -> Result<(), StoreError> {
        if let Some(e) = self.faults().hit("store.write") {
            return Err(StoreError::Injected(e));
        }
        let t = self.t()?;
        t.items.apply_batch(batch.items)?;
        // Tests kill the process here: items filed, the rest not.
        self.faults().hit("indexer.mid_batch");
        t.xref.apply_batch(batch.xref)?;
        t.unindexed.apply_batch(batch.unindexed)?;
        t.dedup.apply_batch(batch.dedup)?;
        if batch.applied_seq > 0 {
            self.set_applied_seq(batch.applied_seq)?;
        }
        Ok(())
    }
}
