//! What a single node and a cluster node share at start-up and shutdown:
//! opening the pipeline (replaying the journal), the read API with its
//! access file, token verification, audit log and guard, and joining the
//! worker thread at the end. A cluster node differs in *when* it starts the
//! worker and the MLLP listeners (only once it holds the lease), not in how.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::fault::Faults;
use crate::health::Health;
use crate::http::{self, Api};
use crate::pipeline::{self, Mappings, Pipeline, Premapper};
use crate::worker::Ended;

use super::signals::reload_on_sighup;
use super::{open_audit, pipeline_options, private_data_dir, ServeError};

/// A pipeline opened and replayed, with what the rest of start-up needs.
pub(super) struct Opened {
    pub pipeline: Pipeline,
    pub health: Health,
    pub premapper: Premapper,
    /// For the read API: restoring a record when its objection is withdrawn.
    pub replayer: pipeline::Replayer,
    pub audit_opts: crate::audit::Options,
}

/// Makes the data directory owner-only, opens the pipeline on the blocking
/// pool (replaying the journal) and logs what recovery found.
///
/// # Errors
/// Journal damaged or unreadable, index locked or unreadable.
pub(super) async fn open(cfg: &Config, mappings: &Mappings, faults: Faults) -> Result<Opened, ServeError> {
    if faults.any() {
        tracing::warn!("fault injection is armed ({}): for tests only", crate::fault::ENV);
    }
    private_data_dir(&cfg.store.data_dir)
        .map_err(|source| ServeError::DataDir { dir: cfg.store.data_dir.clone(), source })?;
    let mut opts = pipeline_options(cfg, mappings.clone());
    let audit_opts = crate::audit::Options::from_config(&cfg.audit, faults.clone());
    opts.faults = faults;
    let replayer = pipeline::Replayer {
        journal_dir: pipeline::journal_dir(&cfg.store.data_dir),
        mappings: mappings.clone(),
        policy: opts.policy.clone(),
    };
    let premapper = Premapper::new(mappings.clone(), opts.policy.clone());
    let health = opts.health.clone();
    let opened = tokio::task::spawn_blocking(move || Pipeline::open(opts))
        .await
        .map_err(|e| ServeError::Thread(std::io::Error::other(e.to_string())))?;
    let (pipeline, startup) = opened?;
    if let Some(t) = &startup.recovery.truncated {
        tracing::warn!(segment = %t.segment.display(), offset = t.offset, bytes_dropped = t.bytes_dropped, reason = %t.reason,
            "journal had a torn tail (a write interrupted by a crash); truncated it: nothing acknowledged was lost");
    }
    for d in &startup.recovery.damage {
        tracing::error!(segment = %d.segment.display(), offset = d.offset, len = d.len, seq_before = ?d.seq_before,
            seq_after = ?d.seq_after, reason = %d.reason, quarantined = ?d.quarantined,
            "journal damage: entries inside this range are lost unless the segment is restored from a backup; intact entries around it are kept");
    }
    tracing::info!(entries = startup.recovery.entries, last_seq = startup.recovery.last_seq, replayed = startup.replayed,
        data_dir = %cfg.store.data_dir.display(), "journal opened");
    Ok(Opened { pipeline, health, premapper, replayer, audit_opts })
}

/// The read API, bound but not yet serving.
pub(super) struct ApiParts {
    pub api: Api,
    pub http_addr: std::net::SocketAddr,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Loads the access file and token verification, binds the read API and
/// builds its state; marks replay done. Nothing is spawned yet, so a later
/// start-up failure leaves nothing running.
///
/// # Errors
/// A broken access file, an unreachable IdP, the HTTP address in use, a
/// TLS file that does not load, the audit log locked.
pub(super) async fn prepare_api(
    cfg: &Config,
    opened: &Opened,
    mllp_stats: Arc<crate::mllp::admission::ConnectionStats>,
    cluster_gov: Option<crate::cluster::govern::GovHandle>,
) -> Result<ApiParts, ServeError> {
    // Before the listener: a broken access file or an unreachable IdP stops start-up.
    let access = crate::access::Access::load(&cfg.access_file()).map_err(ServeError::Access)?;
    let auth = crate::auth::Auth::open(cfg).map_err(ServeError::Auth)?;
    let listener =
        http::bind(cfg.http.listen).await.map_err(|source| ServeError::Bind { addr: cfg.http.listen, source })?;
    let http_addr = listener.local_addr().map_err(|source| ServeError::Bind { addr: cfg.http.listen, source })?;
    let tls = match &cfg.http.tls {
        Some(files) => Some(crate::mllp::tls::acceptor(files).map_err(|e| ServeError::Tls(e.to_string()))?),
        None => None,
    };
    let health = opened.health.clone();
    health.set_replay_done();
    health.metrics().set_enabled(cfg.http.metrics);
    let store = opened.pipeline.store();
    let api = Api {
        store: store.clone(),
        progress: opened.pipeline.progress(),
        mappings: opened.replayer.mappings.clone(),
        mapping_dir: cfg.mapping.dir.clone(),
        health: health.clone(),
        mllp_stats,
        guard: Arc::new(http::guard::Guard::new(&cfg.http.guard, http_addr, health.metrics().clone())),
        journal_dir: pipeline::journal_dir(&cfg.store.data_dir),
        replayer: opened.replayer.clone(),
        audit: open_audit(cfg, opened.audit_opts.clone(), store)?,
        access: Arc::new(access),
        auth: Arc::new(auth),
        access_file: cfg.access_file(),
        cluster_gov,
    };
    Ok(ApiParts { api, http_addr, listener, tls })
}

/// The read API's tasks: each holds the store, so each is awaited before
/// the index is flushed and its file lock released.
pub(super) struct ApiTasks {
    http: JoinHandle<std::io::Result<()>>,
    sighup: JoinHandle<()>,
    retention: JoinHandle<()>,
}

impl ApiParts {
    /// Serves the read API, reloads mappings on SIGHUP and runs retention,
    /// all until `cancel`.
    ///
    /// # Errors
    /// The HTTPS listener cannot be set up.
    pub(super) fn spawn(self, cfg: &Config, cancel: &CancellationToken) -> Result<ApiTasks, ServeError> {
        let ApiParts { api, listener, tls, http_addr } = self;
        let sighup_api = api.clone();
        let retention = pipeline::retain::Retention {
            store: api.store.clone(),
            journal_dir: pipeline::journal_dir(&cfg.store.data_dir),
            retention: cfg.retention.clone(),
            dedup: cfg.dedup.clone(),
        };
        let http = match tls {
            Some(acceptor) => {
                let https = crate::mllp::https::HttpsListener::new(listener, acceptor)
                    .map_err(|source| ServeError::Bind { addr: cfg.http.listen, source })?;
                tokio::spawn(http::run(https, api, cancel.clone()))
            }
            None => tokio::spawn(http::run(listener, api, cancel.clone())),
        };
        let sighup = tokio::spawn(reload_on_sighup(sighup_api, cancel.clone()));
        let retention = tokio::spawn(retention.run(cancel.clone()));
        tracing::info!(listen = %http_addr, "read API started");
        Ok(ApiTasks { http, sighup, retention })
    }
}

impl ApiTasks {
    /// Waits for the tasks to end (after their `cancel`).
    pub(super) async fn join(self) {
        let _ = self.http.await;
        let _ = self.sighup.await;
        let _ = self.retention.await;
    }
}

/// Joins the worker thread (every handle dropped: it drains its queue and
/// hands the pipeline back).
///
/// # Errors
/// The worker thread panicked.
pub(super) async fn join_worker(thread: std::thread::JoinHandle<Ended>) -> Result<Pipeline, ServeError> {
    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
    match joined {
        Ok(Ok(Ended::Stopped(p))) => Ok(*p),
        Ok(Ok(Ended::Panicked(why))) => Err(ServeError::PipelinePanicked(why)),
        Ok(Err(_)) | Err(_) => Err(ServeError::PipelinePanicked("the worker could not be joined".into())),
    }
}

/// Flushes the index at shutdown (on the blocking pool: sled flushes), when
/// other parts of this process may still hold the store (a node standing
/// down while its read API runs): the process exits next.
pub(super) async fn flush(mut p: Pipeline) {
    let flushed = tokio::task::spawn_blocking(move || p.shutdown()).await;
    if let Ok(Err(e)) = flushed {
        warn_unflushed(&e);
    }
}

/// [`flush`], then waits until sled has let go of the index's file lock, for
/// when nothing else in this process holds the store any more: the engine
/// has stopped (a CLI command or a new engine opens the index next), or the
/// data directory is about to be set aside.
pub(super) async fn close(p: Pipeline) {
    let closed = tokio::task::spawn_blocking(move || p.close(std::time::Duration::from_secs(10))).await;
    let Ok((flushed, released)) = closed else { return };
    if let Err(e) = flushed {
        warn_unflushed(&e);
    }
    if !released {
        tracing::warn!("the index's file lock was still held 10 s after shutdown; another process may have it open");
    }
}

fn warn_unflushed(e: &crate::store::StoreError) {
    // Everything is in the journal; the next start replays it.
    tracing::warn!(error = %crate::pipeline::error_chain(e),
        "the index could not be flushed at shutdown; the journal holds everything and the next start replays it");
}
