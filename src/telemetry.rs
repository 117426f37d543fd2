//! Logging setup: tracing-subscriber writing JSON lines (or pretty text) to stderr,
//! filtered by `RUST_LOG` when set, else by `log.level` from the config.
//!
//! Logging must never take the engine down or stall it (issue 8, hole 2). A log
//! call only formats the line and hands it to a bounded queue (tracing-appender's
//! lossy non-blocking writer); one `recordhub-log` thread writes the queue to
//! stderr. A full queue (stderr stalled: a log shipper that stopped reading)
//! drops the line and counts it; a failed write (stderr closed: `serve | head`)
//! is swallowed and counted. Before this, tracing-subscriber wrote to stderr on
//! the logging thread, and on EPIPE reported its own error with `eprintln!`,
//! which panics when stderr is gone: the connection task or the pipeline thread
//! died mid-message, and the SIGTERM handler died at its log line.
//!
//! Also the names of the structured fields the pipeline logs, so that code, tests and
//! dashboards agree on spelling, and process-wide counters of what logging and
//! decoding dropped or guessed, for `/metrics`. Not here: tracing exporters, log
//! rotation (stderr is for the supervisor to collect).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Writes to stderr that failed (stderr closed or broken), each line dropped.
static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);
/// Messages decoded with the fallback charset because MSH-18 named one we do not know.
static CHARSET_FALLBACKS: AtomicU64 = AtomicU64::new(0);
/// Lines dropped because the log queue was full (stderr not keeping up).
static QUEUE_DROPS: OnceLock<ErrorCounter> = OnceLock::new();

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

/// What logging has lost so far in this process (for `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    /// Lines dropped because the queue to stderr was full (stderr stalled).
    pub dropped_lines: u64,
    /// Lines lost because writing them to stderr failed (stderr closed).
    pub write_errors: u64,
}

/// Lines dropped because the log queue was full; 0 before [`init`].
pub fn dropped_lines() -> u64 {
    QUEUE_DROPS.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// Lines lost to failed writes to stderr.
pub fn write_errors() -> u64 {
    WRITE_ERRORS.load(Ordering::Relaxed)
}

/// Both logging loss counters at once.
pub fn log_stats() -> LogStats {
    LogStats { dropped_lines: dropped_lines(), write_errors: write_errors() }
}

/// Counts one message decoded with the fallback charset (`hl7.unknown_charset = "fallback"`).
pub fn count_charset_fallback() {
    CHARSET_FALLBACKS.fetch_add(1, Ordering::Relaxed);
}

/// Messages decoded with the fallback charset because their MSH-18 was unknown.
pub fn charset_fallbacks() -> u64 {
    CHARSET_FALLBACKS.load(Ordering::Relaxed)
}

/// Keeps the log writer thread alive; hold it for the life of the process.
///
/// Dropping it flushes the queued lines, waiting at most about a second when
/// stderr is stalled, so shutdown never hangs on logging.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _worker: WorkerGuard,
}

/// Stderr for the log thread: a failed write is counted and reported as done,
/// so nothing upstream ever sees a logging error (nor prints one to stderr).
struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match std::io::stderr().write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(n) if n > 0 => return Ok(n),
                // Ok(0) would make write_all fail with WriteZero; treat as a failed write.
                _ => {
                    WRITE_ERRORS.fetch_add(1, Ordering::Relaxed);
                    return Ok(buf.len());
                }
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Stderr is unbuffered; a failed flush is nothing to act on (the worker
        // would `eprintln!` it, which panics when stderr is gone).
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Installs the global subscriber, writing through a bounded, lossy queue of
/// `log.buffer_lines` lines to stderr.
///
/// # Errors
/// [`TelemetryError::Filter`] for a bad filter, [`TelemetryError::AlreadyInitialized`]
/// when called again in the same process (callers in tests may ignore it).
pub fn init(log: &LogConfig) -> Result<LogGuard, TelemetryError> {
    let filter = filter(&log.level)?;
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(log.buffer_lines)
        .lossy(true)
        .thread_name("recordhub-log")
        .finish(LossyStderr);
    let _ = QUEUE_DROPS.set(writer.error_counter());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).log_internal_errors(false);
    let result = match log.format {
        // Span fields (`conn{peer, conn_id}` → `msg{control_id, ..}`) ride along on
        // every line so a message's outcome can be tied to its connection.
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(true).with_target(true).try_init()
        }
        LogFormat::Pretty => builder.pretty().with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadyInitialized)?;
    Ok(LogGuard { _worker: guard })
}

fn filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    let (directive, origin) = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(env) if !env.trim().is_empty() => (env, "RUST_LOG"),
        _ => (level.to_string(), "log.level"),
    };
    EnvFilter::builder().parse(&directive).map_err(|source| TelemetryError::Filter { directive, origin, source })
}
