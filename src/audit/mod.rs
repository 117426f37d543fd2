//! The audit log: every view, search, refusal and break-glass read, as JSON
//! lines under `<data>/audit/` (never inside the derived index, which
//! `reindex` or an operator may delete).
//!
//! Skeleton (issue 11): one file, one line per event, fsynced before
//! `append` returns. The hash chain, rotation, `verify` and export replace
//! the internals; the interface below stays.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// One audited event. Never holds clinical content: what was shown is named
/// by category and item id only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Who: the token's user claim (or the CLI's `--user`).
    pub user: String,
    pub role: String,
    /// The user's organisation (ODS code).
    pub org: String,
    /// `direct_care` or `break_glass` (empty for events that are not reads).
    pub purpose: String,
    /// The relationship declared for direct care, or the break-glass reason.
    pub reason: String,
    pub break_glass: bool,
    /// The patient, when the event concerns one.
    pub nhs_number: Option<String>,
    /// `read`, `read_history`, `search`, `journal_show`, `refused`, ….
    pub action: String,
    /// The record categories shown (empty when nothing was shown).
    pub categories: Vec<String>,
    /// The ids of the items shown (`kind/facility/id`).
    pub items: Vec<String>,
    /// The client's address (`ip:port`), or `local` for the CLI.
    pub client: String,
    /// `http`, `web` or `cli`.
    pub via: String,
    /// `shown`, `not_found`, `objected`, `forbidden`, `unauthenticated`, ….
    pub outcome: String,
}

/// The audit log of one data directory. Cheap to clone; appends from many
/// threads are serialised.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Mutex<File>>,
    path: PathBuf,
}

/// The directory under the data directory that holds the audit log.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("audit")
}

impl AuditLog {
    /// Opens (creating) the audit log under `data_dir/audit/`.
    ///
    /// # Errors
    /// The directory or file could not be created or opened.
    pub fn open(data_dir: &Path) -> io::Result<AuditLog> {
        let dir = dir(data_dir);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("audit.jsonl");
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(AuditLog { inner: Arc::new(Mutex::new(file)), path })
    }

    /// Appends one event and makes it durable before returning: a caller
    /// that gets an error must not show what it was about to show.
    ///
    /// # Errors
    /// The event could not be written or synced.
    pub fn append(&self, event: &AuditEvent) -> io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut f = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(&line)?;
        f.sync_data()
    }

    /// Every event, oldest first.
    ///
    /// # Errors
    /// The log could not be read, or a line is not an event.
    pub fn events(&self) -> io::Result<Vec<AuditEvent>> {
        let f = File::open(&self.path)?;
        let mut out = Vec::new();
        for line in io::BufReader::new(f).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            out.push(serde_json::from_str(&line).map_err(io::Error::other)?);
        }
        Ok(out)
    }
}
