//! What `/health` and `/ready` report: one shared record of the engine's
//! failing parts, written where each failure is noticed and read by the API.
//!
//! Health is "can this process do its job": the pipeline thread is alive,
//! the journal accepts writes, the index writer keeps up. Readiness adds "is
//! it serving yet": listening, start-up replay done, index lag under a bound.
//! A failure names its reason (an OS error, a panic message), never message
//! content.
//!
//! Writers call the transition methods on every batch; they cost one atomic
//! load unless the state changes, and return whether it did so the caller
//! logs a transition once rather than once per message.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// A part of the engine that can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The pipeline thread (mapping, journal, ACKs).
    Pipeline,
    /// Journal writes (a full disk, an I/O error).
    Journal,
    /// The index writer (sled).
    Index,
}

const PARTS: [Part; 3] = [Part::Pipeline, Part::Journal, Part::Index];

impl Part {
    fn as_str(self) -> &'static str {
        match self {
            Part::Pipeline => "pipeline",
            Part::Journal => "journal",
            Part::Index => "index",
        }
    }
}

#[derive(Default)]
struct Inner {
    failing: [AtomicBool; 3],
    reasons: Mutex<[Option<Failure>; 3]>,
    listening: AtomicBool,
    replay_done: AtomicBool,
    /// Messages refused because the journal could not store them.
    refused: AtomicU64,
    /// The engine's counters ride along: every part that reports health
    /// also emits events (see `events.rs`).
    metrics: crate::metrics::Metrics,
    /// A cluster node's place in the cluster and its `ready_max_lag`
    /// (`None` on a single node: `/ready` and `/metrics` say nothing of it).
    cluster: std::sync::OnceLock<(crate::cluster::ClusterState, u64)>,
}

#[derive(Debug, Clone, Serialize)]
struct Failure {
    reason: String,
    since_ms: u64,
}

/// Shared, cheap to clone.
#[derive(Clone, Default)]
pub struct Health(Arc<Inner>);

/// One check in a report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
}

/// The body of `/health` or `/ready`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `ok` or `failing`.
    pub status: &'static str,
    pub checks: std::collections::BTreeMap<&'static str, Check>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.status == "ok"
    }

    fn from(checks: std::collections::BTreeMap<&'static str, Check>) -> Report {
        let status = if checks.values().all(|c| c.ok) { "ok" } else { "failing" };
        Report { status, checks }
    }
}

impl Health {
    fn idx(part: Part) -> usize {
        part as usize
    }

    fn reasons(&self) -> std::sync::MutexGuard<'_, [Option<Failure>; 3]> {
        // Only Option<String>s behind it: a panic elsewhere cannot leave them torn.
        self.0.reasons.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `part` failing with `reason` (kept from the first failure until
    /// it recovers). Returns true when it was healthy before.
    pub fn fail(&self, part: Part, reason: &str) -> bool {
        let i = Health::idx(part);
        let mut reasons = self.reasons();
        let was_ok = !self.0.failing[i].swap(true, Ordering::AcqRel);
        if was_ok {
            reasons[i] = Some(Failure { reason: reason.to_string(), since_ms: crate::pipeline::now_ms() });
        }
        was_ok
    }

    /// Marks `part` healthy. Returns true when it was failing before.
    #[inline]
    pub fn recover(&self, part: Part) -> bool {
        let i = Health::idx(part);
        if !self.0.failing[i].load(Ordering::Acquire) {
            return false;
        }
        let mut reasons = self.reasons();
        let was_failing = self.0.failing[i].swap(false, Ordering::AcqRel);
        reasons[i] = None;
        was_failing
    }

    pub fn is_failing(&self, part: Part) -> bool {
        self.0.failing[Health::idx(part)].load(Ordering::Acquire)
    }

    /// Counts messages refused (AR 207) because they could not be stored.
    pub fn count_refused(&self, n: u64) {
        self.0.refused.fetch_add(n, Ordering::Relaxed);
    }

    /// This engine's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.0.metrics
    }

    pub fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }

    pub fn set_listening(&self, on: bool) {
        self.0.listening.store(on, Ordering::Release);
    }

    /// Makes this a cluster node's health: `/ready` follows its part
    /// (following, active, stood down) and `/metrics` shows its gauges.
    /// Set once, at start-up.
    pub fn set_cluster(&self, state: crate::cluster::ClusterState, ready_max_lag: u64) {
        let _ = self.0.cluster.set((state, ready_max_lag));
    }

    /// The cluster state, on a cluster node.
    pub fn cluster(&self) -> Option<crate::cluster::ClusterState> {
        self.0.cluster.get().map(|(s, _)| s.clone())
    }

    pub fn set_replay_done(&self) {
        self.0.replay_done.store(true, Ordering::Release);
    }

    /// `/health`: every part is working.
    pub fn health(&self) -> Report {
        let reasons = self.reasons().clone();
        let checks = PARTS
            .iter()
            .map(|&p| {
                let failure = &reasons[Health::idx(p)];
                let ok = !self.is_failing(p);
                let check = Check {
                    ok,
                    reason: failure.as_ref().filter(|_| !ok).map(|f| f.reason.clone()),
                    since_ms: failure.as_ref().filter(|_| !ok).map(|f| f.since_ms),
                };
                (p.as_str(), check)
            })
            .collect();
        Report::from(checks)
    }

    /// `/ready`: healthy, listening, replay done and the index within
    /// `max_lag` journal entries of what was acknowledged.
    pub fn ready(&self, index_lag: u64, max_lag: u64) -> Report {
        let mut checks = self.health().checks;
        let flag = |ok: bool, why: &str| Check { ok, reason: (!ok).then(|| why.to_string()), since_ms: None };
        checks
            .insert("listening", flag(self.0.listening.load(Ordering::Acquire), "the MLLP listener is not accepting"));
        checks.insert("replay", flag(self.0.replay_done.load(Ordering::Acquire), "start-up replay is still running"));
        let lag_ok = index_lag <= max_lag;
        let lag_reason = format!("index is {index_lag} journal entries behind (bound {max_lag})");
        checks.insert("index_lag", Check { ok: lag_ok, reason: (!lag_ok).then_some(lag_reason), since_ms: None });
        if let Some((state, max)) = self.0.cluster.get() {
            cluster_checks(&mut checks, state, *max);
        }
        Report::from(checks)
    }
}

/// A cluster node is ready by its part: a follower (standby or reader) when
/// it is connected to NATS and within `max` entries of the stream's end (it
/// has no MLLP listener, by design); the active node when it listens (the
/// `listening` check); a node that stood down never.
fn cluster_checks(
    checks: &mut std::collections::BTreeMap<&'static str, Check>,
    state: &crate::cluster::ClusterState,
    max: u64,
) {
    use crate::cluster::Part as Role;
    let fail = |why: String| Check { ok: false, reason: Some(why), since_ms: None };
    let check = match state.part() {
        Role::Following => {
            checks.remove("listening");
            let lag = state.follow_lag();
            if !state.nats_connected() {
                fail("not connected to NATS: cannot follow the stream".into())
            } else if lag > max {
                fail(format!("following the stream: {lag} entries behind (bound {max})"))
            } else {
                Check { ok: true, reason: None, since_ms: None }
            }
        }
        Role::Active => Check { ok: true, reason: None, since_ms: None },
        Role::StoodDown => {
            fail("stood down: another node holds the lease; restart this node to follow the stream".into())
        }
    };
    checks.insert("cluster", check);
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Health({})", self.health().status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_reported_with_its_first_reason_until_it_recovers() {
        let h = Health::default();
        assert!(h.health().ok());
        assert!(h.fail(Part::Journal, "No space left on device (os error 28)"));
        assert!(!h.fail(Part::Journal, "a later error"), "only the transition is reported");
        let r = h.health();
        assert_eq!(r.status, "failing");
        assert_eq!(r.checks["journal"].reason.as_deref(), Some("No space left on device (os error 28)"));
        assert!(r.checks["pipeline"].ok && r.checks["index"].ok);
        assert!(h.recover(Part::Journal));
        assert!(!h.recover(Part::Journal));
        assert!(h.health().ok());
        assert_eq!(h.health().checks["journal"].reason, None);
    }

    #[test]
    fn ready_needs_listening_replay_and_a_small_lag() {
        let h = Health::default();
        assert!(!h.ready(0, 10).ok());
        h.set_listening(true);
        h.set_replay_done();
        assert!(h.ready(10, 10).ok());
        let r = h.ready(11, 10);
        assert!(!r.ok() && r.checks["index_lag"].reason.as_deref().unwrap().contains("11"));
        h.fail(Part::Pipeline, "panicked");
        assert!(!h.ready(0, 10).ok(), "unhealthy is not ready");
        assert!(!h.ready(0, 10).checks.contains_key("cluster"), "a single node says nothing of a cluster");
    }

    #[test]
    fn a_follower_is_ready_when_connected_and_near_the_end_of_the_stream() {
        use crate::cluster::{ClusterState, Part as Role};
        let h = Health::default();
        h.set_replay_done();
        let state = ClusterState::default();
        h.set_cluster(state.clone(), 100);
        let r = h.ready(0, 10);
        assert!(!r.ok() && r.checks["cluster"].reason.as_deref().unwrap().contains("not connected to NATS"));
        assert!(!r.checks.contains_key("listening"), "a follower has no MLLP listener by design");
        state.set_nats_connected(true);
        state.set_stream_last(150);
        state.set_followed(49);
        let r = h.ready(0, 10);
        assert_eq!(r.checks["cluster"].reason.as_deref(), Some("following the stream: 101 entries behind (bound 100)"));
        state.set_followed(50);
        assert!(h.ready(0, 10).ok());
        // Takes over: ready only once it listens.
        state.set_part(Role::Active);
        assert!(!h.ready(0, 10).ok());
        h.set_listening(true);
        assert!(h.ready(0, 10).ok());
        state.set_part(Role::StoodDown);
        let r = h.ready(0, 10);
        assert!(!r.ok() && r.checks["cluster"].reason.as_deref().unwrap().starts_with("stood down"));
    }
}
