//! Writing a message's items, and the patient's local identifiers, into the
//! record once [its owner](super) has decided whose record it is.

use std::sync::Arc;

use crate::record::{Fields, Item, Kind, Mapped, Provenance, Version};
use crate::store::index::encode_item;
use crate::store::keys::{self, SEP};
use crate::store::versions;
use crate::store::{StoreError, Trees};

/// Writes the message's versions under `nhs` as message keys
/// (`versions.rs`), a chunk at a time, freeing each chunk once written (a
/// message of 340,000 items is never held twice). An item the govern stage
/// `excluded` (by index), or in a sensitive scope, is left out, so filing
/// again under other rules drops a version filed under older ones
/// (`sensitive.rs`): the chunk is rewritten whole.
pub(super) fn write_items(
    t: &Trees,
    nhs: &str,
    items: Vec<Item>,
    excluded: &[usize],
    after_each: &mut impl FnMut(),
) -> Result<(), StoreError> {
    // A standing objection: nothing is filed (the journal keeps the message;
    // withdrawing the objection restores it, `objection.rs`).
    if crate::store::objection::stands(t, nhs)? {
        return Ok(());
    }
    let keep = |i: usize, item: &Item| -> Result<bool, StoreError> {
        Ok(!excluded.contains(&i) && crate::store::sensitive::sensitive(t, &item.scopes)?.is_none())
    };
    write_versions(t, nhs, items, keep, after_each)
}

/// Writes `items` (one message's, in message order) under `nhs`, those
/// `keep` says to, in chunks of [`versions::CHUNK_ITEMS`] by index; a
/// chunk left with nothing to keep is deleted.
fn write_versions(
    t: &Trees,
    nhs: &str,
    items: Vec<Item>,
    keep: impl Fn(usize, &Item) -> Result<bool, StoreError>,
    after_each: &mut impl FnMut(),
) -> Result<(), StoreError> {
    let Some(provenance) = items.first().map(|i| i.provenance.clone()) else { return Ok(()) };
    let mut rest = items.into_iter().enumerate().peekable();
    let mut chunk_no = 0u32;
    while rest.peek().is_some() {
        let chunk: Vec<(usize, Item)> = rest.by_ref().take(versions::CHUNK_ITEMS).collect();
        let mut kept: Vec<(u32, &Item)> = Vec::with_capacity(chunk.len());
        for (i, item) in &chunk {
            let index = u32::try_from(*i).unwrap_or(u32::MAX);
            if keep(*i, item)? {
                // Stored with its scopes: a scope that becomes sensitive later
                // finds its versions by them (`sensitive.rs`).
                crate::store::sensitive::note(t, &item.scopes, nhs)?;
                crate::store::names::note(t, nhs, item, index)?;
                kept.push((index, item));
            }
            after_each();
        }
        let key = keys::message_key(nhs, provenance.seq, chunk_no);
        if kept.is_empty() {
            t.items.remove(key)?;
        } else {
            t.items.insert(key, versions::encode(&provenance, &kept)?)?;
        }
        chunk_no += 1;
    }
    Ok(())
}

/// Writes a message's items under `nhs` as they are, with no rules.
pub(in crate::store) fn write_all(t: &Trees, nhs: &str, items: Vec<Item>) -> Result<(), StoreError> {
    write_versions(t, nhs, items, |_, _| Ok(true), &mut || {})
}

/// The patient's local identifiers as record items (kind `identifier`),
/// scoped by their organisation rather than by the sender, so the same
/// hospital number sent by the PAS and the lab is one item. They come from
/// the cross-reference, not from one message, so their provenance names it
/// (`recordhub`/`xref`, the organisation) and their bytes do not depend on
/// which message arrived first. Every ADT carries the hospital number:
/// `ids_written` remembers which items are already written, so the common
/// case costs no sled operation at all.
pub(super) fn write_identifiers(t: &Trees, nhs: &str, mapped: &Mapped) -> Result<(), StoreError> {
    if crate::store::objection::stands(t, nhs)? {
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
