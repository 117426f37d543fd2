//! Re-filing one journaled message in place, while the engine runs
//! (`recordhub replay`, `POST /admin/replay`, the live `reindex`), and
//! finding which journal seqs a patient's record was filed from
//! (`journal search --nhs / --local-id`).
//!
//! A message's versions are stored under message keys that carry its seq
//! (`keys.rs`), so "what message `seq` put into the record" is one prefix
//! scan, and which seqs filed a record is a scan reading only keys.
//! Re-filing deletes what the message filed and writes what the current
//! mappings produce; identity state (`xref`, `alias`, `parked`) and the
//! dedup table are left as they are: the message already linked its
//! identifiers when it was first filed, and it is not received again.

use std::collections::BTreeSet;

use super::{identity, keys, objection, sensitive, versions, Store, StoreError};
use crate::hl7::nhs::NhsNumber;
use crate::record::{Item, Mapped};

/// What [`Store::refile_entry`] found and did.
#[derive(Debug)]
pub enum Refiled {
    /// The message goes into no record with the identity state as it is
    /// (parked, or unindexed): nothing was written.
    NotFiled,
    /// An objection stands for the record it goes into: nothing was written.
    Objected,
    /// The message's versions in the record, before and after.
    Filed { before: Vec<(Vec<u8>, Item)>, after: Vec<(Vec<u8>, Item)> },
}

/// The journal seq of the message that filed an `items` key (0 for identifier items).
fn key_seq(key: &[u8]) -> Option<u64> {
    match keys::parse(key)? {
        keys::Stored::Message { seq } | keys::Stored::Version { seq } => Some(seq),
    }
}

impl Store {
    /// The journal seqs whose messages filed a version into the record of
    /// `nhs` (after merges). Identifier items, which come from the
    /// cross-reference rather than one message, are left out.
    ///
    /// # Errors
    /// sled could not be read.
    pub fn seqs_for_patient(&self, nhs: &NhsNumber) -> Result<BTreeSet<u64>, StoreError> {
        let t = self.t()?;
        let target = identity::resolve_alias(&t, nhs.as_str())?;
        let mut out = BTreeSet::new();
        for k in t.items.scan_prefix(keys::patient_prefix(&target)).keys() {
            if let Some(seq) = key_seq(&k?).filter(|&s| s > 0) {
                out.insert(seq);
            }
        }
        Ok(out)
    }

    /// The journal seqs for a local identifier: those filed into the record
    /// it is linked to, and the messages parked under it. `organisation`
    /// `None` matches the id under any organisation (a scan of the
    /// cross-reference).
    ///
    /// # Errors
    /// sled could not be read.
    pub fn seqs_for_local_id(&self, organisation: Option<&str>, id: &str) -> Result<BTreeSet<u64>, StoreError> {
        let t = self.t()?;
        let mut linked = BTreeSet::new();
        let mut out = BTreeSet::new();
        let wanted = |key: &[u8]| -> bool {
            let mut parts = key.split(|&b| b == keys::SEP);
            let (org, lid) = (parts.next().unwrap_or(b""), parts.next().unwrap_or(b""));
            lid == id.as_bytes() && organisation.is_none_or(|o| org == o.as_bytes())
        };
        let prefix = organisation.map(|o| keys::local_key(o, id)).unwrap_or_default();
        for kv in t.xref.scan_prefix(&prefix) {
            let (k, v) = kv?;
            if wanted(&k) {
                linked.insert(String::from_utf8_lossy(&v).into_owned());
            }
        }
        let prefix = organisation.map(|o| keys::parked_prefix(o, id)).unwrap_or_default();
        for k in t.parked.scan_prefix(&prefix).keys() {
            let k = k?;
            if let Some(seq) = k.len().checked_sub(8).and_then(|n| k[n..].try_into().ok()).map(u64::from_be_bytes) {
                if wanted(&k) {
                    out.insert(seq);
                }
            }
        }
        drop(t);
        for nhs in linked {
            if let Ok(nhs) = NhsNumber::parse(&nhs) {
                out.extend(self.seqs_for_patient(&nhs)?);
            }
        }
        Ok(out)
    }

    /// Files journal entry `seq`, mapped again as `mapped`, into the record
    /// it goes into now, replacing what it filed before: its versions the
    /// mapping no longer produces are deleted. With `dry_run`, only says
    /// what would change. Reads may see the message half re-filed for the
    /// moment it takes, as with a reload's re-evaluation.
    ///
    /// # Errors
    /// sled could not be read or written.
    pub fn refile_entry(&self, seq: u64, mapped: Mapped, dry_run: bool) -> Result<Refiled, StoreError> {
        let t = self.t()?;
        let Some((target, verified)) = identity::target_now(&t, &mapped)? else { return Ok(Refiled::NotFiled) };
        // As a restore does: no re-file into a record an objection has just emptied.
        let _serial = t.objection_lock.lock().unwrap_or_else(|e| e.into_inner());
        if objection::stands(&t, &target)? {
            return Ok(Refiled::Objected);
        }
        let mut before = Vec::new();
        let mut stored = Vec::new();
        for kv in t.items.scan_prefix(keys::message_prefix(&target, seq)) {
            let (k, v) = kv?;
            before.extend(versions::decode(&target, &v)?);
            stored.push(k);
        }
        let excluded: Vec<usize> = mapped.governed.excluded.iter().map(|(i, _)| *i).collect();
        let mut after = Vec::new();
        for (i, item) in mapped.items.iter().enumerate() {
            if excluded.contains(&i) || sensitive::sensitive(&t, &item.scopes)?.is_some() {
                continue;
            }
            after.push((keys::version_key(&target, item, u32::try_from(i).unwrap_or(u32::MAX)), item.clone()));
        }
        if !dry_run {
            // Written again whole: a chunk the mapping no longer fills goes.
            for k in stored {
                t.items.remove(k)?;
            }
            identity::write_for_restore(&t, &target, verified, mapped)?;
            // Filed now: no longer one of the messages operators are told were not.
            t.unindexed.remove(seq.to_be_bytes())?;
        }
        Ok(Refiled::Filed { before, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::IndexBatch;

    const NHS: &str = "9434765919";

    /// Message `seq` for NHS, verified, with one encounter per `(visit, ward)`.
    fn message(seq: u64, visits: &[(&str, &str)]) -> Mapped {
        let identity = crate::record::Identity {
            nhs_number: Some(NHS.into()),
            nhs_status: Some("01".into()),
            ..Default::default()
        };
        crate::store::testing::encounters(seq, identity, visits)
    }

    fn wards(store: &Store) -> Vec<String> {
        let nhs = NhsNumber::parse(NHS).unwrap();
        let record = store.record(&nhs).unwrap();
        record.iter().filter_map(|i| i.fields.get("ward").map(|w| format!("{}={}", i.id, w.to_json()))).collect()
    }

    /// A mapping fix that drops an item and changes another: the dropped
    /// version goes, the changed one is rewritten, other messages' stay; a
    /// dry run reports the same and writes nothing.
    #[test]
    fn refiling_replaces_what_the_message_filed_and_a_dry_run_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = IndexBatch::new();
        b.file(1, message(1, &[("V1", "W1"), ("V2", "W2")]));
        b.file(2, message(2, &[("V3", "W3")]));
        store.apply(b).unwrap();
        let nhs = NhsNumber::parse(NHS).unwrap();
        assert_eq!(store.seqs_for_patient(&nhs).unwrap().into_iter().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(wards(&store), [r#"V1="W1""#, r#"V2="W2""#, r#"V3="W3""#]);

        let fixed = message(1, &[("V1", "W9")]);
        let Refiled::Filed { before, after } = store.refile_entry(1, fixed.clone(), true).unwrap() else {
            panic!("filed")
        };
        assert_eq!((before.len(), after.len()), (2, 1));
        assert_eq!(wards(&store).len(), 3, "a dry run writes nothing");

        store.refile_entry(1, fixed, false).unwrap();
        assert_eq!(wards(&store), [r#"V1="W9""#, r#"V3="W3""#]);
        assert!(matches!(
            store.refile_entry(3, Mapped { ignored: true, ..message(3, &[]) }, false),
            Ok(Refiled::NotFiled)
        ));
    }

    /// A message of more items than one message key holds: filed in
    /// chunks, read back whole, and re-filed smaller without leaving a
    /// stale chunk behind; an objection counts every version it purges.
    #[test]
    fn a_message_larger_than_a_chunk_is_filed_read_and_refiled_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let n = versions::CHUNK_ITEMS * 2 + 3;
        let visits: Vec<(String, String)> = (0..n).map(|i| (format!("V{i:04}"), format!("W{i}"))).collect();
        let refs: Vec<(&str, &str)> = visits.iter().map(|(v, w)| (v.as_str(), w.as_str())).collect();
        let mut b = IndexBatch::new();
        b.file(1, message(1, &refs));
        store.apply(b).unwrap();
        let chunks = |store: &Store| store.t().unwrap().items.scan_prefix(keys::message_prefix(NHS, 1)).count();
        assert_eq!(chunks(&store), 3);
        let shown = wards(&store);
        assert_eq!(shown.len(), n);
        assert_eq!(shown[n - 1], format!("V{:04}=\"W{}\"", n - 1, n - 1));

        store.refile_entry(1, message(1, &refs[..5]), false).unwrap();
        assert_eq!(chunks(&store), 1, "the chunks the smaller message no longer fills are gone");
        assert_eq!(wards(&store).len(), 5);

        let nhs = NhsNumber::parse(NHS).unwrap();
        let objection = crate::store::Objection {
            reason: "test".into(),
            recorded_by: "officer".into(),
            source: "patient".into(),
            recorded_at_ms: 0,
        };
        let removed = store.add_objection(&nhs, objection).unwrap();
        assert_eq!(removed, 5, "each version counted, not each key");
    }

    #[test]
    fn the_seq_is_read_back_from_a_version_key_and_a_message_key() {
        let mut k = b"9434765919\0encounter\0RJ1\0V1\0".to_vec();
        keys::push_suffix(&mut k, &crate::record::Version::default(), 4711, 3);
        assert_eq!(key_seq(&k), Some(4711));
        assert_eq!(key_seq(&keys::message_key("9434765919", 4712, 1)), Some(4712));
        assert_eq!(key_seq(b"short"), None);
    }
}
