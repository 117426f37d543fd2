//! Plan + message -> identity and items. Paths are already indices: this walks the
//! zero-copy [`Message`] and allocates only the output values (strings, JSON maps).
//! The one exception is `recordhub check`, which passes a `reads` vector to learn
//! which fields no target read.

use std::sync::Arc;

use serde_json::Value as Json;

use super::compile::{Cond, FieldPlan, ItemPlan, Part, Plan, ProvField, Source, Template, Ty};
use super::path::{Path, Rep};
use crate::ack::{Location, Problem};
use crate::hl7::{Field, FieldTable, Message, Segment, Value};
use crate::record::{Fields, Identity, Item, LocalId, Mapped, Provenance};

/// A value that does not fit its type: table 0357 code (102 or 103) and why.
#[derive(Debug)]
pub struct Bad {
    pub code: u16,
    pub why: String,
}

/// Where paths are read: the current `for_each` segment and its group, the current
/// list segment. Segments outside these are read from the whole message.
#[derive(Clone, Copy, Default)]
struct Scope<'a> {
    item: Option<Segment<'a>>,
    group_end: usize,
    list: Option<Segment<'a>>,
}

/// One application of a plan to a message.
pub struct Run<'m, 'a> {
    msg: &'m Message<'a>,
    prov: Arc<Provenance>,
    /// `(segment index, field)` of every field read, for `check`; `None` in production.
    reads: Option<&'m mut Vec<(usize, usize)>>,
    /// Optional values left out because they did not fit their type.
    warnings: Vec<String>,
    /// Field boundaries per segment index, found the first time a field of
    /// that segment is read: a plan reads dozens of fields of PID and PV1,
    /// and `Segment::field` would rescan from the start for each.
    tables: Vec<Option<FieldTable<'a>>>,
    /// MSH-9.2, which every `when.events` condition compares.
    event: &'a [u8],
}

impl<'m, 'a> Run<'m, 'a> {
    pub fn new(msg: &'m Message<'a>, prov: &Arc<Provenance>, reads: Option<&'m mut Vec<(usize, usize)>>) -> Self {
        let event = msg.header().field(9).component(2).raw();
        // Shared by every item of the message: one Arc clone, no copies.
        let prov = prov.clone();
        Run { msg, prov, reads, warnings: Vec::new(), tables: vec![None; msg.segment_count()], event }
    }

    /// Field `n` of `seg`, through the per-segment table.
    fn field(&mut self, seg: &Segment<'a>, n: usize) -> Field<'a> {
        match self.tables.get_mut(seg.index()) {
            Some(slot) => slot.get_or_insert_with(|| seg.field_table()).field(n),
            None => seg.field(n),
        }
    }

    /// Maps the message with `plan`.
    ///
    /// # Errors
    /// A [`Problem`] 101 (required value missing), 102 (bad date/number) or 103 (value
    /// not in a strict table), located at the field.
    pub fn plan(&mut self, plan: &Plan) -> Result<Mapped, Problem> {
        let identity = self.identity(plan);
        let mut items = Vec::with_capacity(plan.items.len());
        for item in &plan.items {
            self.item(item, &mut items)?;
        }
        Ok(Mapped { identity, items, warnings: std::mem::take(&mut self.warnings) })
    }

    fn identity(&mut self, plan: &Plan) -> Identity {
        let top = Scope::default();
        let id = &plan.identity;
        let mut nhs_rep = None;
        let mut nhs_number = None;
        for p in &id.nhs_number {
            if let Some((_, v, rep)) = self.resolve(p, top).filter(|(_, v, _)| !v.is_empty()) {
                nhs_number = Some(v.text().trim().to_string());
                nhs_rep = Some((p.field, rep));
                break;
            }
        }
        let nhs_status = self.first(&id.nhs_status, top).map(|(_, v, _)| v.text().into_owned());
        let mut local_ids = Vec::new();
        if let Some(p) = &id.local_ids {
            if let Some(seg) = self.segment(p, top) {
                self.mark(&seg, p.field);
                for (i, rep) in self.field(&seg, p.field as usize).repetitions().enumerate() {
                    let skip = nhs_rep == Some((p.field, i + 1)) && p.segment == *b"PID";
                    let id = rep.component(1).text();
                    if !skip && !id.is_empty() {
                        let organisation = rep.component(4).text().into_owned();
                        local_ids.push(LocalId { organisation, id: id.into_owned() });
                    }
                }
            }
        }
        Identity { nhs_number, nhs_status, local_ids }
    }

    fn item(&mut self, plan: &ItemPlan, out: &mut Vec<Item>) -> Result<(), Problem> {
        let Some(name) = plan.for_each else {
            return self.one_item(plan, Scope::default(), out);
        };
        let msg = self.msg;
        for seg in msg.segments().filter(|s| s.raw()[..3] == name) {
            let end = (seg.index() + 1..msg.segment_count())
                .find(|&i| msg.segment(i).is_some_and(|s| s.raw()[..3] == name))
                .unwrap_or(msg.segment_count());
            self.one_item(plan, Scope { item: Some(seg), group_end: end, list: None }, out)?;
        }
        Ok(())
    }

    fn one_item(&mut self, plan: &ItemPlan, scope: Scope<'a>, out: &mut Vec<Item>) -> Result<(), Problem> {
        if !self.holds(plan.when.as_ref(), scope) {
            return Ok(());
        }
        let id = match self.template(&plan.id, scope) {
            Some(id) if !id.is_empty() => id,
            // No natural id (e.g. no PV1-19 on an A28): there is no such item.
            _ => return Ok(()),
        };
        let mut fields = self.fields(&plan.fields, scope)?;
        for list in &plan.lists {
            let (from, to) = match scope.item {
                Some(seg) => (seg.index() + 1, scope.group_end),
                None => (0, self.msg.segment_count()),
            };
            let mut rows = Vec::new();
            for i in from..to {
                let Some(seg) = self.msg.segment(i).filter(|s| s.raw()[..3] == list.for_each) else {
                    continue;
                };
                let row = self.fields(&list.fields, Scope { list: Some(seg), ..scope })?;
                rows.push(row.into_json());
            }
            fields.insert(list.name.clone(), Json::Array(rows));
        }
        out.push(Item { kind: plan.kind, id, fields, provenance: self.prov.clone() });
        Ok(())
    }

    fn fields(&mut self, plans: &[FieldPlan], scope: Scope<'a>) -> Result<Fields, Problem> {
        let mut out = Fields::with_capacity(plans.len() + 1);
        for f in plans {
            if !self.holds(f.when.as_ref(), scope) {
                continue;
            }
            let (value, at) = match &f.source {
                Source::Literal(v) => (Some(v.clone()), None),
                Source::Template(t) => {
                    (self.template(t, scope).filter(|s| !s.is_empty()).map(Json::String), first_path(t))
                }
                Source::Paths(paths) => match self.first(paths, scope) {
                    Some((_, v, _)) if v.is_null() => (Some(Json::Null), None),
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
                Some(v) => out.push_new(f.name.clone(), v),
                None if f.required => {
                    let seg = at.and_then(|p| self.segment(p, scope));
                    return Err(problem(101, &f.name, at, seg.map(|s| (s, 1)), "required value is missing"));
                }
                None => {}
            }
        }
        Ok(out)
    }

    fn holds(&mut self, cond: Option<&Cond>, scope: Scope<'a>) -> bool {
        let Some(cond) = cond else { return true };
        if !cond.events.is_empty() && !cond.events.iter().any(|e| e.as_bytes() == self.event) {
            return false;
        }
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

    fn template(&mut self, t: &Template, scope: Scope<'a>) -> Option<String> {
        let mut out = String::with_capacity(32);
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
                        ProvField::Seq => out.push_str(&self.prov.seq.to_string()),
                        ProvField::ControlId => out.push_str(&self.prov.control_id),
                        ProvField::SendingApp => out.push_str(&self.prov.sending_app),
                        ProvField::SendingFacility => out.push_str(&self.prov.sending_facility),
                        ProvField::MessageType => out.push_str(&self.prov.message_type),
                    }
                }
            }
        }
        any.then(|| out.trim().to_string())
    }

    /// The first path with a non-empty value.
    fn first<'p>(&mut self, paths: &'p [Path], scope: Scope<'a>) -> Option<(Segment<'a>, Value<'a>, usize)> {
        paths.iter().find_map(|p| self.resolve(p, scope).filter(|(_, v, _)| !v.is_empty()))
    }

    fn segment(&self, p: &Path, scope: Scope<'a>) -> Option<Segment<'a>> {
        let is = |s: &Segment<'_>| s.raw()[..3] == p.segment;
        if let Some(n) = p.occurrence {
            return self.msg.segments().filter(is).nth(n as usize - 1);
        }
        if let Some(s) = [scope.list, scope.item].into_iter().flatten().find(is) {
            return Some(s);
        }
        if let Some(item) = scope.item {
            let group = (item.index() + 1..scope.group_end).filter_map(|i| self.msg.segment(i));
            if let Some(s) = group.into_iter().find(is) {
                return Some(s);
            }
        }
        self.msg.segments().find(is)
    }

    /// The value at `p`, with its segment and repetition number.
    fn resolve(&mut self, p: &Path, scope: Scope<'a>) -> Option<(Segment<'a>, Value<'a>, usize)> {
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

    fn mark(&mut self, seg: &Segment<'_>, field: u16) {
        if let Some(reads) = self.reads.as_deref_mut() {
            reads.push((seg.index(), field as usize));
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

/// Converts a decoded HL7 value to the target type.
///
/// # Errors
/// [`Bad`] 102 for a value that is not a date, timestamp or number; 103 for a value
/// missing from a strict table.
pub fn convert(ty: &Ty, text: &str) -> Result<Json, Bad> {
    let bad = |what: &str| Bad { code: 102, why: format!("is not a valid {what}") };
    match ty {
        Ty::String => Ok(Json::String(text.to_string())),
        Ty::Date => iso(text, true).map(Json::String).ok_or_else(|| bad("HL7 date (YYYYMMDD)")),
        Ty::Timestamp => iso(text, false).map(Json::String).ok_or_else(|| bad("HL7 timestamp (YYYYMMDDHHMMSS+ZZZZ)")),
        Ty::Number => number(text.trim()).ok_or_else(|| bad("number")),
        Ty::Code { table, strict } => match (table.values.get(text), &table.default) {
            (Some(v), _) => Ok(Json::String(v.clone())),
            (None, _) if *strict => Err(Bad { code: 103, why: format!("value is not in code table '{}'", table.name) }),
            (None, Some(d)) => Ok(Json::String(d.clone())),
            (None, None) => Ok(Json::String(text.to_string())),
        },
    }
}

fn number(s: &str) -> Option<Json> {
    if !s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+')) || s.is_empty() {
        return None;
    }
    if let Ok(i) = s.parse::<i64>() {
        return Some(Json::from(i));
    }
    s.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Json::Number)
}

/// HL7 DTM (`YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`) as ISO 8601 with the
/// precision that was sent; `date_only` drops the time. `None` for an invalid value.
/// hl7-parser splits the digits; it does not validate, so the ranges are checked here.
fn iso(text: &str, date_only: bool) -> Option<String> {
    let t = hl7_parser::datetime::parse_timestamp(text.trim(), false).ok()?;
    // Digits are pushed by hand: `format!` cost a tenth of mapping an ADT.
    let mut out = String::with_capacity(29);
    push_digits(&mut out, t.year.into(), 4);
    let Some(month) = t.month else { return Some(out) };
    let days = match month {
        2 if t.year % 4 == 0 && (t.year % 100 != 0 || t.year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    out.push('-');
    push_digits(&mut out, month.into(), 2);
    let Some(day) = t.day else { return Some(out) };
    if !(1..=days).contains(&day) {
        return None;
    }
    out.push('-');
    push_digits(&mut out, day.into(), 2);
    let Some(hour) = t.hour.filter(|_| !date_only) else { return Some(out) };
    let (minute, second) = (t.minute.unwrap_or(0), t.second);
    if hour > 23 || minute > 59 || second.is_some_and(|s| s > 59) {
        return None;
    }
    out.push('T');
    push_digits(&mut out, hour.into(), 2);
    out.push(':');
    push_digits(&mut out, minute.into(), 2);
    if let Some(s) = second {
        out.push(':');
        push_digits(&mut out, s.into(), 2);
        if let Some(us) = t.microsecond {
            out.push('.');
            push_digits(&mut out, (us / 1000).into(), 3);
        }
    }
    if let Some(o) = t.offset {
        if o.hours.abs() > 14 || o.minutes > 59 {
            return None;
        }
        out.push(if o.hours < 0 { '-' } else { '+' });
        push_digits(&mut out, o.hours.unsigned_abs().into(), 2);
        out.push(':');
        push_digits(&mut out, o.minutes.into(), 2);
    }
    Some(out)
}

/// `n` zero-padded to `width` digits (wider numbers keep all their digits).
fn push_digits(out: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut n = n;
    while n > 0 || buf.len() - i < width {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend(buf[i..].iter().map(|&b| b as char));
}

#[cfg(test)]
mod tests {
    use super::iso;

    #[test]
    fn hl7_times_become_iso_8601_at_the_precision_sent() {
        let cases = [
            ("2026", false, Some("2026")),
            ("202611", false, Some("2026-11")),
            ("20261121", false, Some("2026-11-21")),
            ("202611210829", false, Some("2026-11-21T08:29")),
            ("20261121082930", false, Some("2026-11-21T08:29:30")),
            ("20261121082930.1234", false, Some("2026-11-21T08:29:30.123")),
            ("20261121082930+0100", false, Some("2026-11-21T08:29:30+01:00")),
            ("202611210829-0530", false, Some("2026-11-21T08:29-05:30")),
            ("20261121082930", true, Some("2026-11-21")),
            ("20240229", false, Some("2024-02-29")),
            ("20230229", false, None),
            ("20261131", false, None),
            ("20261321", false, None),
            ("202611212400", false, None),
            ("20261121086000", false, None),
            ("not a date", false, None),
        ];
        for (text, date_only, want) in cases {
            assert_eq!(iso(text, date_only).as_deref(), want, "{text}");
        }
    }
}
