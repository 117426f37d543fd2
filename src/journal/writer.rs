//! [`Journal`], the single writer: recovery on open, group commit, rotation.
//!
//! Durability rule: an entry is durable once `commit` has returned `Ok`, and
//! not before. `commit` writes everything appended since the last commit with
//! one `write` and one `fdatasync`, so N messages that arrived together share
//! one sync. New segments are created as `<name>.seg.tmp`, given their header,
//! synced, renamed into place and the directory synced, so a crash during
//! rotation leaves either no new segment or a valid empty one.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::entry::{self, EntryRef};
use super::reader::{gap_error, ScanError, SegmentScan};
use super::{list_segments, segment_header, segment_path, JournalError, HEADER_LEN};

/// Tuning for [`Journal::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalOptions {
    /// Start a new segment before a commit would take the current one past
    /// this size. A segment is larger only when one commit alone is larger.
    /// Default 64 MiB.
    pub segment_bytes: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions { segment_bytes: 64 << 20 }
    }
}

/// What [`Journal::open`] found and repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files in the journal after recovery.
    pub segments: usize,
    /// Complete entries found.
    pub entries: u64,
    /// The last complete entry's seq, 0 when there is none.
    pub last_seq: u64,
    /// The torn tail that was cut off, if any. Log it as a warning: these
    /// bytes were never acknowledged as durable, so nothing acknowledged is lost.
    pub truncated: Option<Truncation>,
}

/// A torn tail removed by [`Journal::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The segment that was cut (or removed, when `offset` is 0).
    pub segment: PathBuf,
    /// Its new length.
    pub offset: u64,
    /// How many bytes were dropped.
    pub bytes_dropped: u64,
    /// Why the first dropped entry was rejected.
    pub reason: String,
}

/// The journal writer. One per directory: it does not lock the directory.
pub struct Journal {
    dir: PathBuf,
    opts: JournalOptions,
    /// The current (last) segment, opened read-write.
    file: File,
    seg_path: PathBuf,
    /// Committed length of the current segment: where the next commit writes.
    seg_len: u64,
    /// Entries appended since the last commit, encoded. Reused across commits.
    buf: Vec<u8>,
    next_seq: u64,
    committed_seq: u64,
    /// A failed commit could not truncate its partial write; retry first.
    tail_dirty: bool,
    /// A new segment's directory entry has not been synced yet.
    dir_dirty: bool,
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
    /// A torn tail in the last segment (short entry, bad CRC, absurd length,
    /// seq that does not follow) is cut off, synced, and reported in
    /// [`Recovery::truncated`]; so is a last segment shorter than its header.
    ///
    /// # Errors
    /// [`JournalError::Corrupt`] for damage anywhere else: the engine must not
    /// start. [`JournalError::Io`] if files cannot be read or repaired.
    pub fn open(dir: &Path, opts: JournalOptions) -> Result<(Journal, Recovery), JournalError> {
        fs::create_dir_all(dir).map_err(JournalError::io("create", dir))?;
        let mut segments = list_segments(dir)?;
        let mut truncated = remove_short_last_segment(dir, &mut segments)?;
        if segments.is_empty() {
            let first_seq = truncated.as_ref().map_or(Ok(1), |t| first_seq_of(&t.segment))?;
            let (file, path) = create_segment(dir, first_seq)?;
            drop(file);
            sync_dir(dir)?;
            segments.push((first_seq, path));
        }
        let (mut entries, mut last_seq, mut next_seq, mut end) = (0, 0, 1, None);
        for (i, (first_seq, path)) in segments.iter().enumerate() {
            if i > 0 && *first_seq != next_seq {
                return Err(gap_error(path, *first_seq, next_seq));
            }
            let scanned = scan_segment(path, *first_seq, i + 1 == segments.len())?;
            entries += scanned.entries;
            last_seq = scanned.last_seq.unwrap_or(last_seq);
            next_seq = scanned.next_seq;
            end = Some(scanned);
        }
        // `segments` is non-empty here, so the loop ran at least once.
        let end = end.expect("at least one segment");
        let (seg_path, file) = (end.path.clone(), open_rw(&end.path)?);
        if let Some((offset, reason)) = end.torn {
            let cut = cut_tail(&file, &seg_path, offset, reason)?;
            truncated = Some(match truncated {
                Some(removed) => Truncation {
                    reason: format!("{}; also removed {}: {}", cut.reason, removed.segment.display(), removed.reason),
                    ..cut
                },
                None => cut,
            });
        }
        let recovery = Recovery { segments: segments.len(), entries, last_seq, truncated };
        let journal = Journal {
            dir: dir.to_path_buf(),
            opts,
            file,
            seg_path,
            seg_len: end.offset,
            buf: Vec::new(),
            next_seq,
            committed_seq: next_seq - 1,
            tail_dirty: false,
            dir_dirty: false,
        };
        Ok((journal, recovery))
    }

    /// The seq the next `append` will return.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The highest seq made durable by a successful [`Journal::commit`].
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
        self.next_seq += 1;
        Ok(self.next_seq - 1)
    }

    /// Makes every entry appended since the last commit durable: one write and
    /// one `fdatasync`, after rotating to a new segment if the current one
    /// would grow past [`JournalOptions::segment_bytes`].
    ///
    /// # Errors
    /// [`JournalError::Io`]. The pending entries are then NOT durable: they
    /// are forgotten, the segment is cut back to its committed length (best
    /// effort, retried on the next commit), and `next_seq` is reset, so the
    /// caller should answer AR and the sender will retry. The journal stays
    /// usable.
    pub fn commit(&mut self) -> Result<(), JournalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.write_pending();
        match &result {
            Ok(()) => self.committed_seq = self.next_seq - 1,
            Err(_) => self.roll_back(),
        }
        self.buf.clear();
        if self.buf.capacity() > KEEP_BUF_BYTES {
            self.buf.shrink_to(KEEP_BUF_BYTES);
        }
        result
    }

    fn write_pending(&mut self) -> Result<(), JournalError> {
        let path = &self.seg_path;
        if self.tail_dirty {
            self.file.set_len(self.seg_len).map_err(JournalError::io("truncate", path))?;
            self.tail_dirty = false;
        }
        let len = self.buf.len() as u64;
        if self.seg_len > HEADER_LEN && self.seg_len.saturating_add(len) > self.opts.segment_bytes {
            self.rotate(self.committed_seq + 1)?;
        }
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        let path = &self.seg_path;
        self.file.seek(SeekFrom::Start(self.seg_len)).map_err(JournalError::io("seek", path))?;
        self.file.write_all(&self.buf).map_err(JournalError::io("write", path))?;
        self.file.sync_data().map_err(JournalError::io("fdatasync", path))?;
        self.seg_len += len;
        Ok(())
    }

    /// Forgets the pending entries after a failed commit.
    fn roll_back(&mut self) {
        self.next_seq = self.committed_seq + 1;
        // Best effort: if this fails too, the next commit retries it first.
        self.tail_dirty = self.file.set_len(self.seg_len).is_err();
    }

    /// Switches to a new, empty segment whose first entry will be `first_seq`.
    fn rotate(&mut self, first_seq: u64) -> Result<(), JournalError> {
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

/// What recovery learnt from one segment.
struct ScannedSegment {
    path: PathBuf,
    entries: u64,
    last_seq: Option<u64>,
    next_seq: u64,
    /// End of the valid entries.
    offset: u64,
    /// Where and why the torn tail starts (last segment only).
    torn: Option<(u64, String)>,
}

fn scan_segment(path: &Path, first_seq: u64, is_last: bool) -> Result<ScannedSegment, JournalError> {
    let mut scan = SegmentScan::open(path, first_seq).map_err(|e| e.into_journal_error(path))?;
    let (mut entries, mut last_seq) = (0, None);
    let torn = loop {
        match scan.next_entry() {
            Ok(Some((seq, _))) => (entries, last_seq) = (entries + 1, Some(seq)),
            Ok(None) => break None,
            Err(ScanError::Torn { offset, reason }) if is_last => break Some((offset, reason)),
            Err(e) => return Err(e.into_journal_error(path)),
        }
    };
    let (next_seq, offset) = (scan.expect_seq, scan.offset);
    Ok(ScannedSegment { path: path.to_path_buf(), entries, last_seq, next_seq, offset, torn })
}

/// Removes the last segment if it is shorter than a header (a crash while it
/// was being created by an older writer; this one renames complete files).
fn remove_short_last_segment(
    dir: &Path,
    segments: &mut Vec<(u64, PathBuf)>,
) -> Result<Option<Truncation>, JournalError> {
    let Some((_, path)) = segments.last() else {
        return Ok(None);
    };
    let len = fs::metadata(path).map_err(JournalError::io("stat", path))?.len();
    if len >= HEADER_LEN {
        return Ok(None);
    }
    fs::remove_file(path).map_err(JournalError::io("remove", path))?;
    sync_dir(dir)?;
    let reason = format!("segment was {len} bytes, shorter than its header (crash while creating it); removed");
    let truncation = Truncation { segment: path.clone(), offset: 0, bytes_dropped: len, reason };
    segments.pop();
    Ok(Some(truncation))
}

fn first_seq_of(segment: &Path) -> Result<u64, JournalError> {
    let name = segment.file_name().and_then(|n| n.to_str());
    name.and_then(super::parse_segment_name).ok_or_else(|| JournalError::Corrupt {
        segment: segment.to_path_buf(),
        offset: 0,
        reason: "not a segment file name".to_owned(),
    })
}

/// Cuts the last segment at `offset` and syncs it.
fn cut_tail(file: &File, path: &Path, offset: u64, reason: String) -> Result<Truncation, JournalError> {
    let len = file.metadata().map_err(JournalError::io("stat", path))?.len();
    file.set_len(offset).map_err(JournalError::io("truncate", path))?;
    file.sync_all().map_err(JournalError::io("fsync", path))?;
    Ok(Truncation { segment: path.to_path_buf(), offset, bytes_dropped: len - offset, reason })
}

fn open_rw(path: &Path) -> Result<File, JournalError> {
    OpenOptions::new().read(true).write(true).open(path).map_err(JournalError::io("open", path))
}

/// Creates `<first_seq>.seg` with its header via a synced temporary file and a
/// rename. The caller syncs the directory.
fn create_segment(dir: &Path, first_seq: u64) -> Result<(File, PathBuf), JournalError> {
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

/// Makes file creations, renames and removals in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    let d = File::open(dir).map_err(JournalError::io("open", dir))?;
    d.sync_all().map_err(JournalError::io("fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::super::{Entry, JournalReader};
    use super::*;

    fn entry<'a>(control_id: &'a str, raw: &'a [u8]) -> EntryRef<'a> {
        EntryRef {
            received_at_ms: 1_700_000_000_000,
            peer: "127.0.0.1:4000",
            sending_app: "PAS",
            sending_facility: "RGT",
            control_id,
            message_type: "ADT^A01",
            ack_code: "AA",
            ack: b"MSA|AA\r",
            raw,
        }
    }

    fn open(dir: &Path) -> (Journal, Recovery) {
        Journal::open(dir, JournalOptions::default()).unwrap()
    }

    fn all(dir: &Path) -> Vec<Entry> {
        JournalReader::open(dir).unwrap().iter_from(0).collect::<Result<_, _>>().unwrap()
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let mut segments = list_segments(dir).unwrap();
        assert_eq!(segments.len(), 1);
        segments.pop().unwrap().1
    }

    /// Commits `n` entries one per commit; returns the segment length before
    /// the last one.
    fn write_n(dir: &Path, n: u64) -> u64 {
        let (mut j, _) = open(dir);
        let mut before_last = 0;
        for i in 1..=n {
            before_last = j.seg_len;
            j.append(&entry(&format!("C{i}"), format!("MSH|{i}").as_bytes())).unwrap();
            j.commit().unwrap();
        }
        before_last
    }

    #[test]
    fn roundtrip_many_entries_with_empty_strings_and_binary_raw() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, rec) = open(dir.path());
        assert_eq!((rec.segments, rec.entries, rec.last_seq, rec.truncated), (1, 0, 0, None));
        let raws: Vec<Vec<u8>> = (0..300u32).map(|i| (0..i).map(|b| (b * 7) as u8).collect()).collect();
        let mut expected = Vec::new();
        for (i, raw) in raws.iter().enumerate() {
            let e = if i % 2 == 0 {
                entry("", raw)
            } else {
                EntryRef { peer: "", ack_code: "", ack: b"", ..entry("X", raw) }
            };
            let seq = j.append(&e).unwrap();
            assert_eq!(seq, i as u64 + 1);
            expected.push(Entry::from_ref(seq, &e));
            if i % 7 == 0 {
                j.commit().unwrap();
            }
        }
        j.commit().unwrap();
        assert_eq!(j.committed_seq(), 300);
        assert_eq!(all(dir.path()), expected);
    }

    #[test]
    fn reopen_sees_committed_entries_and_continues_seqs() {
        let dir = tempfile::tempdir().unwrap();
        write_n(dir.path(), 5);
        let (mut j, rec) = open(dir.path());
        assert_eq!((rec.entries, rec.last_seq, rec.truncated), (5, 5, None));
        assert_eq!((j.next_seq(), j.committed_seq()), (6, 5));
        assert_eq!(j.append(&entry("C6", b"six")).unwrap(), 6);
        j.commit().unwrap();
        drop(j);
        let seqs: Vec<u64> = all(dir.path()).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn uncommitted_entries_are_gone_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = open(dir.path());
        j.append(&entry("C1", b"one")).unwrap();
        j.commit().unwrap();
        j.append(&entry("C2", b"two")).unwrap();
        j.append(&entry("C3", b"three")).unwrap();
        drop(j); // kill -9 before commit: the buffer never reached the file
        let (mut j, rec) = open(dir.path());
        assert_eq!((rec.entries, rec.last_seq, rec.truncated), (1, 1, None));
        assert_eq!(j.append(&entry("C2", b"two again")).unwrap(), 2);
    }

    #[test]
    fn every_cut_inside_the_last_entry_is_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let before_last = write_n(dir.path(), 4);
        let bytes = fs::read(only_segment(dir.path())).unwrap();
        for cut in before_last..bytes.len() as u64 {
            let crash = tempfile::tempdir().unwrap();
            let seg = segment_path(crash.path(), 1);
            fs::write(&seg, &bytes[..cut as usize]).unwrap();
            let (mut j, rec) = open(crash.path());
            assert_eq!((rec.entries, rec.last_seq), (3, 3), "cut at {cut}");
            match rec.truncated {
                None => assert_eq!(cut, before_last),
                Some(t) => {
                    assert_eq!((t.segment, t.offset, t.bytes_dropped), (seg.clone(), before_last, cut - before_last));
                }
            }
            assert_eq!(fs::metadata(&seg).unwrap().len(), before_last, "cut at {cut}");
            assert_eq!(j.append(&entry("C4", b"retry")).unwrap(), 4);
            j.commit().unwrap();
            drop(j);
            let back = all(crash.path());
            assert_eq!((back.len(), &back[3].raw[..]), (4, &b"retry"[..]), "cut at {cut}");
        }
    }

    #[test]
    fn flipped_byte_in_the_last_entry_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let before_last = write_n(dir.path(), 3);
        let seg = only_segment(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        *bytes.last_mut().unwrap() ^= 0x40;
        fs::write(&seg, &bytes).unwrap();
        let (j, rec) = open(dir.path());
        let t = rec.truncated.unwrap();
        assert_eq!((t.offset, rec.last_seq, j.next_seq()), (before_last, 2, 3));
        assert!(t.reason.contains("CRC"), "{}", t.reason);
    }

    fn rotated(dir: &Path, n: u64) -> Vec<(u64, PathBuf)> {
        let (mut j, _) = Journal::open(dir, JournalOptions { segment_bytes: 150 }).unwrap();
        for i in 1..=n {
            j.append(&entry(&format!("C{i}"), b"MSH|^~\\&|")).unwrap();
            j.commit().unwrap();
        }
        list_segments(dir).unwrap()
    }

    #[test]
    fn rotation_across_segments_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let segments = rotated(dir.path(), 10);
        assert!(segments.len() >= 3, "{segments:?}");
        for (first, path) in &segments {
            let len = fs::metadata(path).unwrap().len();
            assert!(len <= 150, "{} is {len} bytes", path.display());
            assert_eq!(JournalReader::open(dir.path()).unwrap().get(*first).unwrap().unwrap().seq, *first);
        }
        let (mut j, rec) = Journal::open(dir.path(), JournalOptions { segment_bytes: 150 }).unwrap();
        assert_eq!((rec.segments, rec.entries, rec.last_seq), (segments.len(), 10, 10));
        j.append(&entry("C11", b"x")).unwrap();
        j.commit().unwrap();
        assert_eq!(all(dir.path()).len(), 11);
    }

    #[test]
    fn flipped_byte_in_an_earlier_segment_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let segments = rotated(dir.path(), 10);
        let (_, first) = &segments[0];
        let mut bytes = fs::read(first).unwrap();
        bytes[HEADER_LEN as usize + 20] ^= 1;
        fs::write(first, &bytes).unwrap();
        let err = Journal::open(dir.path(), JournalOptions::default()).unwrap_err();
        match err {
            JournalError::Corrupt { segment, offset, .. } => assert_eq!((&segment, offset), (first, HEADER_LEN)),
            other => panic!("{other}"),
        }
        assert_eq!(fs::read(first).unwrap(), bytes, "nothing was modified");
        let reader_err = JournalReader::open(dir.path()).unwrap().iter_from(0).find_map(Result::err);
        assert!(matches!(reader_err, Some(JournalError::Corrupt { .. })));
    }

    #[test]
    fn a_missing_segment_is_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let segments = rotated(dir.path(), 10);
        fs::remove_file(&segments[1].1).unwrap();
        let err = Journal::open(dir.path(), JournalOptions::default()).unwrap_err();
        assert!(err.to_string().contains("previous segment"), "{err}");
    }

    #[test]
    fn short_last_segment_from_a_crashed_rotation_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        write_n(dir.path(), 2);
        let partial = segment_path(dir.path(), 3);
        fs::write(&partial, b"RHJ").unwrap();
        let (mut j, rec) = open(dir.path());
        let t = rec.truncated.unwrap();
        assert_eq!((t.segment, t.offset, t.bytes_dropped), (partial.clone(), 0, 3));
        assert!(!partial.exists());
        assert_eq!((rec.segments, j.append(&entry("C3", b"3")).unwrap()), (1, 3));
    }

    #[test]
    fn bad_header_on_a_full_length_last_segment_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        write_n(dir.path(), 1);
        let seg = only_segment(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        bytes[0] = b'X';
        fs::write(&seg, &bytes).unwrap();
        let err = Journal::open(dir.path(), JournalOptions::default()).unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { offset: 0, .. }), "{err}");
    }

    #[test]
    fn failed_commit_forgets_pending_entries_and_stays_usable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = open(dir.path());
        j.append(&entry("C1", b"one")).unwrap();
        j.commit().unwrap();
        let committed_len = j.seg_len;
        // A read-only handle makes the write (and the truncate) fail, like EIO.
        let rw = std::mem::replace(&mut j.file, File::open(&j.seg_path).unwrap());
        j.append(&entry("C2", b"two")).unwrap();
        let err = j.commit().unwrap_err();
        assert!(matches!(err, JournalError::Io { op: "write", .. }), "{err}");
        assert_eq!((j.next_seq(), j.committed_seq()), (2, 1));
        j.file = rw;
        assert_eq!(j.append(&entry("C2", b"two, retried")).unwrap(), 2);
        j.commit().unwrap();
        assert!(j.seg_len > committed_len);
        drop(j);
        let raws: Vec<Vec<u8>> = all(dir.path()).into_iter().map(|e| e.raw).collect();
        assert_eq!(raws, [b"one".to_vec(), b"two, retried".to_vec()]);
    }

    #[test]
    fn oversize_append_leaves_the_journal_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = open(dir.path());
        let raw = vec![0u8; entry::MAX_BODY_LEN as usize];
        assert!(matches!(j.append(&entry("C1", &raw)), Err(JournalError::TooLarge { .. })));
        assert_eq!(j.append(&entry("C1", b"ok")).unwrap(), 1);
    }
}
