//! Mapping spec -> plan: every path parsed into indices, every table resolved, every
//! literal converted, once at load time. Every problem is collected (not just the
//! first) as a [`LoadError`] with the file, line and column it comes from.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use toml::Spanned;

use super::compile_field::is_append;
use super::path::{self, check_segment, Path};
use super::plan::{
    Cond, FilePlan, IdentityPlan, ItemPlan, ListPlan, Part, Plan, Selector, SenderPlan, Table, Template, PROV_FIELDS,
};
use super::spec::{FileSpec, IdentitySpec, ItemSpec, Paths, WhenSpec};
use super::{LoadError, LoadErrorKind};
use crate::record::Kind;

/// Collects errors for one file while compiling it.
pub struct Compiler<'a> {
    pub file: &'a FsPath,
    pub src: &'a str,
    pub tables: &'a BTreeMap<String, Arc<Table>>,
    pub errors: Vec<LoadError>,
}

impl Compiler<'_> {
    /// Records an error at byte `offset` of the file.
    pub fn error(&mut self, offset: usize, kind: LoadErrorKind) {
        let (line, col) = line_col(self.src, offset);
        self.errors.push(LoadError { file: self.file.to_path_buf(), line, col, kind });
    }

    pub(super) fn invalid(&mut self, span: Range<usize>, msg: String) {
        self.error(span.start, LoadErrorKind::Invalid(msg));
    }

    /// Compiles the file's default plan and one plan per `[[sender]]`.
    pub fn file(&mut self, spec: &FileSpec) -> FilePlan {
        let mut selectors: Vec<Selector> = spec.messages.get_ref().iter().filter_map(|m| self.selector(m)).collect();
        if spec.messages.get_ref().is_empty() {
            self.invalid(
                spec.messages.span(),
                "messages is empty: list the MSH-9 types this file maps, e.g. [\"ADT^A01\"]".into(),
            );
        }
        let ignore = self.ignore(spec.ignore.as_ref(), &selectors);
        selectors.extend(ignore.iter().cloned());
        let time = spec.time.as_ref().map(|p| self.paths(p)).unwrap_or_default();
        let base = self.plan(&spec.identity, &spec.items.0, time.clone(), ignore.clone());
        let mut senders = Vec::new();
        for sender in &spec.senders {
            let (app, facility) = (sender.app.as_ref(), sender.facility.as_ref());
            if app.is_none() && facility.is_none() {
                self.error(
                    0,
                    LoadErrorKind::Invalid(
                        "a [[sender]] needs app (MSH-3) or facility (MSH-4) to say whom it is for".into(),
                    ),
                );
            }
            let mut identity = spec.identity.clone();
            if let Some(over) = &sender.identity {
                identity.nhs_number = over.nhs_number.clone().or(identity.nhs_number);
                identity.nhs_status = over.nhs_status.clone().or(identity.nhs_status);
                identity.local_ids = over.local_ids.clone().or(identity.local_ids);
                identity.trust_unstated_status = over.trust_unstated_status.or(identity.trust_unstated_status);
                identity.prior_nhs_number = over.prior_nhs_number.clone().or(identity.prior_nhs_number);
                identity.prior_local_ids = over.prior_local_ids.clone().or(identity.prior_local_ids);
            }
            let items = merge_items(&spec.items.0, &sender.items.0);
            let time = sender.time.as_ref().map_or_else(|| time.clone(), |p| self.paths(p));
            let ignore = match &sender.ignore {
                Some(list) => self.sender_ignore(list, &selectors),
                None => ignore.clone(),
            };
            let plan = self.plan(&identity, &items, time, ignore);
            let text = |s: Option<&Spanned<String>>| s.map(|s| s.get_ref().clone());
            senders.push(SenderPlan { app: text(app), facility: text(facility), plan });
        }
        FilePlan { file: self.file.to_path_buf(), selectors, base, senders }
    }

    /// The file's `ignore` list: types it accepts without filing, none of them
    /// also in `messages` (which would leave the reader guessing which wins).
    fn ignore(&mut self, list: Option<&Spanned<Vec<Spanned<String>>>>, mapped: &[Selector]) -> Vec<Selector> {
        let mut out = Vec::new();
        for m in list.map(|l| l.get_ref().as_slice()).unwrap_or_default() {
            let Some(sel) = self.selector(m) else { continue };
            if mapped.contains(&sel) || out.contains(&sel) {
                self.invalid(
                    m.span(),
                    format!("'{}' is listed twice (messages or ignore): keep it in one place", m.get_ref()),
                );
                continue;
            }
            out.push(sel);
        }
        out
    }

    /// A sender's `ignore` replaces the file's, among the types the file takes.
    fn sender_ignore(&mut self, list: &Spanned<Vec<Spanned<String>>>, taken: &[Selector]) -> Vec<Selector> {
        let mut out = Vec::new();
        for m in list.get_ref() {
            let Some(sel) = self.selector(m) else { continue };
            let covered = taken.iter().any(|t| t.code == sel.code && (t.event.is_none() || t.event == sel.event));
            if !covered {
                self.invalid(
                    m.span(),
                    format!(
                        "'{}' is not a type this file takes: a sender may only ignore types in messages or ignore",
                        m.get_ref()
                    ),
                );
                continue;
            }
            out.push(sel);
        }
        out
    }

    fn selector(&mut self, m: &Spanned<String>) -> Option<Selector> {
        let text = m.get_ref();
        let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        match text.split_once('^') {
            Some((code, "*")) if ok(code, 3) => Some(Selector { code: code.into(), event: None }),
            Some((code, event)) if ok(code, 3) && ok(event, 3) => {
                Some(Selector { code: code.into(), event: Some(event.into()) })
            }
            _ => {
                self.invalid(m.span(), format!("'{text}' is not a message type: write MSH-9 as CODE^EVENT, e.g. ADT^A01, or ADT^* for every event"));
                None
            }
        }
    }

    fn plan(
        &mut self,
        identity: &IdentitySpec,
        items: &[(Spanned<String>, ItemSpec)],
        time: Vec<Path>,
        ignore: Vec<Selector>,
    ) -> Plan {
        let identity = IdentityPlan {
            nhs_number: identity.nhs_number.as_ref().map(|p| self.paths(p)).unwrap_or_default(),
            nhs_status: identity.nhs_status.as_ref().map(|p| self.paths(p)).unwrap_or_default(),
            local_ids: identity.local_ids.as_ref().and_then(|p| self.path(p)),
            trust_unstated_status: identity.trust_unstated_status.unwrap_or(true),
            prior_nhs_number: identity.prior_nhs_number.as_ref().map(|p| self.paths(p)).unwrap_or_default(),
            prior_local_ids: identity.prior_local_ids.as_ref().and_then(|p| self.path(p)),
        };
        let mut items: Vec<ItemPlan> = items.iter().filter_map(|(name, item)| self.item(name, item)).collect();
        // Paths into MSH or EVN read the same value for every item: computed
        // once per message. Others (OBR-22) are read in each `for_each` item's
        // own group.
        let message_level = time.iter().all(|p| matches!(&p.segment, b"MSH" | b"EVN") && p.occurrence.is_none());
        // An item of the whole message reads them as the message does: the
        // message's time, computed once, serves it.
        if !message_level {
            for item in items.iter_mut().filter(|i| i.version.time.is_none() && i.for_each.is_some()) {
                item.version.time = Some(time.clone());
            }
        }
        Plan { identity, items, time, ignore }
    }

    fn item(&mut self, name: &Spanned<String>, spec: &ItemSpec) -> Option<ItemPlan> {
        let Some(kind) = &spec.kind else {
            let kinds: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            self.invalid(name.span(), format!("item '{}' needs a kind: one of {}", name.get_ref(), kinds.join(", ")));
            return None;
        };
        let Some(id) = &spec.id else {
            self.invalid(
                name.span(),
                format!("item '{}' needs an id template, e.g. id = \"{{PV1-19.1}}\"", name.get_ref()),
            );
            return None;
        };
        if id.0.is_empty() {
            self.invalid(name.span(), format!("item '{}' has id = []: give at least one template", name.get_ref()));
            return None;
        }
        let for_each = spec.for_each.as_ref().and_then(|s| self.segment(s));
        let mut lists = Vec::new();
        for (lname, l) in &spec.lists.0 {
            if let Some(for_each) = self.segment(&l.for_each) {
                let fields = self.fields(&l.fields.0);
                if let Some(f) = l.fields.0.iter().find(|(_, t)| is_append(t)) {
                    self.invalid(
                        f.0.span(),
                        format!(
                            "list field '{}' has append: a history is a field of the item, not of a row",
                            f.0.get_ref()
                        ),
                    );
                }
                lists.push(ListPlan {
                    name: lname.get_ref().as_str().into(),
                    for_each,
                    fields,
                    drop: l.drop.as_ref().and_then(|w| self.cond(w)),
                    names: Vec::new().into(),
                    index: 0,
                    shadows: false,
                });
            }
        }
        let fields = self.fields(&spec.fields.0);
        let mut names: Vec<Arc<str>> = fields.iter().map(|f| f.name.clone()).collect();
        for list in &mut lists {
            list.names = list.fields.iter().map(|f| f.name.clone()).collect();
            list.shadows = names[..fields.len()].contains(&list.name);
            list.index = names.iter().position(|n| *n == list.name).unwrap_or(names.len());
            if list.index == names.len() {
                names.push(list.name.clone());
            }
        }
        let version = self.version(name, spec, &fields);
        Some(ItemPlan {
            name: name.get_ref().clone(),
            kind: *kind.get_ref(),
            for_each,
            id: id.0.iter().map(|t| self.template(t)).collect(),
            when: spec.when.as_ref().and_then(|w| self.cond(w)),
            lists,
            fields,
            names: names.into(),
            version,
        })
    }

    pub(super) fn cond(&mut self, w: &WhenSpec) -> Option<Cond> {
        let mut cond = Cond { any: w.any.unwrap_or(false), ..Cond::default() };
        if cond.any && w.field.is_none() {
            self.error(0, LoadErrorKind::Invalid("when has 'any' without 'field': any applies to a field".into()));
        }
        for e in w.event.iter().flatten() {
            if e.get_ref().len() != 3 {
                self.invalid(
                    e.span(),
                    format!("event '{}' is not a trigger event: use MSH-9.2, e.g. A01", e.get_ref()),
                );
            }
            cond.events.push(e.get_ref().clone());
        }
        if let (Some(f), Some(not)) = (&w.field, &w.is_not) {
            if w.is.is_some() {
                self.invalid(f.span(), "when has both 'is' and 'is_not': use one".into());
            }
            cond.field_not = Some((self.path(f)?, not.clone()));
        } else if let Some(f) = &w.field {
            cond.field = Some((self.path(f)?, w.is.clone().unwrap_or_default()));
        } else if w.is.is_some() || w.is_not.is_some() {
            self.error(
                0,
                LoadErrorKind::Invalid(
                    "when has 'is' or 'is_not' without 'field': say which field, e.g. when = { field = \"PV1-2\", is = [\"I\"] }"
                        .into(),
                ),
            );
        }
        Some(cond)
    }

    fn segment(&mut self, s: &Spanned<String>) -> Option<[u8; 3]> {
        check_segment(s.get_ref()).map_err(|m| self.error(s.span().start + 1, LoadErrorKind::Path(m))).ok()
    }

    pub(super) fn paths(&mut self, p: &Paths) -> Vec<Path> {
        p.0.iter().filter_map(|s| self.path(s)).collect()
    }

    /// Parses a path held in a TOML string; errors point into the string (after its quote).
    pub(super) fn path(&mut self, s: &Spanned<String>) -> Option<Path> {
        self.path_at(s.get_ref(), s.span().start + 1)
    }

    fn path_at(&mut self, text: &str, offset: usize) -> Option<Path> {
        path::parse(text).map_err(|e| self.error(offset + e.offset, LoadErrorKind::Path(e.message))).ok()
    }

    /// `"{PID-5.2} {PID-5.1}"`: text with paths and provenance values in braces.
    pub(super) fn template(&mut self, t: &Spanned<String>) -> Template {
        let (text, base) = (t.get_ref().as_str(), t.span().start + 1);
        let mut parts = Vec::new();
        let mut pos = 0;
        while let Some(open) = text[pos..].find('{').map(|i| pos + i) {
            if open > pos {
                parts.push(Part::Text(text[pos..open].to_string()));
            }
            let Some(close) = text[open..].find('}').map(|i| open + i) else {
                self.invalid(base + open..base + open, format!("missing '}}' in template {text:?}: write {{PID-5.1}}"));
                return Template(parts);
            };
            let inner = &text[open + 1..close];
            if let Some((_, f)) = PROV_FIELDS.iter().find(|(n, _)| *n == inner) {
                parts.push(Part::Prov(*f));
            } else if let Some(p) = self.path_at(inner, base + open + 1) {
                parts.push(Part::Path(p));
            }
            pos = close + 1;
        }
        if pos < text.len() {
            parts.push(Part::Text(text[pos..].to_string()));
        }
        Template(parts)
    }
}

/// Layers a sender's items over the defaults: same-named items have their given keys
/// replaced and their fields/lists replaced or added by name; new names are appended.
fn merge_items(
    base: &[(Spanned<String>, ItemSpec)],
    over: &[(Spanned<String>, ItemSpec)],
) -> Vec<(Spanned<String>, ItemSpec)> {
    let mut out = base.to_vec();
    for (name, o) in over {
        let Some((_, item)) = out.iter_mut().find(|(n, _)| n.get_ref() == name.get_ref()) else {
            out.push((name.clone(), o.clone()));
            continue;
        };
        item.kind = o.kind.clone().or(item.kind.take());
        item.for_each = o.for_each.clone().or(item.for_each.take());
        item.id = o.id.clone().or(item.id.take());
        item.when = o.when.clone().or(item.when.take());
        item.time = o.time.clone().or(item.time.take());
        item.rank = o.rank.clone().or(item.rank.take());
        item.hide = o.hide.clone().or(item.hide.take());
        item.undo = o.undo.clone().or(item.undo.take());
        item.supersedes = o.supersedes.clone().or(item.supersedes.take());
        item.groups = o.groups.clone().or(item.groups.take());
        upsert(&mut item.fields.0, &o.fields.0);
        upsert(&mut item.lists.0, &o.lists.0);
    }
    out
}

fn upsert<T: Clone>(into: &mut Vec<(Spanned<String>, T)>, from: &[(Spanned<String>, T)]) {
    for (k, v) in from {
        match into.iter_mut().find(|(n, _)| n.get_ref() == k.get_ref()) {
            Some(slot) => slot.1 = v.clone(),
            None => into.push((k.clone(), v.clone())),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
