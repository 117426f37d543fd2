//! The versions one message filed into one patient's record, stored as one
//! sled value (a message key, `keys.rs`) rather than one key per item.
//!
//! Why: sled 0.34 copies a leaf on every insert and splits leaves at 16
//! keys, so the index writer's cost follows the number of keys it adds.
//! One key per item version made an ADT add seven keys and cost 0.6× the
//! throughput of overwriting one key per item (issue 9); one key per message
//! adds one. The message's provenance is stored once, not once per item.
//!
//! A read turns each message key back into the per-item version keys it
//! stands for ([`decode`]), so ordering and folding (`fold.rs`) see exactly
//! what they saw when every version had a key of its own. A message of many
//! items is split into chunks of [`CHUNK_ITEMS`] (by item index, so a
//! replay writes the same chunks), and no sled value is huge.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{keys, StoreError};
use crate::record::{Fields, Item, Kind, Provenance, Stored, StoredIn, Version};

/// Items per message key.
pub const CHUNK_ITEMS: usize = 256;

#[derive(Serialize)]
struct MessageOut<'a> {
    provenance: &'a Provenance,
    items: Vec<ItemOut<'a>>,
}

#[derive(Serialize)]
struct ItemOut<'a> {
    /// The item's place in its message (part of its version key).
    index: u32,
    kind: Kind,
    id: &'a str,
    fields: Stored<'a>,
    #[serde(skip_serializing_if = "plain")]
    version: &'a Version,
    #[serde(skip_serializing_if = "no_scopes")]
    scopes: &'a [Arc<str>],
}

fn plain(v: &&Version) -> bool {
    v.is_plain()
}

fn no_scopes(s: &&[Arc<str>]) -> bool {
    s.is_empty()
}

#[derive(Deserialize)]
struct MessageIn {
    provenance: Arc<Provenance>,
    items: Vec<ItemIn>,
}

#[derive(Deserialize)]
struct ItemIn {
    index: u32,
    kind: Kind,
    id: String,
    fields: StoredIn,
    #[serde(default)]
    version: Version,
    #[serde(default)]
    scopes: Vec<Arc<str>>,
}

fn damaged<E>(_: E) -> StoreError {
    StoreError::Damaged { tree: "items" }
}

/// Encodes `(index in message, item)` pairs, all of one message.
pub fn encode(provenance: &Provenance, items: &[(u32, &Item)]) -> Result<Vec<u8>, StoreError> {
    let items = items
        .iter()
        .map(|&(index, i)| ItemOut {
            index,
            kind: i.kind,
            id: &i.id,
            fields: Stored(&i.fields),
            version: &i.version,
            scopes: &i.scopes,
        })
        .collect();
    rmp_serde::to_vec_named(&MessageOut { provenance, items }).map_err(damaged)
}

/// A message key's provenance and its versions as `(index in message, item)`.
pub type Decoded = (Arc<Provenance>, Vec<(u32, Item)>);

/// One message key's versions as `(index in message, item)`.
pub fn decode_items(bytes: &[u8]) -> Result<Decoded, StoreError> {
    let m: MessageIn = rmp_serde::from_slice(bytes).map_err(damaged)?;
    let items = m
        .items
        .into_iter()
        .map(|i| {
            let item = Item {
                kind: i.kind,
                id: i.id,
                fields: Fields::from_stored(i.fields).ok_or(StoreError::Damaged { tree: "items" })?,
                provenance: m.provenance.clone(),
                version: i.version,
                scopes: i.scopes,
            };
            Ok((i.index, item))
        })
        .collect::<Result<_, StoreError>>()?;
    Ok((m.provenance, items))
}

/// One message key's versions filed under `nhs`, each with the version key
/// it stands for (`keys::version_key`).
pub fn decode(nhs: &str, bytes: &[u8]) -> Result<Vec<(Vec<u8>, Item)>, StoreError> {
    let (_, items) = decode_items(bytes)?;
    Ok(items.into_iter().map(|(index, item)| (keys::version_key(nhs, &item, index), item)).collect())
}

/// How many versions a message key holds.
pub fn count(bytes: &[u8]) -> Result<usize, StoreError> {
    decode_items(bytes).map(|(_, items)| items.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Effect;

    #[test]
    fn a_message_key_gives_back_each_item_with_the_key_it_had_on_its_own() {
        let provenance = Arc::new(Provenance {
            sending_app: "PAS".into(),
            sending_facility: "RAL".into(),
            control_id: "C7".into(),
            message_type: "ADT^A11".into(),
            event_time: Some("2026-01-02T03:04:05Z".into()),
            seq: 7,
        });
        let fields: Fields =
            [("ward", serde_json::json!("W1")), ("gone", serde_json::Value::Null)].into_iter().collect();
        let plain = Item {
            kind: Kind::Encounter,
            id: "V1".into(),
            fields: fields.clone(),
            provenance: provenance.clone(),
            version: Version::default(),
            scopes: vec!["visit|RAL|V1".into()],
        };
        let hide = Item {
            kind: Kind::Result,
            id: "ACC^FBC".into(),
            fields,
            provenance: provenance.clone(),
            version: Version {
                time_ms: Some(-5),
                rank: 2,
                effect: Effect::Hide { reason: "cancelled".into() },
                append: vec!["transfers".into()],
            },
            scopes: vec![],
        };
        let bytes = encode(&provenance, &[(0, &plain), (3, &hide)]).unwrap();
        let back = decode("9434765919", &bytes).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], (keys::version_key("9434765919", &plain, 0), plain));
        assert_eq!(back[1], (keys::version_key("9434765919", &hide, 3), hide));
        assert_eq!(count(&bytes).unwrap(), 2);
        assert!(matches!(decode("9434765919", b"\x01junk"), Err(StoreError::Damaged { .. })));
    }
}
