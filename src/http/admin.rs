//! The admin API's guard and its own endpoints: `/admin/*` needs a token
//! (401) whose role the access file marks `admin = true` (403); both
//! refusals are audited. `POST /admin/reload` reloads the mappings, the
//! exclusion rules and the access file.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{audit_refusal, error, refuse_unauthenticated, Api, Client};
use crate::mapping::MappingSet;
use crate::pipeline::Mappings;

/// Lets a request through to `/admin/*` only with an admin role; the
/// principal is handed on as a request extension.
pub(super) async fn require_admin(
    State(api): State<Api>,
    ConnectInfo(client): ConnectInfo<Client>,
    mut req: Request,
    next: Next,
) -> Response {
    let headers = req.headers().clone();
    let who = match super::authenticate(&api, &headers).await {
        Ok(who) => who,
        Err(e) => return refuse_unauthenticated(&api, &headers, e, "admin", None, &client).await,
    };
    if !api.access.is_admin(&who.role) {
        let event = crate::audit::AuditEvent {
            user: who.user.clone(),
            role: who.role.clone(),
            org: who.org.clone(),
            action: "admin".into(),
            outcome: "forbidden".into(),
            ..Default::default()
        };
        audit_refusal(&api, event, &client).await;
        return error(StatusCode::FORBIDDEN, "the admin API needs a role with admin = true in the access file");
    }
    req.extensions_mut().insert(who);
    next.run(req).await
}

/// Parked messages (seq, sender, control id, why): no patient data.
pub(super) async fn parked(State(api): State<Api>) -> Response {
    let store = api.store.clone();
    match tokio::task::spawn_blocking(move || store.parked()).await {
        Ok(Ok(list)) => Json(json!({ "parked": list })).into_response(),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "the index could not be read"),
    }
}

/// Local identifiers that arrived with a second verified NHS number.
pub(super) async fn conflicts(State(api): State<Api>) -> Response {
    let store = api.store.clone();
    match tokio::task::spawn_blocking(move || store.conflicts()).await {
        Ok(Ok(list)) => Json(json!({ "conflicts": list })).into_response(),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "the index could not be read"),
    }
}

pub(super) async fn reload(State(api): State<Api>) -> Response {
    let done = tokio::task::spawn_blocking(move || reload_and_regovern(&api)).await;
    match done.unwrap_or_else(|_| Err("the reload was interrupted".into())) {
        Ok(r) => Json(json!({
            "reloaded": true, "files": r.files, "exclusion_rules": r.rules, "reevaluated": r.reevaluated,
            "roles": r.roles,
        }))
        .into_response(),
        Err(text) => {
            (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "reloaded": false, "errors": text }))).into_response()
        }
    }
}

/// What a reload loaded.
#[derive(Debug)]
pub struct Reloaded {
    /// Mapping files.
    pub files: usize,
    /// Exclusion rules.
    pub rules: usize,
    /// Journal entries re-evaluated, or `None` when the rules did not change.
    pub reevaluated: Option<u64>,
    /// Roles in the access file.
    pub roles: usize,
}

/// Reloads the access file, mappings and exclusion rules; when the rules
/// changed, waits for the index writer to file what was acknowledged under
/// the old ones, then re-evaluates the index both ways
/// (`Replayer::regovern`: one pass over the journal while reads go on).
/// A broken access file or mapping set changes nothing.
///
/// # Errors
/// Every problem, one per line (`file:line:col`).
pub fn reload_and_regovern(api: &Api) -> Result<Reloaded, String> {
    // One reload at a time: two overlapping passes would race on the scopes.
    static RELOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = RELOADING.lock().unwrap_or_else(|e| e.into_inner());
    let access = crate::access::Access::load(&api.access_file).map_err(|e| {
        tracing::warn!(error = %e, "access file reload failed; the previous rules stay in force");
        e.to_string()
    })?;
    let old = api.mappings.rules().fingerprint();
    let files = reload_mappings(&api.mappings, &api.mapping_dir)?;
    let roles = api.access.replace(access);
    tracing::info!(roles, "access file reloaded");
    let rules = api.mappings.rules();
    if rules.fingerprint() == old {
        return Ok(Reloaded { files, rules: rules.len(), reevaluated: None, roles });
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
    Ok(Reloaded { files, rules: rules.len(), reevaluated: Some(n), roles })
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
