//! Folding an item's versions into its current state: the one place that
//! decides what the record shows.
//!
//! The versions come in key order (`keys.rs`: rank, clinical time, effect
//! class, journal seq), so the result depends only on the *set* of
//! versions, never on the order messages arrived in. The rules:
//! - **Update** sets the fields it carries; `null` (HL7 `""`) removes one;
//!   a field it does not carry keeps its value. Fields named in the
//!   version's `append` accumulate, one entry per shown version (an
//!   encounter's transfer history).
//! - **Undo** removes the latest earlier shown version made by one of its
//!   events (A12 undoes the last A02 before it: the patient is back at the
//!   previous location).
//! - **Hide** hides the item for good, wherever it sorts: a tombstone, so a
//!   cancel that arrives before what it cancels still wins, and a
//!   wrong-patient result never reappears.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::record::{Effect, FieldRef, Fields, Item, Provenance};

/// What one version contributes, for the history view.
#[derive(Debug, Clone, PartialEq)]
pub enum VersionState {
    /// Part of the current state (its fields may be overwritten by later ones).
    Shown,
    /// Undone by a later cancel.
    Undone { by: Arc<Provenance> },
    /// A cancel that undid an earlier version (or found none yet).
    Undoes,
    /// A hide (cancel, wrong patient, supersede, removal).
    Hides,
}

/// Why an item is not shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Hidden {
    pub reason: String,
    pub by: Arc<Provenance>,
}

/// An item's versions folded.
#[derive(Debug)]
pub struct Folded {
    /// What the record shows; `None` when hidden or when nothing is left
    /// (only cancels arrived so far).
    pub current: Option<Item>,
    pub hidden: Option<Hidden>,
    /// One per input version, in the same order.
    pub states: Vec<VersionState>,
}

/// The trigger event of a provenance's message type (`ADT^A02` → `A02`).
pub fn trigger(p: &Provenance) -> &str {
    p.message_type.split('^').nth(1).unwrap_or("")
}

/// Folds one item's versions, given in key order (all of one item).
pub fn fold(versions: &[Item]) -> Folded {
    let mut states = vec![VersionState::Shown; versions.len()];
    let mut shown: Vec<usize> = Vec::with_capacity(versions.len());
    let mut hidden = None;
    for (i, v) in versions.iter().enumerate() {
        match &v.version.effect {
            Effect::Update => shown.push(i),
            Effect::Undo { events } => {
                states[i] = VersionState::Undoes;
                let target = shown.iter().rposition(|&j| events.iter().any(|e| e == trigger(&versions[j].provenance)));
                if let Some(pos) = target {
                    let j = shown.remove(pos);
                    states[j] = VersionState::Undone { by: v.provenance.clone() };
                }
            }
            Effect::Hide { reason } => {
                states[i] = VersionState::Hides;
                // The first hide in key order: the same whatever the arrival order.
                if hidden.is_none() {
                    hidden = Some(Hidden { reason: reason.clone(), by: v.provenance.clone() });
                }
            }
        }
    }
    let current = match (&hidden, shown.last()) {
        (None, Some(&last)) => Some(merge(versions, &shown, last)),
        _ => None,
    };
    Folded { current, hidden, states }
}

fn merge(versions: &[Item], shown: &[usize], last: usize) -> Item {
    let latest = &versions[last];
    let mut out = Item {
        kind: latest.kind,
        id: latest.id.clone(),
        fields: Fields::new(),
        provenance: latest.provenance.clone(),
        version: Default::default(),
        scopes: Vec::new(),
    };
    // The common case, one plain version: shown as stored, minus removals.
    if let [only] = shown {
        let v = &versions[*only];
        if v.version.append.is_empty() && v.fields.iter().all(|(_, f)| !matches!(f, FieldRef::Null)) {
            out.fields = v.fields.clone();
            return out;
        }
    }
    let mut acc: Vec<(String, Json)> = Vec::new();
    for &j in shown {
        let v = &versions[j];
        for (name, value) in v.fields.iter() {
            let value = value.to_json();
            let at = acc.iter().position(|(n, _)| n == name);
            if v.version.append.iter().any(|a| a == name) {
                match at {
                    Some(k) => match &mut acc[k].1 {
                        Json::Array(list) => list.push(value),
                        other => *other = Json::Array(vec![value]),
                    },
                    None => acc.push((name.to_string(), Json::Array(vec![value]))),
                }
            } else if value.is_null() {
                if let Some(k) = at {
                    acc.remove(k);
                }
            } else {
                match at {
                    Some(k) => acc[k].1 = value,
                    None => acc.push((name.to_string(), value)),
                }
            }
        }
    }
    out.fields = acc.into_iter().collect();
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::record::{Kind, Version};

    fn v(event: &str, seq: u64, effect: Effect, fields: Json) -> Item {
        let provenance = Arc::new(Provenance {
            sending_app: "PAS".into(),
            sending_facility: "RAL".into(),
            control_id: format!("C{seq}"),
            message_type: format!("ADT^{event}"),
            event_time: None,
            seq,
        });
        let fields = match fields {
            Json::Object(m) => m.into_iter().collect(),
            _ => Fields::new(),
        };
        let version = Version { effect, ..Version::default() };
        Item { kind: Kind::Encounter, id: "V1".into(), fields, provenance, version, scopes: Vec::new() }
    }

    fn shown(f: &Folded) -> Json {
        f.current.as_ref().map_or(Json::Null, |i| i.fields.to_json())
    }

    #[test]
    fn later_versions_set_what_they_carry_and_null_removes() {
        let f = fold(&[
            v("A01", 1, Effect::Update, json!({"status": "in-progress", "ward": "W1", "bed": "B1"})),
            v("A08", 2, Effect::Update, json!({"ward": "W2", "bed": null})),
        ]);
        assert_eq!(shown(&f), json!({"status": "in-progress", "ward": "W2"}));
        assert_eq!(f.current.unwrap().provenance.control_id, "C2");
    }

    #[test]
    fn an_undo_removes_the_latest_earlier_version_of_its_events() {
        let undo = Effect::Undo { events: vec!["A02".into()] };
        let f = fold(&[
            v("A01", 1, Effect::Update, json!({"ward": "W1", "status": "in-progress"})),
            v("A02", 2, Effect::Update, json!({"ward": "W2"})),
            v("A02", 3, Effect::Update, json!({"ward": "W3"})),
            v("A12", 4, undo.clone(), json!({})),
        ]);
        assert_eq!(shown(&f), json!({"ward": "W2", "status": "in-progress"}));
        assert!(matches!(&f.states[2], VersionState::Undone { by } if by.control_id == "C4"));
        assert_eq!(f.states[1], VersionState::Shown);
        assert_eq!(f.states[3], VersionState::Undoes);
        // An undo that sorts before the transfer undoes nothing.
        let f = fold(&[
            v("A01", 1, Effect::Update, json!({"ward": "W1"})),
            v("A12", 4, undo, json!({})),
            v("A02", 2, Effect::Update, json!({"ward": "W2"})),
        ]);
        assert_eq!(shown(&f), json!({"ward": "W2"}));
    }

    #[test]
    fn a_hide_wins_wherever_it_sorts() {
        let hide = Effect::Hide { reason: "cancelled".into() };
        let f = fold(&[
            v("A11", 1, hide, json!({})),
            v("A01", 2, Effect::Update, json!({"ward": "W1"})),
            v("A08", 3, Effect::Update, json!({"ward": "W2"})),
        ]);
        assert!(f.current.is_none());
        let hidden = f.hidden.unwrap();
        assert_eq!((hidden.reason.as_str(), hidden.by.control_id.as_str()), ("cancelled", "C1"));
        assert_eq!(f.states[0], VersionState::Hides);
    }

    #[test]
    fn append_fields_accumulate_over_shown_versions_only() {
        let mut a = v("A02", 2, Effect::Update, json!({"transfers": {"ward": "W2"}, "ward": "W2"}));
        a.version.append = vec!["transfers".into()];
        let mut b = v("A02", 3, Effect::Update, json!({"transfers": {"ward": "W3"}, "ward": "W3"}));
        b.version.append = vec!["transfers".into()];
        let undo = v("A12", 4, Effect::Undo { events: vec!["A02".into()] }, json!({}));
        let f = fold(&[v("A01", 1, Effect::Update, json!({"ward": "W1"})), a.clone(), b.clone()]);
        assert_eq!(shown(&f), json!({"ward": "W3", "transfers": [{"ward": "W2"}, {"ward": "W3"}]}));
        let f = fold(&[v("A01", 1, Effect::Update, json!({"ward": "W1"})), a, b, undo]);
        assert_eq!(shown(&f), json!({"ward": "W2", "transfers": [{"ward": "W2"}]}));
    }

    #[test]
    fn only_a_cancel_so_far_shows_nothing() {
        let f = fold(&[v("A13", 1, Effect::Undo { events: vec!["A03".into()] }, json!({}))]);
        assert!(f.current.is_none() && f.hidden.is_none());
    }
}
