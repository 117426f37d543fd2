//! The pipeline: frames in, ACKs out, one batch at a time.
//!
//! `Pipeline::process` is synchronous and is the one function the server, the
//! CLI, the tests and the benchmarks call. For a batch of frames that arrived
//! together it runs the stages in order:
//!
//! ```text
//! intake (parse, envelope) ─▶ dedup ─▶ map ─▶ govern ─▶ journal append ─▶ commit (one fdatasync)
//!     ─▶ outcomes (ACKs) ─▶ index writer (its own thread, files while the next batch maps)
//! ```
//!
//! Every outcome follows the fate of the journal entry it answers: nothing is
//! answered AA/CA before the commit that makes it durable, and an identical
//! retransmission that arrives in the same batch as its original waits for
//! that original's commit too. A failed commit turns the whole batch into
//! AR 207: the sender retries, nothing acknowledged is lost.

mod follow;
mod mappings;
mod premap;
mod recent;
mod replay;
mod replicated;
mod reprocess;
pub mod retain;
mod settle;
mod stage;
mod types;

use std::collections::HashMap;
use std::time::Instant;

use crate::ack::{self, Verdict};
use crate::events::{JournalCommitFailed, JournalCommitted, JournalRecovered};
use crate::health::Part;
use crate::indexer::{Context, Filing, Indexer, Progress, Work};
use crate::journal::{EntryRef, Journal, JournalOptions, Reason};
use crate::store::dedup::Fingerprint;
use crate::store::{DedupKey, DedupRecord, Store, StoreError};

#[cfg(test)]
pub(crate) use follow::testing;
pub use follow::FollowError;
pub use mappings::Mappings;
pub use premap::{Premapped, Premapper, PREMAP_BYTES};
pub use replay::Replayer;
pub use reprocess::{select, ItemChange, ReprocessError, Reprocessed, SelectError, Tally};
pub use types::{
    elapsed_us, error_chain, index_dir, journal_dir, now_ms, Frame, Inbound, OpenError, Options, Outcome, Stage,
    Startup,
};

use recent::Recent;
use settle::duplicate;
use stage::Staged;

/// The journal and the index, with the policy that decides ACKs.
pub struct Pipeline {
    journal: Journal,
    store: Store,
    indexer: Indexer,
    recent: Recent,
    replayer: Replayer,
    opts: Options,
}

/// A journaled frame waiting for its batch's commit.
struct Pending {
    s: Staged,
    seq: u64,
    /// The ACK bytes sent (empty when MSH-15 asked for none).
    ack: Vec<u8>,
}

/// Where each frame of a batch stands until the commit decides.
// One per frame of one batch, short-lived: boxing would add an allocation
// per message for nothing.
#[allow(clippy::large_enum_variant)]
enum Slot {
    /// Answered without the journal (a stored duplicate, a failed append).
    Done(Outcome),
    /// Journaled: `pending[i]`.
    Journaled(usize),
    /// An identical copy of `pending[i]`, which is in this batch.
    CopyOf(usize, Staged),
}

/// What the dedup stage found.
enum Seen {
    New,
    /// A retransmission of `pending[i]`, journaled in this batch.
    InBatch(usize),
    /// A retransmission of a message committed earlier.
    Stored(DedupRecord),
}

impl Pipeline {
    /// Opens the journal (truncating a torn tail) and the index, then replays
    /// into the index every journal entry it has not applied.
    ///
    /// # Errors
    /// The journal is damaged (and the policy says refuse), or sled cannot be opened.
    pub fn open(opts: Options) -> Result<(Pipeline, Startup), OpenError> {
        // The index first: sled's file lock is what keeps a second engine
        // from recovering (truncating) a journal that a live one is writing.
        let idir = index_dir(&opts.data_dir);
        let store = Store::open_sized(&idir, opts.faults.clone(), opts.index_cache_bytes)
            .map_err(|source| OpenError::Store { dir: idir.clone(), source })?;
        let jdir = journal_dir(&opts.data_dir);
        let jopts = JournalOptions {
            segment_bytes: opts.journal_segment_bytes,
            on_damage: opts.journal_damage,
            faults: opts.faults.clone(),
        };
        let (journal, recovery) =
            Journal::open(&jdir, jopts).map_err(|source| OpenError::Journal { dir: jdir.clone(), source })?;
        let fail = |e: StoreError| OpenError::Replay { seq: 0, source: Box::new(e) };
        let rules_mark = opts.mappings.rules().fingerprint();
        if let Some(why) = replay::rebuild_reason(&store, &recovery, rules_mark).map_err(fail)? {
            // The index is derived: rebuilding it from the journal is always right.
            tracing::warn!(dir = %idir.display(), why, "rebuilding the index from the journal");
            replay::clear(&store)?;
        }
        // Remembered after any rebuild (which clears it), so the same damage
        // does not rebuild the index again at every start.
        store.set_damage_mark(replay::damage_mark(&recovery)).map_err(fail)?;
        let replayer = Replayer { journal_dir: jdir, mappings: opts.mappings.clone(), policy: opts.policy.clone() };
        let replayed = replayer.replay(&store)?;
        store.set_rules_mark(rules_mark).map_err(fail)?;
        let applied = store.applied_seq().map_err(fail)?;
        let ctx = Context { store: store.clone(), applied, health: opts.health.clone(), replayer: replayer.clone() };
        let indexer = Indexer::spawn(ctx).map_err(OpenError::Thread)?;
        let p = Pipeline { journal, store, indexer, recent: Recent::default(), replayer, opts };
        Ok((p, Startup { recovery, replayed }))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How far the index has caught up; record reads wait on it.
    pub fn progress(&self) -> Progress {
        self.indexer.progress().clone()
    }

    /// Waits until every accepted message so far is in the index.
    pub fn sync_index(&self) {
        self.indexer.drain();
    }

    /// Rebuilds the whole index from the journal with the current mappings
    /// (`recordhub reindex`): how a fixed mapping reaches old messages.
    ///
    /// # Errors
    /// The journal or the index could not be read or written.
    pub fn reindex(&mut self) -> Result<u64, OpenError> {
        self.indexer.drain();
        replay::clear(&self.store)?;
        let n = self.replayer.replay(&self.store)?;
        let mark = self.opts.mappings.rules().fingerprint();
        self.store.set_rules_mark(mark).map_err(|e| OpenError::Replay { seq: 0, source: Box::new(e) })?;
        self.store.flush().map_err(|e| OpenError::Replay { seq: 0, source: Box::new(e) })?;
        Ok(n)
    }

    /// Processes a batch of frames that arrived together; one outcome per
    /// frame, in order. Never panics on frame content.
    pub fn process(&mut self, batch: &[Inbound<'_>]) -> Vec<Outcome> {
        self.recent.forget_applied(self.indexer.progress().applied());
        // One mapping set for the whole batch, even if a reload lands meanwhile.
        let (set, rules) = self.opts.mappings.both();
        let stamp = ack::hl7_timestamp(now_ms());
        let mut slots = Vec::with_capacity(batch.len());
        let mut pending: Vec<Option<Pending>> = Vec::with_capacity(batch.len());
        // Accepted originals in this batch: their dedup records are not stored yet.
        let mut in_batch: HashMap<DedupKey, (Fingerprint, usize)> = HashMap::new();
        let mut location = String::new();

        for inbound in batch {
            let (mut s, msg) = self.stage(inbound);
            // Duplicates first: a retransmission storm after an outage should
            // not pay for mapping messages that are answered from the table.
            if let Some((key, fp)) = &s.dedup {
                match self.seen(key, *fp, &s, &in_batch) {
                    Ok(Seen::New) => {}
                    Ok(Seen::InBatch(i)) => {
                        slots.push(Slot::CopyOf(i, s));
                        continue;
                    }
                    Ok(Seen::Stored(rec)) => {
                        slots.push(Slot::Done(duplicate(s, rec.seq, rec.ack)));
                        continue;
                    }
                    Err(e) => {
                        // Without the table we cannot tell a retransmission
                        // from a new message: journaling it could store it twice.
                        let why = format!("duplicate check failed: {}", error_chain(&e));
                        slots.push(Slot::Done(self.store_failure(s, &stamp, &why)));
                        continue;
                    }
                }
            }
            if let Some(msg) = msg {
                s.stage = Stage::Map;
                // Mapped ahead (a large frame) with this batch's set, or here.
                let seq = self.journal.next_seq();
                let ahead = inbound.premapped.and_then(|p| p.take(&set, seq));
                let mapped = match ahead {
                    Some(result) => result.map_err(stage::verdict_of),
                    None => self.map(&set, &msg, &s),
                };
                match mapped {
                    Ok(mut m) => {
                        self.govern(&set, &rules, &msg, seq, &mut m);
                        s.mapped = Some(m);
                    }
                    Err(v) => {
                        s.verdict = v;
                        s.dedup = None;
                    }
                }
            }
            let ack = self.render_ack(&s, self.journal.next_seq(), &stamp);
            let ack = if s.mode.sends(s.code()) { ack } else { Vec::new() };
            let appended = self.journal.append(&journal_entry(inbound, &s, &ack, &mut location));
            let seq = match appended {
                Ok(seq) => seq,
                Err(e) => {
                    slots.push(Slot::Done(self.store_failure(s, &stamp, &error_chain(&e))));
                    continue;
                }
            };
            debug_assert!(s.mapped.iter().flat_map(|m| &m.items).all(|i| i.provenance.seq == seq));
            if let (Verdict::Accepted, Some((key, fp))) = (&s.verdict, &s.dedup) {
                in_batch.insert(key.clone(), (*fp, pending.len()));
            }
            slots.push(Slot::Journaled(pending.len()));
            pending.push(Some(Pending { s, seq, ack }));
        }

        self.opts.faults.hit("pipeline.commit");
        let committed = self.commit(pending.iter().flatten().count() as u64);
        self.opts.faults.hit("pipeline.after_commit");
        self.settle(slots, pending, committed.err().as_deref(), &stamp)
    }

    /// Commits the batch's entries; `Err` carries the reason (with the OS
    /// error) for the log and the AR. Health follows the outcome.
    fn commit(&mut self, entries: u64) -> Result<(), String> {
        let started = Instant::now();
        match self.journal.commit() {
            Ok(()) => {
                // A batch of duplicates only commits nothing: not a commit to time.
                if entries > 0 {
                    JournalCommitted { entries, elapsed: started.elapsed() }.emit(self.metrics());
                }
                if self.opts.health.recover(Part::Journal) {
                    JournalRecovered.emit();
                }
                Ok(())
            }
            Err(e) => {
                let why = error_chain(&e);
                self.opts.health.fail(Part::Journal, &why);
                self.opts.health.count_refused(entries);
                JournalCommitFailed { error: &why, messages: entries }.emit(self.metrics());
                Err(why)
            }
        }
    }

    /// This engine's metrics (held by its health record).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        self.opts.health.metrics()
    }

    /// The dedup stage: is this an identical retransmission?
    fn seen(
        &self,
        key: &DedupKey,
        fp: Fingerprint,
        s: &Staged,
        in_batch: &HashMap<DedupKey, (Fingerprint, usize)>,
    ) -> Result<Seen, StoreError> {
        if let Some((bfp, i)) = in_batch.get(key) {
            return Ok(if *bfp == fp { Seen::InBatch(*i) } else { Seen::New });
        }
        let rec = match self.recent.get(key) {
            Some(r) => r.clone(),
            None => match self.store.dedup_get(key)? {
                Some(r) => r,
                None => return Ok(Seen::New),
            },
        };
        if rec.fingerprint != fp {
            let e = &s.envelope.inbound;
            tracing::warn!(control_id = %e.control_id, sending_app = %e.sending_app,
                "control id reused with different content: sender's counter reset? processing as new");
            return Ok(Seen::New);
        }
        Ok(Seen::Stored(rec))
    }

    /// Files what is queued, stops the index writer and flushes the index;
    /// the journal is always durable after `process`.
    ///
    /// # Errors
    /// The index flush failed (the journal still holds everything).
    pub fn shutdown(&mut self) -> Result<(), StoreError> {
        self.indexer.finish();
        self.store.flush()
    }

    /// [`Self::shutdown`], then closes the index and waits (at most
    /// `limit`) until sled has let go of its file lock: after this, the
    /// index can be opened again (by `recordhub record`, or a new engine).
    /// False in `.1` if the lock was still held at the limit.
    pub fn close(mut self, limit: std::time::Duration) -> (Result<(), StoreError>, bool) {
        let flushed = self.shutdown();
        let dir = index_dir(&self.opts.data_dir);
        drop(self);
        (flushed, crate::store::wait_released(&dir, limit))
    }
}

/// The journal entry for a staged frame: the verdict and why, journaled
/// whether or not an ACK was sent. `location` is the caller's buffer for
/// the problem's place (`PID-7`).
fn journal_entry<'a>(inbound: &'a Inbound<'_>, s: &'a Staged, ack: &'a [u8], location: &'a mut String) -> EntryRef<'a> {
    let raw = match inbound.frame {
        Frame::Message(m) => m,
        Frame::Oversize { .. } => b"",
    };
    let reason = match &s.verdict {
        Verdict::Accepted => Reason::default(),
        Verdict::Error(p) | Verdict::Rejected(p) => {
            location.clear();
            if let Some(l) = &p.location {
                location.push_str(&format!("{}-{}", l.segment, l.field));
                if l.component > 0 {
                    location.push_str(&format!(".{}", l.component));
                }
            }
            Reason { stage: s.stage.as_str(), code: p.code, location, text: &p.text }
        }
    };
    EntryRef {
        received_at_ms: inbound.received_at_ms,
        peer: inbound.peer,
        sending_app: &s.envelope.inbound.sending_app,
        sending_facility: &s.envelope.inbound.sending_facility,
        control_id: &s.envelope.inbound.control_id,
        message_type: &s.envelope.message_type,
        ack_code: s.code().as_str(),
        ack_sent: s.mode.sends(s.code()),
        reason,
        ack,
        raw,
    }
}

#[cfg(test)]
mod tests;
