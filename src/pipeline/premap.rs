//! Large messages are mapped before they reach the pipeline thread, so one
//! 15 MB result with 240,000 observations cannot hold up every other
//! sender's ACK while it maps.
//!
//! The pipeline thread is the journal's only writer and must stay that way
//! (one writer keeps seqs in order and group commit simple). What it does
//! not have to do is map: for a frame of [`PREMAP_BYTES`] or more, the
//! connection's task maps it on tokio's blocking pool first, in parallel
//! with the pipeline thread, and the pipeline then only journals it. Mapping
//! happens before the journal seq is known; `Mapped::assign_seq` makes the
//! result identical to mapping with that seq. If a mapping reload lands in
//! between, the pipeline maps again with the batch's set, so a batch still
//! uses one set throughout.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::ack::Verdict;
use crate::intake::{self, Policy};
use crate::mapping::{MapError, MappingSet};
use crate::record::Mapped;

use super::Mappings;

/// Frames at least this large are mapped off the pipeline thread. A typical
/// ADT is 1 KB and an ORU with 30 results 4 KB: only exceptional messages
/// pay the extra parse.
pub const PREMAP_BYTES: usize = 64 * 1024;

/// Maps large frames ahead of the pipeline (on a blocking-pool thread).
#[derive(Debug, Clone)]
pub struct Premapper {
    mappings: Mappings,
    policy: Policy,
}

/// A mapping result waiting for its journal seq.
pub struct Premapped {
    set: Arc<MappingSet>,
    result: Cell<Option<Result<Mapped, MapError>>>,
}

impl std::fmt::Debug for Premapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Premapped")
    }
}

impl Premapper {
    pub fn new(mappings: Mappings, policy: Policy) -> Premapper {
        Premapper { mappings, policy }
    }

    /// Whether a frame of `len` bytes should be mapped ahead.
    pub fn wants(&self, len: usize) -> bool {
        len >= PREMAP_BYTES
    }

    /// Parses and maps `raw` with the mappings in force. `None` when intake
    /// rejects it or mapping panics: the pipeline then decides (and logs) as
    /// for any other frame.
    pub fn premap(&self, raw: &[u8]) -> Option<Premapped> {
        let insp = intake::inspect(raw, &self.policy);
        if insp.verdict != Verdict::Accepted {
            return None;
        }
        let msg = insp.message?;
        let set = self.mappings.current();
        let prov = crate::mapping::check::provenance(&msg, 0);
        let result = catch_unwind(AssertUnwindSafe(|| set.apply(&msg, &prov))).ok()?;
        Some(Premapped { set, result: Cell::new(Some(result)) })
    }
}

impl Premapped {
    /// The result, as if mapped with `set` and `seq`; `None` when it was
    /// mapped with another set (a reload in between) or already taken.
    pub(super) fn take(&self, set: &Arc<MappingSet>, seq: u64) -> Option<Result<Mapped, MapError>> {
        if !Arc::ptr_eq(&self.set, set) {
            return None;
        }
        let mut result = self.result.take()?;
        if let Ok(m) = &mut result {
            m.assign_seq(seq);
        }
        Some(result)
    }
}
