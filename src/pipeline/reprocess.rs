//! Re-processing selected journal entries while the engine runs
//! (`recordhub replay --query`, `POST /admin/replay`, `POST /admin/reindex`):
//! each is mapped again with the mappings in force and re-filed in place
//! (`Store::refile_entry`), reporting what changed. Never journaled again,
//! never acknowledged again, the dedup table untouched.

use crate::journal::query::{FilterError, Filters, Patient, Query};
use crate::journal::{Entry, JournalError, JournalReader};
use crate::store::{Store, StoreError};

use super::replay::{accepted, map_error_text, Unmapped};
use super::Replayer;

/// What re-processing one journal entry did to the record: which items
/// its message now adds, changes or no longer files (kinds and field names
/// only: never a value or an item id, which can be a name).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reprocessed {
    pub seq: u64,
    pub control_id: String,
    pub message_type: String,
    /// `refiled` (something changed), `unchanged`, `not_accepted` (a
    /// rejected message stays rejected), `not_filed` (parked, ignored or
    /// unindexed), `objected`, `no_longer_maps`, `not_yet_indexed`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<ItemChange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<ItemChange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<ItemChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// One item of a re-processed message: its kind and the fields that differ
/// (every field for an item added or removed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ItemChange {
    pub kind: crate::record::Kind,
    pub fields: Vec<String>,
}

/// Counts over one re-processing run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Tally {
    pub selected: u64,
    pub refiled: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub dry_run: bool,
    /// Damaged journal ranges stepped over.
    pub damaged_ranges: usize,
}

/// Why re-processing stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReprocessError {
    /// The journal could not be read; nothing after the entry reported last was re-processed.
    #[error("re-processing stopped: the journal could not be read")]
    Journal(#[from] JournalError),
    /// The index could not be read or written; run it again once the index is healthy.
    #[error("re-processing stopped: the index could not be read or written")]
    Store(#[from] StoreError),
}

impl Replayer {
    /// Maps the entries `query` selects again with the mappings in force and
    /// re-files each in place (`Store::refile_entry`), while ingest and reads
    /// go on; `each` gets what changed per entry. Entries the index writer
    /// has not filed yet are left to it. Never journals, never acknowledges.
    ///
    /// # Errors
    /// The journal or the index failed; entries before it were re-processed.
    pub fn reprocess(
        &self,
        store: &Store,
        query: &crate::journal::query::Query,
        dry_run: bool,
        mut each: impl FnMut(Reprocessed),
    ) -> Result<Tally, ReprocessError> {
        let applied = store.applied_seq()?;
        let reader = JournalReader::open(&self.journal_dir)?;
        let mut tally = Tally { dry_run, ..Tally::default() };
        let summary = query.run(&reader, |entry| {
            let r = self.reprocess_one(store, &entry, applied, dry_run)?;
            tally.selected += 1;
            match r.outcome {
                "refiled" => tally.refiled += 1,
                "unchanged" => tally.unchanged += 1,
                _ => tally.skipped += 1,
            }
            each(r);
            Ok::<_, ReprocessError>(())
        })?;
        tally.damaged_ranges = summary.damage.len();
        Ok(tally)
    }

    fn reprocess_one(&self, store: &Store, e: &Entry, applied: u64, dry_run: bool) -> Result<Reprocessed, StoreError> {
        let mut r = Reprocessed {
            seq: e.seq,
            control_id: e.control_id.clone(),
            message_type: e.message_type.clone(),
            outcome: "unchanged",
            added: Vec::new(),
            changed: Vec::new(),
            removed: Vec::new(),
            why: None,
        };
        let skip = |mut r: Reprocessed, outcome, why: String| {
            r.outcome = outcome;
            r.why = Some(why);
            Ok(r)
        };
        if e.seq > applied {
            return skip(r, "not_yet_indexed", "the index writer files it with the mappings in force".into());
        }
        if !accepted(e, &self.policy) {
            return skip(r, "not_accepted", "rejected when received; replay never changes a verdict".into());
        }
        let mapped = match self.remap(&e.raw, e.seq) {
            Ok(m) => m,
            Err(Unmapped::Map(err)) => return skip(r, "no_longer_maps", map_error_text(&err)),
            Err(Unmapped::Parse) => {
                return skip(r, "no_longer_maps", "no longer parses with the current settings".into())
            }
        };
        match store.refile_entry(e.seq, mapped, dry_run)? {
            crate::store::Refiled::NotFiled => {
                skip(r, "not_filed", "goes into no record: ignored, parked or without a usable NHS number".into())
            }
            crate::store::Refiled::Objected => skip(r, "objected", "an objection stands for its record".into()),
            crate::store::Refiled::Filed { before, after } => {
                (r.added, r.changed, r.removed) = diff(&before, &after);
                if !(r.added.is_empty() && r.changed.is_empty() && r.removed.is_empty()) {
                    r.outcome = "refiled";
                }
                Ok(r)
            }
        }
    }
}

impl Replayer {
    /// The NHS number a journaled message names under the mappings in
    /// force (valid ones only), e.g. to audit a view of its raw bytes.
    pub fn nhs_number_of(&self, raw: &[u8], seq: u64) -> Option<String> {
        let mapped = self.remap(raw, seq).ok()?;
        let n = mapped.identity.nhs_number?;
        crate::hl7::nhs::NhsNumber::parse(n.trim()).ok().map(|n| n.as_str().to_string())
    }
}

type Versions = [(Vec<u8>, crate::record::Item)];

/// Items added, changed and removed between two sets of one message's
/// versions, matched by version key.
fn diff(before: &Versions, after: &Versions) -> (Vec<ItemChange>, Vec<ItemChange>, Vec<ItemChange>) {
    let fields = |i: &crate::record::Item| -> std::collections::BTreeMap<String, serde_json::Value> {
        i.fields.iter().map(|(k, v)| (k.to_string(), v.to_json())).collect()
    };
    let all = |i: &crate::record::Item| ItemChange { kind: i.kind, fields: fields(i).into_keys().collect() };
    let (mut added, mut changed, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for (k, new) in after {
        match before.iter().find(|(b, _)| b == k) {
            None => added.push(all(new)),
            Some((_, old)) => {
                let (o, n) = (fields(old), fields(new));
                let names: Vec<String> = o
                    .keys()
                    .chain(n.keys())
                    .filter(|f| o.get(*f) != n.get(*f))
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if !names.is_empty() || old.version != new.version {
                    changed.push(ItemChange { kind: new.kind, fields: names });
                }
            }
        }
    }
    for (k, old) in before {
        if !after.iter().any(|(a, _)| a == k) {
            removed.push(all(old));
        }
    }
    (added, changed, removed)
}

/// Why a selection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// A filter cannot be used; the text names it.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The index could not be read to find a patient's messages; try again, or `recordhub reindex` if it is damaged.
    #[error("the index could not be read to find the patient's messages")]
    Store(#[from] StoreError),
}

/// The query `filters` describe, with the patient selectors (`nhs`,
/// `local_id`) resolved to journal seqs through the index; both given:
/// the messages for both.
///
/// # Errors
/// A filter cannot be used, or the index cannot be read.
pub fn select(store: &Store, filters: &Filters) -> Result<Query, SelectError> {
    let mut q = filters.parse()?;
    for p in filters.patients()? {
        let seqs = match p {
            Patient::Nhs(n) => store.seqs_for_patient(&n)?,
            Patient::Local { organisation, id } => store.seqs_for_local_id(organisation.as_deref(), &id)?,
        };
        q.seqs = Some(match q.seqs.take() {
            Some(s) => s.intersection(&seqs).copied().collect(),
            None => seqs,
        });
    }
    Ok(q)
}
