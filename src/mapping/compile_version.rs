//! Compiling an item's version keys (`time`, `rank`, `hide`, `undo`,
//! `supersedes`, `groups`) into its [`VersionPlan`]: how the item's versions
//! order against other messages' versions and what each one does. The store
//! folds versions (`store/fold.rs`); this only says, per message, which.

use toml::Spanned;

use super::compile::Compiler;
use super::plan::{FieldPlan, Supersedes, VersionPlan};
use super::spec::ItemSpec;

/// Trigger events are three characters: `A01`, `T10`, `R01`.
fn is_event(e: &str) -> bool {
    e.len() == 3 && e.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

impl Compiler<'_> {
    pub(super) fn version(&mut self, name: &Spanned<String>, spec: &ItemSpec, fields: &[FieldPlan]) -> VersionPlan {
        let item = name.get_ref();
        let mut plan = VersionPlan { time: spec.time.as_ref().map(|p| self.paths(p)), ..VersionPlan::default() };
        if let Some(rank) = &spec.rank {
            let r = rank.get_ref();
            if r.order.is_empty() || r.order.len() > usize::from(u8::MAX) {
                self.invalid(
                    rank.span(),
                    format!("rank of '{item}' needs 1 to 255 values in order, lowest first, e.g. order = [\"P\", \"F\", \"C\"]"),
                );
            }
            if let Some(path) = self.path(&r.path) {
                plan.rank = Some((path, r.order.iter().map(|o| o.get_ref().clone()).collect()));
            }
        }
        for h in spec.hide.iter().flatten() {
            let Some(reason) = &h.get_ref().reason else {
                self.invalid(
                    h.span(),
                    format!("a hide of '{item}' needs a reason, e.g. reason = \"cancelled\" (history shows it)"),
                );
                continue;
            };
            let when = h.get_ref().when();
            if when.event.is_none() && when.field.is_none() {
                self.invalid(
                    h.span(),
                    format!("a hide of '{item}' needs event = [...] or field = \"...\": without a condition every message would hide it"),
                );
                continue;
            }
            if let Some(cond) = self.cond(&when) {
                plan.hide.push((cond, reason.get_ref().clone()));
            }
        }
        for (event, undone) in spec.undo.iter().flat_map(|u| &u.0) {
            let mut ok = is_event(event.get_ref());
            for e in undone.iter().filter(|e| !is_event(e.get_ref())) {
                self.invalid(e.span(), format!("'{}' is not a trigger event: use MSH-9.2, e.g. A02", e.get_ref()));
                ok = false;
            }
            if !is_event(event.get_ref()) {
                self.invalid(
                    event.span(),
                    format!("undo key '{}' is not a trigger event: write A12 = [\"A02\"]", event.get_ref()),
                );
            } else if undone.is_empty() {
                self.invalid(event.span(), format!("undo {} = []: name the events it undoes", event.get_ref()));
                ok = false;
            }
            if ok {
                plan.undo.push((event.get_ref().clone(), undone.iter().map(|e| e.get_ref().clone()).collect()));
            }
        }
        if let Some(s) = &spec.supersedes {
            let s = s.get_ref();
            let when = s.when.as_ref().and_then(|w| self.cond(w));
            plan.supersedes = Some(Supersedes { id: self.template(&s.id), when });
        }
        for (group, members) in spec.groups.iter().flat_map(|g| &g.0) {
            let mut indices = Vec::with_capacity(members.len());
            for m in members {
                match fields.iter().find(|f| *f.name == **m.get_ref()) {
                    Some(f) => indices.push(f.index),
                    None => self.invalid(
                        m.span(),
                        format!(
                            "group '{}' of '{item}' names '{}', which is not a field of the item",
                            group.get_ref(),
                            m.get_ref()
                        ),
                    ),
                }
            }
            if indices.len() < 2 && members.len() < 2 {
                self.invalid(
                    group.span(),
                    format!("group '{}' of '{item}' needs at least two fields", group.get_ref()),
                );
            }
            plan.groups.push(indices);
        }
        plan
    }
}
