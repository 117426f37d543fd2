//! Request guards in front of every read API route, before any handler
//! (and before authentication) runs:
//!
//! 1. header bounds: too many headers, too many header bytes, or one value
//!    too long → 431; two `Authorization`, `X-User`, `Host`, `Cookie`,
//!    `Origin`, `Content-Type` or `X-Requested-By` headers → 400 (two
//!    credentials would let a proxy and the engine disagree on who asks);
//! 2. `Host` against the allow-list → 421 (DNS rebinding: a page on
//!    `evil.example` that resolves to 127.0.0.1 sends `Host: evil.example`);
//! 3. state-changing methods (POST, PUT, PATCH, DELETE): a present `Origin`
//!    must be ours and `Sec-Fetch-Site` must not be `cross-site`/`same-site`;
//!    then the request must carry `Content-Type: application/json` or an
//!    `X-Requested-By` header (neither can be sent cross-origin by a browser
//!    without a CORS preflight, which this API never grants), or else, off
//!    the API ([`API_PREFIXES`]: `/admin`, `/patients`), be a form post from
//!    our own pages (`Origin`, or else `Referer`, of ours: the web page's
//!    sign-in, search and break-glass forms) → else 403;
//! 4. patient reads ([`READ_PREFIXES`], [`SEARCH_PATHS`]): per-user and
//!    per-client token buckets → 429 with `Retry-After`, and the
//!    enumeration alert for reads that name a patient (`guard/rate.rs`).
//!
//! Each refusal is one event in [`crate::events`] (WARN line and counter).
//! What this does not do: verify who the user is. The per-user limit is
//! keyed by a hash of the `Authorization` header as sent (else `X-User`,
//! else the `Cookie` header that carries the web page's session), so
//! it holds before authentication; an unauthenticated request is refused
//! by the handler anyway.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::config::guard::GuardConfig;
use crate::events::{EnumerationSuspected, HttpRefused, ReadRateLimited};
use crate::metrics::Metrics;

mod hosts;
mod rate;

pub use hosts::Hosts;
use rate::{Reader, Reads};

/// Paths that show a patient's record, named by the path segment after
/// the prefix (the JSON read API, the web page's record and break-glass):
/// rate-limited and watched for enumeration, whatever the method.
pub const READ_PREFIXES: &[&str] = &["/patients/", "/record/"];

/// Paths that look patients up without naming one in the path (the web
/// page's search): rate-limited only.
pub const SEARCH_PATHS: &[&str] = &["/search"];

/// The API proper: a state-changing request here needs JSON or
/// `X-Requested-By`; a same-origin form post is not enough.
pub const API_PREFIXES: &[&str] = &["/admin", "/patients"];

/// Headers a request may carry at most once.
const SINGLE: &[&str] = &["authorization", "x-user", "host", "cookie", "origin", "content-type", "x-requested-by"];

/// The guards' settings and state; one per read API listener.
pub struct Guard {
    hosts: Hosts,
    cfg: GuardConfig,
    metrics: Metrics,
    reads: Reads,
}

impl Guard {
    /// `listen` is the address actually bound (its port is part of every
    /// default allowed host).
    pub fn new(cfg: &GuardConfig, listen: SocketAddr, metrics: Metrics) -> Guard {
        Guard { hosts: Hosts::new(&cfg.allowed_hosts, listen), cfg: cfg.clone(), metrics, reads: Reads::new(cfg) }
    }

    /// Whether `Origin` (or, without one, `Referer`) names one of our hosts.
    /// For form posts from our own pages (sign-in, search, break glass): a
    /// request with neither is refused (a browser sends Origin on a POST;
    /// only old ones omit both).
    pub fn same_origin(&self, headers: &HeaderMap) -> bool {
        let text = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
        match (text(header::ORIGIN), text(header::REFERER)) {
            (Some(origin), _) => self.hosts.origin_allowed(origin),
            (None, Some(referer)) => self.hosts.origin_allowed(referer),
            (None, None) => false,
        }
    }
}

/// A refusal: status, reason (metric label), detail for the log, and the
/// text the client is told.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    detail: String,
    text: &'static str,
}

/// The middleware: `axum::middleware::from_fn_with_state(guard, check)`.
pub async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let client = req.extensions().get::<axum::extract::ConnectInfo<crate::http::Client>>().and_then(|c| ip(&c.0 .0));
    let client_text = client.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    let refusal =
        headers(&guard.cfg, req.headers()).or_else(|| host(&guard, &req)).or_else(|| state_change(&guard, &req));
    if let Some(r) = refusal {
        HttpRefused {
            reason: r.reason,
            detail: &r.detail,
            client: &client_text,
            method: req.method().as_str(),
            path: req.uri().path(),
        }
        .emit(&guard.metrics);
        return (r.status, Json(json!({ "error": r.text }))).into_response();
    }
    let path = req.uri().path();
    let patient = patient_of(path);
    if patient.is_some() || SEARCH_PATHS.contains(&path) {
        let reader = Reader::of(req.headers(), client);
        if let Some(refused) = read(&guard, &reader, patient, &client_text) {
            return refused;
        }
    }
    next.run(req).await
}

/// The IP address of a `Client` (`ip:port`, as the listener saw it).
fn ip(client: &str) -> Option<std::net::IpAddr> {
    client.parse::<SocketAddr>().map(|a| a.ip()).or_else(|_| client.parse()).ok()
}

/// Counts a patient read: 429 over a limit, the enumeration alert past
/// the distinct-patient threshold.
fn read(guard: &Guard, reader: &Reader, patient: Option<&str>, client: &str) -> Option<Response> {
    let now = std::time::Instant::now();
    let seen = guard.reads.read(reader, patient, now);
    for (scope, distinct) in seen.alerts {
        EnumerationSuspected {
            scope,
            client,
            user: reader.label(),
            distinct_patients: distinct,
            window_secs: guard.cfg.enumeration_window.as_secs(),
        }
        .emit(&guard.metrics);
    }
    let (scope, wait) = seen.limited?;
    let retry_after_secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    ReadRateLimited { scope, client, retry_after_secs }.emit(&guard.metrics);
    let text = match scope {
        "user" => "too many patient reads for this user: wait and try again ([http] reads_per_minute)",
        _ => "too many patient reads from this address: wait and try again ([http] client_reads_per_minute)",
    };
    let retry = [(header::RETRY_AFTER, retry_after_secs.to_string())];
    Some((StatusCode::TOO_MANY_REQUESTS, retry, Json(json!({ "error": text }))).into_response())
}

/// The patient segment of a read path, if `path` is one.
fn patient_of(path: &str) -> Option<&str> {
    let rest = READ_PREFIXES.iter().find_map(|p| path.strip_prefix(p))?;
    let patient = rest.split('/').next().unwrap_or("");
    (!patient.is_empty()).then_some(patient)
}

/// The route of a path for logs: any segment with a digit (an NHS
/// number, a sequence number) becomes `{id}`, a long one `{…}`, so no
/// identifier from a path (`/patients/…`, `/admin/objections/…`) is logged.
pub fn route_of(path: &str) -> String {
    let mut route = String::new();
    for segment in path.split('/').skip(1).take(8) {
        route.push('/');
        if segment.bytes().any(|b| b.is_ascii_digit()) {
            route.push_str("{id}");
        } else if segment.len() > 40 {
            route.push_str("{…}");
        } else {
            route.push_str(segment);
        }
    }
    route
}

fn headers(cfg: &GuardConfig, headers: &HeaderMap) -> Option<Refusal> {
    let too_large = |reason, detail: String, text| Refusal {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        reason,
        detail,
        text,
    };
    if headers.len() > cfg.max_headers {
        return Some(too_large(
            "too_many_headers",
            headers.len().to_string(),
            "too many request headers ([http] max_headers)",
        ));
    }
    let mut total = 0usize;
    for (name, value) in headers {
        if value.len() > cfg.max_header_bytes {
            let text = "a request header is too long ([http] max_header_bytes)";
            return Some(too_large("header_too_large", name.as_str().to_string(), text));
        }
        total += name.as_str().len() + value.len();
    }
    if total > cfg.max_headers_bytes {
        let text = "the request headers are too long together ([http] max_headers_bytes)";
        return Some(too_large("header_too_large", total.to_string(), text));
    }
    let twice = SINGLE.iter().find(|name| headers.get_all(**name).iter().nth(1).is_some())?;
    Some(Refusal {
        status: StatusCode::BAD_REQUEST,
        reason: "duplicate_header",
        detail: twice.to_string(),
        text: "a header that may appear once (Authorization, X-User, Host, Cookie, Origin, Content-Type, \
               X-Requested-By) appears more than once",
    })
}

fn host(guard: &Guard, req: &Request) -> Option<Refusal> {
    let host =
        req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).or(req.uri().authority().map(|a| a.as_str()));
    match host {
        Some(h) if guard.hosts.allowed(h) => None,
        Some(h) => Some(Refusal {
            status: StatusCode::MISDIRECTED_REQUEST,
            reason: "host",
            detail: h.to_string(),
            text: "this Host is not served here: use the address the engine is configured for ([http] allowed_hosts)",
        }),
        None => Some(Refusal {
            status: StatusCode::BAD_REQUEST,
            reason: "host",
            detail: String::new(),
            text: "a Host header is required",
        }),
    }
}

fn state_change(guard: &Guard, req: &Request) -> Option<Refusal> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE) {
        return None;
    }
    let h = req.headers();
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let cross = |detail: &str| Refusal {
        status: StatusCode::FORBIDDEN,
        reason: "cross_origin",
        detail: detail.to_string(),
        text: "a cross-origin request may not change anything here",
    };
    if let Some(origin) = text("origin") {
        if !guard.hosts.origin_allowed(origin) {
            return Some(cross(origin));
        }
    }
    if let Some(site @ ("cross-site" | "same-site")) = text("sec-fetch-site") {
        return Some(cross(site));
    }
    let json = text("content-type").is_some_and(is_json);
    let marked = text("x-requested-by").is_some_and(|v| !v.is_empty());
    if json || marked {
        return None;
    }
    let path = req.uri().path();
    let api =
        API_PREFIXES.iter().any(|p| path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')));
    if !api {
        // A form post from one of our own pages (sign-in, search, break glass).
        return (!guard.same_origin(h)).then(|| cross("no Origin or Referer of ours"));
    }
    Some(Refusal {
        status: StatusCode::FORBIDDEN,
        reason: "content_type",
        detail: text("content-type").unwrap_or("none").to_string(),
        text: "a request that changes something must send Content-Type: application/json \
               (or, for another body such as CSV, an X-Requested-By header)",
    })
}

/// `application/json`, with or without parameters, any case.
fn is_json(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_reads_are_recognised_and_their_number_kept_out_of_logs() {
        assert_eq!(patient_of("/patients/9434765919"), Some("9434765919"));
        assert_eq!(patient_of("/patients/9434765919/history"), Some("9434765919"));
        assert_eq!(patient_of("/patients/"), None);
        assert_eq!(patient_of("/admin/reload"), None);
        assert_eq!(route_of("/patients/9434765919/history"), "/patients/{id}/history");
        assert_eq!(route_of("/admin/objections/943%20476%205919"), "/admin/objections/{id}");
        assert_eq!(route_of("/admin/reload"), "/admin/reload");
        assert_eq!(route_of("/"), "/");
    }

    #[test]
    fn json_content_type_with_parameters_is_json() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json("application/jsonp"));
    }
}
