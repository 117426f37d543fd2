//! The read API: `GET /patients/{nhs}` (audited), `POST /admin/reload`,
//! `GET /health`, `GET /ready`, `GET /metrics` (Prometheus text format), and
//! the objection register (`/admin/objections`, in `http/objections.rs`).
//!
//! Every record read and every `/admin/*` request carries a bearer token
//! (`auth`): none, or a bad one, is 401 with `WWW-Authenticate: Bearer` and
//! audited as a refused attempt, before the store is touched. A record read
//! shows only the categories the reader's role sees (`access`) and is
//! audited before it is returned (`read`); a patient with a standing
//! objection is never shown (403). `/admin/*` needs an admin role (403).
//! `/health`, `/ready` and `/metrics` carry no patient data and need no token.
//!
//! `guard.rs` runs first on every request (Host allow-list, header bounds,
//! cross-origin refusals, read rate limits); `patients.rs` reads records,
//! `admin.rs` guards and serves `/admin/*`, `objections.rs` the objection
//! register, `audit.rs` the audit search (auditors and admins), `messages.rs`
//! and `replay.rs` the journal search and re-processing; the professional's
//! pages are `crate::web`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::audit::{AuditEvent, AuditLog};
use crate::auth::AuthError;
use crate::health::Health;
use crate::indexer::Progress;
use crate::metrics::{JournalSize, Scrape};
use crate::mllp::admission::ConnectionStats;
use crate::pipeline::{Mappings, Replayer};
use crate::read::ReadCtx;
use crate::store::Store;

mod admin;
mod audit;
mod messages;
mod objections;
mod patients;
mod replay;

pub mod guard;

pub use admin::{reload_and_regovern, reload_mappings, Reloaded};
pub use patients::purpose;

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    pub store: Store,
    /// Reads wait for the index writer to file what was acknowledged before.
    pub progress: Progress,
    pub mappings: Mappings,
    pub mapping_dir: PathBuf,
    pub health: Health,
    /// The MLLP listener's counters, read at scrape time.
    pub mllp_stats: Arc<ConnectionStats>,
    /// Host allow-list, header bounds, cross-origin refusals and read rate
    /// limits, applied to every route before its handler (`http/guard.rs`).
    pub guard: Arc<guard::Guard>,
    /// The journal directory, whose segments `/metrics` sums at scrape time.
    pub journal_dir: PathBuf,
    /// Re-files a record from the journal when its objection is withdrawn.
    pub replayer: Replayer,
    /// Every view of patient data is appended here before it is shown.
    pub audit: AuditLog,
    /// Which roles may read, and which categories each sees.
    pub access: Arc<Access>,
    /// Verifies the bearer token of every request.
    pub auth: Arc<crate::auth::Auth>,
    /// The access file, loaded again by `POST /admin/reload`.
    pub access_file: PathBuf,
    /// In a cluster: where objection changes are published for every node.
    pub cluster_gov: Option<crate::cluster::govern::GovHandle>,
}

impl Api {
    /// What the read path needs.
    pub fn read_ctx(&self) -> ReadCtx {
        ReadCtx { store: self.store.clone(), audit: self.audit.clone(), access: self.access.clone() }
    }
}

/// `/ready` fails when the index is more than this many journal entries
/// behind what was acknowledged (about a second of peak load).
const MAX_INDEX_LAG: u64 = 50_000;

/// How long a record read waits for the index writer to catch up.
pub(crate) const READ_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves until `cancel` fires.
pub async fn run<L>(listener: L, api: Api, cancel: CancellationToken) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    Client: for<'a> Connected<axum::serve::IncomingStream<'a, L>>,
{
    let admin = Router::new()
        .route("/admin/parked", get(admin::parked))
        .route("/admin/conflicts", get(admin::conflicts))
        .route("/admin/reload", post(admin::reload))
        .route("/admin/objections", get(objections::list).post(objections::add))
        .route("/admin/objections/log", get(objections::log))
        .route("/admin/objections/import", post(objections::import))
        .route("/admin/objections/{nhs}", delete(objections::remove))
        .route("/admin/messages", get(messages::search))
        .route("/admin/replay", post(replay::replay))
        .route("/admin/reindex", post(replay::reindex))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), admin::require_admin));
    let app = Router::new()
        .route("/patients/{nhs}", get(patients::record))
        .route("/patients/{nhs}/history", get(patients::history))
        .merge(admin)
        .route(
            "/admin/audit",
            get(audit::search).route_layer(axum::middleware::from_fn_with_state(api.clone(), admin::require_auditor)),
        )
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(crate::web::routes())
        // Last: it wraps the routes above and the fallback; a route added below is unguarded.
        .layer(axum::middleware::from_fn_with_state(api.guard.clone(), guard::check))
        .with_state(api);
    axum::serve(listener, app.into_make_service_with_connect_info::<Client>())
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}

/// 200 with `{"status":"ok",...}`, or 503 naming each failing part and why:
/// the pipeline thread died, journal writes fail (messages are refused with
/// AR 207), or index writes fail (records lag until sled recovers).
async fn health(State(api): State<Api>) -> Response {
    report(api.health.health())
}

/// 200 once listening, replayed and the index within [`MAX_INDEX_LAG`] of
/// what was acknowledged, and healthy; else 503 with the reasons.
async fn ready(State(api): State<Api>) -> Response {
    report(api.health.ready(api.progress.lag(), MAX_INDEX_LAG))
}

/// The engine's counters in Prometheus text format (0.0.4); 404 when
/// `[http] metrics = false`. What other parts already count is read here,
/// on the blocking pool (the journal directory is stat'ed, the index read).
async fn metrics(State(api): State<Api>) -> Response {
    let m = api.health.metrics().clone();
    if !m.enabled() {
        return error(StatusCode::NOT_FOUND, "metrics are off: set [http] metrics = true in engine.toml");
    }
    let text = tokio::task::spawn_blocking(move || {
        let checks = |r: crate::health::Report| r.checks.into_iter().map(|(name, c)| (name, c.ok)).collect();
        let scrape = Scrape {
            journal: JournalSize::of_dir(&api.journal_dir),
            index_lag: api.progress.lag(),
            unindexed: api.store.unindexed_count().ok().map(|n| n as u64),
            refused: api.health.refused(),
            connections: api.mllp_stats.snapshot(),
            log: crate::telemetry::log_stats(),
            charset_fallbacks: crate::telemetry::charset_fallbacks(),
            health: checks(api.health.health()),
            ready: checks(api.health.ready(api.progress.lag(), MAX_INDEX_LAG)),
            cluster: api.health.cluster(),
        };
        m.render(&scrape)
    })
    .await;
    match text {
        Ok(text) => ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the scrape was interrupted"),
    }
}

fn report(r: crate::health::Report) -> Response {
    let status = if r.ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(r)).into_response()
}

fn error(status: StatusCode, text: impl Into<String>) -> Response {
    (status, Json(json!({ "error": text.into() }))).into_response()
}

/// The client's address (`ip:port`) for the audit, whatever the listener.
#[derive(Debug, Clone)]
pub struct Client(pub String);

impl Connected<axum::serve::IncomingStream<'_, TcpListener>> for Client {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        Client(stream.remote_addr().to_string())
    }
}

impl Connected<axum::serve::IncomingStream<'_, crate::mllp::https::HttpsListener>> for Client {
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::mllp::https::HttpsListener>) -> Self {
        Client(stream.remote_addr().to_string())
    }
}

/// The request's principal. Verification is cheap and runs here, unless a
/// JWKS URL may have to be fetched again (a key id not seen before): then
/// on the blocking pool, so a slow IdP cannot stall the runtime.
///
/// # Errors
/// No token, or one that fails a check.
pub async fn authenticate(api: &Api, headers: &HeaderMap) -> Result<crate::auth::Principal, AuthError> {
    if !api.auth.may_fetch() {
        return api.auth.authenticate(headers);
    }
    let (auth, headers) = (api.auth.clone(), headers.clone());
    tokio::task::spawn_blocking(move || auth.authenticate(&headers))
        .await
        .unwrap_or_else(|_| Err(AuthError::Malformed("verification was interrupted".into())))
}

/// 401 for a request without an acceptable token, after auditing the
/// refused attempt (`action`, the NHS number asked for, the client, and the
/// token's user claim marked `unverified:`). The body names what was wrong
/// with the token and nothing about the patient.
pub async fn refuse_unauthenticated(
    api: &Api,
    headers: &HeaderMap,
    why: AuthError,
    action: &str,
    nhs_number: Option<String>,
    client: &Client,
) -> Response {
    let event = AuditEvent {
        user: api.auth.unverified_user(headers),
        nhs_number,
        action: action.into(),
        reason: why.to_string(),
        outcome: "unauthenticated".into(),
        ..AuditEvent::default()
    };
    audit_refusal(api, event, client).await;
    tracing::info!(action, client = %client.0, error_kind = why.kind(), "request refused: no acceptable token");
    let (text, code) = match why {
        AuthError::Missing => ("authentication required", "Bearer"),
        _ => ("token rejected", "Bearer error=\"invalid_token\""),
    };
    let mut resp =
        (StatusCode::UNAUTHORIZED, Json(json!({ "error": text, "reason": why.to_string() }))).into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(code));
    resp
}

/// Appends a refusal (`at_ms`, `client` and `via` filled in here). A refusal
/// that cannot be audited is still refused; the failure is logged.
pub(crate) async fn audit_refusal(api: &Api, mut event: AuditEvent, client: &Client) {
    event.at_ms = crate::pipeline::now_ms();
    event.client = client.0.clone();
    event.via = "http".into();
    let audit = api.audit.clone();
    let done = tokio::task::spawn_blocking(move || audit.append(&event)).await;
    if !matches!(done, Ok(Ok(()))) {
        tracing::error!("the audit log could not be written: a refused request is not recorded");
    }
}

/// Binds the read API.
///
/// # Errors
/// The address is in use or not local.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
