//! Read replicas: what the active node acknowledged, a reader serves.

use std::time::{Duration, Instant};

use super::node::{encounters, Node, Spec};
use super::sender::{message, msa, wait_until, Conn, NHS};
use super::{median_max, setup, READ_BOUND, START_LIMIT};

/// Active + standby + reader: twenty messages sent one at a time to the
/// active node each get AA, and after each AA the reader (and the standby)
/// serves the patient's record with that message's encounter within
/// READ_BOUND. Prints the measured lag (AA → visible on the reader).
#[test]
fn reader_serves_what_the_active_node_acknowledged() {
    let Some((_serial, nats)) = setup() else { return };
    let urls = nats.urls();
    let mut a = Node::spawn(Spec { name: "a", role: "active", ack_after: "replicated" }, &urls);
    a.wait_mllp(START_LIMIT);
    let mut b = Node::spawn(Spec { name: "b", role: "standby", ack_after: "replicated" }, &urls);
    let mut r = Node::spawn(Spec { name: "r", role: "reader", ack_after: "replicated" }, &urls);
    b.wait_http("/health", START_LIMIT);
    r.wait_http("/ready", START_LIMIT);

    let nhs = NHS[0];
    let reader_token = r.token("clinician");
    let url = format!("{}/patients/{nhs}", r.http_url());
    let mut conn = Conn::open(a.mllp, Duration::from_secs(15)).expect("connect to the active node");
    let mut lags = Vec::new();
    let mut sent = Vec::new();
    for i in 0..20 {
        let id = format!("read{i}");
        let ack = conn.call(&message(&id, nhs)).unwrap_or_else(|e| panic!("no ACK for {id}: {e}\n{}", a.log()));
        assert_eq!(msa(&ack), Some(("AA".into(), id.clone())), "{}", String::from_utf8_lossy(&ack));
        let acked = Instant::now();
        sent.push(id.clone());
        let seen = wait_until(READ_BOUND, || {
            super::node::get(&url, &reader_token).is_some_and(|(s, body)| s == 200 && encounters(&body).contains(&id))
        });
        assert!(seen, "the reader did not serve {id} within {READ_BOUND:?} of its AA\n{}", r.log());
        lags.push(acked.elapsed());
    }
    let (median, max) = median_max(lags);
    eprintln!("reader lag after AA (20 messages, lockstep): median {median:?}, max {max:?}");

    // The standby follows the same stream into its own index.
    let seen = wait_until(READ_BOUND, || {
        b.record(nhs).is_some_and(|(s, body)| s == 200 && sent.iter().all(|id| encounters(&body).contains(id)))
    });
    assert!(seen, "the standby does not serve all 20 messages\n{}", b.log());
}
