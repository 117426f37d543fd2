//! [`RawConfig`] → [`Config`]: every value checked and typed, every problem
//! reported at once with where the value came from, and relative paths resolved.
//!
//! Relative paths (`store.data_dir`, `mapping.dir`) written in the config file,
//! and their defaults when a file is in use, are relative to the file's
//! directory: `recordhub serve --config /etc/recordhub/engine.toml` must open
//! the same data from any working directory (issue 8, hole 15). Paths from the
//! command line or the environment are relative to the working directory, as a
//! shell user expects; with no config file, so are the defaults.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::positions::Positions;
use super::raw::{RawAck, RawConfig, RawHl7, RawLog, RawMllp, RawStore, PROCESSING_IDS};
use super::{
    AckConfig, Config, ConfigError, Hl7Config, HttpConfig, JournalDamage, LogConfig, LogFormat, MappingConfig,
    MllpConfig, Overrides, Problem, StoreConfig, UnknownCharset, CHARSETS, ENV_PREFIX, ENV_SEPARATOR,
};

/// Characters that would break an MSH field if used in our MSH-3/MSH-4 (HL7 2.5 ch. 2.5.4).
const HL7_DELIMITERS: &[char] = &['|', '^', '~', '\\', '&', '\r', '\n'];
/// Largest `log.buffer_lines` (about 40 MB of queue slots before any line is queued).
const MAX_LOG_BUFFER_LINES: usize = 1 << 20;

/// Where each value came from, to point validation problems at it and to
/// resolve relative paths.
#[derive(Default)]
pub(super) struct Origins {
    pub(super) positions: Option<Positions>,
    /// The config file's directory, absolute; `None` without a file.
    pub(super) base: Option<PathBuf>,
    pub(super) env: Vec<String>,
    pub(super) overrides: Overrides,
}

/// Where one value came from.
enum Origin {
    CommandLine,
    Env(String),
    /// `file:line:col`.
    File(String),
    Default,
}

impl Origins {
    fn origin(&self, key: &str) -> Origin {
        let o = &self.overrides;
        let overridden = match key {
            "mllp.listen" => o.listen.is_some(),
            "http.listen" => o.http_listen.is_some(),
            "store.data_dir" => o.data_dir.is_some(),
            _ => false,
        };
        let var = format!("{ENV_PREFIX}{ENV_SEPARATOR}{}", key.replace('.', ENV_SEPARATOR));
        if overridden {
            Origin::CommandLine
        } else if let Some(name) = self.env.iter().find(|name| name.eq_ignore_ascii_case(&var)) {
            Origin::Env(name.clone())
        } else if let Some(at) = self.positions.as_ref().and_then(|p| p.locate(key)) {
            Origin::File(at)
        } else {
            Origin::Default
        }
    }

    fn describe(&self, key: &str) -> String {
        match self.origin(key) {
            Origin::CommandLine => "command line".into(),
            Origin::Env(name) => format!("environment variable {name}"),
            Origin::File(at) => at,
            Origin::Default => "default".into(),
        }
    }

    /// The directory a relative path in `key` is relative to; `None` for the working directory.
    pub(super) fn base_for(&self, key: &str) -> Option<&Path> {
        match self.origin(key) {
            Origin::CommandLine | Origin::Env(_) => None,
            Origin::File(_) | Origin::Default => self.base.as_deref(),
        }
    }
}

/// `path` made relative to `base` when it is relative and a base is given, without
/// `.` components; absolute paths and `None` bases return `path` unchanged.
/// Pure (no file system access, symlinks untouched), so it can be tested directly.
pub fn resolve_path(path: &Path, base: Option<&Path>) -> PathBuf {
    match base {
        Some(base) if path.is_relative() => {
            base.join(path).components().filter(|c| !matches!(c, Component::CurDir)).collect()
        }
        _ => path.to_path_buf(),
    }
}

/// Collects problems; each check returns a placeholder on failure so checking goes on.
pub(super) struct Validator<'a> {
    pub(super) origins: &'a Origins,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    pub(super) fn report(&mut self, key: &str, value: String, reason: impl Into<String>) {
        let origin = self.origins.describe(key);
        self.problems.push(Problem { origin, key: key.into(), value, reason: reason.into() });
    }

    /// A problem in a nested value (`mllp.listeners[1].tls.cert`), placed at
    /// its enclosing key's position (`at`).
    pub(super) fn report_in(&mut self, at: &str, key: &str, value: String, reason: impl Into<String>) {
        let origin = self.origins.describe(at);
        self.problems.push(Problem { origin, key: key.into(), value, reason: reason.into() });
    }

    pub(super) fn addr(&mut self, key: &str, value: &str) -> SocketAddr {
        value.parse().unwrap_or_else(|_| {
            self.report(key, format!("{value:?}"), "not an IP socket address like 127.0.0.1:2575");
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }

    pub(super) fn positive(&mut self, key: &str, value: u64) -> u64 {
        if value == 0 {
            self.report(key, "0".into(), "must be a positive number");
        }
        value
    }

    pub(super) fn count(&mut self, key: &str, value: u64) -> usize {
        let value = self.positive(key, value);
        usize::try_from(value).unwrap_or_else(|_| {
            self.report(key, value.to_string(), "too large for this platform");
            usize::MAX
        })
    }

    pub(super) fn secs(&mut self, key: &str, value: u64) -> Duration {
        Duration::from_secs(self.positive(key, value))
    }

    /// A directory path, resolved against its origin's base (see the module docs).
    fn dir(&mut self, key: &str, value: PathBuf) -> PathBuf {
        if value.as_os_str().is_empty() {
            self.report(key, "\"\"".into(), "must name a directory");
            return value;
        }
        resolve_path(&value, self.origins.base_for(key))
    }

    pub(super) fn hl7_name(&mut self, key: &str, value: String) -> String {
        if value.is_empty() || value.contains(HL7_DELIMITERS) {
            self.report(key, format!("{value:?}"), "must be non-empty text without HL7 delimiters | ^ ~ \\ &");
        }
        value
    }

    /// One of a fixed set of words; `choices[0]` stands in on failure.
    pub(super) fn choice<T: Copy>(&mut self, key: &str, value: &str, choices: &[(&str, T)]) -> T {
        if let Some(&(_, t)) = choices.iter().find(|(name, _)| *name == value) {
            return t;
        }
        let names: Vec<String> = choices.iter().map(|(name, _)| format!("{name:?}")).collect();
        self.report(key, format!("{value:?}"), format!("expected one of {}", names.join(", ")));
        choices[0].1
    }
}

pub(super) fn validate(raw: RawConfig, origins: &Origins) -> Result<Config, ConfigError> {
    let mut v = Validator { origins, problems: Vec::new() };
    let config = Config {
        mllp: validate_mllp(&raw.mllp, &mut v),
        http: HttpConfig {
            listen: v.addr("http.listen", &raw.http.listen),
            metrics: raw.http.metrics,
            tls: raw.http.tls.as_ref().map(|t| super::listeners::http_tls(t, &mut v)),
            guard: super::guard::validate(&raw.http, &mut v),
        },
        store: validate_store(raw.store, &mut v),
        ack: validate_ack(raw.ack, &mut v),
        hl7: validate_hl7(&raw.hl7, &mut v),
        mapping: MappingConfig { dir: v.dir("mapping.dir", raw.mapping.dir) },
        log: validate_log(raw.log, &mut v),
        audit: validate_audit(&raw.audit, &mut v),
        retention: super::ops::validate_retention(raw.retention, &mut v),
        dedup: super::ops::validate_dedup(raw.dedup, &mut v),
        auth: super::auth::validate(raw.auth, &mut v),
        cluster: super::cluster::validate(raw.cluster, &mut v),
    };
    if v.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(v.problems))
    }
}

fn validate_mllp(raw: &RawMllp, v: &mut Validator<'_>) -> MllpConfig {
    let max_connections = v.count("mllp.max_connections", raw.max_connections);
    let per_peer = v.count("mllp.max_connections_per_peer", raw.max_connections_per_peer);
    if per_peer > max_connections {
        v.report(
            "mllp.max_connections_per_peer",
            per_peer.to_string(),
            format!("must be at most mllp.max_connections ({max_connections})"),
        );
    }
    MllpConfig {
        listen: v.addr("mllp.listen", &raw.listen),
        max_frame_bytes: v.count("mllp.max_frame_bytes", raw.max_frame_bytes),
        idle_timeout: v.secs("mllp.idle_timeout_secs", raw.idle_timeout_secs),
        frame_timeout: v.secs("mllp.frame_timeout_secs", raw.frame_timeout_secs),
        max_connections,
        max_connections_per_peer: per_peer,
        max_in_flight: v.count("mllp.max_in_flight", raw.max_in_flight),
        ack_timeout: v.secs("mllp.ack_timeout_secs", raw.ack_timeout_secs),
        listeners: super::listeners::validate(&raw.listeners, v),
    }
}

fn validate_store(raw: RawStore, v: &mut Validator<'_>) -> StoreConfig {
    let damage = [("refuse", JournalDamage::Refuse), ("quarantine", JournalDamage::Quarantine)];
    StoreConfig {
        data_dir: v.dir("store.data_dir", raw.data_dir),
        journal_segment_bytes: v.positive("store.journal_segment_bytes", raw.journal_segment_bytes),
        index_cache_bytes: v.positive("store.index_cache_bytes", raw.index_cache_bytes),
        max_batch: v.count("store.max_batch", raw.max_batch),
        on_journal_damage: v.choice("store.on_journal_damage", &raw.on_journal_damage, &damage),
    }
}

fn validate_ack(raw: RawAck, v: &mut Validator<'_>) -> AckConfig {
    let ids: Vec<String> = raw.processing_ids.iter().map(|id| id.trim().to_string()).collect();
    if ids.is_empty() || ids.iter().any(|id| !PROCESSING_IDS.contains(&id.as_str())) {
        let value = format!("{:?}", raw.processing_ids);
        v.report("ack.processing_ids", value, "must list one or more of \"P\", \"D\", \"T\" (HL7 table 0103)");
    }
    AckConfig {
        application: v.hl7_name("ack.application", raw.application),
        facility: v.hl7_name("ack.facility", raw.facility),
        processing_ids: ids,
    }
}

fn validate_hl7(raw: &RawHl7, v: &mut Validator<'_>) -> Hl7Config {
    let name = raw.fallback_charset.to_ascii_lowercase();
    if !CHARSETS.contains(&name.as_str()) {
        v.report(
            "hl7.fallback_charset",
            format!("{:?}", raw.fallback_charset),
            format!("unknown charset; expected one of {}", CHARSETS.join(", ")),
        );
    }
    let policies = [("reject", UnknownCharset::Reject), ("fallback", UnknownCharset::Fallback)];
    let unknown_charset = v.choice("hl7.unknown_charset", &raw.unknown_charset, &policies);
    Hl7Config { fallback_charset: name, unknown_charset }
}

fn validate_log(raw: RawLog, v: &mut Validator<'_>) -> LogConfig {
    let parsed = tracing_subscriber::EnvFilter::builder().parse(&raw.level);
    if raw.level.trim().is_empty() {
        v.report("log.level", "\"\"".into(), "must be a log filter like \"info\"");
    } else if let Err(e) = parsed {
        v.report(
            "log.level",
            format!("{:?}", raw.level),
            format!("not a log filter like \"info\" or \"recordhub=debug,info\" ({e})"),
        );
    }
    let format = match raw.format.as_str() {
        "json" => LogFormat::Json,
        "pretty" => LogFormat::Pretty,
        _ => {
            v.report("log.format", format!("{:?}", raw.format), "unknown log format; expected json or pretty");
            LogFormat::Json
        }
    };
    let buffer_lines = v.count("log.buffer_lines", raw.buffer_lines);
    // The queue's slots are allocated up front; a typo must not allocate gigabytes.
    if buffer_lines > MAX_LOG_BUFFER_LINES {
        v.report("log.buffer_lines", buffer_lines.to_string(), format!("must be at most {MAX_LOG_BUFFER_LINES}"));
    }
    LogConfig { level: raw.level, format, buffer_lines }
}

fn validate_audit(raw: &super::RawAudit, v: &mut Validator<'_>) -> super::AuditConfig {
    super::AuditConfig {
        rotate_bytes: v.positive("audit.rotate_bytes", raw.rotate_bytes),
        head_log: (raw.head_log_secs > 0).then(|| Duration::from_secs(raw.head_log_secs)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(validate(RawConfig::default(), &Origins::default()).is_ok());
    }

    #[test]
    fn relative_paths_join_the_base_without_dot_components() {
        let base = Path::new("/etc/recordhub");
        assert_eq!(resolve_path(Path::new("./data"), Some(base)), Path::new("/etc/recordhub/data"));
        assert_eq!(resolve_path(Path::new("../maps"), Some(base)), Path::new("/etc/recordhub/../maps"));
        assert_eq!(resolve_path(Path::new("/srv/data"), Some(base)), Path::new("/srv/data"));
        assert_eq!(resolve_path(Path::new("./data"), None), Path::new("./data"));
    }
}
