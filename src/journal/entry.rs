//! One journal entry and its binary encoding (see `docs/journal-format.md`).
//!
//! Encoding appends to a caller-owned buffer and allocates nothing per field;
//! decoding borrows from the body it was given. Neither touches files.

use super::JournalError;

/// The largest body the format allows (256 MiB). A length prefix above this is
/// treated as corruption, not as a reason to allocate.
pub const MAX_BODY_LEN: u32 = 256 << 20;

/// `u32 LE body length | u32 LE CRC32C of body`.
pub(super) const FRAME_HEADER_LEN: usize = 8;

/// seq + received_at_ms + six u16 string lengths + two u32 blob lengths.
pub(super) const MIN_BODY_LEN: u32 = 8 + 8 + 6 * 2 + 4 + 4;

/// One message as it is appended: borrowed from the frame and the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// Wall-clock time the frame was received, milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// The remote address the frame came from.
    pub peer: &'a str,
    /// MSH-3.
    pub sending_app: &'a str,
    /// MSH-4.
    pub sending_facility: &'a str,
    /// MSH-10.
    pub control_id: &'a str,
    /// MSH-9, e.g. `ADT^A01`.
    pub message_type: &'a str,
    /// "AA","AE","AR","CA","CE","CR", or "" when no ACK was sent.
    pub ack_code: &'a str,
    /// The ACK bytes that were sent, possibly empty.
    pub ack: &'a [u8],
    /// The message bytes as received.
    pub raw: &'a [u8],
}

/// One entry as read back from the journal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// Sequence number: starts at 1, strictly increasing, never reused.
    pub seq: u64,
    /// See [`EntryRef::received_at_ms`].
    pub received_at_ms: u64,
    /// See [`EntryRef::peer`].
    pub peer: String,
    /// See [`EntryRef::sending_app`].
    pub sending_app: String,
    /// See [`EntryRef::sending_facility`].
    pub sending_facility: String,
    /// See [`EntryRef::control_id`].
    pub control_id: String,
    /// See [`EntryRef::message_type`].
    pub message_type: String,
    /// See [`EntryRef::ack_code`].
    pub ack_code: String,
    /// See [`EntryRef::ack`]. Not serialized: it may hold patient data.
    #[serde(skip)]
    pub ack: Vec<u8>,
    /// See [`EntryRef::raw`]. Not serialized: it holds patient data.
    #[serde(skip)]
    pub raw: Vec<u8>,
}

impl Entry {
    /// A borrowed view, e.g. to re-append a journaled message elsewhere.
    pub fn as_ref(&self) -> EntryRef<'_> {
        EntryRef {
            received_at_ms: self.received_at_ms,
            peer: &self.peer,
            sending_app: &self.sending_app,
            sending_facility: &self.sending_facility,
            control_id: &self.control_id,
            message_type: &self.message_type,
            ack_code: &self.ack_code,
            ack: &self.ack,
            raw: &self.raw,
        }
    }

    pub(super) fn from_ref(seq: u64, e: &EntryRef<'_>) -> Entry {
        Entry {
            seq,
            received_at_ms: e.received_at_ms,
            peer: e.peer.to_owned(),
            sending_app: e.sending_app.to_owned(),
            sending_facility: e.sending_facility.to_owned(),
            control_id: e.control_id.to_owned(),
            message_type: e.message_type.to_owned(),
            ack_code: e.ack_code.to_owned(),
            ack: e.ack.to_vec(),
            raw: e.raw.to_vec(),
        }
    }
}

impl EntryRef<'_> {
    fn strings(&self) -> [&str; 6] {
        [self.peer, self.sending_app, self.sending_facility, self.control_id, self.message_type, self.ack_code]
    }
}

/// `s` cut to at most `u16::MAX` bytes, on a char boundary so it stays UTF-8.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends the framed entry (length, CRC32C, body) to `buf`.
///
/// Strings longer than `u16::MAX` bytes are cut rather than refused: metadata
/// is informative, the raw message is the record.
///
/// # Errors
/// [`JournalError::TooLarge`] if the body would exceed [`MAX_BODY_LEN`]; `buf`
/// is then unchanged.
pub(super) fn encode(seq: u64, e: &EntryRef<'_>, buf: &mut Vec<u8>) -> Result<(), JournalError> {
    let strings = e.strings();
    let body_len = MIN_BODY_LEN as u64
        + strings.iter().map(|s| clip(s).len() as u64).sum::<u64>()
        + e.ack.len() as u64
        + e.raw.len() as u64;
    if body_len > MAX_BODY_LEN as u64 {
        return Err(JournalError::TooLarge { bytes: body_len, max: MAX_BODY_LEN as u64 });
    }
    let start = buf.len();
    buf.reserve(FRAME_HEADER_LEN + body_len as usize);
    buf.extend_from_slice(&(body_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]); // CRC, patched below once the body is in place
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&e.received_at_ms.to_le_bytes());
    for s in strings {
        let s = clip(s);
        buf.extend_from_slice(&(s.len() as u16).to_le_bytes());
        buf.extend_from_slice(s.as_bytes());
    }
    for blob in [e.ack, e.raw] {
        buf.extend_from_slice(&(blob.len() as u32).to_le_bytes());
        buf.extend_from_slice(blob);
    }
    let body = &buf[start + FRAME_HEADER_LEN..];
    debug_assert_eq!(body.len() as u64, body_len);
    let crc = crc32c::crc32c(body).to_le_bytes();
    buf[start + 4..start + 8].copy_from_slice(&crc);
    Ok(())
}

/// Splits a frame header into (body length, CRC32C).
pub(super) fn parse_frame_header(h: &[u8; FRAME_HEADER_LEN]) -> (u32, u32) {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    (len, crc)
}

/// The seq of a body, which is its first 8 bytes.
pub(super) fn body_seq(body: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(body.get(..8)?.try_into().ok()?))
}

/// Decodes a body whose CRC has already been checked.
///
/// # Errors
/// A description of the first inconsistency (lengths that overrun the body,
/// invalid UTF-8, trailing bytes).
pub(super) fn decode(body: &[u8]) -> Result<(u64, EntryRef<'_>), String> {
    let mut cur = Cursor { body, pos: 0 };
    let seq = cur.u64()?;
    let received_at_ms = cur.u64()?;
    let mut strings = [""; 6];
    for (slot, name) in strings.iter_mut().zip(STRING_FIELDS) {
        let len = cur.u16()? as usize;
        let bytes = cur.take(len, name)?;
        *slot = std::str::from_utf8(bytes).map_err(|_| format!("{name} is not valid UTF-8"))?;
    }
    let ack_len = cur.u32()? as usize;
    let ack = cur.take(ack_len, "ack")?;
    let raw_len = cur.u32()? as usize;
    let raw = cur.take(raw_len, "raw")?;
    if cur.pos != body.len() {
        return Err(format!("{} unexpected bytes after raw", body.len() - cur.pos));
    }
    let [peer, sending_app, sending_facility, control_id, message_type, ack_code] = strings;
    let entry =
        EntryRef { received_at_ms, peer, sending_app, sending_facility, control_id, message_type, ack_code, ack, raw };
    Ok((seq, entry))
}

const STRING_FIELDS: [&str; 6] = ["peer", "sending_app", "sending_facility", "control_id", "message_type", "ack_code"];

struct Cursor<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.body.len());
        let end = end.ok_or_else(|| format!("{what} ({n} bytes) runs past the end of the body"))?;
        let bytes = &self.body[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2, "a length")?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4, "a length")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8, "a u64 field")?;
        // `take` returned exactly 8 bytes.
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(raw: &'a [u8]) -> EntryRef<'a> {
        EntryRef {
            received_at_ms: 1_700_000_000_123,
            peer: "10.0.0.7:5123",
            sending_app: "PAS",
            sending_facility: "RGT01",
            control_id: "MSG00001",
            message_type: "ADT^A01",
            ack_code: "AA",
            ack: b"MSH|^~\\&|ACK\rMSA|AA|MSG00001\r",
            raw,
        }
    }

    fn frame_body(buf: &[u8]) -> &[u8] {
        let (len, crc) = parse_frame_header(buf[..8].try_into().unwrap());
        let body = &buf[8..];
        assert_eq!(len as usize, body.len());
        assert_eq!(crc, crc32c::crc32c(body));
        body
    }

    #[test]
    fn roundtrip_with_binary_raw() {
        let raw: Vec<u8> = (0..=255u8).chain([0x0b, 0x1c, 0x0d]).collect();
        let mut buf = Vec::new();
        encode(7, &sample(&raw), &mut buf).unwrap();
        let (seq, back) = decode(frame_body(&buf)).unwrap();
        assert_eq!(seq, 7);
        assert_eq!(back, sample(&raw));
        assert_eq!(Entry::from_ref(seq, &back).as_ref(), sample(&raw));
    }

    /// Pins the layout documented in docs/journal-format.md byte for byte.
    #[test]
    fn encoding_matches_the_documented_layout() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283, "CRC-32C check value");
        let e = EntryRef {
            received_at_ms: 2,
            peer: "p",
            sending_app: "",
            sending_facility: "",
            control_id: "c",
            message_type: "",
            ack_code: "AA",
            ack: b"k",
            raw: b"\x00\xff",
        };
        let mut buf = Vec::new();
        encode(1, &e, &mut buf).unwrap();
        let body: &[u8] = &[
            1, 0, 0, 0, 0, 0, 0, 0, // seq
            2, 0, 0, 0, 0, 0, 0, 0, // received_at_ms
            1, 0, b'p', 0, 0, 0, 0, 1, 0, b'c', 0, 0, 2, 0, b'A', b'A', // strings
            1, 0, 0, 0, b'k', 2, 0, 0, 0, 0x00, 0xff, // ack, raw
        ];
        assert_eq!(&buf[..4], (body.len() as u32).to_le_bytes());
        assert_eq!(&buf[4..8], crc32c::crc32c(body).to_le_bytes());
        assert_eq!(&buf[8..], body);
    }

    #[test]
    fn roundtrip_all_empty() {
        let e = EntryRef {
            received_at_ms: 0,
            peer: "",
            sending_app: "",
            sending_facility: "",
            control_id: "",
            message_type: "",
            ack_code: "",
            ack: b"",
            raw: b"",
        };
        let mut buf = Vec::new();
        encode(u64::MAX, &e, &mut buf).unwrap();
        assert_eq!(buf.len(), FRAME_HEADER_LEN + MIN_BODY_LEN as usize);
        assert_eq!(decode(frame_body(&buf)).unwrap(), (u64::MAX, e));
    }

    #[test]
    fn long_strings_are_clipped_on_a_char_boundary() {
        // 'é' is two bytes, so u16::MAX (odd) falls inside a char.
        let long = "é".repeat(40_000);
        let e = EntryRef { control_id: &long, ..sample(b"x") };
        let mut buf = Vec::new();
        encode(1, &e, &mut buf).unwrap();
        let (_, back) = decode(frame_body(&buf)).unwrap();
        assert_eq!(back.control_id.len(), u16::MAX as usize - 1);
        assert!(long.starts_with(back.control_id));
    }

    #[test]
    fn oversize_is_refused_and_buffer_untouched() {
        let raw = vec![0u8; MAX_BODY_LEN as usize];
        let mut buf = vec![1, 2, 3];
        let err = encode(1, &sample(&raw), &mut buf).unwrap_err();
        assert!(matches!(err, JournalError::TooLarge { .. }), "{err}");
        assert_eq!(buf, [1, 2, 3]);
    }

    #[test]
    fn malformed_bodies_are_described_not_panicked_on() {
        let mut buf = Vec::new();
        encode(3, &sample(b"MSH|"), &mut buf).unwrap();
        let body = frame_body(&buf).to_vec();
        for cut in 0..body.len() {
            assert!(decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = body.clone();
        extra.push(0);
        assert!(decode(&extra).unwrap_err().contains("unexpected bytes"));
        let mut bad_utf8 = body.clone();
        bad_utf8[8 + 8 + 2] = 0xff; // first byte of peer
        assert!(decode(&bad_utf8).unwrap_err().contains("peer"));
    }

    #[test]
    fn encoding_appends_to_a_reused_buffer() {
        let mut buf = Vec::new();
        encode(1, &sample(b"a"), &mut buf).unwrap();
        let first = buf.len();
        encode(2, &sample(b"bb"), &mut buf).unwrap();
        assert_eq!(body_seq(&buf[first + 8..]), Some(2));
        assert_eq!(decode(frame_body(&buf[first..])).unwrap().1.raw, b"bb");
    }
}
