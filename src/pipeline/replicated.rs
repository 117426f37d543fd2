//! `ack_after = "replicated"` (issue 13): an AA/CA the stream's quorum has
//! not acknowledged in time becomes AR/CR with ERR-3 = 207.
//!
//! The worker (`src/worker.rs`) commits a batch locally, then waits for the
//! publisher (`cluster::publish`) to report the batch's highest accepted seq
//! in the stream. When it cannot (no quorum, NATS down, fenced, timeout),
//! every accepted answer of the batch is re-rendered here as a reject.
//!
//! What that means for the sender: the entry stays in the local journal as
//! accepted and is published once the quorum returns. A resend is an
//! identical retransmission, answered from the original's AA by the dedup
//! table, and the worker holds that answer to the same rule (it waits for
//! the original's seq): so the sender gets AA exactly when the stream has
//! the entry, and never twice a stored copy.

use super::*;
use crate::ack::Problem;

impl Pipeline {
    /// The highest journal seq durably committed (what the publisher may send).
    pub fn committed_seq(&self) -> u64 {
        self.journal.committed_seq()
    }

    /// Turns an accepted `o` (whose frame was `raw`) into AR/CR 207 because
    /// the cluster's quorum did not acknowledge it: `why` goes to the log, the
    /// ACK says only that it was not replicated and to resend. Outcomes not
    /// accepted are left as they are.
    pub fn not_replicated(&self, o: &mut Outcome, raw: &[u8], why: &str, timeout: std::time::Duration) {
        if !o.code.is_accept() {
            return;
        }
        // The outcome does not keep the ack mode; the frame has it (MSH-15/16).
        let mode = crate::intake::inspect(raw, &self.opts.policy).mode;
        let text = format!("not replicated to the cluster's quorum within {} s; resend", timeout.as_secs_f32());
        let verdict = Verdict::Rejected(Problem::new(207, text));
        let code = mode.code(&verdict);
        let control_id = format!("RHE{}", now_ms());
        let stamp = ack::hl7_timestamp(now_ms());
        let me = ack::Sender {
            application: &self.opts.application,
            facility: &self.opts.facility,
            control_id: &control_id,
            timestamp: &stamp,
        };
        o.ack = mode.sends(code).then(|| ack::build(&o.envelope.inbound, &me, code, &verdict));
        o.code = code;
        o.problem = Some((Stage::Store, Problem::new(207, format!("not replicated: {why}"))));
    }
}
