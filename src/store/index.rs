//! The record index: canonical items keyed by NHS number, in sled.
//!
//! One key per item, never one growing document per patient, so indexing the
//! 10,000th result for a patient costs what the first did (DESIGN.md, "The
//! index"). Keys:
//! - `items`:  `nhs \0 kind \0 sending facility \0 natural id` → the item,
//!   as MessagePack with named fields ([`ITEM_FORMAT`]): half the bytes of
//!   JSON and no string escaping, which was a seventh of the index writer's
//!   time.
//!   The natural id is scoped by the sending facility (a visit number is only
//!   unique within its trust), and writing it again is an upsert, so a
//!   replayed message changes nothing.
//! - `xref`:   `organisation \0 local id` → NHS number.
//! - `unindexed`: journal seq → why the message could not be filed (no NHS
//!   number, or one failing Modulus 11): kept for operators and `reindex`.
//! - `audit`:  time-ordered record views (who, when, which NHS number).

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::hl7::nhs::NhsNumber;
use crate::record::{Item, Mapped};

const SEP: u8 = 0;

/// Version of the item encoding, kept in `meta`; an index written in another
/// encoding is rebuilt from the journal at start-up.
pub const ITEM_FORMAT: u64 = 2;

pub(super) fn encode_item(item: &Item) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(item).map_err(|_| StoreError::Damaged { tree: "items" })
}

fn decode_item(bytes: &[u8]) -> Result<Item, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|_| StoreError::Damaged { tree: "items" })
}

pub(super) fn item_key(nhs: &str, item: &Item) -> Vec<u8> {
    let kind = item.kind.as_str();
    let fac = &item.provenance.sending_facility;
    let mut k = Vec::with_capacity(nhs.len() + kind.len() + fac.len() + item.id.len() + 3);
    for (i, part) in [nhs, kind, fac.as_str(), item.id.as_str()].into_iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend_from_slice(part.as_bytes());
    }
    k
}

/// `organisation \0 local id`.
pub(super) fn xref_key(organisation: &str, id: &str) -> Vec<u8> {
    let mut k = organisation.as_bytes().to_vec();
    k.push(SEP);
    k.extend_from_slice(id.as_bytes());
    k
}

fn prefix(nhs: &str) -> Vec<u8> {
    let mut p = nhs.as_bytes().to_vec();
    p.push(SEP);
    p
}

/// One view of a record, as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub user: String,
    pub nhs_number: String,
    /// `read` for a record view.
    pub action: String,
    /// `http` or `cli`.
    pub via: String,
    /// How many items were shown (0 when the patient is unknown).
    pub items: usize,
}

impl Store {
    /// Files one mapped message on its own (benchmarks, tests): a batch of one.
    ///
    /// # Errors
    /// sled could not write.
    pub fn index(&self, nhs: &NhsNumber, mapped: &Mapped) -> Result<(), StoreError> {
        super::batch::file_items(&*self.t()?, nhs, mapped, &mut || {})
    }

    /// Every item held for `nhs`, in key order (kind, source, id).
    pub fn record(&self, nhs: &NhsNumber) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        for kv in self.t()?.items.scan_prefix(prefix(nhs.as_str())) {
            let (_, v) = kv?;
            out.push(decode_item(&v)?);
        }
        Ok(out)
    }

    /// The NHS number filed for a local identifier (organisation, id).
    pub fn lookup_local(&self, organisation: &str, id: &str) -> Result<Option<String>, StoreError> {
        let v = self.t()?.xref.get(xref_key(organisation, id))?;
        Ok(v.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Remembers that journal entry `seq` was accepted but not indexed.
    pub fn note_unindexed(&self, seq: u64, reason: &str) -> Result<(), StoreError> {
        self.t()?.unindexed.insert(seq.to_be_bytes(), reason.as_bytes())?;
        Ok(())
    }

    pub fn unindexed_count(&self) -> Result<usize, StoreError> {
        Ok(self.t()?.unindexed.len())
    }

    /// Appends an audit event and flushes it: a view is recorded durably
    /// before the record is returned.
    pub fn audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let t = self.t()?;
        let id = t.db.generate_id()?;
        let mut k = event.at_ms.to_be_bytes().to_vec();
        k.extend_from_slice(&id.to_be_bytes());
        let v = serde_json::to_vec(event).map_err(|_| StoreError::Damaged { tree: "audit" })?;
        t.audit.insert(k, v)?;
        t.audit.flush()?;
        Ok(())
    }

    /// Every audit event, oldest first.
    pub fn audit_events(&self) -> Result<Vec<AuditEvent>, StoreError> {
        let mut out = Vec::new();
        for kv in self.t()?.audit.iter() {
            let (_, v) = kv?;
            out.push(serde_json::from_slice(&v).map_err(|_| StoreError::Damaged { tree: "audit" })?);
        }
        Ok(out)
    }

    /// Drops what `reindex` rebuilds (items, xref, unindexed, dedup, meta),
    /// keeping the audit trail, which is not derived from the journal.
    pub fn clear_derived(&self) -> Result<(), StoreError> {
        let t = self.t()?;
        for tree in [&t.items, &t.xref, &t.unindexed, &t.dedup, &t.meta] {
            tree.clear()?;
        }
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
        };
        let nhs = NhsNumber::parse("9434765919").unwrap();
        let mapped = Mapped {
            identity: Default::default(),
            items: vec![item.clone()],
            warnings: vec![],
            seq_refs: vec![],
            ignored: false,
        };
        store.index(&nhs, &mapped).unwrap();
        assert_eq!(store.record(&nhs).unwrap(), vec![item]);

        // An index written before the format key existed (applied_seq > 0, no key).
        store.set_applied_seq(5).unwrap();
        store.t().unwrap().meta.remove(super::super::ITEM_FORMAT).unwrap();
        assert!(!store.item_format_current().unwrap());
        store.clear_derived().unwrap();
        assert!(store.item_format_current().unwrap(), "cleared and marked current");
        assert!(store.record(&nhs).unwrap().is_empty());
    }
}
