//! The index writer: a second thread that files committed messages into the
//! record index, so the ACK never waits for sled.
//!
//! Why a thread of its own: a message is safe once the journal's fdatasync
//! returns, and the index is derived from the journal (replay rebuilds it), so
//! filing items is not on the acknowledgement path. On two cores the pipeline
//! thread maps batch N+1 while this one files batch N.
//!
//! [`Progress`] keeps two marks: `committed` (the last journal seq handed
//! over) and `applied` (the last one filed). A record read waits until
//! `applied` reaches the `committed` it saw on arrival, so a professional who
//! looks a patient up after the sender had its ACK sees that message.
//!
//! `applied_seq` in sled advances only after a batch's items are in; if a
//! write fails, it stops advancing until restart, when replay re-files every
//! entry after it (filing is an upsert, so re-filing changes nothing).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::hl7::nhs::NhsNumber;
use crate::record::Mapped;
use crate::store::{DedupKey, DedupRecord, Store, StoreError};

/// Batches queued before the pipeline thread waits (back-pressure).
const QUEUE_BATCHES: usize = 16;

/// One accepted message to file.
pub struct Filing {
    pub seq: u64,
    pub mapped: Mapped,
}

/// Everything one committed batch asks of the index.
pub struct Work {
    /// The batch's last journal seq, filed or not: `applied_seq` moves to it.
    pub last_seq: u64,
    /// Dedup records of the accepted messages. Until `applied` passes them
    /// the pipeline answers retransmissions from its own memory.
    pub dedup: Vec<(DedupKey, DedupRecord)>,
    pub filings: Vec<Filing>,
}

#[derive(Default)]
struct Marks {
    committed: u64,
    applied: u64,
    /// A write failed; `applied_seq` is frozen until restart.
    failed: bool,
    /// Readers blocked in `wait_caught_up`: without any, a batch filed wakes
    /// nobody (a futex call per batch shows in lockstep latency).
    waiters: usize,
}

/// How far the index has caught up with the journal. Cheap to clone.
#[derive(Clone, Default)]
pub struct Progress(Arc<(Mutex<Marks>, Condvar)>);

impl Progress {
    fn marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        // A panic while holding this lock cannot leave the two integers
        // inconsistent with each other in a harmful way: keep going.
        self.0 .0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_committed(&self, seq: u64) {
        let mut m = self.marks();
        m.committed = m.committed.max(seq);
    }

    fn set_applied(&self, seq: u64, failed: bool) {
        let mut m = self.marks();
        m.applied = m.applied.max(seq);
        m.failed |= failed;
        if m.waiters > 0 {
            self.0 .1.notify_all();
        }
    }

    /// The last journal seq whose items are in the index.
    pub fn applied(&self) -> u64 {
        self.marks().applied
    }

    /// Whether an index write has failed since start-up.
    pub fn failed(&self) -> bool {
        self.marks().failed
    }

    /// Waits until everything committed before this call is filed. `false`
    /// when `timeout` passed first (the read then shows a slightly older record).
    pub fn wait_caught_up(&self, timeout: Duration) -> bool {
        let mut m = self.marks();
        let target = m.committed;
        let deadline = std::time::Instant::now() + timeout;
        m.waiters += 1;
        while m.applied < target {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            m = self.0 .1.wait_timeout(m, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        m.waiters -= 1;
        m.applied >= target
    }
}

/// The index-writer thread and its queue.
pub struct Indexer {
    store: Store,
    tx: Option<SyncSender<Work>>,
    thread: Option<JoinHandle<()>>,
    progress: Progress,
}

impl Indexer {
    /// Starts the thread. `applied` is the index's `applied_seq` at start.
    ///
    /// # Errors
    /// The OS refused a thread.
    pub fn spawn(store: Store, applied: u64) -> std::io::Result<Indexer> {
        let progress = Progress::default();
        progress.set_committed(applied);
        progress.set_applied(applied, false);
        let (tx, rx) = sync_channel::<Work>(QUEUE_BATCHES);
        let (s, p) = (store.clone(), progress.clone());
        let thread = std::thread::Builder::new().name("indexer".into()).spawn(move || run(&s, &p, rx))?;
        Ok(Indexer { store, tx: Some(tx), thread: Some(thread), progress })
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Hands over a committed batch; waits while the queue is full.
    pub fn submit(&self, work: Work) {
        self.progress.set_committed(work.last_seq);
        let work = match &self.tx {
            Some(tx) => match tx.send(work) {
                Ok(()) => return,
                // The thread is gone (it cannot be, short of a bug): file
                // here rather than lose the index update.
                Err(e) => e.0,
            },
            None => work,
        };
        apply(&self.store, &self.progress, work);
    }

    /// Waits until every submitted batch is filed.
    pub fn drain(&self) {
        while !self.progress.wait_caught_up(Duration::from_secs(1)) {
            // Only a bug (a panic) ends the thread early; do not wait forever on it.
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                return;
            }
        }
    }

    /// Files what is queued and stops the thread.
    pub fn finish(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.finish();
    }
}

fn run(store: &Store, progress: &Progress, rx: Receiver<Work>) {
    while let Ok(work) = rx.recv() {
        apply(store, progress, work);
    }
}

fn apply(store: &Store, progress: &Progress, work: Work) {
    let mut failed = progress.failed();
    for (key, rec) in &work.dedup {
        if let Err(e) = store.dedup_put(key, rec) {
            if !failed {
                tracing::error!(seq = rec.seq, error = %e,
                    "dedup write failed; the message is safe in the journal and is re-applied at the next start");
            }
            failed = true;
        }
    }
    for f in work.filings {
        if let Err(e) = file(store, f.seq, &f.mapped) {
            if !failed {
                tracing::error!(seq = f.seq, error = %e,
                    "index write failed; the message is safe in the journal and is re-filed at the next start");
            }
            failed = true;
        }
    }
    if !failed {
        // Lazily persisted by sled: after a crash, replay starts from an older value.
        failed = store.set_applied_seq(work.last_seq).is_err();
    }
    progress.set_applied(work.last_seq, failed);
}

/// Files mapped items under their NHS number, or records why it cannot.
///
/// # Errors
/// sled could not write.
/// `mapped` was mapped with provenance seq `seq` (the pipeline knows the seq
/// before it maps: the journal's next).
pub fn file(store: &Store, seq: u64, mapped: &Mapped) -> Result<(), StoreError> {
    if !mapped.warnings.is_empty() {
        // Field names and rules only, never the values.
        tracing::warn!(seq, warnings = ?mapped.warnings, "optional values did not fit their type and were left out");
    }
    match mapped.identity.nhs_number.as_deref().filter(|n| !n.is_empty()).map(NhsNumber::parse) {
        Some(Ok(nhs)) => store.index(&nhs, mapped),
        Some(Err(_)) => unindexed(store, seq, "NHS number fails the Modulus 11 check"),
        None => unindexed(store, seq, "no NHS number"),
    }
}

/// Accepted (AA: the sender cannot fix it by resending) but not filed.
fn unindexed(store: &Store, seq: u64, reason: &str) -> Result<(), StoreError> {
    tracing::info!(seq, reason, "message kept in the journal but not indexed");
    store.note_unindexed(seq, reason)
}
