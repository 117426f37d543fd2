//! What must hold after a restart: every acknowledged control id in the
//! journal exactly once, seqs strictly increasing and never reused, and the
//! record index agreeing with the journal's accepted entries.
//!
//! Only the journal fields `seq`, `control_id` and `ack_code` are read, so the
//! checks hold across journal format versions.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::engine;
use crate::sender::{nhs_of, NHS};

/// One journal entry, as `recordhub journal` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub control_id: String,
    pub ack_code: String,
}

impl Entry {
    pub fn accepted(&self) -> bool {
        self.ack_code == "AA" || self.ack_code == "CA"
    }
}

pub fn entries(data: &Path) -> Vec<Entry> {
    engine::journal(data)
        .into_iter()
        .map(|j| Entry {
            // Not an entry: a damage report (a kill -9 may tear the tail,
            // never damage what was written) or a format this test predates.
            seq: j["seq"].as_u64().unwrap_or_else(|| panic!("journal listing line that is not an entry: {j}")),
            control_id: j["control_id"].as_str().unwrap_or_default().to_string(),
            ack_code: j["ack_code"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// Seqs strictly increasing (so none twice), every acknowledged id present
/// exactly once and as accepted, and every seq seen at an earlier check
/// still naming the same message (a seq is never reused for another one).
/// `seen` is updated with this listing.
pub fn journal(entries: &[Entry], acked: &HashMap<String, Vec<u8>>, seen: &mut BTreeMap<u64, String>) {
    for w in entries.windows(2) {
        assert!(w[0].seq < w[1].seq, "journal seqs must strictly increase: {:?} then {:?}", w[0], w[1]);
    }
    let mut by_id: HashMap<&str, Vec<&Entry>> = HashMap::new();
    for e in entries {
        by_id.entry(&e.control_id).or_default().push(e);
    }
    let mut lost = Vec::new();
    for id in acked.keys() {
        match by_id.get(id.as_str()).map(Vec::as_slice) {
            None | Some([]) => lost.push(id.clone()),
            Some([e]) => assert!(e.accepted(), "{id} was acknowledged as accepted but is journaled as {e:?}"),
            Some(many) => panic!("{id} was acknowledged once and is journaled {} times: {many:?}", many.len()),
        }
    }
    lost.sort();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages are not in the journal, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
    let now: HashMap<u64, &str> = entries.iter().map(|e| (e.seq, e.control_id.as_str())).collect();
    for (seq, id) in seen.iter() {
        match now.get(seq) {
            Some(now_id) => assert_eq!(now_id, id, "seq {seq} named {id} before the kill and {now_id} after it"),
            None => panic!("seq {seq} ({id}) was in the journal at an earlier check and is gone"),
        }
    }
    seen.extend(entries.iter().map(|e| (e.seq, e.control_id.clone())));
}

/// Encounter id → the journal seq its provenance names, from a record.
fn encounters(record: Option<serde_json::Value>) -> BTreeMap<String, u64> {
    let Some(record) = record else { return BTreeMap::new() };
    let items = record["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .filter(|i| i["kind"] == "encounter")
        .map(|i| {
            let id = i["id"].as_str().unwrap_or_default().to_string();
            let seq = i["provenance"]["seq"].as_u64().unwrap_or_else(|| panic!("item without provenance.seq: {i}"));
            (id, seq)
        })
        .collect()
}

/// The index agrees with the journal: each patient's encounters are exactly
/// the accepted journal entries for that patient, each pointing at the seq
/// that holds it. `source` is `--server URL` or `--data DIR`.
pub fn index(entries: &[Entry], source: &[&str]) {
    for nhs in NHS {
        let want: BTreeMap<String, u64> = entries
            .iter()
            .filter(|e| e.accepted() && nhs_of(&e.control_id) == nhs)
            .map(|e| (e.control_id.clone(), e.seq))
            .collect();
        let got = encounters(engine::record(nhs, source));
        let missing: Vec<_> = want.iter().filter(|(id, _)| !got.contains_key(*id)).take(10).collect();
        let extra: Vec<_> = got.iter().filter(|(id, _)| !want.contains_key(*id)).take(10).collect();
        let wrong: Vec<_> = want
            .iter()
            .filter_map(|(id, seq)| got.get(id).filter(|g| *g != seq).map(|g| (id, seq, g)))
            .take(10)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty() && wrong.is_empty(),
            "the index disagrees with the journal for {nhs} ({} accepted entries, {} encounters): \
             missing {missing:?}; not in the journal {extra:?}; wrong seq (id, journal, index) {wrong:?}",
            want.len(),
            got.len()
        );
    }
}
