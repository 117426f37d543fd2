//! The mapping file format as analysts write it (TOML, read with serde), keeping the
//! byte span of every value so that [`super::compile`] can report `file:line:col`.
//!
//! Nothing is interpreted here beyond TOML types: paths, tables and types are checked
//! by the compiler. Unknown keys are errors everywhere (`deny_unknown_fields`).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::record::Kind;

/// One mapping file (`mappings/adt.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// MSH-9 values this file handles: `ADT^A01`, `ADT^*`.
    pub messages: Spanned<Vec<Spanned<String>>>,
    /// Clinical time of the message (first path with a value): how its versions
    /// of items order against other messages' versions. An item's `time` overrides it.
    pub time: Option<Paths>,
    /// MSH-9 values this file accepts and knowingly does not file (AA, journaled,
    /// counted, logged).
    pub ignore: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub identity: IdentitySpec,
    #[serde(default)]
    pub items: Ordered<ItemSpec>,
    /// Per-sender overrides, layered over the defaults above.
    #[serde(default, rename = "sender")]
    pub senders: Vec<SenderSpec>,
}

/// Where the patient's identity is.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    pub nhs_number: Option<Paths>,
    pub nhs_status: Option<Paths>,
    /// A repeating CX field (PID-3): every repetition but the NHS number's is a local id.
    pub local_ids: Option<Spanned<String>>,
    /// Whether an empty `nhs_status` counts as verified (default true).
    pub trust_unstated_status: Option<bool>,
    /// A merge's prior NHS number (MRG-1's NHS repetition).
    pub prior_nhs_number: Option<Paths>,
    /// A merge's prior local ids: every repetition of this CX field but the
    /// prior NHS number's.
    pub prior_local_ids: Option<Spanned<String>>,
}

/// One item definition, or in an override the parts of it to change.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemSpec {
    pub kind: Option<Spanned<Kind>>,
    /// Make an item per occurrence of this segment (AL1, DG1, OBR …).
    pub for_each: Option<Spanned<String>>,
    /// Template for the natural id, e.g. `"{PV1-19.1}"`, or a list of them (the
    /// first that renders a value).
    pub id: Option<Paths>,
    pub when: Option<WhenSpec>,
    /// Clinical time paths for this item's versions (overrides the file's `time`).
    pub time: Option<Paths>,
    /// Status rank of this item's versions: position of the value in `order`.
    pub rank: Option<Spanned<RankSpec>>,
    /// Conditions that hide the item for good, each with its reason.
    pub hide: Option<Vec<Spanned<HideSpec>>>,
    /// `A12 = ["A02"]`: a message of event A12 undoes the latest A02 version.
    pub undo: Option<Ordered<Vec<Spanned<String>>>>,
    /// A replacement (MDM T10) hides the item it names.
    pub supersedes: Option<Spanned<SupersedeSpec>>,
    /// Field groups: any member present, the absent ones become null.
    pub groups: Option<Ordered<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub fields: Ordered<TargetSpec>,
    /// Lists built from child segments of the `for_each` segment (OBX under OBR).
    #[serde(default)]
    pub lists: Ordered<ListSpec>,
}

/// `rank = { path = "OBR-25", order = ["P", "F", "C"] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankSpec {
    pub path: Spanned<String>,
    pub order: Vec<Spanned<String>>,
}

/// One `hide` condition: the keys of `when`, and why the item is hidden.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HideSpec {
    pub event: Option<Vec<Spanned<String>>>,
    pub field: Option<Spanned<String>>,
    pub is: Option<Vec<String>>,
    pub is_not: Option<Vec<String>>,
    pub any: Option<bool>,
    pub reason: Option<Spanned<String>>,
}

impl HideSpec {
    /// The condition part, as a `when`.
    pub fn when(&self) -> WhenSpec {
        WhenSpec {
            event: self.event.clone(),
            field: self.field.clone(),
            is: self.is.clone(),
            is_not: self.is_not.clone(),
            any: self.any,
        }
    }
}

/// `supersedes = { id = "{TXA-13.1}", when = { event = ["T10"] } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupersedeSpec {
    pub id: Spanned<String>,
    pub when: Option<WhenSpec>,
}

/// A list of objects, one per child segment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    pub for_each: Spanned<String>,
    /// Rows for which this holds are left out (OBX-11 `D`: deleted).
    pub drop: Option<WhenSpec>,
    #[serde(default)]
    pub fields: Ordered<TargetSpec>,
}

/// A condition; every key given must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenSpec {
    /// MSH-9.2 is one of these.
    pub event: Option<Vec<Spanned<String>>>,
    /// This path has a value …
    pub field: Option<Spanned<String>>,
    /// … equal to one of these (without `is`: any non-empty value).
    pub is: Option<Vec<String>>,
    /// … or, instead, equal to none of these (an empty field also passes).
    pub is_not: Option<Vec<String>>,
    /// The field condition holds for any segment of its name in the item's
    /// group (any OBX of the report), not only the first.
    pub any: Option<bool>,
}

/// A target field: a bare path string, or a table with options.
#[derive(Debug, Clone)]
pub struct TargetSpec(pub Spanned<Target>);

#[derive(Debug, Clone)]
pub enum Target {
    Path(String),
    /// A list of paths: the first with a value.
    Paths(Vec<Spanned<String>>),
    Full(Box<FieldSpec>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub path: Option<Paths>,
    pub value: Option<Spanned<String>>,
    pub template: Option<Spanned<String>>,
    #[serde(rename = "type")]
    pub ty: Option<Spanned<TypeName>>,
    pub table: Option<Spanned<String>>,
    pub strict: Option<bool>,
    pub required: Option<bool>,
    pub when: Option<WhenSpec>,
    /// An object of these fields, accumulated across versions (a history).
    pub append: Option<Ordered<TargetSpec>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeName {
    String,
    Date,
    Timestamp,
    Number,
    Code,
}

/// Per-sender override: matched on MSH-3 and/or MSH-4 (first component).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderSpec {
    pub app: Option<Spanned<String>>,
    pub facility: Option<Spanned<String>>,
    /// Replaces the file's `time` for this sender.
    pub time: Option<Paths>,
    /// Replaces the file's `ignore` for this sender (only types the file takes).
    pub ignore: Option<Spanned<Vec<Spanned<String>>>>,
    pub identity: Option<IdentitySpec>,
    #[serde(default)]
    pub items: Ordered<ItemSpec>,
}

/// A code table file (`mappings/tables/sex.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub description: Option<String>,
    /// For a value not in `values` (unless the target is `strict`).
    pub default: Option<String>,
    pub values: BTreeMap<String, String>,
}

/// One path or a list of paths (the first with a value wins).
#[derive(Debug, Clone)]
pub struct Paths(pub Vec<Spanned<String>>);

/// A TOML table whose keys keep their order and their span.
#[derive(Debug, Clone)]
pub struct Ordered<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    out.push((key, map.next_value()?));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Target;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field path like \"PID-5.1\" or a table like { path = \"PID-7\", type = \"date\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Target, E> {
                Ok(Target::Path(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Target, A::Error> {
                let mut out = Vec::new();
                while let Some(p) = seq.next_element::<Spanned<String>>()? {
                    out.push(p);
                }
                Ok(Target::Paths(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Target, A::Error> {
                FieldSpec::deserialize(de::value::MapAccessDeserializer::new(map)).map(|f| Target::Full(Box::new(f)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for TargetSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Spanned::<Target>::deserialize(d).map(TargetSpec)
    }
}

/// Reads `"PID-5.1"` or `["PID-3[5=NH].1", "PID-3[4=NHS].1"]`.
impl<'de> Deserialize<'de> for Paths {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<StrOrSeq>::deserialize(d)?;
        let span = spanned.span();
        Ok(match spanned.into_inner() {
            StrOrSeq::One(s) => Paths(vec![Spanned::new(span, s)]),
            StrOrSeq::Many(v) => Paths(v),
        })
    }
}

/// A string or a list of spanned strings, without serde's untagged buffering
/// (which would lose the spans).
enum StrOrSeq {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for StrOrSeq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrOrSeq;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field path like \"PID-5.1\" or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrOrSeq, E> {
                Ok(StrOrSeq::One(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrOrSeq, A::Error> {
                let mut out = Vec::new();
                while let Some(p) = seq.next_element::<Spanned<String>>()? {
                    out.push(p);
                }
                Ok(StrOrSeq::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}
