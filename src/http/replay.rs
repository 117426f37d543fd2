//! Re-processing while the engine runs:
//! - `POST /admin/replay` with a JSON body of the search filters (as
//!   `GET /admin/messages` takes them) and `"dry_run": true|false`: each
//!   selected entry is mapped again with the mappings in force and re-filed
//!   in place; the answer lists per entry what changed (items added,
//!   changed, removed: kinds and field names). Never re-journaled, never
//!   re-acknowledged.
//! - `POST /admin/reindex`: the same over every entry (a summary only).
//!   Ingest and reads go on: a read sees each message's items before or
//!   after its re-filing, never a record emptied for a rebuild. Identity
//!   links, merges and the dedup table are kept as they are (a full
//!   rebuild of those is `recordhub reindex --data` with the engine
//!   stopped). After retention retired segments it WARNs: their messages
//!   are not in the journal to re-map.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{error, Api};
use crate::journal::query::{Filters, Query};
use crate::pipeline::{select, ReprocessError, SelectError};

/// Per-entry reports one answer lists; the summary counts them all.
const MAX_LISTED: usize = 10_000;

/// How long a re-processing waits for the index writer to file what was acknowledged.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(60);

/// One re-processing at a time: two passes over the same entries would race.
static RUNNING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `POST /admin/replay`.
pub(super) async fn replay(State(api): State<Api>, body: axum::body::Bytes) -> Response {
    let (filters, dry_run) = match parse_body(&body) {
        Ok(v) => v,
        Err(text) => return error(StatusCode::BAD_REQUEST, text),
    };
    let done = tokio::task::spawn_blocking(move || {
        let query = select(&api.store, &filters)?;
        let mut entries = Vec::new();
        let tally = run(&api, &query, dry_run, |r| {
            if entries.len() < MAX_LISTED {
                entries.push(r);
            }
        })?;
        let listed = entries.len() as u64;
        Ok::<_, Failed>(json!({ "entries": entries, "entries_listed": listed, "summary": tally }))
    })
    .await;
    answer(done)
}

/// `POST /admin/reindex`.
pub(super) async fn reindex(State(api): State<Api>) -> Response {
    let done = tokio::task::spawn_blocking(move || {
        let retired = crate::journal::retention::retired(&api.journal_dir);
        if let Some(r) = &retired {
            tracing::warn!(up_to_seq = r.up_to_seq, segments = r.segments,
                "reindex after retention: messages in retired journal segments are not re-mapped (they are no longer in the journal)");
        }
        let tally = run(&api, &Query::default(), false, |_| {})?;
        tracing::info!(refiled = tally.refiled, unchanged = tally.unchanged, skipped = tally.skipped, "live reindex done");
        let warning = retired.as_ref().map(|r| {
            format!(
                "journal segments up to seq {} were retired by retention: their messages were not re-mapped",
                r.up_to_seq
            )
        });
        Ok::<_, Failed>(json!({ "reindexed": tally, "retired": retired, "warning": warning }))
    })
    .await;
    answer(done)
}

fn run(
    api: &Api,
    query: &Query,
    dry_run: bool,
    each: impl FnMut(crate::pipeline::Reprocessed),
) -> Result<crate::pipeline::Tally, Failed> {
    let _one = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    if !api.progress.wait_caught_up(CATCH_UP) {
        return Err(Failed::Behind);
    }
    Ok(api.replayer.reprocess(&api.store, query, dry_run, each)?)
}

/// The filters and `dry_run` of a request body (`{}` or empty: everything, for real).
fn parse_body(body: &[u8]) -> Result<(Filters, bool), String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((Filters::default(), false));
    }
    let mut v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("expected a JSON object: {e}"))?;
    let dry_run = match v.as_object_mut().and_then(|o| o.remove("dry_run")) {
        None => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(_) => return Err("dry_run must be true or false".into()),
    };
    let filters = serde_json::from_value(v).map_err(|e| {
        format!("expected filters control_id, sender, type, verdict, err, since, until, nhs, local_id, limit: {e}")
    })?;
    Ok((filters, dry_run))
}

fn answer(done: Result<Result<serde_json::Value, Failed>, tokio::task::JoinError>) -> Response {
    match done {
        Ok(Ok(body)) => Json(body).into_response(),
        Ok(Err(Failed::Select(SelectError::Filter(e)))) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e @ Failed::Behind)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Ok(Err(e)) => {
            tracing::error!(error = %crate::pipeline::error_chain(&e), "re-processing failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "re-processing was interrupted"),
    }
}

/// Why re-processing did not run or stopped.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Reprocess(#[from] ReprocessError),
    /// Re-filing before the index writer files an entry could race it.
    #[error("the index writer is more than a minute behind; try again once it has caught up (see /ready)")]
    Behind,
}
