//! `recordhub serve`: open the pipeline, start the worker and the listener,
//! and shut down cleanly on SIGTERM or ctrl-c.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::fault::Faults;
use crate::health::Health;

use crate::mllp::server::{self, ServerConfig};
use crate::pipeline::{self, Mappings};
use crate::worker::{self, WorkerOptions};

mod cluster;
mod files;
mod parts;
mod rejoin;
mod settings;
mod signals;

pub use files::{owner_only_umask, private_data_dir};
pub use settings::{load_mappings, pipeline_options, server_config};

use signals::shutdown_on_signal;

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
    let opened = parts::open(cfg, &mappings, faults).await?;
    // Before any thread starts: a listener that cannot bind stops start-up cleanly.
    let server_cfg = server_config(cfg);
    let api = parts::prepare_api(cfg, &opened, server_cfg.stats.clone(), None).await?;
    let extra = extra_listeners(cfg, &server_cfg).await?;
    let http_addr = api.http_addr;
    let parts::Opened { pipeline, health, premapper, .. } = opened;
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
    let api_tasks = api.spawn(cfg, &cancel)?;
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
        api_tasks.join().await;
        // Every connection has finished and the last handle is gone, so the
        // worker drains its queue and hands the pipeline back.
        parts::close(parts::join_worker(thread).await?).await;
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
