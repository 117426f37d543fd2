//! Reading a patient's record: one prefix scan, each item's versions folded
//! (`fold.rs`) into what the record shows, or listed with their fates for
//! the history view.

use std::sync::Arc;

use serde::Serialize;

use super::fold::{fold, Folded, VersionState};
use super::index::decode_item;
use super::{identity, keys, versions, Store, StoreError};
use crate::hl7::nhs::NhsNumber;
use crate::record::{Effect, Fields, Item, Kind, Provenance};

/// Every version of one item, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct ItemHistory {
    pub kind: Kind,
    pub id: String,
    /// The sending facility that scopes the id (an identifier's organisation).
    pub source: String,
    /// Whether the record shows the item.
    pub shown: bool,
    /// Why not, when a version hid it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden: Option<HiddenBy>,
    /// In the order that decides the current state.
    pub versions: Vec<VersionEntry>,
}

/// Why an item is hidden, and which message said so.
#[derive(Debug, Clone, Serialize)]
pub struct HiddenBy {
    pub reason: String,
    pub by: Arc<Provenance>,
}

/// One message's version of an item.
#[derive(Debug, Clone, Serialize)]
pub struct VersionEntry {
    /// `shown`, `undone`, `undoes`, `hides`.
    pub state: &'static str,
    /// The cancel that undid this version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undone_by: Option<Arc<Provenance>>,
    /// The clinical time that orders it (UTC ms), and its report rank.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<i64>,
    #[serde(skip_serializing_if = "is_zero")]
    pub rank: u8,
    pub effect: Effect,
    pub fields: Fields,
    pub provenance: Arc<Provenance>,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl Store {
    /// What the record of `nhs` shows: each item's current state, in key
    /// order (kind, source, id); hidden items left out. A merged NHS number
    /// reads as its survivor.
    pub fn record(&self, nhs: &NhsNumber) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        self.each_item(nhs, |versions| {
            if let Some(item) = fold(&versions).current {
                out.push(item);
            }
        })?;
        Ok(out)
    }

    /// Every version of every item of `nhs`, hidden ones included.
    pub fn history(&self, nhs: &NhsNumber) -> Result<Vec<ItemHistory>, StoreError> {
        let mut out = Vec::new();
        self.each_item(nhs, |versions| out.push(history_of(versions)))?;
        Ok(out)
    }

    /// Calls `f` with each item's versions, in key order.
    fn each_item(&self, nhs: &NhsNumber, mut f: impl FnMut(Vec<Item>)) -> Result<(), StoreError> {
        let t = self.t()?;
        let nhs = identity::resolve_alias(&t, nhs.as_str())?;
        let mut all: Vec<(Vec<u8>, Item)> = Vec::new();
        for kv in t.items.scan_prefix(keys::patient_prefix(&nhs)) {
            let (k, v) = kv?;
            match keys::parse(&k).ok_or(StoreError::Damaged { tree: "items" })? {
                keys::Stored::Message { .. } => all.extend(versions::decode(&nhs, &v)?),
                keys::Stored::Version { .. } => all.push((k.to_vec(), decode_item(&v)?)),
            }
        }
        drop(t);
        // Message keys sort by seq: put every version where its own key sorts.
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut group: Vec<Item> = Vec::new();
        let mut group_key: Vec<u8> = Vec::new();
        for (k, item) in all {
            let item_key = keys::split_version(&k).ok_or(StoreError::Damaged { tree: "items" })?;
            if item_key != group_key.as_slice() {
                if !group.is_empty() {
                    f(std::mem::take(&mut group));
                }
                group_key.clear();
                group_key.extend_from_slice(item_key);
            }
            group.push(item);
        }
        if !group.is_empty() {
            f(group);
        }
        Ok(())
    }
}

fn history_of(versions: Vec<Item>) -> ItemHistory {
    let Folded { hidden, states, current } = fold(&versions);
    let first = &versions[0];
    let source = match first.kind {
        Kind::Identifier => first.fields.get("organisation").map(|f| f.to_json()),
        _ => None,
    }
    .and_then(|j| j.as_str().map(str::to_string))
    .unwrap_or_else(|| first.provenance.sending_facility.clone());
    let (kind, id) = (first.kind, first.id.clone());
    let versions = versions
        .into_iter()
        .zip(states)
        .map(|(v, state)| {
            let (state, undone_by) = match state {
                VersionState::Shown => ("shown", None),
                VersionState::Undone { by } => ("undone", Some(by)),
                VersionState::Undoes => ("undoes", None),
                VersionState::Hides => ("hides", None),
            };
            VersionEntry {
                state,
                undone_by,
                time_ms: v.version.time_ms,
                rank: v.version.rank,
                effect: v.version.effect,
                fields: v.fields,
                provenance: v.provenance,
            }
        })
        .collect();
    ItemHistory {
        kind,
        id,
        source,
        shown: current.is_some(),
        hidden: hidden.map(|h| HiddenBy { reason: h.reason, by: h.by }),
        versions,
    }
}
