//! Finding journal entries by their metadata: control id, sender, message
//! type, verdict, ERR code, time or seq range, and (resolved through the
//! index by the caller) the seqs filed for one patient. Shared by
//! `recordhub journal search`, `GET /admin/messages`, `recordhub replay
//! --query` and `POST /admin/replay`.
//!
//! What it deliberately does not do: look at message content. A match is
//! decided on the entry's metadata only, and [`metadata`] renders an entry
//! without its raw bytes, its ACK or any patient identifier, so a search
//! result can go to a log, a terminal or a browser.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Damage, Entry, JournalError, JournalReader};

mod wire;

/// The filters as a user writes them: CLI flags, an HTTP query string, a
/// JSON body. [`Filters::parse`] checks them into a [`Query`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct Filters {
    /// MSH-10, exactly.
    #[arg(long)]
    pub control_id: Option<String>,
    /// MSH-3 (`PAS`), or MSH-3 and MSH-4 (`PAS^RJ1`); a field's first component is enough.
    #[arg(long)]
    pub sender: Option<String>,
    /// MSH-9: `ADT` (any event) or `ADT^A01`.
    #[arg(long = "type", value_name = "TYPE")]
    #[serde(rename = "type")]
    pub message_type: Option<String>,
    /// AA, AE, AR, CA, CE, CR, or `accepted` / `rejected`.
    #[arg(long)]
    pub verdict: Option<String>,
    /// The ERR-3 code of the rejection (HL7 table 0357), e.g. 102.
    #[arg(long, value_name = "CODE")]
    pub err: Option<u16>,
    /// From (inclusive): RFC 3339 (`2026-11-21T08:30:00Z`), a date (`2026-11-21`, UTC) or a seq.
    #[arg(long)]
    pub since: Option<String>,
    /// Up to (inclusive; a date means the whole day): RFC 3339, a date or a seq.
    #[arg(long)]
    pub until: Option<String>,
    /// Messages that filed items in this patient's record (after merges), through the index.
    #[arg(long = "nhs", value_name = "NHS_NUMBER")]
    pub nhs: Option<String>,
    /// Messages for a local identifier (`ID`, or `ORG^ID`), through the index; parked ones too.
    #[arg(long, value_name = "ID")]
    pub local_id: Option<String>,
    /// At most this many entries.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// Why a filter cannot be used, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// `--verdict` is not one of the codes or words.
    #[error("verdict '{0}' is not one of AA, AE, AR, CA, CE, CR, accepted, rejected")]
    Verdict(String),
    /// `--since` / `--until` is not a time, date or seq.
    #[error("{key} '{value}' is not a seq, a date (2026-11-21) or an RFC 3339 time (2026-11-21T08:30:00Z)")]
    Bound { key: &'static str, value: String },
    /// `--nhs` is not a valid NHS number.
    #[error("'{0}' is not a valid NHS number (10 digits passing the Modulus 11 check)")]
    Nhs(String),
    /// A query-string key that is not a filter.
    #[error("'{0}' is not a filter: use control_id, sender, type, verdict, err, since, until, nhs, local_id, limit")]
    Unknown(String),
    /// `err` or `limit` is not a number.
    #[error("{key} '{value}' is not a number")]
    Number { key: &'static str, value: String },
}

/// Whose messages a search is about; the caller resolves it to seqs
/// through the index (`Store::seqs_for_patient`, `Store::seqs_for_local_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patient {
    Nhs(crate::hl7::nhs::NhsNumber),
    /// `ID` or `ORG^ID`.
    Local {
        organisation: Option<String>,
        id: String,
    },
}

/// A time or seq bound of the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// A journal seq.
    Seq(u64),
    /// Unix milliseconds (UTC).
    Ms(i64),
}

/// Which verdicts match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictFilter {
    /// This ACK code exactly.
    Code(String),
    /// AA or CA (`true`), AE/AR/CE/CR (`false`).
    Accepted(bool),
}

/// The checked filters, with the patient selectors resolved to seqs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub control_id: Option<String>,
    /// (MSH-3, MSH-4 if given).
    pub sender: Option<(String, Option<String>)>,
    /// MSH-9's components to match, e.g. `["ADT", "A01"]`.
    pub message_type: Option<Vec<String>>,
    pub verdict: Option<VerdictFilter>,
    pub err: Option<u16>,
    pub since: Option<Bound>,
    /// Inclusive for a seq; exclusive for a time (a date is its next midnight).
    pub until: Option<Bound>,
    /// Only these seqs (a patient's, resolved through the index).
    pub seqs: Option<BTreeSet<u64>>,
    pub limit: Option<usize>,
}

/// What a search went through.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Entries read from the journal.
    pub scanned: u64,
    /// Entries that matched (at most the limit).
    pub matched: u64,
    /// Whether the limit stopped the search early.
    pub truncated: bool,
    /// Damaged ranges the scan stepped over.
    pub damage: Vec<Damage>,
}

impl Filters {
    /// Whether a patient selector (`nhs`, `local_id`) is set: the index must resolve it.
    pub fn needs_index(&self) -> bool {
        self.nhs.is_some() || self.local_id.is_some()
    }

    /// The patient selectors, checked: at most one of each.
    ///
    /// # Errors
    /// `nhs` is not a valid NHS number.
    pub fn patients(&self) -> Result<Vec<Patient>, FilterError> {
        let mut out = Vec::new();
        if let Some(n) = self.nhs.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            let nhs = crate::hl7::nhs::NhsNumber::parse(n).map_err(|_| FilterError::Nhs(n.to_string()))?;
            out.push(Patient::Nhs(nhs));
        }
        if let Some(l) = self.local_id.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
            out.push(match l.split_once('^') {
                Some((org, id)) => Patient::Local { organisation: Some(org.to_string()), id: id.to_string() },
                None => Patient::Local { organisation: None, id: l.to_string() },
            });
        }
        Ok(out)
    }

    /// Checks everything but the patient selectors, which the caller resolves
    /// to `seqs` through the index.
    ///
    /// # Errors
    /// The first filter that cannot be used, named.
    pub fn parse(&self) -> Result<Query, FilterError> {
        let verdict = match self.verdict.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(parse_verdict(v)?),
        };
        let sender = self.sender.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(|s| match s.split_once('^') {
            Some((app, fac)) => (app.to_string(), Some(fac.to_string())),
            None => (s.to_string(), None),
        });
        let message_type = self.message_type.as_deref().map(str::trim).filter(|s| !s.is_empty());
        Ok(Query {
            control_id: self.control_id.clone().filter(|c| !c.is_empty()),
            sender,
            message_type: message_type.map(|t| t.split('^').map(str::to_string).collect()),
            verdict,
            err: self.err,
            since: bound("since", self.since.as_deref(), false)?,
            until: bound("until", self.until.as_deref(), true)?,
            seqs: None,
            limit: self.limit,
        })
    }
}

fn parse_verdict(v: &str) -> Result<VerdictFilter, FilterError> {
    match v.to_ascii_uppercase().as_str() {
        code @ ("AA" | "AE" | "AR" | "CA" | "CE" | "CR") => Ok(VerdictFilter::Code(code.to_string())),
        "ACCEPTED" => Ok(VerdictFilter::Accepted(true)),
        "REJECTED" => Ok(VerdictFilter::Accepted(false)),
        _ => Err(FilterError::Verdict(v.to_string())),
    }
}

/// A seq (digits only), a date `YYYY-MM-DD` (UTC; as an upper bound, the
/// next midnight) or RFC 3339 (`2026-11-21T08:30:00Z`, `...+01:00`,
/// fractions allowed), rewritten as an HL7 DTM and read by the one DTM
/// parser the mappings use.
fn bound(key: &'static str, value: Option<&str>, upper: bool) -> Result<Option<Bound>, FilterError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    let bad = || FilterError::Bound { key, value: v.to_string() };
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().map(|s| Some(Bound::Seq(s))).map_err(|_| bad());
    }
    // Indexing is in bounds: `&&` checks the length first.
    let is_date = v.len() == 10 && v.as_bytes()[4] == b'-' && v.as_bytes()[7] == b'-';
    let dtm = if is_date {
        v.replace('-', "")
    } else {
        let (date, time) = v.split_once(['T', 't', ' ']).ok_or_else(bad)?;
        let split = time.find(['Z', 'z', '+', '-']).ok_or_else(bad)?;
        let (clock, zone) = time.split_at(split);
        let zone = if zone.eq_ignore_ascii_case("z") { "+0000".to_string() } else { zone.replace(':', "") };
        let (hms, frac) = clock.split_once('.').map_or((clock, ""), |(a, b)| (a, b));
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        // ASCII digits only (checked above), so slicing by bytes is safe.
        let frac = if frac.is_empty() { String::new() } else { format!(".{}", &frac[..frac.len().min(3)]) };
        format!("{}{}{frac}{zone}", date.replace('-', ""), hms.replace(':', ""))
    };
    if !dtm.bytes().take(8).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let ms = crate::mapping::convert::time_ms(&dtm).ok_or_else(bad)?;
    const DAY_MS: i64 = 86_400_000;
    Ok(Some(Bound::Ms(if is_date && upper {
        ms + DAY_MS
    } else if upper {
        ms + 1
    } else {
        ms
    })))
}

impl Query {
    /// Whether `e`'s metadata matches every filter (the limit aside).
    pub fn matches(&self, e: &Entry) -> bool {
        let first = |s: &str| s.split('^').next().unwrap_or("").to_string();
        let same = |field: &str, want: &str| field == want || first(field) == want;
        if self.control_id.as_ref().is_some_and(|c| *c != e.control_id) {
            return false;
        }
        if let Some((app, fac)) = &self.sender {
            if !same(&e.sending_app, app) || fac.as_ref().is_some_and(|f| !same(&e.sending_facility, f)) {
                return false;
            }
        }
        if let Some(want) = &self.message_type {
            let have: Vec<&str> = e.message_type.split('^').collect();
            if want.iter().enumerate().any(|(i, w)| have.get(i).is_none_or(|h| !h.eq_ignore_ascii_case(w))) {
                return false;
            }
        }
        let verdict_ok = match &self.verdict {
            None => true,
            Some(VerdictFilter::Code(c)) => e.ack_code == *c,
            Some(VerdictFilter::Accepted(a)) => e.accepted() == Some(*a),
        };
        let err_ok = self.err.is_none_or(|code| e.reason.as_ref().is_some_and(|r| r.error_code == code));
        let ms = i64::try_from(e.received_at_ms).unwrap_or(i64::MAX);
        let since_ok = match self.since {
            None => true,
            Some(Bound::Seq(s)) => e.seq >= s,
            Some(Bound::Ms(t)) => ms >= t,
        };
        let until_ok = match self.until {
            None => true,
            Some(Bound::Seq(s)) => e.seq <= s,
            Some(Bound::Ms(t)) => ms < t,
        };
        let seq_ok = self.seqs.as_ref().is_none_or(|s| s.contains(&e.seq));
        verdict_ok && err_ok && since_ok && until_ok && seq_ok
    }

    /// The first seq worth reading.
    fn start(&self) -> u64 {
        let since = match self.since {
            Some(Bound::Seq(s)) => s,
            _ => 1,
        };
        since.max(self.seqs.as_ref().and_then(|s| s.first().copied()).unwrap_or(1))
    }

    /// The last seq worth reading.
    fn end(&self) -> u64 {
        let until = match self.until {
            Some(Bound::Seq(s)) => s,
            _ => u64::MAX,
        };
        until.min(self.seqs.as_ref().map_or(u64::MAX, |s| s.last().copied().unwrap_or(0)))
    }

    /// Reads the journal in seq order and calls `f` with each matching
    /// entry, up to the limit. Safe beside a running engine (the reader
    /// shows committed entries only).
    ///
    /// # Errors
    /// The journal cannot be read, or `f` failed.
    pub fn run<E: From<JournalError>>(
        &self,
        reader: &JournalReader,
        mut f: impl FnMut(Entry) -> Result<(), E>,
    ) -> Result<Summary, E> {
        let mut summary = Summary::default();
        if self.seqs.as_ref().is_some_and(BTreeSet::is_empty) || self.limit == Some(0) {
            summary.truncated = self.limit == Some(0);
            return Ok(summary);
        }
        let end = self.end();
        let mut entries = reader.iter_from(self.start());
        for entry in &mut entries {
            let entry = entry?;
            if entry.seq > end {
                break;
            }
            summary.scanned += 1;
            if !self.matches(&entry) {
                continue;
            }
            if self.limit.is_some_and(|l| summary.matched >= l as u64) {
                summary.truncated = true;
                break;
            }
            summary.matched += 1;
            f(entry)?;
        }
        summary.damage = entries.damage().to_vec();
        Ok(summary)
    }
}

/// One search result: metadata and verdict, never message content or a
/// patient identifier (the raw bytes and the ACK are left out).
pub fn metadata(entry: &Entry) -> serde_json::Value {
    serde_json::json!({
        "seq": entry.seq,
        "format_version": entry.format_version,
        "received_at": crate::ack::hl7_timestamp(entry.received_at_ms),
        "received_at_ms": entry.received_at_ms,
        "peer": entry.peer,
        "sending_app": entry.sending_app,
        "sending_facility": entry.sending_facility,
        "control_id": entry.control_id,
        "message_type": entry.message_type,
        "ack_code": entry.ack_code,
        "accepted": entry.accepted(),
        "ack_sent": entry.ack_sent,
        "error_code": entry.reason.as_ref().map(|r| r.error_code),
        "reason": entry.reason,
        "bytes": entry.raw.len(),
    })
}

#[cfg(test)]
mod tests;
