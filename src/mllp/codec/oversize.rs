//! Frames longer than `max_frame_bytes`: never buffered whole. The first
//! [`OVERSIZE_HEAD_BYTES`] payload bytes are kept (so the server can read MSH
//! and answer AR), the rest is counted and dropped as it arrives.
//!
//! The head is filled up across reads until it holds `OVERSIZE_HEAD_BYTES`
//! or the frame ends, so what the AR is built from does not depend on how
//! the sender's bytes were split into reads (issue 8, hole 14: with a
//! maximum under 4 KiB the head used to be whatever the read that crossed
//! the maximum happened to hold).

use bytes::{Buf, Bytes, BytesMut};

use super::{Frame, MllpCodec, State, Step, FS, OVERSIZE_HEAD_BYTES, VT};

/// Consumes the first `n` payload bytes of a frame found to be oversize;
/// returns the head kept and the length consumed. A copy, not `split_to`:
/// a shared `Bytes` would pin the whole (up to max-sized) allocation for as
/// long as the head lives.
pub(super) fn take_payload(src: &mut BytesMut, n: usize) -> (Vec<u8>, u64) {
    let mut head = Vec::with_capacity(OVERSIZE_HEAD_BYTES);
    keep_head(&mut head, &src[..n]);
    src.advance(n);
    (head, n as u64)
}

/// Appends to `head` as much of `bytes` as still fits.
fn keep_head(head: &mut Vec<u8>, bytes: &[u8]) {
    let room = OVERSIZE_HEAD_BYTES.saturating_sub(head.len());
    head.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

impl MllpCodec {
    /// One step in an oversize frame: consume up to the next `VT`/`FS`.
    pub(super) fn step_oversize(&mut self, src: &mut BytesMut, mut head: Vec<u8>, len: u64) -> Step {
        let Some(i) = memchr::memchr2(VT, FS, src) else {
            keep_head(&mut head, src);
            let len = len + src.len() as u64;
            src.clear();
            self.state = State::Oversize { head, len };
            return Step::NeedMore;
        };
        keep_head(&mut head, &src[..i]);
        let len = len + i as u64;
        src.advance(i);
        if src[0] == VT {
            self.stats.resyncs += 1;
            src.advance(1);
            self.state = State::InFrame { searched: 0 };
            return Step::Continue;
        }
        if src.len() == 1 {
            // Only the FS is kept while we wait for the byte after it.
            self.state = State::Oversize { head, len };
            return Step::NeedMore;
        }
        Step::Frame(self.end_oversize(src, head, len))
    }

    /// Emits the oversize frame whose `FS` is at `src[0]`.
    pub(super) fn end_oversize(&mut self, src: &mut BytesMut, head: Vec<u8>, len: u64) -> Frame {
        self.stats.oversize_frames += 1;
        self.consume_end(src);
        Frame::Oversize { head: Bytes::from(head), len }
    }
}
