//! What one message's version of an item is ([`crate::record::Version`]): its
//! clinical time and status rank (how it orders against the item's other
//! versions) and its effect (update, hide, undo), decided from the item's
//! compiled [`VersionPlan`]. Also the two things a version's fields need
//! beyond the plain field rules: groups (a new address never mixes with the
//! old one's lines) and the extra item a replacement hides (`supersedes`).
//!
//! Deliberately not here: folding versions into the current item (the store
//! does that, `store/fold.rs`), so the record stays a function of the set of
//! versions, whatever the arrival order.

use serde_json::Value as Json;

use super::apply::Run;
use super::convert::time_ms;
use super::path::Path;
use super::plan::{ItemPlan, VersionPlan};
use super::scope::Scope;
use crate::record::{Effect, Fields, FieldsBuilder, Item, Version};

impl<'a> Run<'_, 'a> {
    /// The time of the first path with a value, as UTC ms. A value that is
    /// not an HL7 timestamp leaves the version without a time (it sorts
    /// first) and says so in a warning: never a reason to refuse the message.
    pub(super) fn time(&mut self, paths: &[Path], scope: Scope<'a>) -> Option<i64> {
        let (seg, value, _) = self.first(paths, scope)?;
        let text = value.text();
        let ms = time_ms(&text);
        if ms.is_none() {
            let p = paths.iter().find(|p| p.segment == seg.raw()[..3]).or(paths.first());
            let at = p.map(|p| p.to_string()).unwrap_or_default();
            self.warnings.push(format!("time ({at}): is not a valid HL7 timestamp; this version has no time"));
        }
        ms
    }

    /// The version of an item built in `scope`; `message_time` is the plan's
    /// time, computed once per message.
    pub(super) fn version(&mut self, plan: &VersionPlan, scope: Scope<'a>, message_time: Option<i64>) -> Version {
        let time_ms = match &plan.time {
            Some(paths) => self.time(paths, scope),
            None => message_time,
        };
        let rank = match &plan.rank {
            Some((path, order)) => match self.resolve(path, scope) {
                Some((_, v, _)) if !v.is_empty() => {
                    let text = v.text();
                    // Compiled with at most 255 values: the position fits.
                    order.iter().position(|o| *o == text).map_or(0, |i| (i + 1) as u8)
                }
                _ => 0,
            },
            None => 0,
        };
        Version { time_ms, rank, effect: self.effect(plan, scope), append: Vec::new() }
    }

    /// Hide (the first condition that holds) wins over undo: a tombstone is
    /// final whatever else the message says.
    fn effect(&mut self, plan: &VersionPlan, scope: Scope<'a>) -> Effect {
        for (cond, reason) in &plan.hide {
            if self.holds(Some(cond), scope) {
                return Effect::Hide { reason: reason.clone() };
            }
        }
        let event = self.event;
        match plan.undo.iter().find(|(e, _)| e.as_bytes() == event) {
            Some((_, events)) => Effect::Undo { events: events.clone() },
            None => Effect::Update,
        }
    }

    /// The item this one replaces (MDM T10: TXA-13), hidden as superseded:
    /// same kind, its own id, no fields. None when the id renders empty or
    /// is the item's own (a document cannot supersede itself).
    pub(super) fn superseded(&mut self, plan: &ItemPlan, item: &Item, scope: Scope<'a>) -> Option<Item> {
        let s = plan.version.supersedes.as_ref()?;
        if !self.holds(s.when.as_ref(), scope) {
            return None;
        }
        let (id, _) = self.template(&s.id, scope)?;
        if id.is_empty() || id == item.id {
            return None;
        }
        let version = Version {
            time_ms: item.version.time_ms,
            effect: Effect::Hide { reason: "superseded".into() },
            ..Version::default()
        };
        let fields = Fields::builder(&plan.names).finish();
        Some(Item { kind: plan.kind, id, fields, provenance: item.provenance.clone(), version, scopes: Vec::new() })
    }
}

/// Groups: when any member of a group has a value (or `null`) in this
/// message, the members it does not carry become `null`, so the stored
/// address is replaced as a whole, never mixed line by line with an older
/// one. A group with no member present leaves the stored values alone.
pub(super) fn fill_groups(groups: &[Vec<usize>], set: &[bool], out: &mut FieldsBuilder) {
    for group in groups {
        if group.iter().any(|&i| set.get(i).copied().unwrap_or(false)) {
            for &i in group.iter().filter(|&&i| !set.get(i).copied().unwrap_or(false)) {
                out.push_at(i, Json::Null);
            }
        }
    }
}
