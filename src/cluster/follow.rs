//! Following the stream: every node that does not hold the lease appends the
//! stream's entries to its own journal (same seqs) and files them into its
//! own index through the same code as replay, so it can serve reads and, on
//! takeover, continue the journal where the stream ends.
//!
//! OWNER: helper "follow" (issue 13). Interface fixed by the skeleton.

use crate::health::Health;
use crate::pipeline::Pipeline;

use super::{Cluster, ClusterError, ClusterState};

/// A running follower: a durable consumer feeding the pipeline thread.
pub struct Following {
    _todo: (),
}

impl Following {
    /// Entries the stream holds that this node has not yet applied.
    pub fn lag(&self) -> u64 {
        0
    }

    /// The last journal seq this node holds.
    pub fn position(&self) -> u64 {
        0
    }

    /// Applies everything the stream holds now, stops, and gives the
    /// pipeline back (a standby taking over).
    ///
    /// # Errors
    /// The stream could not be read to its end, or the journal refused an entry.
    pub async fn catch_up_and_stop(self) -> Result<Pipeline, ClusterError> {
        Err(ClusterError::Stopped)
    }

    /// Stops at once (shutdown) and gives the pipeline back.
    ///
    /// # Errors
    /// The follower thread panicked.
    pub async fn stop(self) -> Result<Pipeline, ClusterError> {
        Err(ClusterError::Stopped)
    }
}

/// Starts following: a durable consumer named after the node, from the
/// local journal's committed seq + 1. Checks first that the local journal is
/// a prefix of the stream ([`ClusterError::Diverged`] otherwise).
///
/// # Errors
/// The consumer cannot be created, or the local journal diverges.
pub async fn spawn(
    _cluster: Cluster,
    _pipeline: Pipeline,
    _health: Health,
    _state: ClusterState,
) -> Result<Following, ClusterError> {
    Err(ClusterError::Stopped)
}
