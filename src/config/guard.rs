//! `[http]` request-guard keys → [`GuardConfig`]: the `Host` allow-list,
//! header bounds, read rate limits and the enumeration alert (used by
//! `src/http/guard.rs`). Kept apart from the other `[http]` keys so the
//! guards can be read, and changed, in one place.

use std::time::Duration;

use super::raw::RawHttp;
use super::validate::Validator;

/// Validated request-guard keys of `[http]`. Docs are on the [`RawHttp`] keys.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    /// Lower-case host names, each `name` or `name:port`.
    pub allowed_hosts: Vec<String>,
    pub max_header_bytes: usize,
    pub max_headers_bytes: usize,
    pub max_headers: usize,
    pub reads_per_minute: u32,
    pub client_reads_per_minute: u32,
    pub enumeration_patients: usize,
    pub enumeration_window: Duration,
}

pub(super) fn validate(raw: &RawHttp, v: &mut Validator<'_>) -> GuardConfig {
    let mut hosts = Vec::new();
    for name in &raw.allowed_hosts {
        let host = name.trim().to_ascii_lowercase();
        if !is_host(&host) {
            v.report(
                "http.allowed_hosts",
                format!("{name:?}"),
                "expected a host name or address as a browser sends it in Host, like \"records.rj1.nhs.uk\" \
                 or \"records.rj1.nhs.uk:8443\" (no scheme, path or spaces)",
            );
            continue;
        }
        hosts.push(host);
    }
    GuardConfig {
        allowed_hosts: hosts,
        max_header_bytes: v.count("http.max_header_bytes", raw.max_header_bytes),
        max_headers_bytes: v.count("http.max_headers_bytes", raw.max_headers_bytes),
        max_headers: v.count("http.max_headers", raw.max_headers),
        reads_per_minute: per_minute("http.reads_per_minute", raw.reads_per_minute, v),
        client_reads_per_minute: per_minute("http.client_reads_per_minute", raw.client_reads_per_minute, v),
        enumeration_patients: v.count("http.enumeration_patients", raw.enumeration_patients),
        enumeration_window: v.secs("http.enumeration_window_secs", raw.enumeration_window_secs),
    }
}

/// A rate: at least 1, and small enough to count in a `u32`.
fn per_minute(key: &str, value: u64, v: &mut Validator<'_>) -> u32 {
    let value = v.positive(key, value);
    u32::try_from(value).unwrap_or_else(|_| {
        v.report(key, value.to_string(), format!("must be at most {}", u32::MAX));
        u32::MAX
    })
}

/// What a `Host` header may hold: a name or an address, an optional port.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'))
}

#[cfg(test)]
mod tests {
    use super::super::raw::RawConfig;
    use super::super::validate::{validate as validate_all, Origins};
    use super::super::{ConfigError, Problem};
    use super::*;

    fn problems(http: RawHttp) -> Vec<Problem> {
        match validate_all(RawConfig { http, ..RawConfig::default() }, &Origins::default()) {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn hosts_are_lower_cased() {
        let http = RawHttp { allowed_hosts: vec!["Records.RJ1.nhs.uk".into()], ..RawHttp::default() };
        let cfg = validate_all(RawConfig { http, ..RawConfig::default() }, &Origins::default()).unwrap();
        assert_eq!(cfg.http.guard.allowed_hosts, ["records.rj1.nhs.uk"]);
    }

    #[test]
    fn a_url_in_allowed_hosts_is_refused_naming_the_key_and_value() {
        let p = problems(RawHttp { allowed_hosts: vec!["https://evil/".into()], ..RawHttp::default() });
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "http.allowed_hosts");
        assert!(p[0].value.contains("https://evil/") && p[0].reason.contains("no scheme"), "{p:?}");
    }

    #[test]
    fn a_zero_rate_is_refused() {
        let p = problems(RawHttp { reads_per_minute: 0, ..RawHttp::default() });
        assert_eq!(p[0].key, "http.reads_per_minute", "{p:?}");
        assert!(p[0].reason.contains("positive"), "{p:?}");
    }
}
