//! `GET /admin/audit?nhs=&user=&since=&break_glass=`: the audit events
//! asked for, as the log's own JSON lines (`application/x-ndjson`, oldest
//! first), for `recordhub audit --server`. Reading the audit is itself
//! audited (action `audit_search`), before anything is returned.
//!
//! Who asks: the principal an authentication layer put in the request's
//! extensions, else `X-User` (until bearer tokens guard `/admin/*`).

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{error, Api};
use crate::audit::{query, AuditEvent};
use crate::auth::Principal;

/// The filters of a query string; an unknown parameter is refused, so a
/// typo does not silently widen the search.
fn filter(raw: Option<&str>) -> Result<query::Filter, String> {
    let mut f = query::Filter::default();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = v.replace('+', " ");
        let v = percent_encoding::percent_decode_str(&v).decode_utf8().map_err(|_| format!("{k}: not UTF-8"))?;
        let v = v.trim();
        match k {
            "nhs" => {
                let n = crate::hl7::nhs::NhsNumber::parse(v)
                    .map_err(|_| "nhs: not a valid NHS number (10 digits passing the Modulus 11 check)".to_string())?;
                f.nhs = Some(n.as_str().to_string());
            }
            "user" => f.user = Some(v.to_string()),
            "since" => f.since_ms = Some(query::parse_since(v).map_err(|e| e.to_string())?),
            "break_glass" => f.break_glass = matches!(v, "" | "true" | "1" | "yes"),
            other => return Err(format!("unknown parameter {other:?}: expected nhs, user, since, break_glass")),
        }
    }
    Ok(f)
}

/// `GET /admin/audit`.
pub(super) async fn search(
    State(api): State<Api>,
    Extension(who): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Response {
    let f = match filter(raw.as_deref()) {
        Ok(f) => f,
        Err(text) => return error(StatusCode::BAD_REQUEST, text),
    };
    let done = tokio::task::spawn_blocking(move || {
        let lines = query::lines(api.audit.dir(), &f)?;
        let found = memchr::memchr_iter(b'\n', &lines).count();
        let event = AuditEvent {
            at_ms: crate::pipeline::now_ms(),
            user: who.user,
            role: who.role,
            org: who.org,
            nhs_number: f.nhs,
            action: "audit_search".into(),
            via: "http".into(),
            reason: format!("{found} audit events listed"),
            outcome: if found == 0 { "none_found" } else { "found" }.into(),
            ..AuditEvent::default()
        };
        api.audit.append(&event)?;
        Ok::<_, std::io::Error>(lines)
    })
    .await;
    match done {
        Ok(Ok(lines)) => ([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "audit search failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "the audit log could not be read or the search not audited")
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the search was interrupted"),
    }
}
