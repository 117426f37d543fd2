//! [`Fields`] as the index stores them (`store/versions.rs`): the packed
//! buffer as bytes, with the names once per item and once per list, where
//! the JSON-like form wrote every name of every value of every row. An ORU's
//! thirty observations were two thirds names; encoding them value by value
//! was a fifth of the index writer's time.
//!
//! What is read back is checked whole ([`Fields::from_stored`]): a damaged
//! value is an error, never a record cut short.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{entry, Fields, Names, Other, Raw};

/// Serialises as the stored form.
pub struct Stored<'a>(pub &'a Fields);

#[derive(Serialize)]
struct Out<'a> {
    n: &'a [Arc<str>],
    b: Bytes<'a>,
    o: Vec<OtherOut<'a>>,
}

#[derive(Serialize)]
enum OtherOut<'a> {
    /// JSON; also rows that do not share one names table (one changed since).
    J(Cow<'a, Json>),
    /// Rows sharing one names table (as a mapping builds them).
    R { n: &'a [Arc<str>], r: Vec<RowOut<'a>> },
}

/// A row's bytes and the values it holds aside (a tuple: no names per row).
#[derive(Serialize)]
struct RowOut<'a>(Bytes<'a>, Vec<OtherOut<'a>>);

struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

fn others(other: &[Other]) -> Vec<OtherOut<'_>> {
    other
        .iter()
        .map(|o| match o {
            Other::Json(v) => OtherOut::J(Cow::Borrowed(v)),
            Other::Rows(rows) => match rows.first() {
                Some(first) if rows.iter().all(|r| Arc::ptr_eq(&r.names, &first.names)) => OtherOut::R {
                    n: &first.names,
                    r: rows.iter().map(|r| RowOut(Bytes(&r.buf), others(&r.other))).collect(),
                },
                _ => OtherOut::J(Cow::Owned(Json::Array(rows.iter().map(Fields::to_json).collect()))),
            },
        })
        .collect()
}

impl Serialize for Stored<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        Out { n: &f.names, b: Bytes(&f.buf), o: others(&f.other) }.serialize(s)
    }
}

/// The stored form as read, to be checked by [`Fields::from_stored`].
#[derive(Deserialize)]
pub struct StoredIn {
    n: Vec<Arc<str>>,
    b: BytesIn,
    o: Vec<OtherIn>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Clone))]
enum OtherIn {
    J(Json),
    R { n: Vec<Arc<str>>, r: Vec<RowIn> },
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Clone))]
struct RowIn(BytesIn, Vec<OtherIn>);

#[cfg_attr(test, derive(Clone))]
struct BytesIn(Vec<u8>);

impl<'de> Deserialize<'de> for BytesIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BytesIn, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = BytesIn;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("packed field bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<BytesIn, E> {
                Ok(BytesIn(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<BytesIn, E> {
                Ok(BytesIn(v))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

/// Packed fields whose every entry parses, names a name of `names` and,
/// if held aside, a value of `other`.
fn checked(names: Names, buf: Vec<u8>, other: Vec<Other>) -> Option<Fields> {
    let mut at = 0;
    while at < buf.len() {
        let (name, value) = entry(&buf, &mut at)?;
        let fits = name < names.len() && !matches!(value, Raw::Other(i) if i >= other.len());
        if !fits {
            return None;
        }
    }
    Some(Fields { names, buf: buf.into_boxed_slice(), other: other.into_boxed_slice() })
}

fn others_in(other: Vec<OtherIn>) -> Option<Vec<Other>> {
    other
        .into_iter()
        .map(|o| match o {
            OtherIn::J(v) => Some(Other::Json(v)),
            OtherIn::R { n, r } => {
                let names: Names = n.into();
                let rows = r.into_iter().map(|RowIn(b, o)| checked(names.clone(), b.0, others_in(o)?));
                Some(Other::Rows(rows.collect::<Option<Box<[Fields]>>>()?))
            }
        })
        .collect()
}

impl Fields {
    /// The fields a [`Stored`] wrote; `None` if they are damaged.
    pub fn from_stored(s: StoredIn) -> Option<Fields> {
        checked(s.n.into(), s.b.0, others_in(s.o)?)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn round_trip(f: &Fields) -> Option<Fields> {
        let bytes = rmp_serde::to_vec_named(&Stored(f)).unwrap();
        Fields::from_stored(rmp_serde::from_slice(&bytes).unwrap())
    }

    /// A result with `extra` more rows of text after two (text and a number).
    fn result(extra: usize) -> Fields {
        let row_names: Names =
            ["code", "value", "units", "range", "abnormal_flag", "status"].into_iter().map(Arc::from).collect();
        let more = (0..extra).map(|i| ("NA", json!(format!("13{i}"))));
        let rows = [("HB", json!("128")), ("K", json!(5.6))]
            .into_iter()
            .chain(more)
            .map(|(code, value)| {
                let mut r = Fields::builder(&row_names);
                r.push_str_at(0, code);
                r.push_at(1, value);
                for (i, v) in [(2, "mmol/L"), (3, "133-146"), (4, "N"), (5, "final")] {
                    r.push_str_at(i, v);
                }
                r.finish()
            })
            .collect();
        let names: Names = ["test", "status", "observations", "number"].into_iter().map(Arc::from).collect();
        let mut b = Fields::builder(&names);
        b.push_str_at(0, "FBC");
        b.push_at(1, Json::Null);
        b.push_rows_at(2, rows);
        b.push_at(3, json!(3));
        b.finish()
    }

    #[test]
    fn stored_fields_read_back_the_same_and_smaller_than_named_values() {
        let f = result(0);
        let back = round_trip(&f).unwrap();
        assert_eq!(back, f);
        assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(&f).unwrap());
        assert!(matches!(back.get("observations"), Some(crate::record::FieldRef::Rows(_))), "rows stay packed");
        // A row changed since mapping has a names table of its own: stored as JSON.
        let mut changed = f.clone();
        changed.set_in_row("observations", 0, "ref", json!("journal:9"));
        assert_eq!(round_trip(&changed).unwrap(), changed);
        // Fields read from JSON (an older item, a test) store too.
        let from_json: Fields = [("observations", json!([{"code": "HB"}])), ("n", json!(1))].into_iter().collect();
        assert_eq!(round_trip(&from_json).unwrap(), from_json);
        // Thirty observations: the names once, not thirty times.
        let oru = result(28);
        assert_eq!(round_trip(&oru).unwrap(), oru);
        let named = rmp_serde::to_vec_named(&oru).unwrap().len();
        let stored = rmp_serde::to_vec_named(&Stored(&oru)).unwrap().len();
        assert!(stored * 3 < named * 2, "stored {stored} bytes, named {named}");
    }

    #[test]
    fn damaged_stored_fields_are_refused_not_cut_short() {
        let f = result(0);
        let good = StoredIn { n: f.names.to_vec(), b: BytesIn(f.buf.to_vec()), o: Vec::new() };
        assert!(Fields::from_stored(good).is_none(), "an entry names a value that is not there");
        let short = StoredIn { n: f.names[..1].to_vec(), b: BytesIn(f.buf.to_vec()), o: Vec::new() };
        assert!(Fields::from_stored(short).is_none(), "an entry names a name that is not there");
        let mut cut = f.buf.to_vec();
        cut.truncate(cut.len() - 1);
        let cut = StoredIn { n: f.names.to_vec(), b: BytesIn(cut), o: vec![OtherIn::J(json!(1)); 2] };
        assert!(Fields::from_stored(cut).is_none(), "the last entry is cut short");
        let mut bad_utf8 = f.buf.to_vec();
        bad_utf8[3] = 0xff; // the first byte of "FBC"
        let bad = StoredIn { n: f.names.to_vec(), b: BytesIn(bad_utf8), o: vec![OtherIn::J(json!(1)); 2] };
        assert!(Fields::from_stored(bad).is_none(), "text that is not UTF-8");
    }
}
