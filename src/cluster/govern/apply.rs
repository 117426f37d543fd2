//! Applying the governance stream to this node's register: the durable
//! consumer `gov-<node>` and the idempotent apply of each event (see the
//! module doc of `govern.rs`).

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::AckKind;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::{GovHandle, ObjectionEvent};
use crate::cluster::{Cluster, ClusterError, ClusterState};
use crate::hl7::nhs::NhsNumber;
use crate::indexer::Progress;
use crate::pipeline::Replayer;
use crate::store::{Store, StoreError};

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
