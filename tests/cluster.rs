//! The cluster tests (issue 13): a 3-server NATS JetStream cluster and real
//! `recordhub serve` processes (active, standby, reader) on loopback ports,
//! all started by the test and checked from the outside: ACK bytes, what the
//! journal stream holds (read with async-nats), what a reader serves.
//!
//! They skip with a note when `nats-server` is not installed, unless
//! `RECORDHUB_REQUIRE_NATS=1` (`.ci/run` sets it after installing it): then
//! they fail. Each test starts its own NATS cluster; they run one at a time
//! (three NATS servers and three engines each are plenty for a small machine).
//!
//! Bounds the tests hold the cluster to (measured figures are printed with
//! `--nocapture`): a reader serves an acknowledged message within
//! [`READ_BOUND`]; a standby answers AA within [`FAILOVER_BOUND`] of the
//! active node's kill -9 with `lease_ttl_secs = 3`; an objection recorded on
//! one node hides the record on a reader within [`READ_BOUND`].

// The crate root is tests/cluster.rs, so its modules name their files.
#[path = "cluster/failover.rs"]
mod failover;
#[path = "cluster/nats.rs"]
mod nats;
#[path = "cluster/node.rs"]
mod node;
#[path = "cluster/objections.rs"]
mod objections;
#[path = "cluster/quorum.rs"]
mod quorum;
#[path = "cluster/reads.rs"]
mod reads;
#[path = "cluster/sender.rs"]
mod sender;
#[path = "cluster/stream.rs"]
mod stream;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How long after an AA (or an objection) a reader may lag.
pub const READ_BOUND: Duration = Duration::from_secs(5);
/// kill -9 of the active node → first AA from the standby.
pub const FAILOVER_BOUND: Duration = Duration::from_secs(5);
/// How long a node may take to start (debug build, a loaded machine).
pub const START_LIMIT: Duration = Duration::from_secs(60);

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time, each with a fresh 3-server NATS cluster; `None`
/// (skip) when nats-server is missing and not required.
pub fn setup() -> Option<(MutexGuard<'static, ()>, nats::NatsCluster)> {
    // A failed test poisons the lock; the next one still runs alone.
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let nats = nats::NatsCluster::start()?;
    Some((guard, nats))
}

/// Median and maximum of some durations, for the printed figures.
pub fn median_max(mut d: Vec<Duration>) -> (Duration, Duration) {
    d.sort();
    (d.get(d.len() / 2).copied().unwrap_or_default(), d.last().copied().unwrap_or_default())
}
