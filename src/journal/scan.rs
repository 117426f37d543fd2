//! Walking the records of one segment, shared by recovery, [`super::JournalReader`]
//! and `recordhub journal --verify`.
//!
//! The scanner reads the file in large chunks and hands out records that
//! borrow from its buffer. When a record is invalid it resynchronises: in a
//! version 2 segment at the next sync marker that starts a valid record, in a
//! version 1 segment (no markers) at the next offset whose length, CRC and seq
//! check out. The invalid bytes come back as one [`Item::Invalid`], marked
//! `trailing` when nothing valid follows them (a torn tail, if this is the
//! last segment). Lengths are bounded by the bytes left in the segment, so a
//! damaged length never makes it allocate more than the file holds.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::entry::{self, EntryRef, MAX_BODY_LEN};
use super::record::{self, Commit, Kind};
use super::{v1, HEADER_LEN as SEGMENT_HEADER_LEN, MAGIC};

/// Read size: large enough that a read per chunk costs nothing per entry.
const CHUNK: usize = 1 << 20;

/// One thing found in a segment.
#[derive(Debug)]
pub(super) enum Item<'a> {
    /// An intact entry.
    Entry { seq: u64, entry: EntryRef<'a> },
    /// An intact commit record (version 2 only).
    Commit { offset: u64, commit: Commit },
    /// Bytes that are not a valid record, up to the next valid one or to the
    /// end of the segment (`trailing`).
    Invalid { offset: u64, len: u64, reason: String, trailing: bool },
}

/// Why a segment could not be scanned at all.
#[derive(Debug)]
pub(super) enum OpenError {
    Io(io::Error),
    /// Shorter than its header: a creation that never finished.
    Short(u64),
    /// Written by a newer recordhub.
    Unsupported(u16),
}

/// A record that passed every check, not yet consumed.
struct Found {
    header_len: usize,
    total: usize,
    seq: u64,
    commit: Option<Commit>,
}

/// The records of one segment, in order.
pub(super) struct SegmentScan {
    file: File,
    /// 1 or 2.
    pub(super) version: u16,
    /// The segment's size when it was opened; bytes appended later are not read.
    pub(super) file_len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    pos: usize,
    filled: usize,
    /// The lowest seq the next entry may carry.
    next_min: u64,
    /// The segment header was unreadable: start by resynchronising.
    bad_header: Option<String>,
    /// The scan just resynchronised: a version 1 seq may skip ahead once.
    resynced: bool,
}

impl SegmentScan {
    /// Opens `path` read-only and checks its header. `first_seq` comes from the
    /// file name: no entry in the segment may have a lower seq.
    pub(super) fn open(path: &Path, first_seq: u64) -> Result<SegmentScan, OpenError> {
        let file = File::open(path).map_err(OpenError::Io)?;
        let file_len = file.metadata().map_err(OpenError::Io)?.len();
        if file_len < SEGMENT_HEADER_LEN {
            return Err(OpenError::Short(file_len));
        }
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0).map_err(OpenError::Io)?;
        let version = u16::from_le_bytes([header[4], header[5]]);
        let (version, bad_header) = match (header[..4] == MAGIC, version) {
            (true, 1 | 2) => (version, None),
            (true, v) if v > 2 => return Err(OpenError::Unsupported(v)),
            // Damage in the header itself: read what follows as version 2,
            // the only version still written.
            _ => (2, Some(format!("bad segment header {:02x?}", header))),
        };
        Ok(SegmentScan {
            file,
            version,
            file_len,
            buf: Vec::new(),
            buf_start: SEGMENT_HEADER_LEN,
            pos: 0,
            filled: 0,
            next_min: first_seq,
            bad_header,
            resynced: false,
        })
    }

    /// [`SegmentScan::open`], positioned at `offset`: a record boundary an
    /// earlier scan of this segment reported (after a commit record), so a
    /// tailing reader does not read the segment from its start again.
    pub(super) fn open_at(path: &Path, first_seq: u64, offset: u64, next_min: u64) -> Result<SegmentScan, OpenError> {
        let mut scan = SegmentScan::open(path, first_seq)?;
        if scan.bad_header.is_none() && offset >= SEGMENT_HEADER_LEN && offset <= scan.file_len {
            scan.buf_start = offset;
            scan.next_min = next_min.max(first_seq);
        }
        Ok(scan)
    }

    /// File offset of the next record.
    pub(super) fn offset(&self) -> u64 {
        self.buf_start + self.pos as u64
    }

    /// The next record, or `None` at the end of the segment.
    ///
    /// # Errors
    /// Only I/O errors; invalid bytes are an [`Item::Invalid`].
    pub(super) fn next_item(&mut self) -> io::Result<Option<Item<'_>>> {
        if let Some(reason) = self.bad_header.take() {
            return self.resync(0, reason).map(Some);
        }
        let offset = self.offset();
        if offset >= self.file_len {
            return Ok(None);
        }
        let found = match self.check(self.resynced)? {
            Ok(found) => found,
            Err(reason) => return self.resync(offset, reason).map(Some),
        };
        let body = self.pos + found.header_len..self.pos + found.total;
        self.pos += found.total;
        if let Some(commit) = found.commit {
            return Ok(Some(Item::Commit { offset, commit }));
        }
        self.next_min = found.seq + 1;
        self.resynced = false;
        let body = &self.buf[body];
        let decoded = if self.version == 1 { v1::decode(body) } else { entry::decode(body) };
        Ok(Some(match decoded {
            Ok((seq, entry)) => Item::Entry { seq, entry },
            // Framing and CRC are intact, so the next record starts right
            // after this one: a body that does not decode is damage of
            // exactly this record (a writer bug, not a torn write).
            Err(reason) => Item::Invalid { offset, len: found.total as u64, reason, trailing: false },
        }))
    }

    /// Checks the record at the current offset without consuming it.
    /// `resync`: a version 1 seq may skip ahead (entries were lost).
    fn check(&mut self, resync: bool) -> io::Result<Result<Found, String>> {
        let left = self.file_len - self.offset();
        let header_len = if self.version == 1 { v1::FRAME_HEADER_LEN } else { record::HEADER_LEN };
        if left < header_len as u64 || !self.fill(header_len)? {
            return Ok(Err(format!("record header cut short: {left} bytes left in the segment")));
        }
        let h = &self.buf[self.pos..self.pos + header_len];
        let (kind, len, min_len, max_len) = if self.version == 1 {
            let (len, _) = v1::parse_frame_header(h);
            (Kind::Entry, len, v1::MIN_BODY_LEN, MAX_BODY_LEN)
        } else {
            let mut a = [0u8; record::HEADER_LEN];
            a.copy_from_slice(h);
            match record::parse_header(&a) {
                Ok(hd) if hd.kind == Kind::Commit => {
                    (hd.kind, hd.len, record::COMMIT_BODY_LEN, record::COMMIT_BODY_LEN)
                }
                Ok(hd) => (hd.kind, hd.len, entry::MIN_BODY_LEN, MAX_BODY_LEN),
                Err(why) => return Ok(Err(why.to_owned())),
            }
        };
        if !(min_len..=max_len).contains(&len) {
            return Ok(Err(format!("body length {len} outside {min_len}..={max_len}")));
        }
        let room = left - header_len as u64;
        if len as u64 > room {
            return Ok(Err(format!("body length {len} runs past the end of the segment ({room} bytes left)")));
        }
        let total = header_len + len as usize;
        if !self.fill(total)? {
            return Ok(Err("segment shrank while being read".to_owned()));
        }
        let rec = &self.buf[self.pos..self.pos + total];
        let body = &rec[header_len..];
        let crc_ok =
            if self.version == 1 { crc32c::crc32c(body) == v1::parse_frame_header(rec).1 } else { record::crc_ok(rec) };
        if !crc_ok {
            return Ok(Err("CRC32C mismatch".to_owned()));
        }
        if kind == Kind::Commit {
            return Ok(Commit::decode(body).map(|c| Found { header_len, total, seq: 0, commit: Some(c) }));
        }
        // The body is decoded once, by `next_item`; here only its seq (the
        // first 8 bytes, present since the length is at least the minimum).
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&body[..8]);
        let seq = u64::from_le_bytes(seq);
        // Version 1 seqs are contiguous; version 2 seqs only increase (gaps are
        // seqs burned by failed commits).
        let follows = if self.version == 1 && !resync { seq == self.next_min } else { seq >= self.next_min };
        if !follows {
            return Ok(Err(format!("seq {seq} does not follow {}", self.next_min.saturating_sub(1))));
        }
        Ok(Ok(Found { header_len, total, seq, commit: None }))
    }

    /// Skips the invalid bytes starting at `bad` up to the next valid record,
    /// and describes them.
    fn resync(&mut self, bad: u64, reason: String) -> io::Result<Item<'static>> {
        let mut from = (bad + 1).max(SEGMENT_HEADER_LEN);
        loop {
            let candidate = if self.version == 1 { self.next_v1_candidate(from)? } else { self.next_sync(from)? };
            let Some(at) = candidate else {
                let len = self.file_len - bad;
                self.seek(self.file_len);
                return Ok(Item::Invalid { offset: bad, len, reason, trailing: true });
            };
            if self.check(true)?.is_ok() {
                self.resynced = true;
                return Ok(Item::Invalid { offset: bad, len: at - bad, reason, trailing: false });
            }
            from = at + 1;
        }
    }

    /// Positions the scan at the next sync marker at or after `from`.
    fn next_sync(&mut self, mut from: u64) -> io::Result<Option<u64>> {
        let finder = memchr::memmem::Finder::new(&record::SYNC);
        loop {
            if from + record::SYNC.len() as u64 > self.file_len {
                return Ok(None);
            }
            self.seek(from);
            if !self.fill(record::SYNC.len())? {
                return Ok(None);
            }
            if let Some(i) = finder.find(&self.buf[self.pos..self.filled]) {
                self.pos += i;
                return Ok(Some(self.offset()));
            }
            // Keep the last three bytes: a marker may straddle the chunk end.
            from = self.buf_start + (self.filled - (record::SYNC.len() - 1)) as u64;
        }
    }

    /// Positions the scan at the next offset from `from` that could start a
    /// version 1 entry: a plausible length and a seq not far ahead.
    fn next_v1_candidate(&mut self, mut from: u64) -> io::Result<Option<u64>> {
        const PEEK: usize = v1::FRAME_HEADER_LEN + 8;
        let smallest = (v1::FRAME_HEADER_LEN as u64) + v1::MIN_BODY_LEN as u64;
        while from + smallest <= self.file_len {
            self.seek(from);
            if !self.fill(PEEK)? {
                return Ok(None);
            }
            let h = &self.buf[self.pos..self.pos + PEEK];
            let (len, _) = v1::parse_frame_header(h);
            let mut s = [0u8; 8];
            s.copy_from_slice(&h[8..16]);
            let seq = u64::from_le_bytes(s);
            let room = self.file_len - from - v1::FRAME_HEADER_LEN as u64;
            let seq_ok = seq >= self.next_min && seq - self.next_min <= room / smallest;
            if seq_ok && (v1::MIN_BODY_LEN..=MAX_BODY_LEN).contains(&len) && len as u64 <= room {
                return Ok(Some(from));
            }
            from += 1;
        }
        Ok(None)
    }

    /// Moves the read position to file offset `to` (never backwards past the
    /// buffer start).
    fn seek(&mut self, to: u64) {
        let end = self.buf_start + self.filled as u64;
        if to >= self.buf_start && to <= end {
            self.pos = (to - self.buf_start) as usize;
        } else {
            self.buf_start = to;
            self.pos = 0;
            self.filled = 0;
        }
    }

    /// Makes `need` bytes from the current position available in `buf`,
    /// reading a chunk at a time. False if the segment has fewer bytes (it may
    /// have shrunk under a live writer's roll-back).
    fn fill(&mut self, need: usize) -> io::Result<bool> {
        if self.filled - self.pos >= need {
            return Ok(true);
        }
        self.buf.copy_within(self.pos..self.filled, 0);
        self.buf_start += self.pos as u64;
        self.filled -= self.pos;
        self.pos = 0;
        let in_file = self.file_len.saturating_sub(self.buf_start + self.filled as u64);
        let want = need.max(CHUNK).min(self.filled + in_file as usize);
        if want < need {
            return Ok(false);
        }
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        while self.filled < want {
            let at = self.buf_start + self.filled as u64;
            match self.file.read_at(&mut self.buf[self.filled..want], at) {
                Ok(0) => {
                    self.file_len = at;
                    return Ok(self.filled >= need);
                }
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}
