//! Dates as a UK ward reads them: `21 Nov 2026 08:25`, `14 Mar 1982` (month
//! names, so 03/04 is never misread), and the date-of-birth input a
//! professional types: `14/03/1982` (also `14-03-1982`, `14.03.1982`, ISO).
//!
//! The record holds ISO 8601 text as the sender meant it (local time, maybe
//! with an offset); it is shown as sent, not converted: the wall-clock time
//! on the ward is what the professional compares with.

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A real calendar date (year 1800..=9999); the calendar is the `time` crate's.
fn valid(y: u32, m: u32, d: u32) -> bool {
    let (Ok(month), Ok(day)) = (time::Month::try_from(m as u8), u8::try_from(d)) else { return false };
    (1800..=9999).contains(&y) && m <= 12 && time::Date::from_calendar_date(y as i32, month, day).is_ok()
}

fn num(s: &str) -> Option<u32> {
    (!s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

/// `dd/mm/yyyy` (or with `-` or `.`; one-digit day and month allowed) or
/// ISO `yyyy-mm-dd`, as ISO `yyyy-mm-dd`; `None` for anything else or a day
/// that does not exist.
pub fn parse_dob(input: &str) -> Option<String> {
    let s = input.trim();
    let parts: Vec<&str> = s.split(['/', '-', '.']).collect();
    let [a, b, c] = parts.as_slice() else { return None };
    let (y, m, d) = if a.len() == 4 { (num(a)?, num(b)?, num(c)?) } else { (num(c)?, num(b)?, num(a)?) };
    if c.len() != 4 && a.len() != 4 {
        return None; // two-digit years are ambiguous for a date of birth
    }
    valid(y, m, d).then(|| format!("{y:04}-{m:02}-{d:02}"))
}

/// `2026-11-21T08:25:00` → `21 Nov 2026 08:25`; `2026-11-21` →
/// `21 Nov 2026`. Text that is not ISO is shown as it is.
pub fn uk(iso: &str) -> String {
    let date = iso.get(..10).unwrap_or("");
    let (Some(y), Some(m), Some(d)) =
        (num(date.get(..4).unwrap_or("")), num(date.get(5..7).unwrap_or("")), num(date.get(8..10).unwrap_or("")))
    else {
        return iso.to_string();
    };
    if !valid(y, m, d) || date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' {
        return iso.to_string();
    }
    let month = MONTHS[(m - 1) as usize];
    let clock = |hm: &str| {
        let b = hm.as_bytes();
        b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit())
    };
    match iso.get(10..).and_then(|rest| Some((rest, rest.strip_prefix('T')?.get(..5).filter(|hm| clock(hm))?))) {
        Some((rest, hm)) => {
            let midnight_only = hm == "00:00" && rest.get(6..9).is_none_or(|s| s == ":00");
            if midnight_only && rest.len() <= 9 {
                format!("{d} {month} {y}")
            } else {
                format!("{d} {month} {y} {hm}")
            }
        }
        _ => format!("{d} {month} {y}"),
    }
}

/// Unix milliseconds (UTC) as `21 Nov 2026 08:25 UTC`.
pub fn uk_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let (h, mi) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Civil from days (Howard Hinnant's algorithm), for 1970 onwards.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{d} {} {y} {h:02}:{mi:02} UTC", MONTHS[(m - 1) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_of_birth_typed_the_uk_way_or_iso_are_accepted_and_impossible_ones_are_not() {
        assert_eq!(parse_dob("14/03/1982").as_deref(), Some("1982-03-14"));
        assert_eq!(parse_dob(" 4/3/1982 ").as_deref(), Some("1982-03-04"));
        assert_eq!(parse_dob("14-03-1982").as_deref(), Some("1982-03-14"));
        assert_eq!(parse_dob("14.03.1982").as_deref(), Some("1982-03-14"));
        assert_eq!(parse_dob("1982-03-14").as_deref(), Some("1982-03-14"));
        assert_eq!(parse_dob("29/02/2024").as_deref(), Some("2024-02-29"));
        for bad in ["29/02/2023", "31/04/1990", "14/13/1982", "14/03/82", "", "yesterday", "1982-03", "00/01/1990"] {
            assert_eq!(parse_dob(bad), None, "{bad}");
        }
    }

    #[test]
    fn record_times_read_as_day_month_name_year_and_clock() {
        assert_eq!(uk("2026-11-21T08:25:00"), "21 Nov 2026 08:25");
        assert_eq!(uk("2026-11-25T15:45:00+00:00"), "25 Nov 2026 15:45");
        assert_eq!(uk("1982-03-14"), "14 Mar 1982");
        assert_eq!(uk("2026-11-21T00:00:00"), "21 Nov 2026");
        assert_eq!(uk("not a date"), "not a date");
        assert_eq!(uk("2026-11-21Té"), "21 Nov 2026", "text from a message never panics");
        assert_eq!(uk("2026-11-21T0é:00"), "21 Nov 2026");
        assert_eq!(uk_ms(1_795_249_740_000), "21 Nov 2026 08:29 UTC");
    }
}
