//! The properties fuzzing checks, shared by the cargo-fuzz targets
//! (`fuzz_targets/*.rs`) and the bounded, seeded mutation tests that run on
//! stable in `cargo test` (`tests/fuzz_stable.rs`), both through `#[path]`.
//!
//! Each function takes arbitrary bytes and panics only on a real finding:
//! a panic inside recordhub, or a broken promise (a frame without an answer,
//! an ACK that does not say what the outcome says).

#![allow(dead_code)]

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use recordhub::ack::AckCode;
use recordhub::hl7::Message;
use recordhub::intake::{inspect, Policy};
use recordhub::mllp::client::summarize_ack;
use recordhub::mllp::codec::{Frame, MllpCodec};
use recordhub::pipeline::{Inbound, Outcome, Pipeline};

/// The MLLP codec over `data` fed in chunks whose sizes the first byte
/// picks, with a small maximum so the oversize path runs too: no panic, no
/// payload longer than the maximum, never more payload than input.
pub fn mllp_codec(data: &[u8]) {
    let Some((&knob, data)) = data.split_first() else { return };
    let chunk = 1 + usize::from(knob % 17);
    let max = 16 + usize::from(knob) * 4;
    let mut codec = MllpCodec::new(max);
    let mut buf = BytesMut::new();
    let mut payload = 0usize;
    let mut take = |frame: Frame| match frame {
        Frame::Message(m) => {
            assert!(m.len() <= max, "a {}-byte frame passed a {max}-byte maximum", m.len());
            payload += m.len();
        }
        Frame::Oversize { head, len } => {
            assert!(len > max as u64 && head.len() as u64 <= len, "oversize {len} with max {max}");
        }
    };
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            take(frame);
        }
    }
    while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
        take(frame);
    }
    assert!(payload <= data.len());
}

/// The HL7 parser and intake over `data`: no panic, and every value of a
/// parsed message can be read (escapes and charset decoded).
pub fn hl7_parse(data: &[u8]) {
    let _ = inspect(data, &Policy::default());
    let Ok(msg) = Message::parse(data) else { return };
    let _ = (msg.delimiters(), msg.charset(), msg.header().field(10).text());
    for seg in msg.segments() {
        let _ = (seg.name(), seg.field_count());
        for field in seg.fields() {
            for rep in field.repetitions() {
                let _ = rep.text();
                for comp in rep.components() {
                    for sub in comp.subcomponents() {
                        let _ = sub.text();
                    }
                }
            }
        }
    }
}

/// The mapping path language (`PID-3[5=NH].1`): no panic, and an error
/// points inside the text.
pub fn mapping_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = recordhub::mapping::path::parse(text) {
        assert!(e.offset <= text.len(), "error offset {} past the end of {text:?}", e.offset);
    }
}

/// A whole engine's synchronous pipeline over a temporary data directory.
pub struct PipelineHarness {
    pipeline: Pipeline,
    // Dropped after the pipeline (field order).
    _dir: tempfile::TempDir,
    pub frames: u64,
    /// Frames answered AA/CA, and AE/AR/CE/CR.
    pub accepted: u64,
    pub naks: u64,
}

impl PipelineHarness {
    /// The shipped mappings and exclusion rules, default policy.
    pub fn new() -> PipelineHarness {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cfg = recordhub::config::Config::default();
        cfg.store.data_dir = dir.path().to_path_buf();
        cfg.mapping.dir = mappings_dir();
        let mappings = recordhub::serve::load_mappings(&cfg).expect("the shipped mappings load");
        let (pipeline, _) =
            Pipeline::open(recordhub::serve::pipeline_options(&cfg, mappings)).expect("the pipeline opens");
        PipelineHarness { pipeline, _dir: dir, frames: 0, accepted: 0, naks: 0 }
    }

    /// Processes `frames` as one batch: one outcome per frame, each with the
    /// ACK its MSH-15 asks for (and no other), whose MSA-1 is the outcome's code.
    pub fn check(&mut self, frames: &[&[u8]]) {
        let batch: Vec<Inbound<'_>> = frames.iter().map(|f| Inbound::message(f, "fuzz", 0)).collect();
        let outcomes = self.pipeline.process(&batch);
        assert_eq!(outcomes.len(), frames.len(), "one outcome per frame");
        for (raw, o) in frames.iter().zip(&outcomes) {
            check_outcome(raw, o);
            if o.code.is_accept() {
                self.accepted += 1;
            } else {
                self.naks += 1;
            }
        }
        self.frames += frames.len() as u64;
    }
}

impl Drop for PipelineHarness {
    fn drop(&mut self) {
        let _ = self.pipeline.shutdown();
    }
}

/// The shipped mappings: beside the crate that includes this file (the
/// recordhub tests) or one level up (the fuzz crate in fuzz/).
fn mappings_dir() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let beside = here.join("mappings");
    if beside.is_dir() {
        beside
    } else {
        here.join("../mappings")
    }
}

fn check_outcome(raw: &[u8], o: &Outcome) {
    let wants_ack = inspect(raw, &Policy::default()).mode.sends(o.code);
    assert_eq!(o.ack.is_some(), wants_ack, "an ACK exactly when MSH-15 asks for one ({:?})", o.code);
    let Some(ack) = &o.ack else { return };
    let summary = summarize_ack(ack).unwrap_or_else(|| panic!("unreadable ACK {:?}", String::from_utf8_lossy(ack)));
    assert_eq!(summary.code, o.code.as_str(), "MSA-1 is the outcome's code");
    if !matches!(o.code, AckCode::AA | AckCode::CA) {
        assert!(o.problem.is_some(), "a NAK says why");
    }
}
