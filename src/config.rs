//! Engine configuration: built-in defaults < `engine.toml` < `RECORDHUB__SECTION__KEY`
//! environment variables < command-line flags, merged by the `config` crate into
//! [`RawConfig`] (the file format) and then validated into [`Config`] (typed values).
//!
//! Every error names its key and where the value came from: `engine.toml:3:1` for the
//! file, the variable name for the environment. An unknown key or a wrong type stops
//! deserialization at the first one (serde); validation then reports every remaining
//! problem at once, one per line.
//!
//! Deliberately not here: binding sockets, creating directories, reloading at runtime.
//! An address that parses but cannot be bound is the listener's error.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

const DEFAULT_FILE: &str = "engine.toml";
const ENV_PREFIX: &str = "RECORDHUB";
const ENV_SEPARATOR: &str = "__";
/// Names accepted by `hl7.fallback_charset`.
pub const CHARSETS: &[&str] = &["ascii", "utf-8", "iso-8859-1", "windows-1252"];
/// HL7 table 0103 (processing ID): the values `ack.processing_ids` may list.
const PROCESSING_IDS: &[&str] = &["P", "D", "T"];
/// Characters that would break an MSH field if used in our MSH-3/MSH-4 (HL7 2.5 ch. 2.5.4).
const HL7_DELIMITERS: &[char] = &['|', '^', '~', '\\', '&', '\r', '\n'];

/// `engine.toml` as written: every key optional, unknown keys rejected.
/// See [`Config`] for the validated form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// `[mllp]`: the HL7 listener.
    pub mllp: RawMllp,
    /// `[http]`: the read API and admin endpoints.
    pub http: RawHttp,
    /// `[store]`: the journal and the index.
    pub store: RawStore,
    /// `[ack]`: how we identify ourselves in ACKs and which messages we accept.
    pub ack: RawAck,
    /// `[hl7]`: message decoding.
    pub hl7: RawHl7,
    /// `[mapping]`: where mapping specs live.
    pub mapping: RawMapping,
    /// `[log]`: log level and format.
    pub log: RawLog,
}

/// `[mllp]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMllp {
    /// Address to accept MLLP connections on, an IP socket address like `127.0.0.1:2575`.
    pub listen: String,
    /// Largest frame accepted, in bytes; a bigger one is rejected and the connection closed.
    pub max_frame_bytes: u64,
    /// Seconds a connection may sit idle between frames before it is closed.
    pub idle_timeout_secs: u64,
    /// Seconds a started frame may take to finish (a stalled sender) before the connection is closed.
    pub frame_timeout_secs: u64,
    /// Concurrent connections; beyond it, new connections wait for a slot.
    pub max_connections: u64,
    /// Pipelined messages per connection awaiting their ACK.
    pub max_in_flight: u64,
    /// Seconds `recordhub send` waits for an ACK (client side).
    pub ack_timeout_secs: u64,
}

/// `[http]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHttp {
    /// Address of the read API (`GET /patients/{nhs}`) and admin endpoints.
    pub listen: String,
}

/// `[store]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawStore {
    /// Directory holding `journal/` and `index/`.
    pub data_dir: PathBuf,
    /// Size at which a journal segment is closed and a new one started, in bytes.
    pub journal_segment_bytes: u64,
    /// Most messages sharing one fdatasync (group commit).
    pub max_batch: u64,
}

/// `[ack]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAck {
    /// Our MSH-3 (sending application) in ACKs when the inbound MSH-5 is empty.
    pub application: String,
    /// Our MSH-4 (sending facility) in ACKs when the inbound MSH-6 is empty.
    pub facility: String,
    /// Accepted MSH-11 processing IDs (HL7 table 0103); others get AR with error 202.
    pub processing_ids: Vec<String>,
}

/// `[hl7]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHl7 {
    /// Charset used when MSH-18 is empty and the bytes are not UTF-8:
    /// one of `ascii`, `utf-8`, `iso-8859-1`, `windows-1252`.
    pub fallback_charset: String,
}

/// `[mapping]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMapping {
    /// Directory of mapping specs.
    pub dir: PathBuf,
}

/// `[log]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLog {
    /// An `EnvFilter` directive such as `info` or `recordhub=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
    /// `json` (one JSON object per line) or `pretty` (for a terminal).
    pub format: String,
}

impl Default for RawMllp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:2575".into(),
            max_frame_bytes: 16 * 1024 * 1024,
            idle_timeout_secs: 300,
            frame_timeout_secs: 30,
            max_connections: 1024,
            max_in_flight: 64,
            ack_timeout_secs: 30,
        }
    }
}

impl Default for RawHttp {
    fn default() -> Self {
        Self { listen: "127.0.0.1:8080".into() }
    }
}

impl Default for RawStore {
    fn default() -> Self {
        Self { data_dir: "./data".into(), journal_segment_bytes: 64 * 1024 * 1024, max_batch: 512 }
    }
}

impl Default for RawAck {
    fn default() -> Self {
        Self {
            application: "RECORDHUB".into(),
            facility: "RECORDHUB".into(),
            processing_ids: PROCESSING_IDS.iter().map(|id| id.to_string()).collect(),
        }
    }
}

impl Default for RawHl7 {
    fn default() -> Self {
        Self { fallback_charset: "windows-1252".into() }
    }
}

impl Default for RawMapping {
    fn default() -> Self {
        Self { dir: "mappings".into() }
    }
}

impl Default for RawLog {
    fn default() -> Self {
        Self { level: "info".into(), format: "json".into() }
    }
}

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
}

/// Validated `[mllp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MllpConfig {
    pub listen: SocketAddr,
    pub max_frame_bytes: usize,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
    pub max_connections: usize,
    pub max_in_flight: usize,
    pub ack_timeout: Duration,
}

/// Validated `[http]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

/// Validated `[store]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub journal_segment_bytes: u64,
    pub max_batch: usize,
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
}

/// Validated `[mapping]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingConfig {
    pub dir: PathBuf,
}

/// Validated `[log]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for collectors.
    Json,
    /// Multi-line, human-readable, for a terminal.
    Pretty,
}

impl Default for Config {
    fn default() -> Self {
        // The built-in defaults are valid: pinned by `tests::defaults_are_valid`.
        validate(RawConfig::default(), &Origins::default()).expect("built-in defaults are valid")
    }
}

/// Command-line flags; each one that is set wins over the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `mllp.listen`.
    pub listen: Option<SocketAddr>,
    /// `store.data_dir`.
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
///
/// # Errors
/// A missing explicit file, unreadable or malformed TOML, an unknown key, a wrong type
/// (in the file or the environment), or values that fail validation (all of them listed).
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let file = read_file(path)?;
    let positions = match &file {
        Some(file) => Some(file.check()?),
        None => None,
    };
    let mut raw = merge(file.as_ref())?;
    apply(&mut raw, overrides);
    let origins = Origins { positions, env: env_vars(), overrides: overrides.clone() };
    validate(raw, &origins)
}

/// The config file's path as the user should see it, and its text.
struct SourceFile {
    path: PathBuf,
    text: String,
}

fn read_file(path: Option<&Path>) -> Result<Option<SourceFile>, ConfigError> {
    let (path, required) = match path {
        Some(path) => (path.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_FILE), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(SourceFile { path, text })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError::NotFound { path }),
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

impl SourceFile {
    /// Deserializes the file alone, which keeps positions the merged load loses, and
    /// returns where each key is, for validation messages.
    fn check(&self) -> Result<Positions, ConfigError> {
        let parsed = toml::from_str::<RawConfig>(&self.text);
        let keys = key_spans(&self.text);
        let positions = Positions { path: self.path.clone(), text: self.text.clone(), keys };
        match parsed {
            Ok(_) => Ok(positions),
            Err(e) => Err(positions.file_error(&e)),
        }
    }
}

/// Where each `section.key` of the file is.
#[derive(Default)]
struct Positions {
    path: PathBuf,
    text: String,
    keys: Vec<KeySpan>,
}

struct KeySpan {
    path: String,
    key: Range<usize>,
    value: Range<usize>,
}

/// Spans of top-level keys and of keys one table down; empty if the text is not TOML.
fn key_spans(text: &str) -> Vec<KeySpan> {
    let Ok(root) = toml::de::DeTable::parse(text) else {
        return Vec::new();
    };
    let mut spans = Vec::new();
    for (section, value) in root.get_ref() {
        if let Some(table) = value.get_ref().as_table() {
            for (key, inner) in table {
                let path = format!("{}.{}", section.get_ref(), key.get_ref());
                spans.push(KeySpan { path, key: key.span(), value: inner.span() });
            }
        }
        let path = section.get_ref().to_string();
        spans.push(KeySpan { path, key: section.span(), value: value.span() });
    }
    spans
}

impl Positions {
    fn file_error(&self, e: &toml::de::Error) -> ConfigError {
        let offset = e.span().map_or(0, |span| span.start);
        let (line, col) = line_col(&self.text, offset);
        // Nested keys come before their section in `keys`, so the first hit is the innermost.
        let key =
            self.keys.iter().find(|k| k.key.contains(&offset) || k.value.contains(&offset)).map(|k| k.path.clone());
        let message = e.message().to_string();
        ConfigError::File { file: self.path.clone(), line, col, key, message }
    }

    fn locate(&self, key: &str) -> Option<String> {
        let span = self.keys.iter().find(|k| k.path == key)?;
        let (line, col) = line_col(&self.text, span.key.start);
        Some(format!("{}:{line}:{col}", self.path.display()))
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn env_source() -> config::Environment {
    config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator(ENV_SEPARATOR)
        .separator(ENV_SEPARATOR)
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("ack.processing_ids")
}

fn merge(file: Option<&SourceFile>) -> Result<RawConfig, ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(file) = file {
        builder = builder.add_source(config::File::from_str(&file.text, config::FileFormat::Toml));
    }
    // The file alone deserialized in `check`, so failures from here on are the environment's.
    let merged = builder.add_source(env_source()).build().map_err(env_error)?;
    merged.try_deserialize().map_err(env_error)
}

/// Names the variable behind a `config` crate error when the error carries its key.
fn env_error(e: config::ConfigError) -> ConfigError {
    let (key, message) = match &e {
        config::ConfigError::Type { key: Some(key), unexpected, expected, .. } => {
            (Some(key.clone()), format!("invalid type: {unexpected}, expected {expected}"))
        }
        config::ConfigError::At { key, error, .. } => (key.clone(), error.to_string()),
        other => (None, other.to_string()),
    };
    // serde reports an unknown key against its parent table; name the key's own variable.
    let key = match (key, unknown_field(&message)) {
        (Some(parent), Some(field)) => Some(format!("{parent}.{field}")),
        (None, Some(field)) => Some(field.to_string()),
        (key, None) => key,
    };
    let var = match key {
        Some(key) => env_var_name(&key),
        None => format!("{ENV_PREFIX}{ENV_SEPARATOR}*"),
    };
    ConfigError::Env { var, message }
}

/// The name in serde's "unknown field `name`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// The variable that sets `section.key`, as spelled in the environment if it is set.
fn env_var_name(key: &str) -> String {
    let expected = format!("{ENV_PREFIX}{ENV_SEPARATOR}{}", key.replace('.', ENV_SEPARATOR));
    env_vars().into_iter().find(|var| var.eq_ignore_ascii_case(&expected)).unwrap_or(expected.to_uppercase())
}

/// Names of the `RECORDHUB__*` variables currently set (matched case-insensitively, like the `config` crate).
fn env_vars() -> Vec<String> {
    let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}").to_lowercase();
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.to_lowercase().starts_with(&prefix))
        .collect()
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

/// Where each value came from, to point validation problems at it.
#[derive(Default)]
struct Origins {
    positions: Option<Positions>,
    env: Vec<String>,
    overrides: Overrides,
}

impl Origins {
    fn describe(&self, key: &str) -> String {
        let o = &self.overrides;
        let overridden = match key {
            "mllp.listen" => o.listen.is_some(),
            "http.listen" => o.http_listen.is_some(),
            "store.data_dir" => o.data_dir.is_some(),
            _ => false,
        };
        let var = format!("{ENV_PREFIX}{ENV_SEPARATOR}{}", key.replace('.', ENV_SEPARATOR));
        if overridden {
            "command line".into()
        } else if let Some(name) = self.env.iter().find(|name| name.eq_ignore_ascii_case(&var)) {
            format!("environment variable {name}")
        } else if let Some(at) = self.positions.as_ref().and_then(|p| p.locate(key)) {
            at
        } else {
            "default".into()
        }
    }
}

/// Collects problems; each check returns a placeholder on failure so checking goes on.
struct Validator<'a> {
    origins: &'a Origins,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn report(&mut self, key: &str, value: String, reason: impl Into<String>) {
        let origin = self.origins.describe(key);
        self.problems.push(Problem { origin, key: key.into(), value, reason: reason.into() });
    }

    fn addr(&mut self, key: &str, value: &str) -> SocketAddr {
        value.parse().unwrap_or_else(|_| {
            self.report(key, format!("{value:?}"), "not an IP socket address like 127.0.0.1:2575");
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }

    fn positive(&mut self, key: &str, value: u64) -> u64 {
        if value == 0 {
            self.report(key, "0".into(), "must be a positive number");
        }
        value
    }

    fn count(&mut self, key: &str, value: u64) -> usize {
        let value = self.positive(key, value);
        usize::try_from(value).unwrap_or_else(|_| {
            self.report(key, value.to_string(), "too large for this platform");
            usize::MAX
        })
    }

    fn secs(&mut self, key: &str, value: u64) -> Duration {
        Duration::from_secs(self.positive(key, value))
    }

    fn non_empty_path(&mut self, key: &str, value: PathBuf) -> PathBuf {
        if value.as_os_str().is_empty() {
            self.report(key, "\"\"".into(), "must name a directory");
        }
        value
    }

    fn hl7_name(&mut self, key: &str, value: String) -> String {
        if value.is_empty() || value.contains(HL7_DELIMITERS) {
            self.report(key, format!("{value:?}"), "must be non-empty text without HL7 delimiters | ^ ~ \\ &");
        }
        value
    }
}

fn validate(raw: RawConfig, origins: &Origins) -> Result<Config, ConfigError> {
    let mut v = Validator { origins, problems: Vec::new() };
    let config = Config {
        mllp: validate_mllp(&raw.mllp, &mut v),
        http: HttpConfig { listen: v.addr("http.listen", &raw.http.listen) },
        store: StoreConfig {
            data_dir: v.non_empty_path("store.data_dir", raw.store.data_dir),
            journal_segment_bytes: v.positive("store.journal_segment_bytes", raw.store.journal_segment_bytes),
            max_batch: v.count("store.max_batch", raw.store.max_batch),
        },
        ack: validate_ack(raw.ack, &mut v),
        hl7: Hl7Config { fallback_charset: validate_charset(&raw.hl7.fallback_charset, &mut v) },
        mapping: MappingConfig { dir: v.non_empty_path("mapping.dir", raw.mapping.dir) },
        log: validate_log(raw.log, &mut v),
    };
    if v.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(v.problems))
    }
}

fn validate_mllp(raw: &RawMllp, v: &mut Validator<'_>) -> MllpConfig {
    MllpConfig {
        listen: v.addr("mllp.listen", &raw.listen),
        max_frame_bytes: v.count("mllp.max_frame_bytes", raw.max_frame_bytes),
        idle_timeout: v.secs("mllp.idle_timeout_secs", raw.idle_timeout_secs),
        frame_timeout: v.secs("mllp.frame_timeout_secs", raw.frame_timeout_secs),
        max_connections: v.count("mllp.max_connections", raw.max_connections),
        max_in_flight: v.count("mllp.max_in_flight", raw.max_in_flight),
        ack_timeout: v.secs("mllp.ack_timeout_secs", raw.ack_timeout_secs),
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

fn validate_charset(raw: &str, v: &mut Validator<'_>) -> String {
    let name = raw.to_ascii_lowercase();
    if !CHARSETS.contains(&name.as_str()) {
        v.report(
            "hl7.fallback_charset",
            format!("{raw:?}"),
            format!("unknown charset; expected one of {}", CHARSETS.join(", ")),
        );
    }
    name
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
    LogConfig { level: raw.level, format }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(validate(RawConfig::default(), &Origins::default()).is_ok());
    }

    #[test]
    fn line_col_counts_characters_from_one() {
        assert_eq!(line_col("a = 1\nbé = 2\n", 0), (1, 1));
        assert_eq!(line_col("a = 1\nbé = 2\n", 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col("a = 1\nbé = 2\n", 9), (2, 3));
    }
}
