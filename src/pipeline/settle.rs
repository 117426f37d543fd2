//! Settling a batch: once the commit has decided, every slot becomes its
//! outcome (ACK), and what was committed goes to the index writer.

use std::collections::HashMap;

use super::*;

impl Pipeline {
    /// Turns every slot into its outcome once the commit has decided, and
    /// hands what was committed to the index writer.
    pub(super) fn settle(
        &mut self,
        slots: Vec<Slot>,
        mut pending: Vec<Option<Pending>>,
        failed: Option<&str>,
        stamp: &str,
    ) -> Vec<Outcome> {
        // Copies answer with their original's seq and ACK: note those (only
        // those) before the originals are consumed.
        let originals: HashMap<usize, (u64, Vec<u8>)> = slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::CopyOf(i, _) => pending[*i].as_ref().map(|p| (*i, (p.seq, p.ack.clone()))),
                _ => None,
            })
            .collect();
        let mut work = Work { last_seq: 0, dedup: Vec::new(), filings: Vec::with_capacity(pending.len()) };
        let mut outcomes = Vec::with_capacity(slots.len());
        for slot in slots {
            let outcome = match (slot, failed) {
                (Slot::Done(o), _) => o,
                (Slot::Journaled(i), None) => match pending[i].take() {
                    Some(p) => self.committed(p, &mut work),
                    None => unreachable_outcome(),
                },
                (Slot::Journaled(i), Some(why)) => match pending[i].take() {
                    Some(p) => self.store_failure(p.s, stamp, why),
                    None => unreachable_outcome(),
                },
                (Slot::CopyOf(i, s), None) => match originals.get(&i) {
                    Some((seq, ack)) => duplicate(s, *seq, ack.clone()),
                    None => unreachable_outcome(),
                },
                (Slot::CopyOf(_, s), Some(why)) => self.store_failure(s, stamp, why),
            };
            outcomes.push(outcome);
        }
        if work.last_seq > 0 {
            self.indexer.submit(work);
        }
        outcomes
    }

    /// The outcome of a committed entry; its dedup record and items join the
    /// index writer's work.
    fn committed(&mut self, p: Pending, work: &mut Work) -> Outcome {
        let Pending { mut s, seq, ack } = p;
        work.last_seq = seq;
        let code = s.code();
        if let (Verdict::Accepted, Some((key, fp))) = (&s.verdict, s.dedup.take()) {
            match s.mapped.take() {
                // An event the mappings ignore: journaled and answered AA, never filed.
                Some(mapped) if mapped.ignored => self.note_ignored(&s, seq),
                Some(mapped) => work.filings.push(Filing { seq, mapped }),
                None => {}
            }
            let rec = DedupRecord { fingerprint: fp, seq, ack: ack.clone() };
            self.recent.insert(key.clone(), rec.clone());
            work.dedup.push((key, rec));
        }
        let problem = s.problem();
        let ack = s.mode.sends(code).then_some(ack);
        Outcome { ack, code, envelope: s.envelope, seq: Some(seq), duplicate: false, problem, bytes: s.bytes }
    }
}

/// The answer to an identical retransmission: the original's ACK, byte for byte.
pub(super) fn duplicate(s: Staged, seq: u64, ack: Vec<u8>) -> Outcome {
    let code = s.mode.code(&Verdict::Accepted);
    let ack = (!ack.is_empty()).then_some(ack);
    Outcome { ack, code, envelope: s.envelope, seq: Some(seq), duplicate: true, problem: None, bytes: s.bytes }
}

/// Each pending entry is settled by exactly one slot, and every copy's
/// original is noted before any is consumed; reaching this is a bug.
#[cold]
fn unreachable_outcome() -> Outcome {
    unreachable!("a journaled frame settled twice")
}
