//! The active node's lease: key [`super::LEASE_KEY`] in the lease bucket,
//! whose entries expire after `lease_ttl`. The holder renews it at its
//! revision (compare-and-swap) well inside the TTL; a standby creates it once
//! it has expired. A renewal refused at our revision means another node holds
//! it: [`Lease::lost`] is cancelled and the node stands down.
//!
//! OWNER: helper "lease" (issue 13). Interface fixed by the skeleton.

use tokio_util::sync::CancellationToken;

use super::{Cluster, ClusterError, ClusterState};

/// A held lease, renewed in the background until dropped or lost.
pub struct Lease {
    lost: CancellationToken,
    revision: u64,
}

impl Lease {
    /// Cancelled when the lease is lost (renewal refused or impossible for a TTL).
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// The revision at which it was taken: the fencing token in logs and status.
    pub fn revision(&self) -> u64 {
        self.revision
    }
}

/// Waits until this node holds the lease (or `stop` is cancelled: `Ok(None)`).
///
/// # Errors
/// The bucket cannot be read.
pub async fn acquire(
    _cluster: &Cluster,
    _state: &ClusterState,
    _stop: CancellationToken,
) -> Result<Option<Lease>, ClusterError> {
    Err(ClusterError::Stopped)
}
