//! Who gets a connection slot (issue 8, hole 11: 1,024 idle connections
//! used to lock out every sender, who then waited in the listen backlog with
//! no ACK until the idle ones timed out).
//!
//! - Each peer IP address may hold at most `max_connections_per_peer`
//!   connections; one more is closed at once (`refused_per_peer`).
//! - At the global bound (`max_connections`) the connection idle for longest
//!   (no frame in progress, no ACK pending) is closed to make way
//!   (`idle_evicted`). With none idle, the newcomer waits at most
//!   [`ADMISSION_WAIT`](super::server::ADMISSION_WAIT) for a slot, then is
//!   closed (`refused_full`): never an unbounded silent wait.
//!
//! A connection is only ever evicted while idle, decided under its own lock
//! ([`Activity::try_evict`]), so eviction never drops a frame in hand or an
//! ACK owed. Bytes outside frames are not activity.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Counters of the listener, shared with whoever reports them (`/metrics`).
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections given a slot.
    pub accepted: AtomicU64,
    /// Connections given a slot that have since closed (open = accepted − closed).
    pub closed: AtomicU64,
    /// Connections closed at once: their peer already held its maximum.
    pub refused_per_peer: AtomicU64,
    /// Connections closed because every slot stayed busy.
    pub refused_full: AtomicU64,
    /// Idle connections closed to make way for a new one.
    pub idle_evicted: AtomicU64,
    /// Connections closed by the idle or the stalled-frame timeout.
    pub timed_out: AtomicU64,
    /// Bytes received outside any frame, dropped.
    pub bytes_dropped_outside_frames: AtomicU64,
    /// TLS handshakes that failed or timed out (bad, expired or missing client
    /// certificate, wrong CA, garbage, too slow).
    pub tls_handshakes_failed: AtomicU64,
}

/// A plain copy of [`ConnectionStats`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCounts {
    pub accepted: u64,
    pub closed: u64,
    pub refused_per_peer: u64,
    pub refused_full: u64,
    pub idle_evicted: u64,
    pub timed_out: u64,
    pub bytes_dropped_outside_frames: u64,
    pub tls_handshakes_failed: u64,
}

impl ConnectionStats {
    /// The counters now.
    pub fn snapshot(&self) -> ConnectionCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConnectionCounts {
            accepted: get(&self.accepted),
            closed: get(&self.closed),
            refused_per_peer: get(&self.refused_per_peer),
            refused_full: get(&self.refused_full),
            idle_evicted: get(&self.idle_evicted),
            timed_out: get(&self.timed_out),
            tls_handshakes_failed: get(&self.tls_handshakes_failed),
            bytes_dropped_outside_frames: get(&self.bytes_dropped_outside_frames),
        }
    }

    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked (every
    // update is a single assignment), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one connection is doing, as far as eviction cares.
#[derive(Debug)]
pub(super) struct Activity {
    state: Mutex<ActState>,
}

#[derive(Debug)]
struct ActState {
    in_frame: bool,
    pending_acks: usize,
    /// When it last became idle; `None` while busy.
    idle_since: Option<Instant>,
    evicted: bool,
}

/// The connection was chosen for eviction: close it without reading on.
#[derive(Debug)]
pub(super) struct Evicted;

impl Activity {
    pub(super) fn new() -> Activity {
        let state = ActState { in_frame: false, pending_acks: 0, idle_since: Some(Instant::now()), evicted: false };
        Activity { state: Mutex::new(state) }
    }

    /// The reader's view after decoding: a frame is (or is not) in progress.
    ///
    /// # Errors
    /// [`Evicted`] when the connection was evicted while idle: the bytes
    /// just read must not start a frame that nobody will answer.
    pub(super) fn set_in_frame(&self, in_frame: bool) -> Result<(), Evicted> {
        let mut s = lock(&self.state);
        if s.evicted {
            return Err(Evicted);
        }
        s.in_frame = in_frame;
        s.refresh();
        Ok(())
    }

    /// A frame went to the pipeline; its ACK (or its "no ACK") is owed.
    ///
    /// # Errors
    /// [`Evicted`], as for [`Activity::set_in_frame`].
    pub(super) fn submitted(&self) -> Result<(), Evicted> {
        let mut s = lock(&self.state);
        if s.evicted {
            return Err(Evicted);
        }
        s.pending_acks += 1;
        s.in_frame = false;
        s.refresh();
        Ok(())
    }

    /// The writer is done with one frame's outcome.
    pub(super) fn answered(&self) {
        let mut s = lock(&self.state);
        s.pending_acks = s.pending_acks.saturating_sub(1);
        s.refresh();
    }

    /// True while an ACK (or a "no ACK") is still owed for a frame read.
    pub(super) fn owes_acks(&self) -> bool {
        lock(&self.state).pending_acks > 0
    }

    fn idle_since(&self) -> Option<Instant> {
        let s = lock(&self.state);
        if s.evicted {
            None
        } else {
            s.idle_since
        }
    }

    /// Marks the connection evicted if it is still idle.
    fn try_evict(&self) -> bool {
        let mut s = lock(&self.state);
        if s.evicted || s.idle_since.is_none() {
            return false;
        }
        s.evicted = true;
        true
    }
}

impl ActState {
    fn refresh(&mut self) {
        let idle = !self.in_frame && self.pending_acks == 0;
        self.idle_since = match (idle, self.idle_since) {
            (true, Some(t)) => Some(t),
            (true, None) => Some(Instant::now()),
            (false, _) => None,
        };
    }
}

/// Live connections, by id, and how many each peer address holds.
#[derive(Debug, Default)]
pub(super) struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    conns: HashMap<u64, Entry>,
    per_peer: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Entry {
    peer: SocketAddr,
    activity: Arc<Activity>,
    evict: CancellationToken,
}

/// A peer's claim on one of its connections; released on drop.
#[derive(Debug)]
pub(super) struct Claim {
    registry: Arc<Registry>,
    ip: IpAddr,
    id: u64,
}

impl Claim {
    /// The connection's id.
    pub(super) fn id(&self) -> u64 {
        self.id
    }
}

impl Registry {
    /// Counts a new connection against its peer's bound, or `None` when the
    /// peer already holds `max_per_peer`.
    pub(super) fn claim(self: &Arc<Self>, id: u64, peer: SocketAddr, max_per_peer: usize) -> Option<Claim> {
        let mut inner = lock(&self.inner);
        let held = inner.per_peer.entry(peer.ip()).or_insert(0);
        if *held >= max_per_peer.max(1) {
            return None;
        }
        *held += 1;
        Some(Claim { registry: self.clone(), ip: peer.ip(), id })
    }

    /// Makes an admitted connection a candidate for eviction.
    pub(super) fn register(&self, claim: &Claim, peer: SocketAddr, activity: Arc<Activity>, evict: CancellationToken) {
        lock(&self.inner).conns.insert(claim.id, Entry { peer, activity, evict });
    }

    /// Closes the connection idle for longest; returns its peer, or `None`
    /// when every connection is busy.
    pub(super) fn evict_longest_idle(&self) -> Option<SocketAddr> {
        let inner = lock(&self.inner);
        let mut idle: Vec<(Instant, &Entry)> =
            inner.conns.values().filter_map(|e| e.activity.idle_since().map(|t| (t, e))).collect();
        idle.sort_by_key(|(t, _)| *t);
        // Re-checked under the connection's own lock: it may have become
        // busy since `idle_since` was read.
        let victim = idle.into_iter().map(|(_, e)| e).find(|e| e.activity.try_evict())?;
        victim.evict.cancel();
        Some(victim.peer)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut inner = lock(&self.registry.inner);
        inner.conns.remove(&self.id);
        if let Some(held) = inner.per_peer.get_mut(&self.ip) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                inner.per_peer.remove(&self.ip);
            }
        }
    }
}

/// Lets one WARN line through per second; counts the ones held back, so a
/// flood of refusals cannot flood the log.
#[derive(Debug)]
pub(super) struct WarnLimit {
    next: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl WarnLimit {
    pub(super) fn new() -> WarnLimit {
        WarnLimit { next: Mutex::new(None), suppressed: AtomicU64::new(0) }
    }

    /// `Some(lines held back since the last one)` when a line may be logged.
    pub(super) fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut next = lock(&self.next);
        if next.is_some_and(|t| now < t) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *next = Some(now + std::time::Duration::from_secs(1));
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_peer_holds_at_most_its_bound_and_a_drop_frees_one() {
        let reg = Arc::new(Registry::default());
        let a = reg.claim(1, addr("10.0.0.1:1000"), 2).unwrap();
        let _b = reg.claim(2, addr("10.0.0.1:1001"), 2).unwrap();
        assert!(reg.claim(3, addr("10.0.0.1:1002"), 2).is_none(), "third from the same address");
        assert!(reg.claim(4, addr("10.0.0.2:1000"), 2).is_some(), "another address is not affected");
        drop(a);
        assert!(reg.claim(5, addr("10.0.0.1:1003"), 2).is_some());
    }

    #[test]
    fn only_an_idle_connection_is_evicted_and_a_busy_one_never() {
        let reg = Arc::new(Registry::default());
        let mut conns = Vec::new();
        for port in 1..=3u16 {
            let peer = addr(&format!("10.0.0.1:{port}"));
            let claim = reg.claim(port.into(), peer, 10).unwrap();
            let (act, tok) = (Arc::new(Activity::new()), CancellationToken::new());
            reg.register(&claim, peer, act.clone(), tok.clone());
            conns.push((claim, act, tok));
        }
        // 1 is mid-frame, 2 owes an ACK: only 3 is idle.
        conns[0].1.set_in_frame(true).unwrap();
        conns[1].1.submitted().unwrap();
        assert_eq!(reg.evict_longest_idle(), Some(addr("10.0.0.1:3")));
        assert!(conns[2].2.is_cancelled());
        assert!(conns[2].1.set_in_frame(true).is_err(), "an evicted connection reads no further frame");
        assert_eq!(reg.evict_longest_idle(), None, "nobody else is idle");
        // Once 2's ACK is written it is idle, and goes next; 1 never.
        conns[1].1.answered();
        assert_eq!(reg.evict_longest_idle(), Some(addr("10.0.0.1:2")));
        assert_eq!(reg.evict_longest_idle(), None);
        assert!(!conns[0].2.is_cancelled());
    }

    #[test]
    fn warnings_are_rate_limited_and_count_what_was_held_back() {
        let limit = WarnLimit::new();
        let t0 = Instant::now();
        assert_eq!(limit.allow_at(t0), Some(0));
        assert_eq!(limit.allow_at(t0 + std::time::Duration::from_millis(10)), None);
        assert_eq!(limit.allow_at(t0 + std::time::Duration::from_millis(999)), None);
        assert_eq!(limit.allow_at(t0 + std::time::Duration::from_millis(1000)), Some(2));
    }
}
