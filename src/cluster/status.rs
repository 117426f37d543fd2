//! `recordhub cluster status` and each node's heartbeat in the nodes bucket:
//! nodes, roles, the lease holder, and each node's applied position.
//!
//! OWNER: helper "govern" (issue 13). Interface fixed by the skeleton.

use super::{Cluster, ClusterError};

/// What a node reports about itself (the nodes bucket's value, JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    pub node: String,
    /// `active` (holds the lease), `standby`, `reader`, `stood-down`.
    pub role: String,
    /// Last journal seq this node has in its journal.
    pub journal_seq: u64,
    /// Last journal seq filed into its index.
    pub applied_seq: u64,
    /// Milliseconds since the epoch.
    pub at_ms: u64,
    pub mllp: Option<String>,
    pub http: Option<String>,
}

/// Writes `status` under this node's key.
///
/// # Errors
/// The bucket cannot be written.
pub async fn report(_cluster: &Cluster, _status: &NodeStatus) -> Result<(), ClusterError> {
    Err(ClusterError::Stopped)
}
