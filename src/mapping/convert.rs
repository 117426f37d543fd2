//! Decoded HL7 text -> typed JSON value: dates and timestamps as ISO 8601 at the
//! precision sent, numbers, code-table lookups. Used by the compiler (literal values)
//! and by [`super::apply`] (every mapped value); holds no state.

use serde_json::Value as Json;

use super::plan::Ty;

/// A value that does not fit its type: table 0357 code (102 or 103) and why.
#[derive(Debug)]
pub struct Bad {
    pub code: u16,
    pub why: String,
}

/// Converts a decoded HL7 value to the target type.
///
/// # Errors
/// [`Bad`] 102 for a value that is not a date, timestamp or number; 103 for a value
/// missing from a strict table.
pub fn convert(ty: &Ty, text: &str) -> Result<Json, Bad> {
    let bad = |what: &str| Bad { code: 102, why: format!("is not a valid {what}") };
    match ty {
        Ty::String => Ok(Json::String(text.to_string())),
        Ty::Date => iso(text, true).map(Json::String).ok_or_else(|| bad("HL7 date (YYYYMMDD)")),
        Ty::Timestamp => iso(text, false).map(Json::String).ok_or_else(|| bad("HL7 timestamp (YYYYMMDDHHMMSS+ZZZZ)")),
        Ty::Number => number(text.trim()).ok_or_else(|| bad("number")),
        Ty::Code { table, strict } => match (table.values.get(text), &table.default) {
            (Some(v), _) => Ok(Json::String(v.clone())),
            (None, _) if *strict => Err(Bad { code: 103, why: format!("value is not in code table '{}'", table.name) }),
            (None, Some(d)) => Ok(Json::String(d.clone())),
            (None, None) => Ok(Json::String(text.to_string())),
        },
    }
}

fn number(s: &str) -> Option<Json> {
    if !s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+')) || s.is_empty() {
        return None;
    }
    if let Ok(i) = s.parse::<i64>() {
        return Some(Json::from(i));
    }
    s.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Json::Number)
}

/// HL7 DTM (`YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`) as ISO 8601 with the
/// precision that was sent; `date_only` drops the time. `None` for an invalid value.
/// hl7-parser splits the digits; it does not validate, so the ranges are checked here.
fn iso(text: &str, date_only: bool) -> Option<String> {
    let t = hl7_parser::datetime::parse_timestamp(text.trim(), false).ok()?;
    // Digits are pushed by hand: `format!` cost a tenth of mapping an ADT.
    let mut out = String::with_capacity(29);
    push_digits(&mut out, t.year.into(), 4);
    let Some(month) = t.month else { return Some(out) };
    let days = match month {
        2 if t.year % 4 == 0 && (t.year % 100 != 0 || t.year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    out.push('-');
    push_digits(&mut out, month.into(), 2);
    let Some(day) = t.day else { return Some(out) };
    if !(1..=days).contains(&day) {
        return None;
    }
    out.push('-');
    push_digits(&mut out, day.into(), 2);
    let Some(hour) = t.hour.filter(|_| !date_only) else { return Some(out) };
    let (minute, second) = (t.minute.unwrap_or(0), t.second);
    if hour > 23 || minute > 59 || second.is_some_and(|s| s > 59) {
        return None;
    }
    out.push('T');
    push_digits(&mut out, hour.into(), 2);
    out.push(':');
    push_digits(&mut out, minute.into(), 2);
    if let Some(s) = second {
        out.push(':');
        push_digits(&mut out, s.into(), 2);
        if let Some(us) = t.microsecond {
            out.push('.');
            push_digits(&mut out, (us / 1000).into(), 3);
        }
    }
    if let Some(o) = t.offset {
        if o.hours.abs() > 14 || o.minutes > 59 {
            return None;
        }
        out.push(if o.hours < 0 { '-' } else { '+' });
        push_digits(&mut out, o.hours.unsigned_abs().into(), 2);
        out.push(':');
        push_digits(&mut out, o.minutes.into(), 2);
    }
    Some(out)
}

/// HL7 DTM at any precision (`2026`, `202611211015`, `20261121101530.25+0100`)
/// as UTC Unix milliseconds: what orders an item's versions. Missing parts are
/// their start (month and day 1, time 00:00:00); no offset means UTC, so the
/// order never depends on the engine's time zone. `None` for an invalid value.
/// Parsed by hand: it runs for every item of every message, and the general
/// parser (nom) cost more than the rest of an item's version.
pub fn time_ms(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    let digits = b.iter().position(|c| !c.is_ascii_digit()).unwrap_or(b.len());
    let (d, mut rest) = b.split_at(digits);
    if !matches!(d.len(), 4 | 6 | 8 | 10 | 12 | 14) {
        return None;
    }
    let num = |s: &[u8]| s.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0'));
    let part = |at: usize, default: i64| if d.len() > at { num(&d[at..at + 2]) } else { default };
    let (year, month, day) = (num(&d[..4]), part(4, 1), part(6, 1));
    let (hour, minute, second) = (part(8, 0), part(10, 0), part(12, 0));
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().position(|c| !c.is_ascii_digit()).unwrap_or(frac.len());
        if d.len() != 14 || !(1..=4).contains(&n) {
            return None;
        }
        // Tenths, hundredths, thousandths: ".25" is 250 ms; a fourth digit is below a ms.
        ms = frac[..n.min(3)].iter().zip([100, 10, 1]).map(|(c, w)| i64::from(c - b'0') * w).sum();
        rest = &frac[n..];
    }
    let offset_min = match rest {
        [] => 0,
        [sign @ (b'+' | b'-'), zone @ ..] if zone.len() == 4 && zone.iter().all(u8::is_ascii_digit) => {
            let (h, m) = (num(&zone[..2]), num(&zone[2..]));
            if h > 14 || m > 59 {
                return None;
            }
            if *sign == b'-' {
                -(h * 60 + m)
            } else {
                h * 60 + m
            }
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1..=days_in).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = ((days * 24 + hour) * 60 + minute - offset_min) * 60 + second;
    Some(secs * 1000 + ms)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `n` zero-padded to `width` digits (wider numbers keep all their digits).
fn push_digits(out: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut n = n;
    while n > 0 || buf.len() - i < width {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend(buf[i..].iter().map(|&b| b as char));
}

#[cfg(test)]
mod tests {
    use super::{iso, time_ms};

    #[test]
    fn hl7_times_become_utc_milliseconds_at_any_precision() {
        let base = 1_795_249_800_000; // 2026-11-21T08:30:00Z
        let cases = [
            ("20261121083000", Some(base)),
            ("202611210830", Some(base)),
            ("20261121083000+0000", Some(base)),
            ("20261121093000+0100", Some(base)),
            ("20261121030000-0530", Some(base)),
            ("20261121083000.25", Some(base + 250)),
            ("20261121", Some(base - (8 * 60 + 30) * 60_000)),
            ("1970", Some(0)),
            ("19691231235959", Some(-1000)),
            ("20240229", Some(1_709_164_800_000)),
            ("20230229", None),
            ("20261121246000", None),
            ("20261121083000.1234", Some(base + 123)),
            ("202611210830+0000", Some(base)),
            ("20261121083000.", None),
            ("2026112108300", None),
            ("20261121083000+01", None),
            ("20261121083000+1500", None),
            ("20261121083000Z", None),
            ("not a time", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(time_ms(text), want, "{text}");
        }
    }

    #[test]
    fn hl7_times_become_iso_8601_at_the_precision_sent() {
        let cases = [
            ("2026", false, Some("2026")),
            ("202611", false, Some("2026-11")),
            ("20261121", false, Some("2026-11-21")),
            ("202611210829", false, Some("2026-11-21T08:29")),
            ("20261121082930", false, Some("2026-11-21T08:29:30")),
            ("20261121082930.1234", false, Some("2026-11-21T08:29:30.123")),
            ("20261121082930+0100", false, Some("2026-11-21T08:29:30+01:00")),
            ("202611210829-0530", false, Some("2026-11-21T08:29-05:30")),
            ("20261121082930", true, Some("2026-11-21")),
            ("20240229", false, Some("2024-02-29")),
            ("20230229", false, None),
            ("20261131", false, None),
            ("20261321", false, None),
            ("202611212400", false, None),
            ("20261121086000", false, None),
            ("not a date", false, None),
        ];
        for (text, date_only, want) in cases {
            assert_eq!(iso(text, date_only).as_deref(), want, "{text}");
        }
    }
}
