//! Re-applying journal entries to the index: at start-up (what sled lost or
//! never had), after the index writer recovers from a failure, and for
//! `recordhub reindex` (how a fixed mapping reaches old messages).
//! Re-processing selected entries while the engine runs is `reprocess.rs`.

use std::path::PathBuf;

use crate::hl7::Message;
use crate::indexer;
use crate::intake::{self, Policy};
use crate::journal::{Entry, JournalReader, Recovery};
use crate::mapping::MapError;
use crate::record::Mapped;
use crate::store::dedup::Fingerprint;
use crate::store::{DedupKey, DedupRecord, IndexBatch, Store, StoreError};

use super::{Mappings, OpenError};

/// Entries per index batch during replay: large enough to amortise sled's
/// per-batch cost, small enough that a crash mid-replay loses little work.
const REPLAY_BATCH: usize = 512;

/// What replay needs: where the journal is and how to map its entries.
#[derive(Debug, Clone)]
pub struct Replayer {
    pub journal_dir: PathBuf,
    pub mappings: Mappings,
    pub policy: Policy,
}

impl Replayer {
    /// Re-applies every journal entry after the index's `applied_seq`;
    /// returns how many entries were read.
    ///
    /// # Errors
    /// The journal cannot be read, or the index cannot be written.
    pub fn replay(&self, store: &Store) -> Result<u64, OpenError> {
        let from = store.applied_seq().map_err(|e| replay_error(0, e))? + 1;
        if from == 1 {
            if let Some(r) = crate::journal::retention::retired(&self.journal_dir) {
                // A rebuild (reindex, a new index format, changed rules) after retention.
                tracing::warn!(
                    up_to_seq = r.up_to_seq,
                    segments = r.segments,
                    "rebuilding the index from a journal whose oldest segments were retired: \
                     records filed from them are not rebuilt"
                );
            }
        }
        let reader = JournalReader::open(&self.journal_dir).map_err(|e| replay_error(from, e))?;
        let mut n = 0;
        let mut batch = IndexBatch::new();
        let mut entries_in_batch = 0;
        let mut entries = reader.iter_from(from);
        for entry in &mut entries {
            let entry = entry.map_err(|e| replay_error(from + n, e))?;
            self.apply_entry(&mut batch, &entry);
            batch.applied_up_to(entry.seq);
            n += 1;
            entries_in_batch += 1;
            if entries_in_batch >= REPLAY_BATCH {
                let seq = entry.seq;
                store.apply(std::mem::take(&mut batch)).map_err(|e| replay_error(seq, e))?;
                entries_in_batch = 0;
            }
        }
        if !batch.is_empty() {
            store.apply(batch).map_err(|e| replay_error(from + n, e))?;
        }
        for d in entries.damage() {
            // Reported at ERROR when the journal was opened; here only which
            // ranges replay stepped over.
            tracing::warn!(damage = %d, "replay skipped a damaged journal range");
        }
        Ok(n)
    }

    /// Restores `nhs`'s record after its objection was withdrawn: maps every
    /// accepted journal entry again and files those that go into that record
    /// (`Store::refile_for`), leaving everything else in the index as it is,
    /// so the engine keeps serving meanwhile. Returns how many were filed.
    ///
    /// # Errors
    /// The journal cannot be read, or the index cannot be written.
    pub fn restore(&self, store: &Store, nhs: &crate::hl7::nhs::NhsNumber) -> Result<u64, OpenError> {
        let mut n = 0;
        self.each_accepted(|seq, mapped| {
            if store.refile_for(nhs, mapped).map_err(|e| replay_error(seq, e))? {
                n += 1;
            }
            Ok(())
        })?;
        Ok(n)
    }

    /// Re-evaluates the index after the exclusion rules changed (a reload),
    /// both ways, while the engine keeps serving: every accepted journal
    /// entry is mapped and governed again and filed again in place
    /// (`Store::refile_governed`): what a rule now excludes is deleted, what
    /// none excludes any more is written back. Scopes no rule makes sensitive
    /// any more are then forgotten and, if there were any, a second pass
    /// files their items. Costs one (or two) passes over the journal, like
    /// `reindex` without clearing; readers see each message's change as it
    /// is re-filed. Returns how many entries were read.
    ///
    /// # Errors
    /// The journal cannot be read, or the index cannot be written.
    pub fn regovern(&self, store: &Store) -> Result<u64, OpenError> {
        let before: std::collections::HashSet<String> =
            store.sensitive_scopes().map_err(|e| replay_error(0, e))?.into_iter().collect();
        let mut seen = std::collections::HashSet::new();
        let mut n = self.refile_all(store, &mut seen)?;
        let stale: Vec<_> = before.difference(&seen).collect();
        for s in &stale {
            store.forget_sensitive_scope(s).map_err(|e| replay_error(0, e))?;
        }
        if !stale.is_empty() {
            n += self.refile_all(store, &mut seen)?;
        }
        store.set_rules_mark(self.mappings.rules().fingerprint()).map_err(|e| replay_error(0, e))?;
        Ok(n)
    }

    fn refile_all(&self, store: &Store, seen: &mut std::collections::HashSet<String>) -> Result<u64, OpenError> {
        self.each_accepted(|seq, mapped| {
            seen.extend(mapped.governed.sensitive_scopes.iter().map(|(s, _)| s.clone()));
            store.refile_governed(mapped).map_err(|e| replay_error(seq, e))
        })
    }

    /// Calls `f` with every accepted journal entry that still maps, mapped
    /// again; returns how many entries were read.
    fn each_accepted(&self, mut f: impl FnMut(u64, Mapped) -> Result<(), OpenError>) -> Result<u64, OpenError> {
        let reader = JournalReader::open(&self.journal_dir).map_err(|e| replay_error(1, e))?;
        let mut n = 0;
        for entry in reader.iter_from(1) {
            let entry = entry.map_err(|e| replay_error(0, e))?;
            n += 1;
            if !accepted(&entry, &self.policy) {
                continue;
            }
            if let Ok(mapped) = self.remap(&entry.raw, entry.seq) {
                f(entry.seq, mapped)?;
            }
        }
        Ok(n)
    }

    /// What a journaled message maps to under the mappings and rules now in
    /// force: parsed, mapped and governed as live ingest does, so exclusion
    /// holds on replay, reindex and re-evaluation alike.
    pub(super) fn remap(&self, raw: &[u8], seq: u64) -> Result<Mapped, Unmapped> {
        let msg = Message::parse_with(raw, &self.policy.parse).map_err(|_| Unmapped::Parse)?;
        let prov = crate::mapping::check::provenance(&msg, seq);
        let (set, rules) = self.mappings.both();
        let mut mapped = set.apply(&msg, &prov).map_err(Unmapped::Map)?;
        crate::govern::govern(&rules, &set, &self.policy.parse, &msg, &prov, &mut mapped);
        Ok(mapped)
    }

    /// The index effects of one journaled, accepted message, derived again
    /// from its raw bytes with the mappings now in force.
    fn apply_entry(&self, batch: &mut IndexBatch, e: &Entry) {
        if !accepted(e, &self.policy) {
            return;
        }
        let key = DedupKey::new(&e.sending_app, &e.sending_facility, &e.control_id);
        let rec = DedupRecord { fingerprint: Fingerprint::of(&e.raw), seq: e.seq, ack: e.ack.clone() };
        match self.remap(&e.raw, e.seq) {
            Ok(mapped) => indexer::file(batch, e.seq, mapped),
            // Accepted under older mappings, failing under these: keep it
            // visible to operators rather than dropping it silently.
            Err(Unmapped::Map(err)) => batch.unindexed(e.seq, &format!("mapping now fails: {}", map_error_text(&err))),
            Err(Unmapped::Parse) => batch.unindexed(e.seq, "no longer parses with the current settings"),
        }
        // After the items: see store/batch.rs on why the order matters.
        batch.dedup(&key, &rec);
    }
}

/// Why a journaled message no longer maps.
pub(super) enum Unmapped {
    Parse,
    Map(MapError),
}

/// Whether a journaled message was accepted. An entry that records no ACK
/// code (format 1, sent with MSH-15 NE or ER) is judged again by intake,
/// which is what decided it the first time.
pub(super) fn accepted(e: &Entry, policy: &Policy) -> bool {
    match e.accepted() {
        Some(accepted) => accepted,
        None => intake::inspect(&e.raw, policy).verdict == crate::ack::Verdict::Accepted,
    }
}

fn replay_error(seq: u64, e: impl std::error::Error + Send + Sync + 'static) -> OpenError {
    OpenError::Replay { seq, source: Box::new(e) }
}

pub(super) fn map_error_text(e: &MapError) -> String {
    match e {
        MapError::NoMapping { message_type } => format!("no mapping handles {message_type}"),
        MapError::Content(p) => p.text.clone(),
    }
}

/// Drops everything derived from the journal, keeping the audit trail.
pub(super) fn clear(store: &Store) -> Result<(), OpenError> {
    store.clear_derived().map_err(|e: StoreError| replay_error(0, e))
}

/// Why the index must be rebuilt from the journal before it is used, if it must.
pub(super) fn rebuild_reason(
    store: &Store,
    recovery: &Recovery,
    rules_mark: u64,
) -> Result<Option<&'static str>, StoreError> {
    if !store.item_format_current()? {
        return Ok(Some("the index was written in an older format"));
    }
    if store.applied_seq()? > 0 && store.rules_mark()? != rules_mark {
        // Items filed under other exclusion rules: re-evaluated both ways.
        return Ok(Some("the exclusion rules changed since the index was built"));
    }
    if store.applied_seq()? > recovery.last_seq {
        // The index points at entries the journal no longer holds.
        return Ok(Some("the index is ahead of the journal"));
    }
    if store.damage_mark()? != damage_mark(recovery) {
        // Entries in a damaged range are gone: the items, dedup records and
        // document references filed from them must go too, or a resent lost
        // message would be answered as a duplicate and never journaled again.
        return Ok(Some("the journal has damaged ranges the index has not been rebuilt for"));
    }
    Ok(None)
}

/// Identifies the set of damaged ranges (0 for none).
pub(super) fn damage_mark(recovery: &Recovery) -> u64 {
    let mut text = String::new();
    for d in &recovery.damage {
        text.push_str(&format!("{}:{}:{};", d.segment.display(), d.offset, d.len));
    }
    if text.is_empty() {
        0
    } else {
        u64::from(crc32c::crc32c(text.as_bytes())) | 1 << 32
    }
}
