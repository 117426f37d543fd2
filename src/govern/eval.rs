//! Applying the rules to one message: which rules hold where ([`Rules::hits`]),
//! then what that means for the mapped items ([`Rules::govern`]).
//!
//! Item exclusion keeps the excluded items in `Mapped::items` (marked in
//! `Mapped::governed`), so every other item keeps its place and its version
//! key: re-evaluating after a rule change then writes or deletes exactly the
//! versions the change concerns. Which items came from the matched segment
//! group is learnt by mapping the message again without that group and
//! comparing (only when an item rule holds, which is rare); if that fails,
//! the whole message is excluded (fail closed).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Action, Rules};
use crate::hl7::{Message, Segment};
use crate::mapping::path::{Path, Rep};
use crate::record::{Kind, Mapped};

/// Segments every item of a message reads: an `item` rule holding on one
/// of them excludes the message.
const HEADERS: [&str; 6] = ["MSH", "EVN", "PID", "PD1", "PV1", "PV2"];
/// Segments that belong to the OBR before them (ORU/ORM order groups).
const ORDER_CHILDREN: [&str; 5] = ["OBX", "NTE", "SPM", "TQ1", "TQ2"];

/// One rule holding on one message: at a segment (index), or on the sender.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub rule: usize,
    pub segment: Option<usize>,
}

/// What governing one message did, for `check`, `governance test` and the log.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// `(rule id, category, action, segment such as "DG1(2)")`.
    pub hits: Vec<serde_json::Value>,
}

impl Rules {
    /// Every rule that holds on `msg`, with where.
    pub fn hits(&self, msg: &Message<'_>) -> Vec<Hit> {
        let mut out = Vec::new();
        if self.rules.is_empty() {
            return out;
        }
        let msh = msg.header();
        let (app, facility) = (msh.field(3).component(1).text(), msh.field(4).component(1).text());
        let applies = |r: &super::Rule| {
            (r.sending_app.is_empty() || r.sending_app.iter().any(|a| *a == app))
                && (r.sending_facility.is_empty() || r.sending_facility.iter().any(|f| *f == facility))
        };
        for (i, r) in self.rules.iter().enumerate() {
            if r.test.is_none() && applies(r) {
                out.push(Hit { rule: i, segment: None });
            }
        }
        // One pass over the segments; each value normalised once into one
        // buffer, then compared with every rule of its group (this runs on
        // the pipeline thread for every message).
        let mut seen = vec![0usize; self.groups.len()];
        let mut code = String::new();
        for seg in msg.segments() {
            for (g, group) in self.groups.iter().enumerate() {
                let p = &group.path;
                if seg.raw().get(..3) != Some(&p.segment[..]) {
                    continue;
                }
                seen[g] += 1;
                if p.occurrence.is_some_and(|o| usize::from(o) != seen[g]) {
                    continue;
                }
                let start = out.len();
                each_value(&seg, p, |v| {
                    super::codes::normalise_into(v, &mut code);
                    if code.is_empty() {
                        return;
                    }
                    for &i in &group.rules {
                        let r = &self.rules[i];
                        let Some(t) = &r.test else { continue };
                        if out[start..].iter().any(|h: &Hit| h.rule == i) || !applies(r) {
                            continue;
                        }
                        if t.lists(&code) {
                            out.push(Hit { rule: i, segment: Some(seg.index()) });
                        }
                    }
                });
            }
        }
        // Rule by rule, each in message order: the order reports and the
        // first message rule depend on.
        out.sort_by_key(|h| (h.rule, h.segment));
        out
    }

    /// What `recordhub governance test` prints for one hit: rule id,
    /// category, action and the segment (`DG1(2)`), never a value.
    pub fn describe(&self, msg: &Message<'_>, h: &Hit) -> serde_json::Value {
        let rule = &self.rules[h.rule];
        let action = match &rule.action {
            Action::Message => "exclude message".to_string(),
            Action::Item => "exclude item".to_string(),
            Action::DropFields(f) => format!("drop fields {}", f.join(", ")),
        };
        let at = h.segment.and_then(|i| msg.segment(i)).map(|s| format!("{}({})", s.name(), s.occurrence()));
        serde_json::json!({ "rule": &*rule.id, "category": rule.category, "action": action, "segment": at })
    }

    /// Governs one mapped message: marks excluded items and sensitive scopes
    /// in `mapped.governed`, removes dropped fields, and gives every item its
    /// scopes. `remap` maps the message's bytes without some segments (the
    /// caller's mapping set and parse options); `None` if that fails.
    pub fn govern(&self, msg: &Message<'_>, mapped: &mut Mapped, remap: &dyn Fn(&[u8]) -> Option<Mapped>) -> Report {
        let mut report = Report::default();
        if mapped.ignored {
            return report;
        }
        let facility = msg.header().field(4).component(1).text();
        let visits: Vec<Arc<str>> = self.cascade.visit.iter().filter_map(|p| scope(msg, p, None, &facility)).collect();
        let orders = self.order_groups(msg, &facility);
        let hits = self.hits(msg);
        let mut removed: Vec<(std::ops::Range<usize>, usize)> = Vec::new();
        let mut message_rule = None;
        let mut drop = Vec::new();
        for h in &hits {
            let rule = &self.rules[h.rule];
            let at = h.segment.and_then(|i| msg.segment(i));
            report.hits.push(self.describe(msg, h));
            match (&rule.action, at) {
                (Action::DropFields(f), _) => drop.extend(f.iter().cloned()),
                (Action::Item, Some(seg)) if !HEADERS.contains(&seg.name()) => {
                    // Two hits in one order (its OBR and an OBX): one group.
                    let g = group(msg, seg);
                    if !removed.iter().any(|(r, _)| *r == g) {
                        removed.push((g, h.rule));
                    }
                }
                _ => {
                    message_rule.get_or_insert(h.rule);
                }
            }
        }
        let g = &mut mapped.governed;
        if let Some(r) = message_rule {
            let id = self.rules[r].id.to_string();
            g.message = Some(id.clone());
            g.excluded = (0..mapped.items.len()).map(|i| (i, id.clone())).collect();
            for s in visits.iter().chain(orders.iter().flat_map(|(_, s)| s)) {
                g.sensitive_scopes.push((s.to_string(), id.clone()));
            }
        } else if !removed.is_empty() {
            self.exclude_groups(msg, mapped, &removed, &orders, remap);
        }
        if !drop.is_empty() {
            for item in &mut mapped.items {
                if item.fields.iter().any(|(k, _)| drop.iter().any(|d| d == k)) {
                    item.fields = item
                        .fields
                        .iter()
                        .filter(|(k, _)| !drop.iter().any(|d| d == k))
                        .map(|(k, v)| (k, v.to_json()))
                        .collect();
                }
            }
        }
        assign_scopes(mapped, &visits, &orders);
        report
    }

    /// Each OBR's range in the message and its order scopes.
    fn order_groups(&self, msg: &Message<'_>, facility: &str) -> Vec<(std::ops::Range<usize>, Vec<Arc<str>>)> {
        let mut out = Vec::new();
        if self.cascade.order.is_empty() {
            return out;
        }
        for seg in msg.segments().filter(|s| s.name() == "OBR") {
            let scopes = self.cascade.order.iter().filter_map(|p| scope(msg, p, Some(&seg), facility)).collect();
            out.push((group(msg, seg), scopes));
        }
        out
    }

    fn exclude_groups(
        &self,
        msg: &Message<'_>,
        mapped: &mut Mapped,
        removed: &[(std::ops::Range<usize>, usize)],
        orders: &[(std::ops::Range<usize>, Vec<Arc<str>>)],
        remap: &dyn Fn(&[u8]) -> Option<Mapped>,
    ) {
        let first = self.rules[removed[0].1].id.to_string();
        let gone = |i: usize| removed.iter().any(|(r, _)| r.contains(&i));
        let mut bytes = Vec::with_capacity(msg.raw().len());
        for seg in msg.segments().filter(|s| !gone(s.index())) {
            bytes.extend_from_slice(seg.raw());
            bytes.push(b'\r');
        }
        let g = &mut mapped.governed;
        for (range, rule) in removed {
            for (_, scopes) in orders.iter().filter(|(r, _)| r == range) {
                g.sensitive_scopes.extend(scopes.iter().map(|s| (s.to_string(), self.rules[*rule].id.to_string())));
            }
        }
        let Some(reduced) = remap(&bytes) else {
            // Cannot tell which items the group made: exclude them all.
            g.message = Some(first.clone());
            g.excluded = (0..mapped.items.len()).map(|i| (i, first.clone())).collect();
            return;
        };
        let mut left: HashMap<(Kind, &str), usize> = HashMap::new();
        for item in &reduced.items {
            *left.entry((item.kind, item.id.as_str())).or_default() += 1;
        }
        for (i, item) in mapped.items.iter().enumerate() {
            match left.get_mut(&(item.kind, item.id.as_str())) {
                Some(n) if *n > 0 => *n -= 1,
                _ => g.excluded.push((i, first.clone())),
            }
        }
    }
}

/// Every item gets the message's visit scopes; an item whose id holds an
/// order's number (as a `^`-separated part: results are `{OBR-3.1}^{OBR-4.1}`)
/// gets that order's, and with a single order in the message every result
/// and document gets it. Linear in items and orders (an ORU of 20,000
/// orders is governed on the pipeline thread).
fn assign_scopes(mapped: &mut Mapped, visits: &[Arc<str>], orders: &[(std::ops::Range<usize>, Vec<Arc<str>>)]) {
    let mut by_number: HashMap<&str, Vec<usize>> = HashMap::new();
    for (k, (_, scopes)) in orders.iter().enumerate() {
        for s in scopes {
            if let Some(v) = s.rsplit('|').next() {
                by_number.entry(v).or_default().push(k);
            }
        }
    }
    for item in &mut mapped.items {
        item.scopes.extend(visits.iter().cloned());
        if orders.len() == 1 && matches!(item.kind, Kind::Result | Kind::Document) {
            item.scopes.extend(orders[0].1.iter().cloned());
            continue;
        }
        let mut mine: Vec<usize> = item.id.split('^').filter_map(|p| by_number.get(p)).flatten().copied().collect();
        mine.sort_unstable();
        mine.dedup();
        for k in mine {
            item.scopes.extend(orders[k].1.iter().cloned());
        }
    }
}

/// `path|authority|value`: a visit or an order, named within its
/// assigning authority so that the PAS's and the laboratory's messages
/// about one visit meet even when their MSH-4 differ: PV1-19 (CX) its
/// component 4, OBR/ORC-2 and -3 (EI) their component 2, else MSH-4.
fn scope(msg: &Message<'_>, p: &Path, within: Option<&Segment<'_>>, facility: &str) -> Option<Arc<str>> {
    let seg = match within {
        Some(s) if s.name().as_bytes() == p.segment => *s,
        _ => segments(msg, p).next()?,
    };
    let mut first = None;
    each_value(&seg, p, |v| {
        first.get_or_insert_with(|| v.to_string());
    });
    let v = first?;
    let v = v.trim();
    if v.is_empty() || v == "\"\"" {
        return None;
    }
    let authority = match (&p.segment, p.field) {
        (b"PV1", 19) => 4,
        (b"OBR" | b"ORC", 2 | 3) => 2,
        _ => 0,
    };
    let field = seg.field(p.field as usize);
    let named = (authority > 0).then(|| field.repetition(1).component(authority).text().trim().to_string());
    let authority = named.filter(|a| !a.is_empty()).unwrap_or_else(|| facility.to_string());
    Some(format!("{p}|{authority}|{v}").into())
}

/// The segments a path names: its occurrence, or every segment of that name.
fn segments<'a, 'm>(msg: &'m Message<'a>, p: &'m Path) -> impl Iterator<Item = Segment<'a>> + 'm {
    let mut n = 0;
    msg.segments().filter(move |s| {
        if s.name().as_bytes() != p.segment {
            return false;
        }
        n += 1;
        p.occurrence.is_none_or(|o| o as usize == n)
    })
}

/// Calls `f` with each value at `p` in `seg`: every repetition when the
/// path names none (a flag in the second repetition still counts).
fn each_value(seg: &Segment<'_>, p: &Path, mut f: impl FnMut(&str)) {
    let field = seg.field(p.field as usize);
    let (c, s) = (p.component as usize, p.subcomponent as usize);
    let mut visit = |r: crate::hl7::Value<'_>| {
        let v = match (c, s) {
            (0, _) => r,
            (c, 0) => r.component(c),
            (c, s) => r.component(c).subcomponent(s),
        };
        f(&v.text());
    };
    match &p.repetition {
        Rep::First => field.repetitions().for_each(&mut visit),
        Rep::Index(n) => visit(field.repetition(*n as usize)),
        Rep::Where { component, value } => {
            if let Some(r) = field.repetitions().find(|r| r.component(*component as usize).text() == value.as_str()) {
                visit(r);
            }
        }
    }
}

/// The segments that go with `seg` when an `item` rule holds on it: an OBR
/// with its children (and the ORC just before it); a child of an OBR, that
/// OBR's group; anything else, itself.
fn group(msg: &Message<'_>, seg: Segment<'_>) -> std::ops::Range<usize> {
    let i = seg.index();
    let obr = if seg.name() == "OBR" {
        i
    } else if ORDER_CHILDREN.contains(&seg.name()) {
        let before = (0..i).rev().filter_map(|j| msg.segment(j)).find(|s| !ORDER_CHILDREN.contains(&s.name()));
        match before {
            Some(o) if o.name() == "OBR" => o.index(),
            _ => return i..i + 1,
        }
    } else {
        return i..i + 1;
    };
    let start = match obr.checked_sub(1).and_then(|j| msg.segment(j)) {
        Some(orc) if orc.name() == "ORC" => obr - 1,
        _ => obr,
    };
    let end = (obr + 1..msg.segment_count())
        .find(|j| msg.segment(*j).is_some_and(|s| !ORDER_CHILDREN.contains(&s.name())))
        .unwrap_or(msg.segment_count());
    start..end
}
