//! [`Fields`]: an item's mapped values, packed into one allocation.
//!
//! A message can map to hundreds of thousands of items (an ADT with 340k DG1s):
//! a `Vec<(Arc<str>, serde_json::Value)>` cost 48 bytes per value plus one
//! allocation per string, about 14 times the bytes of the segment it came from.
//! Here the values are packed into one byte buffer per item, and the names are a
//! table shared with the compiled mapping (one `Arc` per item, no name bytes);
//! values other than text and null (numbers, lists of rows) are kept as JSON beside it.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The names an item's values may have, in the mapping file's order.
pub type Names = Arc<[Arc<str>]>;

/// An item's mapped values, in the order the mapping file lists them; a JSON
/// object when serialised.
///
/// The buffer holds, per value: the name's index in `names` (LEB128), a tag, and
/// for text its length (LEB128) and bytes, for other JSON its index in `other`.
#[derive(Clone)]
pub struct Fields {
    names: Names,
    buf: Box<[u8]>,
    other: Box<[Json]>,
}

const STR: u8 = 0;
const NULL: u8 = 1;
const JSON: u8 = 2;

/// One value of [`Fields`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldRef<'a> {
    Str(&'a str),
    Null,
    Json(&'a Json),
}

impl FieldRef<'_> {
    pub fn to_json(self) -> Json {
        match self {
            FieldRef::Str(s) => Json::String(s.to_string()),
            FieldRef::Null => Json::Null,
            FieldRef::Json(v) => v.clone(),
        }
    }
}

impl Serialize for FieldRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldRef::Str(v) => s.serialize_str(v),
            FieldRef::Null => s.serialize_unit(),
            FieldRef::Json(v) => v.serialize(s),
        }
    }
}

/// Builds [`Fields`] value by value; [`FieldsBuilder::finish`] packs them.
#[derive(Default)]
pub struct FieldsBuilder {
    names: Vec<Arc<str>>,
    /// The table `names` came from, while no name was added to it.
    shared: Option<Names>,
    buf: Vec<u8>,
    other: Vec<Json>,
}

impl FieldsBuilder {
    /// Values named from `names` (a compiled item's field names).
    pub fn with_names(names: &Names) -> FieldsBuilder {
        FieldsBuilder {
            names: Vec::new(),
            shared: Some(names.clone()),
            buf: Vec::with_capacity(256),
            other: Vec::new(),
        }
    }

    fn names(&self) -> &[Arc<str>] {
        self.shared.as_deref().unwrap_or(&self.names)
    }

    /// The index of `name`, added to the table if it is not there.
    fn index(&mut self, name: &str) -> usize {
        if let Some(i) = self.names().iter().position(|n| &**n == name) {
            return i;
        }
        if let Some(shared) = self.shared.take() {
            self.names = shared.to_vec();
        }
        self.names.push(name.into());
        self.names.len() - 1
    }

    /// Appends the value of name number `i` of the table, which the caller knows
    /// is not set yet (a mapping file's field names are the keys of one TOML table).
    pub fn push_at(&mut self, i: usize, value: Json) {
        push_len(&mut self.buf, i);
        match value {
            Json::String(s) => self.push_text(&s),
            Json::Null => self.buf.push(NULL),
            v => {
                self.buf.push(JSON);
                push_len(&mut self.buf, self.other.len());
                self.other.push(v);
            }
        }
    }

    /// Appends text as the value of name number `i`, without a JSON string in between.
    pub fn push_str_at(&mut self, i: usize, value: &str) {
        push_len(&mut self.buf, i);
        self.push_text(value);
    }

    fn push_text(&mut self, s: &str) {
        self.buf.push(STR);
        push_len(&mut self.buf, s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn iter(&self) -> Iter<'_> {
        Iter { names: self.names(), buf: &self.buf, other: &self.other, at: 0 }
    }

    /// Sets `name`, replacing an earlier value of the same name in its place.
    pub fn insert(&mut self, name: &str, value: Json) {
        if !self.iter().any(|(n, _)| n == name) {
            let i = self.index(name);
            self.push_at(i, value);
            return;
        }
        // Rare (a list named like a field, a repeated JSON key): rebuild.
        let entries: Vec<(Arc<str>, Json)> = self.iter().map(|(n, v)| (Arc::from(n), v.to_json())).collect();
        let shared = self.shared.take();
        *self = FieldsBuilder { names: std::mem::take(&mut self.names), shared, ..FieldsBuilder::default() };
        let mut value = Some(value);
        for (n, v) in entries {
            let i = self.index(&n);
            match value.take_if(|_| &*n == name) {
                Some(new) => self.push_at(i, new),
                None => self.push_at(i, v),
            }
        }
    }

    /// The packed fields.
    pub fn finish(mut self) -> Fields {
        // A copy of exactly the bytes used: a shrinking realloc may keep the
        // whole block (mimalloc keeps it while the new size is over half).
        let buf = std::mem::take(&mut self.buf);
        self.finish_from(&buf)
    }

    /// The packed fields; the buffer is handed back cleared, to build the next in.
    pub fn finish_keep(mut self) -> (Fields, Vec<u8>) {
        let buf = std::mem::take(&mut self.buf);
        let fields = self.finish_from(&buf);
        (fields, clear(buf))
    }

    fn finish_from(self, buf: &[u8]) -> Fields {
        let names = self.shared.unwrap_or_else(|| self.names.into());
        Fields { names, buf: Box::from(buf), other: self.other.into_boxed_slice() }
    }

    /// Values named from `names`, built in `buf` (a buffer handed back by
    /// [`Self::finish_keep`] or [`Self::into_json`]).
    pub fn with_buffer(names: &Names, buf: Vec<u8>) -> FieldsBuilder {
        FieldsBuilder { names: Vec::new(), shared: Some(names.clone()), buf, other: Vec::new() }
    }
}

fn clear(mut buf: Vec<u8>) -> Vec<u8> {
    buf.clear();
    buf
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

/// The values of [`Fields`] in order.
pub struct Iter<'a> {
    names: &'a [Arc<str>],
    buf: &'a [u8],
    other: &'a [Json],
    at: usize,
}

impl<'a> Iter<'a> {
    /// The next entry: name index, then the value, or its index in `other`.
    fn entry(&mut self) -> Option<(usize, Result<FieldRef<'a>, usize>)> {
        let (buf, at) = (self.buf, &mut self.at);
        let name = read_len(buf, at)?;
        let tag = *buf.get(*at)?;
        *at += 1;
        let value = match tag {
            STR => {
                let len = read_len(buf, at)?;
                let bytes = buf.get(*at..*at + len)?;
                *at += len;
                // Written from a &str by push_text, so valid UTF-8.
                Ok(FieldRef::Str(std::str::from_utf8(bytes).ok()?))
            }
            NULL => Ok(FieldRef::Null),
            _ => Err(read_len(buf, at)?),
        };
        Some((name, value))
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, FieldRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (name, value) = self.entry()?;
        let value = match value {
            Ok(v) => v,
            Err(i) => FieldRef::Json(self.other.get(i)?),
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

    /// A value held as JSON (a list of rows, a number), to change in place.
    pub fn get_json_mut(&mut self, name: &str) -> Option<&mut Json> {
        let mut it = self.iter();
        let i = loop {
            let (n, v) = it.entry()?;
            if let Err(i) = v {
                if self.names.get(n).is_some_and(|n| &**n == name) {
                    break i;
                }
            }
        };
        self.other.get_mut(i)
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
    pub fn into_json(self) -> Json {
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
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_keep_mapping_order_through_json() {
        let mut f: Fields = [("zeta", json!(1)), ("alpha", json!("a"))].into_iter().collect();
        f.insert("zeta", json!(2));
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, r#"{"zeta":2,"alpha":"a"}"#);
        let back: Fields = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.get("alpha"), Some(FieldRef::Str("a")));
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn every_kind_of_value_round_trips_and_long_names_fit() {
        let long = "n".repeat(300);
        let text = "é".repeat(200);
        let f: Fields = [
            ("s", json!("x")),
            ("null", Json::Null),
            ("n", json!(-3.5)),
            ("rows", json!([{"a": "b"}])),
            (long.as_str(), json!(text)),
        ]
        .into_iter()
        .collect();
        let back: Fields = rmp_serde::from_slice(&rmp_serde::to_vec_named(&f).unwrap()).unwrap();
        assert_eq!(back, f);
        assert_eq!(f.get(&long), Some(FieldRef::Str(&text)));
        assert_eq!(f.get("null"), Some(FieldRef::Null));
        assert_eq!(f.clone().into_json(), serde_json::to_value(&f).unwrap());
        let mut g = f.clone();
        g.get_json_mut("rows").unwrap()[0]["a"] = json!("c");
        assert_eq!(g.get("rows").unwrap().to_json(), json!([{"a": "c"}]));
    }

    #[test]
    fn fields_built_from_a_plans_names_equal_the_same_values_read_back() {
        let names: Names = ["unused", "code", "rows"].into_iter().map(Arc::from).collect();
        let mut b = Fields::builder(&names);
        b.push_str_at(1, "I10");
        b.push_at(2, json!([{"a": 1}]));
        let f = b.finish();
        let back: Fields = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"{"code":"I10","rows":[{"a":1}]}"#);
        let mut g = f.clone();
        g.insert("code", json!("I11"));
        g.insert("new", Json::Null);
        assert_eq!(serde_json::to_string(&g).unwrap(), r#"{"code":"I11","rows":[{"a":1}],"new":null}"#);
    }
}
