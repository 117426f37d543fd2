//! Key layouts of the record trees, in one place.
//!
//! Every **version** of an item has a version key:
//! `nhs \0 kind \0 facility \0 natural id \0` + a fixed [`SUFFIX`]-byte
//! version suffix `rank · time · class · seq · index`. Sorted, each item's
//! versions are adjacent and come out in the order that decides the current
//! state (`fold.rs`). The natural id is scoped by the sending facility: a
//! visit number is only unique within its trust.
//!
//! `items` stores a message's versions under one **message key**
//! ([`message_key`], `versions.rs`) and identifier items under their
//! version keys; both start `nhs \0`, so a patient's record is one prefix
//! scan, and a read sorts the versions by the version keys they stand for.

use crate::record::{Effect, Item, Version};

pub const SEP: u8 = 0;

/// Bytes of the version suffix: rank 1, time 8, class 1, seq 8, index 4.
pub const SUFFIX: usize = 22;

/// `nhs \0`: every version of a patient's items.
pub fn patient_prefix(nhs: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(nhs.len() + 1);
    p.extend_from_slice(nhs.as_bytes());
    p.push(SEP);
    p
}

/// `nhs \0 kind \0 facility \0 id \0`: every version of one item.
pub fn item_prefix(nhs: &str, item: &Item) -> Vec<u8> {
    let kind = item.kind.as_str();
    let fac = &item.provenance.sending_facility;
    let mut k = Vec::with_capacity(nhs.len() + kind.len() + fac.len() + item.id.len() + 4 + SUFFIX);
    for part in [nhs, kind, fac.as_str(), item.id.as_str()] {
        k.extend_from_slice(part.as_bytes());
        k.push(SEP);
    }
    k
}

/// Effects that sort after updates of the same time: a cancel sent with the
/// time of what it cancels must still see it.
fn class(effect: &Effect) -> u8 {
    match effect {
        Effect::Update => 0,
        Effect::Undo { .. } => 1,
        Effect::Hide { .. } => 2,
    }
}

/// The key of one version: item prefix + suffix. `index` is the item's place
/// in its message (two items of one message with the same id stay apart).
pub fn version_key(nhs: &str, item: &Item, index: u32) -> Vec<u8> {
    let mut k = item_prefix(nhs, item);
    push_suffix(&mut k, &item.version, item.provenance.seq, index);
    k
}

pub fn push_suffix(k: &mut Vec<u8>, v: &Version, seq: u64, index: u32) {
    k.push(v.rank);
    // Sign bit flipped so negative times (before 1970) sort first; no time
    // sorts before every time.
    let time = v.time_ms.map_or(0, |t| (t as u64) ^ (1 << 63));
    k.extend_from_slice(&time.to_be_bytes());
    k.push(class(&v.effect));
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
}

/// The item part of a version key (`nhs \0 kind \0 facility \0 id \0`), or
/// `None` for a key too short to be one.
pub fn split_version(key: &[u8]) -> Option<&[u8]> {
    key.len().checked_sub(SUFFIX).map(|n| &key[..n])
}

/// The same version key moved under another NHS number (a merge).
pub fn rekey(key: &[u8], from_nhs: &str, to_nhs: &str) -> Option<Vec<u8>> {
    let rest = key.strip_prefix(from_nhs.as_bytes())?;
    let mut k = Vec::with_capacity(to_nhs.len() + rest.len());
    k.extend_from_slice(to_nhs.as_bytes());
    k.extend_from_slice(rest);
    Some(k)
}

/// The byte after `nhs \0` that marks a message key: a kind (a lower-case
/// word) never starts with it.
pub const MESSAGE: u8 = 1;

/// `nhs \0 \x01 seq`: every chunk of what message `seq` filed under `nhs`.
pub fn message_prefix(nhs: &str, seq: u64) -> Vec<u8> {
    let mut k = patient_prefix(nhs);
    k.push(MESSAGE);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `nhs \0 \x01 seq chunk`: one chunk of the versions message `seq` filed
/// under `nhs` (`versions.rs`). Identifier items, which come from the
/// cross-reference rather than one message, keep a version key each.
pub fn message_key(nhs: &str, seq: u64, chunk: u32) -> Vec<u8> {
    let mut k = message_prefix(nhs, seq);
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

/// What a key of `items` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A chunk of one message's versions (`versions.rs`).
    Message { seq: u64 },
    /// One version of one item (identifier items).
    Version { seq: u64 },
}

/// Reads a key of `items`; `None` for a key of neither layout.
pub fn parse(key: &[u8]) -> Option<Stored> {
    let at = key.iter().position(|&b| b == SEP)?;
    match key.get(at + 1)? {
        &MESSAGE => {
            let seq = key.get(at + 2..at + 10)?.try_into().ok().map(u64::from_be_bytes)?;
            Some(Stored::Message { seq })
        }
        _ => {
            // rank 1, time 8, class 1, seq 8, index 4
            let n = key.len().checked_sub(12).filter(|&n| n > at)?;
            let seq = key.get(n..n + 8)?.try_into().ok().map(u64::from_be_bytes)?;
            Some(Stored::Version { seq })
        }
    }
}

/// `organisation \0 local id` (`xref`, and the start of `parked` keys).
pub fn local_key(organisation: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(organisation.len() + id.len() + 2);
    k.extend_from_slice(organisation.as_bytes());
    k.push(SEP);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `organisation \0 local id \0 seq`: a message parked under a local id.
pub fn parked_key(organisation: &str, id: &str, seq: u64) -> Vec<u8> {
    let mut k = local_key(organisation, id);
    k.push(SEP);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// All messages parked under one local id.
pub fn parked_prefix(organisation: &str, id: &str) -> Vec<u8> {
    let mut k = local_key(organisation, id);
    k.push(SEP);
    k
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::record::{Kind, Provenance};

    fn item(seq: u64, time_ms: Option<i64>, rank: u8, effect: Effect) -> Item {
        let provenance = Arc::new(Provenance {
            sending_app: "PAS".into(),
            sending_facility: "RAL".into(),
            control_id: format!("C{seq}"),
            message_type: "ADT^A01".into(),
            event_time: None,
            seq,
        });
        let version = Version { time_ms, rank, effect, append: vec![] };
        Item {
            kind: Kind::Encounter,
            id: "V1".into(),
            fields: Default::default(),
            provenance,
            version,
            scopes: Vec::new(),
        }
    }

    #[test]
    fn versions_sort_by_rank_then_time_then_class_then_seq() {
        let hide = Effect::Hide { reason: "cancelled".into() };
        let in_order = [
            item(9, None, 0, Effect::Update),
            item(8, Some(-5), 0, Effect::Update),
            item(7, Some(10), 0, Effect::Update),
            item(1, Some(10), 0, hide.clone()),
            item(6, Some(11), 0, Effect::Update),
            item(5, Some(1), 1, Effect::Update),
        ];
        let keys: Vec<Vec<u8>> = in_order.iter().map(|i| version_key("943", i, 0)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for k in &keys {
            assert_eq!(split_version(k), Some(&b"943\0encounter\0RAL\0V1\0"[..]));
        }
        assert_eq!(parse(&keys[2]), Some(Stored::Version { seq: 7 }));
        assert_eq!(parse(&message_key("943", 4711, 2)), Some(Stored::Message { seq: 4711 }));
        assert!(message_key("943", 4711, 2).starts_with(&message_prefix("943", 4711)));
        assert!(message_key("943", 4711, 0).starts_with(&patient_prefix("943")));
        assert_eq!(parse(b"short"), None);
        assert_eq!(parse(b"943\0\x01short"), None);
        let moved = rekey(&keys[0], "943", "111").unwrap();
        assert_eq!(split_version(&moved), Some(&b"111\0encounter\0RAL\0V1\0"[..]));
    }
}
