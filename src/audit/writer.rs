//! Appending: one writer thread per open log, group commit, rotation, and
//! the tail shared safely with other processes.
//!
//! Callers serialise their event (in their own thread) and hand it to the
//! writer; the writer takes every event waiting, chains them, writes them
//! with one `write` and one `fdatasync`, and wakes each caller with the
//! result. Many reads at once therefore share an fsync instead of queueing
//! for one each.
//!
//! Two processes may append to one log (the server, and `recordhub journal
//! --show` beside it). Each batch is written under an exclusive `flock` on
//! `audit/LOCK`, and first checks that the tail is still the one this
//! process last wrote (the file's length, and no newer file); if not, it
//! reads the tail again. So the chain never forks.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::chain::{self, GENESIS};
use super::tail::{self, Torn};
use super::{Head, Options};

/// Most events in one batch (one write, one fdatasync).
const MAX_BATCH: usize = 1024;

/// One append waiting for the writer.
pub(super) struct Request {
    pub event: Vec<u8>,
    pub done: std::sync::mpsc::SyncSender<io::Result<()>>,
}

/// The end of the chain as this process knows it.
pub(super) struct Chain {
    dir: PathBuf,
    file_no: u64,
    file: File,
    /// Length of the file up to the last line known synced.
    file_len: u64,
    /// `seq` of the last line (0: empty log).
    pub(super) seq: u64,
    /// `hash` of the last line ([`GENESIS`] for an empty log).
    prev: String,
    /// A failed write may have left bytes we do not know: read the tail
    /// again before the next batch.
    stale: bool,
}

/// What opening the log found.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    pub torn: Option<Torn>,
    /// The last line is not a sound audit line (`audit verify` names it).
    pub bad_last_line: Option<String>,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Chain {
    /// Reads the tail of the log in `dir` (creating the first file),
    /// moving a torn last line aside. Call under the lock.
    pub(super) fn load(dir: &Path) -> io::Result<(Chain, Recovery)> {
        let mut recovery = Recovery::default();
        let files = chain::files(dir)?;
        let Some(&(last_no, ref last_path)) = files.last() else {
            let path = dir.join(chain::file_name(1));
            let file = open_append(&path)?;
            sync_dir(dir)?;
            let chain =
                Chain { dir: dir.into(), file_no: 1, file, file_len: 0, seq: 0, prev: GENESIS.into(), stale: false };
            return Ok((chain, recovery));
        };
        recovery.torn = tail::cut_torn_tail(last_path)?;
        let (mut seq, mut prev) = (0, GENESIS.to_string());
        for (_, path) in files.iter().rev() {
            let Some(line) = tail::last_line(path)? else { continue };
            match chain::check(&line) {
                Ok(links) => (seq, prev) = (links.seq, links.hash),
                Err(fault) => {
                    // Continue the chain after the bad line rather than
                    // refuse every read; verify reports it.
                    recovery.bad_last_line = Some(format!("{}: {fault:?}", path.display()));
                    seq = count_lines(&files)?;
                    prev = chain::sha256_hex(&[&line]);
                }
            }
            break;
        }
        let file = open_append(last_path)?;
        let file_len = file.metadata()?.len();
        Ok((Chain { dir: dir.into(), file_no: last_no, file, file_len, seq, prev, stale: false }, recovery))
    }

    pub(super) fn head(&self) -> Head {
        Head { hash: self.prev.clone(), lines: self.seq, file: self.dir.join(chain::file_name(self.file_no)) }
    }

    /// Under the lock: reads the tail again if another process (or a
    /// failed write) moved it.
    fn resync(&mut self) -> io::Result<()> {
        let moved = self.stale
            || self.file.metadata()?.len() != self.file_len
            || self.dir.join(chain::file_name(self.file_no + 1)).exists();
        if moved {
            let (fresh, recovery) = Chain::load(&self.dir)?;
            super::report_recovery(&recovery);
            *self = fresh;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let next = self.file_no + 1;
        let file = open_append(&self.dir.join(chain::file_name(next)))?;
        sync_dir(&self.dir)?;
        (self.file_no, self.file, self.file_len) = (next, file, 0);
        Ok(())
    }

    /// Chains `events` (each an event's JSON object) onto the log and syncs
    /// them. Call under the lock. On error nothing of the batch counts: the
    /// file is cut back to what was there.
    pub(super) fn commit(&mut self, events: &[&[u8]], opts: &Options) -> io::Result<()> {
        self.resync()?;
        opts.faults.check("audit.append")?;
        let (mut seq, mut prev) = (self.seq, self.prev.clone());
        let mut buf = Vec::with_capacity(events.iter().map(|e| e.len() + 240).sum());
        for e in events {
            seq += 1;
            let (line, hash) = chain::seal(e, seq, &prev);
            buf.extend_from_slice(&line);
            prev = hash;
        }
        // A file holds at least one batch, and is closed once the next would
        // take it past `rotate_bytes`.
        if self.file_len > 0 && self.file_len + buf.len() as u64 > opts.rotate_bytes {
            self.rotate()?;
        }
        let written = self.file.write_all(&buf).and_then(|()| {
            opts.faults.check("audit.fdatasync")?;
            self.file.sync_data()
        });
        match written {
            Ok(()) => {
                (self.file_len, self.seq, self.prev) = (self.file_len + buf.len() as u64, seq, prev);
                Ok(())
            }
            Err(e) => {
                // Best effort; either way the next batch reads the tail again.
                let _ = self.file.set_len(self.file_len);
                self.stale = true;
                Err(e)
            }
        }
    }
}

fn count_lines(files: &[(u64, PathBuf)]) -> io::Result<u64> {
    let mut n = 0;
    for (_, path) in files {
        n += memchr::memchr_iter(b'\n', &std::fs::read(path)?).count() as u64;
    }
    Ok(n)
}

/// Runs `f` holding the exclusive lock on `audit/LOCK`.
pub(super) fn locked<T>(lock: &File, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    fs2::FileExt::lock_exclusive(lock)?;
    let out = f();
    let unlocked = fs2::FileExt::unlock(lock);
    let out = out?;
    unlocked?;
    Ok(out)
}

/// An error for each caller of a failed batch (`io::Error` is not `Clone`).
fn copy_err(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// The writer thread: batches, commits, answers, and logs the chain head.
pub(super) fn run(mut chain: Chain, lock: File, rx: Receiver<Request>, opts: Options, head: Arc<Mutex<Head>>) {
    let mut logged = chain.seq;
    let mut next_log = opts.head_log.map(|p| Instant::now() + p);
    loop {
        let first = match next_log {
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(r) => Some(r),
                Err(_) => break,
            },
        };
        if let Some(first) = first {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let events: Vec<&[u8]> = batch.iter().map(|r| r.event.as_slice()).collect();
            let result = locked(&lock, || chain.commit(&events, &opts));
            if result.is_ok() {
                *head.lock().unwrap_or_else(|e| e.into_inner()) = chain.head();
            }
            for r in batch {
                // A caller that gave up waiting is not an error here.
                let _ = r.done.send(result.as_ref().map(|_| ()).map_err(copy_err));
            }
        }
        if let (Some(at), Some(period)) = (next_log, opts.head_log) {
            if Instant::now() >= at {
                if chain.seq != logged {
                    log_head(&chain.head());
                    logged = chain.seq;
                }
                next_log = Some(Instant::now() + period);
            }
        }
    }
    if chain.seq != logged {
        log_head(&chain.head());
    }
}

/// The chain head at INFO: no patient data, so an external copy (the log
/// collector) can anchor the chain.
pub(super) fn log_head(head: &Head) {
    tracing::info!(chain_head = %head.hash, lines = head.lines, file = %head.file.display(), "audit chain head");
}
