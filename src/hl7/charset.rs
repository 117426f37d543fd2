//! Character sets (MSH-18, HL7 table 0211) and turning value bytes into text.
//!
//! The parser works on bytes; only [`super::Value::text`] decodes. The effective
//! charset is chosen once per message: MSH-18 when it names one we know, else
//! UTF-8 when the whole frame is valid UTF-8, else the configured fallback
//! ([`ParseOptions::fallback_charset`], Windows-1252 by default: what most UK PAS
//! systems actually send). This module does not transcode whole messages.
//!
//! An MSH-18 we do not know is not decided here: intake rejects the message or
//! lets it through with the fallback and counts it, as configured
//! (`hl7.unknown_charset`), so that a guess is never silent.

use std::borrow::Cow;

/// A character set a message's text can be decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    /// US-ASCII (MSH-18 `ASCII`). Non-ASCII bytes are decoded as UTF-8 if valid, else Windows-1252.
    Ascii,
    /// UTF-8 (MSH-18 `UNICODE UTF-8`). Invalid sequences become U+FFFD.
    Utf8,
    /// ISO-8859-1 (MSH-18 `8859/1`): every byte is the code point of the same value.
    Latin1,
    /// ISO-8859-15 (MSH-18 `8859/15`): Latin-1 with the euro sign.
    Latin9,
    /// Windows-1252 (not in table 0211, but sent as `WINDOWS-1252`/`CP1252`).
    Windows1252,
}

/// MSH-18 values we decode (compared case-insensitively): HL7 table 0211 names,
/// their DICOM-style `ISO IR` aliases, and the non-table names senders use.
/// Not here: `UNICODE` (table 0211 leaves its encoding form open: UCS-2 or
/// UTF-8), UTF-16/32, the other ISO 8859 parts and the CJK sets.
const MSH18_NAMES: &[(&str, Charset)] = &[
    ("ASCII", Charset::Ascii),
    ("ISO IR6", Charset::Ascii),
    ("UNICODE UTF-8", Charset::Utf8),
    ("UTF-8", Charset::Utf8),
    ("UTF8", Charset::Utf8),
    ("8859/1", Charset::Latin1),
    ("ISO IR100", Charset::Latin1),
    ("8859/15", Charset::Latin9),
    ("WINDOWS-1252", Charset::Windows1252),
    ("CP1252", Charset::Windows1252),
];

impl Charset {
    /// The charset named by (the first repetition of) MSH-18, or `None` if empty or unknown.
    pub fn from_msh18(v: &[u8]) -> Option<Charset> {
        let v = v.trim_ascii();
        MSH18_NAMES.iter().find(|(name, _)| v.eq_ignore_ascii_case(name.as_bytes())).map(|&(_, c)| c)
    }

    /// The MSH-18 values [`Charset::from_msh18`] knows, comma-separated, for error texts.
    pub fn msh18_names() -> String {
        MSH18_NAMES.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
    }

    /// The name used in configuration files and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Charset::Ascii => "ascii",
            Charset::Utf8 => "utf-8",
            Charset::Latin1 => "iso-8859-1",
            Charset::Latin9 => "iso-8859-15",
            Charset::Windows1252 => "windows-1252",
        }
    }

    /// Parses a configuration name such as `utf-8`, `latin1` or `windows-1252` (case-insensitive).
    pub fn from_config_name(s: &str) -> Option<Charset> {
        let s = s.trim().to_ascii_lowercase();
        Some(match s.as_str() {
            "ascii" | "us-ascii" => Charset::Ascii,
            "utf-8" | "utf8" => Charset::Utf8,
            "iso-8859-1" | "latin1" | "latin-1" | "8859/1" => Charset::Latin1,
            "iso-8859-15" | "latin9" | "latin-9" | "8859/15" => Charset::Latin9,
            "windows-1252" | "cp1252" => Charset::Windows1252,
            _ => return None,
        })
    }
}

/// How to parse a message.
#[derive(Clone, Copy, Debug)]
pub struct ParseOptions {
    /// Used when MSH-18 is empty or unknown and the bytes are not valid UTF-8.
    pub fallback_charset: Charset,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions { fallback_charset: Charset::Windows1252 }
    }
}

/// The charset to decode a whole message with (see the module docs).
pub(crate) fn effective(msh18: &[u8], raw: &[u8], opts: &ParseOptions) -> Charset {
    match Charset::from_msh18(msh18) {
        Some(c) => c,
        None if std::str::from_utf8(raw).is_ok() => Charset::Utf8,
        None => opts.fallback_charset,
    }
}

/// Decodes bytes to text, borrowing when the bytes are already valid text in `charset`.
pub(crate) fn decode(bytes: Cow<'_, [u8]>, charset: Charset) -> Cow<'_, str> {
    if bytes.is_ascii() {
        return match bytes {
            // ASCII is valid UTF-8, so neither conversion can fail.
            Cow::Borrowed(b) => Cow::Borrowed(std::str::from_utf8(b).unwrap_or_default()),
            Cow::Owned(v) => Cow::Owned(String::from_utf8(v).unwrap_or_default()),
        };
    }
    match charset {
        Charset::Utf8 => utf8_lossy(bytes),
        Charset::Ascii if std::str::from_utf8(&bytes).is_ok() => utf8_lossy(bytes),
        Charset::Ascii | Charset::Windows1252 => with_encoding(&bytes, encoding_rs::WINDOWS_1252),
        Charset::Latin9 => with_encoding(&bytes, encoding_rs::ISO_8859_15),
        // encoding_rs maps the label ISO-8859-1 to Windows-1252 (WHATWG); HL7 means the real thing.
        Charset::Latin1 => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

fn utf8_lossy(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    match bytes {
        Cow::Borrowed(b) => String::from_utf8_lossy(b),
        Cow::Owned(v) => match String::from_utf8(v) {
            Ok(s) => Cow::Owned(s),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
    }
}

fn with_encoding<'a>(bytes: &[u8], enc: &'static encoding_rs::Encoding) -> Cow<'a, str> {
    Cow::Owned(enc.decode_without_bom_handling(bytes).0.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msh18_names() {
        assert_eq!(Charset::from_msh18(b"ASCII"), Some(Charset::Ascii));
        assert_eq!(Charset::from_msh18(b"UNICODE UTF-8"), Some(Charset::Utf8));
        assert_eq!(Charset::from_msh18(b"utf-8"), Some(Charset::Utf8));
        assert_eq!(Charset::from_msh18(b"8859/1"), Some(Charset::Latin1));
        assert_eq!(Charset::from_msh18(b"8859/15"), Some(Charset::Latin9));
        assert_eq!(Charset::from_msh18(b"WINDOWS-1252"), Some(Charset::Windows1252));
        assert_eq!(Charset::from_msh18(b"CP1252"), Some(Charset::Windows1252));
        assert_eq!(Charset::from_msh18(b"ISO IR6"), Some(Charset::Ascii));
        assert_eq!(Charset::from_msh18(b"ISO IR100"), Some(Charset::Latin1));
        assert_eq!(Charset::from_msh18(b"UNICODE"), None);
        assert_eq!(Charset::from_msh18(b""), None);
        assert_eq!(Charset::from_msh18(b"ISO IR87"), None);
    }

    #[test]
    fn config_names_round_trip() {
        for c in [Charset::Ascii, Charset::Utf8, Charset::Latin1, Charset::Latin9, Charset::Windows1252] {
            assert_eq!(Charset::from_config_name(c.name()), Some(c));
        }
        assert_eq!(Charset::from_config_name("Latin1"), Some(Charset::Latin1));
        assert_eq!(Charset::from_config_name("klingon"), None);
    }

    #[test]
    fn decoding() {
        let b = |s: &'static [u8]| Cow::Borrowed(s);
        assert!(matches!(decode(b(b"abc"), Charset::Latin1), Cow::Borrowed("abc")));
        assert!(matches!(decode(b("Müller".as_bytes()), Charset::Utf8), Cow::Borrowed("Müller")));
        assert_eq!(decode(b(b"M\xfcller \x80"), Charset::Windows1252), "Müller €");
        assert_eq!(decode(b(b"M\xfcller \xa4"), Charset::Latin9), "Müller €");
        assert_eq!(decode(b(b"M\xfcller \x80"), Charset::Latin1), "Müller \u{80}");
        assert_eq!(decode(b(b"M\xfcller"), Charset::Utf8), "M\u{fffd}ller");
        assert_eq!(decode(b("Müller".as_bytes()), Charset::Ascii), "Müller");
        assert_eq!(decode(b(b"M\xfcller"), Charset::Ascii), "Müller");
    }

    #[test]
    fn effective_charset() {
        let o = ParseOptions::default();
        assert_eq!(effective(b"8859/1", "é".as_bytes(), &o), Charset::Latin1);
        assert_eq!(effective(b"", "é".as_bytes(), &o), Charset::Utf8);
        assert_eq!(effective(b"", b"\xe9", &o), Charset::Windows1252);
        let o = ParseOptions { fallback_charset: Charset::Latin1 };
        assert_eq!(effective(b"BOGUS", b"\xe9", &o), Charset::Latin1);
    }
}
