//! What the journal stream holds, read straight from NATS by the test: every
//! message from seq 1 to the last, each checked to carry stream seq ==
//! journal seq, decoded with `recordhub::journal::wire::decode`; gap fillers
//! (`Recordhub-Gap`) are skipped, as followers skip them.

use std::collections::HashMap;

use recordhub::cluster::{HDR_GAP, HDR_SEQ};

use super::nats::{runtime, NatsCluster, STREAM};

/// One journal entry as the stream carries it.
pub struct StreamEntry {
    pub seq: u64,
    pub control_id: String,
    pub ack_code: String,
}

/// Every non-filler entry of the journal stream, in order. Retries each
/// request for up to 30 s: right after a NATS server is killed the stream
/// may be electing a new leader.
pub fn entries(nats: &NatsCluster) -> Vec<StreamEntry> {
    runtime().block_on(async {
        let addrs: Vec<async_nats::ServerAddr> = nats.urls().iter().map(|u| u.parse().expect("a NATS URL")).collect();
        let connecting = async_nats::ConnectOptions::new().retry_on_initial_connect().connect(addrs);
        let client = tokio::time::timeout(std::time::Duration::from_secs(30), connecting)
            .await
            .expect("the test connects to NATS within 30 s")
            .expect("the test connects to NATS");
        let js = async_nats::jetstream::new(client);
        // get_stream fetches the stream's info: its last sequence now.
        let stream = retry("the journal stream", || js.get_stream(STREAM)).await;
        let last = stream.cached_info().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            let m = retry(&format!("stream message {seq}"), || stream.get_raw_message(seq)).await;
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

/// `op` until it succeeds, for at most 30 s.
async fn retry<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut op: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) if std::time::Instant::now() > deadline => panic!("reading {what} from NATS: {e}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
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
