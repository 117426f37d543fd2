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

use super::keys;
use super::{StoreError, Trees};
use crate::hl7::nhs::NhsNumber;
use crate::record::{Item, LocalId, Mapped, Provenance};

mod write;

pub(super) use write::write_all;
use write::{write_identifiers, write_items};

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
mod tests;
