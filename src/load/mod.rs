//! `recordhub load`: offers MLLP traffic to a listener and measures it,
//! from the sender's side: messages/s and ACK latency percentiles.
//!
//! The messages of the given files are replayed round-robin, each with its
//! MSH-10 rewritten to `<original>-<run>-L<conn>-<n>` so that none is taken
//! for a retransmission (duplicate detection keys on MSH-3, MSH-4, MSH-10;
//! `<run>` changes every run, so a second run against the same data
//! directory is not answered from the duplicate table either). Every ACK is
//! checked: its MSA-2 must be the control id that was sent in that position
//! (ACKs come back in order, `shared/research/hl7-ack.md`, "Framing").
//!
//! Each connection keeps up to `pipeline` messages outstanding (1 is
//! lockstep). With a rate, each connection paces its sends with a
//! `tokio::time::interval`. A send that was held back because the window
//! was full is measured from its *scheduled* time, so a server that stalls
//! the sender is not hidden by the sender simply sending later (coordinated
//! omission); any other send is measured from when it was written, so the
//! timer's own lateness (it rounds up to the millisecond) is not counted.
//!
//! It does not retry, reconnect or resynchronise: a connection that times
//! out or fails stops, and what it had outstanding is counted as timeouts or
//! errors. Every sent message ends up in exactly one of `acked_by_code`,
//! `timeouts` and `errors`.
//!
//! The hot path allocates nothing per message: one write buffer and one read
//! buffer per connection are reused, the latency vector is sized up front.
//!
//! Files: `template` (messages and their rewritten MSH-10; a message whose
//! MSH-15 asks for no ACK is refused up front), `conn` (one connection's
//! send/ACK loop), `tally` (counts and percentiles).

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::mllp::client::{self, ClientError, Io};
use crate::mllp::tls::Connector;
use serde::Serialize;
use tokio::time::Instant;

mod conn;
mod tally;
mod template;

use conn::{drive, Plan, Shared};
use tally::Tally;
use template::{load_templates, run_tag};

/// What to send, where, and how hard.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `host:port` of the MLLP listener.
    pub to: String,
    /// Concurrent connections.
    pub connections: usize,
    /// Messages in total, spread evenly over the connections.
    pub messages: u64,
    /// Messages outstanding per connection (1 = lockstep).
    pub pipeline: usize,
    /// Total messages per second offered, spread over the connections;
    /// `None` sends as fast as ACKs allow.
    pub rate: Option<f64>,
    /// Files of HL7 messages (any shape `recordhub send` reads).
    pub files: Vec<PathBuf>,
    /// How long to wait for an ACK, and for a connection to open.
    pub timeout: Duration,
    /// TLS (`--tls-ca` and friends); `None`: plain TCP.
    pub tls: Option<crate::mllp::tls::ClientTls>,
}

/// What happened, for `recordhub load` to print as JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LoadSummary {
    /// Messages written to a connection.
    pub sent: u64,
    /// ACKs received whose MSA-2 matched, by MSA-1 (AA, AE, AR, CA, ...).
    pub acked_by_code: BTreeMap<String, u64>,
    /// Messages still unacknowledged when their connection timed out.
    pub timeouts: u64,
    /// Messages lost to a closed or failed connection, or answered with an
    /// unreadable ACK or one acknowledging another control id.
    pub errors: u64,
    /// From the first send (all connections open) to the last ACK.
    pub elapsed_secs: f64,
    /// ACKs received (all codes) per second of `elapsed_secs`.
    pub messages_per_sec: f64,
    /// Send-to-ACK latency over every ACK received, in microseconds.
    pub latency_us: Latency,
}

/// Latency percentiles (nearest rank), in microseconds; all 0 without ACKs.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// Why a load run could not start or finish.
#[derive(thiserror::Error, Debug)]
pub enum LoadError {
    /// A message file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The files held no message at all.
    #[error("the files hold no HL7 message to send")]
    NoMessages,
    /// A message whose MSH-10 cannot be located, so it cannot be made unique.
    #[error(
        "message {index} of {path} has no MSH segment with an MSH-10 field; load needs one to make each message unique"
    )]
    NoControlId { path: PathBuf, index: usize },
    /// A message whose MSH-15 asks for no ACK, or for one only on some
    /// outcomes: load measures ACKs, so it would count them as timeouts.
    #[error(
        "message {index} of {path} has MSH-15 = {msh15}, so it may get no ACK; load measures ACKs: leave MSH-15 empty or set it to AL"
    )]
    NoAckRequested { path: PathBuf, index: usize, msh15: &'static str },
    /// Options that cannot work (zero connections, pipeline 0, rate <= 0).
    #[error("invalid load options: {0}")]
    Options(&'static str),
    /// A connection could not be opened before the run started.
    #[error("could not connect to {addr}; check the address and that the listener is running")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// The TLS files given could not be used.
    #[error(transparent)]
    Tls(#[from] crate::mllp::tls::TlsError),
    /// A connection task panicked (a bug in the load tool).
    #[error("a load connection task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs the load described by `opts` and summarises it.
///
/// All connections are opened before the clock starts.
///
/// # Errors
/// [`LoadError`] when the files cannot be read or hold a message without
/// MSH-10, when the options are invalid, or when a connection cannot be
/// opened. Timeouts and failures during the run are counted, not returned.
pub async fn run(opts: LoadOptions) -> Result<LoadSummary, LoadError> {
    validate(&opts)?;
    let templates = load_templates(&opts.files)?;
    let shared = Arc::new(Shared {
        templates,
        run: run_tag(),
        pipeline: opts.pipeline,
        timeout: opts.timeout,
        // Each connection offers rate/connections msgs/s. interval() panics
        // on a zero period, hence the floor.
        period: opts.rate.map(|r| Duration::from_secs_f64(opts.connections as f64 / r).max(Duration::from_nanos(1))),
    });
    let connector = match &opts.tls {
        Some(t) => Some(t.connector(&opts.to)?),
        None => None,
    };
    let mut streams = Vec::with_capacity(opts.connections);
    for conn in 0..opts.connections {
        let quota = opts.messages / opts.connections as u64
            + u64::from((conn as u64) < opts.messages % opts.connections as u64);
        if quota > 0 {
            streams.push((conn, quota, connect(&opts.to, opts.timeout, connector.as_ref()).await?));
        }
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (conn, quota, stream) in streams {
        let plan = Plan { conn, quota, shared: Arc::clone(&shared) };
        tasks.spawn(drive(stream, plan));
    }
    let mut tally = Tally::default();
    while let Some(result) = tasks.join_next().await {
        tally.merge(result?);
    }
    Ok(tally.summary(started.elapsed()))
}

fn validate(opts: &LoadOptions) -> Result<(), LoadError> {
    if opts.connections == 0 {
        return Err(LoadError::Options("--connections must be at least 1"));
    }
    if opts.pipeline == 0 {
        return Err(LoadError::Options("--pipeline must be at least 1 (1 = lockstep)"));
    }
    if opts.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(LoadError::Options("--rate must be a positive number of messages per second"));
    }
    Ok(())
}

async fn connect(addr: &str, timeout: Duration, tls: Option<&Connector>) -> Result<Box<dyn Io>, LoadError> {
    // Nodelay is set by `open`: Nagle would add its delay to every measured latency.
    client::open(addr, timeout, tls).await.map_err(|e| {
        let source = match e {
            ClientError::Connect { source, .. } => source,
            other => io::Error::other(crate::pipeline::error_chain(&other)),
        };
        LoadError::Connect { addr: addr.to_owned(), source }
    })
}

#[cfg(test)]
mod tests;
