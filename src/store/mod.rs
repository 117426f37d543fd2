//! The sled index: everything derived from the journal, in one place.
//!
//! sled is not the source of truth (see DESIGN.md): it is flushed lazily and
//! rebuilt from the journal on start-up (`replay`) or on demand (`reindex`).
//! Its trees:
//! - `dedup`: (MSH-3, MSH-4, MSH-10) → hash, length, journal seq and the ACK sent;
//! - `meta`: `applied_seq`, the last journal sequence applied to the index;
//! - `items`, `xref`, `alias`, `parked`, `conflicts`, `unindexed`, `audit`:
//!   the record index, in [`index`]; item versions are folded into the
//!   current record in `fold.rs`, and whose record a message goes into is
//!   decided in `identity.rs`;
//! - `sensitive`, `scoped`: exclusion by visit and order (`sensitive.rs`).
//! - `names`: family name + date of birth → patient, for search (`names.rs`).
//!
//! - `objections`, `objection_log`: the objection register and its audited
//!   changes (`objection.rs`); like `audit`, not derived from the journal.
//!
//! Writes from the index writer go through an [`IndexBatch`], applied in an
//! order that replay repairs (see `batch.rs`).
//!
//! A [`Store`] can be reopened in place ([`Store::reopen`]): after an I/O
//! error (a full disk) sled refuses every later operation with the same
//! error, so recovering when space returns means opening it again. Every
//! clone of a `Store` sees the reopened database.

pub mod batch;
pub mod dedup;
mod fold;
mod identity;
pub mod index;
mod keys;
mod lock;
mod names;
mod objection;
mod read;
mod refile;
mod sensitive;
#[cfg(test)]
mod testing;
mod versions;

pub use lock::wait_released;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use batch::IndexBatch;
pub use dedup::{DedupKey, DedupRecord};
pub use identity::{Conflict, ParkedEntry};
pub use names::{fold_family, NameHit};
pub use objection::{Objection, ObjectionChange, Registered};
pub use read::{HiddenBy, ItemHistory, VersionEntry};
pub use refile::Refiled;

use crate::fault::Faults;

/// Errors from the index store. The pipeline answers AR 207 on any of them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled could not open or write its files.
    #[error("index store error")]
    Sled(#[from] sled::Error),
    /// A stored value did not decode: the index is damaged and should be rebuilt with `recordhub reindex`.
    #[error("index store holds a damaged value in tree '{tree}'; run `recordhub reindex`")]
    Damaged { tree: &'static str },
    /// The index is being reopened after a failure; try again shortly.
    #[error("the index is being reopened after a failure; try again shortly")]
    Reopening,
    /// An injected fault (tests).
    #[error("index store write failed")]
    Injected(#[source] std::io::Error),
}

/// The trees of one open sled database.
pub(crate) struct Trees {
    pub(crate) db: sled::Db,
    pub(crate) dedup: sled::Tree,
    pub(crate) meta: sled::Tree,
    pub(crate) items: sled::Tree,
    pub(crate) xref: sled::Tree,
    pub(crate) unindexed: sled::Tree,
    /// Audit events written before issue 11 (now `<data>/audit/`): kept for migration.
    #[allow(dead_code)]
    pub(crate) audit: sled::Tree,
    pub(crate) parked: sled::Tree,
    pub(crate) conflicts: sled::Tree,
    pub(crate) alias: sled::Tree,
    /// Family name + date of birth → patient (`names.rs`); derived.
    pub(crate) names: sled::Tree,
    /// What the index writer already knows of `xref` and the identifier
    /// items, so that the common message costs no lookups (`identity.rs`).
    caches: std::sync::Mutex<Caches>,
    pub(crate) objections: sled::Tree,
    pub(crate) objection_log: sled::Tree,
    /// Exclusion (`sensitive.rs`): sensitive scopes, and the versions filed in each scope.
    pub(crate) sensitive: sled::Tree,
    pub(crate) scoped: sled::Tree,
    /// False while no scope is sensitive: spares every filing a look-up.
    pub(crate) any_sensitive: std::sync::atomic::AtomicBool,
    /// False while the objection register is empty: spares every filing a look-up.
    pub(crate) any_objection: std::sync::atomic::AtomicBool,
    /// Held while an objection is added and while a restore files a message,
    /// so a restore cannot file into a record an objection has just emptied.
    pub(crate) objection_lock: std::sync::Mutex<()>,
    /// False while `parked` is known empty (set when a message is parked):
    /// spares every filing a scan of it.
    pub(crate) maybe_parked: std::sync::atomic::AtomicBool,
    /// False while `alias` is known empty (no merge of NHS numbers yet).
    pub(crate) maybe_alias: std::sync::atomic::AtomicBool,
}

/// Bounded memory of links and identifier items known to be written; any
/// change that could make it wrong (merges, purges, `clear_derived`)
/// clears it, and a miss only costs the sled lookup it saves.
#[derive(Default)]
pub(crate) struct Caches {
    pub(crate) links: std::collections::HashMap<Vec<u8>, Box<str>>,
    pub(crate) ids_written: std::collections::HashSet<Vec<u8>>,
    pub(crate) scoped_noted: std::collections::HashSet<Vec<u8>>,
}

/// Entries kept before a cache starts again (about 100 MB at worst).
const CACHE_ENTRIES: usize = 500_000;

impl Caches {
    pub(crate) fn remember_link(&mut self, key: Vec<u8>, nhs: &str) {
        if self.links.len() >= CACHE_ENTRIES {
            self.links.clear();
        }
        self.links.insert(key, nhs.into());
    }

    pub(crate) fn remember_id(&mut self, key: Vec<u8>) {
        if self.ids_written.len() >= CACHE_ENTRIES {
            self.ids_written.clear();
        }
        self.ids_written.insert(key);
    }

    pub(crate) fn remember_scoped(&mut self, key: Vec<u8>) {
        if self.scoped_noted.len() >= CACHE_ENTRIES {
            self.scoped_noted.clear();
        }
        self.scoped_noted.insert(key);
    }

    pub(crate) fn clear(&mut self) {
        self.links.clear();
        self.ids_written.clear();
        self.scoped_noted.clear();
    }
}

impl Trees {
    /// The caches, for one operation. A panic while holding the lock can
    /// only leave entries that a lookup would confirm anyway: clear them.
    pub(crate) fn caches(&self) -> std::sync::MutexGuard<'_, Caches> {
        self.caches.lock().unwrap_or_else(|e| {
            let mut g = e.into_inner();
            g.clear();
            g
        })
    }

    fn open(dir: &Path, cache_bytes: u64) -> Result<Trees, StoreError> {
        // The cache keeps record reads off the disk, and is most of the
        // engine's resident memory; sled's own flushing is left to its
        // background thread because the journal carries durability.
        let db = sled::Config::new().path(dir).cache_capacity(cache_bytes).flush_every_ms(Some(1000)).open()?;
        let trees = Trees {
            dedup: db.open_tree("dedup")?,
            meta: db.open_tree("meta")?,
            items: db.open_tree("items")?,
            xref: db.open_tree("xref")?,
            unindexed: db.open_tree("unindexed")?,
            audit: db.open_tree("audit")?,
            parked: db.open_tree("parked")?,
            conflicts: db.open_tree("conflicts")?,
            alias: db.open_tree("alias")?,
            names: db.open_tree("names")?,
            caches: std::sync::Mutex::new(Caches::default()),
            objections: db.open_tree("objections")?,
            objection_log: db.open_tree("objection_log")?,
            sensitive: db.open_tree("sensitive")?,
            scoped: db.open_tree("scoped")?,
            any_sensitive: std::sync::atomic::AtomicBool::new(true),
            any_objection: std::sync::atomic::AtomicBool::new(true),
            objection_lock: std::sync::Mutex::new(()),
            maybe_parked: std::sync::atomic::AtomicBool::new(true),
            maybe_alias: std::sync::atomic::AtomicBool::new(true),
            db,
        };
        trees.maybe_parked.store(!trees.parked.is_empty(), std::sync::atomic::Ordering::Relaxed);
        trees.maybe_alias.store(!trees.alias.is_empty(), std::sync::atomic::Ordering::Relaxed);
        trees.any_sensitive.store(!trees.sensitive.is_empty(), std::sync::atomic::Ordering::Relaxed);
        trees.any_objection.store(!trees.objections.is_empty(), std::sync::atomic::Ordering::Relaxed);
        Ok(trees)
    }
}

/// The opened index. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct Store {
    dir: PathBuf,
    trees: Arc<RwLock<Option<Arc<Trees>>>>,
    faults: Faults,
    /// sled's page cache bound, kept for [`Store::reopen`].
    cache_bytes: u64,
}

/// sled's page cache when the config does not say (`store.index_cache_bytes`).
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

const APPLIED_SEQ: &[u8] = b"applied_seq";
const ITEM_FORMAT: &[u8] = b"item_format";
const DAMAGE_MARK: &[u8] = b"journal_damage_mark";

impl Store {
    /// Opens (or creates) the index under `dir`.
    ///
    /// # Errors
    /// sled refuses to open, most often because another process holds it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, Faults::none())
    }

    /// [`Store::open`] with fault points (`store.write`: an index batch fails).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with(dir: &Path, faults: Faults) -> Result<Store, StoreError> {
        Store::open_sized(dir, faults, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open_with`] with sled's page cache bounded to `cache_bytes`.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_sized(dir: &Path, faults: Faults, cache_bytes: u64) -> Result<Store, StoreError> {
        let trees = Trees::open(dir, cache_bytes)?;
        let trees = Arc::new(RwLock::new(Some(Arc::new(trees))));
        Ok(Store { dir: dir.to_path_buf(), trees, faults, cache_bytes })
    }

    /// Drops this handle and waits (at most `limit`) until sled has let go
    /// of the index's file lock, so that another process can open it at
    /// once. False if it is still held then (another handle of this store,
    /// or another process).
    pub fn close(self, limit: Duration) -> bool {
        let dir = self.dir.clone();
        drop(self);
        wait_released(&dir, limit)
    }

    /// The open trees, for one operation. Never kept beyond it, so that
    /// [`Store::reopen`] can close the database.
    pub(crate) fn t(&self) -> Result<Arc<Trees>, StoreError> {
        // A poisoned lock: a panic while swapping an Option<Arc>, which
        // cannot be left half-written.
        let guard = self.trees.read().unwrap_or_else(|e| e.into_inner());
        guard.clone().ok_or(StoreError::Reopening)
    }

    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Closes and opens the database again: how the index recovers after
    /// sled failed a write (it then fails every operation until reopened).
    ///
    /// # Errors
    /// The database cannot be opened again (still no space, or damaged).
    pub fn reopen(&self) -> Result<(), StoreError> {
        let mut guard = self.trees.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = guard.take() {
            // Operations in flight hold a clone for a moment; new ones wait
            // on the lock we hold. sled releases its file lock on the last drop.
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut old = old;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(trees) => {
                        drop(trees);
                        break;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(still_shared) => {
                        *guard = Some(still_shared);
                        return Err(StoreError::Reopening);
                    }
                }
            }
        }
        // sled's flusher thread may hold the file lock for a moment after the drop.
        let mut last = None;
        for _ in 0..50 {
            match Trees::open(&self.dir, self.cache_bytes) {
                Ok(trees) => {
                    *guard = Some(Arc::new(trees));
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(last.unwrap_or(StoreError::Reopening))
    }

    /// A u64 kept in `meta` (0 when absent).
    fn meta_u64(&self, key: &[u8]) -> Result<u64, StoreError> {
        match self.t()?.meta.get(key)? {
            None => Ok(0),
            Some(v) => {
                let b: [u8; 8] = v.as_ref().try_into().map_err(|_| StoreError::Damaged { tree: "meta" })?;
                Ok(u64::from_be_bytes(b))
            }
        }
    }

    /// The last journal sequence whose effects are in the index (0 = none).
    pub fn applied_seq(&self) -> Result<u64, StoreError> {
        self.meta_u64(APPLIED_SEQ)
    }

    /// Whether the items were written in the current encoding. An empty
    /// index is current (and is marked so).
    pub fn item_format_current(&self) -> Result<bool, StoreError> {
        let current = index::ITEM_FORMAT.to_be_bytes();
        match self.t()?.meta.get(ITEM_FORMAT)? {
            Some(v) => Ok(v.as_ref() == current),
            None if self.applied_seq()? == 0 => {
                self.t()?.meta.insert(ITEM_FORMAT, &current)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Which set of journal damage the index was last rebuilt for (0: none).
    pub fn damage_mark(&self) -> Result<u64, StoreError> {
        self.meta_u64(DAMAGE_MARK)
    }

    pub fn set_damage_mark(&self, mark: u64) -> Result<(), StoreError> {
        self.t()?.meta.insert(DAMAGE_MARK, &mark.to_be_bytes())?;
        Ok(())
    }

    pub fn set_applied_seq(&self, seq: u64) -> Result<(), StoreError> {
        self.t()?.meta.insert(APPLIED_SEQ, &seq.to_be_bytes())?;
        Ok(())
    }

    pub fn dedup_get(&self, key: &DedupKey) -> Result<Option<DedupRecord>, StoreError> {
        match self.t()?.dedup.get(key.as_bytes())? {
            None => Ok(None),
            Some(v) => DedupRecord::decode(&v).map(Some).ok_or(StoreError::Damaged { tree: "dedup" }),
        }
    }

    /// Writes sled's dirty pages; used at shutdown and after `reindex`.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.t()?.db.flush()?;
        Ok(())
    }
}
