//! What the journal stream holds, read straight from NATS by the test: every
//! message from seq 1 to the last, each checked to carry stream seq ==
//! journal seq, decoded with `recordhub::journal::wire::decode`; gap fillers
//! (`Recordhub-Gap`) are skipped, as followers skip them.

use std::collections::HashMap;

use recordhub::cluster::{HDR_GAP, HDR_SEQ};

use super::nats::{runtime, NatsCluster};

/// One journal entry as the stream carries it.
pub struct StreamEntry {
    pub seq: u64,
    pub control_id: String,
    pub ack_code: String,
}

/// Every non-filler entry of the journal stream, in order.
pub fn entries(nats: &NatsCluster) -> Vec<StreamEntry> {
    runtime().block_on(async {
        let cluster = nats.connect().await.expect("the test connects to NATS");
        let mut stream = cluster.js.get_stream(cluster.names.stream.as_str()).await.expect("the journal stream");
        let last = stream.info().await.expect("stream info").state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            let m = stream.get_raw_message(seq).await.unwrap_or_else(|e| panic!("stream message {seq}: {e}"));
            if m.headers.get(HDR_GAP).is_some() {
                continue;
            }
            let e = recordhub::journal::wire::decode(&m.payload)
                .unwrap_or_else(|e| panic!("stream message {seq} is not a journal entry: {e}"));
            assert_eq!(e.seq, seq, "stream sequence == journal seq");
            if let Some(h) = m.headers.get(HDR_SEQ) {
                assert_eq!(h.as_str(), seq.to_string(), "{HDR_SEQ} header of stream message {seq}");
            }
            out.push(StreamEntry { seq, control_id: e.control_id, ack_code: e.ack_code });
        }
        out
    })
}

/// Control id → how many stream entries carry it.
pub fn counts(entries: &[StreamEntry]) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for e in entries {
        *m.entry(e.control_id.as_str()).or_insert(0) += 1;
    }
    m
}

/// Asserts every id in `acked` is accepted (AA/CA) in the stream exactly
/// once: nothing acknowledged lost, nothing applied twice. (A message first
/// refused, e.g. AR 207, may also have a refused entry: that one is not applied.)
pub fn assert_each_once(entries: &[StreamEntry], acked: &[String]) {
    let accepted: Vec<StreamEntry> = entries
        .iter()
        .filter(|e| matches!(e.ack_code.as_str(), "AA" | "CA"))
        .map(|e| StreamEntry { seq: e.seq, control_id: e.control_id.clone(), ack_code: e.ack_code.clone() })
        .collect();
    let counts = counts(&accepted);
    let missing: Vec<&String> = acked.iter().filter(|id| !counts.contains_key(id.as_str())).collect();
    let twice: Vec<(&String, usize)> =
        acked.iter().filter_map(|id| counts.get(id.as_str()).filter(|n| **n > 1).map(|n| (id, *n))).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged ids are not accepted in the stream, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        twice.is_empty(),
        "{} acknowledged ids are accepted in the stream more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
}
