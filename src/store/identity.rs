//! Whose record a message's items go into: decided when the index writer
//! files it, in journal order, because the answer depends on what earlier
//! messages said (the cross-reference, merges).
//!
//! - A **verified** NHS number (PID-32 `01`/`NSTS01`, or empty from a
//!   sender the mapping trusts) files the items under it and links the
//!   message's local identifiers to it in `xref`. A local id already linked
//!   to another verified NHS number is a **conflict**: recorded, logged,
//!   never silently re-linked.
//! - An unverified NHS number, or none, files under the NHS number the
//!   cross-reference knows for one of the local ids; else the message is
//!   **parked** under its first local id, and filed (no re-send) as soon as
//!   a message links that id to a verified NHS number.
//! - A 999 (test range) NHS number is filed only from a `T`/`D` message.
//! - MRG-1 (A40/A34 merges, A47 changes): prior local ids are re-linked to
//!   this patient (parked messages follow); a prior NHS number's versions
//!   move here and `alias` sends later messages with it here too.

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::index::encode_item;
use super::keys::{self, SEP};
use super::{StoreError, Trees};
use crate::hl7::nhs::NhsNumber;
use crate::record::{Fields, Item, Kind, LocalId, Mapped, Provenance, Version};

/// How many merges a chain of `alias` entries may follow.
const MAX_ALIAS_HOPS: usize = 16;

/// A message waiting for its patient's NHS number (`parked` tree).
#[derive(Serialize, Deserialize)]
struct Parked {
    why: String,
    items: Vec<Item>,
    /// Items the govern stage excluded (by index in `items`).
    #[serde(default)]
    excluded: Vec<usize>,
}

/// One parked message, as `recordhub parked` lists it: no patient data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParkedEntry {
    pub seq: u64,
    pub sending_app: String,
    pub sending_facility: String,
    pub control_id: String,
    pub message_type: String,
    pub why: String,
}

/// A local identifier that arrived with a second verified NHS number: no
/// patient data, the journal entry (`seq`) has the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    pub seq: u64,
    pub sending_app: String,
    pub sending_facility: String,
    pub control_id: String,
    /// The local identifier's assigning organisation (CX.4).
    pub organisation: String,
    pub why: String,
}

fn is_verified(mapped: &Mapped) -> bool {
    match mapped.identity.nhs_status.as_deref().map(str::trim) {
        None | Some("") => mapped.identity.trust_unstated_status,
        Some(s) => s == "01" || s == "NSTS01",
    }
}

fn is_test_message(mapped: &Mapped) -> bool {
    matches!(mapped.identity.processing_id.as_deref().map(str::trim), Some("T" | "D"))
}

/// Files one accepted message. `Some(reason)` when it cannot be filed at
/// all (kept in the journal; `unindexed` says why).
pub(super) fn file_message(
    t: &Trees,
    seq: u64,
    mapped: Mapped,
    after_each: &mut impl FnMut(),
) -> Result<Option<&'static str>, StoreError> {
    // Before anything else: a parked or unfiled message's visit is sensitive too.
    // A message a rule excludes whole still links and merges identities
    // (below); all its items are in `excluded`, so none is written.
    super::sensitive::register(t, &mapped.governed.sensitive_scopes)?;
    if mapped.ignored {
        return Ok(None);
    }
    let excluded: Vec<usize> = mapped.governed.excluded.iter().map(|(i, _)| *i).collect();
    let stated = mapped.identity.nhs_number.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let nhs = match stated.map(NhsNumber::parse) {
        Some(Err(_)) => return Ok(Some("NHS number fails the Modulus 11 check")),
        Some(Ok(n)) if n.as_str().starts_with("999") && !is_test_message(&mapped) => {
            return Ok(Some("test-range (999) NHS number in a message not marked test (MSH-11 T or D)"));
        }
        Some(Ok(n)) => Some(n),
        None => None,
    };
    let prov = mapped.items.first().map(|i| i.provenance.clone());
    if let Some(n) = nhs.filter(|_| is_verified(&mapped)) {
        let target = resolve_alias(t, n.as_str())?;
        for lid in &mapped.identity.local_ids {
            link(t, seq, prov.as_deref(), lid, &target, false)?;
        }
        for lid in &mapped.identity.prior_local_ids {
            link(t, seq, prov.as_deref(), lid, &target, true)?;
        }
        if let Some(Ok(prior)) = mapped.identity.prior_nhs_number.as_deref().map(str::trim).map(NhsNumber::parse) {
            merge_nhs(t, prior.as_str(), &target)?;
        }
        // A message whose every item a rule keeps out (a result in a
        // sensitive visit) must not show its provenance on the identifiers.
        let withheld = all_withheld(t, &mapped, &excluded)?;
        if prov.is_some() && !withheld {
            write_identifiers(t, &target, &mapped)?;
        }
        write_items(t, &target, mapped.items, &excluded, after_each)?;
        return Ok(None);
    }
    for lid in &mapped.identity.local_ids {
        if let Some(known) = t.xref.get(keys::local_key(&lid.organisation, &lid.id))? {
            let target = resolve_alias(t, &String::from_utf8_lossy(&known))?;
            write_items(t, &target, mapped.items, &excluded, after_each)?;
            return Ok(None);
        }
    }
    let why = match nhs {
        Some(_) => "NHS number not verified (PID-32); waiting for a verified one for this local identifier",
        None => "no NHS number; waiting for one for this local identifier",
    };
    match mapped.identity.local_ids.first() {
        Some(lid) if !mapped.items.is_empty() => {
            let parked = Parked { why: why.to_string(), items: mapped.items, excluded };
            let v = rmp_serde::to_vec_named(&parked).map_err(|_| StoreError::Damaged { tree: "parked" })?;
            t.parked.insert(keys::parked_key(&lid.organisation, &lid.id, seq), v)?;
            t.maybe_parked.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(None)
        }
        Some(_) => Ok(None),
        None if nhs.is_some() => Ok(Some("NHS number not verified (PID-32) and no local identifier")),
        None => Ok(Some("no NHS number and no local identifier")),
    }
}

/// Whether every item of the message is excluded or in a sensitive scope.
fn all_withheld(t: &Trees, mapped: &Mapped, excluded: &[usize]) -> Result<bool, StoreError> {
    for (i, item) in mapped.items.iter().enumerate() {
        if !excluded.contains(&i) && super::sensitive::sensitive(t, &item.scopes)?.is_none() {
            return Ok(false);
        }
    }
    Ok(!mapped.items.is_empty())
}

/// The NHS number whose record `nhs` now is (after merges).
pub(super) fn resolve_alias(t: &Trees, nhs: &str) -> Result<String, StoreError> {
    let mut at = nhs.to_string();
    // Nearly always no NHS number was ever merged: skip the lookup.
    if !t.maybe_alias.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(at);
    }
    for _ in 0..MAX_ALIAS_HOPS {
        match t.alias.get(at.as_bytes())? {
            Some(next) => at = String::from_utf8_lossy(&next).into_owned(),
            None => break,
        }
    }
    Ok(at)
}

/// Links a local id to `target`; `force` for MRG-1 (the sender says the id
/// now means this patient). Files what was parked under it.
fn link(
    t: &Trees,
    seq: u64,
    prov: Option<&Provenance>,
    lid: &LocalId,
    target: &str,
    force: bool,
) -> Result<(), StoreError> {
    let key = keys::local_key(&lid.organisation, &lid.id);
    // The common case, a link already made: no sled lookup.
    if !force && t.caches().links.get(&key).is_some_and(|n| **n == *target) {
        return unpark(t, lid, target);
    }
    match t.xref.get(&key)? {
        Some(known) if !force && resolve_alias(t, &String::from_utf8_lossy(&known))? != target => {
            let why = "local identifier already linked to another verified NHS number; not re-linked";
            tracing::warn!(seq, organisation = %lid.organisation, why, "identity conflict");
            let c = Conflict {
                seq,
                sending_app: prov.map(|p| p.sending_app.clone()).unwrap_or_default(),
                sending_facility: prov.map(|p| p.sending_facility.clone()).unwrap_or_default(),
                control_id: prov.map(|p| p.control_id.clone()).unwrap_or_default(),
                organisation: lid.organisation.clone(),
                why: why.to_string(),
            };
            let mut k = seq.to_be_bytes().to_vec();
            k.extend_from_slice(&key);
            let v = serde_json::to_vec(&c).map_err(|_| StoreError::Damaged { tree: "conflicts" })?;
            t.conflicts.insert(k, v)?;
            return Ok(());
        }
        Some(known) if known.as_ref() == target.as_bytes() => t.caches().remember_link(key, target),
        _ => {
            t.xref.insert(&key, target.as_bytes())?;
            t.caches().remember_link(key, target);
        }
    }
    unpark(t, lid, target)
}

/// Files every message parked under `lid` into `target`'s record.
fn unpark(t: &Trees, lid: &LocalId, target: &str) -> Result<(), StoreError> {
    // Nearly always nothing is parked: skip the scan (a tenth of filing an ADT).
    if !t.maybe_parked.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    for kv in t.parked.scan_prefix(keys::parked_prefix(&lid.organisation, &lid.id)) {
        let (k, v) = kv?;
        let parked: Parked = rmp_serde::from_slice(&v).map_err(|_| StoreError::Damaged { tree: "parked" })?;
        write_items(t, target, parked.items, &parked.excluded, &mut || {})?;
        t.parked.remove(k)?;
    }
    Ok(())
}

/// Moves every version filed under `prior` to `target` and makes `prior`
/// an alias of it.
fn merge_nhs(t: &Trees, prior: &str, target: &str) -> Result<(), StoreError> {
    if prior == target || resolve_alias(t, target)? == prior {
        // Merging a record into itself, or back into what merged into it.
        return Ok(());
    }
    t.alias.insert(prior.as_bytes(), target.as_bytes())?;
    t.maybe_alias.store(true, std::sync::atomic::Ordering::Relaxed);
    // One patient now: an objection on either number covers both, and into
    // a record under objection the versions are not moved, only deleted.
    super::objection::follow_merge(t, prior, target)?;
    let objected = super::objection::stands(t, target)?;
    for kv in t.items.scan_prefix(keys::patient_prefix(prior)) {
        let (k, v) = kv?;
        if let Some(moved) = keys::rekey(&k, prior, target).filter(|_| !objected) {
            t.items.insert(moved, v)?;
        }
        t.items.remove(k)?;
    }
    // Identifier items moved: written again when next carried.
    t.caches().clear();
    Ok(())
}

/// Writes one version per item under `nhs`, freeing each once written (a
/// message of 340,000 items is never held twice). An item the govern stage
/// `excluded` (by index), or in a sensitive scope, is not written, and a
/// version of it filed under older rules is deleted (`sensitive.rs`).
fn write_items(
    t: &Trees,
    nhs: &str,
    items: Vec<Item>,
    excluded: &[usize],
    after_each: &mut impl FnMut(),
) -> Result<(), StoreError> {
    // A standing objection: nothing is filed (the journal keeps the message;
    // withdrawing the objection restores it, `objection.rs`).
    if super::objection::stands(t, nhs)? {
        return Ok(());
    }
    for (i, item) in items.into_iter().enumerate() {
        let key = keys::version_key(nhs, &item, u32::try_from(i).unwrap_or(u32::MAX));
        if excluded.contains(&i) || super::sensitive::sensitive(t, &item.scopes)?.is_some() {
            t.items.remove(key)?;
        } else {
            // Stored with its scopes: a scope that becomes sensitive later
            // finds its versions by them (`sensitive.rs`).
            t.items.insert(&key, encode_item(&item)?)?;
            super::sensitive::note(t, &item.scopes, nhs)?;
            super::names::note(t, nhs, &item, u32::try_from(i).unwrap_or(u32::MAX))?;
        }
        drop(item);
        after_each();
    }
    Ok(())
}

/// Writes `item` (the `index`th of its message) as a version under `nhs`.
pub(super) fn write_item(t: &Trees, nhs: &str, item: &Item, index: usize) -> Result<(), StoreError> {
    let index = u32::try_from(index).unwrap_or(u32::MAX);
    t.items.insert(keys::version_key(nhs, item, index), encode_item(item)?)?;
    super::names::note(t, nhs, item, index)
}

/// The patient's local identifiers as record items (kind `identifier`),
/// scoped by their organisation rather than by the sender, so the same
/// hospital number sent by the PAS and the lab is one item. They come from
/// the cross-reference, not from one message, so their provenance names it
/// (`recordhub`/`xref`, the organisation) and their bytes do not depend on
/// which message arrived first. Every ADT carries the hospital number:
/// `ids_written` remembers which items are already written, so the common
/// case costs no sled operation at all.
fn write_identifiers(t: &Trees, nhs: &str, mapped: &Mapped) -> Result<(), StoreError> {
    if super::objection::stands(t, nhs)? {
        return Ok(());
    }
    // MRG-1's ids too: a merged-away hospital number still means this patient.
    for lid in mapped.identity.local_ids.iter().chain(&mapped.identity.prior_local_ids) {
        let mut k = Vec::new();
        for part in [nhs, Kind::Identifier.as_str(), lid.organisation.as_str(), lid.id.as_str()] {
            k.extend_from_slice(part.as_bytes());
            k.push(SEP);
        }
        keys::push_suffix(&mut k, &Version::default(), 0, 0);
        if t.caches().ids_written.contains(&k) {
            continue;
        }
        let fields: Fields = [
            ("organisation", serde_json::Value::String(lid.organisation.clone())),
            ("id", serde_json::Value::String(lid.id.clone())),
        ]
        .into_iter()
        .collect();
        let provenance = Arc::new(Provenance {
            sending_app: "recordhub".into(),
            sending_facility: lid.organisation.clone(),
            control_id: String::new(),
            message_type: "xref".into(),
            event_time: None,
            seq: 0,
        });
        let item = Item {
            kind: Kind::Identifier,
            id: lid.id.clone(),
            fields,
            provenance,
            version: Version::default(),
            scopes: Vec::new(),
        };
        t.items.insert(&k, encode_item(&item)?)?;
        t.caches().remember_id(k);
    }
    Ok(())
}

/// The record `mapped` goes into with the identity state as it is now, and
/// whether its NHS number was verified; `None` when it would not be filed
/// (unindexed or parked). Changes nothing: restoring a record after an
/// objection is withdrawn (`objection.rs`).
pub(super) fn target_now(t: &Trees, mapped: &Mapped) -> Result<Option<(String, bool)>, StoreError> {
    if mapped.ignored {
        return Ok(None);
    }
    let stated = mapped.identity.nhs_number.as_deref().map(str::trim).filter(|n| !n.is_empty());
    match stated.map(NhsNumber::parse) {
        Some(Err(_)) => return Ok(None),
        Some(Ok(n)) if n.as_str().starts_with("999") && !is_test_message(mapped) => return Ok(None),
        Some(Ok(n)) if is_verified(mapped) => return Ok(Some((resolve_alias(t, n.as_str())?, true))),
        _ => {}
    }
    for lid in &mapped.identity.local_ids {
        if let Some(known) = t.xref.get(keys::local_key(&lid.organisation, &lid.id))? {
            return Ok(Some((resolve_alias(t, &String::from_utf8_lossy(&known))?, false)));
        }
    }
    Ok(None)
}

/// Writes a message's items (and, for a verified NHS number, its
/// identifiers) under `target`, as [`file_message`] does, touching no
/// identity state.
pub(super) fn write_for_restore(t: &Trees, target: &str, verified: bool, mapped: Mapped) -> Result<(), StoreError> {
    super::sensitive::register(t, &mapped.governed.sensitive_scopes)?;
    let excluded: Vec<usize> = mapped.governed.excluded.iter().map(|(i, _)| *i).collect();
    let withheld = all_withheld(t, &mapped, &excluded)?;
    if !mapped.items.is_empty() && verified && !withheld {
        write_identifiers(t, target, &mapped)?;
    }
    write_items(t, target, mapped.items, &excluded, &mut || {})
}

/// Every parked message, oldest first.
pub(super) fn parked(t: &Trees) -> Result<Vec<ParkedEntry>, StoreError> {
    let mut out = Vec::new();
    for kv in t.parked.iter() {
        let (k, v) = kv?;
        let parked: Parked = rmp_serde::from_slice(&v).map_err(|_| StoreError::Damaged { tree: "parked" })?;
        let seq = k.len().checked_sub(8).and_then(|n| k[n..].try_into().ok()).map_or(0, u64::from_be_bytes);
        let Some(p) = parked.items.first().map(|i| i.provenance.clone()) else { continue };
        out.push(ParkedEntry {
            seq,
            sending_app: p.sending_app.clone(),
            sending_facility: p.sending_facility.clone(),
            control_id: p.control_id.clone(),
            message_type: p.message_type.clone(),
            why: parked.why,
        });
    }
    out.sort_by_key(|e| e.seq);
    Ok(out)
}

/// Every recorded identity conflict, oldest first.
pub(super) fn conflicts(t: &Trees) -> Result<Vec<Conflict>, StoreError> {
    let mut out = Vec::new();
    for kv in t.conflicts.iter() {
        let (_, v) = kv?;
        out.push(serde_json::from_slice(&v).map_err(|_| StoreError::Damaged { tree: "conflicts" })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{IndexBatch, Store};

    const NHS_A: &str = "9434765919";
    const NHS_B: &str = "9434765870";

    fn message(seq: u64, nhs: Option<&str>, status: Option<&str>, local: &[(&str, &str)]) -> Mapped {
        let provenance = Arc::new(Provenance {
            sending_app: "PAS".into(),
            sending_facility: "RAL".into(),
            control_id: format!("C{seq}"),
            message_type: "ADT^A08".into(),
            event_time: None,
            seq,
        });
        let fields: Fields = [("ward", serde_json::json!(format!("W{seq}")))].into_iter().collect();
        let item = Item {
            kind: Kind::Encounter,
            id: format!("V{seq}"),
            fields,
            provenance,
            version: Version::default(),
            scopes: Vec::new(),
        };
        let mut identity = crate::record::Identity {
            nhs_number: nhs.map(str::to_string),
            nhs_status: status.map(str::to_string),
            ..Default::default()
        };
        identity.local_ids =
            local.iter().map(|(o, i)| LocalId { organisation: o.to_string(), id: i.to_string() }).collect();
        Mapped {
            identity,
            items: vec![item],
            warnings: vec![],
            seq_refs: vec![],
            ignored: false,
            governed: Default::default(),
        }
    }

    fn file_all(store: &Store, messages: Vec<Mapped>) {
        let mut batch = IndexBatch::new();
        for m in messages {
            let seq = m.items[0].provenance.seq;
            batch.file(seq, m);
        }
        store.apply(batch).unwrap();
    }

    fn encounters(store: &Store, nhs: &str) -> Vec<String> {
        let nhs = NhsNumber::parse(nhs).unwrap();
        store.record(&nhs).unwrap().into_iter().filter(|i| i.kind == Kind::Encounter).map(|i| i.id).collect()
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_verified_nhs_number_files_and_links_the_hospital_number() {
        let (_d, store) = open();
        file_all(&store, vec![message(1, Some(NHS_A), Some("NSTS01"), &[("RAL", "H1")])]);
        assert_eq!(encounters(&store, NHS_A), ["V1"]);
        assert_eq!(store.lookup_local("RAL", "H1").unwrap().as_deref(), Some(NHS_A));
        let ids: Vec<_> = store.record(&NhsNumber::parse(NHS_A).unwrap()).unwrap();
        assert!(ids.iter().any(|i| i.kind == Kind::Identifier && i.id == "H1"), "the record shows the hospital number");
    }

    #[test]
    fn a_local_only_message_parks_until_its_nhs_number_is_known_then_files_without_a_resend() {
        let (_d, store) = open();
        file_all(&store, vec![message(1, None, None, &[("RAL", "H1")])]);
        assert_eq!(store.parked().unwrap().len(), 1);
        assert_eq!(store.parked().unwrap()[0].control_id, "C1");
        file_all(&store, vec![message(2, Some(NHS_A), Some("01"), &[("RAL", "H1")])]);
        assert!(store.parked().unwrap().is_empty());
        assert_eq!(encounters(&store, NHS_A), ["V1", "V2"]);
        // Known now: a later local-only message files straight away.
        file_all(&store, vec![message(3, None, None, &[("RAL", "H1")])]);
        assert_eq!(encounters(&store, NHS_A), ["V1", "V2", "V3"]);
    }

    #[test]
    fn an_unverified_nhs_number_parks_and_is_never_linked() {
        let (_d, store) = open();
        file_all(&store, vec![message(1, Some(NHS_A), Some("NSTS02"), &[("RAL", "H1")])]);
        assert!(encounters(&store, NHS_A).is_empty());
        assert_eq!(store.lookup_local("RAL", "H1").unwrap(), None, "an unverified number links nothing");
        assert!(store.parked().unwrap()[0].why.contains("not verified"));
        // A sender not trusted to send traced numbers: empty PID-32 is unverified too.
        let mut m = message(2, Some(NHS_A), None, &[("RAL", "H2")]);
        m.identity.trust_unstated_status = false;
        file_all(&store, vec![m]);
        assert_eq!(store.parked().unwrap().len(), 2);
        file_all(&store, vec![message(3, Some(NHS_A), Some("NSTS01"), &[("RAL", "H1"), ("RAL", "H2")])]);
        assert_eq!(encounters(&store, NHS_A), ["V1", "V2", "V3"]);
    }

    #[test]
    fn a_test_range_number_is_filed_only_from_a_test_message() {
        let (_d, store) = open();
        let test_nhs = "9990000018";
        assert!(NhsNumber::parse(test_nhs).is_ok());
        file_all(&store, vec![message(1, Some(test_nhs), None, &[])]);
        assert_eq!(store.unindexed_count().unwrap(), 1);
        let mut m = message(2, Some(test_nhs), None, &[]);
        m.identity.processing_id = Some("T".into());
        file_all(&store, vec![m]);
        assert_eq!(encounters(&store, test_nhs), ["V2"]);
    }

    #[test]
    fn a_second_verified_nhs_number_for_a_hospital_number_is_a_conflict_not_a_relink() {
        let (_d, store) = open();
        file_all(&store, vec![message(1, Some(NHS_A), None, &[("RAL", "H1")])]);
        file_all(&store, vec![message(2, Some(NHS_B), None, &[("RAL", "H1")])]);
        assert_eq!(store.lookup_local("RAL", "H1").unwrap().as_deref(), Some(NHS_A));
        let c = store.conflicts().unwrap();
        assert_eq!((c.len(), c[0].control_id.as_str(), c[0].organisation.as_str()), (1, "C2", "RAL"));
        assert_eq!(encounters(&store, NHS_B), ["V2"], "filed under the number it states (verified)");
    }

    #[test]
    fn a_merge_relinks_prior_hospital_numbers_and_moves_a_prior_nhs_numbers_record() {
        let (_d, store) = open();
        // A&E "unknown male" under a temporary number: parked.
        file_all(&store, vec![message(1, None, None, &[("RAL", "TEMP9")])]);
        file_all(&store, vec![message(2, Some(NHS_B), None, &[("RAL", "H2")])]);
        let mut merge = message(3, Some(NHS_A), None, &[("RAL", "H1")]);
        merge.identity.prior_local_ids = vec![LocalId { organisation: "RAL".into(), id: "TEMP9".into() }];
        merge.identity.prior_nhs_number = Some(NHS_B.into());
        file_all(&store, vec![merge]);
        assert_eq!(encounters(&store, NHS_A), ["V1", "V2", "V3"]);
        assert!(store.parked().unwrap().is_empty());
        // Late messages on the old identifiers follow the merge.
        file_all(&store, vec![message(4, None, None, &[("RAL", "TEMP9")]), message(5, Some(NHS_B), None, &[])]);
        assert_eq!(encounters(&store, NHS_A), ["V1", "V2", "V3", "V4", "V5"]);
        assert_eq!(encounters(&store, NHS_B), encounters(&store, NHS_A), "the old number reads as its survivor");
    }

    #[test]
    fn the_hospital_number_item_is_one_item_from_the_cross_reference_whatever_the_order() {
        let timed = |seq: u64, t: i64| {
            let mut m = message(seq, Some(NHS_A), None, &[("RAL", "H1")]);
            m.items[0].version.time_ms = Some(t);
            m
        };
        let mut seen = Vec::new();
        for order in [[1u64, 2], [2, 1]] {
            let (_d, store) = open();
            for seq in order {
                file_all(&store, vec![timed(seq, if seq == 1 { 5_000 } else { 1_000 })]);
            }
            let record = store.record(&NhsNumber::parse(NHS_A).unwrap()).unwrap();
            let ids: Vec<_> = record.into_iter().filter(|i| i.kind == Kind::Identifier).collect();
            assert_eq!(ids.len(), 1, "one item per hospital number, not one per message");
            assert_eq!(ids[0].provenance.message_type, "xref", "it comes from the cross-reference");
            seen.push(ids.into_iter().next().unwrap());
        }
        assert_eq!(seen[0], seen[1], "the same item in either order");
    }
}
