//! The pipeline: frames in, ACKs out, one batch at a time.
//!
//! `Pipeline::process` is synchronous and is the one function the server, the
//! CLI, the tests and the benchmarks call. For a batch of frames that arrived
//! together it: inspects each (parse + envelope checks), answers identical
//! retransmissions from the dedup table, maps the rest, appends every frame
//! to the journal with its outcome and ACK, makes them durable with one
//! fdatasync (group commit), hands the accepted ones to the index writer
//! ([`crate::indexer`], which files them while the next batch is mapped) and
//! returns the ACKs. A failed commit turns the whole batch into AR 207: the
//! sender retries, nothing acknowledged is lost.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::ack::{self, AckCode, Mode, Problem, Verdict};
use crate::hl7::Message;
use crate::indexer::{self, Filing, Indexer, Progress, Work};
use crate::intake::{self, Envelope, Policy};
use crate::journal::{Entry, EntryRef, Journal, JournalError, JournalOptions, JournalReader, Reason, Recovery};
use crate::mapping::{MapError, MappingSet};
use crate::record::Mapped;
use crate::store::dedup::Fingerprint;
use crate::store::{DedupKey, DedupRecord, Store, StoreError};

/// One frame handed to the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub frame: Frame<'a>,
    /// The sender's address, for the journal and logs.
    pub peer: &'a str,
    pub received_at_ms: u64,
}

/// A complete frame, or the head of one that exceeded `max_frame_bytes`.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    Message(&'a [u8]),
    Oversize { head: &'a [u8], len: u64 },
}

/// Which stage decided a non-AA outcome (for logs: `stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Frame,
    Parse,
    Map,
    Store,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Frame => "frame",
            Stage::Parse => "parse",
            Stage::Map => "map",
            Stage::Store => "store",
        }
    }
}

/// What happened to one frame.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// ACK bytes to send (unframed); `None` when MSH-15 asked for none.
    pub ack: Option<Vec<u8>>,
    pub code: AckCode,
    pub envelope: Envelope,
    /// Journal sequence, when the frame was journaled.
    pub seq: Option<u64>,
    /// An identical retransmission answered from the dedup table.
    pub duplicate: bool,
    /// Why it was not accepted, for the log line (never message content).
    pub problem: Option<(Stage, Problem)>,
    pub bytes: usize,
}

/// Everything `Pipeline::open` needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_dir: PathBuf,
    pub journal_segment_bytes: u64,
    pub application: String,
    pub facility: String,
    pub policy: Policy,
    pub mappings: Mappings,
}

/// The mapping set in force, shared between the pipeline and whoever reloads
/// it. A reload swaps the whole set at once; a batch uses one set throughout.
#[derive(Clone)]
pub struct Mappings(Arc<RwLock<Arc<MappingSet>>>);

impl Mappings {
    pub fn new(set: MappingSet) -> Mappings {
        Mappings(Arc::new(RwLock::new(Arc::new(set))))
    }

    pub fn current(&self) -> Arc<MappingSet> {
        // A poisoned lock only means a reloader panicked while swapping an
        // Arc, which cannot leave a half-written set: keep using it.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, set: MappingSet) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }
}

impl std::fmt::Debug for Mappings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mappings({} files)", self.current().files())
    }
}

/// Errors that stop the engine from starting.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the journal in {dir}")]
    Journal { dir: PathBuf, source: JournalError },
    #[error("cannot open the index in {dir} (is another recordhub using it?)")]
    Store { dir: PathBuf, source: StoreError },
    #[error("cannot replay journal entry {seq} into the index")]
    Replay { seq: u64, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("cannot start the index writer thread")]
    Thread(#[source] std::io::Error),
}

/// What start-up found and did.
#[derive(Debug)]
pub struct Startup {
    pub recovery: Recovery,
    /// Journal entries re-applied to the index (sled had lost them or never had them).
    pub replayed: u64,
}

/// The journal and the index, with the policy that decides ACKs.
pub struct Pipeline {
    journal: Journal,
    store: Store,
    indexer: Indexer,
    /// Dedup records handed to the index writer and maybe not yet in sled: a
    /// retransmission that arrives in that window still gets the original ACK.
    recent: HashMap<DedupKey, DedupRecord>,
    /// `recent`'s keys by journal seq, oldest first, to forget them in order.
    recent_order: VecDeque<(u64, DedupKey)>,
    journal_dir: PathBuf,
    opts: Options,
}

/// A frame that passed dedup and will be journaled.
struct Staged {
    envelope: Envelope,
    verdict: Verdict,
    stage: Stage,
    mode: Mode,
    dedup: Option<(DedupKey, Fingerprint)>,
    mapped: Option<Mapped>,
    bytes: usize,
}

pub fn journal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("journal")
}

pub fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index")
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Pipeline {
    /// Opens the journal (truncating a torn tail) and the index, then replays
    /// into the index every journal entry it has not applied.
    ///
    /// # Errors
    /// The journal is corrupt before its tail, or sled cannot be opened.
    pub fn open(opts: Options) -> Result<(Pipeline, Startup), OpenError> {
        // The index first: sled's file lock is what keeps a second engine
        // from recovering (truncating) a journal that a live one is writing.
        let idir = index_dir(&opts.data_dir);
        let store = Store::open(&idir).map_err(|source| OpenError::Store { dir: idir.clone(), source })?;
        let jdir = journal_dir(&opts.data_dir);
        let (journal, recovery) = Journal::open(
            &jdir,
            JournalOptions { segment_bytes: opts.journal_segment_bytes, ..JournalOptions::default() },
        )
        .map_err(|source| OpenError::Journal { dir: jdir.clone(), source })?;
        let fail = |e: StoreError| OpenError::Replay { seq: 0, source: Box::new(e) };
        if !store.item_format_current().map_err(fail)? {
            // Written by an older recordhub: the index is derived, so rebuild it.
            tracing::warn!(dir = %idir.display(), "index written in an older format; rebuilding it from the journal");
            store.clear_derived().map_err(fail)?;
        }
        let replayed = replay(&store, &jdir, &opts)?;
        let applied = store.applied_seq().map_err(fail)?;
        let indexer = Indexer::spawn(store.clone(), applied).map_err(OpenError::Thread)?;
        let p = Pipeline {
            journal,
            store,
            indexer,
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            journal_dir: jdir,
            opts,
        };
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
        let fail = |e: StoreError| OpenError::Replay { seq: 0, source: Box::new(e) };
        self.indexer.drain();
        self.store.clear_derived().map_err(fail)?;
        let n = replay(&self.store, &self.journal_dir, &self.opts)?;
        self.store.flush().map_err(fail)?;
        Ok(n)
    }

    /// Processes a batch of frames that arrived together; one outcome per
    /// frame, in order. Never panics on frame content.
    pub fn process(&mut self, batch: &[Inbound<'_>]) -> Vec<Outcome> {
        self.forget_applied();
        // One mapping set for the whole batch, even if a reload lands meanwhile.
        let set = self.opts.mappings.current();
        let now = now_ms();
        let stamp = ack::hl7_timestamp(now);
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(batch.len());
        let mut staged: Vec<(usize, Staged, u64, Vec<u8>)> = Vec::with_capacity(batch.len());
        // Retransmissions inside one batch: the first copy's ACK is not in sled yet.
        let mut in_batch: HashMap<DedupKey, (Fingerprint, usize)> = HashMap::new();

        for (i, inbound) in batch.iter().enumerate() {
            let (mut s, msg) = self.stage(inbound);
            // Duplicates first: a retransmission storm after an outage should
            // not pay for mapping messages that are answered from the table.
            if let Some((key, fp)) = &s.dedup {
                if let Some(out) = self.answer_duplicate(key, *fp, &s, &in_batch, &staged) {
                    outcomes.push(Some(out));
                    continue;
                }
            }
            if let Some(msg) = msg {
                s.stage = Stage::Map;
                match self.map(&set, &msg) {
                    Ok(m) => s.mapped = Some(m),
                    Err(v) => {
                        s.verdict = v;
                        s.dedup = None;
                    }
                }
            }
            let seq = self.journal.next_seq();
            let code = s.mode.code(&s.verdict);
            let control_id = format!("RH{seq}");
            let me = ack::Sender {
                application: &self.opts.application,
                facility: &self.opts.facility,
                control_id: &control_id,
                timestamp: &stamp,
            };
            let ack_bytes = ack::build(&s.envelope.inbound, &me, code, &s.verdict);
            let sent: &[u8] = if s.mode.sends(code) { &ack_bytes } else { b"" };
            let raw = match inbound.frame {
                Frame::Message(m) => m,
                Frame::Oversize { .. } => b"",
            };
            // The verdict and why, journaled whether or not an ACK was sent.
            let problem = match &s.verdict {
                Verdict::Accepted => None,
                Verdict::Error(p) | Verdict::Rejected(p) => Some(p),
            };
            let location = problem
                .and_then(|p| p.location.as_ref())
                .map(|l| format!("{}-{}", l.segment, l.field))
                .unwrap_or_default();
            let reason = problem.map_or(Reason::default(), |p| Reason {
                stage: s.stage.as_str(),
                code: p.code,
                location: &location,
                text: &p.text,
            });
            let entry = EntryRef {
                received_at_ms: inbound.received_at_ms,
                peer: inbound.peer,
                sending_app: &s.envelope.inbound.sending_app,
                sending_facility: &s.envelope.inbound.sending_facility,
                control_id: &s.envelope.inbound.control_id,
                message_type: &s.envelope.message_type,
                ack_code: code.as_str(),
                ack_sent: !sent.is_empty(),
                reason,
                ack: sent,
                raw,
            };
            let seq = match self.journal.append(&entry) {
                Ok(seq) => seq,
                Err(e) => {
                    outcomes.push(Some(self.store_failure(s, &stamp, &e.to_string())));
                    continue;
                }
            };
            debug_assert!(s.mapped.iter().flat_map(|m| &m.items).all(|i| i.provenance.seq == seq));
            if let Some((key, fp)) = &s.dedup {
                if s.verdict == Verdict::Accepted {
                    in_batch.insert(key.clone(), (*fp, staged.len()));
                }
            }
            let ack_sent = sent.to_vec();
            staged.push((i, s, seq, ack_sent));
            outcomes.push(None);
        }

        if let Err(e) = self.journal.commit() {
            let text = e.to_string();
            for (i, s, _, _) in staged {
                outcomes[i] = Some(self.store_failure(s, &stamp, &text));
            }
            return outcomes.into_iter().flatten().collect();
        }
        self.apply_batch(&mut outcomes, staged);
        outcomes.into_iter().flatten().collect()
    }

    /// After the commit: the outcomes, and the dedup records and items handed
    /// to the index writer.
    fn apply_batch(&mut self, outcomes: &mut [Option<Outcome>], staged: Vec<(usize, Staged, u64, Vec<u8>)>) {
        let mut work = Work { last_seq: 0, dedup: Vec::new(), filings: Vec::with_capacity(staged.len()) };
        for (i, mut s, seq, ack_sent) in staged {
            work.last_seq = seq;
            let code = s.mode.code(&s.verdict);
            if let (Verdict::Accepted, Some((key, fp))) = (&s.verdict, s.dedup.take()) {
                if let Some(mapped) = s.mapped.take() {
                    work.filings.push(Filing { seq, mapped });
                }
                let rec = DedupRecord { fingerprint: fp, seq, ack: ack_sent.clone() };
                self.recent.insert(key.clone(), rec.clone());
                self.recent_order.push_back((seq, key.clone()));
                work.dedup.push((key, rec));
            }
            let problem = match &s.verdict {
                Verdict::Accepted => None,
                Verdict::Error(p) | Verdict::Rejected(p) => Some((s.stage, p.clone())),
            };
            let ack = s.mode.sends(code).then_some(ack_sent);
            outcomes[i] = Some(Outcome {
                ack,
                code,
                envelope: s.envelope,
                seq: Some(seq),
                duplicate: false,
                problem,
                bytes: s.bytes,
            });
        }
        if work.last_seq > 0 {
            self.indexer.submit(work);
        }
    }

    /// Drops remembered dedup records the index writer has put in sled.
    fn forget_applied(&mut self) {
        let applied = self.indexer.progress().applied();
        while self.recent_order.front().is_some_and(|(seq, _)| *seq <= applied) {
            let Some((seq, key)) = self.recent_order.pop_front() else { break };
            // A reused control id may have a newer record under the same key.
            if self.recent.get(&key).is_some_and(|r| r.seq == seq) {
                self.recent.remove(&key);
            }
        }
    }

    /// The dedup record for `key`: remembered, else from sled.
    fn dedup_record(&self, key: &DedupKey) -> Option<DedupRecord> {
        match self.recent.get(key) {
            Some(r) => Some(r.clone()),
            None => self.store.dedup_get(key).ok()?,
        }
    }

    /// Intake for one frame: its envelope, verdict and dedup identity, and
    /// the parsed message when it passed intake and still has to be mapped.
    fn stage<'b>(&self, inbound: &Inbound<'b>) -> (Staged, Option<Message<'b>>) {
        match inbound.frame {
            Frame::Message(raw) => {
                let insp = intake::inspect(raw, &self.opts.policy);
                let accepted = insp.verdict == Verdict::Accepted;
                let dedup = accepted.then(|| {
                    let e = &insp.envelope.inbound;
                    (DedupKey::new(&e.sending_app, &e.sending_facility, &e.control_id), Fingerprint::of(raw))
                });
                let msg = if accepted { insp.message } else { None };
                let s = Staged {
                    envelope: insp.envelope,
                    verdict: insp.verdict,
                    stage: Stage::Parse,
                    mode: insp.mode,
                    dedup,
                    mapped: None,
                    bytes: raw.len(),
                };
                (s, msg)
            }
            Frame::Oversize { head, len } => {
                let insp = intake::inspect(head, &self.opts.policy);
                let text = format!("message of {len} bytes exceeds max_frame_bytes; it was discarded");
                let verdict = Verdict::Rejected(Problem::new(207, text));
                let s = Staged {
                    envelope: insp.envelope,
                    verdict,
                    stage: Stage::Frame,
                    mode: insp.mode,
                    dedup: None,
                    mapped: None,
                    bytes: len as usize,
                };
                (s, None)
            }
        }
    }

    /// The mapping stage: AR 201 when no mapping handles the event, AE with
    /// the rule's code (101/102/103) when content breaks a `required` rule.
    fn map(&self, set: &MappingSet, msg: &Message<'_>) -> Result<Mapped, Verdict> {
        // The seq this message gets if it is journaled (the next append), so
        // `{seq}` templates such as MDM's `journal:{seq}` body reference are
        // right from the start and identical on replay.
        let prov = crate::mapping::check::provenance(msg, self.journal.next_seq());
        match set.apply(msg, &prov) {
            Ok(m) => Ok(m),
            Err(MapError::NoMapping { message_type }) => {
                let text = format!("no mapping handles {message_type}");
                Err(Verdict::Rejected(Problem::new(201, text).at(ack::Location::field("MSH", 1, 9))))
            }
            Err(MapError::Content(p)) => Err(Verdict::Error(p)),
        }
    }

    fn answer_duplicate(
        &self,
        key: &DedupKey,
        fp: Fingerprint,
        s: &Staged,
        in_batch: &HashMap<DedupKey, (Fingerprint, usize)>,
        staged: &[(usize, Staged, u64, Vec<u8>)],
    ) -> Option<Outcome> {
        let (seq, ack_sent) = if let Some((bfp, idx)) = in_batch.get(key) {
            if *bfp != fp {
                return None;
            }
            let (_, _, seq, ack) = &staged[*idx];
            (*seq, ack.clone())
        } else {
            let rec = self.dedup_record(key)?;
            if rec.fingerprint != fp {
                tracing::warn!(control_id = %s.envelope.inbound.control_id, sending_app = %s.envelope.inbound.sending_app,
                    "control id reused with different content: sender's counter reset? processing as new");
                return None;
            }
            (rec.seq, rec.ack)
        };
        let code = s.mode.code(&Verdict::Accepted);
        let ack = (!ack_sent.is_empty()).then_some(ack_sent);
        Some(Outcome {
            ack,
            code,
            envelope: s.envelope.clone(),
            seq: Some(seq),
            duplicate: true,
            problem: None,
            bytes: s.bytes,
        })
    }

    /// AR/CR 207: the engine could not store the message; the sender should retry.
    fn store_failure(&self, s: Staged, stamp: &str, why: &str) -> Outcome {
        let verdict = Verdict::Rejected(Problem::new(207, "message could not be stored; retry later"));
        let code = s.mode.code(&verdict);
        let control_id = format!("RHE{}", now_ms());
        let me = ack::Sender {
            application: &self.opts.application,
            facility: &self.opts.facility,
            control_id: &control_id,
            timestamp: stamp,
        };
        let ack = s.mode.sends(code).then(|| ack::build(&s.envelope.inbound, &me, code, &verdict));
        let problem = Some((Stage::Store, Problem::new(207, why)));
        Outcome { ack, code, envelope: s.envelope, seq: None, duplicate: false, problem, bytes: s.bytes }
    }

    /// Files what is queued, stops the index writer and flushes the index;
    /// the journal is always durable after `process`.
    pub fn shutdown(&mut self) -> Result<(), StoreError> {
        self.indexer.finish();
        self.store.flush()
    }
}

/// Re-applies journal entries after the index's `applied_seq`.
fn replay(store: &Store, journal_dir: &Path, opts: &Options) -> Result<u64, OpenError> {
    let from = store.applied_seq().map_err(|e| OpenError::Replay { seq: 0, source: Box::new(e) })? + 1;
    let reader = JournalReader::open(journal_dir).map_err(|e| OpenError::Replay { seq: from, source: Box::new(e) })?;
    let mut n = 0;
    let mut last = None;
    for entry in reader.iter_from(from) {
        let entry = entry.map_err(|e| OpenError::Replay { seq: from + n, source: Box::new(e) })?;
        let seq = entry.seq;
        apply_entry(store, opts, &entry).map_err(|e| OpenError::Replay { seq, source: Box::new(e) })?;
        last = Some(seq);
        n += 1;
    }
    if let Some(seq) = last {
        store.set_applied_seq(seq).map_err(|e| OpenError::Replay { seq, source: Box::new(e) })?;
    }
    Ok(n)
}

/// The index effects of one journaled, accepted message, derived again from
/// its raw bytes with the mappings now in force.
fn apply_entry(store: &Store, opts: &Options, e: &Entry) -> Result<(), StoreError> {
    // `None`: a version 1 entry sent without an ACK, whose verdict was not
    // journaled: taken as accepted when it still parses and maps.
    let unknown = match e.accepted() {
        Some(accepted) if !accepted => return Ok(()),
        Some(_) => false,
        None => true,
    };
    let key = DedupKey::new(&e.sending_app, &e.sending_facility, &e.control_id);
    let rec = DedupRecord { fingerprint: Fingerprint::of(&e.raw), seq: e.seq, ack: e.ack.clone() };
    store.dedup_put(&key, &rec)?;
    let Ok(msg) = Message::parse_with(&e.raw, &opts.policy.parse) else { return Ok(()) };
    let prov = crate::mapping::check::provenance(&msg, e.seq);
    match opts.mappings.current().apply(&msg, &prov) {
        Ok(mapped) => indexer::file(store, e.seq, &mapped),
        // Accepted under older mappings, failing under these: keep it
        // visible to operators rather than dropping it silently.
        Err(_) if unknown => Ok(()),
        Err(err) => store.note_unindexed(e.seq, &format!("mapping now fails: {}", map_error_text(&err))),
    }
}

/// For timing a batch in logs.
pub fn elapsed_us(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

fn map_error_text(e: &MapError) -> String {
    match e {
        MapError::NoMapping { message_type } => format!("no mapping handles {message_type}"),
        MapError::Content(p) => p.text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &[u8] = include_bytes!("../fixtures/adt-a01.hl7");

    fn open(dir: &Path) -> Pipeline {
        let set = MappingSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap();
        let opts = Options {
            data_dir: dir.to_path_buf(),
            journal_segment_bytes: 1 << 20,
            application: "RECORDHUB".into(),
            facility: "LCR".into(),
            policy: Policy::default(),
            mappings: Mappings::new(set),
        };
        Pipeline::open(opts).unwrap().0
    }

    fn one(p: &mut Pipeline, raw: &[u8]) -> Outcome {
        p.process(&[Inbound { frame: Frame::Message(raw), peer: "test", received_at_ms: 0 }]).remove(0)
    }

    #[test]
    fn a_retransmission_in_the_next_batch_gets_the_original_ack_before_and_after_indexing() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = open(dir.path());
        let first = one(&mut p, ADT);
        assert!(first.code.is_accept() && !first.duplicate);
        // Straight away: the index writer may not have put the dedup record yet.
        let again = one(&mut p, ADT);
        assert!(again.duplicate, "answered as a duplicate");
        assert_eq!(again.ack, first.ack, "byte-identical ACK");
        assert_eq!(again.seq, first.seq);
        // After the index writer caught up: answered from sled.
        p.sync_index();
        let third = one(&mut p, ADT);
        assert!(third.duplicate);
        assert_eq!(third.ack, first.ack);
        assert!(p.recent.is_empty(), "remembered records are dropped once in sled");
        let nhs = crate::hl7::NhsNumber::parse("9434765919").unwrap();
        assert_eq!(p.store().record(&nhs).unwrap().len(), 6, "filed once, the ADT's six items");
        p.shutdown().unwrap();
    }
}
