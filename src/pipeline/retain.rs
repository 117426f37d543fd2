//! The retention check the server runs at start-up and every
//! `[retention] check_interval_secs`: retires old, applied journal segments
//! (`journal::retention`) and bounds the dedup window (`Store::prune_dedup`).
//!
//! The index is flushed before `applied_seq` is read, so a segment is only
//! retired once sled holds its entries durably: a crash afterwards cannot
//! leave the index needing an entry the journal no longer has.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{DedupConfig, RetentionConfig};
use crate::journal::retention::{self, Retired};
use crate::journal::JournalError;
use crate::store::{Store, StoreError};

/// What one check did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Checked {
    pub retired: Retired,
    /// Dedup records forgotten (outside the window, or the oldest beyond its size).
    pub dedup_forgotten: usize,
}

/// Why a check failed; the next one tries again.
#[derive(Debug, thiserror::Error)]
pub enum RetainError {
    /// A segment could not be read, moved or removed; check the journal directory's permissions and space.
    #[error("retention: the journal could not be read or a segment retired")]
    Journal(#[from] JournalError),
    /// The index could not be flushed or pruned; nothing was retired.
    #[error("retention: the index could not be flushed or its dedup window pruned")]
    Store(#[from] StoreError),
}

/// What the check needs.
#[derive(Clone)]
pub struct Retention {
    pub store: Store,
    pub journal_dir: PathBuf,
    pub retention: RetentionConfig,
    pub dedup: DedupConfig,
}

impl Retention {
    /// One check at `now_ms`.
    ///
    /// # Errors
    /// The journal or the index failed; what was done before it stays done.
    pub fn check(&self, now_ms: u64) -> Result<Checked, RetainError> {
        let mut done = Checked::default();
        if let Some(policy) = self.retention.policy() {
            self.store.flush()?;
            let applied = self.store.applied_seq()?;
            done.retired = retention::retire(&self.journal_dir, &policy, applied, now_ms)?;
        }
        let below = match self.dedup.window {
            Some(w) => {
                let since = now_ms.saturating_sub(u64::try_from(w.as_millis()).unwrap_or(u64::MAX));
                // Nothing received since: every record is outside the window.
                retention::first_seq_since(&self.journal_dir, since)?.unwrap_or(u64::MAX)
            }
            None => 0,
        };
        if below > 0 || self.dedup.max_entries > 0 {
            done.dedup_forgotten = self.store.prune_dedup(below, self.dedup.max_entries)?;
        }
        Ok(done)
    }

    /// Checks now, then every interval, until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let this = self.clone();
            let now = super::now_ms();
            match tokio::task::spawn_blocking(move || this.check(now)).await {
                Ok(Ok(done)) => log(&done, &self.journal_dir),
                Ok(Err(e)) => {
                    tracing::warn!(error = %super::error_chain(&e), "retention check failed; the next check tries again")
                }
                Err(_) => tracing::warn!("retention check was interrupted; the next check tries again"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.retention.check_interval) => {}
            }
        }
    }
}

fn log(done: &Checked, dir: &Path) {
    if !done.retired.segments.is_empty() {
        tracing::info!(
            segments = done.retired.segments.len(),
            bytes = done.retired.bytes,
            up_to_seq = done.retired.up_to_seq,
            journal = %dir.display(),
            "journal segments retired: a reindex now rebuilds only what the journal still holds"
        );
    }
    if done.dedup_forgotten > 0 {
        tracing::info!(forgotten = done.dedup_forgotten, "dedup window: older messages forgotten");
    }
}
