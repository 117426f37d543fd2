//! One load connection: keeps up to `pipeline` messages outstanding,
//! optionally paced, and matches every ACK to the message it answers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::mllp::client::Io;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::codec::Decoder;

use super::tally::Tally;
use super::template::Template;
use crate::mllp::client::MAX_ACK_BYTES;
use crate::mllp::codec::{Frame, MllpCodec};

/// What every connection shares.
pub(super) struct Shared {
    pub(super) templates: Vec<Template>,
    pub(super) run: String,
    pub(super) pipeline: usize,
    pub(super) timeout: Duration,
    /// Time between two sends of one connection, with a rate.
    pub(super) period: Option<Duration>,
}

/// One connection's share of the run.
pub(super) struct Plan {
    pub(super) conn: usize,
    pub(super) quota: u64,
    pub(super) shared: Arc<Shared>,
}

/// A message written and not yet acknowledged.
#[derive(Clone, Copy)]
struct Outstanding {
    /// When it was sent (or, held back by a full window, scheduled to be).
    start: Instant,
    /// Its number on this connection (0-based), which fixes its template.
    n: u64,
}

/// One connection's state while it runs.
struct Connection {
    plan: Plan,
    stream: Box<dyn Io>,
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

pub(super) async fn drive(stream: Box<dyn Io>, plan: Plan) -> Tally {
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
pub(super) fn msa_code_and_id(ack: &[u8]) -> Option<(&[u8], &[u8])> {
    let sep = match ack {
        [b'M', b'S', b'H', sep, ..] => *sep,
        _ => b'|',
    };
    let msa = ack.split(|&b| b == b'\r' || b == b'\n').find(|s| s.starts_with(b"MSA") && s.get(3) == Some(&sep))?;
    let mut fields = msa.split(|&b| b == sep).skip(1);
    let code = fields.next().filter(|c| !c.is_empty())?;
    Some((code, fields.next().unwrap_or(b"")))
}
