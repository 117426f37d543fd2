//! Engine configuration: built-in defaults < `engine.toml` < `RECORDHUB__SECTION__KEY`
//! environment variables < command-line flags, merged by the `config` crate into
//! [`RawConfig`] (the file format, `raw.rs`) and then validated into [`Config`]
//! (typed values, `validate.rs`).
//!
//! Every error names its key and where the value came from: `engine.toml:3:1` for the
//! file (`positions.rs`), the variable name for the environment (`env.rs`). An unknown
//! key or a wrong type stops deserialization at the first one (serde); validation then
//! reports every remaining problem at once, one per line.
//!
//! Relative paths in the file are relative to the file's directory; from the command
//! line or the environment, to the working directory (see `validate.rs`).
//!
//! Deliberately not here: binding sockets, creating directories, reloading at runtime.
//! An address that parses but cannot be bound is the listener's error.

mod auth;
mod cluster;
mod env;
pub mod guard;
mod listeners;
mod ops;
mod positions;
mod raw;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use auth::{AuthConfig, JwksSource, RawAuth, DEFAULT_ALGORITHMS, KNOWN_ALGORITHMS};
pub use cluster::{AckAfter, ClusterConfig, RawCluster, Role};
pub use ops::{DedupConfig, RawDedup, RawRetention, RetentionConfig};
pub use raw::{
    RawAck, RawAllow, RawAudit, RawConfig, RawHl7, RawHttp, RawHttpTls, RawListener, RawLog, RawMapping, RawMllp,
    RawStore, RawTls,
};
pub use validate::resolve_path;

const ENV_PREFIX: &str = "RECORDHUB";
const ENV_SEPARATOR: &str = "__";
/// Names accepted by `hl7.fallback_charset`.
pub const CHARSETS: &[&str] = &["ascii", "utf-8", "iso-8859-1", "windows-1252"];

/// The validated configuration. Field docs are on the matching [`RawConfig`] keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub mllp: MllpConfig,
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub ack: AckConfig,
    pub hl7: Hl7Config,
    pub mapping: MappingConfig,
    pub log: LogConfig,
    pub audit: AuditConfig,
    pub retention: RetentionConfig,
    pub dedup: DedupConfig,
    pub auth: AuthConfig,
    /// `None`: a single embedded node.
    pub cluster: Option<ClusterConfig>,
}

/// Validated `[mllp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MllpConfig {
    pub listen: SocketAddr,
    pub max_frame_bytes: usize,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
    pub max_connections: usize,
    /// At least 1 and at most `max_connections`.
    pub max_connections_per_peer: usize,
    pub max_in_flight: usize,
    pub ack_timeout: Duration,
    /// `[[mllp.listeners]]`, beside the plain listener on `listen`.
    pub listeners: Vec<ListenerConfig>,
}

/// One validated `[[mllp.listeners]]` entry (its TLS files were loaded once at start-up).
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub listen: SocketAddr,
    /// Resolved paths.
    pub tls: Option<crate::mllp::tls::TlsFiles>,
    /// `None` when the listener has no allow-list (any sender).
    pub allow: Option<Vec<crate::mllp::allow::AllowRule>>,
}

/// Validated `[http]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Record counters and serve `GET /metrics`; off, `/metrics` is 404.
    pub metrics: bool,
    /// HTTPS (resolved paths; `client_ca` is always `None`).
    pub tls: Option<crate::mllp::tls::TlsFiles>,
    /// Request guards: host allow-list, header bounds, read rate limits.
    pub guard: guard::GuardConfig,
}

/// Validated `[store]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Resolved: relative to the config file's directory when the file set it.
    pub data_dir: PathBuf,
    pub journal_segment_bytes: u64,
    pub index_cache_bytes: u64,
    pub max_batch: usize,
    pub on_journal_damage: JournalDamage,
}

/// What start-up does with a journal damaged before its end (`store.on_journal_damage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JournalDamage {
    /// Refuse to start, report the damaged range and say how to proceed (the default:
    /// an operator decides what happens to acknowledged messages).
    #[default]
    Refuse,
    /// Move the damaged bytes to a side file, report them at ERROR, and go on.
    Quarantine,
}

/// Validated `[ack]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AckConfig {
    pub application: String,
    pub facility: String,
    pub processing_ids: Vec<String>,
}

/// Validated `[hl7]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hl7Config {
    /// One of [`CHARSETS`], lower-case.
    pub fallback_charset: String,
    pub unknown_charset: UnknownCharset,
}

/// What to do with a message whose MSH-18 names a charset we cannot decode
/// (`hl7.unknown_charset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownCharset {
    /// Answer AR (CR) with an ERR at MSH-18 (the default: a name decoded with the
    /// wrong charset is a patient-safety problem in a shared record).
    #[default]
    Reject,
    /// Decode with `hl7.fallback_charset`, count it and log a warning.
    Fallback,
}

/// Validated `[mapping]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingConfig {
    /// Resolved: relative to the config file's directory when the file set it.
    pub dir: PathBuf,
}

/// Validated `[log]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    /// At least 1.
    pub buffer_lines: usize,
}

/// Validated `[audit]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    /// Positive.
    pub rotate_bytes: u64,
    /// `None` when `head_log_secs = 0`.
    pub head_log: Option<Duration>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for collectors.
    Json,
    /// Multi-line, human-readable, for a terminal.
    Pretty,
}

impl Config {
    /// The access file: `[auth] access_file`, else `access.toml` in the mapping directory.
    pub fn access_file(&self) -> PathBuf {
        self.auth.access_file.clone().unwrap_or_else(|| self.mapping.dir.join(crate::access::FILE))
    }
}

impl Default for Config {
    fn default() -> Self {
        // The built-in defaults are valid: pinned by `validate::tests::defaults_are_valid`.
        validate::validate(RawConfig::default(), &validate::Origins::default()).expect("built-in defaults are valid")
    }
}

/// Command-line flags; each one that is set wins over the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `mllp.listen`.
    pub listen: Option<SocketAddr>,
    /// `store.data_dir`; a relative path is relative to the working directory.
    pub data_dir: Option<PathBuf>,
    /// `http.listen`.
    pub http_listen: Option<SocketAddr>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config file given explicitly does not exist.
    #[error("config file {} not found: give an existing file, or none to use ./engine.toml or the built-in defaults", path.display())]
    NotFound { path: PathBuf },
    /// The config file exists but could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("{}:{line}:{col}: {}{message}", file.display(), key_prefix(key))]
    File { file: PathBuf, line: usize, col: usize, key: Option<String>, message: String },
    /// A `RECORDHUB__*` environment variable is unknown or has a value of the wrong type.
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    /// One or more values are out of range or malformed: every problem, one per line.
    #[error("invalid configuration:\n{}", display_lines(.0))]
    Invalid(Vec<Problem>),
}

/// One invalid value: where it came from, its key, the value and what is expected.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// `engine.toml:3:1`, `environment variable RECORDHUB__MLLP__LISTEN`, `command line` or `default`.
    pub origin: String,
    /// `section.key`.
    pub key: String,
    /// The value as TOML (strings quoted).
    pub value: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} = {}: {}", self.origin, self.key, self.value, self.reason)
    }
}

fn key_prefix(key: &Option<String>) -> String {
    key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default()
}

fn display_lines(problems: &[Problem]) -> String {
    problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n")
}

/// Loads the configuration: defaults < file < `RECORDHUB__SECTION__KEY` variables < `overrides`.
///
/// With `path` `None`, `./engine.toml` is read if it exists, else only defaults apply.
/// Relative paths from the file (and defaults, when there is a file) are resolved
/// against the file's directory; those from the environment and `overrides` are
/// left relative to the working directory.
///
/// # Errors
/// A missing explicit file, unreadable or malformed TOML, an unknown key, a wrong type
/// (in the file or the environment), or values that fail validation (all of them listed).
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let file = positions::read_file(path)?;
    let positions = match &file {
        Some(file) => Some(file.check()?),
        None => None,
    };
    let base = file.as_ref().map(|f| config_dir(&f.path));
    let mut raw = env::merge(file.as_ref())?;
    apply(&mut raw, overrides);
    let origins = validate::Origins { positions, base, env: env::env_vars(), overrides: overrides.clone() };
    validate::validate(raw, &origins)
}

/// The absolute directory of the config file (no file system access: symlinks are
/// kept, so a config reached through a link resolves beside the link).
fn config_dir(file: &Path) -> PathBuf {
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    absolute.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn apply(raw: &mut RawConfig, overrides: &Overrides) {
    if let Some(listen) = overrides.listen {
        raw.mllp.listen = listen.to_string();
    }
    if let Some(listen) = overrides.http_listen {
        raw.http.listen = listen.to_string();
    }
    if let Some(dir) = &overrides.data_dir {
        raw.store.data_dir = dir.clone();
    }
}
