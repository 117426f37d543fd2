//! `recordhub serve` with `[cluster]`: follow the stream, take the lease,
//! ingest and publish; or, as a reader, follow and serve reads only.
//!
//! A node's life: open the pipeline and serve reads as a single node does;
//! follow the stream into its own journal and index; a reader stays there.
//! An active or standby node waits for the lease; once it holds it, it
//! applies what is left of the stream, starts publishing from the stream's
//! end (its journal continues the sequence), and only then binds its MLLP
//! listeners. Losing the lease or being fenced by the stream stops the
//! listeners and ends the process with an error, so the service manager
//! restarts it as a follower (whose divergence check decides whether its
//! journal can follow). SIGTERM while active releases the lease once the
//! stream holds what was committed, so a standby takes over at once.
//!
//! Log lines other tools wait for: "following the stream", "took over:
//! listening", "stood down", "stopped".
//!
//! OWNER: helper "lease" (issue 13).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster::status::{self, NodeStatus};
use crate::cluster::{follow, govern, lease, publish, Cluster, ClusterConfig, ClusterError, ClusterState, Part, Role};
use crate::config::Config;
use crate::fault::Faults;
use crate::health::Health;
use crate::indexer::Progress;
use crate::mllp::server;
use crate::pipeline::{self, Mappings, Pipeline, Premapper};
use crate::worker::{self, WorkerOptions};

use super::parts::{self, Opened};
use super::signals::shutdown_on_signal;
use super::{extra_listeners, server_config, ServeError};

/// Runs a cluster node until SIGTERM/ctrl-c (or until it is fenced: then it
/// exits with an error so the service manager restarts it as a follower).
///
/// # Errors
/// Start-up failures, NATS unreachable, the local journal diverging from the stream.
pub async fn serve(cfg: Config, mappings: Mappings, faults: Faults) -> Result<(), ServeError> {
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    serve_until(cfg, mappings, faults, shutdown).await
}

/// [`serve`] until `shutdown` is cancelled (tests; `serve` cancels it on
/// SIGTERM/ctrl-c).
///
/// # Errors
/// As [`serve`].
pub async fn serve_until(
    cfg: Config,
    mappings: Mappings,
    faults: Faults,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let Some(ccfg) = cfg.cluster.clone() else {
        return Err(ClusterError::Setup { what: "[cluster]".into(), why: "missing from engine.toml".into() }.into());
    };
    let opened = parts::open(&cfg, &mappings, faults.clone()).await?;
    let cluster = Cluster::connect(&ccfg).await?;
    tracing::info!(node = %ccfg.node, role = ccfg.role.as_str(), servers = %ccfg.servers.join(","), "connected to NATS");
    let opened = super::rejoin::rejoin(&cfg, &mappings, faults, &cluster, opened).await?;
    let state = ClusterState::default();
    state.set_nats_connected(true);
    opened.health.set_cluster(state.clone(), ccfg.ready_max_lag);
    // Objections recorded on any node apply here; this node's audit chain
    // goes to the cluster's audit stream.
    let (gov, gov_task) = govern::spawn(
        cluster.clone(),
        opened.pipeline.store().clone(),
        opened.replayer.clone(),
        opened.pipeline.progress(),
        state.clone(),
    )
    .await?;
    let audit_task = govern::audit::forwarder(cluster.clone(), &cfg.store.data_dir, shutdown.clone());
    let server_cfg = server_config(&cfg);
    let api = parts::prepare_api(&cfg, &opened, server_cfg.stats.clone(), Some(gov)).await?;
    let node = Node {
        cfg: cfg.clone(),
        ccfg,
        cluster,
        state,
        health: opened.health.clone(),
        progress: opened.pipeline.progress(),
        http: api.http_addr,
        mllp: Arc::new(OnceLock::new()),
        shutdown,
    };
    let api_tasks = api.spawn(&cfg, &node.shutdown)?;
    let heartbeat = tokio::spawn(node.clone().heartbeat());
    let result = node.run(opened).await;
    // Whatever ended the node, the read API stops too: the process exits.
    node.shutdown.cancel();
    heartbeat.abort();
    gov_task.abort();
    // Both hold the store: ended before the index is flushed.
    let _ = gov_task.await;
    let _ = audit_task.await;
    api_tasks.join().await;
    let pipeline = result?;
    parts::close(pipeline).await;
    tracing::info!("stopped");
    Ok(())
}

/// What every phase of a cluster node needs. Cheap to clone.
#[derive(Clone)]
struct Node {
    cfg: Config,
    ccfg: ClusterConfig,
    cluster: Cluster,
    state: ClusterState,
    health: Health,
    progress: Progress,
    http: std::net::SocketAddr,
    /// Where MLLP listens, once active (for the heartbeat).
    mllp: Arc<OnceLock<String>>,
    /// SIGTERM/ctrl-c.
    shutdown: CancellationToken,
}

/// Why an active node stops ingesting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Shutdown,
    LostLease,
    Fenced,
    WorkerPanicked,
}

impl Node {
    /// Follows, then (active/standby) leads; gives the pipeline back for the
    /// final flush, or the reason the node must exit.
    async fn run(&self, opened: Opened) -> Result<Pipeline, ServeError> {
        let Opened { pipeline, premapper, .. } = opened;
        let following = follow::spawn(self.cluster.clone(), pipeline, self.health.clone(), self.state.clone()).await?;
        tracing::info!(node = %self.ccfg.node, role = self.ccfg.role.as_str(), position = following.position(),
            "following the stream");
        if self.ccfg.role == Role::Reader {
            tokio::select! {
                () = self.shutdown.cancelled() => {}
                why = failed(&following) => return Err(self.follow_failed(following, why).await),
            }
            return Ok(following.stop().await?);
        }
        let acquired = tokio::select! {
            acquired = lease::acquire(&self.cluster, &self.state, self.shutdown.clone()) => acquired?,
            why = failed(&following) => return Err(self.follow_failed(following, why).await),
        };
        let Some(held) = acquired else {
            return Ok(following.stop().await?);
        };
        let pipeline = match following.catch_up_and_stop().await {
            Ok(p) => p,
            Err(e) => {
                held.release().await;
                return Err(e.into());
            }
        };
        self.lead(pipeline, premapper, held).await
    }

    /// Following stopped by itself (a refused entry, a bad message): the
    /// node exits so an operator (or the service manager's restart and the
    /// divergence check) sees it, rather than serving ever staler reads.
    async fn follow_failed(&self, following: follow::Following, why: String) -> ServeError {
        tracing::error!(node = %self.ccfg.node, reason = %why, "following the stream stopped; exiting");
        if let Ok(p) = following.stop().await {
            parts::flush(p).await;
        }
        ClusterError::Journal(why).into()
    }

    /// Holds the lease: publishes, ingests over MLLP, until shut down or
    /// stood down.
    async fn lead(&self, pipeline: Pipeline, premapper: Premapper, held: lease::Lease) -> Result<Pipeline, ServeError> {
        let from = pipeline.committed_seq();
        self.state.set_committed(from);
        self.state.set_part(Part::Active);
        let fenced = CancellationToken::new();
        let journal_dir = pipeline::journal_dir(&self.cfg.store.data_dir);
        let replication =
            match publish::spawn(self.cluster.clone(), journal_dir, from, self.state.clone(), fenced.clone()).await {
                Ok(r) => r,
                Err(e) => {
                    held.release().await;
                    return Err(e.into());
                }
            };
        // Cancelled to stop the MLLP servers: at shutdown, at stand-down, or
        // by the worker when its thread panics.
        let mllp_cancel = CancellationToken::new();
        let (handle, thread) = worker::spawn(
            pipeline,
            WorkerOptions {
                max_batch: self.cfg.store.max_batch,
                health: self.health.clone(),
                on_panic: mllp_cancel.clone(),
                premapper: Some(premapper),
                replication: Some(replication.clone()),
            },
        )
        .map_err(ServeError::Thread)?;
        let servers = match self.listen(handle, &mllp_cancel).await {
            Ok(s) => s,
            Err(e) => {
                mllp_cancel.cancel();
                let _ = parts::join_worker(thread).await;
                held.release().await;
                return Err(e);
            }
        };
        self.health.set_listening(true);
        tracing::info!(node = %self.ccfg.node, revision = held.revision(), from_seq = from,
            listen = %self.mllp.get().map_or("", String::as_str), "took over: listening");
        let lost = held.lost();
        let why = tokio::select! {
            () = self.shutdown.cancelled() => Why::Shutdown,
            () = lost.cancelled() => Why::LostLease,
            () = fenced.cancelled() => Why::Fenced,
            () = mllp_cancel.cancelled() => Why::WorkerPanicked,
        };
        if why != Why::Shutdown {
            // Before the listeners close: /ready says so at once.
            self.state.set_part(Part::StoodDown);
        }
        // Stop accepting; connections finish the messages in hand, then the
        // worker drains its queue and hands the pipeline back.
        mllp_cancel.cancel();
        for s in servers {
            let _ = s.await;
        }
        self.health.set_listening(false);
        let pipeline = parts::join_worker(thread).await;
        match why {
            Why::Shutdown => {
                if let Ok(p) = &pipeline {
                    self.wait_published(&replication, p.committed_seq()).await;
                }
                held.release().await;
                pipeline
            }
            Why::WorkerPanicked => {
                held.release().await;
                pipeline
            }
            Why::LostLease | Why::Fenced => {
                let seq = self.state.stream_last().max(self.state.published() + 1);
                let by = lease::holder(&self.cluster).await.unwrap_or_else(|| "another node".into());
                tracing::error!(node = %self.ccfg.node, reason = if why == Why::Fenced { "fenced by the stream" } else { "lost the lease" },
                    held_by = %by, seq, "stood down: no longer taking messages; exiting so the service manager restarts this node as a follower");
                if let Ok(p) = pipeline {
                    parts::flush(p).await;
                }
                Err(ClusterError::Fenced { seq, by }.into())
            }
        }
    }

    /// Binds `[mllp] listen` and every `[[mllp.listeners]]` entry and serves
    /// them until `cancel`.
    ///
    /// # Errors
    /// An address cannot be bound (another process holds it), or a TLS file no longer loads.
    async fn listen(
        &self,
        handle: worker::Handle,
        cancel: &CancellationToken,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, ServeError> {
        let cfg = &self.cfg;
        let base = server_config(cfg);
        let listener = TcpListener::bind(cfg.mllp.listen)
            .await
            .map_err(|source| ServeError::Bind { addr: cfg.mllp.listen, source })?;
        let extra = extra_listeners(cfg, &base).await?;
        let addr = listener.local_addr().unwrap_or(cfg.mllp.listen);
        let _ = self.mllp.set(addr.to_string());
        tracing::info!(listen = %addr, "MLLP listener started");
        let mut tasks = vec![tokio::spawn(server::run(listener, base, handle.clone(), cancel.clone()))];
        for ((l, c), configured) in extra.into_iter().zip(&cfg.mllp.listeners) {
            let addr = l.local_addr().unwrap_or(configured.listen);
            tracing::info!(listen = %addr, tls = c.security.tls.is_some(), allow_list = c.security.allow.is_some(), "MLLP listener started");
            tasks.push(tokio::spawn(server::run(l, c, handle.clone(), cancel.clone())));
        }
        Ok(tasks)
    }

    /// At a planned stop: waits (up to `publish_timeout`) until the stream
    /// holds every entry committed here, so the standby that takes over
    /// next continues after them rather than fencing them out.
    async fn wait_published(&self, replication: &publish::Replication, committed: u64) {
        let deadline = tokio::time::Instant::now() + self.ccfg.publish_timeout;
        while replication.published() < committed {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(committed, published = replication.published(),
                    "the stream does not yet hold every entry committed here; releasing the lease anyway (the next active node fences the rest out)");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every second: whether NATS is connected (for `/ready`), and this
    /// node's status in the nodes bucket (`recordhub cluster status`).
    async fn heartbeat(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let connected = self.cluster.client.connection_state() == async_nats::connection::State::Connected;
            if connected != self.state.nats_connected() {
                if connected {
                    tracing::info!(node = %self.ccfg.node, "reconnected to NATS");
                } else {
                    tracing::warn!(node = %self.ccfg.node, "lost the connection to NATS; reconnecting");
                }
                self.state.set_nats_connected(connected);
            }
            if self.state.part() == Part::Active {
                // The active node is the stream's writer: its end is what it published.
                self.state.set_stream_last(self.state.published());
            }
            if let Err(e) = status::report(&self.cluster, &self.status()).await {
                tracing::debug!(error = %e, "could not write this node's status");
            }
        }
    }

    fn status(&self) -> NodeStatus {
        let part = self.state.part();
        let role = match part {
            Part::Active => "active",
            Part::StoodDown => "stood-down",
            Part::Following if self.ccfg.role == Role::Reader => "reader",
            Part::Following => "standby",
        };
        NodeStatus {
            node: self.ccfg.node.clone(),
            role: role.into(),
            journal_seq: self.state.committed().max(self.state.followed()),
            applied_seq: self.progress.applied(),
            at_ms: pipeline::now_ms(),
            mllp: self.mllp.get().filter(|_| part == Part::Active).cloned(),
            http: Some(self.http.to_string()),
        }
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;

/// Resolves when following has stopped by itself, with why.
async fn failed(following: &follow::Following) -> String {
    loop {
        if let Some(why) = following.failure() {
            return why;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
