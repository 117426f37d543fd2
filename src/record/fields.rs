//! [`Fields`]: an item's mapped values, packed into one allocation.
//!
//! A message can map to hundreds of thousands of items (an ADT with 340k DG1s):
//! a `Vec<(Arc<str>, serde_json::Value)>` cost 48 bytes per value plus one
//! allocation per string, about 14 times the bytes of the segment it came from.
//! Here the values are packed into one byte buffer per item, and the names are a
//! table shared with the compiled mapping (one `Arc` per item, no name bytes).
//! A list of rows (an ORU's observations) is kept beside the buffer as rows
//! packed the same way, one allocation per row: as `serde_json` objects they
//! were two allocations per value, and building, encoding and freeing them was
//! most of what an ORU cost the pipeline and the index writer. Other values
//! (numbers, rows read back from the index) are kept as JSON beside it.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

mod builder;
mod stored;
pub use builder::FieldsBuilder;
pub use stored::{Stored, StoredIn};

/// The names an item's values may have, in the mapping file's order.
pub type Names = Arc<[Arc<str>]>;

/// An item's mapped values, in the order the mapping file lists them; a JSON
/// object when serialised.
///
/// The buffer holds, per value: the name's index in `names` (LEB128), a tag, and
/// for text its length (LEB128) and bytes, for any other value its index in `other`.
#[derive(Clone)]
pub struct Fields {
    names: Names,
    buf: Box<[u8]>,
    other: Box<[Other]>,
}

/// A value that is neither text nor null.
#[derive(Clone)]
enum Other {
    Json(Json),
    /// A list of rows, each packed with its list's names.
    Rows(Box<[Fields]>),
}

const STR: u8 = 0;
const NULL: u8 = 1;
const JSON: u8 = 2;

/// One value of [`Fields`], borrowed.
#[derive(Debug, Clone, Copy)]
pub enum FieldRef<'a> {
    Str(&'a str),
    Null,
    Json(&'a Json),
    /// A list of rows as the mapping built it (read back from the index, a
    /// list is `Json`).
    Rows(&'a [Fields]),
}

impl FieldRef<'_> {
    pub fn to_json(self) -> Json {
        match self {
            FieldRef::Str(s) => Json::String(s.to_string()),
            FieldRef::Null => Json::Null,
            FieldRef::Json(v) => v.clone(),
            FieldRef::Rows(rows) => Json::Array(rows.iter().map(Fields::to_json).collect()),
        }
    }
}

/// Equal when they hold the same value, as packed rows or as JSON.
impl PartialEq for FieldRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (FieldRef::Str(a), FieldRef::Str(b)) => a == b,
            (FieldRef::Null, FieldRef::Null) => true,
            (FieldRef::Json(a), FieldRef::Json(b)) => a == b,
            (FieldRef::Rows(a), FieldRef::Rows(b)) => a == b,
            (FieldRef::Rows(_), FieldRef::Json(_)) | (FieldRef::Json(_), FieldRef::Rows(_)) => {
                self.to_json() == other.to_json()
            }
            _ => false,
        }
    }
}

impl Serialize for FieldRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldRef::Str(v) => s.serialize_str(v),
            FieldRef::Null => s.serialize_unit(),
            FieldRef::Json(v) => v.serialize(s),
            FieldRef::Rows(rows) => s.collect_seq(rows.iter()),
        }
    }
}

fn push_len(buf: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

/// Reads a LEB128 number at `*at`; `None` at the end of a damaged buffer.
fn read_len(buf: &[u8], at: &mut usize) -> Option<usize> {
    let mut n = 0usize;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        n |= usize::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(n);
        }
    }
    None
}

/// One packed entry's value: text and null in place, anything else by index.
enum Raw<'a> {
    Str(&'a str),
    Null,
    Other(usize),
}

/// The entry at `*at`: its name index and value.
fn entry<'a>(buf: &'a [u8], at: &mut usize) -> Option<(usize, Raw<'a>)> {
    let name = read_len(buf, at)?;
    let tag = *buf.get(*at)?;
    *at += 1;
    let value = match tag {
        STR => {
            let len = read_len(buf, at)?;
            let bytes = buf.get(*at..*at + len)?;
            *at += len;
            // Written from a &str by push_text, so valid UTF-8.
            Raw::Str(std::str::from_utf8(bytes).ok()?)
        }
        NULL => Raw::Null,
        _ => Raw::Other(read_len(buf, at)?),
    };
    Some((name, value))
}

/// The values of [`Fields`] in order.
pub struct Iter<'a> {
    names: &'a [Arc<str>],
    buf: &'a [u8],
    other: &'a [Other],
    at: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, FieldRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (name, value) = entry(self.buf, &mut self.at)?;
        let value = match value {
            Raw::Str(s) => FieldRef::Str(s),
            Raw::Null => FieldRef::Null,
            Raw::Other(i) => match self.other.get(i)? {
                Other::Json(v) => FieldRef::Json(v),
                Other::Rows(rows) => FieldRef::Rows(rows),
            },
        };
        Some((self.names.get(name)?, value))
    }
}

impl Fields {
    pub fn new() -> Fields {
        FieldsBuilder::default().finish()
    }

    /// A builder for values named from `names`.
    pub fn builder(names: &Names) -> FieldsBuilder {
        FieldsBuilder::with_names(names)
    }

    /// Back to a builder, to add or replace values.
    pub fn into_builder(self) -> FieldsBuilder {
        FieldsBuilder {
            names: Vec::new(),
            shared: Some(self.names),
            buf: self.buf.into_vec(),
            other: self.other.into_vec(),
        }
    }

    /// Sets `name`, replacing an earlier value of the same name in its place.
    pub fn insert(&mut self, name: &str, value: Json) {
        let mut b = std::mem::take(self).into_builder();
        b.insert(name, value);
        *self = b.finish();
    }

    pub fn get(&self, name: &str) -> Option<FieldRef<'_>> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The index in `other` of the value called `name`, if it is held there.
    fn other_index(&self, name: &str) -> Option<usize> {
        let mut at = 0;
        loop {
            let (n, v) = entry(&self.buf, &mut at)?;
            if let Raw::Other(i) = v {
                if self.names.get(n).is_some_and(|n| &**n == name) {
                    return Some(i);
                }
            }
        }
    }

    /// A value held as JSON (a number, a list read back from the index), to
    /// change in place.
    pub fn get_json_mut(&mut self, name: &str) -> Option<&mut Json> {
        match self.other.get_mut(self.other_index(name)?)? {
            Other::Json(v) => Some(v),
            Other::Rows(_) => None,
        }
    }

    /// Sets `field` of row `row` of the list called `list`, packed or JSON.
    pub fn set_in_row(&mut self, list: &str, row: usize, field: &str, value: Json) {
        let Some(i) = self.other_index(list) else { return };
        match self.other.get_mut(i) {
            Some(Other::Rows(rows)) => {
                if let Some(r) = rows.get_mut(row) {
                    r.insert(field, value);
                }
            }
            Some(Other::Json(Json::Array(rows))) => {
                if let Some(Json::Object(r)) = rows.get_mut(row) {
                    r.insert(field.to_string(), value);
                }
            }
            _ => {}
        }
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter { names: &self.names, buf: &self.buf, other: &self.other, at: 0 }
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// As a JSON object.
    pub fn to_json(&self) -> Json {
        Json::Object(self.iter().map(|(k, v)| (k.to_string(), v.to_json())).collect())
    }
}

impl Default for Fields {
    fn default() -> Fields {
        Fields::new()
    }
}

/// Equal when the same names have the same values in the same order, whatever
/// name table they were built with.
impl PartialEq for Fields {
    fn eq(&self, other: &Fields) -> bool {
        self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>> FromIterator<(K, Json)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, Json)>>(iter: I) -> Fields {
        let mut b = FieldsBuilder::default();
        for (k, v) in iter {
            b.insert(k.as_ref(), v);
        }
        b.finish()
    }
}

impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of mapped values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut b = FieldsBuilder::default();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    // A repeated name replaces the earlier value, as a JSON object does.
                    b.insert(&k, v);
                }
                Ok(b.finish())
            }
        }
        d.deserialize_map(Visit)
    }
}

#[cfg(test)]
mod tests;
