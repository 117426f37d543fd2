//! A journal entry as it travels between nodes (the cluster's stream): the
//! entry body of `docs/journal-format.md` (format 2), without the record
//! framing and CRC, which the stream's own checks replace.

use super::entry::{self, Entry};
use super::JournalError;

/// The current entry format version, carried beside the body.
pub const FORMAT_VERSION: u16 = 2;

/// Encodes `e` as the journal does.
///
/// # Errors
/// [`JournalError::TooLarge`]: cannot happen for an entry read from a journal.
pub fn encode(e: &Entry) -> Result<Vec<u8>, JournalError> {
    let mut buf = Vec::with_capacity(e.raw.len() + e.ack.len() + 256);
    entry::encode(e.seq, &e.as_ref(), &mut buf)?;
    // encode() writes the body after a record header; the wire carries the body only.
    Ok(buf.split_off(super::record::HEADER_LEN))
}

/// Decodes a body written by [`encode`].
///
/// # Errors
/// The bytes are not a well-formed entry body (the reason says where).
pub fn decode(body: &[u8]) -> Result<Entry, String> {
    let (seq, r) = entry::decode(body)?;
    Ok(Entry::from_ref(seq, FORMAT_VERSION, &r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_survives_the_wire() {
        let raw = b"MSH|^~\\&|PAS|RJ1|||20260101||ADT^A01|c1|P|2.5\rPID|||943 476 5919\r";
        let e = Entry::from_ref(42, FORMAT_VERSION, &entry::tests::sample(raw));
        let back = decode(&encode(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        assert!(decode(&encode(&e).unwrap()[..10]).is_err(), "a cut body is refused, not misread");
    }
}
