//! The parser and the zero-copy views over a parsed message.
//!
//! [`Message::parse`] makes one `memchr` pass over the frame to find the segment
//! boundaries, checks every segment name, and takes the delimiters from MSH-1/MSH-2
//! and the charset from MSH-18. Nothing else is split up front: a [`Segment`],
//! [`Field`] or [`Value`] is a `Copy` view of a slice of the input, and fields,
//! repetitions, components and sub-components are found with `memchr` when asked
//! for. The views borrow the input (`'a`), not the `Message`, so they can outlive it.
//!
//! Numbering is HL7's: fields, repetitions, components and sub-components count
//! from 1; segments by position count from 0. An absent piece is an empty value.
//! Escapes and the charset are decoded only by `text()`. This module does not
//! validate message structure or data types, and parses one message per frame.

use std::borrow::Cow;

use memchr::{memchr2, memchr_iter};

use super::charset::{self, Charset, ParseOptions};
use super::error::{ParseError, ParseErrorKind};
use super::escape;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// Exactly `""`: HL7's "delete the stored value" (v2.5 chapter 2.5.3).
const NULL: &[u8] = b"\"\"";

/// The delimiters a message declares in MSH-1 and MSH-2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delimiters {
    /// MSH-1, usually `|`.
    pub field: u8,
    /// MSH-2.1, usually `^`.
    pub component: u8,
    /// MSH-2.2, usually `~`.
    pub repetition: u8,
    /// MSH-2.3, usually `\`.
    pub escape: Option<u8>,
    /// MSH-2.4, usually `&`; absent when MSH-2 has 3 characters.
    pub subcomponent: Option<u8>,
    /// MSH-2.5 (v2.7 truncation character, usually `#`): not a separator.
    pub truncation: Option<u8>,
}

impl Delimiters {
    /// `|^~\&`.
    pub const DEFAULT: Delimiters = Delimiters {
        field: b'|',
        component: b'^',
        repetition: b'~',
        escape: Some(b'\\'),
        subcomponent: Some(b'&'),
        truncation: None,
    };

    /// The separator and escape characters of MSH-2 as they were, and how many (3 or 4).
    /// The v2.7 truncation character is not included: see [`Self::msh2`].
    pub fn encoding_chars(&self) -> ([u8; 4], usize) {
        let (all, n) = self.msh2();
        ([all[0], all[1], all[2], all[3]], n.min(4))
    }

    /// All of MSH-2 as it was, including a v2.7 truncation character, and how many (3 to 5).
    pub fn msh2(&self) -> ([u8; 5], usize) {
        let mut out = [0u8; 5];
        let mut n = 0;
        let chars = [Some(self.component), Some(self.repetition), self.escape, self.subcomponent, self.truncation];
        for c in chars.into_iter().flatten() {
            out[n] = c;
            n += 1;
        }
        (out, n)
    }

    /// Reads MSH-1/MSH-2 from a frame that begins with `MSH`.
    fn from_msh(raw: &[u8]) -> Result<Delimiters, ParseError> {
        let bad = |offset| ParseError::new(ParseErrorKind::BadEncodingCharacters, 1, b"MSH", offset);
        let field = *raw.get(3).ok_or_else(|| bad(3).with_field(1))?;
        let rest = &raw[4..];
        let end = rest.iter().position(|&b| b == field || b == b'\r' || b == b'\n').unwrap_or(rest.len());
        let enc = &rest[..end];
        let usable = |b: &u8| b.is_ascii_graphic() && !b.is_ascii_alphanumeric();
        if !usable(&field) {
            return Err(bad(3).with_field(1));
        }
        let distinct = enc.iter().enumerate().all(|(i, b)| *b != field && !enc[..i].contains(b));
        if !(3..=5).contains(&enc.len()) || !enc.iter().all(usable) || !distinct {
            return Err(bad(4).with_field(2));
        }
        Ok(Delimiters {
            field,
            component: enc[0],
            repetition: enc[1],
            escape: Some(enc[2]),
            subcomponent: enc.get(3).copied(),
            truncation: enc.get(4).copied(),
        })
    }
}

/// What every view needs to split and decode.
#[derive(Clone, Copy)]
struct Ctx {
    delims: Delimiters,
    charset: Charset,
}

/// A parsed message: the input plus an index of its segments.
pub struct Message<'a> {
    raw: &'a [u8],
    ctx: Ctx,
    /// Start and end (exclusive, before the terminator) of each segment.
    segments: Vec<(u32, u32)>,
}

impl<'a> Message<'a> {
    /// Parses a message with the default [`ParseOptions`].
    ///
    /// # Errors
    /// See [`Message::parse_with`].
    pub fn parse(input: &'a [u8]) -> Result<Message<'a>, ParseError> {
        Self::parse_with(input, &ParseOptions::default())
    }

    /// Parses a message: CR, LF or CRLF end a segment (blank lines are skipped), a
    /// leading UTF-8 BOM is ignored, the last segment needs no terminator.
    ///
    /// # Errors
    /// [`ParseErrorKind::Empty`] for no segments, [`ParseErrorKind::MissingMsh`] if it
    /// does not begin with `MSH`, [`ParseErrorKind::BadEncodingCharacters`] for unusable
    /// MSH-1/MSH-2, [`ParseErrorKind::BadSegmentName`] for any line that is not a segment
    /// (nothing is dropped silently), [`ParseErrorKind::TooLarge`] above 4 GiB.
    pub fn parse_with(input: &'a [u8], opts: &ParseOptions) -> Result<Message<'a>, ParseError> {
        let raw = input.strip_prefix(UTF8_BOM).unwrap_or(input);
        if u32::try_from(raw.len()).is_err() {
            return Err(ParseError::new(ParseErrorKind::TooLarge, 0, b"", 0));
        }
        if raw.iter().all(|&b| b == b'\r' || b == b'\n') {
            return Err(ParseError::new(ParseErrorKind::Empty, 0, b"", 0));
        }
        if !raw.starts_with(b"MSH") {
            return Err(ParseError::new(ParseErrorKind::MissingMsh, 0, b"", 0));
        }
        let delims = Delimiters::from_msh(raw)?;
        let segments = index_segments(raw, delims.field)?;
        let mut msg = Message { raw, ctx: Ctx { delims, charset: Charset::Utf8 }, segments };
        let msh18 = msg.header().field(18).repetition(1).raw();
        msg.ctx.charset = charset::effective(msh18, raw, opts);
        Ok(msg)
    }

    /// The input without a leading UTF-8 BOM.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The delimiters from MSH-1/MSH-2.
    pub fn delimiters(&self) -> Delimiters {
        self.ctx.delims
    }

    /// The charset `text()` decodes with (MSH-18, else UTF-8 if valid, else the fallback).
    pub fn charset(&self) -> Charset {
        self.ctx.charset
    }

    /// How many segments the message has.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The segment at 0-based position `index`.
    pub fn segment(&self, index: usize) -> Option<Segment<'a>> {
        let &(start, end) = self.segments.get(index)?;
        let (start, end) = (start as usize, end as usize);
        Some(Segment { raw: &self.raw[start..end], before: &self.raw[..start], index: index as u32, ctx: self.ctx })
    }

    /// All segments in order.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'a>> + '_ {
        (0..self.segments.len()).filter_map(|i| self.segment(i))
    }

    /// The first segment called `name`.
    pub fn first(&self, name: &str) -> Option<Segment<'a>> {
        self.segments().find(|s| s.name() == name)
    }

    /// The MSH segment.
    pub fn header(&self) -> Segment<'a> {
        // parse_with checked that the input begins with MSH, so segment 0 exists;
        // the fallback only keeps this panic-free.
        self.segment(0).unwrap_or(Segment { raw: b"MSH", before: b"", index: 0, ctx: self.ctx })
    }
}

/// One pass over the frame: every run of CR/LF ends a segment, blank lines are skipped,
/// and each segment name is checked.
fn index_segments(raw: &[u8], field: u8) -> Result<Vec<(u32, u32)>, ParseError> {
    let mut segments = Vec::with_capacity(raw.len() / 64 + 4);
    let mut start = 0;
    while start < raw.len() {
        let end = memchr2(b'\r', b'\n', &raw[start..]).map_or(raw.len(), |n| start + n);
        let seg = &raw[start..end];
        // A line of only spaces or tabs (seen after the last segment of text files) holds nothing.
        if !seg.iter().all(|&b| b == b' ' || b == b'\t') {
            let name_ok = seg.len() >= 3 && seg[..3].iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            if !name_ok || seg.get(3).is_some_and(|&b| b != field) {
                let n = segments.len() + 1;
                return Err(ParseError::new(ParseErrorKind::BadSegmentName, n, seg, start));
            }
            // The caller checked raw.len() fits in u32.
            segments.push((start as u32, end as u32));
        }
        start = end + 1;
    }
    Ok(segments)
}

/// A segment: a cheap view of one line of the message.
#[derive(Clone, Copy)]
pub struct Segment<'a> {
    raw: &'a [u8],
    /// The message before this segment, to count occurrences.
    before: &'a [u8],
    index: u32,
    ctx: Ctx,
}

impl<'a> Segment<'a> {
    /// The 3-character segment name.
    pub fn name(&self) -> &'a str {
        // index_segments checked the name is 3 ASCII letters or digits.
        std::str::from_utf8(&self.raw[..3]).unwrap_or_default()
    }

    /// 0-based position in the message.
    pub fn index(&self) -> usize {
        self.index as usize
    }

    /// 1-based count among the segments with the same name (ERR-2.2 segment sequence).
    pub fn occurrence(&self) -> usize {
        let name = &self.raw[..3];
        1 + self.before.split(|&b| b == b'\r' || b == b'\n').filter(|l| l.starts_with(name)).count()
    }

    /// The segment's bytes, without its terminator.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// MSH, FHS and BHS number their field separator as field 1.
    fn is_header(&self) -> bool {
        matches!(&self.raw[..3], b"MSH" | b"FHS" | b"BHS")
    }

    /// The highest field number present (trailing empty fields count).
    pub fn field_count(&self) -> usize {
        let Some(body) = self.raw.get(3..) else {
            return 0;
        };
        memchr_iter(self.ctx.delims.field, body).count() + usize::from(self.is_header() && !body.is_empty())
    }

    /// Field `n` (from 1); MSH-1 and MSH-2 are returned literally, never split.
    pub fn field(&self, n: usize) -> Field<'a> {
        let body = self.raw.get(4..).unwrap_or_default();
        let fs = Some(self.ctx.delims.field);
        match (n, self.is_header()) {
            (0, _) => self.make_field(b"", false),
            (1, true) => self.make_field(self.raw.get(3..4).unwrap_or_default(), true),
            (2, true) => self.make_field(Pieces::new(body, fs).next().unwrap_or_default(), true),
            (n, true) => self.make_field(nth(body, fs, n - 1), false),
            (n, false) => self.make_field(if self.raw.len() > 3 { nth(body, fs, n) } else { b"" }, false),
        }
    }

    /// All fields from 1 to [`Self::field_count`], in one pass.
    pub fn fields(&self) -> impl Iterator<Item = Field<'a>> + 'a {
        let this = *self;
        let header = self.is_header() && self.raw.len() > 3;
        let sep = self.raw.get(3..4).unwrap_or_default();
        let body = Pieces::new(self.raw.get(4..).unwrap_or_default(), Some(self.ctx.delims.field));
        let body = if self.raw.len() > 3 { body } else { Pieces::done() };
        let lead = header.then(|| this.make_field(sep, true));
        lead.into_iter().chain(body.enumerate().map(move |(i, raw)| this.make_field(raw, header && i == 0)))
    }

    fn make_field(&self, raw: &'a [u8], literal: bool) -> Field<'a> {
        Field { raw, ctx: self.ctx, literal }
    }

    /// Every field boundary, found in one pass: for a reader that asks for
    /// many fields of one segment (the mapping stage), where [`Self::field`]
    /// would scan from the start each time.
    pub fn field_table(&self) -> FieldTable<'a> {
        let mut bounds = Vec::with_capacity(32);
        if self.raw.len() > 3 {
            // raw fits in u32: Message::parse_with checked the frame length.
            let mut start = 0;
            for piece in Pieces::new(&self.raw[4..], Some(self.ctx.delims.field)) {
                bounds.push((start as u32, (start + piece.len()) as u32));
                start += piece.len() + 1;
            }
        }
        FieldTable { seg: *self, bounds }
    }
}

/// A segment's field boundaries (see [`Segment::field_table`]).
#[derive(Clone)]
pub struct FieldTable<'a> {
    seg: Segment<'a>,
    /// Start and end, within the bytes after the segment name's separator,
    /// of each piece between field separators.
    bounds: Vec<(u32, u32)>,
}

impl<'a> FieldTable<'a> {
    /// The same as [`Segment::field`], without rescanning.
    pub fn field(&self, n: usize) -> Field<'a> {
        let header = self.seg.is_header();
        if n == 0 || (header && n <= 2) {
            return self.seg.field(n);
        }
        let piece = if header { n - 1 } else { n };
        match self.bounds.get(piece - 1) {
            Some(&(start, end)) => self.seg.make_field(&self.seg.raw[4 + start as usize..4 + end as usize], false),
            None => self.seg.make_field(b"", false),
        }
    }
}

/// A field: all its repetitions.
#[derive(Clone, Copy)]
pub struct Field<'a> {
    raw: &'a [u8],
    ctx: Ctx,
    /// MSH-1 and MSH-2 hold delimiters themselves and are never split or unescaped.
    literal: bool,
}

impl<'a> Field<'a> {
    /// The field's bytes as sent.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// True if the field is empty (not sent).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// True if the field is exactly `""`: HL7's "delete this value".
    pub fn is_null(&self) -> bool {
        self.raw == NULL
    }

    /// How many repetitions; 0 when empty.
    pub fn repetition_count(&self) -> usize {
        self.as_value().count(self.split_by())
    }

    /// Repetition `r` (from 1).
    pub fn repetition(&self, r: usize) -> Value<'a> {
        self.as_value().piece(self.split_by(), r)
    }

    /// All repetitions; none when empty.
    pub fn repetitions(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        self.as_value().pieces(self.split_by())
    }

    /// Component `c` (from 1) of the first repetition.
    pub fn component(&self, c: usize) -> Value<'a> {
        self.repetition(1).component(c)
    }

    /// The whole field as one value, repetition separators and all.
    pub fn as_value(&self) -> Value<'a> {
        Value { raw: self.raw, ctx: self.ctx, literal: self.literal }
    }

    /// The whole field, escapes and charset decoded.
    pub fn text(&self) -> Cow<'a, str> {
        self.as_value().text()
    }

    fn split_by(&self) -> Option<u8> {
        (!self.literal).then_some(self.ctx.delims.repetition)
    }
}

/// A repetition, component or sub-component.
#[derive(Clone, Copy)]
pub struct Value<'a> {
    raw: &'a [u8],
    ctx: Ctx,
    literal: bool,
}

impl<'a> Value<'a> {
    /// The value's bytes as sent.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// True if the value is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// True if the value is exactly `""`.
    pub fn is_null(&self) -> bool {
        self.raw == NULL
    }

    /// Component `c` (from 1).
    pub fn component(&self, c: usize) -> Value<'a> {
        self.piece(self.component_sep(), c)
    }

    /// Sub-component `s` (from 1).
    pub fn subcomponent(&self, s: usize) -> Value<'a> {
        self.piece(self.subcomponent_sep(), s)
    }

    /// How many components; 0 when empty.
    pub fn component_count(&self) -> usize {
        self.count(self.component_sep())
    }

    /// How many sub-components; 0 when empty.
    pub fn subcomponent_count(&self) -> usize {
        self.count(self.subcomponent_sep())
    }

    /// All components; none when empty.
    pub fn components(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        self.pieces(self.component_sep())
    }

    /// All sub-components; none when empty.
    pub fn subcomponents(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        self.pieces(self.subcomponent_sep())
    }

    /// The value with escapes decoded, then the charset; borrowed when nothing changes.
    pub fn text(&self) -> Cow<'a, str> {
        let bytes = if self.literal { Cow::Borrowed(self.raw) } else { escape::decode(self.raw, &self.ctx.delims) };
        charset::decode(bytes, self.ctx.charset)
    }

    fn component_sep(&self) -> Option<u8> {
        (!self.literal).then_some(self.ctx.delims.component)
    }

    fn subcomponent_sep(&self) -> Option<u8> {
        self.ctx.delims.subcomponent.filter(|_| !self.literal)
    }

    fn with_raw(&self, raw: &'a [u8]) -> Value<'a> {
        Value { raw, ctx: self.ctx, literal: self.literal }
    }

    fn piece(&self, sep: Option<u8>, n: usize) -> Value<'a> {
        self.with_raw(if n == 0 { b"" } else { nth(self.raw, sep, n) })
    }

    fn count(&self, sep: Option<u8>) -> usize {
        match sep {
            _ if self.raw.is_empty() => 0,
            Some(sep) => memchr_iter(sep, self.raw).count() + 1,
            None => 1,
        }
    }

    fn pieces(&self, sep: Option<u8>) -> impl Iterator<Item = Value<'a>> + 'a {
        let this = *self;
        let pieces = if self.raw.is_empty() { Pieces::done() } else { Pieces::new(self.raw, sep) };
        pieces.map(move |raw| this.with_raw(raw))
    }
}

/// Piece `n` (from 1) of `raw` split by `sep`; empty if absent.
fn nth(raw: &[u8], sep: Option<u8>, n: usize) -> &[u8] {
    Pieces::new(raw, sep).nth(n.saturating_sub(1)).unwrap_or_default()
}

/// The first `sep` in `hay`. HL7 pieces are mostly a few bytes long, where a
/// plain loop beats a SIMD search's setup (callgrind: ~47 instructions per
/// `memchr` call); past the first 32 bytes the search switches to `memchr`, so
/// a 16 MB embedded document is still scanned at memory speed.
#[inline]
pub(crate) fn find(sep: u8, hay: &[u8]) -> Option<usize> {
    const SHORT: usize = 32;
    let head = &hay[..hay.len().min(SHORT)];
    if let Some(i) = head.iter().position(|&b| b == sep) {
        return Some(i);
    }
    hay.get(SHORT..).and_then(|rest| memchr::memchr(sep, rest)).map(|i| i + SHORT)
}

/// Splits on a byte; `None` yields the whole input once.
struct Pieces<'a> {
    hay: &'a [u8],
    /// Start of the next piece; `None` when done.
    next: Option<usize>,
    sep: Option<u8>,
}

impl<'a> Pieces<'a> {
    fn new(hay: &'a [u8], sep: Option<u8>) -> Self {
        Pieces { hay, next: Some(0), sep }
    }

    fn done() -> Self {
        Pieces { hay: b"", next: None, sep: None }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.next?;
        let rest = self.hay.get(start..)?;
        match self.sep.and_then(|sep| find(sep, rest)) {
            Some(len) => {
                self.next = Some(start + len + 1);
                rest.get(..len)
            }
            None => {
                self.next = None;
                Some(rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn field_table_agrees_with_field() {
        let raw =
            b"MSH|^~\\&|APP|FAC||X|20260101||ADT^A01|1|P|2.5\rPID|1||123^^^NHS^NH~9^^^RJ1^MR||DOE^J\rZZZ\rPV1\rNTE|";
        let msg = Message::parse(raw).unwrap();
        for seg in msg.segments() {
            let table = seg.field_table();
            for n in 0..20 {
                assert_eq!(table.field(n).raw(), seg.field(n).raw(), "{}-{n}", seg.name());
                assert_eq!(table.field(n).text(), seg.field(n).text(), "{}-{n}", seg.name());
            }
        }
    }

    use super::*;

    const ADT: &[u8] = include_bytes!("../../fixtures/adt-a01.hl7");
    const ORU: &[u8] = include_bytes!("../../fixtures/oru-r01.hl7");
    const MDM: &[u8] = include_bytes!("../../fixtures/mdm-t02.hl7");
    const CUSTOM: &[u8] = include_bytes!("../../fixtures/escapes-custom-delims.hl7");

    fn parse(s: &str) -> Message<'_> {
        Message::parse(s.as_bytes()).unwrap()
    }

    fn err(s: &[u8]) -> ParseError {
        Message::parse(s).err().unwrap()
    }

    #[test]
    fn default_delimiters() {
        let m = parse("MSH|^~\\&|PAS|RJ1\rPID|1");
        assert_eq!(m.delimiters(), Delimiters::DEFAULT);
        assert_eq!(m.delimiters().encoding_chars(), (*b"^~\\&", 4));
        let h = m.header();
        assert_eq!(h.field(1).raw(), b"|");
        assert_eq!(h.field(2).raw(), b"^~\\&");
        assert_eq!(h.field(2).as_value().component_count(), 1);
        assert_eq!(h.field(2).text(), "^~\\&");
        assert_eq!(h.field(3).raw(), b"PAS");
        assert_eq!(h.field_count(), 4);
        let names: Vec<_> = h.fields().map(|f| f.raw()).collect();
        assert_eq!(names, [&b"|"[..], b"^~\\&", b"PAS", b"RJ1"]);
    }

    #[test]
    fn custom_delimiters() {
        let m = Message::parse(CUSTOM).unwrap();
        let d = m.delimiters();
        assert_eq!(
            (d.field, d.component, d.repetition, d.escape, d.subcomponent),
            (b'#', b'@', b'!', Some(b'$'), Some(b'%'))
        );
        assert_eq!(m.header().field(9).component(2).raw(), b"R01");
        let pid = m.first("PID").unwrap();
        assert_eq!(pid.field(3).repetition(2).component(4).raw(), b"RJ1");
        assert_eq!(pid.field(5).component(1).text(), "SMITH#JONES");
        let obx = m.segment(3).unwrap();
        assert_eq!(obx.field(5).text(), "Hash # at @ bang ! dollar $ pct % end\r\nnext\nlast");
        let obx2 = m.segment(4).unwrap();
        assert_eq!(obx2.field(5).repetition(1).component(1).subcomponent(2).raw(), b"ESBL");
        assert!(obx2.field(6).is_null());
        assert_eq!(m.first("NTE").unwrap().field(3).text(), "C:$temp$x $Zunknown$ kept$");
    }

    #[test]
    fn field_separator_caret() {
        let m = parse("MSH^~|\\&^APP^FAC^^^^^ADT~A01\rPID^1^^A|B~C");
        assert_eq!(m.header().field(3).raw(), b"APP");
        assert_eq!(m.header().field(9).component(2).raw(), b"A01");
        let pid = m.first("PID").unwrap();
        assert_eq!(pid.field(3).repetition_count(), 2);
        assert_eq!(pid.field(3).repetition(2).component(2).raw(), b"C");
    }

    #[test]
    fn three_and_five_encoding_characters() {
        let m = parse("MSH|^~\\|APP|FAC\rPID|1||a&b^c");
        assert_eq!(m.delimiters().subcomponent, None);
        assert_eq!(m.delimiters().encoding_chars(), ([b'^', b'~', b'\\', 0], 3));
        assert_eq!(m.first("PID").unwrap().field(3).component(1).subcomponent(1).raw(), b"a&b");
        // v2.7: the fifth character is the truncation character, not a separator,
        // and MSH-3 is still the sending application.
        let m = parse("MSH|^~\\&#|APP|FAC||||||||2.7\rOBX|1|ST|||a#b\\P\\");
        assert_eq!(m.delimiters().truncation, Some(b'#'));
        assert_eq!(m.delimiters().msh2(), (*b"^~\\&#", 5));
        assert_eq!(m.header().field(2).raw(), b"^~\\&#");
        assert_eq!(m.header().field(3).raw(), b"APP");
        assert_eq!(m.header().field(12).raw(), b"2.7");
        assert_eq!(m.first("OBX").unwrap().field(5).text(), "a#b#");
    }

    #[test]
    fn bad_encoding_characters() {
        for bad in
            ["MSH|^~|A", "MSH|^^\\&|A", "MSH|^~\\&$%|A", "MSH|A~\\&|x", "MSH|^~|&|x", "MSH", "MSHA^~\\&", "MSH|^ \\&|"]
        {
            let e = err(bad.as_bytes());
            assert_eq!(e.kind, ParseErrorKind::BadEncodingCharacters, "{bad}");
            assert_eq!(e.segment, 1);
        }
    }

    #[test]
    fn terminators_blank_lines_bom() {
        for sep in ["\r", "\n", "\r\n", "\r\n\r\n", "\n\n\r"] {
            let s = format!("\u{feff}MSH|^~\\&|A{sep}PID|1{sep}{sep}PV1|1");
            let m = parse(&s);
            assert_eq!(m.segment_count(), 3, "{sep:?}");
            assert!(m.raw().starts_with(b"MSH"));
            assert_eq!(m.segment(2).unwrap().raw(), b"PV1|1");
            let s = format!("{s}{sep}");
            assert_eq!(parse(&s).segment_count(), 3);
            let s = format!("{s} \t{sep}");
            assert_eq!(parse(&s).segment_count(), 3);
        }
    }

    #[test]
    fn empty_and_trailing_fields() {
        let m = parse("MSH|^~\\&|A\rPID|1||x||\rZZZ\rZZ1|");
        let pid = m.first("PID").unwrap();
        assert_eq!(pid.field_count(), 5);
        assert_eq!(pid.fields().count(), 5);
        assert_eq!(pid.field(3).raw(), b"x");
        assert!(pid.field(2).is_empty() && pid.field(5).is_empty() && pid.field(6).is_empty());
        assert!(pid.field(0).is_empty());
        assert_eq!(pid.field(2).repetition_count(), 0);
        assert_eq!(m.first("ZZZ").unwrap().field_count(), 0);
        assert_eq!(m.first("ZZZ").unwrap().fields().count(), 0);
        assert_eq!(m.first("ZZ1").unwrap().field_count(), 1);
    }

    #[test]
    fn repetitions_components_subcomponents() {
        let m = Message::parse(ADT).unwrap();
        let pid = m.first("PID").unwrap();
        let ids = pid.field(3);
        assert_eq!(ids.repetition_count(), 2);
        assert_eq!(ids.repetition(1).component(1).raw(), b"9434765919");
        assert_eq!(ids.repetition(2).component(5).raw(), b"MR");
        assert_eq!(ids.repetition(3).raw(), b"");
        assert_eq!(ids.component(4).raw(), b"NHS");
        assert_eq!(ids.repetitions().map(|r| r.component(4).text().into_owned()).collect::<Vec<_>>(), ["NHS", "RJ1"]);
        assert_eq!(pid.field(32).raw(), b"NSTS01");
        assert_eq!(pid.field(5).component(1).text(), "O'BRIEN");
        assert_eq!(pid.field(5).as_value().component_count(), 5);
        assert_eq!(m.first("PV1").unwrap().field(19).component(1).raw(), b"V000123456");
        assert_eq!(m.first("AL1").unwrap().field(5).text(), "Rash\nAnaphylaxis");
        let v = parse("MSH|^~\\&|A\rZZZ|a&b&c^d");
        let f = v.first("ZZZ").unwrap().field(1);
        assert_eq!(f.component(1).subcomponent_count(), 3);
        assert_eq!(f.component(1).subcomponent(3).raw(), b"c");
        assert_eq!(f.component(2).subcomponent(1).raw(), b"d");
        assert_eq!(f.component(1).subcomponent(0).raw(), b"");
        assert_eq!(f.component(9).subcomponent(9).raw(), b"");
    }

    #[test]
    fn null_versus_empty() {
        let m = parse("MSH|^~\\&|A\rPID|\"\"||\"\"^x|\"");
        let pid = m.first("PID").unwrap();
        assert!(pid.field(1).is_null() && !pid.field(1).is_empty());
        assert!(!pid.field(2).is_null() && pid.field(2).is_empty());
        assert!(!pid.field(3).is_null() && pid.field(3).component(1).is_null());
        assert!(!pid.field(4).is_null());
    }

    #[test]
    fn positions_and_occurrences() {
        let m = Message::parse(ORU).unwrap();
        assert_eq!(m.segment_count(), 36);
        let obx = m.segment(10).unwrap();
        assert_eq!((obx.name(), obx.index(), obx.occurrence()), ("OBX", 10, 5));
        assert_eq!(m.header().occurrence(), 1);
        assert_eq!(m.segments().filter(|s| s.name() == "OBX").count(), 30);
        assert!(m.segment(36).is_none());
        assert!(m.first("ZZZ").is_none());
        assert_eq!(m.first("OBR").unwrap().field(3).component(1).raw(), b"L26112034567");
    }

    #[test]
    fn broken_segment_is_an_error_with_its_position() {
        let e = err(b"MSH|^~\\&|A\rEVN|A01\rPID|1\rP|D|x\rPV1|1");
        assert_eq!(
            (e.kind, e.segment, e.segment_name.as_str(), e.offset),
            (ParseErrorKind::BadSegmentName, 4, "P|D", 25)
        );
        assert_eq!(e.kind.hl7_error_code(), 100);
        for junk in [&b"\x00\x01\xff|x"[..], b"pid|1", b"PIDX|1", b"PI", b"PID^1"] {
            let mut s = b"MSH|^~\\&|A\r".to_vec();
            s.extend_from_slice(junk);
            assert_eq!(err(&s).kind, ParseErrorKind::BadSegmentName, "{junk:?}");
        }
    }

    #[test]
    fn missing_msh_and_empty() {
        assert_eq!(err(b"").kind, ParseErrorKind::Empty);
        assert_eq!(err(b"\r\n\r").kind, ParseErrorKind::Empty);
        assert_eq!(err(b"PID|1\rMSH|^~\\&|").kind, ParseErrorKind::MissingMsh);
        assert_eq!(err(b"FHS|^~\\&|\rMSH|^~\\&|").kind, ParseErrorKind::MissingMsh);
        assert_eq!(err(b"\xEF\xBB\xBFmsh|^~\\&|").kind, ParseErrorKind::MissingMsh);
    }

    #[test]
    fn text_escapes_and_charsets() {
        let m = parse("MSH|^~\\&|A\rOBX|1|TX|||ü€\\S\\y~C:\\temp\\|\\H\\x\\N\\|a\\X0D0A\\b|end\\");
        let obx = m.first("OBX").unwrap();
        assert_eq!(obx.field(5).repetition(1).text(), "ü€^y");
        assert_eq!(obx.field(5).repetition(2).text(), "C:\\temp\\");
        assert_eq!(obx.field(6).text(), "x");
        assert_eq!(obx.field(7).text(), "a\r\nb");
        assert_eq!(obx.field(8).text(), "end\\");
        assert!(matches!(obx.field(1).text(), Cow::Borrowed("1")));
        assert_eq!(m.charset(), Charset::Utf8);

        let latin1 = b"MSH|^~\\&|A|||||||||||||||8859/1\rPID|1||||M\xfcller^\\XE9\\";
        let m = Message::parse(latin1).unwrap();
        assert_eq!(m.charset(), Charset::Latin1);
        assert_eq!(m.first("PID").unwrap().field(5).text(), "Müller^é");
        let unknown = b"MSH|^~\\&|A\rPID|1||||M\xfcller";
        assert_eq!(Message::parse(unknown).unwrap().charset(), Charset::Windows1252);
        let opts = ParseOptions { fallback_charset: Charset::Latin1 };
        assert_eq!(Message::parse_with(unknown, &opts).unwrap().charset(), Charset::Latin1);
        assert_eq!(
            Message::parse(MDM).unwrap().first("OBX").unwrap().field(5).text(),
            "Discharge summary for Siobhán O'Brien"
        );
        let oru = Message::parse(ORU).unwrap();
        assert_eq!(oru.charset(), Charset::Latin1);
        assert_eq!(oru.first("NTE").unwrap().field(3).text(), "Sample received 14:45; analysed on analyser |2|.");
    }

    /// Every prefix and many single-byte mutations of the fixtures: no panic, and text() on every piece.
    #[test]
    fn no_panics_on_prefixes_and_mutations() {
        fn walk(input: &[u8]) {
            let Ok(m) = Message::parse(input) else { return };
            for seg in m.segments() {
                let _ = (seg.name(), seg.occurrence(), seg.field_count(), seg.field(seg.field_count() + 1).text());
                for f in seg.fields() {
                    let _ = (f.text(), f.is_null(), f.component(2).text());
                    for r in f.repetitions() {
                        for c in r.components() {
                            let _ = c.text();
                            c.subcomponents().for_each(|s| drop(s.text()));
                        }
                    }
                }
            }
        }
        for fixture in [ADT, MDM, CUSTOM, ORU] {
            // Keep the debug-build run short: the large ORU is sampled, the others done fully.
            let step = if fixture.len() > 1000 { 5 } else { 1 };
            (0..=fixture.len()).step_by(step).for_each(|n| walk(&fixture[..n]));
            for i in (0..fixture.len()).step_by(step * 2) {
                for b in [0u8, b'|', b'^', b'\\', b'&', b'#', b'\r', b'M', 0xC3, 0xFF] {
                    let mut m = fixture.to_vec();
                    m[i] = b;
                    walk(&m);
                }
            }
        }
    }
}
