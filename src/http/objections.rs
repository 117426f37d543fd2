//! The objection register over HTTP (issue 10): `GET /admin/objections`
//! (the register), `GET /admin/objections/log` (every change: who, when,
//! why), `POST /admin/objections` `{nhs_number, reason, recorded_by, source}`,
//! `DELETE /admin/objections/{nhs}` `{recorded_by, reason}` (withdraws and
//! restores the record from the journal before answering), and
//! `POST /admin/objections/import` (a CSV body, all rows or none). Behind the
//! admin guard (`admin.rs`): a token with an admin role.
//!
//! In a cluster (`api.cluster_gov`), a change is made here first, then
//! published to the governance stream for every node (`cluster/govern.rs`);
//! when the publish fails the answer is 503 saying so, and the same request
//! sent again publishes it without changing the register twice.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::{error, Api};
use crate::auth::Principal;
use crate::cluster::govern::{self as cluster_gov, GovHandle, ObjectionEvent};
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
    let gov = api.cluster_gov.clone();
    let node = gov.as_ref().map(|g| g.node().to_string());
    let done = tokio::task::spawn_blocking(move || {
        // In a cluster, a retry after a 503 finds the objection standing:
        // nothing changes here, and the same event is published again.
        let retry = node.is_some() && cluster_gov::already_recorded(&api.store, &nhs, &objection)?;
        let mut removed = 0;
        if !retry {
            removed = api.store.add_objection(&nhs, objection)?;
            // A batch the index writer had in hand may have filed an item after
            // the purge: once it has caught up, purge again (`add_objection`).
            api.progress.wait_caught_up(CATCH_UP);
            removed += api.store.purge_patient(&nhs)?;
        }
        let events = match &node {
            Some(node) => cluster_gov::recorded_events(&api.store, node, &[nhs.as_str()])?,
            None => Vec::new(),
        };
        let body = json!({ "added": true, "nhs_number": nhs.as_str(), "items_removed": removed });
        Ok::<_, crate::store::StoreError>((body, events))
    })
    .await;
    publish_then_answer(gov, done).await
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
    let gov = api.cluster_gov.clone();
    let node = gov.as_ref().map(|g| g.node().to_string());
    let done = tokio::task::spawn_blocking(move || {
        let restored = crate::cli::remove_and_restore(&api.store, &api.replayer, &nhs, &req)?;
        let Some(node) = node else { return Ok((restored, None)) };
        // In a cluster: the event for this withdrawal (or, on a retry after
        // a 503, for the one made before: published again, kept once).
        let (by, reason) = (req.recorded_by.trim(), req.reason.trim());
        let event = match restored {
            Some(_) => cluster_gov::withdrawn_event(&api.store, &node, nhs.as_str(), by, reason)?,
            None => cluster_gov::withdrawal_retry(&api.store, &node, nhs.as_str(), by, reason)?,
        };
        Ok::<_, crate::cli::ObjectionError>((restored.or(event.as_ref().map(|_| 0)), event))
    })
    .await;
    let (restored, event) = match done {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the request was interrupted"),
    };
    let Some(restored) = restored else {
        return error(StatusCode::NOT_FOUND, "no objection is registered for this NHS number");
    };
    if let (Some(gov), Some(event)) = (&gov, &event) {
        if let Err(e) = gov.objection(event).await {
            return not_on_every_node(&e);
        }
    }
    Json(json!({ "removed": true, "messages_restored": restored })).into_response()
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
    let gov = api.cluster_gov.clone();
    let node = gov.as_ref().map(|g| g.node().to_string());
    let done = tokio::task::spawn_blocking(move || {
        let n = rows.len();
        let numbers: Vec<NhsNumber> = rows.iter().map(|(nhs, _)| *nhs).collect();
        api.store.add_objections(rows)?;
        api.progress.wait_caught_up(CATCH_UP);
        for nhs in &numbers {
            api.store.purge_patient(nhs)?;
        }
        let events = match &node {
            Some(node) => {
                let numbers: Vec<&str> = numbers.iter().map(NhsNumber::as_str).collect();
                cluster_gov::recorded_events(&api.store, node, &numbers)?
            }
            None => Vec::new(),
        };
        Ok::<_, crate::store::StoreError>((json!({ "imported": n }), events))
    })
    .await;
    publish_then_answer(gov, done).await
}

/// Publishes the events of a change made here (in a cluster), then answers.
async fn publish_then_answer(
    gov: Option<GovHandle>,
    done: Result<Result<(serde_json::Value, Vec<ObjectionEvent>), crate::store::StoreError>, tokio::task::JoinError>,
) -> Response {
    let (body, events) = match done {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return admin_answer(Ok(Err(e))),
        Err(e) => return admin_answer(Err(e)),
    };
    if let Some(gov) = gov {
        if let Err(e) = gov.objections(&events).await {
            return not_on_every_node(&e);
        }
    }
    Json(body).into_response()
}

/// 503: the change stands on this node, the other nodes have not got it.
fn not_on_every_node(e: &crate::cluster::ClusterError) -> Response {
    tracing::warn!(error = %e, "objection change made here but not published to the cluster");
    let text = format!(
        "the change is recorded on this node but not yet on the other nodes of the cluster ({e}); \
         send the same request again: it is not recorded twice"
    );
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": text, "recorded_here": true }))).into_response()
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::govern::tests::{Node, NHS};
    use crate::cluster::testing::NatsServer;
    use crate::cluster::Cluster;

    fn api(node: &Node, gov: GovHandle, dir: &std::path::Path) -> Api {
        let mut cfg = crate::config::Config::default();
        cfg.store.data_dir = dir.to_path_buf();
        let health = crate::health::Health::default();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        Api {
            store: node.store().clone(),
            progress: node.pipeline.progress(),
            mappings: node.replayer.mappings.clone(),
            mapping_dir: Default::default(),
            guard: Arc::new(super::super::guard::Guard::new(&cfg.http.guard, addr, health.metrics().clone())),
            health,
            mllp_stats: Default::default(),
            journal_dir: node.replayer.journal_dir.clone(),
            replayer: node.replayer.clone(),
            audit: crate::audit::AuditLog::open(dir).unwrap(),
            access: Arc::new(crate::access::Access::allow_all()),
            auth: Arc::new(crate::auth::Auth::open(&cfg).unwrap()),
            access_file: Default::default(),
            cluster_gov: Some(gov),
        }
    }

    async fn answer(r: Response) -> (StatusCode, serde_json::Value) {
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    async fn gov_messages(c: &Cluster) -> u64 {
        c.js.get_stream(c.names.gov_stream.as_str()).await.unwrap().info().await.unwrap().state.messages
    }

    #[tokio::test]
    async fn in_a_cluster_a_change_not_published_answers_503_and_the_same_request_again_publishes_it_once() {
        let Some(nats) = NatsServer::start() else { return };
        let cluster = Cluster::connect(&nats.config("a")).await.unwrap();
        let (node, dir) = (Node::with_record(), tempfile::tempdir().unwrap());
        let api = api(&node, GovHandle::new(cluster.clone()), dir.path());
        let add_body = || {
            let body = json!({ "nhs_number": NHS, "reason": "asked at clinic", "recorded_by": "officer1" });
            axum::body::Bytes::from(body.to_string())
        };
        let remove_body = || axum::body::Bytes::from(json!({ "recorded_by": "o2", "reason": "consent" }).to_string());

        // The governance stream is gone: nothing can be published.
        cluster.js.delete_stream(cluster.names.gov_stream.as_str()).await.unwrap();
        let (status, body) = answer(add(State(api.clone()), add_body()).await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body["error"].as_str().unwrap().contains("recorded on this node but not yet on the other nodes"));
        assert_eq!(body["recorded_here"], true);
        assert!(node.record_shown().is_empty(), "it stands here");

        let cluster = Cluster::connect(&nats.config("a")).await.unwrap(); // the stream is back
        for _ in 0..2 {
            let (status, body) = answer(add(State(api.clone()), add_body()).await).await;
            assert_eq!((status, &body["added"]), (StatusCode::OK, &json!(true)), "{body}");
        }
        assert_eq!(node.store().objection_log().unwrap().len(), 1, "not recorded twice here");
        assert_eq!(gov_messages(&cluster).await, 1, "nor in the stream");

        // A withdrawal the same way: 503, then the retry publishes it.
        cluster.js.delete_stream(cluster.names.gov_stream.as_str()).await.unwrap();
        let (status, _) = answer(remove(State(api.clone()), Path(NHS.into()), remove_body()).await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!node.record_shown().is_empty(), "withdrawn and restored here");
        let cluster = Cluster::connect(&nats.config("a")).await.unwrap();
        let (status, body) = answer(remove(State(api.clone()), Path(NHS.into()), remove_body()).await).await;
        assert_eq!((status, &body["removed"]), (StatusCode::OK, &json!(true)), "{body}");
        let mut stream = cluster.js.get_stream(cluster.names.gov_stream.as_str()).await.unwrap();
        let last_seq = stream.info().await.unwrap().state.last_sequence;
        let last = stream.get_raw_message(last_seq).await.unwrap();
        let event: ObjectionEvent = serde_json::from_slice(&last.payload).unwrap();
        assert_eq!((event.objected, event.recorded_by.as_str(), event.nhs_number.as_str()), (false, "o2", NHS));
        // Not a retry any more: nothing stands, so nothing to withdraw.
        let other = axum::body::Bytes::from(json!({ "recorded_by": "o3", "reason": "again" }).to_string());
        let (status, _) = answer(remove(State(api), Path(NHS.into()), other).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
