//! The MLLP listener: the accept loop and who gets a slot.
//!
//! Each accepted connection is served by [`connection`](super::connection)
//! (a reader of frames and a writer of ACKs, in order). A sender may
//! pipeline up to `max_in_flight` messages before the reader stops reading
//! its socket. Slots are bounded per peer address and globally; at the
//! global bound the longest-idle connection makes way
//! ([`admission`](super::admission)). Shutdown (the cancellation token)
//! stops accepting and reading; every frame already read still gets its ACK
//! before the connection closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admission::{Activity, Claim, ConnectionStats, Registry, WarnLimit};
use super::connection::Connection;
use crate::worker::Handle;

/// Connections one peer address may hold when the config does not say.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 64;

/// How long a new connection may wait for a slot when every slot is busy
/// (none idle to close) before it is closed: bounded, so a sender learns
/// quickly and can retry, rather than waiting silently without an ACK.
pub const ADMISSION_WAIT: Duration = Duration::from_millis(500);

/// Listener settings (from `[mllp]` in engine.toml).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_frame_bytes: usize,
    /// A connection with no frame in progress is closed after this long.
    pub idle_timeout: Duration,
    /// A frame must be complete within this long of its first byte.
    pub frame_timeout: Duration,
    pub max_connections: usize,
    /// Connections one peer IP address may hold; more are closed at once.
    pub max_connections_per_peer: usize,
    pub max_in_flight: usize,
    /// Counters this listener updates; keep a clone of the `Arc` to read
    /// them (`/metrics`, tests).
    pub stats: Arc<ConnectionStats>,
}

/// What the accept loop and every connection share.
pub(super) struct Shared {
    pub(super) cfg: ServerConfig,
    pub(super) pipeline: Handle,
    pub(super) cancel: CancellationToken,
    slots: Arc<Semaphore>,
    registry: Arc<Registry>,
    refusals: WarnLimit,
    evictions: WarnLimit,
}

/// Runs the accept loop on an already-bound listener until `cancel` fires,
/// then waits for every connection to finish the messages in hand.
pub async fn run(listener: TcpListener, cfg: ServerConfig, pipeline: Handle, cancel: CancellationToken) {
    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(cfg.max_connections.max(1))),
        cfg,
        pipeline,
        cancel: cancel.clone(),
        registry: Arc::default(),
        refusals: WarnLimit::new(),
        evictions: WarnLimit::new(),
    });
    let tracker = TaskTracker::new();
    let mut next_id: u64 = 0;
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the
                    // server keeps running.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        next_id += 1;
        let Some(claim) = shared.registry.claim(next_id, peer, shared.cfg.max_connections_per_peer) else {
            ConnectionStats::add(&shared.cfg.stats.refused_per_peer, 1);
            if let Some(held_back) = shared.refusals.allow() {
                tracing::warn!(peer = %peer, limit = shared.cfg.max_connections_per_peer, similar_not_logged = held_back,
                    "connection refused: this address already holds its maximum number of connections");
            }
            drop(stream);
            continue;
        };
        tracker.spawn(admit_and_serve(shared.clone(), stream, peer, claim));
    }
    tracker.close();
    tracker.wait().await;
}

async fn admit_and_serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, claim: Claim) {
    let Some(permit) = admit(&shared, peer).await else {
        if !shared.cancel.is_cancelled() {
            ConnectionStats::add(&shared.cfg.stats.refused_full, 1);
            if let Some(held_back) = shared.refusals.allow() {
                tracing::warn!(peer = %peer, limit = shared.cfg.max_connections, similar_not_logged = held_back,
                    "connection refused: every connection slot is busy and none is idle");
            }
        }
        return;
    };
    ConnectionStats::add(&shared.cfg.stats.accepted, 1);
    let activity = Arc::new(Activity::new());
    let evict = CancellationToken::new();
    shared.registry.register(&claim, peer, activity.clone(), evict.clone());
    let conn = Connection { id: claim.id(), peer, shared: shared.clone(), activity, evict };
    conn.serve(stream).await;
    ConnectionStats::add(&shared.cfg.stats.closed, 1);
    drop(permit);
    drop(claim);
}

/// A slot now, or after closing the longest-idle connection, or within
/// [`ADMISSION_WAIT`]; `None` otherwise (or on shutdown).
async fn admit(shared: &Shared, peer: SocketAddr) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = shared.slots.clone().try_acquire_owned() {
        return Some(permit);
    }
    if let Some(victim) = shared.registry.evict_longest_idle() {
        ConnectionStats::add(&shared.cfg.stats.idle_evicted, 1);
        if let Some(held_back) = shared.evictions.allow() {
            tracing::warn!(peer = %victim, for_peer = %peer, limit = shared.cfg.max_connections, similar_not_logged = held_back,
                "closed the longest-idle connection to make way for a new one (connection limit reached)");
        }
    }
    tokio::select! {
        _ = shared.cancel.cancelled() => None,
        r = tokio::time::timeout(ADMISSION_WAIT, shared.slots.clone().acquire_owned()) => r.ok()?.ok(),
    }
}
