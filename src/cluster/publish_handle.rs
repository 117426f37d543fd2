//! The pipeline thread's side of the publisher: [`Replication`], which it
//! tells of commits and waits on (`ack_after = "replicated"`), and the
//! progress the publisher task reports into it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::super::{AckAfter, ClusterState};

/// Why a batch's AA could not wait for the quorum.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not replicated: {0}")]
pub struct NotReplicated(pub String);

/// What the publisher task reports to waiting pipeline threads.
#[derive(Debug, Default)]
pub(super) struct Progress {
    pub(super) published: u64,
    /// Publishing fails since then (the oldest unacknowledged publish was
    /// sent then), for this reason.
    pub(super) down: Option<(Instant, String)>,
    /// Why publishing stopped for good.
    pub(super) stopped: Option<String>,
}

pub(super) struct Shared {
    pub(super) progress: Mutex<Progress>,
    pub(super) changed: Condvar,
    pub(super) wake: Notify,
    pub(super) ack_after: AckAfter,
    pub(super) publish_timeout: Duration,
    pub(super) state: ClusterState,
}

impl Shared {
    /// The lock, even if a holder panicked (the data is plain counters).
    pub(super) fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn set_published(&self, seq: u64) {
        let mut p = self.lock();
        p.published = p.published.max(seq);
        if let Some((since, _)) = p.down.take() {
            tracing::info!(seq, down_ms = since.elapsed().as_millis() as u64, "publishing to the stream again");
        }
        drop(p);
        self.state.set_published(seq);
        self.state.set_nats_connected(true);
        self.changed.notify_all();
    }

    pub(super) fn set_down(&self, since: Instant, why: String) {
        let mut p = self.lock();
        let since = p.down.as_ref().map_or(since, |(s, _)| (*s).min(since));
        p.down = Some((since, why));
        drop(p);
        self.changed.notify_all();
    }

    pub(super) fn stop(&self, why: String) {
        self.lock().stopped = Some(why);
        self.changed.notify_all();
    }
}

/// The pipeline thread's handle on the publisher. Cheap to clone.
#[derive(Clone)]
pub struct Replication {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication").field("published", &self.published()).finish()
    }
}

impl Replication {
    /// When AAs are released.
    pub fn ack_after(&self) -> AckAfter {
        self.shared.ack_after
    }

    /// How long a batch waits for the quorum (`cluster.publish_timeout`).
    pub fn publish_timeout(&self) -> Duration {
        self.shared.publish_timeout
    }

    /// The pipeline committed the journal up to `seq`: publish up to there.
    /// Callable from any thread; never blocks.
    pub fn note_committed(&self, seq: u64) {
        self.shared.state.set_committed(seq);
        self.shared.wake.notify_one();
    }

    /// Blocks (the pipeline thread) until the stream holds every entry up to
    /// `seq` with its quorum ack, or `timeout` passes, or the publisher knows
    /// it cannot (no quorum, disconnected, fenced): then `Err` at once.
    ///
    /// # Errors
    /// [`NotReplicated`] with the reason for the ERR segment and the log.
    pub fn wait_published(&self, seq: u64, timeout: Duration) -> Result<(), NotReplicated> {
        let deadline = Instant::now() + timeout;
        let mut p = self.shared.lock();
        loop {
            if p.published >= seq {
                return Ok(());
            }
            if let Some(why) = &p.stopped {
                return Err(NotReplicated(why.clone()));
            }
            // Down for a whole timeout already: waiting again would only
            // stall every batch for the full timeout during an outage.
            if let Some((since, why)) = &p.down {
                if since.elapsed() >= self.shared.publish_timeout {
                    return Err(NotReplicated(why.clone()));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                let why = p.down.as_ref().map_or_else(|| "no quorum ack in time".to_string(), |(_, w)| w.clone());
                return Err(NotReplicated(why));
            }
            p = match self.shared.changed.wait_timeout(p, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// The highest journal seq the stream acknowledged.
    pub fn published(&self) -> u64 {
        self.shared.lock().published
    }
}
