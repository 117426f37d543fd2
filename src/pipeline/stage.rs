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
/// an error in it either), AE with the rule's code for content. An event a
/// mapping file `ignore`s is no failure: it maps to an ignored `Mapped` and
/// is accepted (AA), journaled and counted, never filed.
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

    /// The govern stage (`src/govern/`): marks what the exclusion rules keep
    /// out of the record, logs it (rule id, control id, seq; never content)
    /// and counts it per rule.
    pub(super) fn govern(
        &self,
        set: &MappingSet,
        rules: &crate::govern::Rules,
        msg: &Message<'_>,
        seq: u64,
        m: &mut Mapped,
    ) {
        // The items' own provenance when there is one: no second copy per message.
        let prov = m.items.first().map(|i| i.provenance.clone());
        let prov = prov.unwrap_or_else(|| crate::mapping::check::provenance(msg, seq));
        crate::govern::govern(rules, set, &self.opts.policy.parse, msg, &prov, m);
        crate::govern::note_suppressed(self.metrics(), m, seq);
    }

    /// Logs and counts an accepted message whose event the mappings ignore
    /// (once it is committed, so the log never claims what a failed commit undid).
    pub(super) fn note_ignored(&self, s: &Staged, seq: u64) {
        let e = &s.envelope.inbound;
        let event = crate::events::MessageIgnored {
            control_id: &e.control_id,
            seq,
            msg_type: &s.envelope.message_type,
            sending_app: &e.sending_app,
            sending_facility: &e.sending_facility,
        };
        event.emit(self.metrics());
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Inbound, Pipeline};
    use crate::metrics::{JournalSize, Scrape};

    const A09: &[u8] = b"MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^A09^ADT_A09|IGN1|P|2.4\r\
EVN|A09|20261121082900\rPID|1||9434765919^^^NHS^NH~RJ1-123456^^^RJ1^MR||O'BRIEN^SIOBHAN\r\
PV1|1|I|XRAY^^^RJ1||||||||||||||||V000123456\r";
    /// An ORU event no mapping file takes.
    const ORU_R99: &[u8] = b"MSH|^~\\&|LAB|RJ1|RECORDHUB|LCR|20261121083000||ORU^R99|R30|P|2.4\r\
PID|1||9434765919^^^NHS^NH\rOBR|1\r";

    fn open(dir: &Path) -> Pipeline {
        let opts = crate::pipeline::testing::options(dir, crate::fault::Faults::none());
        Pipeline::open(opts).unwrap().0
    }

    fn ignored_total(p: &Pipeline) -> String {
        let scrape = Scrape {
            journal: JournalSize::default(),
            index_lag: 0,
            unindexed: Some(0),
            refused: 0,
            connections: Default::default(),
            log: Default::default(),
            charset_fallbacks: 0,
            health: vec![],
            ready: vec![],
            cluster: None,
        };
        let text = p.metrics().render(&scrape);
        text.lines().find(|l| l.starts_with("recordhub_messages_ignored_total")).unwrap_or_default().to_string()
    }

    /// Issue 9: events the PAS sends every day (A09 …) were refused AR 201 and
    /// filled the sender's queue. An event the mappings `ignore` is accepted,
    /// journaled and counted, and files nothing; a type nothing takes is still AR 201.
    #[test]
    fn an_ignored_event_is_accepted_journaled_counted_and_not_filed() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = open(dir.path());
        let out = p.process(&[Inbound::message(A09, "test", 0), Inbound::message(ORU_R99, "test", 0)]);
        assert_eq!(out[0].code.as_str(), "AA", "{:?}", out[0].problem);
        assert!(out[0].seq.is_some(), "journaled");
        let ack = String::from_utf8_lossy(out[0].ack.as_deref().unwrap_or_default()).into_owned();
        assert!(ack.contains("MSA|AA|IGN1"), "{ack}");
        assert_eq!(out[1].code.as_str(), "AR");
        assert_eq!(out[1].problem.as_ref().map(|(_, p)| p.code), Some(201));
        assert_eq!(ignored_total(&p), "recordhub_messages_ignored_total 1");
        p.sync_index();
        let nhs = crate::hl7::NhsNumber::parse("9434765919").unwrap();
        assert!(p.store().record(&nhs).unwrap().is_empty(), "an ignored event files nothing");
        p.shutdown().unwrap();
    }
}
