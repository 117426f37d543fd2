//! [`JournalReader`]: read-only access to the journal, safe beside a live
//! writer, that shows only committed entries and skips damage.
//!
//! Visibility: in a version 2 last segment an entry is shown once a commit
//! record after it covers its seq (the writer writes that record after the
//! entry's `fdatasync`). Entries of earlier segments are all committed: the
//! writer starts a segment only after the previous one's last commit, and
//! recovery commits what a crash left uncovered. Version 1 segments have no
//! commit records; their intact entries are shown as they are.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::damage::{Damage, Tracker};
use super::entry::Entry;
use super::recovery::unsupported;
use super::scan::{self, Item, SegmentScan};
use super::{list_segments, JournalError};

/// Read-only access to a journal directory, safe beside a running writer.
#[derive(Debug, Clone)]
pub struct JournalReader {
    dir: PathBuf,
}

impl JournalReader {
    /// Opens the journal in `dir` without modifying anything.
    ///
    /// # Errors
    /// [`JournalError::Io`] if `dir` cannot be listed.
    pub fn open(dir: &Path) -> Result<JournalReader, JournalError> {
        list_segments(dir)?;
        Ok(JournalReader { dir: dir.to_path_buf() })
    }

    /// Committed entries with `seq >= since_seq`, in order. The segment list
    /// is taken when this is called; segments created later are not visited.
    ///
    /// Damaged ranges are skipped (the scan resynchronises at the next valid
    /// record) and collected in [`Entries::damage`], so a caller learns of
    /// them after the loop without the loop stopping. The torn or in-progress
    /// tail of the last segment ends the iteration quietly
    /// ([`Entries::torn_tail`]). An `Err` (after which the iteration stops)
    /// is only an I/O error or a segment of an unknown format version.
    pub fn iter_from(&self, since_seq: u64) -> Entries {
        let (segments, pending) = match list_segments(&self.dir) {
            Ok(segments) => (segments, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        // Segment names are lower bounds of their seqs: start in the last one
        // whose name is <= since_seq.
        let start = segments.iter().rposition(|(first, _)| *first <= since_seq).unwrap_or(0);
        Entries::new(segments, start, since_seq, pending)
    }

    /// [`JournalReader::iter_from`], starting where an earlier iteration's
    /// [`Entries::resume_point`] says when that point is at or before
    /// `since_seq`: a reader that follows the journal's tail (the cluster
    /// publisher) then reads only what was appended since, instead of the
    /// whole last segment each time. Falls back to `iter_from` otherwise.
    pub fn iter_resuming(&self, since_seq: u64, resume: Option<Resume>) -> Entries {
        let Some(r) = resume.filter(|r| r.next_seq <= since_seq) else {
            return self.iter_from(since_seq);
        };
        let segments = match list_segments(&self.dir) {
            Ok(segments) => segments,
            Err(e) => return Entries::new(Vec::new(), 0, since_seq, Some(e)),
        };
        let Some(index) = segments.iter().position(|(first, _)| *first == r.segment_first) else {
            // Retired or renamed since: read from the start of the right segment.
            return self.iter_from(since_seq);
        };
        let mut entries = Entries::new(segments, index + 1, since_seq, None);
        let (first, path) = &entries.segments[index];
        match SegmentScan::open_at(path, *first, r.offset, r.next_seq) {
            Ok(scan) => {
                entries.scan = Some((index, scan));
                entries
            }
            Err(_) => self.iter_from(since_seq),
        }
    }

    /// The committed entry with this seq, if it is in the journal.
    ///
    /// # Errors
    /// As for [`JournalReader::iter_from`].
    pub fn get(&self, seq: u64) -> Result<Option<Entry>, JournalError> {
        let segments = list_segments(&self.dir)?;
        let Some(start) = segments.iter().rposition(|(first, _)| *first <= seq) else {
            return Ok(None);
        };
        match Entries::new(segments, start, seq, None).next() {
            Some(Ok(e)) if e.seq == seq => Ok(Some(e)),
            Some(Err(e)) => Err(e),
            _ => Ok(None),
        }
    }
}

/// Where a later iteration can start: just after a commit record, with the
/// seq the next entry there will have at least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    segment_first: u64,
    offset: u64,
    next_seq: u64,
}

/// The iterator of [`JournalReader::iter_from`].
pub struct Entries {
    /// After the last commit record read in a version 2 segment.
    resume: Option<Resume>,
    segments: Vec<(u64, PathBuf)>,
    next_segment: usize,
    /// The open segment's index and scanner.
    scan: Option<(usize, SegmentScan)>,
    since_seq: u64,
    tracker: Tracker,
    /// Entries of the last segment waiting for a commit record.
    held: VecDeque<Entry>,
    ready: VecDeque<Entry>,
    /// After a version 1 segment: the seq its successor must start at.
    v1_next: Option<u64>,
    torn: Option<Damage>,
    pending: Option<JournalError>,
    done: bool,
}

impl Entries {
    fn new(segments: Vec<(u64, PathBuf)>, start: usize, since_seq: u64, pending: Option<JournalError>) -> Entries {
        Entries {
            resume: None,
            segments,
            next_segment: start,
            scan: None,
            since_seq,
            tracker: Tracker::default(),
            held: VecDeque::new(),
            ready: VecDeque::new(),
            v1_next: None,
            torn: None,
            pending,
            done: false,
        }
    }

    /// The damaged ranges skipped so far, in journal order (their
    /// `seq_after` is filled in once the next intact entry has been read).
    pub fn damage(&self) -> &[Damage] {
        &self.tracker.damage
    }

    /// Invalid bytes that end the last segment, if the scan reached them: a
    /// write in progress, or a torn tail a crash left (never acknowledged; the
    /// writer cuts it at its next start). Not damage.
    pub fn torn_tail(&self) -> Option<&Damage> {
        self.torn.as_ref()
    }

    /// Where to resume after the entries yielded so far (see
    /// [`JournalReader::iter_resuming`]); `None` before any commit record.
    /// Only valid once the caller has consumed every entry yielded before it
    /// stopped: take it after the loop, and resume from the next seq wanted.
    pub fn resume_point(&self) -> Option<Resume> {
        self.resume
    }

    fn fail(&mut self, e: JournalError) -> Option<Result<Entry, JournalError>> {
        self.done = true;
        Some(Err(e))
    }

    /// Opens the next segment; false when there is none.
    fn open_next(&mut self) -> Result<bool, JournalError> {
        let Some((first, path)) = self.segments.get(self.next_segment) else {
            return Ok(false);
        };
        let (index, is_last) = (self.next_segment, self.next_segment + 1 == self.segments.len());
        self.next_segment += 1;
        if let Some(expected) = self.v1_next.take().filter(|e| e != first) {
            let reason = format!("segment starts at seq {first} but the previous segment ends before {expected}");
            self.tracker.missing(path, reason);
        }
        match SegmentScan::open(path, *first) {
            Ok(scan) => {
                self.scan = Some((index, scan));
                Ok(true)
            }
            // The writer is creating this segment right now.
            Err(scan::OpenError::Short(_)) if is_last => Ok(false),
            Err(scan::OpenError::Short(len)) => {
                self.tracker.invalid(path, 0, len, format!("segment is {len} bytes, shorter than its header"));
                Ok(true)
            }
            Err(scan::OpenError::Unsupported(v)) => Err(unsupported(path, v)),
            Err(scan::OpenError::Io(e)) => Err(JournalError::io("read", path)(e)),
        }
    }

    /// Reads one item of the open segment: an entry to yield now, or into
    /// `held`/`ready`/the tracker.
    fn step(&mut self) -> Result<Option<Entry>, JournalError> {
        let Some((index, scan)) = &mut self.scan else {
            return Ok(None);
        };
        let (first, path) = &self.segments[*index];
        let is_last = *index + 1 == self.segments.len();
        let hold = is_last && scan.version == 2;
        let version = scan.version;
        match scan.next_item().map_err(JournalError::io("read", path))? {
            None => {
                if version == 1 {
                    self.v1_next = Some(self.tracker.last_seq.map_or(*first, |s| s.max(*first - 1) + 1));
                }
                // Entries no commit record covers were never committed.
                self.held.clear();
                self.scan = None;
            }
            Some(Item::Entry { seq, entry, .. }) => {
                self.tracker.entry(seq);
                if seq >= self.since_seq {
                    let e = Entry::from_ref(seq, version, &entry);
                    if !hold {
                        return Ok(Some(e));
                    }
                    self.held.push_back(e);
                }
            }
            Some(Item::Commit { offset, commit }) => {
                self.tracker.commit(path, offset, &commit);
                if version == 2 {
                    let next_seq = commit.last + 1;
                    let at = scan.offset();
                    self.resume = Some(Resume { segment_first: *first, offset: at, next_seq });
                }
                while self.held.front().is_some_and(|e| e.seq <= commit.last) {
                    self.ready.extend(self.held.pop_front());
                }
            }
            Some(Item::Invalid { offset, len, reason, trailing: true }) if is_last => {
                let (seq_before, quarantined) = (self.tracker.last_seq, None);
                let segment = path.clone();
                self.torn = Some(Damage { segment, offset, len, seq_before, seq_after: None, reason, quarantined });
            }
            Some(Item::Invalid { offset, len, reason, .. }) => self.tracker.invalid(path, offset, len, reason),
        }
        Ok(None)
    }
}

impl Iterator for Entries {
    type Item = Result<Entry, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending.take() {
            return self.fail(e);
        }
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            let result = if self.scan.is_none() {
                self.open_next().map(|more| {
                    self.done = !more;
                    None
                })
            } else {
                self.step()
            };
            match result {
                Ok(Some(e)) => return Some(Ok(e)),
                Ok(None) => {}
                Err(e) => return self.fail(e),
            }
        }
    }
}
