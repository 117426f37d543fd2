//! The compiled form of a mapping file ([`super::compile`] builds it, [`super::apply`]
//! runs it): paths already parsed into indices, tables resolved, literals converted.
//! Plain data, immutable once built, shared by every message mapped.

use std::collections::HashMap;
use std::sync::Arc;

use super::path::Path;
use crate::record::{Kind, Names};

/// A compiled mapping file: which messages it takes, its default plan, per-sender plans.
#[derive(Debug)]
pub struct FilePlan {
    pub file: std::path::PathBuf,
    /// The types the file takes: those it maps and those it ignores.
    pub selectors: Vec<Selector>,
    pub base: Plan,
    pub senders: Vec<SenderPlan>,
}

/// `ADT^A01` (event `Some`) or `ADT^*` (event `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub code: String,
    pub event: Option<String>,
}

#[derive(Debug)]
pub struct SenderPlan {
    pub app: Option<String>,
    pub facility: Option<String>,
    pub plan: Plan,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub identity: IdentityPlan,
    pub items: Vec<ItemPlan>,
    /// Clinical time paths for items without their own `time`.
    pub time: Vec<Path>,
    /// Types accepted and not filed.
    pub ignore: Vec<Selector>,
}

impl Plan {
    /// Whether this plan knowingly ignores `code^event`.
    pub fn ignores(&self, code: &[u8], event: &[u8]) -> bool {
        self.ignore.iter().any(|s| s.code.as_bytes() == code && s.event.as_ref().is_none_or(|e| e.as_bytes() == event))
    }
}

#[derive(Debug)]
pub struct IdentityPlan {
    pub nhs_number: Vec<Path>,
    pub nhs_status: Vec<Path>,
    pub local_ids: Option<Path>,
    pub trust_unstated_status: bool,
    pub prior_nhs_number: Vec<Path>,
    pub prior_local_ids: Option<Path>,
}

impl Default for IdentityPlan {
    fn default() -> IdentityPlan {
        IdentityPlan {
            nhs_number: Vec::new(),
            nhs_status: Vec::new(),
            local_ids: None,
            trust_unstated_status: true,
            prior_nhs_number: Vec::new(),
            prior_local_ids: None,
        }
    }
}

#[derive(Debug)]
pub struct ItemPlan {
    pub name: String,
    pub kind: Kind,
    pub for_each: Option<[u8; 3]>,
    /// The first template that renders a value is the id.
    pub id: Vec<Template>,
    pub when: Option<Cond>,
    pub fields: Vec<FieldPlan>,
    pub lists: Vec<ListPlan>,
    /// The fields' names, then the lists' (each field's `index` is its place):
    /// shared by every item mapped, so items hold no name bytes.
    pub names: Names,
    pub version: VersionPlan,
}

/// How an item's versions order and what they do (see `record::Version`).
#[derive(Debug, Default)]
pub struct VersionPlan {
    /// The item's own time paths; `None`: the plan's.
    pub time: Option<Vec<Path>>,
    /// The path and its values in rank order (1-based position).
    pub rank: Option<(Path, Vec<String>)>,
    /// The first condition that holds hides the item, with its reason.
    pub hide: Vec<(Cond, String)>,
    /// `(event, events it undoes)`.
    pub undo: Vec<(String, Vec<String>)>,
    pub supersedes: Option<Supersedes>,
    /// Field indices of each group.
    pub groups: Vec<Vec<usize>>,
}

/// An extra item hiding the one this item replaces.
#[derive(Debug)]
pub struct Supersedes {
    pub id: Template,
    pub when: Option<Cond>,
}

#[derive(Debug)]
pub struct ListPlan {
    pub name: std::sync::Arc<str>,
    pub for_each: [u8; 3],
    pub fields: Vec<FieldPlan>,
    /// Rows for which this holds are left out.
    pub drop: Option<Cond>,
    /// The row fields' names.
    pub names: Names,
    /// The list's place in its item's `names`.
    pub index: usize,
    /// A field of the item has the list's name: the list replaces its value.
    pub shadows: bool,
}

#[derive(Debug)]
pub struct FieldPlan {
    /// Shared with every item mapped, so mapping allocates no key strings.
    pub name: std::sync::Arc<str>,
    /// The field's place in the names of its item (or list row).
    pub index: usize,
    pub source: Source,
    pub ty: Ty,
    pub required: bool,
    pub when: Option<Cond>,
}

#[derive(Debug)]
pub enum Source {
    /// The first path with a value.
    Paths(Vec<Path>),
    /// Already converted to its type.
    Literal(serde_json::Value),
    Template(Template),
    /// An object of these fields, one entry of a history (`append`).
    Append {
        fields: Vec<FieldPlan>,
        names: Names,
    },
}

#[derive(Debug)]
pub enum Ty {
    String,
    Date,
    Timestamp,
    Number,
    Code { table: Arc<Table>, strict: bool },
}

/// A code table from `tables/NAME.toml`.
#[derive(Debug)]
pub struct Table {
    pub name: String,
    pub values: HashMap<String, String>,
    pub default: Option<String>,
}

#[derive(Debug, Default)]
pub struct Template(pub Vec<Part>);

#[derive(Debug)]
pub enum Part {
    Text(String),
    Path(Path),
    Prov(ProvField),
}

/// Provenance values a template may use: `{seq}`, `{control_id}` ….
#[derive(Debug, Clone, Copy)]
pub enum ProvField {
    Seq,
    ControlId,
    SendingApp,
    SendingFacility,
    MessageType,
}

pub const PROV_FIELDS: [(&str, ProvField); 5] = [
    ("seq", ProvField::Seq),
    ("control_id", ProvField::ControlId),
    ("sending_app", ProvField::SendingApp),
    ("sending_facility", ProvField::SendingFacility),
    ("message_type", ProvField::MessageType),
];

#[derive(Debug, Default)]
pub struct Cond {
    pub events: Vec<String>,
    pub field: Option<(Path, Vec<String>)>,
    /// The field's value must be none of these.
    pub field_not: Option<(Path, Vec<String>)>,
    /// The field part holds for any segment of the path's name in the item's group.
    pub any: bool,
}
