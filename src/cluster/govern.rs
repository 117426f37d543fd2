//! Governance and audit across the cluster: an objection recorded (or
//! withdrawn) on any node is published to the governance stream and applied
//! by every node; every node's audit events are published to the audit
//! stream, the cluster's one ordered audit log.
//!
//! OWNER: helper "govern" (issue 13). Interface fixed by the skeleton.

use super::{Cluster, ClusterError};

/// An objection recorded or withdrawn on some node, as the governance stream
/// carries it (JSON). Applying it is idempotent.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ObjectionEvent {
    pub nhs_number: String,
    /// `true`: recorded; `false`: withdrawn.
    pub objected: bool,
    pub recorded_by: String,
    pub reason: String,
    pub source: String,
    pub at_ms: u64,
    /// The node where it was recorded.
    pub node: String,
}

/// What the HTTP API holds to tell the cluster about a governance change.
/// Cheap to clone.
#[derive(Clone)]
pub struct GovHandle {
    _cluster: Cluster,
}

impl std::fmt::Debug for GovHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GovHandle")
    }
}

impl GovHandle {
    /// Publishes `event` to the governance stream and waits for its ack, so
    /// the caller can say "recorded on every node" only when it is.
    ///
    /// # Errors
    /// The stream did not acknowledge it.
    pub async fn objection(&self, _event: &ObjectionEvent) -> Result<(), ClusterError> {
        Err(ClusterError::Stopped)
    }
}
