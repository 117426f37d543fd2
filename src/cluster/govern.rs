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

pub mod audit;

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::AckKind;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::{Cluster, ClusterError, ClusterState, HDR_NODE};
use crate::hl7::nhs::NhsNumber;
use crate::indexer::Progress;
use crate::pipeline::Replayer;
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

/// How long applying an objection waits for the index writer to catch up
/// before purging the record a second time (see `Store::purge_patient`).
const CATCH_UP: Duration = Duration::from_secs(10);
/// Pause before a consumer is set up again after NATS failed.
const RETRY: Duration = Duration::from_secs(1);

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The objection was registered and the record purged.
    Recorded { items_removed: usize },
    /// The objection was withdrawn and the record restored from the journal.
    Withdrawn { messages_restored: u64 },
    /// Nothing to do: the register already says what the event says.
    Unchanged,
}

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Never applicable (a retry cannot help): skipped, with an ERROR.
    #[error("governance event has an invalid NHS number; skipped (inspect the governance stream)")]
    BadNhs,
    #[error("objection register")]
    Store(#[from] StoreError),
    #[error("restoring the record from the journal failed ({0}); the event is retried")]
    Restore(String),
}

/// Applies one event to this node's register, idempotently (module doc).
///
/// # Errors
/// The register or the index could not be written (retry), or the event is
/// unusable ([`ApplyError::BadNhs`]).
pub fn apply(
    store: &Store,
    replayer: &Replayer,
    progress: &Progress,
    node: &str,
    ev: &ObjectionEvent,
) -> Result<Applied, ApplyError> {
    let nhs = NhsNumber::parse(&ev.nhs_number).map_err(|_| ApplyError::BadNhs)?;
    if ev.node == node && own_change_logged(store, ev)? {
        return Ok(Applied::Unchanged);
    }
    if ev.objected {
        let wanted = ev.objection();
        if store.objection(&nhs)?.as_ref() == Some(&wanted) {
            return Ok(Applied::Unchanged);
        }
        let n = store.add_objection(&nhs, wanted)?;
        // As the HTTP handler does: a batch in hand may file after the purge.
        progress.wait_caught_up(CATCH_UP);
        let late = store.purge_patient(&nhs)?;
        return Ok(Applied::Recorded { items_removed: n + late });
    }
    if store.remove_objection(&nhs, &ev.recorded_by, &ev.reason)?.is_none() {
        return Ok(Applied::Unchanged);
    }
    let n = replayer.restore(store, &nhs).map_err(|e| ApplyError::Restore(crate::pipeline::error_chain(&e)))?;
    Ok(Applied::Withdrawn { messages_restored: n })
}

/// Whether this node's register log already holds the change `ev` (one of
/// this node's own) describes.
fn own_change_logged(store: &Store, ev: &ObjectionEvent) -> Result<bool, StoreError> {
    let action = if ev.objected { "add" } else { "remove" };
    Ok(store
        .objection_log()?
        .iter()
        .rev()
        .any(|c| c.at_ms == ev.at_ms && c.action == action && c.recorded_by == ev.recorded_by && c.reason == ev.reason))
}

/// What the governance consumer needs.
struct Applier {
    cluster: Cluster,
    store: Store,
    replayer: Replayer,
    progress: Progress,
}

/// Starts applying the governance stream to this node's register (module
/// doc) and returns the handle the HTTP API publishes through. The task runs
/// until aborted (drop or `abort` the `JoinHandle`), setting the consumer up
/// again after a NATS failure. `_state` is taken for the fixed signature;
/// NATS connectivity is the orchestration's to report.
///
/// # Errors
/// The consumer cannot be created (NATS unreachable, stream missing).
pub async fn spawn(
    cluster: Cluster,
    store: Store,
    replayer: Replayer,
    progress: Progress,
    _state: ClusterState,
) -> Result<(GovHandle, JoinHandle<()>), ClusterError> {
    let applier = Applier { cluster: cluster.clone(), store, replayer, progress };
    let first = applier.consumer().await?;
    let task = tokio::spawn(async move { applier.run(first).await });
    Ok((GovHandle::new(cluster), task))
}

impl Applier {
    fn durable(&self) -> String {
        format!("gov-{}", self.cluster.cfg.node)
    }

    /// The durable consumer, recreated from the start for a fresh register.
    async fn consumer(&self) -> Result<PullConsumer, ClusterError> {
        let nats = |e: &dyn std::fmt::Display| ClusterError::Nats(format!("governance consumer: {e}"));
        let stream = self.cluster.js.get_stream(self.cluster.names.gov_stream.as_str()).await.map_err(|e| nats(&e))?;
        let durable = self.durable();
        let cfg = pull::Config {
            durable_name: Some(durable.clone()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            // One at a time: events apply in stream order, a failed one first.
            max_ack_pending: 1,
            ack_wait: Duration::from_secs(120),
            ..Default::default()
        };
        let mut consumer: PullConsumer =
            stream.get_or_create_consumer(&durable, cfg.clone()).await.map_err(|e| nats(&e))?;
        let acked = consumer.info().await.map_err(|e| nats(&e))?.ack_floor.stream_sequence;
        let store = self.store.clone();
        let fresh = tokio::task::spawn_blocking(move || store.objection_log().map(|l| l.is_empty()))
            .await
            .map_err(|e| nats(&e))?
            .map_err(|e| ClusterError::Index(e.to_string()))?;
        if acked > 0 && fresh {
            tracing::info!(consumer = %durable, acked, "fresh objection register: reading the governance stream from the start");
            stream.delete_consumer(&durable).await.map_err(|e| nats(&e))?;
            consumer = stream.create_consumer(cfg).await.map_err(|e| nats(&e))?;
        }
        Ok(consumer)
    }

    async fn run(self, first: PullConsumer) {
        let mut consumer = Some(first);
        loop {
            let c = match consumer.take() {
                Some(c) => c,
                None => match self.consumer().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "governance consumer unavailable; retrying");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                },
            };
            if let Err(e) = self.follow(c).await {
                tracing::warn!(error = %e, "governance consumer stopped; setting it up again");
                tokio::time::sleep(RETRY).await;
            }
        }
    }

    /// Applies messages as they come until the subscription fails.
    async fn follow(&self, consumer: PullConsumer) -> Result<(), ClusterError> {
        let mut messages = consumer.messages().await.map_err(|e| ClusterError::Nats(e.to_string()))?;
        while let Some(m) = messages.next().await {
            let m = match m {
                Ok(m) => m,
                // NATS unreachable for a while: the subscription resumes by itself.
                Err(e) if e.kind() == pull::MessagesErrorKind::MissingHeartbeat => {
                    tracing::debug!(error = %e, "governance consumer");
                    continue;
                }
                // Consumer deleted, no responders…: set it up again.
                Err(e) => return Err(ClusterError::Nats(e.to_string())),
            };
            let ack = self.handle(&m.payload).await;
            m.ack_with(ack).await.map_err(|e| ClusterError::Nats(e.to_string()))?;
        }
        Err(ClusterError::Nats("the governance subscription ended".into()))
    }

    /// Applies one message; says how to acknowledge it.
    async fn handle(&self, payload: &[u8]) -> AckKind {
        let ev: ObjectionEvent = match serde_json::from_slice(payload) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::error!(error = %e, "governance event is not an objection event; skipped");
                return AckKind::Term;
            }
        };
        let (store, replayer, progress) = (self.store.clone(), self.replayer.clone(), self.progress.clone());
        let node = self.cluster.cfg.node.clone();
        let from = ev.node.clone();
        let done = tokio::task::spawn_blocking(move || apply(&store, &replayer, &progress, &node, &ev)).await;
        match done {
            Ok(Ok(applied)) => {
                tracing::info!(from = %from, applied = ?applied, "governance event applied");
                AckKind::Ack
            }
            Ok(Err(ApplyError::BadNhs)) => {
                tracing::error!(from = %from, "{}", ApplyError::BadNhs);
                AckKind::Term
            }
            Ok(Err(e)) => {
                tracing::error!(from = %from, error = %e, "governance event not applied; retrying");
                AckKind::Nak(Some(RETRY * 5))
            }
            Err(e) => {
                tracing::error!(error = %e, "governance event apply was interrupted; retrying");
                AckKind::Nak(Some(RETRY * 5))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
