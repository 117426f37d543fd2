//! Logging setup: tracing-subscriber writing JSON lines (or pretty text) to stderr,
//! filtered by `RUST_LOG` when set, else by `log.level` from the config.
//!
//! Also the names of the structured fields the pipeline logs, so that code, tests and
//! dashboards agree on spelling. Not here: metrics, tracing exporters, log rotation
//! (stderr is for the supervisor to collect).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Field names used in spans and events (see STYLE.md "Logs").
///
/// `tracing` macros need the names as identifiers, so these are for readers of the
/// logs (tests, tools) and for documentation; spell fields in macros exactly so.
pub mod fields {
    /// MSH-10 of the message in hand (span `msg`).
    pub const CONTROL_ID: &str = "control_id";
    /// MSH-9 as `ADT^A01` (span `msg`).
    pub const MSG_TYPE: &str = "msg_type";
    /// MSH-3 (span `msg`).
    pub const SENDING_APP: &str = "sending_app";
    /// MSH-4 (span `msg`).
    pub const SENDING_FACILITY: &str = "sending_facility";
    /// MSA-1 we answered: AA, AE or AR.
    pub const ACK_CODE: &str = "ack_code";
    /// Frame size in bytes.
    pub const BYTES: &str = "bytes";
    /// Time from frame complete to ACK written, in microseconds.
    pub const ELAPSED_US: &str = "elapsed_us";
    /// Remote socket address (span `conn`).
    pub const PEER: &str = "peer";
    /// Connection sequence number (span `conn`).
    pub const CONN_ID: &str = "conn_id";
    /// The error's message, on failure.
    pub const ERROR: &str = "error";
    /// A stable, machine-readable error kind, on failure.
    pub const ERROR_KIND: &str = "error_kind";
    /// Where it failed: frame, parse, map, store or ack.
    pub const STAGE: &str = "stage";
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter from `RUST_LOG` or `log.level` does not parse.
    #[error(
        "invalid log filter {directive:?} from {origin}: use a directive like \"info\" or \"recordhub=debug,info\""
    )]
    Filter {
        directive: String,
        /// `RUST_LOG` or `log.level`.
        origin: &'static str,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber is already installed (a second call, e.g. in tests: harmless).
    #[error("logging is already initialised")]
    AlreadyInitialized,
}

/// Installs the global subscriber.
///
/// # Errors
/// [`TelemetryError::Filter`] for a bad filter, [`TelemetryError::AlreadyInitialized`]
/// when called again in the same process (callers in tests may ignore it).
pub fn init(level: &str, format: LogFormat) -> Result<(), TelemetryError> {
    let filter = filter(level)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        // Span fields (`conn{peer, conn_id}` → `msg{control_id, ..}`) ride along on
        // every line so a message's outcome can be tied to its connection.
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(true).with_target(true).try_init()
        }
        LogFormat::Pretty => builder.pretty().with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadyInitialized)
}

fn filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    let (directive, origin) = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(env) if !env.trim().is_empty() => (env, "RUST_LOG"),
        _ => (level.to_string(), "log.level"),
    };
    EnvFilter::builder().parse(&directive).map_err(|source| TelemetryError::Filter { directive, origin, source })
}
