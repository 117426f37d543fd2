//! The read API: `GET /patients/{nhs}` (audited), `POST /admin/reload`,
//! `GET /health`, `GET /ready`, `GET /metrics` (Prometheus text format), and
//! the objection register (`/admin/objections`, in `http/objections.rs`).
//!
//! A patient with a standing objection is never shown: `/patients/{nhs}` and
//! its `/history` answer 403 with no item (the attempt is still audited).
//!
//! Every record view names its user (`X-User`, required) and is written to the
//! audit tree, flushed, before the record is returned: who, when, which NHS
//! number, how many items. This listener is meant for loopback or a trusted
//! network behind the EPR that launches it; it does no authentication of its
//! own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::audit::AuditLog;
use crate::auth::{Principal, Purpose};
use crate::health::Health;
use crate::hl7::nhs::NhsNumber;
use crate::indexer::Progress;
use crate::mapping::MappingSet;
use crate::metrics::{JournalSize, Scrape};
use crate::mllp::admission::ConnectionStats;
use crate::pipeline::{Mappings, Replayer};
use crate::read::{read_audited, ReadCtx, ReadError, ReadRequest, View, Viewed, OBJECTED};
use crate::store::Store;

mod objections;

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
const READ_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves until `cancel` fires.
pub async fn run<L>(listener: L, api: Api, cancel: CancellationToken) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let app = Router::new()
        .route("/patients/{nhs}", get(patient))
        .route("/patients/{nhs}/history", get(patient_history))
        .route("/admin/parked", get(parked))
        .route("/admin/conflicts", get(conflicts))
        .route("/admin/reload", post(reload))
        .route("/admin/objections", get(objections::list).post(objections::add))
        .route("/admin/objections/log", get(objections::log))
        .route("/admin/objections/import", post(objections::import))
        .route("/admin/objections/{nhs}", delete(objections::remove))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(crate::web::routes())
        .with_state(api);
    axum::serve(listener, app).with_graceful_shutdown(async move { cancel.cancelled().await }).await
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

async fn patient(State(api): State<Api>, Path(nhs): Path<String>, headers: HeaderMap) -> Response {
    view(api, nhs, headers, View::Record).await
}

async fn patient_history(State(api): State<Api>, Path(nhs): Path<String>, headers: HeaderMap) -> Response {
    view(api, nhs, headers, View::History).await
}

/// Parked messages (seq, sender, control id, why): no patient data.
async fn parked(State(api): State<Api>) -> Response {
    let store = api.store.clone();
    match tokio::task::spawn_blocking(move || store.parked()).await {
        Ok(Ok(list)) => Json(json!({ "parked": list })).into_response(),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "the index could not be read"),
    }
}

/// Local identifiers that arrived with a second verified NHS number.
async fn conflicts(State(api): State<Api>) -> Response {
    let store = api.store.clone();
    match tokio::task::spawn_blocking(move || store.conflicts()).await {
        Ok(Ok(list)) => Json(json!({ "conflicts": list })).into_response(),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "the index could not be read"),
    }
}

async fn view(api: Api, nhs: String, headers: HeaderMap, which: View) -> Response {
    let user = headers.get("x-user").and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("");
    if user.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the X-User header is required: every view of a record is audited");
    }
    let Ok(nhs) = NhsNumber::parse(&nhs) else {
        return error(StatusCode::BAD_REQUEST, "not a valid NHS number (10 digits passing the Modulus 11 check)");
    };
    let who = Principal { user: user.to_string(), role: "clinician".into(), org: String::new() };
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
        let purpose = Purpose::default();
        let req = ReadRequest { nhs: &nhs, who: &who, purpose: &purpose, client: "", via: "http", view: which };
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
        Ok(Ok(Viewed::Forbidden)) => error(StatusCode::FORBIDDEN, "your role may not read records"),
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

async fn reload(State(api): State<Api>) -> Response {
    let done = tokio::task::spawn_blocking(move || reload_and_regovern(&api)).await;
    match done.unwrap_or_else(|_| Err("the reload was interrupted".into())) {
        Ok((files, rules, regoverned)) => {
            Json(json!({ "reloaded": true, "files": files, "exclusion_rules": rules, "reevaluated": regoverned }))
                .into_response()
        }
        Err(text) => {
            (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "reloaded": false, "errors": text }))).into_response()
        }
    }
}

/// Reloads mappings and exclusion rules; when the rules changed, waits for
/// the index writer to file what was acknowledged under the old ones, then
/// re-evaluates the index both ways (`Replayer::regovern`: one pass over
/// the journal while reads go on). Returns (mapping files, rules, journal
/// entries re-evaluated or `None` when the rules did not change).
pub fn reload_and_regovern(api: &Api) -> Result<(usize, usize, Option<u64>), String> {
    // One reload at a time: two overlapping passes would race on the scopes.
    static RELOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = RELOADING.lock().unwrap_or_else(|e| e.into_inner());
    let old = api.mappings.rules().fingerprint();
    let files = reload_mappings(&api.mappings, &api.mapping_dir)?;
    let rules = api.mappings.rules();
    if rules.fingerprint() == old {
        return Ok((files, rules.len(), None));
    }
    if !api.progress.wait_caught_up(std::time::Duration::from_secs(60)) {
        // The new rules are in force for new messages; the index keeps its
        // old decisions until a reload succeeds or the next start-up (which
        // rebuilds when the rules differ from the index's).
        return Err("the index writer is more than a minute behind: the rules are in force for new messages; \
            reload again to re-evaluate the index"
            .into());
    }
    let n = api.replayer.regovern(&api.store).map_err(|e| format!("re-evaluating the index failed: {e}"))?;
    tracing::info!(entries = n, rules = rules.len(), "index re-evaluated under the new exclusion rules");
    Ok((files, rules.len(), Some(n)))
}

/// Loads the mapping directory and its exclusion rules (`governance/`)
/// and swaps both in at once; a broken file in either keeps the old ones in
/// force. Returns the number of mapping files, or every error, one per line.
pub fn reload_mappings(mappings: &Mappings, dir: &std::path::Path) -> Result<usize, String> {
    let loaded = MappingSet::load_dir(dir).map_err(|e| e.to_string()).and_then(|set| {
        crate::govern::Rules::load_dir(&dir.join(crate::govern::DIR)).map(|r| (set, r)).map_err(|e| e.to_string())
    });
    match loaded {
        Ok((set, rules)) => {
            let files = set.files();
            let n = rules.len();
            mappings.replace_all(set, rules);
            tracing::info!(files, exclusion_rules = n, dir = %dir.display(), "mappings reloaded");
            Ok(files)
        }
        Err(text) => {
            tracing::warn!(dir = %dir.display(), errors = %text, "mapping reload failed; the previous mappings stay in force");
            Err(text)
        }
    }
}

/// Binds the read API.
///
/// # Errors
/// The address is in use or not local.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
