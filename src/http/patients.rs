//! `GET /patients/{nhs}` and `/patients/{nhs}/history`: the bearer token is
//! checked first (401, audited, before any store access: the same answer for
//! a known and an unknown patient), then the purpose of the read, then the
//! one audited read path (`read::read_audited`).

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{error, refuse_unauthenticated, Api, Client, READ_WAIT};
use crate::auth::Purpose;
use crate::hl7::nhs::NhsNumber;
use crate::read::{read_audited, ReadError, ReadRequest, View, Viewed, OBJECTED};

/// A longer reason is refused (400): it is free text for a reviewer, not a document.
const MAX_REASON_CHARS: usize = 1000;

/// `?purpose=break_glass&reason=…` (or the `X-Purpose` / `X-Reason` headers).
#[derive(Debug, Default, Deserialize)]
pub(super) struct PurposeQuery {
    purpose: Option<String>,
    reason: Option<String>,
}

pub(super) async fn record(
    State(api): State<Api>,
    ConnectInfo(client): ConnectInfo<Client>,
    Path(nhs): Path<String>,
    Query(q): Query<PurposeQuery>,
    headers: HeaderMap,
) -> Response {
    view(api, client, nhs, q, headers, View::Record).await
}

pub(super) async fn history(
    State(api): State<Api>,
    ConnectInfo(client): ConnectInfo<Client>,
    Path(nhs): Path<String>,
    Query(q): Query<PurposeQuery>,
    headers: HeaderMap,
) -> Response {
    view(api, client, nhs, q, headers, View::History).await
}

/// The purpose a read states: the query wins over the headers; direct care
/// (the professional's own declaration, or `reason` as the relationship)
/// unless `break_glass`, which needs a reason.
///
/// # Errors
/// An unknown purpose, a break-glass read without a reason, or a reason too long.
pub fn purpose(q_purpose: Option<&str>, q_reason: Option<&str>, headers: &HeaderMap) -> Result<Purpose, String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let name = q_purpose.or_else(|| header("x-purpose")).map(str::trim).unwrap_or("");
    let reason = q_reason.or_else(|| header("x-reason")).map(str::trim).unwrap_or("");
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(format!("the reason is longer than {MAX_REASON_CHARS} characters"));
    }
    match name {
        "" | "direct_care" if reason.is_empty() => Ok(Purpose::default()),
        "" | "direct_care" => Ok(Purpose::DirectCare { relationship: reason.to_string() }),
        "break_glass" if reason.is_empty() => {
            Err("a break-glass read needs a reason: add &reason=… (or an X-Reason header)".into())
        }
        "break_glass" => Ok(Purpose::BreakGlass { reason: reason.to_string() }),
        _ => Err("purpose must be direct_care or break_glass".into()),
    }
}

async fn view(api: Api, client: Client, nhs: String, q: PurposeQuery, headers: HeaderMap, which: View) -> Response {
    let action = match which {
        View::Record => "read",
        View::History => "read_history",
    };
    let parsed = NhsNumber::parse(&nhs).ok();
    let who = match super::authenticate(&api, &headers).await {
        Ok(who) => who,
        Err(e) => {
            let patient = parsed.map(|n| n.as_str().to_string());
            return refuse_unauthenticated(&api, &headers, e, action, patient, &client).await;
        }
    };
    let purpose = match purpose(q.purpose.as_deref(), q.reason.as_deref(), &headers) {
        Ok(p) => p,
        Err(text) => return error(StatusCode::BAD_REQUEST, text),
    };
    let Some(nhs) = parsed else {
        return error(StatusCode::BAD_REQUEST, "not a valid NHS number (10 digits passing the Modulus 11 check)");
    };
    let nhs_text = nhs.as_str().to_string();
    let result = tokio::task::spawn_blocking(move || {
        // Read-your-writes: a message acknowledged before this request is in
        // the record. Past the wait (an overloaded index writer), the record
        // shown is the one filed so far.
        if !api.progress.wait_caught_up(READ_WAIT) {
            tracing::warn!(
                wait_ms = READ_WAIT.as_millis() as u64,
                "index writer behind; record served without the newest messages"
            );
        }
        let req = ReadRequest { nhs: &nhs, who: &who, purpose: &purpose, client: &client.0, via: "http", view: which };
        read_audited(&api.read_ctx(), &req)
    })
    .await;
    match result {
        Ok(Ok(Viewed::Shown(body))) => Json(body).into_response(),
        Ok(Ok(Viewed::Unknown)) => error(StatusCode::NOT_FOUND, "no record for this NHS number"),
        Ok(Ok(Viewed::Objected)) => {
            (StatusCode::FORBIDDEN, Json(json!({ "error": OBJECTED, "nhs_number": nhs_text, "objection": true })))
                .into_response()
        }
        Ok(Ok(Viewed::Forbidden)) => {
            error(StatusCode::FORBIDDEN, "your role may not read records (see the access file)")
        }
        Ok(Err(e @ ReadError::Audit(_))) => {
            tracing::error!(error = %e, "audit write failed; record not shown");
            error(StatusCode::SERVICE_UNAVAILABLE, "the audit log could not be written, so nothing is shown")
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "record read failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the index could not be read")
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the read was interrupted"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn break_glass_needs_a_reason_and_the_query_wins_over_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(purpose(None, None, &h), Ok(Purpose::default()));
        assert!(purpose(Some("break_glass"), Some("  "), &h).is_err());
        h.insert("x-purpose", "break_glass".parse().unwrap());
        h.insert("x-reason", "unconscious in ED".parse().unwrap());
        assert_eq!(purpose(None, None, &h), Ok(Purpose::BreakGlass { reason: "unconscious in ED".into() }));
        assert_eq!(purpose(Some("direct_care"), Some("GP"), &h), Ok(Purpose::DirectCare { relationship: "GP".into() }));
        assert!(purpose(Some("curiosity"), None, &h).is_err());
    }
}
