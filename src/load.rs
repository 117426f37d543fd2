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

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::codec::Decoder;

use crate::mllp::client::MAX_ACK_BYTES;
use crate::mllp::codec::{Frame, MllpCodec, CR, FS, VT};
use crate::mllp::expect::AckExpected;
use crate::mllp::split::split_messages;

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
    let mut streams = Vec::with_capacity(opts.connections);
    for conn in 0..opts.connections {
        let quota = opts.messages / opts.connections as u64
            + u64::from((conn as u64) < opts.messages % opts.connections as u64);
        if quota > 0 {
            streams.push((conn, quota, connect(&opts.to, opts.timeout).await?));
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

async fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, LoadError> {
    let error = |source| LoadError::Connect { addr: addr.to_owned(), source };
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(result) => result.map_err(error)?,
        Err(_) => return Err(error(io::Error::new(io::ErrorKind::TimedOut, "no answer"))),
    };
    // Small frames: Nagle would add its delay to every measured latency.
    stream.set_nodelay(true).map_err(error)?;
    Ok(stream)
}

/// A short tag that differs between runs (hex of the wall clock in ms), so
/// control ids do not repeat across runs against the same store.
fn run_tag() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("{:x}", ms & 0xfff_ffff)
}

/// One message, cut around the end of its MSH-10 so a suffix can be added.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    /// Everything up to the end of MSH-10.
    head: Vec<u8>,
    /// Where MSH-10 starts in `head`.
    id_start: usize,
    /// Everything after MSH-10 (from the separator or segment end on).
    tail: Vec<u8>,
}

impl Template {
    /// `None` when the message does not start with an MSH segment holding
    /// at least nine field separators (MSH-1 is the one after `MSH`, so
    /// MSH-10 starts after the ninth and ends at the tenth or the segment end).
    fn new(message: &[u8]) -> Option<Template> {
        if !message.starts_with(b"MSH") || message.len() < 4 {
            return None;
        }
        let sep = message[3];
        let segment_end = memchr::memchr2(b'\r', b'\n', message).unwrap_or(message.len());
        let mut seps = memchr::memchr_iter(sep, &message[..segment_end]);
        let id_start = seps.nth(8)? + 1;
        let id_end = seps.next().unwrap_or(segment_end);
        Some(Template { head: message[..id_end].to_vec(), id_start, tail: message[id_end..].to_vec() })
    }

    /// Appends the unique control id of message `n` of connection `conn`.
    fn write_id(&self, out: &mut Vec<u8>, run: &str, conn: usize, n: u64) {
        out.extend_from_slice(&self.head[self.id_start..]);
        // Writing to a Vec cannot fail.
        let _ = write!(out, "-{run}-L{conn}-{n}");
    }

    /// Appends the framed message (`VT`, payload, `FS CR`).
    fn write_framed(&self, out: &mut Vec<u8>, run: &str, conn: usize, n: u64) {
        out.push(VT);
        out.extend_from_slice(&self.head[..self.id_start]);
        self.write_id(out, run, conn, n);
        out.extend_from_slice(&self.tail);
        out.extend_from_slice(&[FS, CR]);
    }
}

fn load_templates(files: &[PathBuf]) -> Result<Vec<Template>, LoadError> {
    let mut templates = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: path.clone(), source })?;
        for (index, message) in split_messages(&bytes).iter().enumerate() {
            let template = Template::new(message)
                .ok_or_else(|| LoadError::NoControlId { path: path.clone(), index: index + 1 })?;
            let msh15 = match AckExpected::of(message) {
                AckExpected::Always => None,
                AckExpected::Never => Some("NE"),
                AckExpected::OnlyOnError => Some("ER"),
                AckExpected::OnlyOnSuccess => Some("SU"),
            };
            if let Some(msh15) = msh15 {
                return Err(LoadError::NoAckRequested { path: path.clone(), index: index + 1, msh15 });
            }
            templates.push(template);
        }
    }
    if templates.is_empty() {
        return Err(LoadError::NoMessages);
    }
    Ok(templates)
}

/// What every connection shares.
struct Shared {
    templates: Vec<Template>,
    run: String,
    pipeline: usize,
    timeout: Duration,
    /// Time between two sends of one connection, with a rate.
    period: Option<Duration>,
}

/// One connection's share of the run.
struct Plan {
    conn: usize,
    quota: u64,
    shared: Arc<Shared>,
}

/// A message written and not yet acknowledged.
#[derive(Clone, Copy)]
struct Outstanding {
    /// When it was sent (or, held back by a full window, scheduled to be).
    start: Instant,
    /// Its number on this connection (0-based), which fixes its template.
    n: u64,
}

/// Counts for one connection, or for the whole run once merged.
#[derive(Default)]
struct Tally {
    sent: u64,
    /// (MSA-1, count): a handful of codes, so a Vec beats a map.
    codes: Vec<(Vec<u8>, u64)>,
    timeouts: u64,
    errors: u64,
    latencies_us: Vec<u64>,
}

impl Tally {
    fn count_code(&mut self, code: &[u8]) {
        match self.codes.iter_mut().find(|(c, _)| c == code) {
            Some((_, count)) => *count += 1,
            None => self.codes.push((code.to_vec(), 1)),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        for (code, count) in other.codes {
            match self.codes.iter_mut().find(|(c, _)| *c == code) {
                Some((_, total)) => *total += count,
                None => self.codes.push((code, count)),
            }
        }
        self.timeouts += other.timeouts;
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
    }

    fn summary(mut self, elapsed: Duration) -> LoadSummary {
        self.latencies_us.sort_unstable();
        let acked = self.latencies_us.len() as u64;
        let secs = elapsed.as_secs_f64();
        LoadSummary {
            sent: self.sent,
            acked_by_code: self
                .codes
                .into_iter()
                .map(|(code, n)| (String::from_utf8_lossy(&code).into_owned(), n))
                .collect(),
            timeouts: self.timeouts,
            errors: self.errors,
            elapsed_secs: secs,
            messages_per_sec: if secs > 0.0 { acked as f64 / secs } else { 0.0 },
            latency_us: percentiles(&self.latencies_us),
        }
    }
}

/// Nearest-rank percentiles of sorted values.
fn percentiles(sorted: &[u64]) -> Latency {
    let rank = |p: f64| {
        let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[i]
    };
    if sorted.is_empty() {
        return Latency::default();
    }
    Latency { p50: rank(0.50), p90: rank(0.90), p99: rank(0.99), max: sorted[sorted.len() - 1] }
}

/// One connection's state while it runs.
struct Connection {
    plan: Plan,
    stream: TcpStream,
    codec: MllpCodec,
    wbuf: Vec<u8>,
    rbuf: BytesMut,
    /// Scratch for the control id an ACK should carry.
    expected: Vec<u8>,
    outstanding: VecDeque<Outstanding>,
    /// With a rate: the last time the window was seen full, which held
    /// back every tick scheduled before it.
    window_full_at: Option<Instant>,
    tally: Tally,
}

/// Why a connection stopped early.
enum Stop {
    Timeout,
    Failed,
}

async fn drive(stream: TcpStream, plan: Plan) -> Tally {
    let pipeline = plan.shared.pipeline;
    let mut c = Connection {
        stream,
        codec: MllpCodec::new(MAX_ACK_BYTES),
        wbuf: Vec::with_capacity(64 * 1024),
        rbuf: BytesMut::with_capacity(64 * 1024),
        expected: Vec::with_capacity(128),
        outstanding: VecDeque::with_capacity(pipeline),
        window_full_at: None,
        tally: Tally { latencies_us: Vec::with_capacity(usize::try_from(plan.quota).unwrap_or(0)), ..Tally::default() },
        plan,
    };
    if let Err(stop) = c.run().await {
        let lost = c.outstanding.len() as u64;
        match stop {
            Stop::Timeout => c.tally.timeouts += lost,
            Stop::Failed => c.tally.errors += lost,
        }
    }
    c.tally
}

impl Connection {
    fn can_send(&self) -> bool {
        self.outstanding.len() < self.plan.shared.pipeline && self.tally.sent < self.plan.quota
    }

    async fn run(&mut self) -> Result<(), Stop> {
        let mut pacer = self.plan.shared.period.map(|period| {
            let mut interval = tokio::time::interval(period);
            // Burst: after a stall, catch up with the missed ticks, each
            // returning its own scheduled instant (used as the start time).
            interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
            interval
        });
        loop {
            if pacer.is_none() {
                // Unpaced: fill the window, in one write.
                let now = Instant::now();
                while self.can_send() {
                    self.queue(now);
                }
                self.flush().await?;
            }
            let Some(oldest) = self.outstanding.front().copied() else {
                if self.tally.sent == self.plan.quota {
                    return Ok(());
                }
                // Paced and nothing outstanding: wait for the next tick.
                let tick = tick(&mut pacer).await;
                self.queue_paced(tick);
                self.flush().await?;
                continue;
            };
            let deadline = oldest.start + self.plan.shared.timeout;
            let can_send = self.can_send();
            if self.rbuf.capacity() - self.rbuf.len() < 4096 {
                self.rbuf.reserve(16 * 1024);
            }
            tokio::select! {
                tick = tick(&mut pacer), if pacer.is_some() && can_send => {
                    self.queue_paced(tick);
                    self.flush().await?;
                }
                read = self.stream.read_buf(&mut self.rbuf) => match read {
                    Ok(0) | Err(_) => return Err(Stop::Failed),
                    Ok(_) => self.take_acks()?,
                },
                () = tokio::time::sleep_until(deadline) => return Err(Stop::Timeout),
            }
            if pacer.is_some() && !can_send && self.tally.sent < self.plan.quota {
                self.window_full_at = Some(Instant::now());
            }
        }
    }

    /// Queues the message of a tick scheduled at `scheduled`: measured from
    /// then if a full window held it back, else from now (see module docs).
    fn queue_paced(&mut self, scheduled: Instant) {
        let held_back = self.window_full_at.is_some_and(|full| scheduled <= full);
        self.queue(if held_back { scheduled } else { Instant::now() });
    }

    /// Appends the next message to the write buffer.
    fn queue(&mut self, start: Instant) {
        let n = self.tally.sent;
        let shared = &self.plan.shared;
        let template = &shared.templates[self.template_index(n)];
        template.write_framed(&mut self.wbuf, &shared.run, self.plan.conn, n);
        self.outstanding.push_back(Outstanding { start, n });
        self.tally.sent += 1;
    }

    /// Round-robin over the templates, each connection starting at its own.
    fn template_index(&self, n: u64) -> usize {
        let count = self.plan.shared.templates.len() as u64;
        // The remainder is below the Vec's length, so it fits a usize.
        ((n + self.plan.conn as u64) % count) as usize
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let write = tokio::time::timeout(self.plan.shared.timeout, self.stream.write_all(&self.wbuf));
        match write.await {
            Ok(Ok(())) => {
                self.wbuf.clear();
                Ok(())
            }
            Ok(Err(_)) => Err(Stop::Failed),
            Err(_) => Err(Stop::Timeout),
        }
    }

    /// Matches every complete ACK in the read buffer to its message.
    fn take_acks(&mut self) -> Result<(), Stop> {
        let now = Instant::now();
        loop {
            match self.codec.decode(&mut self.rbuf) {
                Ok(Some(Frame::Message(ack))) => self.on_ack(&ack, now),
                Ok(Some(Frame::Oversize { .. })) => self.on_unreadable(now),
                Ok(None) => return Ok(()),
                Err(_) => return Err(Stop::Failed),
            }
        }
    }

    fn on_ack(&mut self, ack: &[u8], now: Instant) {
        // An ACK with nothing outstanding is unsolicited: not ours to count.
        let Some(sent) = self.outstanding.pop_front() else {
            return;
        };
        self.record_latency(sent, now);
        let template = &self.plan.shared.templates[self.template_index(sent.n)];
        self.expected.clear();
        template.write_id(&mut self.expected, &self.plan.shared.run, self.plan.conn, sent.n);
        match msa_code_and_id(ack) {
            Some((code, id)) if id == self.expected.as_slice() => self.tally.count_code(code),
            _ => self.tally.errors += 1,
        }
    }

    fn on_unreadable(&mut self, now: Instant) {
        if let Some(sent) = self.outstanding.pop_front() {
            self.record_latency(sent, now);
            self.tally.errors += 1;
        }
    }

    fn record_latency(&mut self, sent: Outstanding, now: Instant) {
        let us = now.saturating_duration_since(sent.start).as_micros();
        self.tally.latencies_us.push(u64::try_from(us).unwrap_or(u64::MAX));
    }
}

/// The next tick of a pacer; never resolves without one.
async fn tick(pacer: &mut Option<Interval>) -> Instant {
    match pacer {
        Some(interval) => interval.tick().await,
        None => std::future::pending().await,
    }
}

/// MSA-1 and MSA-2 of an ACK, without allocating. The field separator is
/// the byte after `MSH` (`|` when there is no MSH).
fn msa_code_and_id(ack: &[u8]) -> Option<(&[u8], &[u8])> {
    let sep = match ack {
        [b'M', b'S', b'H', sep, ..] => *sep,
        _ => b'|',
    };
    let msa = ack.split(|&b| b == b'\r' || b == b'\n').find(|s| s.starts_with(b"MSA") && s.get(3) == Some(&sep))?;
    let mut fields = msa.split(|&b| b == sep).skip(1);
    let code = fields.next().filter(|c| !c.is_empty())?;
    Some((code, fields.next().unwrap_or(b"")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use std::collections::HashSet;
    use std::sync::Mutex;
    use tokio::net::TcpListener;
    use tokio_util::codec::Framed;

    const ADT: &[u8] = b"MSH|^~\\&|PAS|RJ1|HUB|X|20250101||ADT^A01|C1|P|2.4\rPID|1\r";

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        /// AA echoing MSH-10.
        Ack,
        /// AA with a wrong MSA-2.
        WrongId,
        /// Reads, never answers.
        Silent,
    }

    /// An MLLP server on 127.0.0.1:0 for any number of connections; returns
    /// its address and the control ids it received.
    async fn ack_server(mode: Mode) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ids = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let ids = Arc::clone(&ids);
                tokio::spawn(async move {
                    let mut framed = Framed::new(socket, MllpCodec::new(1 << 20));
                    while let Some(Ok(Frame::Message(msg))) = framed.next().await {
                        let id = msg[..].split(|&b| b == b'|').nth(9).unwrap_or(b"").to_vec();
                        ids.lock().unwrap().push(String::from_utf8(id.clone()).unwrap());
                        let mut ack = b"MSH|^~\\&|HUB|X|||20250101||ACK|A1|P|2.4\rMSA|AA|".to_vec();
                        match mode {
                            Mode::Ack => ack.extend_from_slice(&id),
                            Mode::WrongId => ack.extend_from_slice(b"nope"),
                            Mode::Silent => continue,
                        }
                        ack.push(b'\r');
                        framed.send(&ack[..]).await.unwrap();
                    }
                });
            }
        });
        (addr, seen)
    }

    fn options(to: String, file: PathBuf) -> LoadOptions {
        LoadOptions {
            to,
            connections: 2,
            messages: 200,
            pipeline: 4,
            rate: None,
            files: vec![file],
            timeout: Duration::from_secs(5),
        }
    }

    fn fixture(dir: &tempfile::TempDir, text: &[u8]) -> PathBuf {
        let path = dir.path().join("m.hl7");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[tokio::test]
    async fn two_connections_pipelined_all_acked() {
        let dir = tempfile::tempdir().unwrap();
        let two = [ADT, &ADT.to_vec().iter().map(|&b| if b == b'1' { b'2' } else { b }).collect::<Vec<_>>()].concat();
        let file = fixture(&dir, &two);
        let (addr, seen) = ack_server(Mode::Ack).await;
        let s = run(options(addr, file)).await.unwrap();
        assert_eq!(s.sent, 200);
        assert_eq!(s.acked_by_code.get("AA"), Some(&200), "{s:?}");
        assert_eq!((s.timeouts, s.errors), (0, 0));
        let l = s.latency_us;
        assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max && l.max > 0, "{l:?}");
        assert!(s.messages_per_sec > 0.0);
        let seen = seen.lock().unwrap();
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), 200, "every control id is unique");
        assert!(seen.iter().any(|id| id.starts_with("C1-")) && seen.iter().any(|id| id.starts_with("C2-")));
    }

    #[tokio::test]
    async fn lockstep_with_rate_is_paced() {
        let dir = tempfile::tempdir().unwrap();
        let file = fixture(&dir, ADT);
        let (addr, _) = ack_server(Mode::Ack).await;
        let opts = LoadOptions { messages: 20, pipeline: 1, rate: Some(200.0), ..options(addr, file) };
        let s = run(opts).await.unwrap();
        assert_eq!(s.acked_by_code.get("AA"), Some(&20));
        // 10 per connection, 10 ms apart, the first at once: at least 90 ms.
        assert!(s.elapsed_secs >= 0.085, "{s:?}");
    }

    #[tokio::test]
    async fn silent_server_counts_timeouts() {
        let dir = tempfile::tempdir().unwrap();
        let file = fixture(&dir, ADT);
        let (addr, _) = ack_server(Mode::Silent).await;
        let opts = LoadOptions { timeout: Duration::from_millis(100), ..options(addr, file) };
        let s = run(opts).await.unwrap();
        // Each connection writes its window of 4, then times out.
        assert_eq!((s.sent, s.timeouts, s.errors), (8, 8, 0), "{s:?}");
        assert!(s.acked_by_code.is_empty());
    }

    #[tokio::test]
    async fn ack_for_another_control_id_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = fixture(&dir, ADT);
        let (addr, _) = ack_server(Mode::WrongId).await;
        let s = run(LoadOptions { messages: 10, ..options(addr, file) }).await.unwrap();
        assert_eq!((s.sent, s.errors), (10, 10), "{s:?}");
    }

    #[tokio::test]
    async fn refused_connection_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = fixture(&dir, ADT);
        let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let err = run(options(addr.to_string(), file)).await.unwrap_err();
        assert!(matches!(err, LoadError::Connect { .. }), "{err:?}");
    }

    #[test]
    fn template_rewrites_msh_10_only() {
        let t = Template::new(ADT).unwrap();
        let mut out = Vec::new();
        t.write_framed(&mut out, "r1", 3, 42);
        assert_eq!(out, b"\x0bMSH|^~\\&|PAS|RJ1|HUB|X|20250101||ADT^A01|C1-r1-L3-42|P|2.4\rPID|1\r\x1c\r");
    }

    #[test]
    fn template_with_custom_separator_and_msh_10_last() {
        let t = Template::new(b"MSH#@!$%#A#B#C#D#1##ORU@R01#ID9\nPID#1").unwrap();
        let mut out = Vec::new();
        t.write_framed(&mut out, "r", 0, 7);
        assert_eq!(out, b"\x0bMSH#@!$%#A#B#C#D#1##ORU@R01#ID9-r-L0-7\nPID#1\x1c\r");
    }

    #[test]
    fn a_message_asking_for_no_ack_is_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let ok = fixture(&dir, b"MSH|^~\\&|A|B|C|D|20250101||ADT^A01|X1|P|2.5|||AL|NE\rPID|1\r");
        assert!(load_templates(&[ok]).is_ok());
        let ne = fixture(&dir, b"MSH|^~\\&|A|B|C|D|20250101||ADT^A01|X1|P|2.5|||NE|NE\rPID|1\r");
        let err = load_templates(&[ne]).unwrap_err();
        assert!(matches!(err, LoadError::NoAckRequested { index: 1, msh15: "NE", .. }), "{err:?}");
        assert!(err.to_string().contains("leave MSH-15 empty or set it to AL"), "{err}");
    }

    #[test]
    fn template_needs_msh_10() {
        assert_eq!(Template::new(b"MSH|^~\\&|A|B|C|D|1||ADT\r"), None);
        assert_eq!(Template::new(b"PID|1|2|3|4|5|6|7|8|9|10|11\r"), None);
    }

    #[test]
    fn msa_fields() {
        assert_eq!(msa_code_and_id(b"MSH|^~\\&|H\rMSA|CA|X-1|text\r"), Some((&b"CA"[..], &b"X-1"[..])));
        assert_eq!(msa_code_and_id(b"MSH#@!$%#H\rMSA#AE#9\r"), Some((&b"AE"[..], &b"9"[..])));
        assert_eq!(msa_code_and_id(b"MSH|^~\\&|H\rMSA||1\r"), None);
        assert_eq!(msa_code_and_id(b"junk"), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentiles(&v), Latency { p50: 50, p90: 90, p99: 99, max: 100 });
        assert_eq!(percentiles(&[7]), Latency { p50: 7, p90: 7, p99: 7, max: 7 });
        assert_eq!(percentiles(&[]), Latency::default());
    }
}
