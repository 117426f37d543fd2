//! [`Fields`]: an item's mapped values, packed into one allocation.
//!
//! A message can map to hundreds of thousands of items (an ADT with 340k DG1s):
//! a `Vec<(Arc<str>, serde_json::Value)>` cost 48 bytes per value plus one
//! allocation per string, about 14 times the bytes of the segment it came from.
//! Here names and strings are packed into one byte buffer per item; other values
//! (numbers, lists of rows, literal booleans) are kept as JSON beside it.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// An item's mapped values, in the order the mapping file lists them; a JSON
/// object when serialised.
///
/// The buffer holds, per value: the name's length (LEB128) and bytes, a tag, and
/// for a string its length (LEB128) and bytes, for other JSON its index in `other`.
#[derive(Clone, PartialEq, Default)]
pub struct Fields {
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

impl PartialEq<Json> for FieldRef<'_> {
    fn eq(&self, other: &Json) -> bool {
        match (self, other) {
            (FieldRef::Str(a), Json::String(b)) => a == b,
            (FieldRef::Null, Json::Null) => true,
            (FieldRef::Json(a), b) => *a == b,
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
        }
    }
}

/// Builds [`Fields`] value by value; [`FieldsBuilder::finish`] packs them.
#[derive(Default)]
pub struct FieldsBuilder {
    buf: Vec<u8>,
    other: Vec<Json>,
}

impl FieldsBuilder {
    /// Room for about `n` short values.
    pub fn with_capacity(n: usize) -> FieldsBuilder {
        FieldsBuilder { buf: Vec::with_capacity(n * 24), other: Vec::new() }
    }

    /// Appends `name`, which the caller knows is not present yet (a mapping
    /// file's field names are the keys of one TOML table, so unique).
    pub fn push_new(&mut self, name: &str, value: Json) {
        push_len(&mut self.buf, name.len());
        self.buf.extend_from_slice(name.as_bytes());
        match value {
            Json::String(s) => self.push_str_value(&s),
            Json::Null => self.buf.push(NULL),
            v => {
                self.buf.push(JSON);
                push_len(&mut self.buf, self.other.len());
                self.other.push(v);
            }
        }
    }

    /// Appends a string value without building a `serde_json::Value` first.
    pub fn push_str(&mut self, name: &str, value: &str) {
        push_len(&mut self.buf, name.len());
        self.buf.extend_from_slice(name.as_bytes());
        self.push_str_value(value);
    }

    fn push_str_value(&mut self, s: &str) {
        self.buf.push(STR);
        push_len(&mut self.buf, s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// Sets `name`, replacing an earlier value of the same name in its place.
    pub fn insert(&mut self, name: &str, value: Json) {
        let view = Fields { buf: std::mem::take(&mut self.buf).into(), other: std::mem::take(&mut self.other).into() };
        if view.get(name).is_none() {
            *self = view.into_builder();
            self.push_new(name, value);
            return;
        }
        let mut found = false;
        let mut out = FieldsBuilder::with_capacity(0);
        out.buf.reserve(view.buf.len() + name.len() + 8);
        for (n, v) in view.iter() {
            if n == name {
                found = true;
                out.push_new(n, value.clone());
            } else {
                out.push_new(n, v.to_json());
            }
        }
        if !found {
            out.push_new(name, value);
        }
        *self = out;
    }

    /// The packed fields, with no spare capacity.
    pub fn finish(self) -> Fields {
        // A copy of exactly the bytes used: a shrinking realloc may keep the
        // whole block (mimalloc keeps it while the new size is over half).
        Fields { buf: Box::from(&self.buf[..]), other: self.other.into_boxed_slice() }
    }

    /// As a JSON object (a list row inside another item's fields).
    pub fn into_json(self) -> Json {
        self.finish().into_json()
    }
}

fn push_len(buf: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

/// Reads a LEB128 length at `*at`; `None` at the end of a damaged buffer.
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

fn read_str<'a>(buf: &'a [u8], at: &mut usize) -> Option<&'a str> {
    let len = read_len(buf, at)?;
    let bytes = buf.get(*at..*at + len)?;
    *at += len;
    // Written from a &str by push_new/push_str, so valid UTF-8.
    std::str::from_utf8(bytes).ok()
}

/// The values of [`Fields`] in order.
pub struct Iter<'a> {
    fields: &'a Fields,
    at: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, FieldRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (buf, at) = (&self.fields.buf[..], &mut self.at);
        let name = read_str(buf, at)?;
        let tag = *buf.get(*at)?;
        *at += 1;
        let value = match tag {
            STR => FieldRef::Str(read_str(buf, at)?),
            NULL => FieldRef::Null,
            _ => FieldRef::Json(self.fields.other.get(read_len(buf, at)?)?),
        };
        Some((name, value))
    }
}

impl Fields {
    pub fn new() -> Fields {
        Fields::default()
    }

    pub fn builder(n: usize) -> FieldsBuilder {
        FieldsBuilder::with_capacity(n)
    }

    /// Back to a builder, to add or replace values.
    pub fn into_builder(self) -> FieldsBuilder {
        FieldsBuilder { buf: self.buf.into_vec(), other: self.other.into_vec() }
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
        let (buf, mut at) = (&self.buf[..], 0);
        loop {
            let n = read_str(buf, &mut at)?;
            let tag = *buf.get(at)?;
            at += 1;
            match tag {
                STR => {
                    read_str(buf, &mut at)?;
                }
                NULL => {}
                _ => {
                    let i = read_len(buf, &mut at)?;
                    if n == name {
                        return self.other.get_mut(i);
                    }
                }
            }
        }
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter { fields: self, at: 0 }
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
                let mut names: Vec<String> = Vec::new();
                let mut b = FieldsBuilder::default();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    // A repeated name replaces the earlier value, as a JSON object does.
                    if names.contains(&k) {
                        b.insert(&k, v);
                    } else {
                        b.push_new(&k, v);
                        names.push(k);
                    }
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
}
