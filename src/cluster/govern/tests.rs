//! Tests of the governance consumer and the audit forwarder against a real
//! single `nats-server` (skipped, saying so, when it is not installed).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use tokio::task::JoinHandle;

use super::*;
use crate::cluster::testing::NatsServer;
use crate::cluster::ClusterState;
use crate::pipeline::Replayer;
use crate::pipeline::{journal_dir, Inbound, Pipeline};

const ADT: &[u8] = include_bytes!("../../../fixtures/adt-a01.hl7");
pub(crate) const NHS: &str = "9434765919";

/// One node's engine: a pipeline over its own data directory that has
/// journaled and filed the ADT fixture (patient [`NHS`]).
pub(crate) struct Node {
    pub(crate) pipeline: Pipeline,
    pub(crate) replayer: Replayer,
    _dir: tempfile::TempDir,
}

impl Node {
    pub(crate) fn with_record() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let opts = crate::pipeline::testing::options(dir.path(), crate::fault::Faults::none());
        let replayer = Replayer {
            journal_dir: journal_dir(dir.path()),
            mappings: opts.mappings.clone(),
            policy: opts.policy.clone(),
        };
        let mut pipeline = Pipeline::open(opts).unwrap().0;
        assert!(pipeline.process(&[Inbound::message(ADT, "test", 0)])[0].code.is_accept());
        pipeline.sync_index();
        let node = Node { pipeline, replayer, _dir: dir };
        assert!(!node.record_shown().is_empty(), "filed before any objection");
        node
    }

    pub(crate) fn store(&self) -> &Store {
        self.pipeline.store()
    }

    pub(crate) fn nhs() -> NhsNumber {
        NhsNumber::parse(NHS).unwrap()
    }

    pub(crate) fn record_shown(&self) -> Vec<crate::record::Item> {
        self.store().record(&Node::nhs()).unwrap()
    }

    fn objected(&self) -> bool {
        self.store().objection(&Node::nhs()).unwrap().is_some()
    }

    async fn spawn(&self, cluster: &Cluster) -> (GovHandle, JoinHandle<()>) {
        let (store, replayer, progress) = (self.store().clone(), self.replayer.clone(), self.pipeline.progress());
        spawn(cluster.clone(), store, replayer, progress, ClusterState::default()).await.unwrap()
    }

    /// What the admin API does on an add: the local change, then its event.
    fn add_here(&self, node: &str, by: &str) -> ObjectionEvent {
        let (nhs, objection) = crate::cli::AddRequest {
            nhs_number: NHS.into(),
            reason: "asked at clinic".into(),
            recorded_by: by.into(),
            source: None,
        }
        .validate()
        .unwrap();
        self.store().add_objection(&nhs, objection).unwrap();
        recorded_events(self.store(), node, &[NHS]).unwrap().remove(0)
    }
}

/// Waits (up to 20 s: a slow shared machine) for `done`; false if it never held.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

#[tokio::test]
async fn an_objection_recorded_on_one_node_hides_the_record_on_another_and_its_withdrawal_restores_it() {
    let Some(nats) = NatsServer::start() else { return };
    let (ca, cb) =
        (Cluster::connect(&nats.config("a")).await.unwrap(), Cluster::connect(&nats.config("b")).await.unwrap());
    let (a, b) = (Node::with_record(), Node::with_record());
    let (gov_a, _ta) = a.spawn(&ca).await;
    let (_gov_b, _tb) = b.spawn(&cb).await;

    let added = a.add_here("a", "officer1");
    gov_a.objection(&added).await.unwrap();
    assert!(eventually(|| b.objected() && b.record_shown().is_empty()).await, "applied on b: record hidden");
    let on_b = b.store().objection(&Node::nhs()).unwrap().unwrap();
    assert_eq!((on_b.recorded_by.as_str(), on_b.recorded_at_ms), ("officer1", added.recorded_at_ms));

    let req = crate::cli::RemoveRequest { recorded_by: "officer2".into(), reason: "consent given".into() };
    crate::cli::remove_and_restore(a.store(), &a.replayer, &Node::nhs(), &req).unwrap().unwrap();
    let withdrawn = withdrawn_event(a.store(), "a", NHS, "officer2", "consent given").unwrap().unwrap();
    gov_a.objection(&withdrawn).await.unwrap();
    assert!(eventually(|| !b.objected() && !b.record_shown().is_empty()).await, "withdrawn on b: record restored");

    // Node a applied its own two events too, and changed nothing twice.
    let wait_for_own = eventually(|| a.store().objection_log().unwrap().len() == 2).await;
    let actions: Vec<String> = a.store().objection_log().unwrap().into_iter().map(|c| c.action).collect();
    assert!(wait_for_own && actions == ["add", "remove"], "a's log: {actions:?}");
    assert!(!a.objected() && !a.record_shown().is_empty());
}

#[tokio::test]
async fn applying_an_event_twice_changes_nothing_the_second_time_and_a_retried_publish_is_kept_once() {
    let Some(nats) = NatsServer::start() else { return };
    let cluster = Cluster::connect(&nats.config("a")).await.unwrap();
    let (a, b) = (Node::with_record(), Node::with_record());
    let event = a.add_here("a", "officer1");
    let apply_b = || apply(b.store(), &b.replayer, &b.pipeline.progress(), "b", &event).unwrap();
    assert!(matches!(apply_b(), Applied::Recorded { items_removed } if items_removed > 0));
    assert_eq!(apply_b(), Applied::Unchanged, "a redelivery");
    assert_eq!(b.store().objection_log().unwrap().len(), 1, "logged once");
    // This node's own event: its change is already in the log.
    assert_eq!(apply(a.store(), &a.replayer, &a.pipeline.progress(), "a", &event).unwrap(), Applied::Unchanged);

    let gov = GovHandle::new(cluster.clone());
    gov.objection(&event).await.unwrap();
    gov.objection(&event).await.unwrap(); // a retry after an unknown outcome
    let mut stream = cluster.js.get_stream(cluster.names.gov_stream.as_str()).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1, "the stream keeps it once");
}

#[tokio::test]
async fn a_node_started_late_or_with_a_fresh_register_gets_every_earlier_objection() {
    let Some(nats) = NatsServer::start() else { return };
    let (ca, cb) =
        (Cluster::connect(&nats.config("a")).await.unwrap(), Cluster::connect(&nats.config("b")).await.unwrap());
    let a = Node::with_record();
    GovHandle::new(ca.clone()).objection(&a.add_here("a", "officer1")).await.unwrap();

    let b = Node::with_record();
    let (_gov, task) = b.spawn(&cb).await;
    assert!(eventually(|| b.objected() && b.record_shown().is_empty()).await, "started after the objection");
    task.abort();

    // Same node name, new data directory (rebuilt): its durable consumer had
    // acknowledged the event, but the fresh register gets it again.
    let rebuilt = Node::with_record();
    let (_gov, _task) = rebuilt.spawn(&cb).await;
    assert!(eventually(|| rebuilt.objected() && rebuilt.record_shown().is_empty()).await, "rebuilt node");
}

fn audit_event(user: &str) -> crate::audit::AuditEvent {
    crate::audit::AuditEvent {
        at_ms: 1,
        user: user.into(),
        action: "read".into(),
        outcome: "shown".into(),
        ..Default::default()
    }
}

/// The audit stream's lines from `node`, as (chain seq, user, check).
async fn streamed(cluster: &Cluster, node: &str) -> Vec<(u64, String, String)> {
    let lines = audit::lines(cluster).await.unwrap();
    let ours = lines.into_iter().filter(|l| l.node == node);
    ours.map(|l| (l.chain_seq, l.event["user"].as_str().unwrap_or("").to_string(), l.check)).collect()
}

async fn wait_streamed(cluster: &Cluster, node: &str, n: usize) -> Vec<(u64, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = streamed(cluster, node).await;
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn audit_lines_reach_the_stream_in_order_exactly_once_across_forwarder_restarts() {
    let Some(nats) = NatsServer::start() else { return };
    let (ca, cb) =
        (Cluster::connect(&nats.config("a")).await.unwrap(), Cluster::connect(&nats.config("b")).await.unwrap());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log_a = crate::audit::AuditLog::open(dir_a.path()).unwrap();
    let log_b = crate::audit::AuditLog::open(dir_b.path()).unwrap();
    for u in ["u1", "u2", "u3"] {
        log_a.append(&audit_event(u)).unwrap();
    }
    log_b.append(&audit_event("b1")).unwrap();

    let stop = CancellationToken::new();
    let fwd = audit::forwarder(ca.clone(), dir_a.path(), stop.clone());
    let _fwd_b = audit::forwarder(cb.clone(), dir_b.path(), CancellationToken::new());
    assert_eq!(wait_streamed(&ca, "a", 3).await.len(), 3);
    stop.cancel();
    fwd.await.unwrap();
    assert_eq!(audit::load_position(&crate::audit::dir(dir_a.path())).seq, 3, "position saved after the acks");

    // Restart with the position file: only the new lines go.
    log_a.append(&audit_event("u4")).unwrap();
    let stop = CancellationToken::new();
    let fwd = audit::forwarder(ca.clone(), dir_a.path(), stop.clone());
    assert_eq!(wait_streamed(&ca, "a", 4).await.len(), 4);
    stop.cancel();
    fwd.await.unwrap();

    // Restart having lost the position file, after longer than the stream's
    // duplicate window (shrunk here): the stream's last line says where to go on.
    let mut stream = ca.js.get_stream(ca.names.audit_stream.as_str()).await.unwrap();
    let mut cfg = stream.info().await.unwrap().config.clone();
    cfg.duplicate_window = Duration::from_millis(100);
    ca.js.update_stream(cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::remove_file(crate::audit::dir(dir_a.path()).join("published")).unwrap();
    log_a.append(&audit_event("u5")).unwrap();
    let _fwd = audit::forwarder(ca.clone(), dir_a.path(), CancellationToken::new());
    let got = wait_streamed(&ca, "a", 5).await;
    tokio::time::sleep(Duration::from_millis(1200)).await; // two more polls: nothing more may arrive
    let again = streamed(&ca, "a").await;
    let want: Vec<(u64, String, String)> = (1..=5).map(|i| (i, format!("u{i}"), "ok".to_string())).collect();
    assert_eq!((got, again), (want.clone(), want), "every line once, in chain order, each sound");
    assert_eq!(wait_streamed(&ca, "b", 1).await, [(1, "b1".to_string(), "ok".to_string())], "node b's log too");

    // The listing names each line's hash in its node's chain.
    let head = log_a.head();
    let table = audit::table(&audit::lines(&ca).await.unwrap());
    assert!(table.contains(&head.hash), "the last line's chain hash is shown:\n{table}");
}
