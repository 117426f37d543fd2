//! The active node publishes its committed journal entries to the stream, in
//! journal order, and tells the pipeline thread how far the stream has them
//! (`ack_after = "replicated"` releases AAs only up to there).
//!
//! OWNER: helper "publish" (issue 13). Interface fixed by the skeleton.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{AckAfter, Cluster, ClusterError, ClusterState};

/// Why a batch's AA could not wait for the quorum.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not replicated: {0}")]
pub struct NotReplicated(pub String);

/// The pipeline thread's handle on the publisher. Cheap to clone.
#[derive(Clone)]
pub struct Replication {
    _todo: (),
}

impl Replication {
    /// When AAs are released.
    pub fn ack_after(&self) -> AckAfter {
        AckAfter::Replicated
    }

    /// The pipeline committed the journal up to `seq`: publish up to there.
    pub fn note_committed(&self, _seq: u64) {}

    /// Blocks (the pipeline thread) until the stream holds every entry up to
    /// `seq` with its quorum ack, or `timeout` passes, or the publisher knows
    /// it cannot (no quorum, disconnected, fenced): then `Err` at once.
    ///
    /// # Errors
    /// [`NotReplicated`] with the reason for the ERR segment and the log.
    pub fn wait_published(&self, _seq: u64, _timeout: Duration) -> Result<(), NotReplicated> {
        Err(NotReplicated("publishing is not built yet".into()))
    }

    /// The highest journal seq the stream acknowledged.
    pub fn published(&self) -> u64 {
        0
    }
}

/// Starts publishing the journal in `journal_dir` from the stream's last
/// sequence + 1 (the stream sequence is the journal seq). `committed` is the
/// journal's committed seq now. When the stream refuses an append because
/// another node has appended (`Nats-Expected-Last-Sequence`), `fenced` is
/// cancelled and publishing stops.
///
/// # Errors
/// The stream's state cannot be read, or it already holds entries this
/// journal does not (the caller must follow first).
pub async fn spawn(
    _cluster: Cluster,
    _journal_dir: PathBuf,
    _committed: u64,
    _state: ClusterState,
    _fenced: CancellationToken,
) -> Result<Replication, ClusterError> {
    Err(ClusterError::Nats("publishing is not built yet".into()))
}
