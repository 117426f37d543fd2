//! Internal events: one struct per thing worth telling an operator, whose
//! `emit` writes its log line and bumps its counters (as Vector's
//! `internal_events` do), so the log and `/metrics` always agree and a new
//! counter is added in one place. Field names follow
//! [`crate::telemetry::fields`]; never message content or patient identifiers.

use std::time::Duration;

use crate::metrics::{MessageLabels, Metrics};
use crate::pipeline::Outcome;

/// One message decided: the one INFO line per message, and its counters
/// (`recordhub_messages_total`, `recordhub_naks_total`,
/// `recordhub_ack_latency_seconds`).
pub struct MessageOutcome<'a> {
    pub outcome: &'a Outcome,
    pub peer: &'a str,
    /// Frame received → outcome decided.
    pub elapsed_us: u64,
}

impl MessageOutcome<'_> {
    /// Routing fields and outcome, never content. `verdict` is what was
    /// decided; `ack_code` is what the sender was told, `none` when MSH-15
    /// asked for no ACK. Accepted messages log at INFO; AE/AR (the sender's
    /// queue now holds a NAK someone must look at) at WARN. Every line has
    /// `seq` (0: not journaled, e.g. a failed store) and `control_id`.
    pub fn emit(&self, metrics: &Metrics) {
        let (o, peer, elapsed_us) = (self.outcome, self.peer, self.elapsed_us);
        let e = &o.envelope;
        let ack_code = if o.ack.is_some() { o.code.as_str() } else { "none" };
        let verdict = o.verdict();
        let seq = o.seq.unwrap_or(0);
        match &o.problem {
            None => tracing::info!(
                control_id = %e.inbound.control_id, seq, msg_type = %e.message_type, sending_app = %e.inbound.sending_app,
                sending_facility = %e.inbound.sending_facility, verdict, ack_code, ack_sent = o.ack.is_some(),
                bytes = o.bytes, elapsed_us, peer = %peer, duplicate = o.duplicate, "message"
            ),
            Some((stage, p)) => tracing::warn!(
                control_id = %e.inbound.control_id, seq, msg_type = %e.message_type, sending_app = %e.inbound.sending_app,
                sending_facility = %e.inbound.sending_facility, verdict, ack_code, ack_sent = o.ack.is_some(),
                bytes = o.bytes, elapsed_us, peer = %peer, stage = stage.as_str(), error_kind = p.code,
                error = %p.text, "message"
            ),
        }
        let labels = MessageLabels {
            msg_type: &e.message_type,
            sending_app: &e.inbound.sending_app,
            sending_facility: &e.inbound.sending_facility,
            verdict,
            duplicate: o.duplicate,
        };
        let nak = if o.code.is_accept() { None } else { o.problem.as_ref().map(|(_, p)| p.code) };
        metrics.message(&labels, nak, Duration::from_micros(elapsed_us));
    }
}

/// An HTTP request refused before any handler ran (`src/http/guard.rs`):
/// WARN and `recordhub_http_refused_total{reason}`. `detail` is the
/// offending `Host` or header name (cut short), never a header value.
pub struct HttpRefused<'a> {
    /// `host`, `duplicate_header`, `header_too_large`, `too_many_headers`,
    /// `cross_origin` or `content_type`.
    pub reason: &'static str,
    pub detail: &'a str,
    pub client: &'a str,
    pub method: &'a str,
    pub path: &'a str,
}

impl HttpRefused<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        // A path may hold an NHS number: only its route is logged.
        let route = crate::http::guard::route_of(self.path);
        tracing::warn!(reason = self.reason, detail = %cut(self.detail), client = %self.client,
            method = %cut(self.method), route, "HTTP request refused");
        metrics.http_refused(self.reason);
    }
}

/// A patient read over a rate limit, answered 429:
/// `recordhub_http_rate_limited_total{scope}`. DEBUG only: a flood of
/// refusals must not flood the log (the enumeration alert is the WARN).
pub struct ReadRateLimited<'a> {
    /// `user` or `client`.
    pub scope: &'static str,
    pub client: &'a str,
    pub retry_after_secs: u64,
}

impl ReadRateLimited<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        tracing::debug!(scope = self.scope, client = %self.client, retry_after_secs = self.retry_after_secs,
            "patient read rate limit reached");
        metrics.http_rate_limited(self.scope);
    }
}

/// One user or client read more distinct patients than
/// `[http] enumeration_patients` within the window (once per window each):
/// WARN and `recordhub_http_enumeration_alerts_total{scope}`. The reads
/// themselves go on (the rate limits bound them); an operator looks.
pub struct EnumerationSuspected<'a> {
    /// `user` or `client`.
    pub scope: &'static str,
    pub client: &'a str,
    /// `X-User`'s name, or `token:<hash>` / `cookie:<hash>` (never a credential).
    pub user: &'a str,
    pub distinct_patients: usize,
    pub window_secs: u64,
}

impl EnumerationSuspected<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        tracing::warn!(scope = self.scope, client = %self.client, user = %cut(self.user),
            distinct_patients = self.distinct_patients, window_secs = self.window_secs,
            "possible enumeration: many distinct patients read");
        metrics.enumeration_alert(self.scope);
    }
}

/// A client-supplied string cut to 100 bytes (at a character boundary) for a log field.
fn cut(text: &str) -> &str {
    let mut end = text.len().min(100);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A journal group commit succeeded: `recordhub_journal_commit_seconds` and
/// `recordhub_journal_commit_batch_entries`. No log line (one per batch
/// would double the log volume at load).
pub struct JournalCommitted {
    pub entries: u64,
    pub elapsed: Duration,
}

impl JournalCommitted {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.commit(self.entries, self.elapsed);
    }
}

/// Journal writes succeed again after failing.
pub struct JournalRecovered;

impl JournalRecovered {
    pub fn emit(&self) {
        tracing::info!("journal writes succeed again; accepting messages");
    }
}

/// A journal commit failed: its batch is refused.
/// `recordhub_journal_commit_failures_total`.
pub struct JournalCommitFailed<'a> {
    pub error: &'a str,
    pub messages: u64,
}

impl JournalCommitFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        tracing::error!(error = %self.error, messages = self.messages,
            "journal commit failed: the batch is answered AR 207 and senders will retry; check disk space and the device");
        metrics.commit_failed();
    }
}

/// An accepted message whose event the mappings knowingly ignore (`ignore`
/// in a mapping file): journaled, never filed. `recordhub_messages_ignored_total`.
pub struct MessageIgnored<'a> {
    pub control_id: &'a str,
    /// Its journal seq.
    pub seq: u64,
    pub msg_type: &'a str,
    pub sending_app: &'a str,
    pub sending_facility: &'a str,
}

impl MessageIgnored<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        tracing::info!(control_id = %self.control_id, seq = self.seq, msg_type = %self.msg_type, sending_app = %self.sending_app,
            sending_facility = %self.sending_facility, outcome = "ignored",
            "event ignored by the mappings: accepted and journaled, not filed");
        metrics.message_ignored();
    }
}

/// Optional values of a filed message that did not fit their type and were
/// left out. `warnings` is a JSON array (as a string: the log's JSON layer
/// has no array values) of field names and rules, never the values.
pub struct MappingWarnings<'a> {
    pub seq: u64,
    pub control_id: &'a str,
    pub warnings: &'a [String],
}

impl MappingWarnings<'_> {
    pub fn emit(&self) {
        let warnings = serde_json::to_string(self.warnings).unwrap_or_default();
        tracing::warn!(control_id = %self.control_id, seq = self.seq, warnings = %warnings,
            "optional values did not fit their type and were left out");
    }
}
