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
//! - `FS` not followed by `CR` still ends the frame (counted);
//! - a frame larger than `max_frame_bytes` is never buffered whole: its first
//!   [`OVERSIZE_HEAD_BYTES`] are kept so the caller can read MSH and reject it,
//!   the rest is discarded as it arrives.
//!
//! It does not look inside the payload (no HL7 parsing) and does not decide
//! what to answer; that is the server's and the ACK builder's job.

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
    /// Past the maximum: only `head` is kept, `len` counts every payload byte
    /// already discarded (including those in `head`).
    Oversize { head: Bytes, len: u64 },
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
}

impl MllpCodec {
    /// A codec that accepts payloads of at most `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        MllpCodec { max_frame_bytes, state: State::Outside, stats: CodecStats::default() }
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

    /// Skips to the next `VT`. Returns false when the buffer holds none.
    fn find_start(&mut self, src: &mut BytesMut) -> bool {
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
                self.start_oversize(src);
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
        let frame = if fs > self.max_frame_bytes {
            self.stats.oversize_frames += 1;
            let head = Bytes::copy_from_slice(&src[..fs.min(OVERSIZE_HEAD_BYTES)]);
            src.advance(fs);
            Frame::Oversize { head, len: fs as u64 }
        } else {
            Frame::Message(src.split_to(fs))
        };
        self.consume_end(src);
        frame
    }

    /// Keeps the head of an oversize payload and drops the rest of the buffer.
    fn start_oversize(&mut self, src: &mut BytesMut) {
        // A copy, not `split_to`: a shared `Bytes` would pin the whole
        // (up to max-sized) allocation for as long as the head lives.
        let head = Bytes::copy_from_slice(&src[..src.len().min(OVERSIZE_HEAD_BYTES)]);
        let len = src.len() as u64;
        src.clear();
        self.state = State::Oversize { head, len };
    }

    /// One step in an oversize frame: discard up to the next `VT`/`FS`.
    fn step_oversize(&mut self, src: &mut BytesMut, head: Bytes, len: u64) -> Step {
        let Some(i) = memchr::memchr2(VT, FS, src) else {
            let len = len + src.len() as u64;
            src.clear();
            self.state = State::Oversize { head, len };
            return Step::NeedMore;
        };
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
        self.stats.oversize_frames += 1;
        self.consume_end(src);
        Step::Frame(Frame::Oversize { head, len })
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
            State::Oversize { head, len } if ends_with_fs => {
                self.stats.oversize_frames += 1;
                self.consume_end(src);
                Ok(Some(Frame::Oversize { head, len }))
            }
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
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    /// Decodes everything in `input` (one read), then signals EOF.
    fn decode_all(codec: &mut MllpCodec, input: &[u8]) -> Result<Vec<Frame>, FrameError> {
        let mut buf = BytesMut::from(input);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(&mut buf)? {
            frames.push(frame);
        }
        while let Some(frame) = codec.decode_eof(&mut buf)? {
            frames.push(frame);
        }
        Ok(frames)
    }

    fn msg(payload: &[u8]) -> Frame {
        Frame::Message(BytesMut::from(payload))
    }

    #[test]
    fn one_frame() {
        let mut codec = MllpCodec::new(MAX);
        let frames = decode_all(&mut codec, b"\x0bMSH|a\r\x1c\r").unwrap();
        assert_eq!(frames, vec![msg(b"MSH|a\r")]);
        assert_eq!(codec.stats(), CodecStats::default());
        assert!(!codec.in_frame());
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut codec = MllpCodec::new(MAX);
        let frames = decode_all(&mut codec, b"\x0bA\x1c\r\x0bB\x1c\r\x0bC\x1c\r").unwrap();
        assert_eq!(frames, vec![msg(b"A"), msg(b"B"), msg(b"C")]);
    }

    #[test]
    fn empty_payload_is_a_frame() {
        let mut codec = MllpCodec::new(MAX);
        assert_eq!(decode_all(&mut codec, b"\x0b\x1c\r").unwrap(), vec![msg(b"")]);
    }

    #[test]
    fn split_reads_at_every_byte_boundary() {
        let stream: &[u8] = b"\x0bMSH|first\r\x1c\r\x0bMSH|second\rPID|1\r\x1c\r";
        let expected = vec![msg(b"MSH|first\r"), msg(b"MSH|second\rPID|1\r")];
        for a in 0..=stream.len() {
            for b in a..=stream.len() {
                let mut codec = MllpCodec::new(MAX);
                let mut buf = BytesMut::new();
                let mut frames = Vec::new();
                for part in [&stream[..a], &stream[a..b], &stream[b..]] {
                    buf.extend_from_slice(part);
                    while let Some(frame) = codec.decode(&mut buf).unwrap() {
                        frames.push(frame);
                    }
                }
                assert!(codec.decode_eof(&mut buf).unwrap().is_none(), "split {a}/{b}");
                assert_eq!(frames, expected, "split {a}/{b}");
                assert_eq!(codec.stats(), CodecStats::default(), "split {a}/{b}");
            }
        }
    }

    #[test]
    fn byte_at_a_time_does_not_rescan() {
        // Not a timing test: checks the remembered search position survives
        // many one-byte reads and still finds the end.
        let mut payload = vec![b'x'; 10_000];
        payload.push(b'\r');
        let mut stream = vec![VT];
        stream.extend_from_slice(&payload);
        stream.extend_from_slice(&[FS, CR]);
        let mut codec = MllpCodec::new(MAX);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in stream {
            buf.put_u8(byte);
            if let Some(frame) = codec.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
            if let State::InFrame { searched } = codec.state {
                assert!(searched + 1 >= buf.len(), "searched {searched} of {}", buf.len());
            }
        }
        assert_eq!(frames, vec![msg(&payload)]);
    }

    #[test]
    fn junk_before_and_between_frames_is_dropped_and_counted() {
        let mut codec = MllpCodec::new(MAX);
        let frames = decode_all(&mut codec, b"junk\x0bA\x1c\r\n\n\x0bB\x1c\rtail").unwrap();
        assert_eq!(frames, vec![msg(b"A"), msg(b"B")]);
        assert_eq!(codec.stats().junk_bytes, 4 + 2 + 4);
    }

    #[test]
    fn junk_only_is_not_an_error() {
        let mut codec = MllpCodec::new(MAX);
        assert!(decode_all(&mut codec, b"GET / HTTP/1.1\r\n\r\n").unwrap().is_empty());
        assert_eq!(codec.stats().junk_bytes, 18);
    }

    #[test]
    fn vt_inside_a_frame_resyncs() {
        let mut codec = MllpCodec::new(MAX);
        let frames = decode_all(&mut codec, b"\x0bpartial\x0bwhole\x1c\r").unwrap();
        assert_eq!(frames, vec![msg(b"whole")]);
        assert_eq!(codec.stats().resyncs, 1);
    }

    #[test]
    fn vt_inside_a_frame_resyncs_across_reads() {
        let mut codec = MllpCodec::new(MAX);
        let mut buf = BytesMut::from(&b"\x0bpart"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(codec.in_frame());
        buf.extend_from_slice(b"ial\x0bwhole\x1c\r");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg(b"whole")));
        assert_eq!(codec.stats().resyncs, 1);
    }

    #[test]
    fn fs_without_cr_ends_the_frame() {
        let mut codec = MllpCodec::new(MAX);
        let frames = decode_all(&mut codec, b"\x0bA\x1c\x0bB\x1cX\x0bC\x1c\r").unwrap();
        assert_eq!(frames, vec![msg(b"A"), msg(b"B"), msg(b"C")]);
        assert_eq!(codec.stats().fs_without_cr, 2);
        // The X after B's FS is outside a frame.
        assert_eq!(codec.stats().junk_bytes, 1);
    }

    #[test]
    fn fs_as_last_byte_waits_for_the_next() {
        let mut codec = MllpCodec::new(MAX);
        let mut buf = BytesMut::from(&b"\x0bA\x1c"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(codec.in_frame());
        buf.put_u8(CR);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg(b"A")));
        assert_eq!(codec.stats().fs_without_cr, 0);
        assert!(buf.is_empty());
    }

    #[test]
    fn fs_at_eof_ends_the_frame() {
        let mut codec = MllpCodec::new(MAX);
        assert_eq!(decode_all(&mut codec, b"\x0bA\x1c").unwrap(), vec![msg(b"A")]);
        assert_eq!(codec.stats().fs_without_cr, 1);
    }

    #[test]
    fn clean_eof_between_frames() {
        let mut codec = MllpCodec::new(MAX);
        let mut buf = BytesMut::new();
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    }

    #[test]
    fn eof_mid_frame_is_truncated() {
        let mut codec = MllpCodec::new(MAX);
        let err = decode_all(&mut codec, b"\x0bMSH|abc").unwrap_err();
        assert!(matches!(err, FrameError::Truncated(7)), "{err:?}");
        assert_eq!(err.to_string(), "connection closed in the middle of a frame (7 bytes received)");
        assert!(!codec.in_frame());
    }

    #[test]
    fn frame_of_exactly_max_is_accepted() {
        let mut codec = MllpCodec::new(4);
        let frames = decode_all(&mut codec, b"\x0babcd\x1c\r\x0babcde\x1c\r").unwrap();
        assert_eq!(frames, vec![msg(b"abcd"), Frame::Oversize { head: Bytes::from_static(b"abcde"), len: 5 }]);
        assert_eq!(codec.stats().oversize_frames, 1);
    }

    #[test]
    fn oversize_frame_then_normal_frame() {
        let mut codec = MllpCodec::new(8);
        let mut buf = BytesMut::from(&b"\x0bMSH|0123456789"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.is_empty(), "oversize bytes are discarded");
        buf.extend_from_slice(b"more\x1c");
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"\r\x0bok\x1c\r");
        let head = Bytes::from_static(b"MSH|0123456789");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::Oversize { head, len: 18 }));
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg(b"ok")));
        assert_eq!(codec.stats().oversize_frames, 1);
    }

    #[test]
    fn oversize_frame_at_eof_is_truncated() {
        let mut codec = MllpCodec::new(2);
        let err = decode_all(&mut codec, b"\x0babcdef").unwrap_err();
        assert!(matches!(err, FrameError::Truncated(6)), "{err:?}");
    }

    #[test]
    fn vt_inside_an_oversize_frame_resyncs() {
        let mut codec = MllpCodec::new(2);
        let frames = decode_all(&mut codec, b"\x0babcdef\x0bok\x1c\r").unwrap();
        assert_eq!(frames, vec![msg(b"ok")]);
        assert_eq!(codec.stats().resyncs, 1);
        assert_eq!(codec.stats().oversize_frames, 0);
    }

    #[test]
    fn ten_megabyte_frame_in_64k_chunks_stays_bounded() {
        const CHUNK: usize = 64 * 1024;
        const BOUND: usize = MAX + CHUNK + OVERSIZE_HEAD_BYTES;
        let len = 10 * 1024 * 1024;
        let mut stream = Vec::with_capacity(len + 16);
        stream.push(VT);
        stream.extend_from_slice(b"MSH|^~\\&|");
        stream.resize(len + 1, b'x');
        stream.extend_from_slice(&[FS, CR, VT, b'n', FS, CR]);

        let mut codec = MllpCodec::new(MAX);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut peak = 0;
        for chunk in stream.chunks(CHUNK) {
            buf.extend_from_slice(chunk);
            peak = peak.max(buf.len());
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
            peak = peak.max(buf.len());
            if let State::Oversize { head, .. } = &codec.state {
                assert!(buf.len() <= 1, "discarded bytes are not buffered");
                assert_eq!(head.len(), OVERSIZE_HEAD_BYTES);
            }
        }
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
        assert!(peak <= BOUND, "buffer reached {peak} bytes");
        assert_eq!(frames.len(), 2);
        match &frames[0] {
            Frame::Oversize { head, len: got } => {
                assert_eq!(*got, len as u64);
                assert_eq!(head.len(), OVERSIZE_HEAD_BYTES);
                assert!(head.starts_with(b"MSH|^~\\&|"));
            }
            other => panic!("expected oversize, got {other:?}"),
        }
        assert_eq!(frames[1], msg(b"n"));
        assert_eq!(codec.stats().oversize_frames, 1);
    }

    #[test]
    fn encoder_wraps_the_payload() {
        let mut codec = MllpCodec::new(MAX);
        let mut dst = BytesMut::new();
        codec.encode(&b"MSH|x\r"[..], &mut dst).unwrap();
        assert_eq!(&dst[..], b"\x0bMSH|x\r\x1c\r");
        assert_eq!(decode_all(&mut codec, &dst).unwrap(), vec![msg(b"MSH|x\r")]);
    }
}
