//! The record index: canonical items keyed by NHS number, in sled.
//!
//! One key per message and patient, never one growing document per patient,
//! so indexing the 10,000th result for a patient costs what the first did
//! (DESIGN.md, "The index"). Keys:
//! - `items`: one key per message and patient (`keys.rs`, `versions.rs`)
//!   → that message's versions of its items, as MessagePack with named
//!   fields and each item's values in their packed form ([`ITEM_FORMAT`]). A read folds
//!   each item's versions into what the record shows (`fold.rs`). Filing a
//!   message again writes the same keys, so a replayed message changes nothing.
//! - `xref`: `organisation \0 local id` → NHS number; `alias`: merged NHS
//!   number → survivor; `parked`, `conflicts`: see `identity.rs`.
//! - `unindexed`: journal seq → why the message could not be filed (no NHS
//!   number, or one failing Modulus 11): kept for operators and `reindex`.
//! - `audit`: record views from before issue 11 (who, when, which NHS
//!   number), no longer written: copied once into `<data>/audit/` (`audit/migrate.rs`).

use super::{keys, Store, StoreError};
use crate::hl7::nhs::NhsNumber;
use crate::record::{Item, Mapped};

/// Version of the item encoding and key layout, kept in `meta`; an index
/// written in another is rebuilt from the journal at start-up. 3: one key per
/// item version (`keys.rs`); 4: one key per message and patient (`versions.rs`);
/// 5: fields stored packed, names once per item and list (`record/fields/stored.rs`).
pub const ITEM_FORMAT: u64 = 5;

pub(super) fn encode_item(item: &Item) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(item).map_err(|_| StoreError::Damaged { tree: "items" })
}

pub(super) fn decode_item(bytes: &[u8]) -> Result<Item, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|_| StoreError::Damaged { tree: "items" })
}

impl Store {
    /// Files one mapped message's items under `nhs` as they are, with no
    /// identity rules (benchmarks, tests).
    ///
    /// # Errors
    /// sled could not write.
    pub fn index(&self, nhs: &NhsNumber, mapped: &Mapped) -> Result<(), StoreError> {
        super::identity::write_all(&*self.t()?, nhs.as_str(), mapped.items.clone())
    }

    /// The NHS number filed for a local identifier (organisation, id),
    /// after merges.
    pub fn lookup_local(&self, organisation: &str, id: &str) -> Result<Option<String>, StoreError> {
        let t = self.t()?;
        match t.xref.get(keys::local_key(organisation, id))? {
            Some(v) => Ok(Some(super::identity::resolve_alias(&t, &String::from_utf8_lossy(&v))?)),
            None => Ok(None),
        }
    }

    /// Messages waiting for their patient's NHS number, oldest first.
    pub fn parked(&self) -> Result<Vec<super::ParkedEntry>, StoreError> {
        super::identity::parked(&*self.t()?)
    }

    /// Local identifiers that arrived with a second verified NHS number.
    pub fn conflicts(&self) -> Result<Vec<super::Conflict>, StoreError> {
        super::identity::conflicts(&*self.t()?)
    }

    /// Remembers that journal entry `seq` was accepted but not indexed.
    pub fn note_unindexed(&self, seq: u64, reason: &str) -> Result<(), StoreError> {
        self.t()?.unindexed.insert(seq.to_be_bytes(), reason.as_bytes())?;
        Ok(())
    }

    /// The raw values of the pre-chain `audit` tree (JSON), oldest first:
    /// read once, to copy them into the audit log (`audit/migrate.rs`).
    pub fn legacy_audit(&self) -> Result<Vec<sled::IVec>, StoreError> {
        self.t()?.audit.iter().values().collect::<Result<_, _>>().map_err(StoreError::from)
    }

    pub fn unindexed_count(&self) -> Result<usize, StoreError> {
        Ok(self.t()?.unindexed.len())
    }

    /// Drops what `reindex` rebuilds (items, xref, unindexed, dedup, meta),
    /// keeping the audit trail and the objection register with its log,
    /// which are not derived from the journal (do not add them here).
    pub fn clear_derived(&self) -> Result<(), StoreError> {
        let t = self.t()?;
        for tree in [
            &t.items,
            &t.xref,
            &t.unindexed,
            &t.dedup,
            &t.meta,
            &t.parked,
            &t.conflicts,
            &t.alias,
            &t.sensitive,
            &t.scoped,
            &t.names,
        ] {
            tree.clear()?;
        }
        t.any_sensitive.store(false, std::sync::atomic::Ordering::Relaxed);
        t.caches().clear();
        drop(t);
        self.item_format_current().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::record::{Kind, Provenance};

    #[test]
    fn items_round_trip_through_the_stored_encoding_and_an_old_index_is_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.item_format_current().unwrap(), "a new index is current");
        let fields = [
            ("value", serde_json::json!(11.2)),
            ("count", serde_json::json!(-3)),
            ("deleted", serde_json::Value::Null),
            ("observations", serde_json::json!([{"code": "HB", "value": "135"}, {"code": "WBC"}])),
            ("text", serde_json::json!("Rash\nAnaphylaxis \"quoted\" é")),
        ];
        let provenance = Arc::new(Provenance {
            sending_app: "WINPATH".into(),
            sending_facility: "RAL".into(),
            control_id: "C1".into(),
            message_type: "ORU^R01".into(),
            event_time: None,
            seq: 7,
        });
        let item = Item {
            kind: Kind::Result,
            id: "ACC1^FBC".into(),
            fields: fields.into_iter().collect(),
            provenance,
            version: Default::default(),
            scopes: Vec::new(),
        };
        let nhs = NhsNumber::parse("9434765919").unwrap();
        let mapped = Mapped {
            identity: Default::default(),
            items: vec![item.clone()],
            warnings: vec![],
            seq_refs: vec![],
            ignored: false,
            governed: Default::default(),
        };
        store.index(&nhs, &mapped).unwrap();
        let history = store.history(&nhs).unwrap();
        assert_eq!(history[0].versions[0].fields, item.fields, "stored as mapped, null included");
        let mut shown = item.clone();
        shown.fields = item.fields.iter().filter(|(k, _)| *k != "deleted").map(|(k, v)| (k, v.to_json())).collect();
        assert_eq!(store.record(&nhs).unwrap(), vec![shown], "the record leaves a removed value out");

        // An index written before the format key existed (applied_seq > 0, no key).
        store.set_applied_seq(5).unwrap();
        store.t().unwrap().meta.remove(super::super::ITEM_FORMAT).unwrap();
        assert!(!store.item_format_current().unwrap());
        store.clear_derived().unwrap();
        assert!(store.item_format_current().unwrap(), "cleared and marked current");
        assert!(store.record(&nhs).unwrap().is_empty());
    }
}
