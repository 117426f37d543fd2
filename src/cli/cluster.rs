//! `recordhub cluster status`.
//!
//! OWNER: helper "govern" (issue 13).

use std::process::ExitCode;

use crate::config::Config;

/// Prints the cluster's nodes, roles, lease holder and positions.
///
/// # Errors
/// No `[cluster]` section, or NATS unreachable.
pub fn cluster_status(_cfg: &Config, _json: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cluster status is not built yet")
}
