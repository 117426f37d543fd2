//! HL7 escape sequences (v2.5 chapter 2.7), decoded only when a value's text is read.
//!
//! Decoded: `\F\ \S\ \T\ \R\ \E\` (the delimiters), `\P\` (the v2.7 truncation
//! character), `\Xhh..\` (raw bytes, charset-decoded afterwards with the rest of the
//! value), `\.br\` (line break). `\H\`/`\N\` (highlighting on/off) are dropped.
//! Anything else (`\Zxx\`, `\Cxxyy\`, `\.sp\`, a Windows path such as `C:\temp\`) is
//! left exactly as sent, as is an escape character with no closing partner. This
//! works on bytes, so non-ASCII text next to an escape cannot split a character.

use std::borrow::Cow;

use super::Delimiters;

/// The v2.7 default truncation character, for `\P\` when MSH-2 did not declare one.
const DEFAULT_TRUNCATION: u8 = b'#';

/// Replaces the escape sequences in `raw`; borrows when there are none.
pub(crate) fn decode<'a>(raw: &'a [u8], d: &Delimiters) -> Cow<'a, [u8]> {
    let Some(esc) = d.escape else {
        return Cow::Borrowed(raw);
    };
    let Some(first) = super::message::find(esc, raw) else {
        return Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..first]);
    let mut pos = first;
    while pos < raw.len() {
        // `pos` is at an escape character.
        let Some(len) = memchr::memchr(esc, &raw[pos + 1..]) else {
            out.extend_from_slice(&raw[pos..]);
            break;
        };
        let close = pos + 1 + len;
        let body = &raw[pos + 1..close];
        if !decode_one(body, d, &mut out) {
            out.extend_from_slice(&raw[pos..=close]);
        }
        pos = close + 1;
        match memchr::memchr(esc, &raw[pos..]) {
            Some(n) => {
                out.extend_from_slice(&raw[pos..pos + n]);
                pos += n;
            }
            None => {
                out.extend_from_slice(&raw[pos..]);
                break;
            }
        }
    }
    Cow::Owned(out)
}

/// Appends the meaning of one sequence body (between the escape characters);
/// false if it is not a sequence we decode.
fn decode_one(body: &[u8], d: &Delimiters, out: &mut Vec<u8>) -> bool {
    let one = |b: Option<u8>, out: &mut Vec<u8>| b.map(|b| out.push(b)).is_some();
    match body {
        b"F" => one(Some(d.field), out),
        b"S" => one(Some(d.component), out),
        b"R" => one(Some(d.repetition), out),
        b"E" => one(d.escape, out),
        b"T" => one(d.subcomponent, out),
        b"P" => one(Some(d.truncation.unwrap_or(DEFAULT_TRUNCATION)), out),
        b".br" => one(Some(b'\n'), out),
        b"H" | b"N" => true,
        [b'X', hex @ ..] => decode_hex(hex, out),
        _ => false,
    }
}

fn decode_hex(hex: &[u8], out: &mut Vec<u8>) -> bool {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.iter().all(u8::is_ascii_hexdigit) {
        return false;
    }
    let nibble = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    out.extend(hex.chunks_exact(2).map(|p| nibble(p[0]) << 4 | nibble(p[1])));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> String {
        String::from_utf8(decode(s.as_bytes(), &Delimiters::DEFAULT).into_owned()).unwrap()
    }

    #[test]
    fn delimiter_escapes() {
        assert_eq!(dec(r"a\F\b\S\c\T\d\R\e\E\f"), r"a|b^c&d~e\f");
        assert_eq!(dec(r"x\P\y"), "x#y");
    }

    #[test]
    fn hex_line_break_and_highlight() {
        assert_eq!(dec(r"a\X0D0A\b"), "a\r\nb");
        assert_eq!(dec(r"caf\XC3A9\"), "café");
        assert_eq!(dec(r"1\.br\2"), "1\n2");
        assert_eq!(dec(r"\H\bold\N\ text"), "bold text");
    }

    #[test]
    fn unknown_escapes_are_kept() {
        assert_eq!(dec(r"\Zxx\"), r"\Zxx\");
        assert_eq!(dec(r"\C2842\ok"), r"\C2842\ok");
        assert_eq!(dec(r"C:\temp\file.txt"), r"C:\temp\file.txt");
        assert_eq!(dec(r"\X0\ \XZZ\ \X\"), r"\X0\ \XZZ\ \X\");
        assert_eq!(dec(r"\Zxx\\S\"), r"\Zxx\^");
    }

    #[test]
    fn lone_escape_and_non_ascii() {
        assert_eq!(dec(r"abc\"), r"abc\");
        assert_eq!(dec(r"a\S\b\"), r"a^b\");
        assert_eq!(dec(r"ü€\S\y"), "ü€^y");
        assert!(matches!(decode(b"plain", &Delimiters::DEFAULT), Cow::Borrowed(b"plain")));
    }

    #[test]
    fn custom_delimiters() {
        let d = Delimiters {
            field: b'#',
            component: b'@',
            repetition: b'!',
            escape: Some(b'$'),
            subcomponent: Some(b'%'),
            truncation: None,
        };
        let s = decode(b"a$F$b$S$c$R$d$T$e$E$f", &d);
        assert_eq!(&*s, b"a#b@c!d%e$f");
        let no_sub = Delimiters { subcomponent: None, ..d };
        assert_eq!(&*decode(b"$T$", &no_sub), b"$T$");
    }
}
