//! Finding events: `recordhub audit [--nhs] [--user] [--since]
//! [--break-glass]` and `GET /admin/audit`. Reads the chain files only
//! (never the lock), so it is safe while the server appends; an unfinished
//! last line (a write in progress, or torn by a crash) is not an event yet
//! and is skipped.

use std::io;
use std::path::Path;

use super::AuditEvent;

/// Which events to list; every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The NHS number, 10 digits.
    pub nhs: Option<String>,
    pub user: Option<String>,
    /// Unix milliseconds: events at or after.
    pub since_ms: Option<u64>,
    /// Only break-glass reads.
    pub break_glass: bool,
}

/// A `--since` that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("--since {0:?}: expected an RFC 3339 time (2026-11-28T09:30:00Z, or with an offset like +01:00) or a date (2026-11-28, from midnight UTC)")]
pub struct SinceError(pub String);

/// Parses `--since`: RFC 3339, or `YYYY-MM-DD` meaning midnight UTC.
///
/// # Errors
/// Neither form.
pub fn parse_since(s: &str) -> Result<u64, SinceError> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    let at = if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        t
    } else {
        let date_format = time::macros::format_description!("[year]-[month]-[day]");
        let d = time::Date::parse(s, &date_format).map_err(|_| SinceError(s.into()))?;
        d.midnight().assume_utc()
    };
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).map_err(|_| SinceError(s.into()))
}

impl Filter {
    /// Whether `e` is one of the events asked for.
    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.nhs.as_ref().is_none_or(|n| e.nhs_number.as_deref() == Some(n.as_str()))
            && self.user.as_ref().is_none_or(|u| &e.user == u)
            && self.since_ms.is_none_or(|t| e.at_ms >= t)
            && (!self.break_glass || e.break_glass)
    }
}

/// Calls `f` with each complete line of the chain (without its newline),
/// oldest first, and the event it holds.
///
/// # Errors
/// A file could not be read, or a complete line is not an event (the log
/// was damaged: `recordhub audit verify` says where).
pub fn each(audit_dir: &Path, mut f: impl FnMut(&[u8], AuditEvent) -> io::Result<()>) -> io::Result<()> {
    for (_, path) in super::chain::files(audit_dir)? {
        let bytes = std::fs::read(&path)?;
        let complete = match memchr::memrchr(b'\n', &bytes) {
            Some(nl) => &bytes[..nl],
            None => continue,
        };
        for (i, line) in complete.split(|&b| b == b'\n').enumerate() {
            let event: AuditEvent = serde_json::from_slice(line).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}:{}: not an audit event ({e}); run `recordhub audit verify`", path.display(), i + 1),
                )
            })?;
            f(line, event)?;
        }
    }
    Ok(())
}

/// Every event, oldest first.
///
/// # Errors
/// As [`each`].
pub fn events(audit_dir: &Path) -> io::Result<Vec<AuditEvent>> {
    let mut out = Vec::new();
    each(audit_dir, |_, e| {
        out.push(e);
        Ok(())
    })?;
    Ok(out)
}

/// The lines (as written, newline-terminated) of the events `filter` asks
/// for, oldest first.
///
/// # Errors
/// As [`each`].
pub fn lines(audit_dir: &Path, filter: &Filter) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    each(audit_dir, |line, e| {
        if filter.matches(&e) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        Ok(())
    })?;
    Ok(out)
}

/// The `seq` a line carries (its place in the chain), if it has one.
pub fn seq(line: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    serde_json::from_slice::<Seq>(line).ok().map(|s| s.seq)
}
