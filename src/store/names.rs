//! Finding a patient without their NHS number: by family name and date of
//! birth (the `names` tree, derived, written when a patient item is filed)
//! and by local hospital number (the `xref` cross-reference).
//!
//! `names` holds two kinds of key:
//! - `n` FAMILY `\0` YYYYMMDD `\0` nhs `\0` facility → the name as sent
//!   (JSON [`NameHit`]): one per patient item (the demographics a facility
//!   sent), so a search is one prefix scan;
//! - `r` nhs `\0` facility → the version suffix that wrote the forward key,
//!   then the forward key: so a rename (A08 with a new family name) replaces
//!   the old entry, and an older message arriving late does not undo it.
//!
//! A renamed patient is found under the new name only: the search finds what
//! the record page shows. Merged NHS numbers are resolved when searching, not
//! rewritten. Cleared with the other derived trees, so `reindex` rebuilds it.
//!
//! What this module does not do: decide who may search or audit a search
//! (`web/search.rs`), or hide patients who objected (the caller asks
//! [`Store::objection`]).

use serde::{Deserialize, Serialize};

use super::keys::{self, SEP};
use super::{identity, Store, StoreError, Trees};
use crate::record::{Item, Kind};

const FORWARD: u8 = b'n';
const REVERSE: u8 = b'r';

/// One patient item found by name and date of birth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameHit {
    /// After merges.
    pub nhs_number: String,
    pub family_name: String,
    pub given_name: String,
    /// ISO `YYYY-MM-DD`.
    pub birth_date: String,
    /// The facility that sent these demographics.
    pub organisation: String,
}

/// The family name as the index compares it: letters and digits only,
/// upper case (`O'Brien`, `OBRIEN` and `o brien` are one name).
pub fn fold_family(name: &str) -> String {
    name.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_uppercase).collect()
}

/// `YYYYMMDD` from an ISO date (`YYYY-MM-DD`, optionally followed by a time).
fn compact_date(iso: &str) -> Option<String> {
    let d: String = iso.get(..10)?.chars().filter(|c| *c != '-').collect();
    (d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit())).then_some(d)
}

fn forward_prefix(family: &str, dob: &str) -> Vec<u8> {
    let mut k = vec![FORWARD];
    for part in [family, dob] {
        k.extend_from_slice(part.as_bytes());
        k.push(SEP);
    }
    k
}

fn reverse_key(nhs: &str, facility: &str) -> Vec<u8> {
    let mut k = vec![REVERSE];
    k.extend_from_slice(nhs.as_bytes());
    k.push(SEP);
    k.extend_from_slice(facility.as_bytes());
    k
}

fn text(item: &Item, name: &str) -> Option<String> {
    match item.fields.get(name)? {
        crate::record::FieldRef::Str(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// Notes a filed patient item (version `index` of its message) under its
/// name and date of birth. Items of other kinds, and demographics without
/// both a family name and a birth date, change nothing.
pub(super) fn note(t: &Trees, nhs: &str, item: &Item, index: u32) -> Result<(), StoreError> {
    if item.kind != Kind::Patient {
        return Ok(());
    }
    let (Some(family), Some(dob)) = (text(item, "family_name"), text(item, "birth_date")) else {
        return Ok(());
    };
    let (folded, Some(compact)) = (fold_family(&family), compact_date(&dob)) else {
        return Ok(());
    };
    if folded.is_empty() {
        return Ok(());
    }
    let facility = &item.provenance.sending_facility;
    let mut forward = forward_prefix(&folded, &compact);
    forward.extend_from_slice(nhs.as_bytes());
    forward.push(SEP);
    forward.extend_from_slice(facility.as_bytes());
    let mut order = Vec::with_capacity(keys::SUFFIX);
    keys::push_suffix(&mut order, &item.version, item.provenance.seq, index);
    let rkey = reverse_key(nhs, facility);
    let mut same_key = false;
    if let Some(old) = t.names.get(&rkey)? {
        let (old_order, old_forward) = old.split_at(old.len().min(keys::SUFFIX));
        if old_order > order.as_slice() {
            return Ok(()); // a newer version already named this patient
        }
        same_key = old_forward == forward.as_slice();
        if !same_key {
            t.names.remove(old_forward)?;
        }
    }
    let hit = NameHit {
        nhs_number: nhs.to_string(),
        family_name: family,
        given_name: text(item, "given_name").unwrap_or_default(),
        birth_date: dob.get(..10).unwrap_or(&dob).to_string(),
        organisation: facility.clone(),
    };
    let v = serde_json::to_vec(&hit).map_err(|_| StoreError::Damaged { tree: "names" })?;
    // A feed resends the same demographics with every message: a read is
    // cheaper than rewriting the same value (sled copies a leaf per insert).
    // The reverse key is still written: it carries the newest order.
    if !same_key || t.names.get(&forward)?.is_none_or(|old| old != v.as_slice()) {
        t.names.insert(&forward, v)?;
    }
    let mut r = order;
    r.extend_from_slice(&forward);
    t.names.insert(rkey, r)?;
    Ok(())
}

impl Store {
    /// Patients filed under this family name (compared as [`fold_family`]
    /// does) and date of birth (`YYYY-MM-DD`), one hit per sending
    /// facility, NHS numbers resolved through merges.
    ///
    /// # Errors
    /// The index could not be read.
    pub fn find_by_name(&self, family: &str, birth_date: &str) -> Result<Vec<NameHit>, StoreError> {
        let (folded, Some(dob)) = (fold_family(family), compact_date(birth_date)) else {
            return Ok(Vec::new());
        };
        if folded.is_empty() {
            return Ok(Vec::new());
        }
        let t = self.t()?;
        let mut out = Vec::new();
        for kv in t.names.scan_prefix(forward_prefix(&folded, &dob)) {
            let (_, v) = kv?;
            let mut hit: NameHit = serde_json::from_slice(&v).map_err(|_| StoreError::Damaged { tree: "names" })?;
            hit.nhs_number = identity::resolve_alias(&t, &hit.nhs_number)?;
            out.push(hit);
        }
        Ok(out)
    }

    /// The names each facility filed for `nhs` (one hit per facility).
    ///
    /// # Errors
    /// The index could not be read.
    pub fn names_of(&self, nhs: &str) -> Result<Vec<NameHit>, StoreError> {
        let t = self.t()?;
        // `r nhs \0`: every facility's entry for this patient.
        let prefix = reverse_key(nhs, "");
        let mut out = Vec::new();
        for kv in t.names.scan_prefix(&prefix) {
            let (_, r) = kv?;
            let forward = r.get(keys::SUFFIX..).ok_or(StoreError::Damaged { tree: "names" })?;
            if let Some(v) = t.names.get(forward)? {
                out.push(serde_json::from_slice(&v).map_err(|_| StoreError::Damaged { tree: "names" })?);
            }
        }
        Ok(out)
    }

    /// The NHS numbers a local (hospital) number is linked to, as
    /// `(organisation, nhs)`: under `organisation` only when given, else
    /// under every organisation that issued that number. Resolved through
    /// merges.
    ///
    /// # Errors
    /// The index could not be read.
    pub fn find_local(&self, id: &str, organisation: Option<&str>) -> Result<Vec<(String, String)>, StoreError> {
        if let Some(org) = organisation {
            return Ok(self.lookup_local(org, id)?.map(|nhs| vec![(org.to_string(), nhs)]).unwrap_or_default());
        }
        let t = self.t()?;
        let mut out = Vec::new();
        // `xref` is keyed `organisation \0 id`: visit each organisation once
        // (seek past all its ids), so the cost is the number of
        // organisations, not of patients.
        let mut from: Vec<u8> = Vec::new();
        while let Some(kv) = t.xref.range(from.as_slice()..).next() {
            let (k, _) = kv?;
            let org_len = k.iter().position(|b| *b == SEP).unwrap_or(k.len());
            let org = &k[..org_len];
            let key = keys::local_key(&String::from_utf8_lossy(org), id);
            if org_len < k.len() {
                if let Some(v) = t.xref.get(&key)? {
                    let org = String::from_utf8_lossy(org).into_owned();
                    out.push((org, identity::resolve_alias(&t, &String::from_utf8_lossy(&v))?));
                }
            }
            // The first key after every `org \0 …`: `org \x01`.
            from = org.to_vec();
            from.push(SEP + 1);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::record::{Fields, Provenance};

    fn patient(seq: u64, given: &str) -> Item {
        let fields: Fields =
            [("family_name", json!("Walsh")), ("given_name", json!(given)), ("birth_date", json!("1982-03-14"))]
                .into_iter()
                .collect();
        let provenance = Arc::new(Provenance {
            sending_app: "PAS".into(),
            sending_facility: "RJ1".into(),
            control_id: format!("C{seq}"),
            message_type: "ADT^A08".into(),
            event_time: None,
            seq,
        });
        Item {
            kind: Kind::Patient,
            id: "RJ1".into(),
            fields,
            provenance,
            version: Default::default(),
            scopes: Vec::new(),
        }
    }

    /// The same name and birth date resent (as a feed does with every
    /// message) leave the entry as it is; a new given name under the same
    /// family name and date replaces what the search shows.
    #[test]
    fn a_resent_name_keeps_its_entry_and_a_changed_given_name_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = store.t().unwrap();
        let given = |store: &Store| -> Vec<String> {
            store.find_by_name("walsh", "1982-03-14").unwrap().into_iter().map(|h| h.given_name).collect()
        };
        note(&t, "9434765919", &patient(1, "Siobhan"), 0).unwrap();
        note(&t, "9434765919", &patient(2, "Siobhan"), 0).unwrap();
        assert_eq!(given(&store), ["Siobhan"]);
        note(&t, "9434765919", &patient(3, "Mary"), 0).unwrap();
        assert_eq!(given(&store), ["Mary"]);
        // Older than what is stored: ignored.
        note(&t, "9434765919", &patient(2, "Siobhan"), 0).unwrap();
        assert_eq!(given(&store), ["Mary"]);
    }

    #[test]
    fn family_names_fold_to_letters_and_digits_in_upper_case() {
        assert_eq!(fold_family("O'Brien"), "OBRIEN");
        assert_eq!(fold_family(" o brien-smith "), "OBRIENSMITH");
        assert_eq!(fold_family("Siobhán"), "SIOBHÁN");
        assert_eq!(compact_date("1982-03-14"), Some("19820314".into()));
        assert_eq!(compact_date("1982-03-14T00:00:00"), Some("19820314".into()));
        assert_eq!(compact_date("14/03/1982"), None);
    }
}
