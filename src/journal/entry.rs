//! One journal entry: the types, and the version 2 body encoding (see
//! `docs/journal-format.md`). Version 1 bodies are decoded by `v1.rs`.
//!
//! Encoding appends to a caller-owned buffer and allocates nothing per field;
//! decoding borrows from the body it was given. Neither touches files.

use super::record::{self, Kind};
use super::JournalError;

/// The largest body the format allows (256 MiB). A length above this, or above
/// the bytes left in the segment, is corruption, never a reason to allocate.
pub const MAX_BODY_LEN: u32 = 256 << 20;

/// seq + received_at_ms + flags + error code + nine u16 string lengths + two
/// u32 blob lengths.
pub(super) const MIN_BODY_LEN: u32 = 8 + 8 + 1 + 2 + 9 * 2 + 4 + 4;

/// `flags` bit 0: an ACK was sent.
const FLAG_ACK_SENT: u8 = 1;

/// Why a message was not accepted: the stage that decided, the HL7 table 0357
/// code, where in the message, and the operator-facing text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reason<'a> {
    /// "frame", "parse", "map", "store"...; empty when accepted.
    pub stage: &'a str,
    /// ERR-3 code (HL7 table 0357), 0 when accepted.
    pub code: u16,
    /// Where, e.g. `PID-7`; may be empty.
    pub location: &'a str,
    /// The problem, as put in ERR-8 / MSA-3.
    pub text: &'a str,
}

impl Reason<'_> {
    fn is_empty(&self) -> bool {
        self.stage.is_empty() && self.code == 0 && self.location.is_empty() && self.text.is_empty()
    }
}

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
    /// The verdict as an ACK code ("AA","AE","AR","CA","CE","CR"), decided
    /// whether or not an ACK was sent (MSH-15/16 = NE/ER may suppress it).
    /// Always set in version 2; empty in version 1 when no ACK was sent.
    pub ack_code: &'a str,
    /// Whether an ACK was sent to the peer.
    pub ack_sent: bool,
    /// Why it was not accepted; `Reason::default()` when accepted.
    pub reason: Reason<'a>,
    /// The ACK bytes that were sent; empty when none was.
    pub ack: &'a [u8],
    /// The message bytes as received.
    pub raw: &'a [u8],
}

/// [`Reason`], owned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OwnedReason {
    /// See [`Reason::stage`].
    pub stage: String,
    /// See [`Reason::code`].
    pub error_code: u16,
    /// See [`Reason::location`].
    pub location: String,
    /// See [`Reason::text`].
    pub text: String,
}

/// One entry as read back from the journal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// Sequence number: strictly increasing, never reused; version 2 may have
    /// gaps (seqs burned by failed commits).
    pub seq: u64,
    /// The segment format the entry was read from: 1 or 2.
    pub format_version: u16,
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
    /// See [`EntryRef::ack_sent`]. For version 1: whether `ack_code` is set.
    pub ack_sent: bool,
    /// See [`EntryRef::reason`]; `None` when accepted, and for version 1.
    pub reason: Option<OwnedReason>,
    /// See [`EntryRef::ack`]. Not serialized: it may hold patient data.
    #[serde(skip)]
    pub ack: Vec<u8>,
    /// See [`EntryRef::raw`]. Not serialized: it holds patient data.
    #[serde(skip)]
    pub raw: Vec<u8>,
}

impl Entry {
    /// Whether the message was accepted: `Some(true)` for AA/CA, `Some(false)`
    /// for AE/AR/CE/CR, `None` for a version 1 entry that recorded no ACK code
    /// (no ACK was sent, so the verdict is unknown: the caller re-derives it).
    pub fn accepted(&self) -> Option<bool> {
        match self.ack_code.as_str() {
            "AA" | "CA" => Some(true),
            "AE" | "AR" | "CE" | "CR" => Some(false),
            _ => None,
        }
    }

    /// A borrowed view, e.g. to re-append a journaled message elsewhere.
    pub fn as_ref(&self) -> EntryRef<'_> {
        let reason = self.reason.as_ref().map_or(Reason::default(), |r| Reason {
            stage: &r.stage,
            code: r.error_code,
            location: &r.location,
            text: &r.text,
        });
        EntryRef {
            received_at_ms: self.received_at_ms,
            peer: &self.peer,
            sending_app: &self.sending_app,
            sending_facility: &self.sending_facility,
            control_id: &self.control_id,
            message_type: &self.message_type,
            ack_code: &self.ack_code,
            ack_sent: self.ack_sent,
            reason,
            ack: &self.ack,
            raw: &self.raw,
        }
    }

    pub(super) fn from_ref(seq: u64, format_version: u16, e: &EntryRef<'_>) -> Entry {
        let r = &e.reason;
        let reason = (!r.is_empty()).then(|| OwnedReason {
            stage: r.stage.to_owned(),
            error_code: r.code,
            location: r.location.to_owned(),
            text: r.text.to_owned(),
        });
        Entry {
            seq,
            format_version,
            received_at_ms: e.received_at_ms,
            peer: e.peer.to_owned(),
            sending_app: e.sending_app.to_owned(),
            sending_facility: e.sending_facility.to_owned(),
            control_id: e.control_id.to_owned(),
            message_type: e.message_type.to_owned(),
            ack_code: e.ack_code.to_owned(),
            ack_sent: e.ack_sent,
            reason,
            ack: e.ack.to_vec(),
            raw: e.raw.to_vec(),
        }
    }
}

impl EntryRef<'_> {
    fn strings(&self) -> [&str; 9] {
        let r = &self.reason;
        [
            self.peer,
            self.sending_app,
            self.sending_facility,
            self.control_id,
            self.message_type,
            self.ack_code,
            r.stage,
            r.location,
            r.text,
        ]
    }
}

const STRING_FIELDS: [&str; 9] = [
    "peer",
    "sending_app",
    "sending_facility",
    "control_id",
    "message_type",
    "ack_code",
    "reason_stage",
    "reason_location",
    "reason_text",
];

/// `s` cut to at most `u16::MAX` bytes, on a char boundary so it stays UTF-8.
pub(super) fn clip(s: &str) -> &str {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends the entry as a version 2 record (header, body) to `buf`.
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
    buf.reserve(record::HEADER_LEN + body_len as usize);
    let start = record::begin(buf, Kind::Entry);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&e.received_at_ms.to_le_bytes());
    buf.push(if e.ack_sent { FLAG_ACK_SENT } else { 0 });
    buf.extend_from_slice(&e.reason.code.to_le_bytes());
    for s in strings {
        let s = clip(s);
        buf.extend_from_slice(&(s.len() as u16).to_le_bytes());
        buf.extend_from_slice(s.as_bytes());
    }
    for blob in [e.ack, e.raw] {
        buf.extend_from_slice(&(blob.len() as u32).to_le_bytes());
        buf.extend_from_slice(blob);
    }
    debug_assert_eq!((buf.len() - start - record::HEADER_LEN) as u64, body_len);
    record::finish(buf, start);
    Ok(())
}

/// Decodes a version 2 body whose CRC has already been checked.
///
/// # Errors
/// A description of the first inconsistency (lengths that overrun the body,
/// invalid UTF-8, unknown flags, trailing bytes).
pub(super) fn decode(body: &[u8]) -> Result<(u64, EntryRef<'_>), String> {
    let mut cur = Cursor { body, pos: 0 };
    let seq = cur.u64()?;
    let received_at_ms = cur.u64()?;
    let flags = cur.take(1, "flags")?[0];
    if flags & !FLAG_ACK_SENT != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    let code = cur.u16()?;
    let strings = strings16(&mut cur)?;
    let ack = cur.bytes32("ack")?;
    let raw = cur.bytes32("raw")?;
    cur.end()?;
    let [peer, sending_app, sending_facility, control_id, message_type, ack_code, stage, location, text] = strings;
    let entry = EntryRef {
        received_at_ms,
        peer,
        sending_app,
        sending_facility,
        control_id,
        message_type,
        ack_code,
        ack_sent: flags & FLAG_ACK_SENT != 0,
        reason: Reason { stage, code, location, text },
        ack,
        raw,
    };
    Ok((seq, entry))
}

/// The nine strings. One UTF-8 check over all of them (their u16 lengths
/// included) when that region is valid UTF-8, as it is when every string is
/// shorter than 128 bytes; a string is then valid exactly when its ends are
/// char boundaries. Otherwise one check per string.
fn strings16<'a>(cur: &mut Cursor<'a>) -> Result<[&'a str; 9], String> {
    let start = cur.pos;
    let mut spans = [(0usize, 0usize); 9];
    for (span, name) in spans.iter_mut().zip(STRING_FIELDS) {
        let len = cur.u16()? as usize;
        let from = cur.pos - start;
        cur.take(len, name)?;
        *span = (from, from + len);
    }
    let region = &cur.body[start..cur.pos];
    let mut strings = [""; 9];
    match std::str::from_utf8(region) {
        Ok(all) => {
            for ((slot, &(a, b)), name) in strings.iter_mut().zip(&spans).zip(STRING_FIELDS) {
                *slot = all.get(a..b).ok_or_else(|| format!("{name} is not valid UTF-8"))?;
            }
        }
        Err(_) => {
            for ((slot, &(a, b)), name) in strings.iter_mut().zip(&spans).zip(STRING_FIELDS) {
                *slot = std::str::from_utf8(&region[a..b]).map_err(|_| format!("{name} is not valid UTF-8"))?;
            }
        }
    }
    Ok(strings)
}

/// Reads little-endian fields from a body, describing what overran.
pub(super) struct Cursor<'a> {
    pub(super) body: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    pub(super) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.body.len());
        let end = end.ok_or_else(|| format!("{what} ({n} bytes) runs past the end of the body"))?;
        let bytes = &self.body[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }
    #[inline]
    pub(super) fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2, "a length")?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub(super) fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4, "a length")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8, "a u64 field")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub(super) fn str16(&mut self, name: &str) -> Result<&'a str, String> {
        let len = self.u16()? as usize;
        let bytes = self.take(len, name)?;
        std::str::from_utf8(bytes).map_err(|_| format!("{name} is not valid UTF-8"))
    }
    pub(super) fn bytes32(&mut self, name: &str) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len, name)
    }
    pub(super) fn end(&self) -> Result<(), String> {
        match self.body.len() - self.pos {
            0 => Ok(()),
            n => Err(format!("{n} unexpected bytes after raw")),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn sample<'a>(raw: &'a [u8]) -> EntryRef<'a> {
        EntryRef {
            received_at_ms: 1_700_000_000_123,
            peer: "10.0.0.7:5123",
            sending_app: "PAS",
            sending_facility: "RGT01",
            control_id: "MSG00001",
            message_type: "ADT^A01",
            ack_code: "AA",
            ack_sent: true,
            reason: Reason::default(),
            ack: b"MSH|^~\\&|ACK\rMSA|AA|MSG00001\r",
            raw,
        }
    }

    fn body(buf: &[u8]) -> &[u8] {
        let h = record::parse_header(buf[..record::HEADER_LEN].try_into().unwrap()).unwrap();
        let body = &buf[record::HEADER_LEN..];
        assert_eq!(h.len as usize, body.len());
        assert!(record::crc_ok(buf));
        body
    }

    #[test]
    fn roundtrip_with_binary_raw_and_a_reason() {
        let raw: Vec<u8> = (0..=255u8).chain([0x0b, 0x1c, 0x0d]).collect();
        let reason = Reason { stage: "parse", code: 102, location: "PID-7", text: "bad date 'é'" };
        let e = EntryRef { ack_code: "AE", ack_sent: false, reason, ack: b"", ..sample(&raw) };
        let mut buf = Vec::new();
        encode(7, &e, &mut buf).unwrap();
        let (seq, back) = decode(body(&buf)).unwrap();
        assert_eq!((seq, back), (7, e));
        let owned = Entry::from_ref(seq, 2, &back);
        assert_eq!(owned.accepted(), Some(false));
        assert_eq!(owned.reason.as_ref().unwrap().location, "PID-7");
        assert_eq!(owned.as_ref(), e);
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
            ack_code: "AR",
            ack_sent: true,
            reason: Reason { stage: "s", code: 207, location: "", text: "t" },
            ack: b"k",
            raw: b"\x00\xff",
        };
        let mut buf = Vec::new();
        encode(1, &e, &mut buf).unwrap();
        let body: &[u8] = &[
            1, 0, 0, 0, 0, 0, 0, 0, // seq
            2, 0, 0, 0, 0, 0, 0, 0, // received_at_ms
            1, 207, 0, // flags (ack sent), error code 207
            1, 0, b'p', 0, 0, 0, 0, 1, 0, b'c', 0, 0, 2, 0, b'A', b'R', // strings
            1, 0, b's', 0, 0, 1, 0, b't', // reason stage, location, text
            1, 0, 0, 0, b'k', 2, 0, 0, 0, 0x00, 0xff, // ack, raw
        ];
        let mut covered = vec![1, 0, 0, 0]; // kind, reserved
        covered.extend_from_slice(&(body.len() as u32).to_le_bytes());
        covered.extend_from_slice(body);
        let mut header = vec![0xF7, b'R', b'J', b'2'];
        header.extend_from_slice(&crc32c::crc32c(&covered).to_le_bytes());
        header.extend_from_slice(&covered[..8]);
        assert_eq!(&buf[..16], &header[..]);
        assert_eq!(&buf[16..], body);
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
            ack_sent: false,
            reason: Reason::default(),
            ack: b"",
            raw: b"",
        };
        let mut buf = Vec::new();
        encode(u64::MAX, &e, &mut buf).unwrap();
        assert_eq!(buf.len(), record::HEADER_LEN + MIN_BODY_LEN as usize);
        assert_eq!(decode(body(&buf)).unwrap(), (u64::MAX, e));
        assert_eq!(Entry::from_ref(1, 2, &e).reason, None);
    }

    #[test]
    fn long_strings_are_clipped_on_a_char_boundary() {
        // 'é' is two bytes, so u16::MAX (odd) falls inside a char.
        let long = "é".repeat(40_000);
        let e = EntryRef { control_id: &long, ..sample(b"x") };
        let mut buf = Vec::new();
        encode(1, &e, &mut buf).unwrap();
        let (_, back) = decode(body(&buf)).unwrap();
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
        let body = body(&buf).to_vec();
        for cut in 0..body.len() {
            assert!(decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = body.clone();
        extra.push(0);
        assert!(decode(&extra).unwrap_err().contains("unexpected bytes"));
        let mut bad_utf8 = body.clone();
        bad_utf8[8 + 8 + 1 + 2 + 2] = 0xff; // first byte of peer
        assert!(decode(&bad_utf8).unwrap_err().contains("peer"));
        let mut bad_flags = body;
        bad_flags[16] = 0x80;
        assert!(decode(&bad_flags).unwrap_err().contains("flags"));
    }

    #[test]
    fn verdict_is_known_apart_from_whether_an_ack_was_sent() {
        let ne = EntryRef { ack_sent: false, ack: b"", ..sample(b"MSH|") };
        let mut e = Entry::from_ref(1, 2, &ne);
        assert_eq!((e.accepted(), e.ack_sent), (Some(true), false));
        e.ack_code = String::new();
        assert_eq!(e.accepted(), None, "a version 1 entry without an ACK code");
    }
}
