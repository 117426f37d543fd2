//! Reading segments: the scanner shared with recovery, and [`JournalReader`].
//!
//! The reader opens files read-only and never modifies them, so it can run
//! while a server appends. It tolerates an incomplete tail in the last segment
//! (the writer may be mid-write) and nowhere else.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::entry::{self, Entry, EntryRef, FRAME_HEADER_LEN, MAX_BODY_LEN, MIN_BODY_LEN};
use super::{list_segments, segment_header, JournalError, FORMAT_VERSION, HEADER_LEN, MAGIC};

/// Why a scan stopped early.
#[derive(Debug)]
pub(super) enum ScanError {
    /// Reading failed.
    Io(io::Error),
    /// What a crash mid-write leaves behind (short data, bad CRC, absurd length,
    /// a seq that does not follow): tolerated at the tail of the last segment.
    Torn { offset: u64, reason: String },
    /// Never tolerated: a bad header, or a body whose CRC matches but which
    /// does not decode.
    Corrupt { offset: u64, reason: String },
}

impl ScanError {
    pub(super) fn into_journal_error(self, segment: &Path) -> JournalError {
        match self {
            ScanError::Io(source) => JournalError::Io { op: "read", path: segment.to_path_buf(), source },
            ScanError::Torn { offset, reason } | ScanError::Corrupt { offset, reason } => {
                JournalError::Corrupt { segment: segment.to_path_buf(), offset, reason }
            }
        }
    }
}

/// Walks the entries of one segment, checking length, CRC and seq continuity.
pub(super) struct SegmentScan {
    file: BufReader<File>,
    /// Offset of the next entry; after the scan, the end of the valid data.
    pub(super) offset: u64,
    /// The seq the next entry must carry.
    pub(super) expect_seq: u64,
    body: Vec<u8>,
}

impl SegmentScan {
    /// Opens `path` read-only and checks its header. A file shorter than the
    /// header is [`ScanError::Torn`] at offset 0.
    pub(super) fn open(path: &Path, first_seq: u64) -> Result<SegmentScan, ScanError> {
        let file = File::open(path).map_err(ScanError::Io)?;
        let mut file = BufReader::with_capacity(64 * 1024, file);
        let mut header = [0u8; HEADER_LEN as usize];
        let got = read_full(&mut file, &mut header).map_err(ScanError::Io)?;
        if got < header.len() {
            let reason = format!("segment is {got} bytes, shorter than its {HEADER_LEN}-byte header");
            return Err(ScanError::Torn { offset: 0, reason });
        }
        check_header(&header).map_err(|reason| ScanError::Corrupt { offset: 0, reason })?;
        Ok(SegmentScan { file, offset: HEADER_LEN, expect_seq: first_seq, body: Vec::new() })
    }

    /// The next entry, `Ok(None)` at a clean end of file.
    pub(super) fn next_entry(&mut self) -> Result<Option<(u64, EntryRef<'_>)>, ScanError> {
        let offset = self.offset;
        let torn = |reason: String| ScanError::Torn { offset, reason };
        let mut header = [0u8; FRAME_HEADER_LEN];
        match read_full(&mut self.file, &mut header).map_err(ScanError::Io)? {
            0 => return Ok(None),
            n if n < FRAME_HEADER_LEN => return Err(torn(format!("entry header cut short after {n} bytes"))),
            _ => {}
        }
        let (len, crc) = entry::parse_frame_header(&header);
        if !(MIN_BODY_LEN..=MAX_BODY_LEN).contains(&len) {
            return Err(torn(format!("absurd body length {len}")));
        }
        self.body.resize(len as usize, 0);
        let got = read_full(&mut self.file, &mut self.body).map_err(ScanError::Io)?;
        if got < self.body.len() {
            return Err(torn(format!("body cut short: {got} of {len} bytes")));
        }
        if crc32c::crc32c(&self.body) != crc {
            return Err(torn("CRC32C mismatch".to_owned()));
        }
        // MIN_BODY_LEN >= 8, checked above.
        let seq = entry::body_seq(&self.body).unwrap_or(0);
        if seq != self.expect_seq {
            return Err(torn(format!("seq {seq} where {} was expected", self.expect_seq)));
        }
        let (_, entry) = entry::decode(&self.body).map_err(|reason| ScanError::Corrupt { offset, reason })?;
        self.offset += (FRAME_HEADER_LEN + self.body.len()) as u64;
        self.expect_seq += 1;
        Ok(Some((seq, entry)))
    }
}

fn check_header(header: &[u8; HEADER_LEN as usize]) -> Result<(), String> {
    if header[..4] != MAGIC {
        return Err(format!("bad magic {:?}, expected \"RHJL\"", &header[..4]));
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}; this build reads version {FORMAT_VERSION} (upgrade recordhub?)"
        ));
    }
    debug_assert_eq!(segment_header()[..6], header[..6]);
    Ok(())
}

/// Reads until `buf` is full or end of file; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

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

    /// Entries with `seq >= since_seq`, in order. The segment list is taken
    /// when this is called; segments created later are not visited.
    ///
    /// Stops quietly at an incomplete or torn tail of the last segment, which
    /// may be a write in progress. Yields an `Err` (and then stops) for a bad
    /// entry anywhere else, a gap between segments, or an I/O error.
    pub fn iter_from(&self, since_seq: u64) -> impl Iterator<Item = Result<Entry, JournalError>> {
        let (segments, pending) = match list_segments(&self.dir) {
            Ok(segments) => (segments, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        // Start in the last segment whose first seq is <= since_seq.
        let start = segments.iter().rposition(|(first, _)| *first <= since_seq).unwrap_or(0);
        Iter { segments, next_segment: start, scan: None, since_seq, pending, done: false }
    }

    /// The entry with this seq, if it is in the journal.
    ///
    /// # Errors
    /// As for [`JournalReader::iter_from`] when the segment holding `seq` is
    /// unreadable or corrupt before `seq`.
    pub fn get(&self, seq: u64) -> Result<Option<Entry>, JournalError> {
        let segments = list_segments(&self.dir)?;
        let Some(index) = segments.iter().rposition(|(first, _)| *first <= seq) else {
            return Ok(None);
        };
        let (first, path) = &segments[index];
        let is_last = index + 1 == segments.len();
        let mut scan = match SegmentScan::open(path, *first) {
            Ok(scan) => scan,
            Err(ScanError::Torn { .. }) if is_last => return Ok(None),
            Err(e) => return Err(e.into_journal_error(path)),
        };
        loop {
            match scan.next_entry() {
                Ok(Some((s, e))) if s == seq => return Ok(Some(Entry::from_ref(s, &e))),
                Ok(Some(_)) => {}
                Ok(None) => return Ok(None),
                Err(ScanError::Torn { .. }) if is_last => return Ok(None),
                Err(e) => return Err(e.into_journal_error(path)),
            }
        }
    }
}

struct Iter {
    segments: Vec<(u64, PathBuf)>,
    next_segment: usize,
    /// The open segment's index and scanner.
    scan: Option<(usize, SegmentScan)>,
    since_seq: u64,
    pending: Option<JournalError>,
    done: bool,
}

impl Iter {
    fn fail(&mut self, e: JournalError) -> Option<Result<Entry, JournalError>> {
        self.done = true;
        Some(Err(e))
    }
}

impl Iterator for Iter {
    type Item = Result<Entry, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending.take() {
            return self.fail(e);
        }
        while !self.done {
            let Some((index, scan)) = &mut self.scan else {
                let Some((first, path)) = self.segments.get(self.next_segment) else {
                    self.done = true;
                    break;
                };
                let is_last = self.next_segment + 1 == self.segments.len();
                match SegmentScan::open(path, *first) {
                    Ok(scan) => self.scan = Some((self.next_segment, scan)),
                    // The writer is creating this segment right now.
                    Err(ScanError::Torn { .. }) if is_last => self.done = true,
                    Err(e) => {
                        let e = e.into_journal_error(path);
                        return self.fail(e);
                    }
                }
                self.next_segment += 1;
                continue;
            };
            let index = *index;
            let is_last = index + 1 == self.segments.len();
            match scan.next_entry() {
                Ok(Some((seq, e))) if seq >= self.since_seq => return Some(Ok(Entry::from_ref(seq, &e))),
                Ok(Some(_)) => {}
                Ok(None) => {
                    let end_seq = scan.expect_seq;
                    self.scan = None;
                    if let Some((next_first, next_path)) = self.segments.get(index + 1) {
                        if *next_first != end_seq {
                            let e = gap_error(next_path, *next_first, end_seq);
                            return self.fail(e);
                        }
                    }
                }
                Err(ScanError::Torn { .. }) if is_last => self.done = true,
                Err(e) => {
                    let e = e.into_journal_error(&self.segments[index].1);
                    return self.fail(e);
                }
            }
        }
        None
    }
}

/// A segment whose name does not continue the previous segment's seqs.
pub(super) fn gap_error(segment: &Path, first_seq: u64, expected: u64) -> JournalError {
    JournalError::Corrupt {
        segment: segment.to_path_buf(),
        offset: 0,
        reason: format!("segment starts at seq {first_seq} but the previous segment ends before {expected}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Journal, JournalOptions};
    use super::*;

    fn entry(raw: &[u8]) -> EntryRef<'_> {
        EntryRef {
            received_at_ms: 1,
            peer: "p",
            sending_app: "A",
            sending_facility: "F",
            control_id: "C",
            message_type: "ORU^R01",
            ack_code: "AA",
            ack: b"",
            raw,
        }
    }

    fn seqs(reader: &JournalReader, since: u64) -> Vec<u64> {
        reader.iter_from(since).map(|e| e.unwrap().seq).collect()
    }

    #[test]
    fn reads_across_rotated_segments() {
        let dir = tempfile::tempdir().unwrap();
        let opts = JournalOptions { segment_bytes: 200 };
        let (mut j, _) = Journal::open(dir.path(), opts).unwrap();
        for i in 1..=20u64 {
            j.append(&entry(format!("msg {i}").as_bytes())).unwrap();
            if i % 3 == 0 {
                j.commit().unwrap();
            }
        }
        j.commit().unwrap();
        assert!(list_segments(dir.path()).unwrap().len() >= 4);
        let r = JournalReader::open(dir.path()).unwrap();
        assert_eq!(seqs(&r, 0), (1..=20).collect::<Vec<_>>());
        assert_eq!(seqs(&r, 13), (13..=20).collect::<Vec<_>>());
        assert_eq!(seqs(&r, 21), Vec::<u64>::new());
        for i in 1..=20u64 {
            let e = r.get(i).unwrap().unwrap();
            assert_eq!((e.seq, e.raw), (i, format!("msg {i}").into_bytes()));
        }
        assert_eq!(r.get(0).unwrap(), None);
        assert_eq!(r.get(21).unwrap(), None);
    }

    #[test]
    fn sees_only_committed_entries_of_a_live_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        j.append(&entry(b"one")).unwrap();
        j.commit().unwrap();
        j.append(&entry(b"two")).unwrap();
        let r = JournalReader::open(dir.path()).unwrap();
        assert_eq!(seqs(&r, 1), [1]);
        assert_eq!(r.get(2).unwrap(), None);
        j.commit().unwrap();
        assert_eq!(seqs(&r, 1), [1, 2]);
    }

    #[test]
    fn stops_quietly_at_a_write_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        j.append(&entry(b"one")).unwrap();
        j.commit().unwrap();
        drop(j);
        let (_, path) = list_segments(dir.path()).unwrap().pop().unwrap();
        // Half an entry, as a writer leaves it mid-write.
        let mut half = Vec::new();
        entry::encode(2, &entry(b"two"), &mut half).unwrap();
        half.truncate(half.len() / 2);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&half);
        std::fs::write(&path, &bytes).unwrap();
        let r = JournalReader::open(dir.path()).unwrap();
        assert_eq!(seqs(&r, 0), [1]);
        assert_eq!(r.get(2).unwrap(), None);
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "the reader never modifies files");
    }

    #[test]
    fn empty_and_missing_directories() {
        let dir = tempfile::tempdir().unwrap();
        let r = JournalReader::open(dir.path()).unwrap();
        assert_eq!(seqs(&r, 0), Vec::<u64>::new());
        assert_eq!(r.get(1).unwrap(), None);
        let missing = dir.path().join("nope");
        assert!(matches!(JournalReader::open(&missing), Err(JournalError::Io { .. })));
    }
}
