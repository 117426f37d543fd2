//! Whose record a message belongs to, as the mapping file's `[identity]` says:
//! the NHS number and its PID-32 status, the local (hospital) ids, whether the
//! sender is trusted when PID-32 is empty, MSH-11 processing id, and a merge's
//! prior identifiers (MRG-1). Read only: the store decides what they mean
//! (trusted or parked, cross-referenced, merged), in journal order.

use super::apply::Run;
use super::path::Path;
use super::plan::IdentityPlan;
use super::scope::Scope;
use crate::record::{Identity, LocalId};

/// Where an NHS number was read: segment, field, repetition (from 1).
type At = ([u8; 3], u16, usize);

impl Run<'_, '_> {
    pub(super) fn identity(&mut self, plan: &IdentityPlan) -> Identity {
        let top = Scope::default();
        let (nhs_number, nhs_rep) = self.nhs_number(&plan.nhs_number);
        let nhs_status = self.first(&plan.nhs_status, top).map(|(_, v, _)| v.text().into_owned());
        let local_ids = self.cx_ids(plan.local_ids.as_ref(), nhs_rep);
        let (prior_nhs_number, prior_rep) = self.nhs_number(&plan.prior_nhs_number);
        let prior_local_ids = self.cx_ids(plan.prior_local_ids.as_ref(), prior_rep);
        let msh11 = self.msg.header().field(11).component(1).text();
        let processing_id = (!msh11.trim().is_empty()).then(|| msh11.trim().to_string());
        Identity {
            nhs_number,
            nhs_status,
            local_ids,
            trust_unstated_status: plan.trust_unstated_status,
            processing_id,
            prior_nhs_number,
            prior_local_ids,
        }
    }

    /// The first NHS number path with a value, and where it was
    /// (`segment`, field, repetition) so the CX list can skip it.
    fn nhs_number(&mut self, paths: &[Path]) -> (Option<String>, Option<At>) {
        for p in paths {
            if let Some((_, v, rep)) = self.resolve(p, Scope::default()).filter(|(_, v, _)| !v.is_empty()) {
                let text = v.text().trim().to_string();
                if !text.is_empty() {
                    return (Some(text), Some((p.segment, p.field, rep)));
                }
            }
        }
        (None, None)
    }

    /// Every repetition of a CX field (PID-3, MRG-1) with an id, but the one
    /// the NHS number came from: CX.1 id, CX.4 assigning organisation.
    fn cx_ids(&mut self, path: Option<&Path>, nhs_at: Option<At>) -> Vec<LocalId> {
        let mut ids = Vec::new();
        let Some(p) = path else { return ids };
        let Some(seg) = self.segment(p, Scope::default()) else { return ids };
        self.mark(&seg, p.field);
        for (i, rep) in self.field(&seg, p.field as usize).repetitions().enumerate() {
            if nhs_at == Some((p.segment, p.field, i + 1)) {
                continue;
            }
            let id = rep.component(1).text();
            if !id.trim().is_empty() {
                let organisation = rep.component(4).text().into_owned();
                ids.push(LocalId { organisation, id: id.into_owned() });
            }
        }
        ids
    }
}
