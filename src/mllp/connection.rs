//! One MLLP connection: a reader (bytes → frames → pipeline jobs) and a
//! writer (ACKs, in the order the frames came).
//!
//! The reader owns its buffer and decoder (rather than a `FramedRead`) so
//! that a timer can end a frame: a sender that ends a frame with `FS` but no
//! `CR` and then waits for its ACK gets it after [`LONE_FS_GRACE`] (issue 8,
//! hole 12: it used to wait until the stalled-frame timeout closed the
//! connection). Three deadlines, one at a time:
//! - between frames, `idle_timeout` after the last frame, unless an ACK is
//!   still owed (bytes outside frames are not activity: they are dropped and
//!   counted);
//! - inside a frame, `frame_timeout` after its first byte;
//! - `FS` as the last byte received: [`LONE_FS_GRACE`] after it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, Instant};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::admission::{Activity, ConnectionStats};
use super::allow::SenderRights;
use super::codec::{Frame, FrameError, MllpCodec};
use super::server::Shared;
use crate::pipeline::{now_ms, Outcome};
use crate::worker::{FrameBuf, Job};

/// Initial read and write buffer per connection. Small: an idle connection
/// should cost kilobytes (1,000 idle connections measured at 183 MiB RSS
/// with 64 KiB each); the read buffer grows with the frames that arrive.
const CONN_BUFFER_BYTES: usize = 8 * 1024;

/// How long an `FS` that is the last byte received waits for its `CR`
/// before it ends the frame on its own. Long enough for a `CR` split into
/// the next TCP segment to arrive, short against a sender's ACK timeout.
pub const LONE_FS_GRACE: Duration = Duration::from_millis(150);

/// The reading half of a connection, plain TCP or TLS alike.
pub(super) type ReadHalf = Box<dyn AsyncRead + Unpin + Send + Sync>;
/// The writing half of a connection, plain TCP or TLS alike.
pub(super) type WriteHalf = Box<dyn AsyncWrite + Unpin + Send + Sync>;

/// Why a connection ended, for the log (read through `Debug`).
#[allow(dead_code)]
#[derive(Debug)]
enum Close {
    Eof,
    Idle,
    Stalled,
    Truncated(usize),
    Shutdown,
    Evicted,
    PipelineStopped,
    Io(String),
}

pub(super) struct Connection {
    pub(super) id: u64,
    pub(super) peer: SocketAddr,
    pub(super) shared: Arc<Shared>,
    pub(super) activity: Arc<Activity>,
    /// Cancelled when the connection is evicted to make way for another.
    pub(super) evict: CancellationToken,
    /// What this connection may send as (listeners with an allow-list).
    pub(super) rights: Option<Arc<SenderRights>>,
}

/// The reader's state: decoder, buffer, and how much junk was reported.
struct Reader {
    rd: ReadHalf,
    codec: MllpCodec,
    buf: BytesMut,
    junk_counted: u64,
    peer: Arc<str>,
    acks: mpsc::Sender<oneshot::Receiver<Outcome>>,
}

/// The reader's deadlines (see the module docs), apart from the I/O so
/// that their interplay can be tested with explicit instants.
#[derive(Debug, Clone, Copy)]
struct Timers {
    /// When the last frame ended (or the connection opened).
    last_frame: Instant,
    /// When the frame in progress was first seen.
    frame_started: Option<Instant>,
    /// When the `FS` that is the last byte received was first seen.
    lone_fs: Option<Instant>,
}

/// What a deadline that passed means.
#[derive(Debug, PartialEq, Eq)]
enum Due {
    /// End the frame at its lone `FS`.
    EndLoneFs,
    /// The frame in progress took too long.
    Stalled,
    /// No frame for the idle timeout.
    Idle,
    /// Nothing yet (the deadline has not passed).
    Nothing,
}

impl Timers {
    fn new(now: Instant) -> Timers {
        Timers { last_frame: now, frame_started: None, lone_fs: None }
    }

    /// After decoding everything buffered: a frame in progress keeps its
    /// first-seen time, however many reads it spans.
    fn observe(&mut self, now: Instant, in_frame: bool, awaiting_cr: bool) {
        self.frame_started = if in_frame { Some(self.frame_started.unwrap_or(now)) } else { None };
        self.lone_fs = if awaiting_cr { Some(self.lone_fs.unwrap_or(now)) } else { None };
    }

    /// The one deadline that applies now.
    fn deadline(&self, idle_timeout: Duration, frame_timeout: Duration) -> Instant {
        match (self.frame_started, self.lone_fs) {
            (Some(start), Some(fs)) => (start + frame_timeout).min(fs + LONE_FS_GRACE),
            (Some(start), None) => start + frame_timeout,
            (None, _) => self.last_frame + idle_timeout,
        }
    }

    /// Which deadline passed, once [`Timers::deadline`] has.
    fn due(&self, now: Instant, frame_timeout: Duration) -> Due {
        // A frame that is complete but for its CR is ended, never timed out.
        if self.lone_fs.is_some_and(|fs| fs + LONE_FS_GRACE <= now) {
            return Due::EndLoneFs;
        }
        match self.frame_started {
            Some(start) if start + frame_timeout <= now => Due::Stalled,
            Some(_) => Due::Nothing,
            None => Due::Idle,
        }
    }
}

impl Connection {
    /// Serves the connection over its two halves (TCP or TLS: the handshake,
    /// if any, is done).
    pub(super) async fn serve(self, rd: ReadHalf, wr: WriteHalf) {
        let (ack_tx, ack_rx) = mpsc::channel(self.shared.cfg.max_in_flight.max(1));
        let writer = tokio::spawn(write_acks(wr, ack_rx, self.activity.clone()));
        let peer: Arc<str> = Arc::from(self.peer.to_string());
        tracing::debug!(conn_id = self.id, peer = %peer, "connection opened");
        let mut r = Reader {
            rd,
            codec: MllpCodec::new(self.shared.cfg.max_frame_bytes),
            buf: BytesMut::with_capacity(CONN_BUFFER_BYTES),
            junk_counted: 0,
            peer: peer.clone(),
            acks: ack_tx,
        };
        let close = self.read_frames(&mut r).await;
        let stats = r.codec.stats();
        drop(r);
        let written = writer.await.unwrap_or(0);
        if matches!(close, Close::Idle | Close::Stalled) {
            ConnectionStats::add(&self.shared.cfg.stats.timed_out, 1);
        }
        tracing::debug!(conn_id = self.id, peer = %peer, reason = ?close, acks = written,
            junk_bytes = stats.junk_bytes, resyncs = stats.resyncs, oversize = stats.oversize_frames,
            fs_without_cr = stats.fs_without_cr, late_crs = stats.late_crs, "connection closed");
        if matches!(close, Close::Stalled | Close::Truncated(_)) || stats.junk_bytes > 0 {
            tracing::warn!(conn_id = self.id, peer = %peer, reason = ?close, junk_bytes = stats.junk_bytes, "connection ended abnormally or sent bytes outside frames");
        }
    }

    async fn read_frames(&self, r: &mut Reader) -> Close {
        let cfg = &self.shared.cfg;
        let mut timers = Timers::new(Instant::now());
        loop {
            loop {
                let decoded = r.codec.decode(&mut r.buf);
                self.count_junk(r);
                match decoded {
                    Ok(Some(frame)) => {
                        if let Err(close) = self.submit(r, frame).await {
                            return close;
                        }
                        timers.last_frame = Instant::now();
                    }
                    Ok(None) => break,
                    Err(e) => return Close::Io(e.to_string()),
                }
            }
            let in_frame = r.codec.in_frame();
            if self.activity.set_in_frame(in_frame).is_err() {
                return Close::Evicted;
            }
            timers.observe(Instant::now(), in_frame, r.codec.awaiting_cr(&r.buf));
            if r.buf.capacity() - r.buf.len() < CONN_BUFFER_BYTES / 2 {
                r.buf.reserve(CONN_BUFFER_BYTES);
            }
            // Deadlines before reads: a peer that never stops sending must
            // still be timed out.
            tokio::select! {
                biased;
                _ = self.shared.cancel.cancelled() => return Close::Shutdown,
                _ = self.evict.cancelled() => return Close::Evicted,
                _ = tokio::time::sleep_until(timers.deadline(cfg.idle_timeout, cfg.frame_timeout)) => {
                    match timers.due(Instant::now(), cfg.frame_timeout) {
                        Due::EndLoneFs => {
                            if let Some(frame) = r.codec.end_lone_fs(&mut r.buf) {
                                if let Err(close) = self.submit(r, frame).await {
                                    return close;
                                }
                                timers.last_frame = Instant::now();
                            }
                        }
                        Due::Stalled => return Close::Stalled,
                        // A sender waiting for an ACK the pipeline has not
                        // produced yet is not idle (unless the writer is gone).
                        Due::Idle if self.activity.owes_acks() && !r.acks.is_closed() => {
                            timers.last_frame = Instant::now();
                        }
                        Due::Idle => return Close::Idle,
                        Due::Nothing => {}
                    }
                }
                read = r.rd.read_buf(&mut r.buf) => match read {
                    Ok(0) => return self.at_eof(r).await,
                    Ok(_) => {}
                    Err(e) => return Close::Io(e.to_string()),
                },
            }
        }
    }

    /// The peer closed its side: an `FS` still buffered ends its frame.
    async fn at_eof(&self, r: &mut Reader) -> Close {
        loop {
            let decoded = r.codec.decode_eof(&mut r.buf);
            self.count_junk(r);
            match decoded {
                Ok(Some(frame)) => {
                    if let Err(close) = self.submit(r, frame).await {
                        return close;
                    }
                }
                Ok(None) => return Close::Eof,
                Err(FrameError::Truncated(n)) => return Close::Truncated(n),
                Err(e) => return Close::Io(e.to_string()),
            }
        }
    }

    fn count_junk(&self, r: &mut Reader) {
        let junk = r.codec.stats().junk_bytes;
        if junk > r.junk_counted {
            ConnectionStats::add(&self.shared.cfg.stats.bytes_dropped_outside_frames, junk - r.junk_counted);
            r.junk_counted = junk;
        }
    }

    /// Hands a frame to the pipeline and its pending ACK to the writer.
    async fn submit(&self, r: &Reader, frame: Frame) -> Result<(), Close> {
        let frame = match frame {
            Frame::Message(b) => FrameBuf::Message(b),
            Frame::Oversize { head, len } => FrameBuf::Oversize { head, len },
        };
        // Counted before the job exists, so the writer's `answered` never
        // runs ahead of it.
        self.activity.submitted().map_err(|_| Close::Evicted)?;
        let (reply, rx) = oneshot::channel();
        let job = Job {
            frame,
            peer: r.peer.clone(),
            sender: self.rights.clone(),
            received_at_ms: now_ms(),
            started: std::time::Instant::now(),
            reply,
        };
        if self.shared.pipeline.submit(job).await.is_err() {
            return Err(Close::PipelineStopped);
        }
        if r.acks.send(rx).await.is_err() {
            return Err(Close::Io("ACK writer stopped".into()));
        }
        Ok(())
    }
}

/// Writes ACKs in arrival order; flushes whenever no further ACK is ready,
/// so pipelined senders get their ACKs batched into few writes. Returns how
/// many ACKs were written.
async fn write_acks(
    wr: WriteHalf,
    mut rx: mpsc::Receiver<oneshot::Receiver<Outcome>>,
    activity: Arc<Activity>,
) -> usize {
    let mut w = tokio::io::BufWriter::with_capacity(CONN_BUFFER_BYTES, wr);
    let mut n = 0;
    loop {
        let mut pending = match rx.try_recv() {
            Ok(p) => p,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                if w.flush().await.is_err() {
                    break;
                }
                match rx.recv().await {
                    Some(p) => p,
                    None => break,
                }
            }
        };
        // Flush what is written before waiting on a message still in the
        // pipeline, so earlier ACKs are not held back by a later group commit.
        let outcome = match pending.try_recv() {
            Ok(o) => o,
            Err(oneshot::error::TryRecvError::Closed) => break,
            Err(oneshot::error::TryRecvError::Empty) => {
                if w.flush().await.is_err() {
                    break;
                }
                match pending.await {
                    Ok(o) => o,
                    Err(_) => break,
                }
            }
        };
        if let Some(ack) = outcome.ack {
            let mut buf = Vec::with_capacity(ack.len() + 3);
            buf.push(0x0b);
            buf.extend_from_slice(&ack);
            buf.extend_from_slice(&[0x1c, 0x0d]);
            if w.write_all(&buf).await.is_err() {
                break;
            }
            n += 1;
        }
        // Idle (evictable) only once the ACK is on its way; with no further
        // ACK ready, the flush at the top of the loop sends it.
        if rx.is_empty() && w.flush().await.is_err() {
            break;
        }
        activity.answered();
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(300);
    const FRAME: Duration = Duration::from_secs(30);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn between_frames_the_idle_timeout_counts_from_the_last_frame() {
        let t0 = Instant::now();
        let mut t = Timers::new(t0);
        t.observe(t0 + 5 * MS, false, false);
        assert_eq!(t.deadline(IDLE, FRAME), t0 + IDLE);
        t.last_frame = t0 + 10 * MS;
        t.observe(t0 + 10 * MS, false, false);
        assert_eq!(t.deadline(IDLE, FRAME), t0 + 10 * MS + IDLE);
        assert_eq!(t.due(t0 + 10 * MS + IDLE, FRAME), Due::Idle);
    }

    #[test]
    fn a_frame_in_progress_has_the_frame_timeout_from_its_first_byte_not_the_idle_one() {
        let t0 = Instant::now();
        let mut t = Timers::new(t0);
        t.observe(t0 + MS, true, false);
        // More reads of the same frame do not move its start.
        t.observe(t0 + 20 * MS, true, false);
        assert_eq!(
            t.deadline(Duration::from_millis(5), FRAME),
            t0 + MS + FRAME,
            "a short idle timeout does not cut a frame"
        );
        assert_eq!(t.due(t0 + MS + FRAME, FRAME), Due::Stalled);
        // Once it ends, the idle deadline is back.
        t.last_frame = t0 + 30 * MS;
        t.observe(t0 + 30 * MS, false, false);
        assert_eq!(t.deadline(IDLE, FRAME), t0 + 30 * MS + IDLE);
    }

    #[test]
    fn a_lone_fs_ends_its_frame_after_the_grace_even_past_the_frame_timeout() {
        let t0 = Instant::now();
        let mut t = Timers::new(t0);
        t.observe(t0, true, false);
        t.observe(t0 + 10 * MS, true, true);
        assert_eq!(t.deadline(IDLE, FRAME), t0 + 10 * MS + LONE_FS_GRACE);
        assert_eq!(t.due(t0 + 10 * MS + LONE_FS_GRACE, FRAME), Due::EndLoneFs);
        // With a frame timeout shorter than the grace, the frame is still
        // ended (it is complete), not timed out.
        let short = Duration::from_millis(50);
        assert_eq!(t.deadline(IDLE, short), t0 + short);
        assert_eq!(t.due(t0 + 10 * MS + LONE_FS_GRACE, short), Due::EndLoneFs);
        assert_eq!(t.due(t0 + short, short), Due::Stalled, "before the grace, a stalled frame is stalled");
        assert_eq!(t.due(t0 + 11 * MS, FRAME), Due::Nothing);
        // The CR arrives: no lone FS any more.
        t.observe(t0 + 20 * MS, false, false);
        assert_eq!(t.lone_fs, None);
    }
}
