//! `recordhub serve`: open the pipeline, start the worker and the listener,
//! and shut down cleanly on SIGTERM or ctrl-c.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::fault::Faults;
use crate::health::Health;
use crate::http::{self, Api};
use crate::mllp::server::{self, ServerConfig};
use crate::pipeline::{self, Mappings, Pipeline, Premapper};
use crate::worker::{self, Ended, WorkerOptions};

mod cluster;
mod files;
mod settings;
mod signals;

pub use files::{owner_only_umask, private_data_dir};
pub use settings::{load_mappings, pipeline_options, server_config};

use signals::{reload_on_sighup, shutdown_on_signal};

/// Errors that stop the engine.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Open(#[from] pipeline::OpenError),
    #[error("cannot listen on {addr}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot create the data directory {} or make it owner-only (0700): check its owner and permissions", dir.display())]
    DataDir { dir: std::path::PathBuf, source: std::io::Error },
    #[error("the mappings in {dir} have errors; fix them and start again:\n{errors}")]
    Mappings { dir: std::path::PathBuf, errors: String },
    #[error("cannot start the pipeline thread")]
    Thread(#[source] std::io::Error),
    #[error("the pipeline thread panicked ({0}); exiting so the service manager restarts recordhub: nothing acknowledged is lost")]
    PipelinePanicked(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot open the audit log under the data directory")]
    Audit(#[source] std::io::Error),
    #[error(transparent)]
    Faults(#[from] crate::fault::SpecError),
    /// The access file is missing or broken.
    #[error(transparent)]
    Access(crate::access::AccessError),
    /// Tokens cannot be verified (local key, JWKS).
    #[error(transparent)]
    Auth(crate::auth::AuthSetupError),
    /// The NATS cluster (`[cluster]`).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// Binds every `[[mllp.listeners]]` entry and gives each its server settings
/// (sharing `base`'s counters), in config order.
///
/// # Errors
/// An address cannot be bound, or a TLS file no longer loads.
async fn extra_listeners(cfg: &Config, base: &ServerConfig) -> Result<Vec<(TcpListener, ServerConfig)>, ServeError> {
    let mut out = Vec::new();
    for l in &cfg.mllp.listeners {
        let tls = match &l.tls {
            Some(files) => Some(crate::mllp::tls::acceptor(files).map_err(|e| ServeError::Tls(e.to_string()))?),
            None => None,
        };
        let allow = l.allow.as_ref().map(|rules| rules.clone().into());
        let listener =
            TcpListener::bind(l.listen).await.map_err(|source| ServeError::Bind { addr: l.listen, source })?;
        out.push((listener, ServerConfig { security: server::Security { tls, allow }, ..base.clone() }));
    }
    Ok(out)
}

/// Opens the audit log (`[audit]`), copying the index's pre-chain audit
/// events into it the first time.
///
/// # Errors
/// The audit directory cannot be created, read or locked.
pub fn open_audit(
    cfg: &Config,
    opts: crate::audit::Options,
    store: &crate::store::Store,
) -> Result<crate::audit::AuditLog, ServeError> {
    let opts = crate::audit::Options { legacy: Some(store.clone()), ..opts };
    crate::audit::AuditLog::open_with(&cfg.store.data_dir, opts).map_err(ServeError::Audit)
}

/// A running engine: the listener, its worker thread and the pipeline.
pub struct Running {
    /// Where the read API listens (useful when configured with port 0).
    pub http_addr: std::net::SocketAddr,
    /// What `/health` and `/ready` report.
    pub health: Health,
    /// Where each `[[mllp.listeners]]` entry listens, in config order.
    pub mllp_listeners: Vec<std::net::SocketAddr>,
    /// The MLLP listeners' connection counters (all listeners together).
    pub mllp_stats: std::sync::Arc<crate::mllp::admission::ConnectionStats>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Stops accepting, lets every connection finish the messages in hand,
    /// then flushes the index.
    ///
    /// # Errors
    /// The index flush failed (the journal still holds everything).
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.cancel.cancel();
        self.wait().await
    }

    /// Waits until the engine stops (after `cancel_token().cancel()`).
    pub async fn wait(self) -> Result<(), ServeError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(ServeError::Thread(std::io::Error::other(e.to_string()))),
        }
    }

    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Opens the pipeline (replaying the journal) and starts serving on an
/// already-bound listener, so tests can bind port 0.
///
/// # Errors
/// Journal corrupt before its tail, index locked or unreadable.
pub async fn start(cfg: &Config, listener: TcpListener) -> Result<Running, ServeError> {
    start_with(cfg, listener, load_mappings(cfg)?).await
}

/// [`start`] with mappings already loaded.
///
/// # Errors
/// Journal corrupt before its tail, index locked or unreadable.
pub async fn start_with(cfg: &Config, listener: TcpListener, mappings: Mappings) -> Result<Running, ServeError> {
    start_with_faults(cfg, listener, mappings, Faults::none()).await
}

/// [`start_with`] with fault points armed (tests; the binary reads them from
/// `RECORDHUB_FAULTS`).
///
/// # Errors
/// Journal damaged or unreadable, index locked or unreadable.
pub async fn start_with_faults(
    cfg: &Config,
    listener: TcpListener,
    mappings: Mappings,
    faults: Faults,
) -> Result<Running, ServeError> {
    if faults.any() {
        tracing::warn!("fault injection is armed ({}): for tests only", crate::fault::ENV);
    }
    private_data_dir(&cfg.store.data_dir)
        .map_err(|source| ServeError::DataDir { dir: cfg.store.data_dir.clone(), source })?;
    let mut opts = pipeline_options(cfg, mappings.clone());
    let audit_opts = crate::audit::Options::from_config(&cfg.audit, faults.clone());
    opts.faults = faults;
    // For the read API: restoring a record when its objection is withdrawn.
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
    // Before the listener: a broken access file or an unreachable IdP stops start-up.
    let access = crate::access::Access::load(&cfg.access_file()).map_err(ServeError::Access)?;
    let auth = crate::auth::Auth::open(cfg).map_err(ServeError::Auth)?;
    let http_listener =
        http::bind(cfg.http.listen).await.map_err(|source| ServeError::Bind { addr: cfg.http.listen, source })?;
    let http_addr = http_listener.local_addr().map_err(|source| ServeError::Bind { addr: cfg.http.listen, source })?;
    // Before any thread starts: a listener that cannot bind stops start-up cleanly.
    let server_cfg = server_config(cfg);
    let extra = extra_listeners(cfg, &server_cfg).await?;
    let http_tls = match &cfg.http.tls {
        Some(files) => Some(crate::mllp::tls::acceptor(files).map_err(|e| ServeError::Tls(e.to_string()))?),
        None => None,
    };
    health.set_replay_done();
    health.metrics().set_enabled(cfg.http.metrics);
    let api = Api {
        store: pipeline.store().clone(),
        progress: pipeline.progress(),
        mappings: mappings.clone(),
        mapping_dir: cfg.mapping.dir.clone(),
        health: health.clone(),
        mllp_stats: server_cfg.stats.clone(),
        guard: std::sync::Arc::new(http::guard::Guard::new(&cfg.http.guard, http_addr, health.metrics().clone())),
        journal_dir: pipeline::journal_dir(&cfg.store.data_dir),
        replayer,
        audit: open_audit(cfg, audit_opts, pipeline.store())?,
        access: std::sync::Arc::new(access),
        auth: std::sync::Arc::new(auth),
        access_file: cfg.access_file(),
        cluster_gov: None,
    };
    let sighup_api = api.clone();
    let retention_store = api.store.clone();
    let cancel = CancellationToken::new();
    let (handle, thread) = worker::spawn(
        pipeline,
        WorkerOptions {
            max_batch: cfg.store.max_batch,
            health: health.clone(),
            on_panic: cancel.clone(),
            premapper: Some(premapper),
            replication: None,
        },
    )
    .map_err(ServeError::Thread)?;
    let http_task = match http_tls {
        Some(acceptor) => {
            let https = crate::mllp::https::HttpsListener::new(http_listener, acceptor)
                .map_err(|source| ServeError::Bind { addr: cfg.http.listen, source })?;
            tokio::spawn(http::run(https, api, cancel.clone()))
        }
        None => tokio::spawn(http::run(http_listener, api, cancel.clone())),
    };
    // Awaited at shutdown: it holds the store (re-evaluation after a
    // reload), whose file lock must be released when shutdown returns.
    let sighup_task = tokio::spawn(reload_on_sighup(sighup_api, cancel.clone()));
    // Also holds the store: awaited at shutdown like the SIGHUP task.
    let retention = pipeline::retain::Retention {
        store: retention_store,
        journal_dir: pipeline::journal_dir(&cfg.store.data_dir),
        retention: cfg.retention.clone(),
        dedup: cfg.dedup.clone(),
    };
    let retention_task = tokio::spawn(retention.run(cancel.clone()));
    tracing::info!(listen = %http_addr, "read API started");
    let mllp_stats = server_cfg.stats.clone();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "MLLP listener started");
    }
    let mut mllp_listeners = Vec::new();
    let mut extra_tasks = Vec::new();
    for ((l, c), configured) in extra.into_iter().zip(&cfg.mllp.listeners) {
        let addr = l.local_addr().unwrap_or(configured.listen);
        tracing::info!(listen = %addr, tls = c.security.tls.is_some(), allow_list = c.security.allow.is_some(), "MLLP listener started");
        mllp_listeners.push(addr);
        extra_tasks.push(tokio::spawn(server::run(l, c, handle.clone(), cancel.clone())));
    }
    let token = cancel.clone();
    health.set_listening(true);
    let api_health = health.clone();
    let task = tokio::spawn(async move {
        server::run(listener, server_cfg, handle, token).await;
        for t in extra_tasks {
            let _ = t.await;
        }
        health.set_listening(false);
        let _ = http_task.await;
        let _ = sighup_task.await;
        let _ = retention_task.await;
        // Every connection has finished and the last handle is gone, so the
        // worker drains its queue and hands the pipeline back.
        let joined = tokio::task::spawn_blocking(move || thread.join()).await;
        match joined {
            Ok(Ok(Ended::Stopped(mut p))) => {
                if let Err(e) = p.shutdown() {
                    // Everything is in the journal; the next start replays it.
                    tracing::warn!(error = %crate::pipeline::error_chain(&e),
                        "the index could not be flushed at shutdown; the journal holds everything and the next start replays it");
                }
            }
            Ok(Ok(Ended::Panicked(why))) => return Err(ServeError::PipelinePanicked(why)),
            Ok(Err(_)) | Err(_) => return Err(ServeError::PipelinePanicked("the worker could not be joined".into())),
        }
        tracing::info!("stopped");
        Ok(())
    });
    Ok(Running { http_addr, health: api_health, mllp_listeners, mllp_stats, cancel, task })
}

/// `recordhub serve`: runs until SIGTERM/ctrl-c.
///
/// # Errors
/// Start-up failures (journal corrupt, index locked, address in use).
pub async fn serve(cfg: Config) -> Result<(), ServeError> {
    // Relative paths were resolved against the config file's directory (or the
    // working directory): say where they landed, before anything is opened.
    tracing::info!(data_dir = %absolute(&cfg.store.data_dir).display(),
        mapping_dir = %absolute(&cfg.mapping.dir).display(), "resolved paths");
    // Mappings before the listener: a sender must not be able to connect to
    // an engine that is about to exit over a broken mapping file.
    let mappings = load_mappings(&cfg)?;
    if cfg.cluster.is_some() {
        // A cluster node binds its MLLP listeners only once it holds the lease.
        crate::supervise::install_panic_hook();
        return cluster::serve(cfg, mappings, Faults::from_env()?).await;
    }
    let listener = TcpListener::bind(cfg.mllp.listen)
        .await
        .map_err(|source| ServeError::Bind { addr: cfg.mllp.listen, source })?;
    crate::supervise::install_panic_hook();
    let faults = Faults::from_env()?;
    let running = start_with_faults(&cfg, listener, mappings, faults).await?;
    tokio::spawn(shutdown_on_signal(running.cancel_token()));
    running.wait().await
}

/// `path` as an absolute path for the log (the working directory prepended to a relative one).
fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
