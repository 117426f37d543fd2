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

use tokio_rustls::TlsAcceptor;

use super::admission::{Activity, Claim, ConnectionStats, Registry, WarnLimit};
use super::allow::{self, AllowRule, Identity, SenderRights};
use super::connection::Connection;
use super::tls::{self, HANDSHAKE_TIMEOUT};
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
    /// TLS and the sender allow-list; the default is plain TCP, no allow-list.
    pub security: Security,
}

/// What a listener asks of its peers (`[[mllp.listeners]]`).
#[derive(Clone, Default)]
pub struct Security {
    /// TLS (and mutual TLS, when the acceptor verifies client certificates).
    pub tls: Option<TlsAcceptor>,
    /// The sender allow-list; `None`: any peer may send as anyone.
    pub allow: Option<Arc<[AllowRule]>>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security").field("tls", &self.tls.is_some()).field("allow", &self.allow).finish()
    }
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
    handshakes: WarnLimit,
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
        handshakes: WarnLimit::new(),
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
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let evict = CancellationToken::new();
    let conn = |rights| Connection {
        id: claim.id(),
        peer,
        shared: shared.clone(),
        activity: activity.clone(),
        evict: evict.clone(),
        rights,
    };
    match &shared.cfg.security.tls {
        None => {
            ConnectionStats::add(&shared.cfg.stats.accepted, 1);
            shared.registry.register(&claim, peer, activity.clone(), evict.clone());
            let rights = sender_rights(&shared, Identity { ip: peer.ip(), subject_cn: None });
            let (rd, wr) = stream.into_split();
            conn(rights).serve(Box::new(rd), Box::new(wr)).await;
            ConnectionStats::add(&shared.cfg.stats.closed, 1);
        }
        Some(acceptor) => {
            let Some(tls) = handshake(&shared, acceptor, stream, peer).await else { return };
            ConnectionStats::add(&shared.cfg.stats.accepted, 1);
            shared.registry.register(&claim, peer, activity.clone(), evict.clone());
            let subject_cn = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(tls::subject_cn);
            let rights = sender_rights(&shared, Identity { ip: peer.ip(), subject_cn });
            let (rd, wr) = tokio::io::split(tls);
            conn(rights).serve(Box::new(rd), Box::new(wr)).await;
            ConnectionStats::add(&shared.cfg.stats.closed, 1);
        }
    }
    drop(permit);
    drop(claim);
}

/// The TLS handshake, in the connection's own task and under
/// [`HANDSHAKE_TIMEOUT`]; a failure is counted and logged at WARN (the
/// reason rustls gives, never key material).
async fn handshake(
    shared: &Shared,
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let result = tokio::select! {
        _ = shared.cancel.cancelled() => return None,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => r,
    };
    let why = match result {
        Ok(Ok(tls)) => return Some(tls),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no complete handshake within {} s", HANDSHAKE_TIMEOUT.as_secs()),
    };
    ConnectionStats::add(&shared.cfg.stats.tls_handshakes_failed, 1);
    if let Some(held_back) = shared.handshakes.allow() {
        tracing::warn!(peer = %peer, error = %why, similar_not_logged = held_back, "TLS handshake failed; connection closed");
    }
    None
}

/// The connection's rights under the listener's allow-list, if it has one.
fn sender_rights(shared: &Shared, identity: Identity) -> Option<Arc<SenderRights>> {
    let rules = shared.cfg.security.allow.as_ref()?;
    let rights = allow::rights(rules, &identity);
    tracing::debug!(who = %rights.who, "sender rights for this connection");
    Some(Arc::new(rights))
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
