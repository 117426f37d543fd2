//! The sled index: everything derived from the journal, in one place.
//!
//! sled is not the source of truth (see DESIGN.md): it is flushed lazily and
//! rebuilt from the journal on start-up (`replay`) or on demand (`reindex`).
//! Its trees:
//! - `dedup`: (MSH-3, MSH-4, MSH-10) → hash, length, journal seq and the ACK sent;
//! - `meta`: `applied_seq`, the last journal sequence applied to the index;
//! - `items`, `xref`, `unindexed`, `audit`: the record index, in [`index`].

pub mod dedup;
pub mod index;

use std::path::Path;

pub use dedup::{DedupKey, DedupRecord};
pub use index::AuditEvent;

/// Errors from the index store. The pipeline answers AR 207 on any of them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled could not open or write its files.
    #[error("index store error")]
    Sled(#[from] sled::Error),
    /// A stored value did not decode: the index is damaged and should be rebuilt with `recordhub reindex`.
    #[error("index store holds a damaged value in tree '{tree}'; run `recordhub reindex`")]
    Damaged { tree: &'static str },
}

/// The opened index.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    dedup: sled::Tree,
    meta: sled::Tree,
    /// Opened once: every message writes to these.
    items: sled::Tree,
    xref: sled::Tree,
}

const APPLIED_SEQ: &[u8] = b"applied_seq";
const ITEM_FORMAT: &[u8] = b"item_format";

impl Store {
    /// Opens (or creates) the index under `dir`.
    ///
    /// # Errors
    /// sled refuses to open, most often because another process holds it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        // A large cache keeps record reads off the disk; sled's own flushing
        // is left to its background thread because the journal carries
        // durability.
        let db = sled::Config::new().path(dir).cache_capacity(256 * 1024 * 1024).flush_every_ms(Some(1000)).open()?;
        Ok(Store {
            dedup: db.open_tree("dedup")?,
            meta: db.open_tree("meta")?,
            items: db.open_tree("items")?,
            xref: db.open_tree("xref")?,
            db,
        })
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The last journal sequence whose effects are in the index (0 = none).
    pub fn applied_seq(&self) -> Result<u64, StoreError> {
        match self.meta.get(APPLIED_SEQ)? {
            None => Ok(0),
            Some(v) => {
                let b: [u8; 8] = v.as_ref().try_into().map_err(|_| StoreError::Damaged { tree: "meta" })?;
                Ok(u64::from_be_bytes(b))
            }
        }
    }

    /// Whether the items were written in the current encoding. An empty
    /// index is current (and is marked so).
    pub fn item_format_current(&self) -> Result<bool, StoreError> {
        let current = index::ITEM_FORMAT.to_be_bytes();
        match self.meta.get(ITEM_FORMAT)? {
            Some(v) => Ok(v.as_ref() == current),
            None if self.applied_seq()? == 0 => {
                self.meta.insert(ITEM_FORMAT, &current)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn set_applied_seq(&self, seq: u64) -> Result<(), StoreError> {
        self.meta.insert(APPLIED_SEQ, &seq.to_be_bytes())?;
        Ok(())
    }

    pub fn dedup_get(&self, key: &DedupKey) -> Result<Option<DedupRecord>, StoreError> {
        match self.dedup.get(key.as_bytes())? {
            None => Ok(None),
            Some(v) => DedupRecord::decode(&v).map(Some).ok_or(StoreError::Damaged { tree: "dedup" }),
        }
    }

    pub fn dedup_put(&self, key: &DedupKey, rec: &DedupRecord) -> Result<(), StoreError> {
        self.dedup.insert(key.as_bytes(), rec.encode())?;
        Ok(())
    }

    /// Writes sled's dirty pages; used at shutdown and after `reindex`.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}
