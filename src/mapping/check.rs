//! The report behind `recordhub check FILE...`: what each message of a file maps to,
//! and which of its fields no target read, so analysts can see what a mapping leaves
//! behind. Nothing is stored.

use serde_json::{json, Value as Json};

use super::MappingSet;
use crate::hl7::Message;
use crate::mllp::split::split_messages;
use crate::record::{Mapped, Provenance};

/// One message of a checked file.
#[derive(Debug)]
pub struct CheckedMessage {
    /// MSH-10 (empty if the message does not parse).
    pub control_id: String,
    /// The mapped identity and items, or why mapping failed (parse error, no mapping,
    /// 101/102/103 content error). An event the mappings `ignore` maps to nothing.
    pub result: Result<Mapped, String>,
    /// Segments (`ZU1`) and fields (`PID-13`) holding a value that no target read;
    /// MSH, EVN-1/EVN-2 and set ids (field 1) count as read.
    pub unused: Vec<String>,
}

impl CheckedMessage {
    /// The JSON shown by `recordhub check` and kept in `fixtures/*.json`.
    pub fn to_json(&self) -> Json {
        match &self.result {
            Ok(m) if m.ignored => json!({ "control_id": self.control_id, "ignored": true }),
            Ok(m) if m.warnings.is_empty() => {
                json!({ "control_id": self.control_id, "identity": m.identity, "items": m.items, "unused": self.unused })
            }
            Ok(m) => json!({ "control_id": self.control_id, "identity": m.identity, "items": m.items,
                "warnings": m.warnings, "unused": self.unused }),
            Err(e) => json!({ "control_id": self.control_id, "error": e, "unused": self.unused }),
        }
    }
}

/// Maps every message of a file (text lines or MLLP frames) with `set`.
pub fn check(set: &MappingSet, file_bytes: &[u8]) -> Vec<CheckedMessage> {
    split_messages(file_bytes).iter().map(|raw| check_one(set, raw)).collect()
}

fn check_one(set: &MappingSet, raw: &[u8]) -> CheckedMessage {
    let msg = match Message::parse(raw) {
        Ok(m) => m,
        Err(e) => {
            return CheckedMessage {
                control_id: String::new(),
                result: Err(format!("cannot parse: {e}")),
                unused: Vec::new(),
            }
        }
    };
    let prov = provenance(&msg, 0);
    let mut reads = Vec::new();
    let result = set.apply_traced(&msg, &prov, Some(&mut reads)).map_err(|e| e.to_string());
    CheckedMessage { control_id: prov.control_id.clone(), result, unused: unused(&msg, &mut reads) }
}

/// Provenance as the pipeline builds it: MSH-3, MSH-4, MSH-10, MSH-9.1^MSH-9.2, and
/// EVN-2 (else MSH-7) as ISO 8601.
/// Shared (`Arc`) by every item the message maps to. With `seq` 0 when the seq is
/// not known yet: [`Mapped::assign_seq`] sets it after mapping.
pub fn provenance(msg: &Message<'_>, seq: u64) -> std::sync::Arc<Provenance> {
    let msh = msg.header();
    let text = |f: usize| msh.field(f).component(1).text().into_owned();
    let msh9 = msh.field(9);
    let evn2 = msg.first("EVN").map(|s| s.field(2).component(1).text().into_owned()).filter(|s| !s.is_empty());
    let when = evn2.unwrap_or_else(|| text(7));
    std::sync::Arc::new(Provenance {
        sending_app: text(3),
        sending_facility: text(4),
        control_id: msh.field(10).text().into_owned(),
        message_type: format!("{}^{}", msh9.component(1).text(), msh9.component(2).text()),
        event_time: super::convert::convert(&super::plan::Ty::Timestamp, &when)
            .ok()
            .and_then(|v| v.as_str().map(String::from)),
        seq,
    })
}

fn unused(msg: &Message<'_>, reads: &mut Vec<(usize, usize)>) -> Vec<String> {
    reads.sort_unstable();
    reads.dedup();
    let read = |seg: usize, field: usize| reads.binary_search(&(seg, field)).is_ok();
    let mut out = Vec::new();
    for seg in msg.segments() {
        let (i, name) = (seg.index(), seg.name());
        if name == "MSH" {
            continue;
        }
        let filled: Vec<usize> = seg
            .fields()
            .enumerate()
            .filter(|(_, f)| !f.is_empty())
            .map(|(n, _)| n + 1)
            // Set IDs (field 1) only number segments; EVN-1 repeats MSH-9.2 and
            // EVN-2 is the provenance's event time.
            .filter(|&n| n != 1 && !(name == "EVN" && n == 2))
            .collect();
        let unread: Vec<usize> = filled.iter().copied().filter(|&n| !read(i, n)).collect();
        if unread.is_empty() {
            continue;
        }
        // `reads` is sorted: is any field of segment i read? (A scan of all reads
        // per segment made `check` quadratic in the segment count.)
        let any_read = reads.get(reads.partition_point(|&(s, _)| s < i)).is_some_and(|&(s, _)| s == i);
        if unread.len() == filled.len() && !any_read {
            out.push(name.to_string());
        } else {
            out.extend(unread.into_iter().map(|n| format!("{name}-{n}")));
        }
    }
    out.sort();
    out.dedup();
    out
}
