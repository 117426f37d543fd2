//! `GET /admin/messages?…`: the journal searched by metadata (control id,
//! sender, type, verdict, ERR code, time or seq range, limit) and by patient
//! (`nhs`, `local_id`, through the index), as `recordhub journal search`
//! prints it: metadata and the rejection reason, never message content.
//! Answers `{"messages": [...], "summary": {scanned, matched, truncated, damage}}`.
//! A search by patient is audited (`message_search`, with the admin's
//! verified token) before it is answered; if the audit log
//! cannot be written it answers 503 and nothing else.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde_json::json;

use super::{error, Api, READ_WAIT};
use crate::journal::query::{metadata, Filters};
use crate::journal::JournalReader;
use crate::pipeline::{select, SelectError};

/// Entries answered when the request gives no `limit`.
const DEFAULT_LIMIT: usize = 1000;
/// The most one answer holds; page with `since=<last seq + 1>`.
const MAX_LIMIT: usize = 100_000;

/// `GET /admin/messages`.
pub(super) async fn search(
    State(api): State<Api>,
    Extension(who): Extension<crate::auth::Principal>,
    RawQuery(q): RawQuery,
) -> Response {
    let mut filters = match Filters::from_query_string(q.as_deref().unwrap_or("")) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    filters.limit = Some(filters.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT));
    let done = tokio::task::spawn_blocking(move || {
        if filters.needs_index() {
            // What was acknowledged before the request is findable by patient.
            api.progress.wait_caught_up(READ_WAIT);
        }
        let query = select(&api.store, &filters)?;
        if let Some(mut event) = filters.audit_event(&who.user, "http", "") {
            event.role = who.role.clone();
            event.org = who.org.clone();
            api.audit.append(&event).map_err(Failed::Audit)?;
        }
        let reader = JournalReader::open(&api.journal_dir).map_err(Failed::Journal)?;
        let mut messages = Vec::new();
        let summary = query.run(&reader, |e| {
            messages.push(metadata(&e));
            Ok::<_, Failed>(())
        })?;
        Ok::<_, Failed>(json!({ "messages": messages, "summary": summary }))
    })
    .await;
    match done {
        Ok(Ok(body)) => Json(body).into_response(),
        Ok(Err(Failed::Select(SelectError::Filter(e)))) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e @ Failed::Audit(_))) => {
            tracing::error!(error = %crate::pipeline::error_chain(&e), "audit write failed; search not answered");
            error(StatusCode::SERVICE_UNAVAILABLE, "the audit log could not be written, so nothing is shown")
        }
        Ok(Err(e)) => {
            tracing::error!(error = %crate::pipeline::error_chain(&e), "message search failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the search was interrupted"),
    }
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error("the journal could not be read")]
    Journal(#[from] crate::journal::JournalError),
    #[error("the audit log could not be written")]
    Audit(#[source] std::io::Error),
}
