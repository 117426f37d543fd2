//! The read API's refusals (`src/http/guard.rs`): requests refused before
//! any handler ran, reads over a rate limit, and enumeration alerts. Label
//! values are fixed words, never anything a client sent.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{Labels, Metrics};

#[derive(Default)]
pub(super) struct HttpCounters {
    refused: Family<Labels, Counter>,
    rate_limited: Family<Labels, Counter>,
    enumeration: Family<Labels, Counter>,
}

impl HttpCounters {
    pub(super) fn register(r: &mut Registry) -> HttpCounters {
        let c = HttpCounters::default();
        r.register(
            "http_refused",
            "HTTP requests refused before any handler ran, by reason: host, duplicate_header, \
             header_too_large, too_many_headers, cross_origin, content_type",
            c.refused.clone(),
        );
        r.register(
            "http_rate_limited",
            "Patient reads refused with 429, by the limit that was reached: user or client",
            c.rate_limited.clone(),
        );
        r.register(
            "http_enumeration_alerts",
            "Possible enumeration: one user or client read more distinct patients than \
             [http] enumeration_patients within the window (once per window each), by scope",
            c.enumeration.clone(),
        );
        c
    }
}

impl Metrics {
    /// A request refused by the guard; called by [`crate::events::HttpRefused`].
    pub fn http_refused(&self, reason: &'static str) {
        if self.enabled() {
            self.0.http.refused.get_or_create(&vec![("reason", reason.to_string())]).inc();
        }
    }

    /// A read over a rate limit; called by [`crate::events::ReadRateLimited`].
    pub fn http_rate_limited(&self, scope: &'static str) {
        if self.enabled() {
            self.0.http.rate_limited.get_or_create(&vec![("scope", scope.to_string())]).inc();
        }
    }

    /// An enumeration alert; called by [`crate::events::EnumerationSuspected`].
    pub fn enumeration_alert(&self, scope: &'static str) {
        if self.enabled() {
            self.0.http.enumeration.get_or_create(&vec![("scope", scope.to_string())]).inc();
        }
    }
}
