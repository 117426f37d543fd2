//! What one connection (or, merged, the whole run) counted, and the
//! summary with latency percentiles.

use std::time::Duration;

use super::{Latency, LoadSummary};

/// Counts for one connection, or for the whole run once merged.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) sent: u64,
    /// (MSA-1, count): a handful of codes, so a Vec beats a map.
    pub(super) codes: Vec<(Vec<u8>, u64)>,
    pub(super) timeouts: u64,
    pub(super) errors: u64,
    pub(super) latencies_us: Vec<u64>,
}

impl Tally {
    pub(super) fn count_code(&mut self, code: &[u8]) {
        match self.codes.iter_mut().find(|(c, _)| c == code) {
            Some((_, count)) => *count += 1,
            None => self.codes.push((code.to_vec(), 1)),
        }
    }

    pub(super) fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        for (code, count) in other.codes {
            match self.codes.iter_mut().find(|(c, _)| *c == code) {
                Some((_, total)) => *total += count,
                None => self.codes.push((code, count)),
            }
        }
        self.timeouts += other.timeouts;
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
    }

    pub(super) fn summary(mut self, elapsed: Duration) -> LoadSummary {
        self.latencies_us.sort_unstable();
        let acked = self.latencies_us.len() as u64;
        let secs = elapsed.as_secs_f64();
        LoadSummary {
            sent: self.sent,
            acked_by_code: self
                .codes
                .into_iter()
                .map(|(code, n)| (String::from_utf8_lossy(&code).into_owned(), n))
                .collect(),
            timeouts: self.timeouts,
            errors: self.errors,
            elapsed_secs: secs,
            messages_per_sec: if secs > 0.0 { acked as f64 / secs } else { 0.0 },
            latency_us: percentiles(&self.latencies_us),
        }
    }
}

/// Nearest-rank percentiles of sorted values.
pub(super) fn percentiles(sorted: &[u64]) -> Latency {
    let rank = |p: f64| {
        let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[i]
    };
    if sorted.is_empty() {
        return Latency::default();
    }
    Latency { p50: rank(0.50), p90: rank(0.90), p99: rank(0.99), max: sorted[sorted.len() - 1] }
}
