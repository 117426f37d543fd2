//! Plan + message -> identity and items ([`super::read`] reads values,
//! [`super::identity`] the identity, [`super::version`] each item's version).
//! Paths are already indices: this walks the
//! zero-copy [`Message`] and allocates only the output values (strings, JSON maps).
//! Which segment a path reads is decided by [`super::scope`]: an item of a `for_each`
//! group reads its own group and the message-level segments, never a sibling group,
//! and every lookup is a binary search, so mapping is linear in the message size.
//! The one exception is `recordhub check`, which passes a `reads` vector to learn
//! which fields no target read.

use std::sync::Arc;

use serde_json::Value as Json;

use super::convert::convert;
use super::path::Path;
use super::plan::{FieldPlan, ItemPlan, Part, Plan, Source, Template, Ty};
use super::scope::{Layout, ListScope, Scope};
use crate::ack::{Location, Problem};
use crate::hl7::{FieldTable, Message, Segment};
use crate::record::{FieldsBuilder, Item, Mapped, Names, Provenance, SeqAt, SeqRef};

/// How many segments' field tables a run keeps: the item's segment, a list row,
/// and the message-level segments a plan reads (MSH, PID, PV1, ...).
pub(super) const TABLES: usize = 8;

/// One application of a plan to a message.
pub struct Run<'m, 'a> {
    pub(super) msg: &'m Message<'a>,
    pub(super) prov: Arc<Provenance>,
    /// `(segment index, field)` of every field read, for `check`; `None` in production.
    pub(super) reads: Option<&'m mut Vec<(usize, usize)>>,
    /// Optional values left out because they did not fit their type.
    pub(super) warnings: Vec<String>,
    /// Field boundaries of the segments read last, by segment index: a plan
    /// reads dozens of fields of PID and PV1, and `Segment::field` would rescan
    /// from the start for each. Bounded: one table per segment of a 340k-DG1
    /// message cost more memory than the message.
    pub(super) tables: Vec<(usize, FieldTable<'a>)>,
    /// The slot the next new table replaces once `tables` is full.
    pub(super) evict: usize,
    /// MSH-9.2, which every `when.events` condition compares.
    pub(super) event: &'a [u8],
    pub(super) layout: Layout,
    /// Values rendered from `{seq}` templates, so [`Mapped::assign_seq`] can redo them.
    seq_refs: Vec<SeqRef>,
    /// `{seq}` fields of the fields being built, located once the caller knows where.
    pending: Vec<(Arc<str>, Vec<String>)>,
    /// The buffer items are packed in, reused: each item gets an exact copy.
    scratch: Vec<u8>,
    /// The same for list rows, which are built while their item is.
    row_scratch: Vec<u8>,
    /// Which fields of the item being built have a value (for groups), by index.
    set: Vec<bool>,
    /// Names of the `append` fields the item being built carries.
    appended: Vec<std::sync::Arc<str>>,
    /// The plan's clinical time, computed once per message.
    message_time: Option<i64>,
    /// Read fields without the table cache (an `any` condition).
    pub(super) uncached: bool,
}

impl<'m, 'a> Run<'m, 'a> {
    pub fn new(msg: &'m Message<'a>, prov: &Arc<Provenance>, reads: Option<&'m mut Vec<(usize, usize)>>) -> Self {
        let event = msg.header().field(9).component(2).raw();
        // Shared by every item of the message: one Arc clone, no copies.
        let prov = prov.clone();
        let (warnings, tables, layout) = (Vec::new(), Vec::with_capacity(TABLES), Layout::new(msg));
        let (seq_refs, pending, scratch, row_scratch) = (Vec::new(), Vec::new(), Vec::with_capacity(256), Vec::new());
        let (set, appended) = (Vec::new(), Vec::new());
        Run {
            msg,
            prov,
            reads,
            warnings,
            tables,
            evict: 0,
            event,
            layout,
            seq_refs,
            pending,
            scratch,
            row_scratch,
            set,
            appended,
            message_time: None,
            uncached: false,
        }
    }

    /// Maps the message with `plan`.
    ///
    /// # Errors
    /// A [`Problem`] 101 (required value missing), 102 (bad date/number) or 103 (value
    /// not in a strict table), located at the field.
    pub fn plan(&mut self, plan: &Plan) -> Result<Mapped, Problem> {
        let identity = self.identity(&plan.identity);
        self.message_time = self.time(&plan.time, Scope::default());
        let mut items = Vec::with_capacity(plan.items.len());
        for item in &plan.items {
            self.item(item, &mut items)?;
        }
        let (warnings, seq_refs) = (std::mem::take(&mut self.warnings), std::mem::take(&mut self.seq_refs));
        Ok(Mapped { identity, items, warnings, seq_refs, ignored: false, governed: Default::default() })
    }

    fn item(&mut self, plan: &ItemPlan, out: &mut Vec<Item>) -> Result<(), Problem> {
        let Some(name) = plan.for_each else {
            return self.one_item(plan, Scope::default(), out);
        };
        let places = self.layout.range(name);
        out.reserve(places.len());
        let count = self.msg.segment_count();
        let message_end = self.layout.at(places.start).filter(|_| !places.is_empty()).unwrap_or(count);
        for k in places.clone() {
            let Some(start) = self.layout.at(k) else { continue };
            let group_end = (k + 1 < places.end).then(|| self.layout.at(k + 1)).flatten().unwrap_or(count);
            let scope = Scope { item: self.msg.segment(start), group_end, message_end, list: None };
            self.one_item(plan, scope, out)?;
        }
        Ok(())
    }

    fn one_item(&mut self, plan: &ItemPlan, scope: Scope<'a>, out: &mut Vec<Item>) -> Result<(), Problem> {
        if !self.holds(plan.when.as_ref(), scope) {
            return Ok(());
        }
        // A list of id templates: the first whose every path has a value (so
        // `["{OBR-3.1}^{OBR-4.1}", "{OBR-2.1}^{OBR-4.1}"]` falls back to the
        // placer number when the filler's is empty); the last one as it renders.
        let last = plan.id.len().saturating_sub(1);
        let rendered = plan.id.iter().enumerate().find_map(|(i, t)| {
            if i < last && !self.complete(t, scope) {
                return None;
            }
            self.template(t, scope).filter(|(id, _)| !id.is_empty())
        });
        // No natural id (e.g. no PV1-19 on an A28): there is no such item.
        let Some((id, id_pieces)) = rendered else { return Ok(()) };
        let at = out.len();
        if let Some(pieces) = id_pieces {
            self.seq_refs.push(SeqRef { item: at, at: SeqAt::Id, pieces });
        }
        self.pending.clear();
        self.appended.clear();
        let groups = &plan.version.groups;
        if !groups.is_empty() {
            self.set.clear();
            self.set.resize(plan.fields.len(), false);
        }
        let mut fields = FieldsBuilder::with_buffer(&plan.names, std::mem::take(&mut self.scratch));
        self.fields(&plan.fields, &mut fields, scope, !groups.is_empty())?;
        if !groups.is_empty() {
            super::version::fill_groups(groups, &self.set, &mut fields);
        }
        for (field, pieces) in std::mem::take(&mut self.pending) {
            self.seq_refs.push(SeqRef { item: at, at: SeqAt::Field(field), pieces });
        }
        for list in &plan.lists {
            let (from, to) = match scope.item {
                Some(seg) => (seg.index() + 1, scope.group_end),
                None => (0, self.msg.segment_count()),
            };
            let rows_at: Vec<usize> = self.layout.within(list.for_each, from, to).collect();
            let head_end = rows_at.first().copied().unwrap_or(to);
            let mut rows = Vec::with_capacity(rows_at.len());
            for (n, &i) in rows_at.iter().enumerate() {
                let Some(row) = self.msg.segment(i) else { continue };
                let row_end = rows_at.get(n + 1).copied().unwrap_or(to);
                let list_scope = Scope { list: Some(ListScope { row, row_end, head_end }), ..scope };
                if list.drop.is_some() && self.holds(list.drop.as_ref(), list_scope) {
                    continue;
                }
                let mut row = FieldsBuilder::with_buffer(&list.names, std::mem::take(&mut self.row_scratch));
                self.fields(&list.fields, &mut row, list_scope, false)?;
                for (field, pieces) in std::mem::take(&mut self.pending) {
                    let at = SeqAt::Row { list: list.name.clone(), row: rows.len(), field };
                    self.seq_refs.push(SeqRef { item: out.len(), at, pieces });
                }
                let (row, buf) = row.finish_keep();
                self.row_scratch = buf;
                rows.push(row);
            }
            match list.shadows {
                true => fields.insert_rows(&list.name, rows),
                false => fields.push_rows_at(list.index, rows),
            }
        }
        let (fields, buf) = fields.finish_keep();
        self.scratch = buf;
        let mut version = self.version(&plan.version, scope, self.message_time);
        version.append = self.appended.iter().map(|n| n.to_string()).collect();
        let item = Item { kind: plan.kind, id, fields, provenance: self.prov.clone(), version, scopes: Vec::new() };
        let superseded = self.superseded(plan, &item, scope);
        out.push(item);
        out.extend(superseded);
        Ok(())
    }

    /// Maps `plans` into `out`; with `track`, notes in `self.set` which
    /// fields got a value (for groups).
    fn fields(
        &mut self,
        plans: &[FieldPlan],
        out: &mut impl Out,
        scope: Scope<'a>,
        track: bool,
    ) -> Result<(), Problem> {
        for f in plans {
            if !self.holds(f.when.as_ref(), scope) {
                continue;
            }
            let (value, at) = match &f.source {
                Source::Literal(v) => (Some(v.clone()), None),
                Source::Append { fields, names } => {
                    let mut entry = Row::new(names);
                    self.fields(fields, &mut entry, scope, false)?;
                    if entry.entries.is_empty() {
                        (None, None)
                    } else {
                        self.appended.push(f.name.clone());
                        (Some(entry.into_json()), None)
                    }
                }
                Source::Template(t) => match self.template(t, scope) {
                    Some((s, pieces)) if !s.is_empty() => {
                        if let Some(pieces) = pieces {
                            self.pending.push((f.name.clone(), pieces));
                        }
                        (Some(Json::String(s)), None)
                    }
                    _ => (None, first_path(t)),
                },
                Source::Paths(paths) => match self.first(paths, scope) {
                    Some((_, v, _)) if v.is_null() => (Some(Json::Null), None),
                    // Most values are plain text: packed without a JSON string in between.
                    Some((_, v, _)) if matches!(f.ty, Ty::String) => {
                        out.text(f.index, &v.text());
                        if track {
                            self.note_set(f.index);
                        }
                        continue;
                    }
                    Some((seg, v, rep)) => {
                        let p = paths_first(paths, seg);
                        match convert(&f.ty, &v.text()) {
                            Ok(converted) => (Some(converted), None),
                            // Required fields and strict tables reject the
                            // message (AE); an optional value that does not
                            // fit is left out with a warning.
                            Err(bad) if f.required || bad.code == 103 => {
                                return Err(problem(bad.code, &f.name, p, Some((seg, rep)), &bad.why));
                            }
                            Err(bad) => {
                                let at = p.map(|p| p.to_string()).unwrap_or_default();
                                self.warnings.push(format!("{} ({at}): {}; left out", f.name, bad.why));
                                (None, None)
                            }
                        }
                    }
                    None => (None, paths.first()),
                },
            };
            match value {
                Some(v) => {
                    out.value(f.index, v);
                    if track {
                        self.note_set(f.index);
                    }
                }
                None if f.required => {
                    let seg = at.and_then(|p| self.segment(p, scope));
                    return Err(problem(101, &f.name, at, seg.map(|s| (s, 1)), "required value is missing"));
                }
                None => {}
            }
        }
        Ok(())
    }

    fn note_set(&mut self, i: usize) {
        if let Some(s) = self.set.get_mut(i) {
            *s = true;
        }
    }
}

/// Where [`Run::fields`] puts values: an item's packed fields, or a list row.
trait Out {
    /// Text as the value of name number `i`.
    fn text(&mut self, i: usize, s: &str);
    /// Any value of name number `i`.
    fn value(&mut self, i: usize, v: Json);
}

impl Out for FieldsBuilder {
    fn text(&mut self, i: usize, s: &str) {
        self.push_str_at(i, s);
    }

    fn value(&mut self, i: usize, v: Json) {
        self.push_at(i, v);
    }
}

/// An `append` entry: a JSON object inside its item's fields (folding
/// appends it to the list of earlier entries), built as one directly.
struct Row<'p> {
    names: &'p Names,
    /// Collected, then built into the object at once: cheaper than inserting
    /// one by one into serde_json's sorted map.
    entries: Vec<(String, Json)>,
}

impl<'p> Row<'p> {
    fn new(names: &'p Names) -> Row<'p> {
        Row { names, entries: Vec::with_capacity(names.len()) }
    }

    /// The row as a JSON object; a name given twice keeps its last value,
    /// as inserting would.
    fn into_json(self) -> Json {
        Json::Object(self.entries.into_iter().collect())
    }
}

impl Out for Row<'_> {
    fn text(&mut self, i: usize, s: &str) {
        self.value(i, Json::String(s.to_string()));
    }

    fn value(&mut self, i: usize, v: Json) {
        if let Some(name) = self.names.get(i) {
            self.entries.push((name.to_string(), v));
        }
    }
}

fn first_path(t: &Template) -> Option<&Path> {
    t.0.iter().find_map(|p| match p {
        Part::Path(p) => Some(p),
        _ => None,
    })
}

fn paths_first<'p>(paths: &'p [Path], seg: Segment<'_>) -> Option<&'p Path> {
    paths.iter().find(|p| p.segment == seg.raw()[..3]).or(paths.first())
}

fn problem(code: u16, name: &str, path: Option<&Path>, at: Option<(Segment<'_>, usize)>, why: &str) -> Problem {
    let Some(p) = path else {
        return Problem::new(code, format!("{name}: {why}"));
    };
    let location = Location {
        segment: p.segment_name().to_string(),
        sequence: at.map_or(0, |(s, _)| s.occurrence()),
        field: p.field as usize,
        repetition: at.map_or(0, |(_, r)| r),
        component: p.component as usize,
        subcomponent: p.subcomponent as usize,
    };
    Problem::new(code, format!("{name} ({p}): {why}")).at(location)
}
