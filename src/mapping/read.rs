//! Reading a message for a [`Run`]: which segment a path names in the current
//! scope, the value at a path (through a small cache of field tables), `when`
//! conditions and templates. Nothing here builds items; [`super::apply`] does.

use super::apply::{Run, TABLES};
use super::path::{Path, Rep};
use super::plan::{Cond, Part, ProvField, Template};
use super::scope::Scope;
use crate::hl7::{Field, Segment, Value};

impl<'a> Run<'_, 'a> {
    /// Field `n` of `seg`, through the per-segment table.
    pub(super) fn field(&mut self, seg: &Segment<'a>, n: usize) -> Field<'a> {
        if self.uncached {
            return seg.field(n);
        }
        let i = seg.index();
        if let Some((_, t)) = self.tables.iter().find(|(at, _)| *at == i) {
            return t.field(n);
        }
        let table = seg.field_table();
        let field = table.field(n);
        if self.tables.len() < TABLES {
            self.tables.push((i, table));
        } else {
            self.tables[self.evict] = (i, table);
            self.evict = (self.evict + 1) % TABLES;
        }
        field
    }

    pub(super) fn holds(&mut self, cond: Option<&Cond>, scope: Scope<'a>) -> bool {
        let Some(cond) = cond else { return true };
        if !cond.events.is_empty() && !cond.events.iter().any(|e| e.as_bytes() == self.event) {
            return false;
        }
        if !cond.any {
            return self.field_holds(cond, scope);
        }
        let Some((path, _)) = cond.field.as_ref().or(cond.field_not.as_ref()) else { return true };
        // `any`: each segment of the path's name in the item's group (or the
        // message) in turn, as if it were the item.
        let (from, to) = match scope.item {
            Some(item) => (item.index(), scope.group_end),
            None => (0, self.msg.segment_count()),
        };
        let found: Vec<usize> = self.layout.within(path.segment, from, to).collect();
        // One field of each of many segments (every OBX of a report): read
        // directly, so the cache keeps the tables of the segments read in bulk.
        self.uncached = true;
        let holds = found.into_iter().any(|i| {
            let item = self.msg.segment(i);
            let one = Scope { item, group_end: i + 1, message_end: scope.message_end, list: None };
            item.is_some() && self.field_holds(cond, one)
        });
        self.uncached = false;
        holds
    }

    fn field_holds(&mut self, cond: &Cond, scope: Scope<'a>) -> bool {
        if let Some((path, values)) = &cond.field_not {
            if let Some((_, v, _)) = self.resolve(path, scope) {
                if values.iter().any(|x| *x == v.text()) {
                    return false;
                }
            }
        }
        match &cond.field {
            None => true,
            Some((path, values)) => match self.resolve(path, scope) {
                Some((_, v, _)) if values.is_empty() => !v.is_empty(),
                Some((_, v, _)) => values.iter().any(|x| *x == v.text()),
                None => false,
            },
        }
    }

    /// The template's text, trimmed; `None` if no part had a value. With `{seq}`,
    /// also the text around each `{seq}` (see [`SeqRef`]).
    /// Whether every path of a template has a value here.
    pub(super) fn complete(&mut self, t: &Template, scope: Scope<'a>) -> bool {
        t.0.iter().all(|part| match part {
            Part::Path(p) => self.resolve(p, scope).is_some_and(|(_, v, _)| !v.is_empty() && !v.is_null()),
            _ => true,
        })
    }

    pub(super) fn template(&mut self, t: &Template, scope: Scope<'a>) -> Option<(String, Option<Vec<String>>)> {
        let mut out = String::with_capacity(32);
        let mut seqs = Vec::new();
        let mut any = false;
        for part in &t.0 {
            match part {
                Part::Text(s) => out.push_str(s),
                Part::Path(p) => {
                    if let Some((_, v, _)) = self.resolve(p, scope).filter(|(_, v, _)| !v.is_empty() && !v.is_null()) {
                        out.push_str(&v.text());
                        any = true;
                    }
                }
                Part::Prov(f) => {
                    any = true;
                    match f {
                        ProvField::Seq => {
                            let start = out.len();
                            out.push_str(&self.prov.seq.to_string());
                            seqs.push((start, out.len()));
                        }
                        ProvField::ControlId => out.push_str(&self.prov.control_id),
                        ProvField::SendingApp => out.push_str(&self.prov.sending_app),
                        ProvField::SendingFacility => out.push_str(&self.prov.sending_facility),
                        ProvField::MessageType => out.push_str(&self.prov.message_type),
                    }
                }
            }
        }
        if !any {
            return None;
        }
        let pieces = seq_pieces(&seqs, &out);
        // Most renderings need no trim: keep the buffer rather than copy it.
        let text = if out.trim().len() == out.len() { out } else { out.trim().to_string() };
        Some((text, pieces))
    }

    /// The first path with a non-empty value.
    pub(super) fn first<'p>(&mut self, paths: &'p [Path], scope: Scope<'a>) -> Option<(Segment<'a>, Value<'a>, usize)> {
        paths.iter().find_map(|p| self.resolve(p, scope).filter(|(_, v, _)| !v.is_empty()))
    }

    pub(super) fn segment(&self, p: &Path, scope: Scope<'a>) -> Option<Segment<'a>> {
        let index = match p.occurrence {
            Some(n) => self.layout.nth(p.segment, n as usize),
            None => self.layout.find(p.segment, &scope),
        };
        self.msg.segment(index?)
    }

    /// The value at `p`, with its segment and repetition number.
    pub(super) fn resolve(&mut self, p: &Path, scope: Scope<'a>) -> Option<(Segment<'a>, Value<'a>, usize)> {
        let seg = self.segment(p, scope)?;
        self.mark(&seg, p.field);
        let field = self.field(&seg, p.field as usize);
        let (rep, n) = match &p.repetition {
            Rep::First => (field.repetition(1), 1),
            Rep::Index(n) => (field.repetition(*n as usize), *n as usize),
            Rep::Where { component, value } => {
                let mut reps = field.repetitions().enumerate();
                let (i, r) = reps.find(|(_, r)| r.component(*component as usize).text() == value.as_str())?;
                (r, i + 1)
            }
        };
        let v = match (p.component, p.subcomponent) {
            (0, _) => rep,
            (c, 0) => rep.component(c as usize),
            (c, s) => rep.component(c as usize).subcomponent(s as usize),
        };
        Some((seg, v, n))
    }

    pub(super) fn mark(&mut self, seg: &Segment<'_>, field: u16) {
        if let Some(reads) = self.reads.as_deref_mut() {
            reads.push((seg.index(), field as usize));
        }
    }
}

/// The text around each `{seq}` of `full` (at byte ranges `seqs`), trimmed as the
/// whole is, so that joining it with any seq gives what the template renders for
/// that seq: the digits are never whitespace, so the trim stops at or before them.
fn seq_pieces(seqs: &[(usize, usize)], full: &str) -> Option<Vec<String>> {
    let (&(first, _), &(_, last)) = (seqs.first()?, seqs.last()?);
    let mut out = Vec::with_capacity(seqs.len() + 1);
    out.push(full[..first].trim_start().to_string());
    out.extend(seqs.windows(2).map(|w| full[w[0].1..w[1].0].to_string()));
    out.push(full[last..].trim_end().to_string());
    Some(out)
}
