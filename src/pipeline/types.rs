//! The pipeline's inputs, outputs and options.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::ack::{AckCode, Problem};
use crate::fault::Faults;
use crate::health::Health;
use crate::intake::{Envelope, Policy};
use crate::journal::{DamagePolicy, JournalError, Recovery};
use crate::store::StoreError;

use super::Mappings;

/// One frame handed to the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub frame: Frame<'a>,
    /// The sender's address, for the journal and logs.
    pub peer: &'a str,
    pub received_at_ms: u64,
    /// Its mapping, done ahead off the pipeline thread (large frames).
    pub premapped: Option<&'a super::Premapped>,
    /// What its connection may send as (listeners with an allow-list).
    pub sender: Option<&'a crate::mllp::allow::SenderRights>,
}

impl<'a> Inbound<'a> {
    /// A complete message, not mapped ahead.
    pub fn message(raw: &'a [u8], peer: &'a str, received_at_ms: u64) -> Inbound<'a> {
        Inbound { frame: Frame::Message(raw), peer, received_at_ms, premapped: None, sender: None }
    }
}

/// A complete frame, or the head of one that exceeded `max_frame_bytes`.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    Message(&'a [u8]),
    Oversize { head: &'a [u8], len: u64 },
}

/// Which stage decided a non-AA outcome (for logs: `stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Frame,
    Parse,
    Map,
    Store,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Frame => "frame",
            Stage::Parse => "parse",
            Stage::Map => "map",
            Stage::Store => "store",
        }
    }
}

/// What happened to one frame.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// ACK bytes to send (unframed); `None` when MSH-15 asked for none.
    pub ack: Option<Vec<u8>>,
    /// The code decided, whether or not an ACK is sent.
    pub code: AckCode,
    pub envelope: Envelope,
    /// Journal sequence, when the frame was journaled.
    pub seq: Option<u64>,
    /// An identical retransmission answered from the dedup table.
    pub duplicate: bool,
    /// Why it was not accepted, for the log line (never message content).
    pub problem: Option<(Stage, Problem)>,
    pub bytes: usize,
}

impl Outcome {
    /// `accepted`, `error` or `rejected`: the verdict, apart from whether an
    /// ACK carried it (MSH-15 NE/ER/SU may suppress the ACK).
    pub fn verdict(&self) -> &'static str {
        match self.code {
            AckCode::AA | AckCode::CA => "accepted",
            AckCode::AE | AckCode::CE => "error",
            AckCode::AR | AckCode::CR => "rejected",
        }
    }
}

/// Everything `Pipeline::open` needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_dir: PathBuf,
    pub journal_segment_bytes: u64,
    /// sled's page cache bound for the index.
    pub index_cache_bytes: u64,
    /// What start-up does with a journal damaged before its end.
    pub journal_damage: DamagePolicy,
    pub application: String,
    pub facility: String,
    pub policy: Policy,
    pub mappings: Mappings,
    /// Where failures are reported for `/health` and `/ready`.
    pub health: Health,
    /// Armed fault points (tests only; none in production).
    pub faults: Faults,
}

/// Errors that stop the engine from starting.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the journal in {dir}")]
    Journal { dir: PathBuf, source: JournalError },
    #[error("cannot open the index in {dir} (is another recordhub using it?)")]
    Store { dir: PathBuf, source: StoreError },
    #[error("cannot replay journal entry {seq} into the index")]
    Replay { seq: u64, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("cannot start the index writer thread")]
    Thread(#[source] std::io::Error),
}

/// What start-up found and did.
#[derive(Debug)]
pub struct Startup {
    pub recovery: Recovery,
    /// Journal entries re-applied to the index (sled had lost them or never had them).
    pub replayed: u64,
}

pub fn journal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("journal")
}

pub fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index")
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// For timing a batch in logs.
pub fn elapsed_us(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

/// An error and its sources, one line: what an operator needs (the OS
/// error) without a second log line per cause.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}
