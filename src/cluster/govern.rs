//! Governance and audit across the cluster: an objection recorded (or
//! withdrawn) on any node is published to the governance stream and applied
//! by every node; every node's audit events are published to the audit
//! stream, the cluster's one ordered audit log (`govern/audit.rs`).
//!
//! Objections. The admin API (`http/objections.rs`) changes the local
//! register first, then publishes an [`ObjectionEvent`] built from the
//! register's own log entry for that change ([`recorded_events`],
//! [`withdrawn_event`]) and waits for the stream's ack. If the publish
//! fails it answers 503 ("recorded here, not yet on the other nodes; retry"):
//! a retry finds the change already made, changes nothing more locally and
//! publishes the same event again with the same `Nats-Msg-Id` (see
//! [`ObjectionEvent::msg_id`]), so the stream keeps it once.
//!
//! Every node (this one included) runs [`spawn`]: a durable consumer
//! `gov-<node>` on the governance stream, from its first message, one
//! message in flight at a time (so events apply in stream order, and a
//! failed apply is retried before anything after it). Applying is
//! idempotent: an objection already standing as the event describes it is
//! left alone, a withdrawal of an objection that no longer stands does
//! nothing, and an event of this node whose change is already in the
//! register's log is skipped. A node with a fresh data directory (its
//! register's log is empty) under a name whose consumer has already
//! acknowledged events gets its consumer recreated from the start: a new
//! reader, or one rebuilt, gets every objection ever recorded.
//!
//! `recordhub objection add|remove|import --data DIR` (engine stopped) is
//! **local only**: it changes that data directory's register and publishes
//! nothing (the CLI warns when the config has `[cluster]`). Record cluster
//! objections through a running node's admin API (`--server URL`).

mod apply;
pub mod audit;

pub use apply::{apply, spawn, Applied, ApplyError};

use super::{Cluster, ClusterError, HDR_NODE};
use crate::hl7::nhs::NhsNumber;
use crate::store::{Objection, ObjectionChange, Store, StoreError};

/// An objection recorded or withdrawn on some node, as the governance stream
/// carries it (JSON). Applying it is idempotent.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ObjectionEvent {
    pub nhs_number: String,
    /// `true`: recorded; `false`: withdrawn.
    pub objected: bool,
    /// Who recorded it (or withdrew it).
    pub recorded_by: String,
    /// The objection's reason (or the withdrawal's).
    pub reason: String,
    /// The objection's source.
    pub source: String,
    /// When the change was made on `node` (the register log's `at_ms`):
    /// with `node`, `nhs_number` and `objected` it names the change.
    pub at_ms: u64,
    /// The node where it was recorded.
    pub node: String,
    /// When the patient objected (the objection's `recorded_at_ms`), so every
    /// node registers the same objection.
    #[serde(default)]
    pub recorded_at_ms: i64,
}

impl ObjectionEvent {
    /// The event describing `change`, a change made to `node`'s register.
    pub fn from_change(change: &ObjectionChange, node: &str) -> ObjectionEvent {
        ObjectionEvent {
            nhs_number: change.nhs_number.clone(),
            objected: change.action == "add",
            recorded_by: change.recorded_by.clone(),
            reason: change.reason.clone(),
            source: change.source.clone(),
            at_ms: change.at_ms,
            node: node.to_string(),
            recorded_at_ms: change.recorded_at_ms,
        }
    }

    /// Its `Nats-Msg-Id`: the same change published twice (a retry) has the
    /// same id, so the stream keeps it once.
    pub fn msg_id(&self) -> String {
        let what = if self.objected { "recorded" } else { "withdrawn" };
        format!("{}:gov:{}:{}:{what}", self.node, self.nhs_number, self.at_ms)
    }

    fn objection(&self) -> Objection {
        Objection {
            reason: self.reason.clone(),
            recorded_by: self.recorded_by.clone(),
            source: self.source.clone(),
            recorded_at_ms: self.recorded_at_ms,
        }
    }
}

/// What the HTTP API holds to tell the cluster about a governance change.
/// Cheap to clone.
#[derive(Clone)]
pub struct GovHandle {
    cluster: Cluster,
}

impl std::fmt::Debug for GovHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GovHandle")
    }
}

impl GovHandle {
    /// A handle publishing through `cluster` (see also [`spawn`]).
    pub fn new(cluster: Cluster) -> GovHandle {
        GovHandle { cluster }
    }

    /// This node's name (the `node` of the events it publishes).
    pub fn node(&self) -> &str {
        &self.cluster.cfg.node
    }

    /// Publishes `event` to the governance stream and waits for its ack, so
    /// the caller can say "recorded on every node" only when it is.
    ///
    /// # Errors
    /// The stream did not acknowledge it within `publish_timeout`.
    pub async fn objection(&self, event: &ObjectionEvent) -> Result<(), ClusterError> {
        self.objections(std::slice::from_ref(event)).await
    }

    /// [`GovHandle::objection`] for many (an import): all are sent, then
    /// every ack awaited.
    ///
    /// # Errors
    /// One of them was not acknowledged (the others may have been; a retry
    /// publishes them again under the same ids).
    pub async fn objections(&self, events: &[ObjectionEvent]) -> Result<(), ClusterError> {
        let c = &self.cluster;
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let body = serde_json::to_vec(event).map_err(|e| ClusterError::Nats(e.to_string()))?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.msg_id().as_str());
            headers.insert(HDR_NODE, event.node.as_str());
            let sent = c.js.publish_with_headers(c.names.gov_subject.clone(), headers, body.into());
            let ack = tokio::time::timeout(c.cfg.publish_timeout, sent)
                .await
                .map_err(|_| ClusterError::Nats("timed out publishing to the governance stream".into()))?
                .map_err(|e| ClusterError::Nats(e.to_string()))?;
            acks.push(ack);
        }
        for ack in acks {
            tokio::time::timeout(c.cfg.publish_timeout, ack)
                .await
                .map_err(|_| ClusterError::Nats("the governance stream did not acknowledge in time".into()))?
                .map_err(|e| ClusterError::Nats(e.to_string()))?;
        }
        Ok(())
    }
}

/// The events for the objections now recorded for `numbers` (the last `add`
/// in the register's log for each), to publish after a local add or import.
///
/// # Errors
/// The log could not be read.
pub fn recorded_events(store: &Store, node: &str, numbers: &[&str]) -> Result<Vec<ObjectionEvent>, StoreError> {
    let log = store.objection_log()?;
    let mut out = Vec::with_capacity(numbers.len());
    for nhs in numbers {
        let last = log.iter().rev().find(|c| c.nhs_number == *nhs && c.action == "add");
        out.extend(last.map(|c| ObjectionEvent::from_change(c, node)));
    }
    Ok(out)
}

/// The event for the withdrawal of `nhs`'s objection by `recorded_by` for
/// `reason`, just made: the newest such `remove` in the register's log (for
/// `nhs` itself when there is one, else for a number merged with it).
///
/// # Errors
/// The log could not be read.
pub fn withdrawn_event(
    store: &Store,
    node: &str,
    nhs: &str,
    recorded_by: &str,
    reason: &str,
) -> Result<Option<ObjectionEvent>, StoreError> {
    let log = store.objection_log()?;
    let matching = |c: &&ObjectionChange| c.action == "remove" && c.recorded_by == recorded_by && c.reason == reason;
    let found = log.iter().rev().filter(matching).find(|c| c.nhs_number == nhs);
    Ok(found.or_else(|| log.iter().rev().find(matching)).map(|c| {
        let mut e = ObjectionEvent::from_change(c, node);
        // Other nodes withdraw it for the number asked about (and so for
        // every number merged with it, as here).
        e.nhs_number = nhs.to_string();
        e
    }))
}

/// How long after a withdrawal a request that finds nothing to withdraw is
/// taken for a retry of it (and its event published again).
pub const RETRY_WINDOW_MS: u64 = 10 * 60 * 1000;

/// A withdrawal requested again after a 503: the event of the withdrawal
/// made before, when the register's last change for `nhs` is that very
/// withdrawal (same recorder and reason, within [`RETRY_WINDOW_MS`]). `None`:
/// not a retry (nothing to withdraw).
///
/// # Errors
/// The log could not be read.
pub fn withdrawal_retry(
    store: &Store,
    node: &str,
    nhs: &str,
    recorded_by: &str,
    reason: &str,
) -> Result<Option<ObjectionEvent>, StoreError> {
    let log = store.objection_log()?;
    let last = log.iter().rev().find(|c| c.nhs_number == nhs);
    let now = crate::pipeline::now_ms();
    Ok(last
        .filter(|c| c.action == "remove" && c.recorded_by == recorded_by && c.reason == reason)
        .filter(|c| now.saturating_sub(c.at_ms) < RETRY_WINDOW_MS)
        .map(|c| ObjectionEvent::from_change(c, node)))
}

/// Whether the objection standing for `nhs` is the one a retry of an add
/// would record again (same reason, recorder and source).
///
/// # Errors
/// The register could not be read.
pub fn already_recorded(store: &Store, nhs: &NhsNumber, wanted: &Objection) -> Result<bool, StoreError> {
    Ok(store
        .objection(nhs)?
        .is_some_and(|o| o.reason == wanted.reason && o.recorded_by == wanted.recorded_by && o.source == wanted.source))
}

#[cfg(test)]
pub(crate) mod tests;
