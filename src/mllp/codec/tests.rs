//! Byte-level tests of the MLLP decoder.

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
    // The head is filled up across reads: "more" is part of it.
    let head = Bytes::from_static(b"MSH|0123456789more");
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

/// Decodes `stream` fed in the given pieces, then EOF: frames and stats.
fn decode_split(max: usize, stream: &[u8], cuts: &[usize]) -> (Vec<Frame>, CodecStats) {
    let mut codec = MllpCodec::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        buf.extend_from_slice(&stream[from..cut]);
        from = cut;
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
    }
    while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
        frames.push(frame);
    }
    (frames, codec.stats())
}

/// The head lengths of oversize frames, for a short failure message.
fn heads(frames: &[Frame]) -> String {
    let lens: Vec<_> = frames
        .iter()
        .map(|f| match f {
            Frame::Oversize { head, len } => format!("oversize head {} of {len}", head.len()),
            Frame::Message(m) => format!("message of {}", m.len()),
        })
        .collect();
    lens.join(", ")
}

/// Issue 8, hole 14: with `max_frame_bytes` under 4 KiB the head kept for
/// the AR was whatever the read that crossed the maximum held. Every split
/// of the same stream must give the same frames, heads and counters.
#[test]
fn oversize_head_is_independent_of_read_boundaries() {
    let mut payload = b"MSH|^~\\&|LAB|RJ1|RECORDHUB|LCR|20261121||ORU^R01|BIG1|P|2.5\r".to_vec();
    while payload.len() < OVERSIZE_HEAD_BYTES + 700 {
        payload.extend_from_slice(format!("OBX|{}|NM|K^Potassium||4.1\r", payload.len()).as_bytes());
    }
    let mut stream = vec![VT];
    stream.extend_from_slice(&payload);
    stream.extend_from_slice(&[FS, CR, VT]);
    stream.extend_from_slice(b"MSH|small");
    stream.extend_from_slice(&[FS, CR]);
    for max in [10, 100, 1000, 4095, 4096, 4097] {
        let (want, want_stats) = decode_split(max, &stream, &[]);
        let head = &payload[..OVERSIZE_HEAD_BYTES];
        assert_eq!(want[0], Frame::Oversize { head: Bytes::copy_from_slice(head), len: payload.len() as u64 });
        assert_eq!(want[1], msg(b"MSH|small"));
        // One cut at every position.
        for cut in 0..=stream.len() {
            let (got, stats) = decode_split(max, &stream, &[cut]);
            assert!((&got, stats) == (&want, want_stats), "max {max}, cut at {cut}: {}", heads(&got));
        }
        // Many random cuts (a fixed LCG: reproducible without a crate).
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ max as u64;
        for round in 0..200 {
            let mut cuts: Vec<usize> = (0..1 + round % 40)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    (seed >> 33) as usize % (stream.len() + 1)
                })
                .collect();
            cuts.sort_unstable();
            let (got, stats) = decode_split(max, &stream, &cuts);
            assert!((&got, stats) == (&want, want_stats), "max {max}, cuts {cuts:?}: {}", heads(&got));
        }
    }
}

#[test]
fn oversize_head_shorter_than_4k_is_the_whole_payload_however_split() {
    let stream = b"\x0bMSH|abcdefghij\x1c\r";
    for cut in 0..=stream.len() {
        let (got, _) = decode_split(4, stream, &[cut]);
        assert_eq!(got, vec![Frame::Oversize { head: Bytes::from_static(b"MSH|abcdefghij"), len: 14 }], "cut {cut}");
    }
}

/// Issue 8, hole 12 (codec side): a frame whose `FS` is the last byte is
/// ended on request; the `CR` that arrives later is not junk, and the next
/// frame decodes normally.
#[test]
fn lone_fs_is_ended_on_request_and_a_late_cr_is_swallowed() {
    let mut codec = MllpCodec::new(MAX);
    let mut buf = BytesMut::from(&b"\x0bA\x1c"[..]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(codec.awaiting_cr(&buf));
    assert_eq!(codec.end_lone_fs(&mut buf), Some(msg(b"A")));
    assert!(!codec.in_frame() && buf.is_empty());
    assert_eq!(codec.end_lone_fs(&mut buf), None, "nothing left to end");
    buf.extend_from_slice(b"\r\x0bB\x1c\r");
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg(b"B")));
    let stats = codec.stats();
    assert_eq!((stats.junk_bytes, stats.late_crs, stats.fs_without_cr), (0, 1, 1));
}

#[test]
fn lone_fs_then_next_frame_without_cr_is_not_swallowed() {
    let mut codec = MllpCodec::new(MAX);
    let mut buf = BytesMut::from(&b"\x0bA\x1c"[..]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert_eq!(codec.end_lone_fs(&mut buf), Some(msg(b"A")));
    // Only a CR as the very next byte is swallowed.
    buf.extend_from_slice(b"x\r\x0bB\x1c\r");
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg(b"B")));
    assert_eq!((codec.stats().junk_bytes, codec.stats().late_crs), (2, 0));
}

#[test]
fn lone_fs_ends_an_oversize_frame() {
    let mut codec = MllpCodec::new(2);
    let mut buf = BytesMut::from(&b"\x0babcdef\x1c"[..]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(codec.awaiting_cr(&buf));
    assert_eq!(codec.end_lone_fs(&mut buf), Some(Frame::Oversize { head: Bytes::from_static(b"abcdef"), len: 6 }));
    assert_eq!(codec.stats().oversize_frames, 1);
}

#[test]
fn not_awaiting_cr_mid_frame_or_between_frames() {
    let mut codec = MllpCodec::new(MAX);
    let mut buf = BytesMut::from(&b"\x0bA"[..]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(!codec.awaiting_cr(&buf));
    assert_eq!(codec.end_lone_fs(&mut buf), None);
    buf.extend_from_slice(b"\x1c\r");
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg(b"A")));
    assert!(!codec.awaiting_cr(&buf));
}
