//! Version 2 record framing: every record (an entry or a commit record) starts
//! with a sync marker, so a reader can find the next record after damage, and
//! its CRC covers the header fields as well as the body, so a damaged length
//! is caught like a damaged body.
//!
//! ```text
//! 0..4   sync   F7 52 4A 32  ("\xF7RJ2"; 0xF7 never occurs in UTF-8)
//! 4..8   CRC32C of bytes 8..16 followed by the body, u32 LE
//! 8      kind   1 = entry, 2 = commit record
//! 9..12  reserved, zero
//! 12..16 body length, u32 LE
//! ```

/// The four bytes every version 2 record starts with.
pub(super) const SYNC: [u8; 4] = [0xF7, b'R', b'J', b'2'];
/// Record header length.
pub(super) const HEADER_LEN: usize = 16;
/// A commit record's body: first seq, last seq, previous committed seq.
pub(super) const COMMIT_BODY_LEN: u32 = 24;
/// A whole commit record.
pub(super) const COMMIT_LEN: usize = HEADER_LEN + COMMIT_BODY_LEN as usize;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Entry = 1,
    Commit = 2,
}

/// A parsed record header (the CRC not yet checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) kind: Kind,
    pub(super) len: u32,
    pub(super) crc: u32,
}

/// Parses a header, or says why these 16 bytes are not one.
pub(super) fn parse_header(h: &[u8; HEADER_LEN]) -> Result<Header, &'static str> {
    if h[..4] != SYNC {
        return Err("no record sync marker");
    }
    let kind = match h[8] {
        1 => Kind::Entry,
        2 => Kind::Commit,
        _ => return Err("unknown record kind"),
    };
    if h[9..12] != [0, 0, 0] {
        return Err("reserved header bytes are not zero");
    }
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let len = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    Ok(Header { kind, len, crc })
}

/// Whether the CRC of `record` (header and body, contiguous) matches its
/// kind, length and body: one pass over bytes 8.. .
pub(super) fn crc_ok(record: &[u8]) -> bool {
    let stored = u32::from_le_bytes([record[4], record[5], record[6], record[7]]);
    crc32c::crc32c(&record[8..]) == stored
}

/// Starts a record in `buf` (header with length and CRC left zero); returns
/// where it starts, for [`finish`].
pub(super) fn begin(buf: &mut Vec<u8>, kind: Kind) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&SYNC);
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&[kind as u8, 0, 0, 0]);
    buf.extend_from_slice(&[0; 4]);
    start
}

/// Fills in the length and CRC of the record begun at `start`, whose body is
/// everything after its header.
pub(super) fn finish(buf: &mut [u8], start: usize) {
    let body_len = (buf.len() - start - HEADER_LEN) as u32;
    buf[start + 12..start + 16].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A commit record: seqs `first..=last` were made durable together, and the
/// previous successful commit ended at `prev` (so seqs between `prev` and
/// `first` were burned by failed commits, and a reader that last saw a
/// committed seq below `prev` knows something is missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Commit {
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) prev: u64,
}

impl Commit {
    /// The whole record, ready to write.
    pub(super) fn encode(&self) -> [u8; COMMIT_LEN] {
        let mut buf = Vec::with_capacity(COMMIT_LEN);
        let start = begin(&mut buf, Kind::Commit);
        for v in [self.first, self.last, self.prev] {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        finish(&mut buf, start);
        let mut out = [0u8; COMMIT_LEN];
        out.copy_from_slice(&buf);
        out
    }

    /// Decodes a commit body whose CRC has been checked.
    pub(super) fn decode(body: &[u8]) -> Result<Commit, String> {
        let mut cur = super::entry::Cursor { body, pos: 0 };
        let (first, last, prev) = (cur.u64()?, cur.u64()?, cur.u64()?);
        cur.end()?;
        if first > last || prev >= first {
            return Err(format!("inconsistent commit record: first {first}, last {last}, previous {prev}"));
        }
        Ok(Commit { first, last, prev })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_record_roundtrip_and_layout() {
        let c = Commit { first: 5, last: 9, prev: 3 };
        let bytes = c.encode();
        assert_eq!(&bytes[..4], &[0xF7, b'R', b'J', b'2']);
        assert_eq!(&bytes[8..16], &[2, 0, 0, 0, 24, 0, 0, 0]);
        let h = parse_header(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!((h.kind, h.len), (Kind::Commit, 24));
        assert!(crc_ok(&bytes));
        assert_eq!(Commit::decode(&bytes[HEADER_LEN..]).unwrap(), c);
        assert!(Commit::decode(&Commit { first: 5, last: 4, prev: 0 }.encode()[HEADER_LEN..]).is_err());
    }

    #[test]
    fn the_crc_covers_the_length() {
        let mut bytes = Commit { first: 1, last: 1, prev: 0 }.encode();
        bytes[12] ^= 1;
        assert!(!crc_ok(&bytes));
    }
}
