//! The CSV import of `recordhub objection import` and `POST
//! /admin/objections/import`: all or nothing, every bad row reported as
//! `FILE:LINE: what is wrong` (see the parent module for why our own parser).

use crate::hl7::nhs::NhsNumber;
use crate::store::Objection;

use super::BAD_NHS;

/// The columns an import file may have (`nhs_number` required).
const COLUMNS: [&str; 4] = ["nhs_number", "recorded_at", "source", "reason"];

/// Parses an import file: a header row naming any of [`COLUMNS`] in any
/// order (`nhs_number` required), then one objection per row. Every problem
/// is reported, each as `FILE:LINE: what is wrong`; any problem means no rows.
///
/// # Errors
/// The list of problems.
pub fn parse_import(
    file: &str,
    text: &str,
    recorded_by: &str,
    now_ms: u64,
) -> Result<Vec<(NhsNumber, Objection)>, Vec<String>> {
    let mut errors = Vec::new();
    let mut lines = text.trim_start_matches('\u{feff}').lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((hline, header)) = lines.next() else {
        return Err(vec![format!("{file}:1: empty file: expected a header row")]);
    };
    let at = |n: usize| format!("{file}:{}", n + 1);
    let mut cols: Vec<usize> = Vec::new();
    match split_row(header) {
        Err(e) => errors.push(format!("{}: {e}", at(hline))),
        Ok(names) => {
            for name in names {
                let name = name.trim().to_ascii_lowercase();
                match COLUMNS.iter().position(|c| *c == name) {
                    Some(i) if cols.contains(&i) => {
                        errors.push(format!("{}: column '{name}' appears twice", at(hline)))
                    }
                    Some(i) => cols.push(i),
                    None => {
                        errors.push(format!("{}: unknown column '{name}' (expected {})", at(hline), COLUMNS.join(", ")))
                    }
                }
            }
            if !cols.contains(&0) {
                errors.push(format!("{}: no nhs_number column (it is required)", at(hline)));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut rows = Vec::new();
    for (n, line) in lines {
        let fields = match split_row(line) {
            Ok(f) if f.len() == cols.len() => f,
            Ok(f) => {
                errors.push(format!("{}: {} fields, but the header names {}", at(n), f.len(), cols.len()));
                continue;
            }
            Err(e) => {
                errors.push(format!("{}: {e}", at(n)));
                continue;
            }
        };
        let mut value = [""; 4];
        for (c, f) in cols.iter().zip(&fields) {
            value[*c] = f.trim();
        }
        match row(value, file, recorded_by, now_ms) {
            Ok(r) => rows.push(r),
            Err(e) => errors.push(format!("{}: {e}", at(n))),
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

/// One row's values, in [`COLUMNS`] order.
fn row(v: [&str; 4], file: &str, recorded_by: &str, now_ms: u64) -> Result<(NhsNumber, Objection), String> {
    let [nhs, recorded_at, source, reason] = v;
    if nhs.is_empty() {
        return Err("nhs_number is empty (it is required)".into());
    }
    let nhs = NhsNumber::parse(nhs).map_err(|_| format!("nhs_number '{nhs}' {BAD_NHS}"))?;
    let recorded_at_ms = match recorded_at {
        "" => now_ms as i64,
        d => date_ms(d).ok_or_else(|| {
            format!("recorded_at '{d}' is not a date (expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or YYYYMMDD)")
        })?,
    };
    let source = if source.is_empty() { "import" } else { source };
    let reason = if reason.is_empty() { format!("imported from {file}") } else { reason.to_string() };
    Ok((nhs, Objection { reason, recorded_by: recorded_by.to_string(), source: source.into(), recorded_at_ms }))
}

/// An ISO 8601 date or date-time (or an HL7 `YYYYMMDD[HHMM[SS]]`) as UTC
/// Unix ms; no offset means UTC.
fn date_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let mut s = text.to_string();
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        s = format!("{}{}{}{}", &text[..4], &text[5..7], &text[8..10], text[10..].trim_start_matches(['T', ' ']));
    }
    let s = s.replace(':', "");
    let s = s.strip_suffix('Z').unwrap_or(&s);
    if s.len() < 8 || !s.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.')) {
        return None;
    }
    crate::mapping::convert::time_ms(s)
}

/// Splits one CSV line: commas, `"quoted, fields"` with `""` for a quote.
fn split_row(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    let mut started = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if started && field.trim().is_empty() => {
                quoted = true;
                field.clear();
            }
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, ',') => {
                out.push(std::mem::take(&mut field));
                started = true;
                continue;
            }
            (_, c) => field.push(c),
        }
        started = field.is_empty() && !quoted;
    }
    if quoted {
        return Err("a quoted field is not closed on this line".into());
    }
    out.push(field);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_takes_columns_in_any_order_with_quotes_and_defaults() {
        let text = "\u{feff}reason,nhs_number,recorded_at\n\"moved away, asked \"\"no\"\"\",9434765919,2019-03-04\n\n,943 476 5870,\n";
        let rows = parse_import("old.csv", text, "officer", 1_000).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0.as_str(), "9434765919");
        assert_eq!(rows[0].1.reason, "moved away, asked \"no\"");
        assert_eq!(rows[0].1.recorded_at_ms, 1_551_657_600_000, "2019-03-04T00:00:00Z");
        assert_eq!(rows[0].1.source, "import");
        assert_eq!((rows[1].1.reason.as_str(), rows[1].1.recorded_at_ms), ("imported from old.csv", 1_000));
        assert_eq!(date_ms("2019-03-04T10:00:00Z"), Some(1_551_693_600_000));
        assert_eq!(date_ms("20190304"), date_ms("2019-03-04"));
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line_and_nothing_is_returned() {
        let text = "nhs_number,recorded_at,source\n9434765919,2019-03-04,gp\n1234567890,,gp\n,,gp\n9434765870,2019-13-45,gp\n\"9434765870,,\n";
        let errors = parse_import("old.csv", text, "officer", 0).unwrap_err();
        assert_eq!(
            errors,
            [
                "old.csv:3: nhs_number '1234567890' is not a valid NHS number (10 digits passing the Modulus 11 check)",
                "old.csv:4: nhs_number is empty (it is required)",
                "old.csv:5: recorded_at '2019-13-45' is not a date (expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or YYYYMMDD)",
                "old.csv:6: a quoted field is not closed on this line",
            ]
        );
        let header = parse_import("x.csv", "nhs,reason\n9434765919,a\n", "o", 0).unwrap_err();
        assert_eq!(
            header,
            [
                "x.csv:1: unknown column 'nhs' (expected nhs_number, recorded_at, source, reason)",
                "x.csv:1: no nhs_number column (it is required)",
            ]
        );
    }
}
