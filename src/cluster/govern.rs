//! Governance and audit across the cluster: an objection recorded (or
//! withdrawn) on any node is published to the governance stream and applied
//! by every node; every node's audit events are published to the audit
//! stream, the cluster's one ordered audit log.
//!
//! OWNER: helper "govern" (issue 13). Interface fixed by the skeleton.
