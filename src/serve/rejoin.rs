//! A node whose journal diverges from the stream, under
//! `ack_after = "replicated"`, rejoins by itself.
//!
//! Why it is safe: under `replicated` no entry is acknowledged AA (or CA)
//! before the stream holds it (`cluster/publish.rs`), so whatever this
//! node's journal holds that the stream does not — the tail a crash left
//! unpublished, the AR 207 entries of a quorum outage, entries written
//! after another node took over — was never acknowledged as accepted; its
//! senders were told to resend. The stream holds everything that was. So
//! the journal and index are moved aside (kept, for inspection, under
//! `<data>/set-aside-<ms>/`) and the node re-syncs from the stream.
//!
//! Under `local` an AA does not wait for the stream, so the same divergence
//! may hold acknowledged messages: the node refuses to start and says what
//! to do (`follow.rs`), and an operator decides.

use std::path::{Path, PathBuf};

use crate::cluster::{follow, AckAfter, Cluster, ClusterError};
use crate::config::Config;
use crate::fault::Faults;
use crate::pipeline::{self, Mappings};

use super::parts::{self, Opened};
use super::ServeError;

/// Checks the opened journal against the stream; under `replicated`, a
/// diverged one is set aside and the pipeline opened again, empty.
///
/// # Errors
/// The check cannot reach the stream, the directories cannot be moved, or
/// the pipeline does not open again.
pub(super) async fn rejoin(
    cfg: &Config,
    mappings: &Mappings,
    faults: Faults,
    cluster: &Cluster,
    opened: Opened,
) -> Result<Opened, ServeError> {
    let (seq, why) = match follow::check_prefix(cluster, &opened.pipeline).await {
        Err(ClusterError::Diverged { seq, why }) if cluster.cfg.ack_after == AckAfter::Replicated => (seq, why),
        // Anything else is for the follower to report as it starts.
        _ => return Ok(opened),
    };
    let Opened { pipeline, .. } = opened;
    // Closed for good before its directory is moved aside.
    parts::close(pipeline).await;
    let aside = set_aside(&cfg.store.data_dir)
        .map_err(|source| ServeError::DataDir { dir: cfg.store.data_dir.clone(), source })?;
    tracing::warn!(seq, why = %why, set_aside = %aside.display(),
        "the local journal diverges from the stream; under ack_after = \"replicated\" nothing it holds beyond the stream was acknowledged AA, so it was set aside and this node re-syncs from the stream");
    parts::open(cfg, mappings, faults).await
}

/// Moves `journal/` and `index/` into a new `set-aside-<ms>/`.
fn set_aside(data_dir: &Path) -> std::io::Result<PathBuf> {
    let aside = data_dir.join(format!("set-aside-{}", pipeline::now_ms()));
    std::fs::create_dir(&aside)?;
    for dir in [pipeline::journal_dir(data_dir), pipeline::index_dir(data_dir)] {
        if let Some(name) = dir.file_name() {
            if dir.exists() {
                std::fs::rename(&dir, aside.join(name))?;
            }
        }
    }
    Ok(aside)
}
