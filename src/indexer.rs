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
//! Each handed-over batch is filed as one [`IndexBatch`] (see
//! `store/batch.rs` for why a crash inside it is repaired by replay). When a
//! write fails (a full disk), the writer reports the index failing in
//! [`Health`], stops filing, and every few seconds reopens sled and replays
//! the journal from the index's `applied_seq`: when space returns the index
//! catches up by itself, no restart needed.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::health::{Health, Part};
use crate::pipeline::{error_chain, Replayer};
use crate::record::Mapped;
use crate::store::{DedupKey, DedupRecord, IndexBatch, Store};

/// Batches queued before the pipeline thread waits (back-pressure).
const QUEUE_BATCHES: usize = 16;

/// How often a failed index writer tries to reopen sled and catch up.
const RETRY_EVERY: Duration = Duration::from_secs(2);

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

    fn set_applied(&self, seq: u64) {
        let mut m = self.marks();
        m.applied = m.applied.max(seq);
        if m.waiters > 0 {
            self.0 .1.notify_all();
        }
    }

    /// The last journal seq whose items are in the index.
    pub fn applied(&self) -> u64 {
        self.marks().applied
    }

    /// Journal entries acknowledged but not yet filed.
    pub fn lag(&self) -> u64 {
        let m = self.marks();
        m.committed.saturating_sub(m.applied)
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

/// What the writer thread needs.
pub struct Context {
    pub store: Store,
    /// The index's `applied_seq` at start.
    pub applied: u64,
    pub health: Health,
    /// Re-files from the journal when recovering from a failure.
    pub replayer: Replayer,
}

/// The index-writer thread and its queue.
pub struct Indexer {
    tx: Option<SyncSender<Work>>,
    thread: Option<JoinHandle<()>>,
    progress: Progress,
}

impl Indexer {
    /// Starts the thread.
    ///
    /// # Errors
    /// The OS refused a thread.
    pub fn spawn(ctx: Context) -> std::io::Result<Indexer> {
        let progress = Progress::default();
        progress.set_committed(ctx.applied);
        progress.set_applied(ctx.applied);
        let (tx, rx) = sync_channel::<Work>(QUEUE_BATCHES);
        let p = progress.clone();
        let thread = std::thread::Builder::new().name("indexer".into()).spawn(move || run(&ctx, &p, &rx))?;
        Ok(Indexer { tx: Some(tx), thread: Some(thread), progress })
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Hands over a committed batch; waits while the queue is full. If the
    /// thread is gone (a panic: a bug), the work is dropped: the journal has
    /// it and the next start re-files it; health already says so.
    pub fn submit(&self, work: Work) {
        self.progress.set_committed(work.last_seq);
        if let Some(tx) = &self.tx {
            let _ = tx.send(work);
        }
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

fn run(ctx: &Context, progress: &Progress, rx: &Receiver<Work>) {
    let _guard = PanicGuard(&ctx.health);
    let mut failing = false;
    let mut last_try = std::time::Instant::now();
    loop {
        let work = match rx.recv_timeout(RETRY_EVERY) {
            Ok(work) => Some(work),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if failing {
            // What this work carries is in the journal: recovery replays it.
            if last_try.elapsed() >= RETRY_EVERY {
                failing = !recover(ctx, progress);
                last_try = std::time::Instant::now();
            }
            continue;
        }
        let Some(work) = work else { continue };
        let last_seq = work.last_seq;
        match ctx.store.apply(batch_of(work)) {
            Ok(()) => progress.set_applied(last_seq),
            Err(e) => {
                failing = true;
                last_try = std::time::Instant::now();
                let why = error_chain(&e);
                if ctx.health.fail(Part::Index, &why) {
                    tracing::error!(seq = last_seq, error = %why,
                        "index write failed; messages are still journaled and acknowledged; the index will be reopened and caught up from the journal");
                }
            }
        }
    }
    if failing {
        // Shutting down while failing: one last try, else the next start replays.
        recover(ctx, progress);
    }
}

/// Reports a panic of the writer thread in health (the thread then ends;
/// acknowledged messages stay in the journal and the next start re-files them).
struct PanicGuard<'a>(&'a Health);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail(Part::Index, "the index writer thread panicked; restart recordhub to re-file from the journal");
        }
    }
}

/// Reopens sled and replays the journal from its `applied_seq`. True when
/// the index is whole again.
fn recover(ctx: &Context, progress: &Progress) -> bool {
    let result = ctx.store.reopen().map_err(|e| error_chain(&e)).and_then(|()| {
        ctx.replayer.replay(&ctx.store).map_err(|e| error_chain(&e))?;
        ctx.store.applied_seq().map_err(|e| error_chain(&e))
    });
    match result {
        Ok(applied) => {
            progress.set_applied(applied);
            if ctx.health.recover(Part::Index) {
                tracing::info!(applied_seq = applied, "index writes succeed again; caught up from the journal");
            }
            true
        }
        Err(why) => {
            tracing::debug!(error = %why, "index still failing; retrying");
            false
        }
    }
}

fn batch_of(work: Work) -> IndexBatch {
    let mut batch = IndexBatch::new();
    for f in work.filings {
        file(&mut batch, f.seq, f.mapped);
    }
    for (key, rec) in &work.dedup {
        batch.dedup(key, rec);
    }
    batch.applied_up_to(work.last_seq);
    batch
}

/// Files a mapped message (mapped with provenance seq `seq`); whose record
/// it goes into is decided when the batch is applied (`store/identity.rs`).
pub fn file(batch: &mut IndexBatch, seq: u64, mapped: Mapped) {
    if !mapped.warnings.is_empty() {
        // Field names and rules only, never the values.
        let control_id = mapped.items.first().map(|i| i.provenance.control_id.as_str()).unwrap_or_default();
        crate::events::MappingWarnings { seq, control_id, warnings: &mapped.warnings }.emit();
    }
    batch.file(seq, mapped);
}
