//! [`Journal`], the single writer: group commit, commit records, rotation.
//!
//! Durability rule: an entry is durable once `commit` has returned `Ok`, and
//! not before. `commit` writes everything appended since the last commit with
//! one `write` and one `fdatasync`, so N messages that arrived together share
//! one sync; then it writes a commit record (first seq, last seq, previous
//! committed seq) with a second `write` and no sync of its own: the next
//! commit's `fdatasync` covers it, and readers show only entries a commit
//! record covers, so nothing is readable before it is durable. New segments
//! are created as `<name>.seg.tmp`, given their header, synced, renamed into
//! place and the directory synced, so a crash during rotation leaves either no
//! new segment or a valid empty one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::damage::DamagePolicy;
use super::entry::{self, EntryRef};
use super::record::{Commit, COMMIT_LEN};
use super::recovery::{self, Recovery};
use super::{segment_header, segment_path, sync_dir, JournalError, HEADER_LEN};
use crate::fault::Faults;

/// Tuning for [`Journal::open`].
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// Start a new segment before a commit would take the current one past
    /// this size. A segment is larger only when one commit alone is larger.
    /// Default 64 MiB.
    pub segment_bytes: u64,
    /// What `open` does with damage. Default [`DamagePolicy::Refuse`].
    pub on_damage: DamagePolicy,
    /// Fault points: `journal.write`, `journal.fdatasync` (the group's write
    /// and sync) and `journal.commit_record` (the commit record's write).
    pub faults: Faults,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions { segment_bytes: 64 << 20, on_damage: DamagePolicy::Refuse, faults: Faults::none() }
    }
}

/// The journal writer. One per directory: it does not lock the directory.
pub struct Journal {
    dir: PathBuf,
    opts: JournalOptions,
    /// The current (last) segment, opened read-write.
    pub(super) file: File,
    pub(super) seg_path: PathBuf,
    /// Committed length of the current segment: where the next write goes.
    pub(super) seg_len: u64,
    /// Entries appended since the last commit, encoded. Reused across commits.
    buf: Vec<u8>,
    /// The seq of the first entry in `buf`.
    pending_first: Option<u64>,
    next_seq: u64,
    committed_seq: u64,
    /// The file may hold bytes past `seg_len` (a failed write or commit
    /// record whose cut-back failed): cut them before the next write.
    tail_dirty: bool,
    /// A new segment's directory entry has not been synced yet.
    dir_dirty: bool,
    /// A commit record was written since the last `fdatasync`.
    record_unsynced: bool,
}

/// By hand, so that pending entries (patient data) never reach a log line.
impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("segment", &self.seg_path)
            .field("segment_len", &self.seg_len)
            .field("committed_seq", &self.committed_seq)
            .field("next_seq", &self.next_seq)
            .field("pending_bytes", &self.buf.len())
            .finish_non_exhaustive()
    }
}

/// The buffer is kept between commits, but not at the size of a rare huge one.
const KEEP_BUF_BYTES: usize = 4 << 20;

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, scanning every segment.
    ///
    /// A torn tail of the last segment (invalid bytes with nothing valid after
    /// them) is cut off, synced, and reported in [`Recovery::truncated`]; so is
    /// a last segment shorter than its header. Intact entries a crash left
    /// without a commit record are kept and committed. Damage (invalid bytes
    /// followed by a valid record, or committed seqs that are missing) is
    /// handled per [`JournalOptions::on_damage`]; every intact entry is kept.
    ///
    /// # Errors
    /// [`JournalError::Damaged`] for damage under [`DamagePolicy::Refuse`]
    /// (nothing is changed); [`JournalError::Corrupt`] for a segment of an
    /// unknown format version; [`JournalError::Io`] if files cannot be read or
    /// repaired.
    pub fn open(dir: &Path, opts: JournalOptions) -> Result<(Journal, Recovery), JournalError> {
        let (o, recovery) = recovery::recover(dir, opts.on_damage)?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            opts,
            file: o.file,
            seg_path: o.seg_path,
            seg_len: o.seg_len,
            buf: Vec::new(),
            pending_first: None,
            next_seq: o.next_seq,
            committed_seq: o.committed_seq,
            tail_dirty: false,
            dir_dirty: false,
            record_unsynced: false,
        };
        Ok((journal, recovery))
    }

    /// The seq the next `append` will return.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The highest seq made durable by a successful [`Journal::commit`] (or
    /// found in the journal at open).
    pub fn committed_seq(&self) -> u64 {
        self.committed_seq
    }

    /// Encodes `e` into the pending buffer and returns its seq. Not durable
    /// until [`Journal::commit`] returns `Ok`.
    ///
    /// # Errors
    /// [`JournalError::TooLarge`] if the entry exceeds the format's limit; the
    /// journal is unchanged and the seq is not used.
    pub fn append(&mut self, e: &EntryRef<'_>) -> Result<u64, JournalError> {
        entry::encode(self.next_seq, e, &mut self.buf)?;
        self.pending_first.get_or_insert(self.next_seq);
        self.next_seq += 1;
        Ok(self.next_seq - 1)
    }

    /// Appends `e` with the given `seq` (a follower copying another node's
    /// journal: the stream's sequence is the journal seq). Seqs between
    /// `next_seq` and `seq` are burned, as a failed commit burns them (format
    /// 2 allows gaps). Not durable until [`Journal::commit`] returns `Ok`.
    ///
    /// # Errors
    /// [`JournalError::AlreadyHeld`] if `seq` is below `next_seq` (the caller
    /// skips the entry); [`JournalError::TooLarge`] as for `append`. Either
    /// way the journal is unchanged.
    pub fn append_at(&mut self, seq: u64, e: &EntryRef<'_>) -> Result<u64, JournalError> {
        if seq < self.next_seq {
            return Err(JournalError::AlreadyHeld { seq, next_seq: self.next_seq });
        }
        entry::encode(seq, e, &mut self.buf)?;
        self.pending_first.get_or_insert(seq);
        self.next_seq = seq + 1;
        Ok(seq)
    }

    /// Burns every seq up to `seq` without writing anything: the follower of a
    /// stream whose last message stands for a burned seq ends where the stream
    /// ends, so a takeover continues after it. A reopened journal forgets the
    /// burn (it continues after its last entry), as after a failed commit.
    pub fn burn_through(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq + 1);
    }

    /// After a failed commit, lets a follower append the same entries again
    /// at the same seqs: they are the stream's, not this node's to burn.
    /// Nothing is pending then (the failed commit forgot it), and `next_seq`
    /// never goes back to or below a committed seq.
    pub fn rewind_after_failed_commit(&mut self, next_seq: u64) {
        if self.pending_first.is_none() {
            self.next_seq = next_seq.max(self.committed_seq + 1);
        }
    }

    /// Makes every entry appended since the last commit durable: one write and
    /// one `fdatasync`, after rotating to a new segment if the current one
    /// would grow past [`JournalOptions::segment_bytes`]; then writes the
    /// commit record that lets readers see them.
    ///
    /// # Errors
    /// [`JournalError::Io`] with the OS error. The pending entries are then
    /// NOT durable and no reader ever sees them: they are forgotten, the
    /// segment is cut back (best effort, retried before the next write), and
    /// their seqs are burned, never reused. The caller should answer AR (the
    /// sender will retry). The journal stays usable.
    pub fn commit(&mut self) -> Result<(), JournalError> {
        let Some(first) = self.pending_first.take() else {
            return Ok(());
        };
        let result = self.write_pending(first);
        match &result {
            Ok(()) => {
                let prev = std::mem::replace(&mut self.committed_seq, self.next_seq - 1);
                self.write_commit_record(Commit { first, last: self.next_seq - 1, prev });
            }
            // Best effort: if the cut fails too, the next commit retries it first.
            Err(_) => self.tail_dirty = self.file.set_len(self.seg_len).is_err(),
        }
        self.buf.clear();
        if self.buf.capacity() > KEEP_BUF_BYTES {
            self.buf.shrink_to(KEEP_BUF_BYTES);
        }
        result
    }

    fn write_pending(&mut self, first: u64) -> Result<(), JournalError> {
        if self.tail_dirty {
            self.file.set_len(self.seg_len).map_err(JournalError::io("truncate", &self.seg_path))?;
            self.tail_dirty = false;
        }
        let len = self.buf.len() as u64;
        if self.seg_len > HEADER_LEN && self.seg_len.saturating_add(len) > self.opts.segment_bytes {
            self.rotate(first)?;
        }
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        let (path, faults) = (&self.seg_path, &self.opts.faults);
        faults.check("journal.write").map_err(JournalError::io("write", path))?;
        self.file.write_all_at(&self.buf, self.seg_len).map_err(JournalError::io("write", path))?;
        faults.check("journal.fdatasync").map_err(JournalError::io("fdatasync", path))?;
        self.file.sync_data().map_err(JournalError::io("fdatasync", path))?;
        self.record_unsynced = false;
        self.seg_len += len;
        Ok(())
    }

    /// The commit record: written, not synced. If it fails the entries are
    /// still durable (and the commit succeeded); readers see them once a later
    /// commit record covers them, or at the next open.
    fn write_commit_record(&mut self, c: Commit) {
        let bytes = c.encode();
        let written = self.opts.faults.check("journal.commit_record");
        match written.and_then(|()| self.file.write_all_at(&bytes, self.seg_len)) {
            Ok(()) => {
                self.seg_len += COMMIT_LEN as u64;
                self.record_unsynced = true;
            }
            Err(error) => {
                tracing::warn!(segment = %self.seg_path.display(), %error, first_seq = c.first, last_seq = c.last,
                    "journal: could not write a commit record; the entries are durable and readers see them after the next commit");
                self.tail_dirty = self.file.set_len(self.seg_len).is_err();
            }
        }
    }

    /// Switches to a new, empty segment whose first entry will be `first_seq`.
    fn rotate(&mut self, first_seq: u64) -> Result<(), JournalError> {
        if self.record_unsynced {
            // The old segment's last commit record must not depend on a sync
            // of the new segment.
            self.file.sync_data().map_err(JournalError::io("fdatasync", &self.seg_path))?;
            self.record_unsynced = false;
        }
        let (file, path) = create_segment(&self.dir, first_seq)?;
        // The new segment is in place: adopt it even if the directory sync
        // fails, so the old segment never receives seqs the new name claims.
        self.file = file;
        self.seg_path = path;
        self.seg_len = HEADER_LEN;
        self.tail_dirty = false;
        self.dir_dirty = true;
        Ok(())
    }
}

pub(super) fn open_rw(path: &Path) -> Result<File, JournalError> {
    OpenOptions::new().read(true).write(true).open(path).map_err(JournalError::io("open", path))
}

/// Creates `<first_seq>.seg` with its header via a synced temporary file and a
/// rename. The caller syncs the directory.
pub(super) fn create_segment(dir: &Path, first_seq: u64) -> Result<(File, PathBuf), JournalError> {
    let path = segment_path(dir, first_seq);
    let tmp = path.with_extension("seg.tmp");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(JournalError::io("create", &tmp))?;
    file.write_all(&segment_header()).map_err(JournalError::io("write", &tmp))?;
    file.sync_all().map_err(JournalError::io("fsync", &tmp))?;
    fs::rename(&tmp, &path).map_err(JournalError::io("rename", &tmp))?;
    Ok((file, path))
}
