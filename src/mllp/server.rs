//! The MLLP listener: accept loop and per-connection handler.
//!
//! Each connection has a reader (frames → pipeline jobs) and a writer (ACKs,
//! in the order the frames came). A sender may pipeline up to `max_in_flight`
//! messages before the reader stops reading its socket. Connections beyond
//! `max_connections` wait in the listen backlog until a slot frees. Shutdown
//! (the cancellation token) stops accepting and reading; every frame already
//! read still gets its ACK before the connection closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::{Frame, MllpCodec};
use crate::pipeline::{now_ms, Outcome};
use crate::worker::{FrameBuf, Handle, Job};

/// Initial read and write buffer per connection.
const CONN_BUFFER_BYTES: usize = 8 * 1024;

/// Listener settings (from `[mllp]` in engine.toml).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_frame_bytes: usize,
    /// A connection with no frame in progress is closed after this long.
    pub idle_timeout: Duration,
    /// A frame must be complete within this long of its first byte.
    pub frame_timeout: Duration,
    pub max_connections: usize,
    pub max_in_flight: usize,
}

/// Runs the accept loop on an already-bound listener until `cancel` fires,
/// then waits for every connection to finish the messages in hand.
pub async fn run(listener: TcpListener, cfg: ServerConfig, pipeline: Handle, cancel: CancellationToken) {
    let cfg = Arc::new(cfg);
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let tracker = TaskTracker::new();
    let mut next_id: u64 = 0;
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the
                    // server keeps running.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        next_id += 1;
        let conn =
            Connection { id: next_id, peer, cfg: cfg.clone(), pipeline: pipeline.clone(), cancel: cancel.clone() };
        tracker.spawn(async move {
            conn.serve(stream).await;
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

struct Connection {
    id: u64,
    peer: SocketAddr,
    cfg: Arc<ServerConfig>,
    pipeline: Handle,
    cancel: CancellationToken,
}

/// Why a connection ended, for the log (read through `Debug`).
#[allow(dead_code)]
#[derive(Debug)]
enum Close {
    Eof,
    Idle,
    Stalled,
    Truncated(usize),
    Shutdown,
    PipelineStopped,
    Io(String),
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let (ack_tx, ack_rx) = mpsc::channel::<oneshot::Receiver<Outcome>>(self.cfg.max_in_flight.max(1));
        let writer = tokio::spawn(write_acks(wr, ack_rx));
        let peer: Arc<str> = Arc::from(self.peer.to_string());
        tracing::debug!(conn_id = self.id, peer = %peer, "connection opened");
        // Small initial buffers: an idle connection should cost kilobytes
        // (1,000 idle connections measured at 183 MiB RSS with 64 KiB each);
        // the read buffer grows with the frames that actually arrive.
        let mut frames = FramedRead::with_capacity(rd, MllpCodec::new(self.cfg.max_frame_bytes), CONN_BUFFER_BYTES);
        let close = self.read_frames(&mut frames, &peer, &ack_tx).await;
        drop(ack_tx);
        let written = writer.await.unwrap_or(0);
        let stats = frames.decoder().stats();
        tracing::debug!(conn_id = self.id, peer = %peer, reason = ?close, acks = written,
            junk_bytes = stats.junk_bytes, resyncs = stats.resyncs, oversize = stats.oversize_frames,
            fs_without_cr = stats.fs_without_cr, "connection closed");
        if matches!(close, Close::Stalled | Close::Truncated(_)) || stats.junk_bytes > 0 {
            tracing::warn!(conn_id = self.id, peer = %peer, reason = ?close, junk_bytes = stats.junk_bytes, "connection ended abnormally or sent bytes outside frames");
        }
    }

    async fn read_frames(
        &self,
        frames: &mut FramedRead<tokio::net::tcp::OwnedReadHalf, MllpCodec>,
        peer: &Arc<str>,
        acks: &mpsc::Sender<oneshot::Receiver<Outcome>>,
    ) -> Close {
        // Poll in short slices so that both the idle and the stalled-frame
        // deadlines are checked; FramedRead::next is cancel-safe.
        let slice = (self.cfg.idle_timeout.min(self.cfg.frame_timeout) / 4).max(Duration::from_millis(10));
        let mut last_frame = Instant::now();
        let mut frame_started: Option<Instant> = None;
        loop {
            let next = tokio::select! {
                _ = self.cancel.cancelled() => return Close::Shutdown,
                r = tokio::time::timeout(slice, frames.next()) => r,
            };
            let frame = match next {
                Err(_) => {
                    if frames.decoder().in_frame() {
                        let started = *frame_started.get_or_insert_with(Instant::now);
                        if started.elapsed() >= self.cfg.frame_timeout {
                            return Close::Stalled;
                        }
                    } else {
                        frame_started = None;
                        if last_frame.elapsed() >= self.cfg.idle_timeout {
                            return Close::Idle;
                        }
                    }
                    continue;
                }
                Ok(None) => return Close::Eof,
                Ok(Some(Err(super::codec::FrameError::Truncated(n)))) => return Close::Truncated(n),
                Ok(Some(Err(e))) => return Close::Io(e.to_string()),
                Ok(Some(Ok(f))) => f,
            };
            last_frame = Instant::now();
            frame_started = None;
            let frame = match frame {
                Frame::Message(b) => FrameBuf::Message(b),
                Frame::Oversize { head, len } => FrameBuf::Oversize { head, len },
            };
            let (reply, rx) = oneshot::channel();
            let job = Job { frame, peer: peer.clone(), received_at_ms: now_ms(), started: Instant::now(), reply };
            if self.pipeline.submit(job).await.is_err() {
                return Close::PipelineStopped;
            }
            if acks.send(rx).await.is_err() {
                return Close::Io("ACK writer stopped".into());
            }
        }
    }
}

/// Writes ACKs in arrival order; flushes whenever no further ACK is ready,
/// so pipelined senders get their ACKs batched into few writes. Returns how
/// many ACKs were written.
async fn write_acks(wr: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<oneshot::Receiver<Outcome>>) -> usize {
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
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
    n
}
