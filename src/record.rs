//! The canonical record: what the mapping stage (`… → parse → **map** → record → store`)
//! produces from one HL7 message, and what the index stores.
//!
//! A message becomes an [`Identity`] (whose record it belongs to: NHS number as found,
//! its PID-32 verification status, local hospital numbers) and a list of [`Item`]s, one
//! per record entry (the patient's demographics, an encounter, an allergy, a result …).
//! Each item has a natural id that is stable across replays, so the index can key it as
//! `nhs | kind | id` and a resent message overwrites instead of duplicating.
//!
//! Deliberately not here: validating the NHS number (see [`crate::hl7::nhs`]), merging
//! items into a patient record, or any storage concern.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod fields;
pub use fields::{FieldRef, Fields, FieldsBuilder, Names, Stored, StoredIn};

/// What a record item is about (the leaflet categories of the shared care record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Patient,
    Identifier,
    GpRegistration,
    Contact,
    Encounter,
    Allergy,
    Diagnosis,
    Procedure,
    Result,
    Document,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 10] = [
        Kind::Patient,
        Kind::Identifier,
        Kind::GpRegistration,
        Kind::Contact,
        Kind::Encounter,
        Kind::Allergy,
        Kind::Diagnosis,
        Kind::Procedure,
        Kind::Result,
        Kind::Document,
    ];

    /// The snake_case name used in mapping files, JSON and index keys.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Patient => "patient",
            Kind::Identifier => "identifier",
            Kind::GpRegistration => "gp_registration",
            Kind::Contact => "contact",
            Kind::Encounter => "encounter",
            Kind::Allergy => "allergy",
            Kind::Diagnosis => "diagnosis",
            Kind::Procedure => "procedure",
            Kind::Result => "result",
            Kind::Document => "document",
        }
    }

    /// The kind called `s` (as [`Kind::as_str`] spells it).
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where an item came from: copied onto every item a message produces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// MSH-3.
    pub sending_app: String,
    /// MSH-4 (UK: the trust's ODS code).
    pub sending_facility: String,
    /// MSH-10.
    pub control_id: String,
    /// MSH-9.1^MSH-9.2, e.g. `ADT^A01`.
    pub message_type: String,
    /// ISO 8601 from EVN-2, else MSH-7.
    pub event_time: Option<String>,
    /// Journal sequence number of the message; 0 in `recordhub check`.
    pub seq: u64,
}

/// One entry of a patient's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub kind: Kind,
    /// Natural id (visit number, filler order number + test code, document number …):
    /// stable across replays of the same message.
    pub id: String,
    /// The mapped values; `null` means HL7 `""` ("delete the stored value").
    pub fields: Fields,
    /// Shared by every item of one message.
    pub provenance: Arc<Provenance>,
    /// How this message's version of the item orders against other versions
    /// and what it does to the item (update, hide, undo). Decided by the
    /// mapping files; the store folds versions into the current state
    /// (`store/fold.rs`). Left out of a record read.
    #[serde(default, skip_serializing_if = "Version::is_plain")]
    pub version: Version,
    /// The visits and orders this item belongs to (`visit|facility|PV1-19`,
    /// `order|facility|OBR-3`), set by the govern stage (`src/govern/`): an
    /// item in a scope an exclusion rule made sensitive is never filed, even
    /// when the rule's message arrives later. Taken off before the item is stored.
    /// Shared: every item of a message gets the same visit scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<Arc<str>>,
}

/// One message's version of an item: where it sorts among the item's
/// versions, and its effect. Versions sort by `(rank, time_ms, effect class,
/// journal seq)`: the greatest decides the current value of each field, so
/// the record does not depend on arrival order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Version {
    /// Clinical time (UTC Unix milliseconds) from the paths the mapping names
    /// (ADT: EVN-6, EVN-2, MSH-7; results: OBR-22, MSH-7 …); none sorts first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<i64>,
    /// Report status rank (results: P 1 < F 2 < C 3; 0 when not declared): a
    /// higher rank is never replaced by a lower one whatever the times.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rank: u8,
    #[serde(default, skip_serializing_if = "Effect::is_update")]
    pub effect: Effect,
    /// Fields whose values accumulate across versions (in version order)
    /// instead of replacing: an encounter's transfer history. Each such
    /// field's value in this version is one entry (an object).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub append: Vec<String>,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl Version {
    pub fn is_plain(&self) -> bool {
        *self == Version::default()
    }
}

/// What one version does to its item.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Sets the fields it carries (`null` removes one; absent keeps it).
    #[default]
    Update,
    /// Hides the item for good, whenever it sorts (a tombstone: a cancel that
    /// arrives before what it cancels still wins). `reason`: `cancelled`,
    /// `wrong patient`, `superseded`, `removed` …
    Hide { reason: String },
    /// Undoes the latest earlier version made by one of these trigger events
    /// (A12 undoes an A02 transfer, A13 an A03 discharge).
    Undo { events: Vec<String> },
}

impl Effect {
    pub fn is_update(&self) -> bool {
        matches!(self, Effect::Update)
    }
}

/// Whose record a message belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// As found in the message; not yet checked (see [`crate::hl7::nhs`]).
    pub nhs_number: Option<String>,
    /// PID-32 as sent, e.g. `NSTS01` or `01`.
    pub nhs_status: Option<String>,
    /// Local (hospital) identifiers: every other PID-3 repetition.
    pub local_ids: Vec<LocalId>,
    /// Whether an empty `nhs_status` counts as verified: the sender is
    /// trusted to send only traced NHS numbers (mapping `[identity]`
    /// `trust_unstated_status`, default true).
    #[serde(default = "yes")]
    pub trust_unstated_status: bool,
    /// MSH-11.1 processing id (`P`, `T`, `D`): a 999 test-range NHS number is
    /// filed only from a `T` or `D` message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_id: Option<String>,
    /// MRG-1 (A40/A34 merges, A47 identifier changes): identifiers that now
    /// mean this patient. A prior NHS number's items move to this record;
    /// prior local ids follow to this NHS number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_nhs_number: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prior_local_ids: Vec<LocalId>,
}

fn yes() -> bool {
    true
}

impl Default for Identity {
    fn default() -> Identity {
        Identity {
            nhs_number: None,
            nhs_status: None,
            local_ids: Vec::new(),
            trust_unstated_status: true,
            processing_id: None,
            prior_nhs_number: None,
            prior_local_ids: Vec::new(),
        }
    }
}

/// A local identifier: CX.4 assigning organisation and CX.1 id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalId {
    pub organisation: String,
    pub id: String,
}

/// Everything one message maps to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mapped {
    pub identity: Identity,
    pub items: Vec<Item>,
    /// Optional fields whose value did not fit their type and were left out
    /// (e.g. `birth_date (PID-7): is not a valid HL7 date`). The message is
    /// still accepted: a bad optional value must not block a sender's queue.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Where `{seq}` templates put the journal seq, so [`Mapped::assign_seq`]
    /// can set it after mapping. Empty for most messages.
    #[serde(skip)]
    pub seq_refs: Vec<SeqRef>,
    /// The mapping set knowingly ignores this message's event (`ignore` in
    /// the mapping file): accepted (AA), journaled, counted, never filed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignored: bool,
    /// What the govern stage decided (`src/govern/`): items excluded by a
    /// rule (kept in `items`, so the others keep their version keys, and
    /// never filed) and the scopes this message makes sensitive.
    #[serde(default, skip_serializing_if = "Governed::is_empty")]
    pub governed: Governed,
}

/// The exclusion decisions for one message (`src/govern/`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Governed {
    /// The rule that excluded the whole message: nothing of it is filed,
    /// not even its identifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `(index in Mapped::items, rule id)`: never filed; a version filed
    /// before the rule existed is deleted on re-evaluation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<(usize, String)>,
    /// `(scope, rule id)`: every item of any message in these scopes is
    /// excluded, whatever the arrival order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive_scopes: Vec<(String, String)>,
}

impl Governed {
    pub fn is_empty(&self) -> bool {
        self.message.is_none() && self.excluded.is_empty() && self.sensitive_scopes.is_empty()
    }

    /// The rule that excluded item `i`, if one did.
    pub fn excluded_by(&self, i: usize) -> Option<&str> {
        self.excluded.iter().find(|(at, _)| *at == i).map(|(_, r)| r.as_str())
    }
}

/// One value rendered from a template holding `{seq}` (MDM's `journal:{seq}`).
#[derive(Debug, Clone, PartialEq)]
pub struct SeqRef {
    /// Index in [`Mapped::items`].
    pub item: usize,
    pub at: SeqAt,
    /// The rendered text around each `{seq}`: joined with the seq, it is the value.
    pub pieces: Vec<String>,
}

/// Which value of an item a [`SeqRef`] renders.
#[derive(Debug, Clone, PartialEq)]
pub enum SeqAt {
    /// The item's id.
    Id,
    /// A field of the item.
    Field(Arc<str>),
    /// A field of row `row` of the item's list `list`.
    Row { list: Arc<str>, row: usize, field: Arc<str> },
}

impl Mapped {
    /// Gives the mapped message its journal seq: the provenance of every item and
    /// every `{seq}` value. Mapping with seq 0 and then `assign_seq(s)` gives what
    /// mapping with `s` gives, so a message can be mapped before its seq is known.
    /// Cheap: one new `Provenance` shared by all items, and one string per `{seq}` value.
    pub fn assign_seq(&mut self, seq: u64) {
        let mut swapped: Option<(Arc<Provenance>, Arc<Provenance>)> = None;
        for item in &mut self.items {
            match &swapped {
                Some((old, new)) if Arc::ptr_eq(old, &item.provenance) => item.provenance = new.clone(),
                _ => {
                    let new = Arc::new(Provenance { seq, ..(*item.provenance).clone() });
                    let old = std::mem::replace(&mut item.provenance, new.clone());
                    swapped = Some((old, new));
                }
            }
        }
        let digits = seq.to_string();
        for r in &self.seq_refs {
            let Some(item) = self.items.get_mut(r.item) else { continue };
            let value = r.pieces.join(&digits);
            match &r.at {
                SeqAt::Id => item.id = value,
                SeqAt::Field(name) => item.fields.insert(name, serde_json::Value::String(value)),
                SeqAt::Row { list, row, field } => {
                    item.fields.set_in_row(list, *row, field, serde_json::Value::String(value))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_str(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(Kind::from_str("nope"), None);
    }
}
