//! Events written before the hash chain, copied into it once, oldest first,
//! the first time the log is opened with the index (`Options::legacy`: the
//! server and `recordhub record --data`), so the chain holds the whole
//! history of views. The file `audit/MIGRATED` marks it done (an open
//! without the index, such as `journal --show`, may have appended first:
//! then the old events follow it in the chain, with their own `at_ms`):
//!
//! - the index's sled tree `audit` (before issue 11): `{at_ms, user,
//!   nhs_number, action, via, items}` with `items` a count; copied with
//!   outcome `migrated` and the count in `reason`;
//! - `audit/audit.jsonl`, the one-file log of the skeleton that preceded
//!   the chain: copied as they are.
//!
//! Both sources are left untouched (the sled tree is never written again).

use std::io::{self, BufRead};
use std::path::Path;

use serde::Deserialize;

use super::writer::Chain;
use super::{AuditEvent, Options};

/// Events per commit while migrating.
const CHUNK: usize = 4096;

/// An audit event as the index kept it before issue 11.
#[derive(Deserialize)]
struct OldEvent {
    at_ms: u64,
    user: String,
    nhs_number: String,
    action: String,
    via: String,
    items: usize,
}

impl OldEvent {
    fn upgrade(self) -> AuditEvent {
        AuditEvent {
            at_ms: self.at_ms,
            user: self.user,
            nhs_number: Some(self.nhs_number),
            action: self.action,
            via: self.via,
            reason: format!("recorded before the hash-chained log: {} items shown", self.items),
            outcome: "migrated".into(),
            ..AuditEvent::default()
        }
    }
}

/// Marks the migration done.
const MARKER: &str = "MIGRATED";

/// Copies the pre-chain events into `chain` (under the lock) unless done
/// before, and returns how many.
pub(super) fn migrate(chain: &mut Chain, data_dir: &Path, opts: &Options) -> io::Result<usize> {
    let Some(store) = &opts.legacy else { return Ok(0) };
    let marker = super::dir(data_dir).join(MARKER);
    if marker.exists() {
        return Ok(0);
    }
    let mut events = Vec::new();
    {
        let values = store.legacy_audit().map_err(io::Error::other)?;
        for v in values {
            let old: OldEvent = serde_json::from_slice(&v).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("an event in the index's audit tree: {e}"))
            })?;
            events.push(serde_json::to_vec(&old.upgrade()).map_err(io::Error::other)?);
        }
    }
    let from_tree = events.len();
    let skeleton = super::dir(data_dir).join("audit.jsonl");
    if let Ok(f) = std::fs::File::open(&skeleton) {
        for line in io::BufReader::new(f).lines() {
            let line = line?;
            if !line.trim().is_empty() {
                let e: AuditEvent = serde_json::from_str(&line)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", skeleton.display())))?;
                events.push(serde_json::to_vec(&e).map_err(io::Error::other)?);
            }
        }
    }
    for chunk in events.chunks(CHUNK) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        chain.commit(&refs, opts)?;
    }
    let note = format!("{} events copied from before the hash chain\n", events.len());
    std::fs::write(&marker, note)?;
    std::fs::File::open(super::dir(data_dir))?.sync_all()?;
    if !events.is_empty() {
        tracing::info!(
            from_index = from_tree,
            from_file = events.len() - from_tree,
            "copied audit events written before the hash chain into it (the old copies are left as they were)"
        );
    }
    Ok(events.len())
}
