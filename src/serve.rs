//! `recordhub serve`: open the pipeline, start the worker and the listener,
//! and shut down cleanly on SIGTERM or ctrl-c.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::{self, Api};
use crate::intake::Policy;
use crate::mapping::MappingSet;
use crate::mllp::server::{self, ServerConfig};
use crate::pipeline::{self, Mappings, Options, Pipeline};
use crate::worker;

/// Errors that stop the engine.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Open(#[from] pipeline::OpenError),
    #[error("cannot listen on {addr}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("the mappings in {dir} have errors; fix them and start again:\n{errors}")]
    Mappings { dir: std::path::PathBuf, errors: String },
    #[error("cannot start the pipeline thread")]
    Thread(#[source] std::io::Error),
    #[error("the index could not be flushed at shutdown (the journal is intact; it will be replayed)")]
    Flush(#[source] crate::store::StoreError),
}

/// The pipeline options a config describes.
/// Loads every mapping file, or says what is wrong with each (file:line:col).
///
/// # Errors
/// Any mapping or table file is broken.
pub fn load_mappings(cfg: &Config) -> Result<Mappings, ServeError> {
    MappingSet::load_dir(&cfg.mapping.dir)
        .map(Mappings::new)
        .map_err(|e| ServeError::Mappings { dir: cfg.mapping.dir.clone(), errors: e.to_string() })
}

pub fn pipeline_options(cfg: &Config, mappings: Mappings) -> Options {
    let mut parse = crate::hl7::ParseOptions::default();
    if let Some(cs) = crate::hl7::Charset::from_config_name(&cfg.hl7.fallback_charset) {
        parse.fallback_charset = cs;
    }
    Options {
        data_dir: cfg.store.data_dir.clone(),
        journal_segment_bytes: cfg.store.journal_segment_bytes,
        application: cfg.ack.application.clone(),
        facility: cfg.ack.facility.clone(),
        policy: Policy { processing_ids: cfg.ack.processing_ids.clone(), parse },
        mappings,
    }
}

pub fn server_config(cfg: &Config) -> ServerConfig {
    ServerConfig {
        max_frame_bytes: cfg.mllp.max_frame_bytes,
        idle_timeout: cfg.mllp.idle_timeout,
        frame_timeout: cfg.mllp.frame_timeout,
        max_connections: cfg.mllp.max_connections,
        max_in_flight: cfg.mllp.max_in_flight,
    }
}

/// A running engine: the listener, its worker thread and the pipeline.
pub struct Running {
    /// Where the read API listens (useful when configured with port 0).
    pub http_addr: std::net::SocketAddr,
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
    let opts = pipeline_options(cfg, mappings.clone());
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
    let http_listener =
        http::bind(cfg.http.listen).await.map_err(|source| ServeError::Bind { addr: cfg.http.listen, source })?;
    let http_addr = http_listener.local_addr().map_err(|source| ServeError::Bind { addr: cfg.http.listen, source })?;
    let api = Api {
        store: pipeline.store().clone(),
        progress: pipeline.progress(),
        mappings: mappings.clone(),
        mapping_dir: cfg.mapping.dir.clone(),
    };
    let (handle, thread) = worker::spawn(pipeline, cfg.store.max_batch).map_err(ServeError::Thread)?;
    let cancel = CancellationToken::new();
    let http_task = tokio::spawn(http::run(http_listener, api, cancel.clone()));
    tokio::spawn(reload_on_sighup(mappings, cfg.mapping.dir.clone(), cancel.clone()));
    tracing::info!(listen = %http_addr, "read API started");
    let server_cfg = server_config(cfg);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "MLLP listener started");
    }
    let token = cancel.clone();
    let task = tokio::spawn(async move {
        server::run(listener, server_cfg, handle, token).await;
        let _ = http_task.await;
        // Every connection has finished and the last handle is gone, so the
        // worker drains its queue and hands the pipeline back.
        let joined = tokio::task::spawn_blocking(move || thread.join()).await;
        if let Ok(Ok(mut p)) = joined {
            p.shutdown().map_err(ServeError::Flush)?;
        }
        tracing::info!("stopped");
        Ok(())
    });
    Ok(Running { http_addr, cancel, task })
}

/// `recordhub serve`: runs until SIGTERM/ctrl-c.
///
/// # Errors
/// Start-up failures (journal corrupt, index locked, address in use).
pub async fn serve(cfg: Config) -> Result<(), ServeError> {
    // Mappings before the listener: a sender must not be able to connect to
    // an engine that is about to exit over a broken mapping file.
    let mappings = load_mappings(&cfg)?;
    let listener = TcpListener::bind(cfg.mllp.listen)
        .await
        .map_err(|source| ServeError::Bind { addr: cfg.mllp.listen, source })?;
    let running = start_with(&cfg, listener, mappings).await?;
    tokio::spawn(shutdown_on_signal(running.cancel_token()));
    running.wait().await
}

async fn shutdown_on_signal(cancel: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            cancel.cancel();
            return;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested: no new connections; finishing messages in hand");
    cancel.cancel();
}

/// SIGHUP reloads the mappings atomically; a broken set keeps the old one.
async fn reload_on_sighup(mappings: Mappings, dir: std::path::PathBuf, cancel: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = hup.recv() => if r.is_none() { return },
            }
            let (m, d) = (mappings.clone(), dir.clone());
            let _ = tokio::task::spawn_blocking(move || http::reload_mappings(&m, &d)).await;
        }
    }
    #[cfg(not(unix))]
    let _ = (mappings, dir, cancel);
}
