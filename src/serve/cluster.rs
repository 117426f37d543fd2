//! `recordhub serve` with `[cluster]`: follow the stream, take the lease,
//! ingest and publish; or, as a reader, follow and serve reads only.
//!
//! OWNER: helper "lease" (issue 13).

use crate::config::Config;
use crate::fault::Faults;
use crate::pipeline::Mappings;

use super::ServeError;

/// Runs a cluster node until SIGTERM/ctrl-c (or until it is fenced: then it
/// exits with an error so the service manager restarts it as a follower).
///
/// # Errors
/// Start-up failures, NATS unreachable, the local journal diverging from the stream.
pub async fn serve(_cfg: Config, _mappings: Mappings, _faults: Faults) -> Result<(), ServeError> {
    Err(ServeError::Cluster(crate::cluster::ClusterError::Stopped))
}
