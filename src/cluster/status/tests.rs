//! Tests of the status report and table: the table from reports alone, and
//! the whole round trip through a real `nats-server` (skipped, saying so,
//! when it is not installed).

use super::*;
use crate::cluster::testing::NatsServer;

fn status(node: &str, role: &str, journal_seq: u64, applied_seq: u64, at_ms: u64) -> NodeStatus {
    NodeStatus {
        node: node.into(),
        role: role.into(),
        journal_seq,
        applied_seq,
        at_ms,
        mllp: (role == "active").then(|| "10.0.0.1:2575".into()),
        http: Some(format!("{node}:8080")),
    }
}

#[test]
fn the_table_shows_each_node_its_lag_a_silent_node_and_the_lease_holder() {
    let now = 1_000_000;
    let reports = vec![status("b", "standby", 7, 5, now - 12_000), status("a", "active", 9, 9, now - 1_000)];
    let lease = Some(LeaseView { holder: "a".into(), revision: 42 });
    let table = table(&Snapshot::new(9, lease, reports, now));
    let want = "\
NODE  ROLE     JOURNAL SEQ  APPLIED SEQ  LAG  LAST REPORT       MLLP           HTTP
a*    active   9            9            0    1s ago            10.0.0.1:2575  a:8080
b     standby  7            5            4    12s ago (silent)  -              b:8080
lease: held by a at revision 42 (* above)
stream: last seq 9
";
    assert_eq!(table, want);
    let none = super::table(&Snapshot::new(0, None, vec![], now));
    assert!(none.contains("no node has reported") && none.contains("lease: held by no node"), "{none}");
}

#[test]
fn the_lease_value_names_the_holder_as_a_name_or_json() {
    assert_eq!(lease_holder(b"node-a"), "node-a");
    assert_eq!(lease_holder(br#"{"node":"b","since_ms":1}"#), "b");
}

#[tokio::test]
async fn reported_nodes_and_the_lease_are_read_back_from_nats() {
    let Some(nats) = NatsServer::start() else { return };
    let (a, b) =
        (Cluster::connect(&nats.config("a")).await.unwrap(), Cluster::connect(&nats.config("b")).await.unwrap());
    let now = crate::pipeline::now_ms();
    report(&a, &status("a", "active", 3, 3, now)).await.unwrap();
    report(&b, &status("b", "reader", 3, 1, now)).await.unwrap();
    report(&b, &status("b", "reader", 3, 2, now)).await.unwrap(); // the newer report wins
    let kv = a.js.get_key_value(a.names.lease_bucket.as_str()).await.unwrap();
    let rev = kv.create(LEASE_KEY, "a".into()).await.unwrap();
    for _ in 0..3 {
        a.js.publish(a.names.journal_subject.clone(), "x".into()).await.unwrap().await.unwrap();
    }

    let snap = snapshot(&b).await.unwrap();
    assert_eq!(snap.lease, Some(LeaseView { holder: "a".into(), revision: rev }));
    assert_eq!(snap.stream_last_seq, 3);
    let rows: Vec<(&str, &str, u64, bool, bool)> = snap
        .nodes
        .iter()
        .map(|r| (r.status.node.as_str(), r.status.role.as_str(), r.lag, r.silent, r.holds_lease))
        .collect();
    assert_eq!(rows, [("a", "active", 0, false, true), ("b", "reader", 1, false, false)]);
    let text = table(&snap);
    assert!(text.contains(&format!("lease: held by a at revision {rev}")), "{text}");
}

#[test]
fn the_status_command_exits_1_without_a_cluster_section_or_when_nats_cannot_be_reached() {
    let mut cfg = crate::config::Config::default();
    assert_eq!(crate::cli::cluster_status(&cfg, false).unwrap(), std::process::ExitCode::from(1));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let d = std::time::Duration::from_millis(300);
    cfg.cluster = Some(crate::cluster::ClusterConfig {
        servers: vec![format!("nats://127.0.0.1:{port}")],
        node: "a".into(),
        role: crate::cluster::Role::Active,
        stream: "RECORDHUB".into(),
        replicas: 1,
        ack_after: crate::cluster::AckAfter::Local,
        publish_timeout: d,
        lease_ttl: d,
        connect_timeout: d,
        ready_max_lag: 1,
        creds: None,
        tls_ca: None,
        tls_cert: None,
        tls_key: None,
    });
    assert_eq!(crate::cli::cluster_status(&cfg, true).unwrap(), std::process::ExitCode::from(1));
}
