//! The engine's Prometheus metrics: the registry, the handles the hot path
//! bumps, and the values read only when `/metrics` is scraped.
//!
//! Built on `prometheus-client` (the Prometheus project's own Rust client):
//! it renders the classic text format (0.0.4) from a registry we own, with
//! no global recorder, no background thread and no HTTP listener of its own,
//! so each engine (several per test binary) has its own counters and
//! `/metrics` is an ordinary axum route. `metrics-exporter-prometheus` would
//! need a process-global recorder and an upkeep task for the same result.
//!
//! Counters are bumped by the event structs in [`crate::events`], never here
//! directly, so a log line and its counters cannot drift apart. Values other
//! parts already count (connection counters, log drops, index lag, journal
//! size, health) are read at scrape time: nothing on the hot path pays for them.
//!
//! Labels taken from the network (MSH-3, MSH-4, MSH-9) are capped: the first
//! [`MAX_SENDERS`] senders and [`MAX_TYPES`] message types get their own
//! series, later ones are counted as `other`, so a hostile sender cannot grow
//! memory or the scrape without bound.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

mod http;
mod scrape;

pub use scrape::{JournalSize, Scrape};

/// Distinct (MSH-3, MSH-4) pairs labelled by name; later ones are `other`.
pub const MAX_SENDERS: usize = 200;
/// Distinct MSH-9 values labelled by name; later ones are `other`.
pub const MAX_TYPES: usize = 100;
/// Raw label combinations remembered for the allocation-free fast path;
/// past it a new combination is still counted, only more slowly.
const MAX_CACHED: usize = 4096;
/// Label values longer than this are cut (at a character boundary).
const MAX_LABEL_BYTES: usize = 64;
/// What a capped label reads.
pub const OTHER: &str = "other";

/// The `Content-Type` of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;

/// Shared, cheap to clone; one per engine.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    enabled: AtomicBool,
    registry: Registry,
    messages: Family<Labels, Counter>,
    message_cache: Mutex<MessageCache>,
    naks: Family<Labels, Counter>,
    ack_latency: Histogram,
    commit_latency: Histogram,
    batch_size: Histogram,
    commit_failures: Counter,
    ignored: Counter,
    /// By exclusion rule id (`src/govern/`).
    suppressed: Family<Labels, Counter>,
    /// The read API's guard refusals (`metrics/http.rs`).
    http: http::HttpCounters,
    scraped: Scraped,
}

/// Values copied in at scrape time from where they are already counted.
#[derive(Default)]
struct Scraped {
    journal_bytes: Gauge,
    journal_segments: Gauge,
    index_lag: Gauge,
    unindexed: Gauge,
    refused: Counter,
    connections_open: Gauge,
    connections: Family<Labels, Counter>,
    frame_bytes_dropped: Counter,
    log_dropped: Counter,
    log_write_errors: Counter,
    charset_fallbacks: Counter,
    health: Family<Labels, Gauge>,
    ready: Family<Labels, Gauge>,
}

/// Label handles per raw (type, app, facility, verdict, duplicate), so the
/// common case is one hash lookup with no allocation.
#[derive(Default)]
struct MessageCache {
    key: String,
    counters: HashMap<String, Counter>,
    senders: HashSet<String>,
    types: HashSet<String>,
    /// By ERR-3 code: the engine's own codes (table 0357), a handful.
    naks: HashMap<u16, Counter>,
}

/// One message's labels, as received.
pub struct MessageLabels<'a> {
    pub msg_type: &'a str,
    pub sending_app: &'a str,
    pub sending_facility: &'a str,
    /// `accepted`, `error` or `rejected`.
    pub verdict: &'static str,
    pub duplicate: bool,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metrics(enabled: {})", self.enabled())
    }
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 50 µs .. ~6.5 s, doubling: an fdatasync is 0.1–20 ms on real disks.
    exponential_buckets(0.000_05, 2.0, 18)
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("recordhub");
        let messages = Family::<Labels, Counter>::default();
        r.register(
            "messages",
            "Messages by MSH-9 type, sender (MSH-3, MSH-4), verdict and whether an identical retransmission",
            messages.clone(),
        );
        let naks = Family::<Labels, Counter>::default();
        r.register("naks", "Messages answered AE or AR, by ERR-3 code (HL7 table 0357)", naks.clone());
        let ack_latency = Histogram::new(seconds_buckets());
        r.register(
            "ack_latency_seconds",
            "Time from a frame received to its outcome decided (ACK ready)",
            ack_latency.clone(),
        );
        let commit_latency = Histogram::new(seconds_buckets());
        r.register(
            "journal_commit_seconds",
            "Time of one journal group commit (write and fdatasync)",
            commit_latency.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        r.register("journal_commit_batch_entries", "Journal entries sharing one group commit", batch_size.clone());
        let commit_failures = Counter::default();
        r.register(
            "journal_commit_failures",
            "Journal group commits that failed (their batch was answered AR 207)",
            commit_failures.clone(),
        );
        let ignored = Counter::default();
        r.register(
            "messages_ignored",
            "Messages accepted and journaled but knowingly not filed (an event the mappings ignore)",
            ignored.clone(),
        );
        let suppressed = Family::<Labels, Counter>::default();
        r.register(
            "items_suppressed",
            "Items an exclusion rule kept out of the record, by rule id",
            suppressed.clone(),
        );
        let http = http::HttpCounters::register(&mut r);
        let s = Scraped::default();
        r.register("journal_bytes", "Bytes in journal segment files", s.journal_bytes.clone());
        r.register("journal_segments", "Journal segment files", s.journal_segments.clone());
        r.register(
            "index_lag_entries",
            "Journal entries committed but not yet applied to the index",
            s.index_lag.clone(),
        );
        r.register("unindexed_entries", "Journal entries waiting for the index writer", s.unindexed.clone());
        r.register(
            "journal_refused_messages",
            "Messages refused (AR 207) because the journal could not store them",
            s.refused.clone(),
        );
        r.register("connections_open", "MLLP connections open now", s.connections_open.clone());
        r.register(
            "connections",
            "MLLP connections by what happened: accepted, refused_per_peer, refused_full, idle_evicted, timed_out, tls_handshake_failed",
            s.connections.clone(),
        );
        r.register(
            "frame_dropped_bytes",
            "Bytes received outside any MLLP frame, dropped",
            s.frame_bytes_dropped.clone(),
        );
        r.register(
            "log_dropped_lines",
            "Log lines dropped because the log queue was full (stderr stalled)",
            s.log_dropped.clone(),
        );
        r.register("log_write_errors", "Log lines lost because writing to stderr failed", s.log_write_errors.clone());
        r.register(
            "charset_fallbacks",
            "Messages decoded with the fallback charset (unknown MSH-18)",
            s.charset_fallbacks.clone(),
        );
        r.register("health", "1 when this /health check passes, 0 when it fails", s.health.clone());
        r.register("ready", "1 when this /ready check passes, 0 when it fails", s.ready.clone());
        Metrics(Arc::new(Inner {
            enabled: AtomicBool::new(true),
            registry: r,
            messages,
            message_cache: Mutex::default(),
            naks,
            ack_latency,
            commit_latency,
            batch_size,
            commit_failures,
            ignored,
            suppressed,
            http,
            scraped: s,
        }))
    }

    /// `[http] metrics = false` turns recording off (and `/metrics` answers 404).
    pub fn set_enabled(&self, on: bool) {
        self.0.enabled.store(on, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.0.enabled.load(Ordering::Relaxed)
    }

    /// One message decided. Called by [`crate::events::MessageOutcome`] (and
    /// the bench); no allocation once its labels have been seen.
    pub fn message(&self, labels: &MessageLabels<'_>, nak_code: Option<u16>, elapsed: Duration) {
        if !self.enabled() {
            return;
        }
        {
            // Only ever Counter handles and label strings behind the lock.
            let mut cache = self.0.message_cache.lock().unwrap_or_else(PoisonError::into_inner);
            self.message_counter(&mut cache, labels);
            if let Some(code) = nak_code {
                let naks = &self.0.naks;
                cache
                    .naks
                    .entry(code)
                    .or_insert_with(|| naks.get_or_create_owned(&vec![("code", code.to_string())]))
                    .inc();
            }
        }
        self.0.ack_latency.observe(elapsed.as_secs_f64());
    }

    fn message_counter(&self, cache: &mut MessageCache, l: &MessageLabels<'_>) {
        cache.key.clear();
        let dup = if l.duplicate { "true" } else { "false" };
        for part in [l.msg_type, l.sending_app, l.sending_facility, l.verdict, dup] {
            cache.key.push_str(part);
            cache.key.push('\u{1f}');
        }
        if let Some(c) = cache.counters.get(cache.key.as_str()) {
            c.inc();
            return;
        }
        let sender = format!("{}\u{1f}{}", l.sending_app, l.sending_facility);
        let known_sender = admit(&mut cache.senders, sender, MAX_SENDERS);
        let known_type = admit(&mut cache.types, l.msg_type.to_string(), MAX_TYPES);
        let (app, facility) =
            if known_sender { (label(l.sending_app), label(l.sending_facility)) } else { (OTHER.into(), OTHER.into()) };
        let labels: Labels = vec![
            ("msg_type", if known_type { label(l.msg_type) } else { OTHER.into() }),
            ("sending_app", app),
            ("sending_facility", facility),
            ("verdict", l.verdict.to_string()),
            ("duplicate", dup.to_string()),
        ];
        let counter = self.0.messages.get_or_create_owned(&labels);
        counter.inc();
        if cache.counters.len() < MAX_CACHED {
            cache.counters.insert(cache.key.clone(), counter);
        }
    }

    /// One journal group commit; called by [`crate::events::JournalCommitted`].
    pub fn commit(&self, entries: u64, elapsed: Duration) {
        if !self.enabled() {
            return;
        }
        self.0.commit_latency.observe(elapsed.as_secs_f64());
        self.0.batch_size.observe(entries as f64);
    }

    /// A failed journal commit; called by [`crate::events::JournalCommitFailed`].
    /// One message of an ignored event filed nothing ([`crate::events::MessageIgnored`]).
    pub fn message_ignored(&self) {
        if self.enabled() {
            self.0.ignored.inc();
        }
    }

    /// `n` items of one message excluded by exclusion rule `rule` (labels: rule ids, never content).
    pub fn items_suppressed(&self, rule: &str, n: u64) {
        if self.enabled() {
            self.0.suppressed.get_or_create(&vec![("rule", label(rule))]).inc_by(n);
        }
    }

    pub fn commit_failed(&self) {
        if self.enabled() {
            self.0.commit_failures.inc();
        }
    }

    /// The registry in Prometheus text format (0.0.4), after copying in `now`.
    pub fn render(&self, now: &Scrape) -> String {
        let s = &self.0.scraped;
        let set = |c: &Counter, v: u64| {
            c.inner().store(v, Ordering::Relaxed);
        };
        let gauge = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        gauge(&s.journal_bytes, now.journal.bytes);
        gauge(&s.journal_segments, now.journal.segments);
        gauge(&s.index_lag, now.index_lag);
        if let Some(n) = now.unindexed {
            gauge(&s.unindexed, n);
        }
        set(&s.refused, now.refused);
        let c = &now.connections;
        gauge(&s.connections_open, c.accepted.saturating_sub(c.closed));
        for (what, v) in [
            ("accepted", c.accepted),
            ("refused_per_peer", c.refused_per_peer),
            ("refused_full", c.refused_full),
            ("idle_evicted", c.idle_evicted),
            ("timed_out", c.timed_out),
            ("tls_handshake_failed", c.tls_handshakes_failed),
        ] {
            set(&s.connections.get_or_create(&vec![("event", what.to_string())]), v);
        }
        set(&s.frame_bytes_dropped, c.bytes_dropped_outside_frames);
        set(&s.log_dropped, now.log.dropped_lines);
        set(&s.log_write_errors, now.log.write_errors);
        set(&s.charset_fallbacks, now.charset_fallbacks);
        for (family, checks, key) in [(&s.health, &now.health, "part"), (&s.ready, &now.ready, "check")] {
            for (name, ok) in checks {
                family.get_or_create(&vec![(key, name.to_string())]).set(i64::from(*ok));
            }
        }
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; an encoder error would be a bug
        // in a label value, and a partial page is still better than none.
        if prometheus_text::encode(&mut out, &self.0.registry).is_err() {
            let _ = writeln!(out, "# encoding stopped early");
        }
        if let Some(state) = &now.cluster {
            scrape::write_cluster(&mut out, state);
        }
        out
    }
}

/// Remembers `value` while fewer than `max` are known; whether it is known.
fn admit(known: &mut HashSet<String>, value: String, max: usize) -> bool {
    if known.contains(&value) {
        return true;
    }
    if known.len() < max {
        known.insert(value);
        return true;
    }
    false
}

/// A network value as a label: cut to [`MAX_LABEL_BYTES`], `none` when empty.
/// (The encoder escapes quotes, backslashes and newlines.)
fn label(v: &str) -> String {
    if v.is_empty() {
        return "none".into();
    }
    let mut end = v.len().min(MAX_LABEL_BYTES);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    v[..end].to_string()
}

#[cfg(test)]
mod tests;
