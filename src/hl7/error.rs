//! Why a frame could not be read as an HL7 v2 message, and where.
//!
//! A [`ParseError`] carries the position (segment, field, byte offset) so that the
//! ACK builder can fill ERR-2 and an operator can find the bad line; the mapping
//! from a kind to an ACK code is [`ParseErrorKind::hl7_error_code`].

use std::fmt;

/// A message that could not be parsed, with where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based position of the segment in the message, 0 if the error is not in a segment.
    pub segment: usize,
    /// The segment's name as found (up to 3 bytes, non-printable bytes escaped), empty if none.
    pub segment_name: String,
    /// 1-based field number, 0 if the error is not field-specific.
    pub field: usize,
    /// Byte offset of the problem in the input (after any UTF-8 BOM).
    pub offset: usize,
    /// What went wrong.
    pub kind: ParseErrorKind,
}

/// What went wrong while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The input was empty or held only segment terminators.
    #[error("message is empty")]
    Empty,
    /// The input did not begin with an MSH segment (after an optional UTF-8 BOM).
    #[error("message must begin with an MSH segment")]
    MissingMsh,
    /// MSH-1/MSH-2 do not give usable delimiters.
    #[error("MSH-1/MSH-2 must be a field separator and 3 to 5 distinct encoding characters, none a letter, digit, space or control character (e.g. MSH|^~\\&|)")]
    BadEncodingCharacters,
    /// A segment name that is not 3 upper-case ASCII letters or digits followed by the field separator.
    #[error("segment name must be 3 upper-case letters or digits followed by the field separator")]
    BadSegmentName,
    /// The input is larger than the parser's 4 GiB span limit.
    #[error("message is larger than 4 GiB")]
    TooLarge,
}

impl ParseErrorKind {
    /// The HL7 table 0357 error code for ERR-3 when this error is NAK-ed.
    pub fn hl7_error_code(&self) -> u16 {
        match self {
            // 100: segment sequence error (missing MSH, a line that is not a segment).
            ParseErrorKind::Empty | ParseErrorKind::MissingMsh | ParseErrorKind::BadSegmentName => 100,
            // 102: data type error (MSH-2 is not a valid ST of encoding characters).
            ParseErrorKind::BadEncodingCharacters => 102,
            // 207: application internal error (we cannot index it).
            ParseErrorKind::TooLarge => 207,
        }
    }
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, segment: usize, name: &[u8], offset: usize) -> Self {
        let name = &name[..name.len().min(3)];
        ParseError { segment, segment_name: name.escape_ascii().to_string(), field: 0, offset, kind }
    }

    pub(crate) fn with_field(mut self, field: usize) -> Self {
        self.field = field;
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segment > 0 {
            write!(f, "segment {} ('{}')", self.segment, self.segment_name)?;
            if self.field > 0 {
                write!(f, " field {}", self.field)?;
            }
        } else {
            f.write_str("message")?;
        }
        write!(f, " at byte {}: {}", self.offset, self.kind)
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_says_where_and_what() {
        let e = ParseError::new(ParseErrorKind::BadSegmentName, 4, b"P|D|x", 120);
        assert_eq!(
            e.to_string(),
            "segment 4 ('P|D') at byte 120: segment name must be 3 upper-case letters or digits followed by the field separator"
        );
        let e = ParseError::new(ParseErrorKind::BadEncodingCharacters, 1, b"MSH", 4).with_field(2);
        assert!(e.to_string().starts_with("segment 1 ('MSH') field 2 at byte 4: MSH-1/MSH-2"));
        let e = ParseError::new(ParseErrorKind::MissingMsh, 0, b"", 0);
        assert_eq!(e.to_string(), "message at byte 0: message must begin with an MSH segment");
    }

    #[test]
    fn binary_names_are_escaped() {
        let e = ParseError::new(ParseErrorKind::BadSegmentName, 2, b"\x00\xffA", 9);
        assert_eq!(e.segment_name, "\\x00\\xffA");
    }

    #[test]
    fn error_codes_follow_table_0357() {
        assert_eq!(ParseErrorKind::MissingMsh.hl7_error_code(), 100);
        assert_eq!(ParseErrorKind::BadSegmentName.hl7_error_code(), 100);
        assert_eq!(ParseErrorKind::BadEncodingCharacters.hl7_error_code(), 102);
    }
}
