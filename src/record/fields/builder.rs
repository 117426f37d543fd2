//! [`FieldsBuilder`]: values appended one by one, packed by `finish`.

use std::sync::Arc;

use serde_json::Value as Json;

use super::{entry, push_len, Fields, Names, Other, Raw, JSON, NULL, STR};

/// Builds [`Fields`] value by value; [`FieldsBuilder::finish`] packs them.
#[derive(Default)]
pub struct FieldsBuilder {
    pub(super) names: Vec<Arc<str>>,
    /// The table `names` came from, while no name was added to it.
    pub(super) shared: Option<Names>,
    pub(super) buf: Vec<u8>,
    pub(super) other: Vec<Other>,
}

impl FieldsBuilder {
    /// Values named from `names` (a compiled item's field names).
    pub fn with_names(names: &Names) -> FieldsBuilder {
        FieldsBuilder::with_buffer(names, Vec::with_capacity(256))
    }

    /// Values named from `names`, built in `buf` (a buffer handed back by
    /// [`Self::finish_keep`]).
    pub fn with_buffer(names: &Names, buf: Vec<u8>) -> FieldsBuilder {
        FieldsBuilder { names: Vec::new(), shared: Some(names.clone()), buf, other: Vec::new() }
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
        self.put(i, Other::Json(value));
    }

    /// Appends text as the value of name number `i`, without a JSON string in between.
    pub fn push_str_at(&mut self, i: usize, value: &str) {
        push_len(&mut self.buf, i);
        self.push_text(value);
    }

    /// Appends a list of rows (each packed with its list's names) as the value
    /// of name number `i`.
    pub fn push_rows_at(&mut self, i: usize, rows: Vec<Fields>) {
        self.put(i, Other::Rows(rows.into_boxed_slice()));
    }

    fn put(&mut self, i: usize, value: Other) {
        push_len(&mut self.buf, i);
        match value {
            Other::Json(Json::String(s)) => self.push_text(&s),
            Other::Json(Json::Null) => self.buf.push(NULL),
            v => {
                self.buf.push(JSON);
                push_len(&mut self.buf, self.other.len());
                self.other.push(v);
            }
        }
    }

    fn push_text(&mut self, s: &str) {
        self.buf.push(STR);
        push_len(&mut self.buf, s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// Sets `name`, replacing an earlier value of the same name in its place.
    pub fn insert(&mut self, name: &str, value: Json) {
        self.insert_other(name, Other::Json(value));
    }

    /// Sets `name` to a list of rows, replacing an earlier value in its place.
    pub fn insert_rows(&mut self, name: &str, rows: Vec<Fields>) {
        self.insert_other(name, Other::Rows(rows.into_boxed_slice()));
    }

    fn insert_other(&mut self, name: &str, value: Other) {
        let at = self.names().iter().position(|n| &**n == name);
        let mut cursor = 0;
        let set = at.is_some_and(|at| std::iter::from_fn(|| entry(&self.buf, &mut cursor)).any(|(n, _)| n == at));
        if !set {
            let i = self.index(name);
            self.put(i, value);
            return;
        }
        // Rare (a list named like a field, a repeated JSON key): rebuild, the
        // first value of that name replaced, every other value moved as it is.
        let buf = std::mem::take(&mut self.buf);
        let mut other: Vec<Option<Other>> = std::mem::take(&mut self.other).into_iter().map(Some).collect();
        let mut value = Some(value);
        let mut cursor = 0;
        while let Some((n, raw)) = entry(&buf, &mut cursor) {
            if Some(n) == at {
                if let Some(new) = value.take() {
                    self.put(n, new);
                    continue;
                }
            }
            match raw {
                Raw::Str(s) => self.push_str_at(n, s),
                Raw::Null => self.put(n, Other::Json(Json::Null)),
                Raw::Other(k) => {
                    if let Some(v) = other.get_mut(k).and_then(Option::take) {
                        self.put(n, v);
                    }
                }
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
        let mut buf = std::mem::take(&mut self.buf);
        let fields = self.finish_from(&buf);
        buf.clear();
        (fields, buf)
    }

    fn finish_from(self, buf: &[u8]) -> Fields {
        let names = self.shared.unwrap_or_else(|| self.names.into());
        Fields { names, buf: Box::from(buf), other: self.other.into_boxed_slice() }
    }
}
