//! The audit log: every view, search, refusal and break-glass read, as JSON
//! lines under `<data>/audit/` (never inside the derived index, which
//! `reindex` or an operator may delete).
//!
//! - `chain.rs`: the line format and exactly what is hashed (a SHA-256 hash
//!   chain: each line holds the hash of the line before and its own).
//! - `writer.rs`: one writer thread, group commit (one fdatasync per batch),
//!   rotation at `[audit] rotate_bytes`, a lock shared with other processes.
//! - `tail.rs`: the end of the chain at start-up; a torn last line is moved
//!   to a `.damaged` side file, never silently dropped.
//! - `verify.rs`, `query.rs`, `fhir.rs`: `recordhub audit verify`, the
//!   listing and `GET /admin/audit`, the FHIR R4 AuditEvent export.
//! - `migrate.rs`: events from before the chain (the index's `audit` tree).
//!
//! What it does not do: decide who may read (`access`), or ship the log
//! anywhere (the files are ready for a SIEM as they are).

mod chain;
pub mod fhir;
mod migrate;
pub mod query;
mod tail;
pub mod verify;
mod writer;

#[cfg(test)]
mod tests;

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fault::Faults;

pub use chain::GENESIS;
pub use tail::Torn;

/// One audited event. Never holds clinical content: what was shown is named
/// by category and item id only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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

/// The end of the chain: what the INFO line `audit chain head` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    /// `hash` of the last line ([`GENESIS`] for an empty log).
    pub hash: String,
    /// Lines in the whole chain (the last line's `seq`).
    pub lines: u64,
    /// The file being appended to.
    pub file: PathBuf,
}

/// How a log is opened (`[audit]` in engine.toml, and fault points).
#[derive(Clone)]
pub struct Options {
    /// A file is closed and the next started once a batch would take it
    /// past this size.
    pub rotate_bytes: u64,
    /// How often the chain head is logged at INFO (when it moved); `None`: never.
    pub head_log: Option<Duration>,
    /// `audit.append` (a batch fails before it is written) and
    /// `audit.fdatasync` (written, then the sync fails).
    pub faults: Faults,
    /// The index, whose pre-chain `audit` tree is copied into the log the
    /// first time it is opened with it (`migrate.rs`).
    pub legacy: Option<crate::store::Store>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rotate_bytes: DEFAULT_ROTATE_BYTES,
            head_log: Some(Duration::from_secs(DEFAULT_HEAD_LOG_SECS)),
            faults: Faults::none(),
            legacy: None,
        }
    }
}

/// `[audit] rotate_bytes` by default (64 MiB).
pub const DEFAULT_ROTATE_BYTES: u64 = 64 << 20;
/// `[audit] head_log_secs` by default.
pub const DEFAULT_HEAD_LOG_SECS: u64 = 300;

impl Options {
    /// The options `[audit]` describes, with `faults` armed.
    pub fn from_config(cfg: &crate::config::AuditConfig, faults: Faults) -> Options {
        Options { rotate_bytes: cfg.rotate_bytes, head_log: cfg.head_log, faults, legacy: None }
    }
}

/// The audit log of one data directory. Cheap to clone; clones share one
/// writer thread, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    tx: Option<mpsc::Sender<writer::Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
    head: Arc<Mutex<Head>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A chain line's own links (`seq`, `prev`, `hash`; see `chain.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineLinks {
    pub seq: u64,
    pub prev: String,
    pub hash: String,
}

/// Checks one chain line (without its newline) against its own hash: for
/// readers of the chain outside this module (the cluster's audit forwarder
/// and `recordhub cluster audit`). `Err` says what is wrong with it.
pub fn check_line(line: &[u8]) -> Result<LineLinks, String> {
    match chain::check(line) {
        Ok(l) => Ok(LineLinks { seq: l.seq, prev: l.prev, hash: l.hash }),
        Err(chain::LineFault::Changed) => Err("changed: its bytes do not hash to its own hash".into()),
        Err(chain::LineFault::Malformed(why)) => Err(why),
    }
}

/// The SHA-256 (hex) of a line's bytes: names a line that is not sound.
pub fn line_digest(line: &[u8]) -> String {
    chain::sha256_hex(&[line])
}

/// The chain files in `dir` (an audit directory), in order: (number, path).
///
/// # Errors
/// The directory could not be read.
pub fn chain_files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    chain::files(dir)
}

/// The directory under the data directory that holds the audit log.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("audit")
}

/// Says at WARN/ERROR what opening (or re-reading) the tail found.
fn report_recovery(r: &writer::Recovery) {
    if let Some(t) = &r.torn {
        tracing::warn!(file = %t.file.display(), offset = t.offset, bytes = t.bytes, damaged = %t.damaged.display(),
            "audit log had a torn last line (a write cut short by a crash; its read was never shown): \
             moved it to the .damaged file");
    }
    if let Some(what) = &r.bad_last_line {
        tracing::error!(line = %what, "the audit log's last line is not a sound audit line: the chain continues \
            after it; run `recordhub audit verify` and investigate");
    }
}

impl AuditLog {
    /// Opens (creating) the audit log under `data_dir/audit/` with the
    /// default options.
    ///
    /// # Errors
    /// The directory or a file could not be created, read or locked.
    pub fn open(data_dir: &Path) -> io::Result<AuditLog> {
        AuditLog::open_with(data_dir, Options::default())
    }

    /// Opens (creating) the audit log: finds the end of the chain, moves a
    /// torn last line aside (WARN), copies pre-chain events into a log that
    /// was not given them yet (`Options::legacy`), and starts the writer thread.
    ///
    /// # Errors
    /// The directory or a file could not be created, read or locked.
    pub fn open_with(data_dir: &Path, opts: Options) -> io::Result<AuditLog> {
        let dir = dir(data_dir);
        std::fs::create_dir_all(&dir)?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("LOCK"))?;
        let chain = writer::locked(&lock, || {
            let (mut chain, recovery) = writer::Chain::load(&dir)?;
            report_recovery(&recovery);
            migrate::migrate(&mut chain, data_dir, &opts)?;
            Ok(chain)
        })?;
        let head = Arc::new(Mutex::new(chain.head()));
        if opts.head_log.is_some() {
            writer::log_head(&chain.head());
        }
        let (tx, rx) = mpsc::channel();
        // The writer logs the chain head to whoever opened the log.
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let shared = head.clone();
        let thread = std::thread::Builder::new().name("audit-writer".into()).spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || writer::run(chain, lock, rx, opts, shared))
        })?;
        Ok(AuditLog { inner: Arc::new(Inner { dir, tx: Some(tx), thread: Some(thread), head }) })
    }

    /// Appends one event and returns once it is on disk (fdatasync): a
    /// caller that gets an error must not show what it was about to show.
    ///
    /// # Errors
    /// The event could not be written or synced (or the writer has stopped).
    pub fn append(&self, event: &AuditEvent) -> io::Result<()> {
        let bytes = serde_json::to_vec(event).map_err(io::Error::other)?;
        let (done, wait) = mpsc::sync_channel(1);
        let stopped = || io::Error::other("the audit writer has stopped; restart recordhub");
        let tx = self.inner.tx.as_ref().ok_or_else(stopped)?;
        tx.send(writer::Request { event: bytes, done }).map_err(|_| stopped())?;
        wait.recv().map_err(|_| stopped())?
    }

    /// Every event, oldest first.
    ///
    /// # Errors
    /// The log could not be read, or a line is not an event.
    pub fn events(&self) -> io::Result<Vec<AuditEvent>> {
        query::events(&self.inner.dir)
    }

    /// The end of the chain as last written by this process.
    pub fn head(&self) -> Head {
        self.inner.head.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The directory holding the chain files.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}
