//! The record page: `GET /record/{nhs}` reads for direct care (the
//! professional's own declaration of their relationship, the default most
//! shared records use); `POST /record/{nhs}` with a reason is a break-glass
//! read, flagged for review in the audit. Both go through
//! [`read_audited`]; a patient who objected gets a banner and no data.

use std::path::Path as FsPath;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::view::{build, RecordView, Shown};
use super::{message, page, principal, to_sign_in, ClientAddr, Who};
use crate::audit::AuditEvent;
use crate::auth::{Principal, Purpose};
use crate::hl7::nhs::NhsNumber;
use crate::http::Api;
use crate::read::{read_audited, ReadCtx, ReadError, ReadRequest, View, Viewed};

/// How long a page waits for the index writer to file what was acknowledged.
const READ_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The record page (also the objection banner: `objected` and no sections).
#[derive(askama::Template)]
#[template(path = "record.html")]
pub struct RecordPage {
    pub who: Option<Who>,
    pub nhs: String,
    pub objected: bool,
    /// `None`: direct care; `Some(reason)`: a break-glass view.
    pub break_glass: Option<String>,
    pub view: RecordView,
}

impl RecordPage {
    /// The NHS number as it is printed: `943 476 5919`.
    pub fn nhs_spaced(&self) -> String {
        super::spaced(&self.nhs)
    }
}

pub(super) async fn show(
    State(api): State<Api>,
    Path(nhs): Path<String>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Response {
    respond(api, nhs, client, headers, Purpose::default()).await
}

#[derive(Deserialize)]
pub(super) struct GlassForm {
    #[serde(default)]
    reason: String,
}

pub(super) async fn break_glass(
    State(api): State<Api>,
    Path(nhs): Path<String>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Form(g): Form<GlassForm>,
) -> Response {
    let reason = g.reason.trim();
    if reason.is_empty() {
        let who = principal(&api, &headers).await.ok();
        return message(
            StatusCode::BAD_REQUEST,
            who.as_ref().map(Who::from),
            "A reason is required",
            "Breaking the glass needs a reason: it is recorded and reviewed. Go back and give one.",
        );
    }
    respond(api, nhs, client, headers, Purpose::BreakGlass { reason: reason.chars().take(500).collect() }).await
}

async fn respond(api: Api, nhs: String, client: String, headers: HeaderMap, purpose: Purpose) -> Response {
    let who = match principal(&api, &headers).await {
        Ok(who) => who,
        Err(_) => {
            refused(&api, &headers, &nhs, client).await;
            return to_sign_in();
        }
    };
    let Ok(nhs) = NhsNumber::parse(nhs.trim()) else {
        return message(
            StatusCode::BAD_REQUEST,
            Some((&who).into()),
            "Not an NHS number",
            "An NHS number is 10 digits that pass the Modulus 11 check. Search again.",
        );
    };
    let journal_dir = api.journal_dir.clone();
    let ctx = api.read_ctx();
    let progress = api.progress.clone();
    let done = tokio::task::spawn_blocking(move || {
        if !progress.wait_caught_up(READ_WAIT) {
            tracing::warn!(
                wait_ms = READ_WAIT.as_millis() as u64,
                "index writer behind; record page served without the newest messages"
            );
        }
        record_page(&ctx, &journal_dir, &nhs, &who, &purpose, &client).map(|p| (who, p))
    })
    .await;
    match done {
        Ok(Ok((_, Rendered::Page(p)))) => {
            let status = if p.objected { StatusCode::FORBIDDEN } else { StatusCode::OK };
            page(status, &*p)
        }
        Ok(Ok((who, Rendered::Unknown))) => message(
            StatusCode::NOT_FOUND,
            Some((&who).into()),
            "No record",
            "No record is held for this NHS number (or none your role may see).",
        ),
        Ok(Ok((who, Rendered::Forbidden))) => message(
            StatusCode::FORBIDDEN,
            Some((&who).into()),
            "Not allowed",
            "Your role may not read patient records.",
        ),
        Ok(Err(e @ ReadError::Audit(_))) => {
            tracing::error!(error = %e, "audit write failed; record page not shown");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "Record unavailable",
                "The audit log could not be written, so nothing is shown. Try again, or ask the system administrator.",
            )
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "record read failed");
            message(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                "Record unavailable",
                "The record could not be read. Try again, or ask the system administrator.",
            )
        }
        Err(_) => message(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "Record unavailable",
            "The read was interrupted. Try again.",
        ),
    }
}

/// A record page attempt without a valid token: audited as refused (the NHS
/// number as typed, when it is one; the token's user claim marked
/// `unverified:`), nothing read.
async fn refused(api: &Api, headers: &HeaderMap, nhs: &str, client: String) {
    let event = AuditEvent {
        at_ms: crate::pipeline::now_ms(),
        user: api.auth.unverified_user(headers),
        nhs_number: NhsNumber::parse(nhs.trim()).ok().map(|n| n.as_str().to_string()),
        action: "read".into(),
        client,
        via: "web".into(),
        outcome: "unauthenticated".into(),
        ..AuditEvent::default()
    };
    let audit = api.audit.clone();
    if !matches!(tokio::task::spawn_blocking(move || audit.append(&event)).await, Ok(Ok(()))) {
        tracing::error!("audit write failed: a refused record page is not recorded");
    }
}

/// What a record read renders as.
pub enum Rendered {
    Page(Box<RecordPage>),
    Unknown,
    Forbidden,
}

/// Reads the record through the one audited read path and builds the page,
/// document bodies read from the journal. Synchronous (benches call it).
///
/// # Errors
/// As [`read_audited`]: nothing is shown when the read was not audited.
pub fn record_page(
    ctx: &ReadCtx,
    journal_dir: &FsPath,
    nhs: &NhsNumber,
    who: &Principal,
    purpose: &Purpose,
    client: &str,
) -> Result<Rendered, ReadError> {
    let req = ReadRequest { nhs, who, purpose, client, via: "web", view: View::Record };
    let page = |objected, view| RecordPage {
        who: Some(who.into()),
        nhs: nhs.as_str().to_string(),
        objected,
        break_glass: purpose.is_break_glass().then(|| purpose.reason().to_string()),
        view,
    };
    match read_audited(ctx, &req)? {
        Viewed::Shown(json) => {
            let items: Vec<Shown> = match json.get("items").cloned().map(serde_json::from_value) {
                Some(Ok(items)) => items,
                _ => {
                    tracing::error!("the read path returned items the page cannot read");
                    Vec::new()
                }
            };
            let role = ctx.access.view(&who.role);
            let mut view = build(items, |k| role.is_some_and(|r| r.shows(k)));
            for entry in view.sections.iter_mut().flat_map(|s| s.entries.iter_mut()) {
                if let Some(seq) = entry.body_seq {
                    entry.body = Some(super::body::from_journal(journal_dir, seq));
                }
            }
            Ok(Rendered::Page(Box::new(page(false, view))))
        }
        Viewed::Objected => Ok(Rendered::Page(Box::new(page(true, RecordView::default())))),
        Viewed::Unknown => Ok(Rendered::Unknown),
        Viewed::Forbidden => Ok(Rendered::Forbidden),
    }
}
