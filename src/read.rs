//! The one read path for a patient's record: the JSON API, the web page and
//! the CLI all call [`read_audited`]. It refuses a patient who objected,
//! shows only the categories the reader's role may see, and writes the audit
//! event before anything is returned: no unaudited view, ever.

use std::sync::Arc;

use serde_json::json;

use crate::access::Access;
use crate::audit::{AuditEvent, AuditLog};
use crate::auth::{Principal, Purpose};
use crate::hl7::nhs::NhsNumber;
use crate::pipeline::now_ms;
use crate::store::Store;

/// What a read needs: the index, the audit log, the access rules.
#[derive(Clone)]
pub struct ReadCtx {
    pub store: Store,
    pub audit: AuditLog,
    pub access: Arc<Access>,
}

/// Which view of a patient's record a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// What the record shows now.
    Record,
    /// Every version of every item, hidden ones included.
    History,
}

/// One read: who, why, from where, of what.
#[derive(Debug, Clone)]
pub struct ReadRequest<'a> {
    pub nhs: &'a NhsNumber,
    pub who: &'a Principal,
    pub purpose: &'a Purpose,
    /// The client's address, or `local`.
    pub client: &'a str,
    /// `http`, `web` or `cli`.
    pub via: &'a str,
    pub view: View,
}

/// What a record read found.
#[derive(Debug)]
pub enum Viewed {
    /// The record (or history) as JSON, with only the role's categories.
    Shown(serde_json::Value),
    /// No item is held for this NHS number (or none the role may see).
    Unknown,
    /// The patient has objected to sharing: nothing may be shown.
    Objected,
    /// The role may not read records.
    Forbidden,
}

/// The answer to a read of a patient who has objected (HTTP 403, CLI exit 3).
pub const OBJECTED: &str = "the patient has objected to sharing their record";

/// Why a read failed. Nothing was shown.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the index could not be read: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the audit log could not be written, so nothing is shown: {0}")]
    Audit(#[from] std::io::Error),
}

/// Reads a record and audits the view (also a view of an unknown patient,
/// a role that may not read, and an attempt refused because the patient
/// objected).
///
/// # Errors
/// The index could not be read or the audit event not written; then nothing
/// is returned, because an unaudited view must not happen.
pub fn read_audited(ctx: &ReadCtx, req: &ReadRequest<'_>) -> Result<Viewed, ReadError> {
    let action = match req.view {
        View::Record => "read",
        View::History => "read_history",
    };
    let mut event = AuditEvent {
        at_ms: now_ms(),
        user: req.who.user.clone(),
        role: req.who.role.clone(),
        org: req.who.org.clone(),
        purpose: req.purpose.name().into(),
        reason: req.purpose.reason().into(),
        break_glass: req.purpose.is_break_glass(),
        nhs_number: Some(req.nhs.as_str().to_string()),
        action: action.into(),
        client: req.client.into(),
        via: req.via.into(),
        ..AuditEvent::default()
    };
    let Some(role) = ctx.access.view(&req.who.role) else {
        event.outcome = "forbidden".into();
        ctx.audit.append(&event)?;
        tracing::info!(user = %req.who.user, role = %req.who.role, via = req.via, "record view refused: role may not read");
        return Ok(Viewed::Forbidden);
    };
    if ctx.store.objection(req.nhs)?.is_some() {
        event.outcome = "objected".into();
        ctx.audit.append(&event)?;
        tracing::info!(user = %req.who.user, via = req.via, action, "record view refused: the patient has objected");
        return Ok(Viewed::Objected);
    }
    let mut categories: Vec<&'static str> = Vec::new();
    let mut note = |kind: crate::record::Kind, id: &str, source: &str| {
        if !categories.contains(&kind.as_str()) {
            categories.push(kind.as_str());
        }
        event.items.push(format!("{}/{source}/{id}", kind.as_str()));
    };
    let body = match req.view {
        View::Record => {
            let mut items = ctx.store.record(req.nhs)?;
            items.retain(|i| role.shows(i.kind));
            for i in &items {
                note(i.kind, &i.id, &i.provenance.sending_facility);
            }
            json!({ "nhs_number": req.nhs.as_str(), "items": items })
        }
        View::History => {
            let mut items = ctx.store.history(req.nhs)?;
            items.retain(|i| role.shows(i.kind));
            for i in &items {
                note(i.kind, &i.id, &i.source);
            }
            json!({ "nhs_number": req.nhs.as_str(), "items": items })
        }
    };
    let count = event.items.len();
    event.categories = categories.into_iter().map(String::from).collect();
    event.outcome = if count == 0 { "not_found" } else { "shown" }.into();
    ctx.audit.append(&event)?;
    tracing::info!(user = %req.who.user, via = req.via, action, items = count, "record viewed");
    if count == 0 {
        return Ok(Viewed::Unknown);
    }
    Ok(Viewed::Shown(body))
}
