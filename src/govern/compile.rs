//! Rule file → compiled [`Rule`]s: paths parsed once, code lists resolved,
//! every problem reported as `file:line:col` (the mapping compiler's errors).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use toml::Spanned;

use super::codes::{normalise, CodeList};
use super::spec::{FileSpec, RuleSpec};
use super::{Action, Cascade, LoadError, Rule, Test};
use crate::mapping::compile::line_col;
use crate::mapping::path::{self, Path};
use crate::mapping::LoadErrorKind;

pub(super) struct Compiler<'a> {
    pub file: &'a FsPath,
    pub src: &'a str,
    pub lists: &'a BTreeMap<String, CodeList>,
    pub errors: Vec<LoadError>,
}

impl Compiler<'_> {
    fn error(&mut self, offset: usize, kind: LoadErrorKind) {
        let (line, col) = line_col(self.src, offset);
        self.errors.push(LoadError { file: self.file.to_path_buf(), line, col, kind });
    }

    pub fn invalid(&mut self, span: Range<usize>, msg: String) {
        self.error(span.start, LoadErrorKind::Invalid(msg));
    }

    pub fn file(&mut self, spec: &FileSpec) -> (Vec<Rule>, Option<(Cascade, Range<usize>)>) {
        let rules = spec.rules.iter().filter_map(|r| self.rule(r)).collect();
        let cascade = spec.cascade.as_ref().map(|c| {
            let visit = c.get_ref().visit.iter().filter_map(|p| self.path(p)).collect();
            let order = c.get_ref().order.iter().filter_map(|p| self.path(p)).collect();
            (Cascade { visit, order }, c.span())
        });
        (rules, cascade)
    }

    fn path(&mut self, s: &Spanned<String>) -> Option<Path> {
        let offset = s.span().start + 1;
        path::parse(s.get_ref()).map_err(|e| self.error(offset + e.offset, LoadErrorKind::Path(e.message))).ok()
    }

    fn list(&mut self, name: &Spanned<String>) -> Vec<String> {
        match self.lists.get(name.get_ref()) {
            Some(l) => l.codes.clone(),
            None => {
                let known: Vec<_> = self.lists.keys().map(String::as_str).collect();
                let msg = format!(
                    "no code list '{}' in codes/ (lists: {}); add codes/{}.txt",
                    name.get_ref(),
                    if known.is_empty() { "none".into() } else { known.join(", ") },
                    name.get_ref()
                );
                self.invalid(name.span(), msg);
                Vec::new()
            }
        }
    }

    fn rule(&mut self, r: &RuleSpec) -> Option<Rule> {
        let id = r.id.get_ref().trim();
        if id.is_empty() || r.category.get_ref().trim().is_empty() {
            self.invalid(r.id.span(), "a rule needs a non-empty `id` and `category`".into());
            return None;
        }
        let action = self.action(r)?;
        let test = match &r.field {
            Some(f) => {
                let path = self.path(f)?;
                let mut exact: Vec<String> = r.in_values.iter().flatten().map(|v| normalise(v)).collect();
                let mut prefixes: Vec<String> = r.prefix.iter().flatten().map(|v| normalise(v)).collect();
                if let Some(l) = &r.in_list {
                    exact.extend(self.list(l));
                }
                if let Some(l) = &r.prefix_list {
                    prefixes.extend(self.list(l));
                }
                let none =
                    r.in_values.is_none() && r.prefix.is_none() && r.in_list.is_none() && r.prefix_list.is_none();
                if none {
                    let msg = "`field` needs what to compare it with: `in`, `prefix`, `in_list` or `prefix_list`";
                    self.invalid(f.span(), msg.into());
                    return None;
                }
                prefixes.retain(|p| !p.is_empty());
                Some(Test::new(path, exact, prefixes))
            }
            None => {
                let stray = [r.in_values.is_some(), r.prefix.is_some(), r.in_list.is_some(), r.prefix_list.is_some()];
                if stray.iter().any(|s| *s) {
                    self.invalid(r.id.span(), format!("rule '{id}' compares values but names no `field`"));
                    return None;
                }
                None
            }
        };
        let senders = |v: &Option<Spanned<Vec<String>>>| v.as_ref().map(|v| v.get_ref().clone()).unwrap_or_default();
        let (sending_app, sending_facility) = (senders(&r.sending_app), senders(&r.sending_facility));
        if test.is_none() && sending_app.is_empty() && sending_facility.is_empty() {
            let msg = format!(
                "rule '{id}' matches nothing: give `field` (with `in`/`prefix`/…), `sending_app` or `sending_facility`"
            );
            self.invalid(r.id.span(), msg);
            return None;
        }
        let category = r.category.get_ref().trim().to_string();
        Some(Rule { id: Arc::from(id), category, sending_app, sending_facility, test, action })
    }

    fn action(&mut self, r: &RuleSpec) -> Option<Action> {
        match (&r.exclude, &r.drop_fields) {
            (Some(e), None) => match e.get_ref().as_str() {
                "message" => Some(Action::Message),
                "item" => Some(Action::Item),
                other => {
                    let msg = format!("exclude = \"{other}\": expected \"message\" or \"item\"");
                    self.invalid(e.span(), msg);
                    None
                }
            },
            (None, Some(f)) if !f.get_ref().is_empty() => Some(Action::DropFields(f.get_ref().clone())),
            (None, Some(f)) => {
                self.invalid(f.span(), "drop_fields is empty: name the fields to remove".into());
                None
            }
            (Some(e), Some(_)) => {
                self.invalid(e.span(), "a rule has one action: `exclude` or `drop_fields`, not both".into());
                None
            }
            (None, None) => {
                let msg = "a rule needs an action: exclude = \"message\", exclude = \"item\" or drop_fields = [...]";
                self.invalid(r.id.span(), msg.into());
                None
            }
        }
    }
}
