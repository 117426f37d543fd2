//! `engine.toml` as written: the file format and the built-in defaults.
//!
//! Every key is optional and unknown keys are rejected (serde). Values are
//! checked and typed in `validate.rs`; nothing here judges them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// HL7 table 0103 (processing ID): the values `ack.processing_ids` may list.
pub(super) const PROCESSING_IDS: &[&str] = &["P", "D", "T"];

/// `engine.toml` as written: every key optional, unknown keys rejected.
/// See [`super::Config`] for the validated form.
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
    /// `[log]`: log level, format and buffering.
    pub log: RawLog,
    /// `[audit]`: the hash-chained audit log under `<data_dir>/audit/`.
    pub audit: RawAudit,
    /// `[retention]`: how long journal segments are kept.
    pub retention: super::ops::RawRetention,
    /// `[dedup]`: how long and how many messages are remembered to answer retransmissions.
    pub dedup: super::ops::RawDedup,
    /// `[auth]`: bearer tokens, the claims that name the reader, the access file.
    pub auth: super::auth::RawAuth,
    /// `[cluster]`: the journal replicated through NATS JetStream; absent: one node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<super::cluster::RawCluster>,
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
    /// Concurrent connections. At the limit the longest-idle connection is closed to make way;
    /// with none idle, a new connection is closed after 0.5 s (and counted).
    pub max_connections: u64,
    /// Concurrent connections from one peer IP address (at least 1, at most
    /// `max_connections`), so one misbehaving sender cannot take every slot.
    pub max_connections_per_peer: u64,
    /// Pipelined messages per connection awaiting their ACK.
    pub max_in_flight: u64,
    /// Seconds `recordhub send` waits for an ACK (client side).
    pub ack_timeout_secs: u64,
    /// More listeners (`[[mllp.listeners]]`), each plain or TLS, each with an
    /// optional sender allow-list; `listen` above stays the plain default one.
    /// (Not serialized when empty: the shipped engine.toml shows it commented out.)
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<RawListener>,
}

/// One `[[mllp.listeners]]` entry. The `[mllp]` limits and timeouts apply to it
/// (`max_connections` and `max_connections_per_peer` per listener).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// IP socket address to accept on, like `0.0.0.0:2576`.
    pub listen: String,
    /// TLS on this listener: `{ cert = "server.pem", key = "server.key", client_ca = "clients-ca.pem" }`.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// Who may send as which MSH-3/MSH-4: `[{ subject = "CN=pas.rj1.nhs.uk", sending_app = "PAS",
    /// sending_facility = "RJ1" }]` (mutual TLS) or `[{ cidr = "10.1.0.0/16", sending_facility = "RJ1" }]`.
    /// Empty: no check.
    #[serde(default)]
    pub allow: Vec<RawAllow>,
}

/// `tls = { ... }` of a listener; paths relative to the config file's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file: the server certificate, then its intermediates.
    pub cert: PathBuf,
    /// PEM file: the server's private key.
    pub key: PathBuf,
    /// PEM file of CA certificates: when set, every client must present a certificate
    /// that chains to one of them (mutual TLS), or its handshake is refused.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// One allow-list entry: who (`subject` or `cidr`) may send as what (either or both
/// of `sending_app`, `sending_facility`; a missing one means any).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllow {
    /// `CN=<name>`: the client certificate's subject common name (mutual TLS only).
    #[serde(default)]
    pub subject: Option<String>,
    /// A source network like `10.1.0.0/16` (or one address).
    #[serde(default)]
    pub cidr: Option<String>,
    /// MSH-3 (or its first component) it may send as.
    #[serde(default)]
    pub sending_app: Option<String>,
    /// MSH-4 (or its first component) it may send as.
    #[serde(default)]
    pub sending_facility: Option<String>,
}

/// `[http]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHttp {
    /// Address of the read API (`GET /patients/{nhs}`) and admin endpoints.
    pub listen: String,
    /// Record counters and serve `GET /metrics` (Prometheus text format).
    pub metrics: bool,
    // Request guards (`src/http/guard.rs`), checked before any handler runs.
    /// Names (`records.rj1.nhs.uk`, or `name:port`) a request's `Host` may carry, besides
    /// `127.0.0.1`, `localhost` and `[::1]` (bare or with the listen port) and the listen
    /// address: any other `Host` is refused with 421, so a DNS-rebinding page cannot read.
    pub allowed_hosts: Vec<String>,
    /// Largest single request header value, in bytes; a bigger one is refused with 431.
    pub max_header_bytes: u64,
    /// Largest total of all request header names and values, in bytes (431 above it).
    pub max_headers_bytes: u64,
    /// Most request headers (431 above it).
    pub max_headers: u64,
    /// Patient reads (`/patients/…`, the web page's `/record/…` and `/search`) per minute
    /// for one user (keyed by the bearer token, else `X-User`,
    /// else the session cookie); past it, 429 with `Retry-After`. Bursts up to the same
    /// number are allowed.
    pub reads_per_minute: u64,
    /// Patient reads per minute from one client IP address, all users together.
    pub client_reads_per_minute: u64,
    /// Distinct patients one user or client may read within `enumeration_window_secs`
    /// before a "possible enumeration" warning is logged and counted (reads go on).
    pub enumeration_patients: u64,
    /// The window of `enumeration_patients`, in seconds.
    pub enumeration_window_secs: u64,
    /// HTTPS: `{ cert = "server.pem", key = "server.key" }` (no client certificates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawHttpTls>,
}

/// `[http] tls = { ... }`; paths relative to the config file's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpTls {
    /// PEM file: the server certificate, then its intermediates.
    pub cert: PathBuf,
    /// PEM file: the server's private key.
    pub key: PathBuf,
}

/// `[store]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawStore {
    /// Directory holding `journal/` and `index/`; relative to the config file's directory
    /// (to the working directory when set by `--data` or the environment).
    pub data_dir: PathBuf,
    /// Size at which a journal segment is closed and a new one started, in bytes.
    pub journal_segment_bytes: u64,
    /// Bound of the index's page cache (sled), in bytes: most of the engine's memory.
    pub index_cache_bytes: u64,
    /// Most messages sharing one fdatasync (group commit).
    pub max_batch: u64,
    /// What start-up does when the journal is damaged before its end (not a torn
    /// tail): `refuse` to start and say how to proceed, or `quarantine` the damaged
    /// bytes to a side file and go on.
    pub on_journal_damage: String,
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
    /// Charset used when MSH-18 is empty (or unknown, with `unknown_charset = "fallback"`)
    /// and the bytes are not UTF-8: one of `ascii`, `utf-8`, `iso-8859-1`, `windows-1252`.
    pub fallback_charset: String,
    /// A message whose MSH-18 names a charset we cannot decode: `reject` (AR with
    /// an ERR at MSH-18) or `fallback` (decode with `fallback_charset`, count it
    /// and log a warning).
    pub unknown_charset: String,
}

/// `[mapping]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMapping {
    /// Directory of mapping specs; relative to the config file's directory.
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
    /// Log lines queued for stderr; when stderr cannot keep up, further lines are
    /// dropped and counted rather than stalling the engine.
    pub buffer_lines: u64,
}

/// `[audit]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAudit {
    /// Size at which an audit file (`audit-NNNNNN.jsonl`) is closed and the next started, in bytes;
    /// the hash chain continues across files.
    pub rotate_bytes: u64,
    /// Seconds between INFO lines giving the chain head (`chain_head`, `lines`, `file`: no
    /// patient data), logged when it moved, so an external copy can anchor the chain; 0: never.
    pub head_log_secs: u64,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self { rotate_bytes: crate::audit::DEFAULT_ROTATE_BYTES, head_log_secs: crate::audit::DEFAULT_HEAD_LOG_SECS }
    }
}

impl Default for RawMllp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:2575".into(),
            max_frame_bytes: 16 * 1024 * 1024,
            idle_timeout_secs: 300,
            frame_timeout_secs: 30,
            max_connections: 1024,
            max_connections_per_peer: 64,
            max_in_flight: 64,
            ack_timeout_secs: 30,
            listeners: Vec::new(),
        }
    }
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            metrics: true,
            tls: None,
            allowed_hosts: Vec::new(),
            max_header_bytes: 8 * 1024,
            max_headers_bytes: 32 * 1024,
            max_headers: 64,
            reads_per_minute: 120,
            client_reads_per_minute: 600,
            enumeration_patients: 50,
            enumeration_window_secs: 600,
        }
    }
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            data_dir: "./data".into(),
            journal_segment_bytes: 64 * 1024 * 1024,
            index_cache_bytes: 256 * 1024 * 1024,
            max_batch: 512,
            on_journal_damage: "refuse".into(),
        }
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
        Self { fallback_charset: "windows-1252".into(), unknown_charset: "reject".into() }
    }
}

impl Default for RawMapping {
    fn default() -> Self {
        Self { dir: "mappings".into() }
    }
}

impl Default for RawLog {
    fn default() -> Self {
        Self { level: "info".into(), format: "json".into(), buffer_lines: 16_384 }
    }
}
