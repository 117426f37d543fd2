//! A cluster node in-process against a throwaway nats-server: who listens
//! for MLLP, the handover on a planned stop, and the stand-down when the
//! lease is taken away. (Three NATS servers, kill -9 and readers under load
//! are the end-to-end tests in `tests/cluster/`.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;
use crate::cluster::testing::NatsServer;
use crate::cluster::LEASE_KEY;
use crate::mllp::client::{summarize_ack, MllpClient};
use crate::pipeline::testing::adt;

fn free_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address")
}

fn config(nats: &NatsServer, node: &str, data: &Path, lease_ttl: Duration) -> Config {
    let mut cfg = Config::default();
    cfg.store.data_dir = data.to_path_buf();
    cfg.http.listen = "127.0.0.1:0".parse().expect("an address");
    cfg.mllp.listen = free_addr();
    cfg.mapping.dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mappings");
    let mut c = nats.config(node);
    c.role = if node == "a" { Role::Active } else { Role::Standby };
    c.lease_ttl = lease_ttl;
    cfg.cluster = Some(c);
    cfg
}

/// Starts a node; its task ends with what `serve_until` returned.
fn start(cfg: &Config, stop: &CancellationToken) -> tokio::task::JoinHandle<Result<(), ServeError>> {
    let mappings = super::super::load_mappings(cfg).expect("the shipped mappings load");
    tokio::spawn(serve_until(cfg.clone(), mappings, Faults::none(), stop.clone()))
}

/// Waits until `addr` accepts a connection; false after `within`.
async fn listening(addr: std::net::SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Sends one ADT^A01 and returns the ACK's MSA-1.
async fn send(addr: std::net::SocketAddr, control_id: &str) -> String {
    let mut c = MllpClient::connect(&addr.to_string(), Duration::from_secs(5)).await.expect("connects");
    let ack = c.call(&adt(control_id, "V1"), Duration::from_secs(10)).await.expect("an ACK");
    summarize_ack(&ack).map(|s| s.code).unwrap_or_default()
}

async fn stream_last(nats: &NatsServer) -> u64 {
    let c = Cluster::connect(&nats.config("probe")).await.unwrap();
    let mut s = c.js.get_stream(c.names.stream.as_str()).await.unwrap();
    s.info().await.unwrap().state.last_sequence
}

#[tokio::test]
async fn a_standby_listens_only_once_the_active_node_stops_and_continues_its_sequence() {
    let Some(nats) = NatsServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A long TTL: the handover below can only come from the release.
    let ttl = Duration::from_secs(30);
    let a = config(&nats, "a", &dir.path().join("a"), ttl);
    let b = config(&nats, "b", &dir.path().join("b"), ttl);
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let node_a = start(&a, &stop_a);
    assert!(listening(a.mllp.listen, Duration::from_secs(20)).await, "the active node did not take over");
    assert_eq!(send(a.mllp.listen, "A1").await, "AA");
    let node_b = start(&b, &stop_b);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!listening(b.mllp.listen, Duration::from_millis(200)).await, "a standby listened while a holds the lease");

    let stopped = Instant::now();
    stop_a.cancel();
    node_a.await.unwrap().expect("a planned stop is clean");
    assert!(listening(b.mllp.listen, Duration::from_secs(10)).await, "the standby did not take over");
    assert!(stopped.elapsed() < Duration::from_secs(10), "took {:?}: waited for the TTL", stopped.elapsed());
    assert!(!listening(a.mllp.listen, Duration::from_millis(200)).await, "the stopped node still listens");
    assert_eq!(send(b.mllp.listen, "B1").await, "AA");
    // One stream: seq 1 from a, seq 2 from b.
    assert_eq!(stream_last(&nats).await, 2);
    stop_b.cancel();
    node_b.await.unwrap().expect("a planned stop is clean");
}

#[tokio::test]
async fn an_active_node_whose_lease_is_taken_stops_listening_and_exits_fenced() {
    let Some(nats) = NatsServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = config(&nats, "a", &dir.path().join("a"), Duration::from_secs(2));
    let stop = CancellationToken::new();
    let node = start(&a, &stop);
    assert!(listening(a.mllp.listen, Duration::from_secs(20)).await, "the active node did not take over");
    // Another node now holds it (as after a pause longer than the TTL).
    let c = Cluster::connect(&nats.config("b")).await.unwrap();
    let kv = c.js.get_key_value(c.names.lease_bucket.as_str()).await.unwrap();
    kv.put(LEASE_KEY, "b".into()).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), node).await.expect("stood down within the TTL");
    match ended.unwrap() {
        Err(ServeError::Cluster(ClusterError::Fenced { by, .. })) => assert_eq!(by, "b"),
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert!(!listening(a.mllp.listen, Duration::from_millis(200)).await, "a stood-down node still listens");
}

/// A node whose journal holds what the stream does not (here: a stream that
/// was lost and started again empty; in life, a crash with publishing
/// behind or AR 207 entries of a quorum outage). Under `replicated` none of
/// it was acknowledged AA, so the node sets journal and index aside and
/// rejoins by itself; under `local` it may have been, so it refuses.
#[tokio::test]
async fn a_diverged_journal_is_set_aside_under_replicated_and_refused_under_local() {
    let Some(first) = NatsServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let ttl = Duration::from_secs(2);
    let a = config(&first, "a", &data, ttl);
    let stop = CancellationToken::new();
    let node = start(&a, &stop);
    assert!(listening(a.mllp.listen, Duration::from_secs(20)).await, "the node did not take over");
    assert_eq!(send(a.mllp.listen, "BEFORE").await, "AA");
    stop.cancel();
    node.await.unwrap().unwrap();
    drop(first);

    let Some(second) = NatsServer::start() else { return };
    let mut local = config(&second, "a", &data, ttl);
    if let Some(c) = local.cluster.as_mut() {
        c.ack_after = crate::cluster::AckAfter::Local;
    }
    let refused = start(&local, &CancellationToken::new()).await.unwrap();
    let text = refused.expect_err("under local a diverged journal is refused").to_string();
    assert!(text.contains("diverges") && text.contains("aside"), "{text}");

    let a = config(&second, "a", &data, ttl);
    let stop = CancellationToken::new();
    let node = start(&a, &stop);
    assert!(listening(a.mllp.listen, Duration::from_secs(20)).await, "the node did not rejoin");
    assert_eq!(send(a.mllp.listen, "AFTER").await, "AA");
    assert_eq!(stream_last(&second).await, 1, "the node re-synced from the (empty) stream and continues at 1");
    let aside: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("set-aside-"))
        .collect();
    assert_eq!(aside.len(), 1, "the old journal is kept for inspection");
    assert!(aside[0].path().join("journal").is_dir());
    stop.cancel();
    node.await.unwrap().unwrap();
}
