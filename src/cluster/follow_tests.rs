//! Following a real JetStream stream: entries published as the active node
//! publishes them (a source pipeline that really processed HL7 messages),
//! applied by a follower pipeline in another directory.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::cluster::testing::NatsServer;
use crate::cluster::{msg_id, HDR_FORMAT, HDR_GAP, HDR_NODE, HDR_SEQ};
use crate::hl7::NhsNumber;
use crate::journal::wire;
use crate::journal::JournalReader;
use crate::pipeline::testing::{adt, open};
use crate::pipeline::{journal_dir, Inbound, Outcome};

fn nhs() -> NhsNumber {
    NhsNumber::parse("9434765919").unwrap()
}

fn journal(dir: &Path) -> Vec<Entry> {
    let reader = JournalReader::open(&journal_dir(dir)).unwrap();
    reader.iter_from(0).collect::<Result<_, _>>().unwrap()
}

fn one(p: &mut Pipeline, raw: &[u8]) -> Outcome {
    p.process(&[Inbound::message(raw, "test", 0)]).remove(0)
}

fn headers(seq: u64) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", msg_id("a", seq).as_str());
    h.insert("Nats-Expected-Last-Sequence", (seq - 1).to_string().as_str());
    h.insert(HDR_SEQ, seq.to_string().as_str());
    h.insert(HDR_NODE, "a");
    h.insert(HDR_FORMAT, "2");
    h
}

/// Publishes as the active node does; the stream seq must be the journal seq.
async fn publish_raw(cluster: &Cluster, seq: u64, h: async_nats::HeaderMap, body: Vec<u8>) {
    let subject = cluster.names.journal_subject.clone();
    let ack = cluster.js.publish_with_headers(subject, h, body.into()).await.unwrap().await.unwrap();
    assert_eq!(ack.sequence, seq, "stream seq == journal seq");
}

async fn publish(cluster: &Cluster, entries: &[Entry]) {
    for e in entries {
        publish_raw(cluster, e.seq, headers(e.seq), wire::encode(e).unwrap()).await;
    }
}

async fn publish_gap(cluster: &Cluster, seq: u64) {
    let mut h = headers(seq);
    h.insert(HDR_GAP, "1");
    publish_raw(cluster, seq, h, Vec::new()).await;
}

async fn connect(nats: &NatsServer, node: &str) -> Cluster {
    Cluster::connect(&nats.config(node)).await.unwrap()
}

async fn follow(cluster: &Cluster, p: Pipeline) -> Result<Following, ClusterError> {
    spawn(cluster.clone(), p, Health::default(), ClusterState::default()).await
}

async fn caught_up(f: &Following) -> u64 {
    tokio::time::timeout(Duration::from_secs(20), f.catch_up()).await.expect("caught up in time").unwrap()
}

/// A follower files what the active node journaled: the reader on it serves
/// the same record; restarted, it resumes after what it holds and appends
/// nothing twice.
#[tokio::test]
async fn a_follower_serves_the_active_nodes_record_and_resumes_after_a_restart() {
    let Some(nats) = NatsServer::start() else { return };
    let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut src = open(src_dir.path());
    assert!(one(&mut src, &adt("A1", "V1")).code.is_accept());
    assert!(!one(&mut src, b"MSH|^~\\&|not hl7").code.is_accept(), "a rejected message is journaled too");
    let cluster = connect(&nats, "b").await;
    publish(&cluster, &journal(src_dir.path())).await;

    let dst = open(dst_dir.path());
    let (store, progress) = (dst.store().clone(), dst.progress());
    let f = follow(&cluster, dst).await.unwrap();
    assert_eq!(caught_up(&f).await, 2);
    assert_eq!((f.position(), f.lag()), (2, 0));
    assert!(progress.wait_caught_up(Duration::from_secs(10)), "reads wait for the index as on the active node");
    src.sync_index();
    let want = src.store().record(&nhs()).unwrap();
    assert!(!want.is_empty());
    assert_eq!(format!("{:?}", store.record(&nhs()).unwrap()), format!("{want:?}"), "the same items");

    // Live: what the active node publishes while the follower runs.
    assert!(one(&mut src, &adt("A2", "V2")).code.is_accept());
    publish(&cluster, &journal(src_dir.path())[2..]).await;
    assert_eq!(caught_up(&f).await, 3);

    let mut dst = f.stop().await.unwrap();
    dst.shutdown().unwrap();
    drop((dst, store));
    assert!(one(&mut src, &adt("A3", "V3")).code.is_accept());
    publish(&cluster, &journal(src_dir.path())[3..]).await;
    let f = follow(&cluster, open(dst_dir.path())).await.unwrap();
    assert_eq!(caught_up(&f).await, 4);
    let mut dst = f.stop().await.unwrap();
    dst.shutdown().unwrap();
    assert_eq!(journal(dst_dir.path()), journal(src_dir.path()), "every entry once, at its seq");
    src.shutdown().unwrap();
}

/// A filler for a seq burned on the active node is not an entry: the
/// follower's journal keeps the gap, and a trailing filler is passed so a
/// takeover continues after it.
#[tokio::test]
async fn a_gap_filler_is_skipped_and_the_follower_journal_keeps_the_gap() {
    let Some(nats) = NatsServer::start() else { return };
    let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut src = open(src_dir.path());
    one(&mut src, &adt("G1", "V1"));
    src.skip_through(2);
    assert_eq!(one(&mut src, &adt("G3", "V3")).seq, Some(3));
    let entries = journal(src_dir.path());
    let cluster = connect(&nats, "b").await;
    publish(&cluster, &entries[..1]).await;
    publish_gap(&cluster, 2).await;
    publish(&cluster, &entries[1..]).await;
    publish_gap(&cluster, 4).await;

    let f = follow(&cluster, open(dst_dir.path())).await.unwrap();
    let mut dst = f.catch_up_and_stop().await.unwrap();
    assert_eq!(dst.position(), 4);
    assert_eq!(journal(dst_dir.path()).iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(one(&mut dst, &adt("G5", "V5")).seq, Some(5), "the stream's next seq");
    dst.shutdown().unwrap();
    src.shutdown().unwrap();
}

/// A node that acknowledged a message the stream never got (or wrote after
/// another node took over) must not mix its journal with the stream's: it
/// refuses to follow and tells the operator how to re-sync.
#[tokio::test]
async fn a_follower_whose_journal_holds_what_the_stream_does_not_is_diverged() {
    let Some(nats) = NatsServer::start() else { return };
    let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cluster = connect(&nats, "b").await;
    let mut dst = open(dst_dir.path());
    one(&mut dst, &adt("LOCAL", "V1"));
    let Err(err) = follow(&cluster, dst).await else { panic!("followed a diverged journal") };
    let text = err.to_string();
    assert!(matches!(err, ClusterError::Diverged { seq: 1, .. }), "{text}");
    assert!(text.contains("the stream ends at seq 0"), "{text}");
    let dir = dst_dir.path().display();
    assert!(text.contains(&format!("move {dir}/journal and {dir}/index aside")), "{text}");

    // The stream holds another message at the same seq.
    let mut src = open(src_dir.path());
    one(&mut src, &adt("STREAM", "V1"));
    publish(&cluster, &journal(src_dir.path())).await;
    let Err(err) = follow(&cluster, open(dst_dir.path())).await else { panic!("followed a diverged journal") };
    assert!(err.to_string().contains("another message (control id differs)"), "{err}");
    src.shutdown().unwrap();
}

/// The no-double-apply promise: a standby that caught up and took over
/// journals at the stream's last seq + 1 and answers a retransmission of a
/// message the old active acknowledged as a duplicate, with the same ACK.
#[tokio::test]
async fn after_catch_up_and_stop_a_retransmission_is_answered_as_a_duplicate() {
    let Some(nats) = NatsServer::start() else { return };
    let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut src = open(src_dir.path());
    let msg = adt("T1", "V1");
    let original = one(&mut src, &msg);
    one(&mut src, &adt("T2", "V2"));
    let cluster = connect(&nats, "b").await;
    publish(&cluster, &journal(src_dir.path())).await;

    let f = follow(&cluster, open(dst_dir.path())).await.unwrap();
    let mut dst = f.catch_up_and_stop().await.unwrap();
    let again = one(&mut dst, &msg);
    assert!(again.duplicate, "not journaled again");
    assert_eq!((&again.ack, again.seq), (&original.ack, original.seq), "the original ACK, byte for byte");
    dst.sync_index();
    src.sync_index();
    let history = |p: &Pipeline| format!("{:?}", p.store().history(&nhs()).unwrap());
    assert_eq!(history(&dst), history(&src), "T1 filed once, as on the active node");
    assert_eq!(one(&mut dst, &adt("T3", "V3")).seq, Some(3), "the journal continues at L + 1");
    dst.shutdown().unwrap();
    src.shutdown().unwrap();
}

/// A stream message that is not a journal entry stops following with an
/// error an operator sees; it is never skipped.
#[tokio::test]
async fn a_message_that_is_not_a_journal_entry_stops_following_with_an_error() {
    let Some(nats) = NatsServer::start() else { return };
    let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut src = open(src_dir.path());
    one(&mut src, &adt("B1", "V1"));
    let cluster = connect(&nats, "b").await;
    publish(&cluster, &journal(src_dir.path())).await;
    publish_raw(&cluster, 2, headers(2), b"not an entry".to_vec()).await;
    one(&mut src, &adt("B3", "V3"));
    let third = journal(src_dir.path()).pop().unwrap();
    let third = Entry { seq: 3, ..third };
    publish(&cluster, &[third]).await;
    let health = Health::default();
    let f = spawn(cluster.clone(), open(dst_dir.path()), health.clone(), ClusterState::default()).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), f.catch_up()).await.expect("stops in time").unwrap_err();
    assert!(err.to_string().contains("stream message 2 is not a journal entry"), "{err}");
    assert_eq!(f.position(), 1, "the entry before it is applied; it is not skipped to reach seq 3");
    assert!(health.is_failing(crate::health::Part::Pipeline), "health says so");
    let mut dst = f.stop().await.unwrap();
    assert_eq!(dst.position(), 1);
    dst.shutdown().unwrap();
    drop(dst); // sled's lock

    // A message deleted from the stream is a hole no follower passes.
    cluster.js.get_stream(&cluster.names.stream).await.unwrap().delete_message(2).await.unwrap();
    let f = follow(&cluster, open(dst_dir.path())).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), f.catch_up()).await.expect("stops in time").unwrap_err();
    assert!(err.to_string().contains("holds no message at seq 2"), "{err}");
    assert_eq!(f.stop().await.unwrap().position(), 1);
    src.shutdown().unwrap();
}

/// An entry in a format this build does not read is named as such.
#[tokio::test]
async fn an_entry_in_a_newer_format_stops_following_and_says_to_upgrade() {
    let Some(nats) = NatsServer::start() else { return };
    let dst_dir = tempfile::tempdir().unwrap();
    let cluster = connect(&nats, "b").await;
    let mut newer = headers(1);
    newer.insert(HDR_FORMAT, "3");
    publish_raw(&cluster, 1, newer, b"a body from the future".to_vec()).await;
    let f = follow(&cluster, open(dst_dir.path())).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), f.catch_up()).await.expect("stops in time").unwrap_err();
    assert!(err.to_string().contains("format 3, which this build does not read; upgrade this node"), "{err}");
    f.stop().await.unwrap().shutdown().unwrap();
}

/// A stream that no longer holds entries this node lacks (limits or a
/// purge) cannot be followed: the node would silently miss them.
#[tokio::test]
async fn a_stream_that_no_longer_holds_what_the_follower_lacks_is_refused() {
    let Some(nats) = NatsServer::start() else { return };
    let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut src = open(src_dir.path());
    one(&mut src, &adt("P1", "V1"));
    one(&mut src, &adt("P2", "V2"));
    let cluster = connect(&nats, "b").await;
    publish(&cluster, &journal(src_dir.path())).await;
    cluster.js.get_stream(&cluster.names.stream).await.unwrap().purge().await.unwrap();
    let Err(err) = follow(&cluster, open(dst_dir.path())).await else { panic!("followed a purged stream") };
    assert!(err.to_string().contains("no longer holds seqs 1 to 2"), "{err}");
    src.shutdown().unwrap();
}

/// A NATS outage pauses following (the node keeps its data and says it is
/// disconnected) and following resumes by itself when NATS is back.
#[tokio::test]
async fn following_resumes_by_itself_after_a_nats_outage() {
    let Some(bin) = crate::cluster::testing::nats_binary() else { return };
    let store = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start = || {
        let child = std::process::Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    };
    let mut server = start();
    let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut src = open(src_dir.path());
    one(&mut src, &adt("O1", "V1"));
    let cfg = crate::config::ClusterConfig {
        servers: vec![format!("nats://127.0.0.1:{port}")],
        node: "b".into(),
        role: crate::config::Role::Reader,
        stream: "RECORDHUB".into(),
        replicas: 1,
        ack_after: crate::config::AckAfter::Local,
        publish_timeout: Duration::from_secs(2),
        lease_ttl: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(5),
        ready_max_lag: 1000,
        creds: None,
        tls_ca: None,
        tls_cert: None,
        tls_key: None,
    };
    let cluster = Cluster::connect(&cfg).await.unwrap();
    publish(&cluster, &journal(src_dir.path())).await;
    let state = ClusterState::default();
    let f = spawn(cluster.clone(), open(dst_dir.path()), Health::default(), state.clone()).await.unwrap();
    assert_eq!(caught_up(&f).await, 1);

    server.kill().unwrap();
    server.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while state.nats_connected() {
        assert!(std::time::Instant::now() < deadline, "the outage is reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(f.position(), 1, "what it holds stays");

    let mut server = start();
    one(&mut src, &adt("O2", "V2"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let second = &journal(src_dir.path())[1];
    loop {
        let subject = cluster.names.journal_subject.clone();
        let body = wire::encode(second).unwrap().into();
        let sent = tokio::time::timeout(Duration::from_secs(2), async {
            cluster
                .js
                .publish_with_headers(subject, headers(2), body)
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        });
        match sent.await {
            Ok(Ok(ack)) => break assert_eq!(ack.sequence, 2),
            other => assert!(std::time::Instant::now() < deadline, "NATS back in time: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(caught_up(&f).await, 2, "resumed by itself");
    assert!(state.nats_connected());
    f.stop().await.unwrap().shutdown().unwrap();
    src.shutdown().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
}
