//! Field paths in HL7 notation, parsed once at load time (with nom) into indices.
//!
//! ```text
//! PID-5.1         field 5, first repetition, component 1
//! PID-5.1.2       … sub-component 2
//! PID-3[2].1      second repetition
//! PID-3[5=NH].1   the repetition whose component 5 is NH
//! OBX(2)-5        the second OBX of the message
//! ```
//! Numbers start at 1. Without a component the path means the whole (first)
//! repetition as sent. Errors carry the offset in the path text and say what was
//! expected, so the loader can point at the exact column of the mapping file.

use nom::bytes::complete::{tag, take_till, take_while_m_n};
use nom::character::complete::digit1;
use nom::combinator::{map_res, opt};
use nom::{IResult, Parser};

/// Segments of HL7 v2.3–2.5.1 that a mapping may name (plus any `Z..` segment).
pub const KNOWN_SEGMENTS: &[&str] = &[
    "ACC", "AIG", "AIL", "AIP", "AIS", "AL1", "DB1", "DG1", "DRG", "EVN", "FT1", "GT1", "IAM", "IN1", "IN2", "IN3",
    "MRG", "MSA", "MSH", "NK1", "NTE", "OBR", "OBX", "ORC", "PD1", "PID", "PR1", "PV1", "PV2", "RF1", "ROL", "RXA",
    "RXD", "RXE", "RXO", "RXR", "SCH", "SFT", "SPM", "TQ1", "TXA", "UB1", "UB2", "ERR",
];

/// Which repetition of a field a path reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rep {
    /// No `[..]`: the first repetition.
    First,
    /// `[n]`.
    Index(u16),
    /// `[c=VALUE]`: the first repetition whose component `c` is `VALUE`.
    Where { component: u16, value: String },
}

/// A compiled field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub segment: [u8; 3],
    /// `SEG(n)`: the n-th such segment of the message, ignoring any group.
    pub occurrence: Option<u16>,
    pub field: u16,
    pub repetition: Rep,
    /// 0 = the whole repetition.
    pub component: u16,
    /// 0 = the whole component.
    pub subcomponent: u16,
}

impl Path {
    /// The segment name as text.
    pub fn segment_name(&self) -> &str {
        // parse() only accepts ASCII letters and digits.
        std::str::from_utf8(&self.segment).unwrap_or("???")
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.segment_name())?;
        if let Some(n) = self.occurrence {
            write!(f, "({n})")?;
        }
        write!(f, "-{}", self.field)?;
        match &self.repetition {
            Rep::First => {}
            Rep::Index(n) => write!(f, "[{n}]")?,
            Rep::Where { component, value } => write!(f, "[{component}={value}]")?,
        }
        if self.component > 0 {
            write!(f, ".{}", self.component)?;
        }
        if self.subcomponent > 0 {
            write!(f, ".{}", self.subcomponent)?;
        }
        Ok(())
    }
}

/// A path that does not parse: where (byte offset in the path) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    pub offset: usize,
    pub message: String,
}

type R<'a, T> = IResult<&'a str, T>;

fn number(i: &str) -> R<'_, u16> {
    map_res(digit1, str::parse::<u16>).parse(i)
}

fn seg_name(i: &str) -> R<'_, &str> {
    take_while_m_n(3, 3, |c: char| c.is_ascii_uppercase() || c.is_ascii_digit()).parse(i)
}

/// True for a known HL7 segment or a `Z` segment.
pub fn is_known_segment(name: &str) -> bool {
    KNOWN_SEGMENTS.contains(&name) || name.starts_with('Z')
}

/// Checks a segment name as written in `for_each` or a path.
pub fn check_segment(name: &str) -> Result<[u8; 3], String> {
    let ok = matches!(seg_name(name), Ok(("", _))) && name.as_bytes()[0].is_ascii_uppercase();
    if !ok {
        return Err(format!("'{name}' is not a segment name: use 3 capital letters or digits, e.g. PID, OBX, ZU1"));
    }
    if !is_known_segment(name) {
        return Err(format!("unknown segment '{name}': not a standard HL7 segment (local segments start with Z)"));
    }
    let b = name.as_bytes();
    Ok([b[0], b[1], b[2]])
}

/// Parses `text` (e.g. `PID-3[5=NH].1`) into a [`Path`].
///
/// # Errors
/// A [`PathError`] at the first character that does not fit, saying what was expected.
pub fn parse(text: &str) -> Result<Path, PathError> {
    let err = |rest: &str, message: String| PathError { offset: text.len() - rest.len(), message };
    let Ok((rest, name)) = seg_name(text) else {
        return Err(err(
            text,
            format!("'{text}' is not a field path: it must start with a segment name, e.g. PID-5.1"),
        ));
    };
    let segment = check_segment(name).map_err(|m| err(text, m))?;
    let mut done = name.to_string();

    // Optional occurrence: OBX(2)
    let mut occurrence = None;
    let mut rest = rest;
    if let Ok((r, _)) = tag::<_, _, nom::error::Error<&str>>("(").parse(rest) {
        let Ok((r, n)) = number(r) else {
            return Err(err(r, format!("expected an occurrence number after '{done}(', e.g. {done}(2)-5")));
        };
        done = format!("{done}({n}");
        let Ok((r, _)) = tag::<_, _, nom::error::Error<&str>>(")").parse(r) else {
            return Err(err(r, format!("missing ')' after occurrence in {done} — expected {done})")));
        };
        positive(n, "occurrence", &done).map_err(|m| err(r, m))?;
        done.push(')');
        occurrence = Some(n);
        rest = r;
    }

    // Field number: -5
    let Ok((r, (_, field))) = (tag::<_, _, nom::error::Error<&str>>("-"), number).parse(rest) else {
        return Err(err(rest, format!("expected '-' and a field number after {done}, e.g. {done}-5")));
    };
    positive(field, "field", &done).map_err(|m| err(rest, m))?;
    done = format!("{done}-{field}");
    rest = r;

    // Repetition: [2] or [5=NH]
    let mut repetition = Rep::First;
    if let Ok((r, _)) = tag::<_, _, nom::error::Error<&str>>("[").parse(rest) {
        let Ok((r, n)) = number(r) else {
            return Err(err(
                r,
                format!(
                    "expected a repetition number or component=VALUE after '{done}[', e.g. {done}[2] or {done}[5=NH]"
                ),
            ));
        };
        positive(n, "repetition", &done).map_err(|m| err(r, m))?;
        let (r, value) =
            opt((tag::<_, _, nom::error::Error<&str>>("="), take_till(|c| c == ']'))).parse(r).unwrap_or((r, None));
        let shown = match value {
            Some((_, v)) => format!("{done}[{n}={v}"),
            None => format!("{done}[{n}"),
        };
        let Ok((r, _)) = tag::<_, _, nom::error::Error<&str>>("]").parse(r) else {
            return Err(err(r, format!("missing ']' after repetition index in {shown} — expected {shown}]")));
        };
        repetition = match value {
            Some((_, "")) => return Err(err(r, format!("empty value in {shown}] — e.g. {done}[{n}=NH]"))),
            Some((_, v)) => Rep::Where { component: n, value: v.to_string() },
            None => Rep::Index(n),
        };
        done = format!("{shown}]");
        rest = r;
    }

    // Component and sub-component: .1 .2
    let mut parts = [0u16; 2];
    for (i, what) in ["component", "sub-component"].into_iter().enumerate() {
        let Ok((r, _)) = tag::<_, _, nom::error::Error<&str>>(".").parse(rest) else {
            break;
        };
        let Ok((r, n)) = number(r) else {
            return Err(err(r, format!("expected a {what} number after '{done}.', e.g. {done}.1")));
        };
        positive(n, what, &done).map_err(|m| err(r, m))?;
        parts[i] = n;
        done = format!("{done}.{n}");
        rest = r;
    }
    if let Some(c) = rest.chars().next() {
        return Err(err(rest, format!("unexpected '{c}' after {done}: a path looks like PID-3[2].1.1")));
    }
    Ok(Path { segment, occurrence, field, repetition, component: parts[0], subcomponent: parts[1] })
}

fn positive(n: u16, what: &str, done: &str) -> Result<(), String> {
    if n == 0 {
        Err(format!("{what} numbers start at 1 in {done} (HL7 counts from 1)"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms_and_prints_them_back() {
        for text in ["PID-5", "PID-5.1", "PID-5.1.2", "PID-3[2].1", "PID-3[5=NH].1", "OBX(2)-5", "ZU1-3"] {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
        let p = parse("PID-3[5=NH].1").unwrap();
        assert_eq!(p.repetition, Rep::Where { component: 5, value: "NH".into() });
    }

    #[test]
    fn errors_say_what_was_expected() {
        let e = parse("PID-3[2").unwrap_err();
        assert_eq!(e.offset, 7);
        assert_eq!(e.message, "missing ']' after repetition index in PID-3[2 — expected PID-3[2]");
        let e = parse("PID5").unwrap_err();
        assert_eq!((e.offset, e.message.as_str()), (3, "expected '-' and a field number after PID, e.g. PID-5"));
        assert!(parse("XXX-1").unwrap_err().message.starts_with("unknown segment 'XXX'"));
        assert!(parse("pid-1").unwrap_err().message.contains("not a field path"));
        assert_eq!(parse("PID-0").unwrap_err().message, "field numbers start at 1 in PID (HL7 counts from 1)");
        assert_eq!(parse("PID-5.1x").unwrap_err().offset, 7);
        assert!(parse("OBX(2-5").unwrap_err().message.contains("expected OBX(2)"));
    }
}
