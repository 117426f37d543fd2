//! The objection register over HTTP (issue 10): `GET /admin/objections`
//! (the register), `GET /admin/objections/log` (every change: who, when,
//! why), `POST /admin/objections` `{nhs_number, reason, recorded_by, source}`,
//! `DELETE /admin/objections/{nhs}` `{recorded_by, reason}` (withdraws and
//! restores the record from the journal before answering), and
//! `POST /admin/objections/import` (a CSV body, all rows or none). Behind the
//! admin guard (`admin.rs`): a token with an admin role.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::{error, Api};
use crate::auth::Principal;
use crate::hl7::nhs::NhsNumber;
use crate::pipeline::now_ms;

/// How long adding waits for the index writer to file what it has in hand
/// before purging the record a second time (see `Store::purge_patient`).
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(30);

/// `GET /admin/objections`: the register.
pub(super) async fn list(State(api): State<Api>) -> Response {
    match tokio::task::spawn_blocking(move || api.store.objections()).await {
        Ok(Ok(list)) => Json(json!({ "objections": list })).into_response(),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "the objection register could not be read"),
    }
}

/// `GET /admin/objections/log`: every change to the register (who, when, why).
pub(super) async fn log(State(api): State<Api>) -> Response {
    match tokio::task::spawn_blocking(move || api.store.objection_log()).await {
        Ok(Ok(list)) => Json(json!({ "log": list })).into_response(),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "the objection log could not be read"),
    }
}

/// `POST /admin/objections` `{nhs_number, reason, recorded_by, source}`.
pub(super) async fn add(State(api): State<Api>, body: axum::body::Bytes) -> Response {
    let req: crate::cli::AddRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected JSON {{nhs_number, reason, recorded_by, source}}: {e}"),
            )
        }
    };
    let (nhs, objection) = match req.validate() {
        Ok(v) => v,
        Err(text) => return error(StatusCode::BAD_REQUEST, text),
    };
    let done = tokio::task::spawn_blocking(move || {
        let n = api.store.add_objection(&nhs, objection)?;
        // A batch the index writer had in hand may have filed an item after
        // the purge: once it has caught up, purge again (`add_objection`).
        api.progress.wait_caught_up(CATCH_UP);
        let late = api.store.purge_patient(&nhs)?;
        Ok::<_, crate::store::StoreError>(
            json!({ "added": true, "nhs_number": nhs.as_str(), "items_removed": n + late }),
        )
    })
    .await;
    admin_answer(done)
}

/// `DELETE /admin/objections/{nhs}` `{recorded_by, reason}`: withdraws the
/// objection and restores the record from the journal before answering.
pub(super) async fn remove(State(api): State<Api>, Path(nhs): Path<String>, body: axum::body::Bytes) -> Response {
    let req: crate::cli::RemoveRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected JSON {{recorded_by, reason}}: {e}")),
    };
    let Ok(nhs) = NhsNumber::parse(&nhs) else {
        return error(StatusCode::BAD_REQUEST, "not a valid NHS number (10 digits passing the Modulus 11 check)");
    };
    if let Err(text) = req.validate() {
        return error(StatusCode::BAD_REQUEST, text);
    }
    let done =
        tokio::task::spawn_blocking(move || crate::cli::remove_and_restore(&api.store, &api.replayer, &nhs, &req))
            .await;
    match done {
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "no objection is registered for this NHS number"),
        Ok(Ok(Some(restored))) => Json(json!({ "removed": true, "messages_restored": restored })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the request was interrupted"),
    }
}

/// `POST /admin/objections/import`: a CSV file as the body (`X-User`: who
/// imports, default the token's user; `X-File-Name`: the name errors cite).
/// All rows or none.
pub(super) async fn import(
    State(api): State<Api>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("").to_string();
    let (user, file) = (header("x-user"), header("x-file-name"));
    let user = if user.is_empty() { who.user } else { user };
    let file = if file.is_empty() { "import.csv".to_string() } else { file };
    let rows = match crate::cli::parse_import(&file, &String::from_utf8_lossy(&body), &user, now_ms()) {
        Ok(rows) => rows,
        Err(errors) => {
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "imported": 0, "errors": errors }))).into_response()
        }
    };
    let done = tokio::task::spawn_blocking(move || {
        let n = rows.len();
        let numbers: Vec<NhsNumber> = rows.iter().map(|(nhs, _)| *nhs).collect();
        api.store.add_objections(rows)?;
        api.progress.wait_caught_up(CATCH_UP);
        for nhs in &numbers {
            api.store.purge_patient(nhs)?;
        }
        Ok::<_, crate::store::StoreError>(json!({ "imported": n }))
    })
    .await;
    admin_answer(done)
}

fn admin_answer(done: Result<Result<serde_json::Value, crate::store::StoreError>, tokio::task::JoinError>) -> Response {
    match done {
        Ok(Ok(body)) => Json(body).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "objection register change failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, format!("the objection register could not be written: {e}"))
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the request was interrupted"),
    }
}
