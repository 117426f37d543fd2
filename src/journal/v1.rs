//! Version 1 entries, read but no longer written: `u32 LE body length | u32
//! LE CRC32C of body | body`, no sync marker, no commit records, and no verdict
//! apart from the ACK code sent (empty when no ACK was sent).

use super::entry::{Cursor, EntryRef, Reason};

/// `u32 LE body length | u32 LE CRC32C of body`.
pub(super) const FRAME_HEADER_LEN: usize = 8;

/// seq + received_at_ms + six u16 string lengths + two u32 blob lengths.
pub(super) const MIN_BODY_LEN: u32 = 8 + 8 + 6 * 2 + 4 + 4;

/// Splits a frame header into (body length, CRC32C).
pub(super) fn parse_frame_header(h: &[u8]) -> (u32, u32) {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    (len, crc)
}

/// Decodes a version 1 body whose CRC has been checked.
pub(super) fn decode(body: &[u8]) -> Result<(u64, EntryRef<'_>), String> {
    let mut cur = Cursor { body, pos: 0 };
    let seq = cur.u64()?;
    let received_at_ms = cur.u64()?;
    let mut strings = [""; 6];
    for (slot, name) in strings.iter_mut().zip(STRING_FIELDS) {
        *slot = cur.str16(name)?;
    }
    let ack = cur.bytes32("ack")?;
    let raw = cur.bytes32("raw")?;
    cur.end()?;
    let [peer, sending_app, sending_facility, control_id, message_type, ack_code] = strings;
    let entry = EntryRef {
        received_at_ms,
        peer,
        sending_app,
        sending_facility,
        control_id,
        message_type,
        ack_code,
        // Version 1 journaled an empty code exactly when no ACK was sent.
        ack_sent: !ack_code.is_empty(),
        reason: Reason::default(),
        ack,
        raw,
    };
    Ok((seq, entry))
}

const STRING_FIELDS: [&str; 6] = ["peer", "sending_app", "sending_facility", "control_id", "message_type", "ack_code"];

/// The version 1 encoder, kept for tests that read old journals.
#[cfg(test)]
pub(super) fn encode(seq: u64, e: &EntryRef<'_>, buf: &mut Vec<u8>) {
    let strings = [e.peer, e.sending_app, e.sending_facility, e.control_id, e.message_type, e.ack_code];
    let start = buf.len();
    buf.extend_from_slice(&[0; 8]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&e.received_at_ms.to_le_bytes());
    for s in strings {
        let s = super::entry::clip(s);
        buf.extend_from_slice(&(s.len() as u16).to_le_bytes());
        buf.extend_from_slice(s.as_bytes());
    }
    for blob in [e.ack, e.raw] {
        buf.extend_from_slice(&(blob.len() as u32).to_le_bytes());
        buf.extend_from_slice(blob);
    }
    let body_len = (buf.len() - start - FRAME_HEADER_LEN) as u32;
    let crc = crc32c::crc32c(&buf[start + FRAME_HEADER_LEN..]);
    buf[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::super::entry::tests::sample;
    use super::*;

    /// The v1 layout, byte for byte, as the old encoder wrote it.
    #[test]
    fn decodes_the_version_1_layout() {
        let body: &[u8] = &[
            1, 0, 0, 0, 0, 0, 0, 0, // seq
            2, 0, 0, 0, 0, 0, 0, 0, // received_at_ms
            1, 0, b'p', 0, 0, 0, 0, 1, 0, b'c', 0, 0, 0, 0, // strings, ack_code empty: no ACK sent
            0, 0, 0, 0, 2, 0, 0, 0, 0x00, 0xff, // ack, raw
        ];
        let (seq, e) = decode(body).unwrap();
        assert_eq!(
            (seq, e.peer, e.control_id, e.ack_code, e.ack_sent, e.raw),
            (1, "p", "c", "", false, &b"\x00\xff"[..])
        );
        let mut buf = Vec::new();
        encode(1, &e, &mut buf);
        assert_eq!(&buf[8..], body);
        assert_eq!(parse_frame_header(&buf[..8]), (body.len() as u32, crc32c::crc32c(body)));
        let (_, back) = decode(&buf[8..]).unwrap();
        assert!(!back.ack_sent);
        let mut buf = Vec::new();
        encode(2, &sample(b"x"), &mut buf);
        assert!(decode(&buf[8..]).unwrap().1.ack_sent);
    }
}
