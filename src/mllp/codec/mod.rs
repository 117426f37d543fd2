//! MLLP release 1 framing: the first stage of the pipeline, bytes on a TCP
//! connection → one HL7 message per frame.
//!
//! A frame is `VT` (0x0B), the message bytes, then `FS CR` (0x1C 0x0D)
//! (HL7 v2 MLLP release 1; see `shared/research/hl7-ack.md`, "Framing").
//! The decoder is lenient where real senders are sloppy and strict where
//! memory is at stake:
//! - bytes outside a frame are dropped and counted, never an error;
//! - a `VT` inside a frame means the sender restarted: the partial frame is
//!   dropped and a new one starts at that `VT` (a *resync*);
//! - `FS` not followed by `CR` still ends the frame (counted). When `FS` is
//!   the last byte received, the decoder waits for the next byte; the server
//!   ends such a frame with [`MllpCodec::end_lone_fs`] when no `CR` follows
//!   within a short grace, and a `CR` arriving after that is swallowed, not
//!   counted as junk;
//! - a frame larger than `max_frame_bytes` is never buffered whole: its first
//!   [`OVERSIZE_HEAD_BYTES`] are kept so the caller can read MSH and reject it,
//!   the rest is discarded as it arrives (`oversize.rs`). The head kept is the
//!   same however the reads were split.
//!
//! It does not look inside the payload (no HL7 parsing), keeps no clock and
//! does not decide what to answer; that is the server's and the ACK
//! builder's job.

mod oversize;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Start block (vertical tab).
pub const VT: u8 = 0x0B;
/// End block (file separator).
pub const FS: u8 = 0x1C;
/// Carriage return that follows `FS`.
pub const CR: u8 = 0x0D;
/// How many payload bytes of an oversize frame are kept in [`Frame::Oversize`].
pub const OVERSIZE_HEAD_BYTES: usize = 4096;

/// Counters of the decoder's recoveries, for logs and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CodecStats {
    /// Bytes outside a frame (before a `VT`), dropped.
    pub junk_bytes: u64,
    /// Frames ended by `FS` without the `CR` that should follow it.
    pub fs_without_cr: u64,
    /// `VT` seen inside a frame: the partial frame was dropped.
    pub resyncs: u64,
    /// Frames longer than the maximum, emitted as [`Frame::Oversize`].
    pub oversize_frames: u64,
    /// `CR`s that arrived after their frame had been ended by
    /// [`MllpCodec::end_lone_fs`]: swallowed, not junk.
    pub late_crs: u64,
}

/// One decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete message: the payload without `VT`/`FS`/`CR`.
    Message(BytesMut),
    /// A frame longer than the maximum, discarded up to its end block.
    Oversize {
        /// The first (up to 4096) payload bytes, so the server can read MSH
        /// and answer AR.
        head: Bytes,
        /// Total payload length.
        len: u64,
    },
}

/// Why no frame could be read.
#[derive(thiserror::Error, Debug)]
pub enum FrameError {
    /// The peer closed the connection after a `VT` but before `FS`.
    #[error("connection closed in the middle of a frame ({0} bytes received)")]
    Truncated(usize),
    /// Reading from or writing to the socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug)]
enum State {
    /// Between frames, looking for `VT`.
    Outside,
    /// After `VT`; the payload so far is at the front of the buffer and
    /// `searched` bytes of it are known to hold neither `VT` nor `FS`.
    InFrame { searched: usize },
    /// Past the maximum: only the first [`OVERSIZE_HEAD_BYTES`] are kept in
    /// `head` (filled up across reads), `len` counts every payload byte
    /// already consumed (including those in `head`).
    Oversize { head: Vec<u8>, len: u64 },
}

/// What one decoding step achieved.
enum Step {
    Frame(Frame),
    /// State changed and the buffer may hold more: look again.
    Continue,
    /// Everything buffered has been examined.
    NeedMore,
}

/// tokio-util codec for MLLP release 1 (see the module docs).
#[derive(Debug)]
pub struct MllpCodec {
    max_frame_bytes: usize,
    state: State,
    stats: CodecStats,
    /// The last frame was ended by a lone `FS`: a `CR` as the next byte is
    /// the late rest of its end block.
    swallow_cr: bool,
}

impl MllpCodec {
    /// A codec that accepts payloads of at most `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        MllpCodec { max_frame_bytes, state: State::Outside, stats: CodecStats::default(), swallow_cr: false }
    }

    /// Counters since the codec was created.
    pub fn stats(&self) -> CodecStats {
        self.stats
    }

    /// True while a frame has started (`VT` seen) but not ended: the server
    /// uses it to tell a stalled sender from an idle connection.
    pub fn in_frame(&self) -> bool {
        !matches!(self.state, State::Outside)
    }

    /// True when the frame in progress has seen its `FS` as the last byte
    /// received, and the decoder is waiting for the byte after it.
    pub fn awaiting_cr(&self, src: &BytesMut) -> bool {
        match &self.state {
            State::InFrame { searched } => *searched + 1 == src.len() && src.last() == Some(&FS),
            State::Oversize { .. } => src[..] == [FS],
            State::Outside => false,
        }
    }

    /// Ends the frame whose `FS` is the last byte received ([`awaiting_cr`]),
    /// for a sender that sends `FS` without `CR` and then waits for its ACK.
    /// A `CR` arriving afterwards is swallowed. `None` when not awaiting a `CR`.
    ///
    /// [`awaiting_cr`]: MllpCodec::awaiting_cr
    pub fn end_lone_fs(&mut self, src: &mut BytesMut) -> Option<Frame> {
        if !self.awaiting_cr(src) {
            return None;
        }
        let frame = match std::mem::replace(&mut self.state, State::Outside) {
            State::InFrame { .. } => self.end_frame(src, src.len() - 1),
            State::Oversize { head, len } => self.end_oversize(src, head, len),
            State::Outside => return None,
        };
        self.swallow_cr = true;
        Some(frame)
    }

    /// Skips to the next `VT`. Returns false when the buffer holds none.
    fn find_start(&mut self, src: &mut BytesMut) -> bool {
        if !src.is_empty() && std::mem::take(&mut self.swallow_cr) && src[0] == CR {
            self.stats.late_crs += 1;
            src.advance(1);
        }
        match memchr::memchr(VT, src) {
            Some(i) => {
                self.stats.junk_bytes += i as u64;
                src.advance(i + 1);
                self.state = State::InFrame { searched: 0 };
                true
            }
            None => {
                self.stats.junk_bytes += src.len() as u64;
                src.clear();
                false
            }
        }
    }

    /// Consumes the end block at `src[0]` (`FS`, then `CR` if present).
    /// Needs at least one byte after `FS`, or `at_eof`.
    fn consume_end(&mut self, src: &mut BytesMut) {
        if src.get(1) == Some(&CR) {
            src.advance(2);
        } else {
            // The byte after FS (if any) is left for `find_start`: it is
            // outside any frame.
            self.stats.fs_without_cr += 1;
            src.advance(1);
        }
        self.state = State::Outside;
    }

    /// One step inside a frame.
    fn step_in_frame(&mut self, src: &mut BytesMut, searched: usize) -> Step {
        let Some(rel) = memchr::memchr2(VT, FS, &src[searched..]) else {
            if src.len() > self.max_frame_bytes {
                let (head, len) = oversize::take_payload(src, src.len());
                self.state = State::Oversize { head, len };
            } else {
                self.state = State::InFrame { searched: src.len() };
            }
            return Step::NeedMore;
        };
        let i = searched + rel;
        if src[i] == VT {
            self.stats.resyncs += 1;
            src.advance(i + 1);
            self.state = State::InFrame { searched: 0 };
            return Step::Continue;
        }
        if i + 1 == src.len() {
            // FS is the last byte: wait for one more to know whether CR follows.
            self.state = State::InFrame { searched: i };
            return Step::NeedMore;
        }
        Step::Frame(self.end_frame(src, i))
    }

    /// Emits the frame whose `FS` is at `src[fs]` (one byte after it is
    /// available, or the stream has ended).
    fn end_frame(&mut self, src: &mut BytesMut, fs: usize) -> Frame {
        if fs > self.max_frame_bytes {
            // Over the maximum but all in one buffer: the same head and
            // length as if it had arrived in many reads.
            let (head, len) = oversize::take_payload(src, fs);
            return self.end_oversize(src, head, len);
        }
        let frame = Frame::Message(src.split_to(fs));
        self.consume_end(src);
        frame
    }
}

impl Decoder for MllpCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            let step = match std::mem::replace(&mut self.state, State::Outside) {
                State::Outside if self.find_start(src) => Step::Continue,
                State::Outside => Step::NeedMore,
                State::InFrame { searched } => self.step_in_frame(src, searched),
                State::Oversize { head, len } => self.step_oversize(src, head, len),
            };
            match step {
                Step::Frame(frame) => return Ok(Some(frame)),
                Step::NeedMore => return Ok(None),
                Step::Continue => {}
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        // `decode` consumed everything it could, so an FS still in the buffer
        // is its last byte: at EOF it ends the frame.
        let ends_with_fs = src.last() == Some(&FS);
        match std::mem::replace(&mut self.state, State::Outside) {
            State::Outside => Ok(None),
            State::InFrame { .. } if ends_with_fs => Ok(Some(self.end_frame(src, src.len() - 1))),
            State::Oversize { head, len } if ends_with_fs => Ok(Some(self.end_oversize(src, head, len))),
            State::InFrame { .. } => {
                let received = src.len();
                src.clear();
                Err(FrameError::Truncated(received))
            }
            State::Oversize { len, .. } => {
                let received = len.saturating_add(src.len() as u64);
                src.clear();
                Err(FrameError::Truncated(usize::try_from(received).unwrap_or(usize::MAX)))
            }
        }
    }
}

impl Encoder<&[u8]> for MllpCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.reserve(payload.len() + 3);
        dst.put_u8(VT);
        dst.put_slice(payload);
        dst.put_slice(&[FS, CR]);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
