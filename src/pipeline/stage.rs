//! Intake and mapping for one frame: the verdict before the journal.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::ack::{self, AckCode, Mode, Problem, Verdict};
use crate::hl7::Message;
use crate::intake;
use crate::mapping::{MapError, MappingSet};
use crate::record::Mapped;
use crate::store::dedup::Fingerprint;
use crate::store::DedupKey;

use super::{now_ms, Frame, Inbound, Outcome, Pipeline, Stage};

/// A frame after intake (and mapping, when it got that far).
pub(super) struct Staged {
    pub(super) envelope: intake::Envelope,
    pub(super) verdict: Verdict,
    pub(super) stage: Stage,
    pub(super) mode: Mode,
    pub(super) dedup: Option<(DedupKey, Fingerprint)>,
    pub(super) mapped: Option<Mapped>,
    pub(super) bytes: usize,
}

impl Staged {
    pub(super) fn code(&self) -> AckCode {
        self.mode.code(&self.verdict)
    }

    pub(super) fn problem(&self) -> Option<(Stage, Problem)> {
        match &self.verdict {
            Verdict::Accepted => None,
            Verdict::Error(p) | Verdict::Rejected(p) => Some((self.stage, p.clone())),
        }
    }
}

/// The verdict for a mapping failure: AR 201 when no mapping handles the
/// event (nothing the sender can fix by resending the same message, but not
/// an error in it either), AE with the rule's code for content.
pub(super) fn verdict_of(e: MapError) -> Verdict {
    match e {
        MapError::NoMapping { message_type } => {
            let text = format!("no mapping handles {message_type}");
            Verdict::Rejected(Problem::new(201, text).at(ack::Location::field("MSH", 1, 9)))
        }
        MapError::Content(p) => Verdict::Error(p),
    }
}

impl Pipeline {
    /// Intake for one frame: its envelope, verdict and dedup identity, and
    /// the parsed message when it passed intake and still has to be mapped.
    pub(super) fn stage<'b>(&self, inbound: &Inbound<'b>) -> (Staged, Option<Message<'b>>) {
        match inbound.frame {
            Frame::Message(raw) => {
                let mut insp = intake::inspect(raw, &self.opts.policy);
                if insp.verdict == Verdict::Accepted {
                    // The listener's sender allow-list (MSH-3/MSH-4 per connection).
                    if let Some(refused) = crate::mllp::allow::verdict(inbound.sender, &insp.envelope) {
                        insp.verdict = refused;
                    }
                }
                let accepted = insp.verdict == Verdict::Accepted;
                let dedup = accepted.then(|| {
                    let e = &insp.envelope.inbound;
                    (DedupKey::new(&e.sending_app, &e.sending_facility, &e.control_id), Fingerprint::of(raw))
                });
                let msg = if accepted { insp.message } else { None };
                let s = Staged {
                    envelope: insp.envelope,
                    verdict: insp.verdict,
                    stage: Stage::Parse,
                    mode: insp.mode,
                    dedup,
                    mapped: None,
                    bytes: raw.len(),
                };
                (s, msg)
            }
            Frame::Oversize { head, len } => {
                let insp = intake::inspect(head, &self.opts.policy);
                let text = format!("message of {len} bytes exceeds max_frame_bytes; it was discarded");
                let verdict = Verdict::Rejected(Problem::new(207, text));
                let s = Staged {
                    envelope: insp.envelope,
                    verdict,
                    stage: Stage::Frame,
                    mode: insp.mode,
                    dedup: None,
                    mapped: None,
                    bytes: len as usize,
                };
                (s, None)
            }
        }
    }

    /// The mapping stage: AR 201 when no mapping handles the event, AE with
    /// the rule's code (101/102/103) when content breaks a `required` rule.
    ///
    /// A panic inside mapping is a bug that this message's content triggers:
    /// it is caught here and the message answered AE 207 (and journaled, so
    /// it can be re-processed once the bug is fixed). Letting it kill the
    /// pipeline would restart the engine into the same message, resent by
    /// its sender, forever.
    pub(super) fn map(&self, set: &MappingSet, msg: &Message<'_>, s: &Staged) -> Result<Mapped, Verdict> {
        // The seq this message gets if it is journaled (the next append), so
        // `{seq}` templates such as MDM's `journal:{seq}` body reference are
        // right from the start and identical on replay.
        let prov = crate::mapping::check::provenance(msg, self.journal.next_seq());
        let faults = &self.opts.faults;
        let result = catch_unwind(AssertUnwindSafe(|| {
            faults.hit("pipeline.map");
            set.apply(msg, &prov)
        }));
        match result {
            Ok(r) => r.map_err(verdict_of),
            Err(payload) => {
                let e = &s.envelope.inbound;
                tracing::error!(control_id = %e.control_id, msg_type = %s.envelope.message_type,
                    sending_app = %e.sending_app, sending_facility = %e.sending_facility,
                    panic = %crate::supervise::panic_text(payload.as_ref()),
                    "mapping panicked on this message (a recordhub bug): answered AE 207 and journaled; the engine goes on");
                let text = "internal error while mapping this message; it is kept in the journal for re-processing";
                Err(Verdict::Error(Problem::new(207, text)))
            }
        }
    }

    /// The ACK bytes for a staged frame, with our control id `RH<seq>`.
    pub(super) fn render_ack(&self, s: &Staged, seq: u64, stamp: &str) -> Vec<u8> {
        let control_id = format!("RH{seq}");
        let me = ack::Sender {
            application: &self.opts.application,
            facility: &self.opts.facility,
            control_id: &control_id,
            timestamp: stamp,
        };
        ack::build(&s.envelope.inbound, &me, s.code(), &s.verdict)
    }

    /// AR/CR 207: the engine could not store the message; the sender should retry.
    pub(super) fn store_failure(&self, s: Staged, stamp: &str, why: &str) -> Outcome {
        let verdict = Verdict::Rejected(Problem::new(207, "message could not be stored; retry later"));
        let code = s.mode.code(&verdict);
        let control_id = format!("RHE{}", now_ms());
        let me = ack::Sender {
            application: &self.opts.application,
            facility: &self.opts.facility,
            control_id: &control_id,
            timestamp: stamp,
        };
        let ack = s.mode.sends(code).then(|| ack::build(&s.envelope.inbound, &me, code, &verdict));
        let problem = Some((Stage::Store, Problem::new(207, why)));
        Outcome { ack, code, envelope: s.envelope, seq: None, duplicate: false, problem, bytes: s.bytes }
    }
}
