//! Publisher tests against a real single-node JetStream (skipped, saying
//! so, when nats-server is not installed; see `cluster::testing`).
//!
//! Multi-threaded runtimes: `wait_published` blocks its thread (it runs on
//! the pipeline thread in production), so the tests call it through
//! `spawn_blocking` while the publisher task runs on the runtime.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::cluster::testing::NatsServer;
use crate::fault::Faults;
use crate::journal::{EntryRef, Journal, JournalOptions, Reason};

fn journal(dir: &Path, faults: Faults) -> Journal {
    Journal::open(dir, JournalOptions { faults, ..JournalOptions::default() }).unwrap().0
}

/// Appends and commits entry number `n`; returns its seq (or the commit error).
fn add(j: &mut Journal, n: u32) -> Result<u64, crate::journal::JournalError> {
    let raw = format!("MSH|^~\\&|PAS|RJ1|||20260101||ADT^A01|c{n}|P|2.5\rPID|||943 476 5919\r");
    let control_id = format!("c{n}");
    let seq = j.append(&EntryRef {
        received_at_ms: 1,
        peer: "test",
        sending_app: "PAS",
        sending_facility: "RJ1",
        control_id: &control_id,
        message_type: "ADT^A01",
        ack_code: "AA",
        ack_sent: true,
        reason: Reason::default(),
        ack: b"MSH|^~\\&|ACK\rMSA|AA|c\r",
        raw: raw.as_bytes(),
    })?;
    j.commit().map(|()| seq)
}

async fn wait(r: &Replication, seq: u64, timeout: Duration) -> Result<(), NotReplicated> {
    let r = r.clone();
    tokio::task::spawn_blocking(move || r.wait_published(seq, timeout)).await.unwrap()
}

/// Waits until published ≥ seq, retrying as a sender resending would.
async fn eventually(r: &Replication, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = wait(r, seq, Duration::from_secs(2)).await {
        assert!(Instant::now() < deadline, "never published {seq}: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Node {
    cluster: Cluster,
    state: ClusterState,
    fenced: CancellationToken,
}

async fn node(nats: &NatsServer, name: &str) -> Node {
    let cluster = Cluster::connect(&nats.config(name)).await.unwrap();
    Node { cluster, state: ClusterState::default(), fenced: CancellationToken::new() }
}

async fn start(n: &Node, dir: &Path, committed: u64) -> Result<Replication, ClusterError> {
    spawn(n.cluster.clone(), dir.to_path_buf(), committed, n.state.clone(), n.fenced.clone()).await
}

/// Every message of the stream: (stream seq, Nats-Msg-Id, headers, payload).
async fn stream_messages(c: &Cluster) -> Vec<(u64, String, HeaderMap, Vec<u8>)> {
    let mut stream = c.js.get_stream(c.names.stream.as_str()).await.unwrap();
    let info = stream.info().await.unwrap().clone();
    assert_eq!(info.state.messages, info.state.last_sequence, "nothing deleted or skipped");
    let mut out = Vec::new();
    for seq in 1..=info.state.last_sequence {
        let m = stream.get_raw_message(seq).await.unwrap();
        let id = m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_string()).unwrap_or_default();
        out.push((m.sequence, id, m.headers, m.payload.to_vec()));
    }
    out
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_published_in_journal_order_with_stream_seq_equal_to_journal_seq() {
    let Some(nats) = NatsServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path(), Faults::none());
    for n in 1..=3 {
        add(&mut j, n).unwrap();
    }
    let a = node(&nats, "a").await;
    let r = start(&a, dir.path(), 3).await.unwrap();
    wait(&r, 3, Duration::from_secs(10)).await.unwrap();
    add(&mut j, 4).unwrap();
    r.note_committed(j.committed_seq());
    wait(&r, 4, Duration::from_secs(10)).await.unwrap();

    let msgs = stream_messages(&a.cluster).await;
    assert_eq!(msgs.len(), 4);
    for (i, (seq, id, h, body)) in msgs.iter().enumerate() {
        let want = i as u64 + 1;
        assert_eq!(*seq, want);
        assert_eq!(id, &format!("a:{want}"));
        assert_eq!(header(h, HDR_SEQ), Some(want.to_string().as_str()));
        assert_eq!(header(h, HDR_NODE), Some("a"));
        assert_eq!(header(h, HDR_PARTITION), Some("PAS^RJ1"));
        assert_eq!(header(h, HDR_GAP), None);
        let entry = wire::decode(body).unwrap();
        assert_eq!(entry.seq, want, "the body is the journal entry with that seq");
        assert_eq!(entry.control_id, format!("c{want}"));
    }
    assert_eq!(r.published(), 4);
    assert_eq!(a.state.published(), 4);
    assert_eq!(a.state.publish_lag(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_publisher_publishes_only_what_the_stream_lacks() {
    let Some(nats) = NatsServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path(), Faults::none());
    add(&mut j, 1).unwrap();
    add(&mut j, 2).unwrap();
    let first = node(&nats, "a").await;
    let r = start(&first, dir.path(), 2).await.unwrap();
    wait(&r, 2, Duration::from_secs(10)).await.unwrap();
    first.fenced.cancel(); // stops the first publisher task
    add(&mut j, 3).unwrap();
    add(&mut j, 4).unwrap();

    let again = node(&nats, "a").await;
    // Told of the journal's commits only after reading where it starts: with
    // committed 4 at once, its task may publish 3 and 4 before the check
    // below (NATS would drop a re-sent 1 and 2 as duplicates, so the stream
    // alone cannot show where it started).
    let r = start(&again, dir.path(), 2).await.unwrap();
    assert_eq!(r.published(), 2, "starts where the stream ends");
    r.note_committed(j.committed_seq());
    wait(&r, 4, Duration::from_secs(10)).await.unwrap();
    let ids: Vec<String> = stream_messages(&again.cluster).await.into_iter().map(|m| m.1).collect();
    assert_eq!(ids, ["a:1", "a:2", "a:3", "a:4"], "each entry once");

    // A journal behind the stream must follow first.
    let behind = node(&nats, "a").await;
    match start(&behind, dir.path(), 3).await {
        Err(ClusterError::Diverged { seq: 4, .. }) => {}
        other => panic!("expected Diverged at 4, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seq_burned_by_a_failed_commit_is_published_as_a_gap_filler() {
    let Some(nats) = NatsServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The second commit's write fails: its seq (2) is burned.
    let mut j = journal(dir.path(), Faults::parse("journal.write=after(1) 1*error").unwrap());
    assert_eq!(add(&mut j, 1).unwrap(), 1);
    assert!(add(&mut j, 2).is_err(), "the fault point fired");
    assert_eq!(add(&mut j, 3).unwrap(), 3);
    let a = node(&nats, "a").await;
    let r = start(&a, dir.path(), 3).await.unwrap();
    wait(&r, 3, Duration::from_secs(10)).await.unwrap();

    let msgs = stream_messages(&a.cluster).await;
    assert_eq!(msgs.len(), 3, "stream seq stays the journal seq");
    let (_, id, h, body) = &msgs[1];
    assert_eq!(id, "a:2");
    assert_eq!(header(h, HDR_GAP), Some("1"));
    assert!(body.is_empty(), "a filler carries no entry");
    assert_eq!(wire::decode(&msgs[2].3).unwrap().control_id, "c3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_append_fences_the_publisher() {
    let Some(nats) = NatsServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path(), Faults::none());
    add(&mut j, 1).unwrap();
    let a = node(&nats, "a").await;
    a.state.set_part(Part::Active);
    let r = start(&a, dir.path(), 1).await.unwrap();
    wait(&r, 1, Duration::from_secs(10)).await.unwrap();

    // Node b took over and appended seq 2.
    let b = node(&nats, "b").await;
    let mut h = HeaderMap::new();
    h.insert("Nats-Msg-Id", "b:2");
    h.insert("Nats-Expected-Last-Sequence", "1");
    h.insert(HDR_NODE, "b");
    let subject = b.cluster.names.journal_subject.clone();
    b.cluster.js.publish_with_headers(subject, h, "x".into()).await.unwrap().await.unwrap();

    add(&mut j, 2).unwrap();
    add(&mut j, 3).unwrap();
    r.note_committed(3);
    tokio::time::timeout(Duration::from_secs(20), a.fenced.cancelled()).await.expect("fenced");
    assert_eq!(a.state.part(), Part::StoodDown);
    let e = wait(&r, 2, Duration::from_secs(5)).await.unwrap_err();
    assert!(e.0.contains("fenced") && e.0.contains('b'), "{e}");
    let ids: Vec<String> = stream_messages(&a.cluster).await.into_iter().map(|m| m.1).collect();
    assert_eq!(ids, ["a:1", "b:2"], "nothing more from a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_reported_and_the_backlog_is_published_when_the_server_returns() {
    let Some(mut nats) = NatsServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path(), Faults::none());
    add(&mut j, 1).unwrap();
    let a = node(&nats, "a").await;
    let r = start(&a, dir.path(), 1).await.unwrap();
    wait(&r, 1, Duration::from_secs(10)).await.unwrap();

    nats.stop();
    add(&mut j, 2).unwrap();
    add(&mut j, 3).unwrap();
    r.note_committed(3);
    let e = wait(&r, 3, Duration::from_secs(3)).await.unwrap_err();
    assert!(!e.0.is_empty(), "a reason for the ERR segment and the log");
    // Down for longer than publish_timeout now: a further wait answers at once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let asked = Instant::now();
    assert!(wait(&r, 3, Duration::from_secs(30)).await.is_err());
    assert!(asked.elapsed() < Duration::from_secs(10), "answered without waiting the full 30 s");
    assert!(r.published() < 3);

    nats.restart();
    eventually(&r, 3).await;
    let ids: Vec<String> = stream_messages(&a.cluster).await.into_iter().map(|m| m.1).collect();
    assert_eq!(ids, ["a:1", "a:2", "a:3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_landed_without_its_ack_reaching_us_is_not_published_twice() {
    let Some(nats) = NatsServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path(), Faults::none());
    add(&mut j, 1).unwrap();
    let a = node(&nats, "a").await;
    let r = start(&a, dir.path(), 1).await.unwrap();
    wait(&r, 1, Duration::from_secs(10)).await.unwrap();
    // Entry 2 reached the stream, but its ack never came back (as after a
    // disconnect): the stream holds a:2 while the publisher has only 1.
    add(&mut j, 2).unwrap();
    add(&mut j, 3).unwrap();
    let body = wire::encode(&JournalReader::open(dir.path()).unwrap().get(2).unwrap().unwrap()).unwrap();
    let mut h = HeaderMap::new();
    h.insert("Nats-Msg-Id", "a:2");
    h.insert("Nats-Expected-Last-Sequence", "1");
    let subject = a.cluster.names.journal_subject.clone();
    a.cluster.js.publish_with_headers(subject, h, body.into()).await.unwrap().await.unwrap();
    assert_eq!(r.published(), 1);

    r.note_committed(3);
    wait(&r, 3, Duration::from_secs(10)).await.unwrap();
    let ids: Vec<String> = stream_messages(&a.cluster).await.into_iter().map(|m| m.1).collect();
    assert_eq!(ids, ["a:1", "a:2", "a:3"], "the retry was a duplicate, not a second copy");
    assert!(!a.fenced.is_cancelled(), "our own entry does not fence us");
}

/// Not a test: how long a pass's journal read takes at the end of a full
/// 64 MiB segment, scanned from its start (`iter_from`) and resumed where
/// the previous read stopped (`iter_resuming`, what the publisher does). `cargo test --lib -- --ignored measure_tail_read --nocapture`
#[test]
#[ignore]
fn measure_tail_read_after_a_full_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path(), Faults::none());
    let pad = "X".repeat(1800);
    for n in 0..30_000u32 {
        let raw = format!("MSH|^~\\&|PAS|RJ1|||20260101||ADT^A01|c{n}|P|2.5\rNTE|{pad}\r");
        let control_id = format!("c{n}");
        let e = EntryRef {
            received_at_ms: 1,
            peer: "t",
            sending_app: "PAS",
            sending_facility: "RJ1",
            control_id: &control_id,
            message_type: "ADT^A01",
            ack_code: "AA",
            ack_sent: true,
            reason: Reason::default(),
            ack: b"MSA|AA|c\r",
            raw: raw.as_bytes(),
        };
        j.append(&e).unwrap();
        if n % 50 == 0 {
            j.commit().unwrap();
        }
    }
    j.commit().unwrap();
    let reader = JournalReader::open(dir.path()).unwrap();
    let t = Instant::now();
    let mut it = reader.iter_from(29_991);
    let n = it.by_ref().count();
    assert_eq!(n, 10);
    eprintln!("scan: read the last {n} entries of a ~60 MB segment in {:?}", t.elapsed());
    let resume = it.resume_point();
    let t = Instant::now();
    let n = reader.iter_resuming(30_001, resume).count();
    assert_eq!(n, 0);
    eprintln!("resumed: read what follows the same point in {:?}", t.elapsed());
}
