//! `ack_after = "replicated"` and the loss of NATS servers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::nats::{LEASE_TTL_SECS, PUBLISH_TIMEOUT_SECS};
use super::node::{Node, Spec};
use super::sender::{self, message, msa, wait_until, Conn, Plan, Tally, NHS};
use super::{setup, stream, START_LIMIT};

/// Under load from four senders: one NATS server of three killed → AAs go on
/// and none is lost; a second killed → the active node answers AR with ERR
/// 207 within the publish timeout (or, once it cannot renew its lease, has
/// no listener), never AA; both restarted → the messages
/// that got AR, resent with the same bytes, get AA; every AA'd control id is
/// accepted in the stream exactly once.
#[test]
fn quorum_loss_refuses_with_ar_207() {
    let Some((_serial, mut nats)) = setup() else { return };
    let mut a = Node::spawn(Spec { name: "a", role: "active", ack_after: "replicated" }, &nats.urls());
    a.wait_mllp(START_LIMIT);

    let tally = Arc::new(Tally::default());
    let plans: Vec<Plan> = (0..4)
        .map(|i| Plan {
            prefix: format!("q{i}n"),
            nhs: NHS[i],
            addrs: vec![a.mllp],
            io_limit: Duration::from_secs(15),
            message_limit: Duration::from_secs(60),
            // While the client moves to a live server an AA may turn into AR
            // 207; a sender resends it, and it must then be accepted.
            resend_refused: true,
        })
        .collect();
    let handles = sender::start(plans, &tally);
    assert!(wait_until(START_LIMIT, || tally.accepted.load(Ordering::Relaxed) >= 50), "no load\n{}", a.log());
    nats.kill(0);
    let at_kill = tally.accepted.load(Ordering::Relaxed);
    let more = wait_until(Duration::from_secs(30), || tally.accepted.load(Ordering::Relaxed) >= at_kill + 50);
    assert!(more, "AAs stopped with two of three NATS servers up\n{}", a.log());
    sender::stop(&tally, handles);
    let mut acked = tally.acked_ids();
    stream::assert_each_once(&stream::entries(&nats), &acked);
    eprintln!("one NATS server down: {} acknowledged, none lost", acked.len());

    // No quorum: refused, with the code that tells the sender to resend. For
    // a few lease TTLs, message after message (reconnecting as a PAS would):
    // each is answered AR 207 or finds no listener (a node that cannot renew
    // its lease without a quorum stands down), never AA.
    nats.kill(1);
    let limit = Duration::from_secs(PUBLISH_TIMEOUT_SECS + 10);
    let killed = Instant::now();
    let (mut refused, mut no_listener) = (Vec::new(), 0);
    let mut k = 0;
    while killed.elapsed() < Duration::from_secs(3 * LEASE_TTL_SECS) {
        let id = format!("nq{k}");
        k += 1;
        let asked = Instant::now();
        match Conn::open(a.mllp, limit).and_then(|mut c| c.call(&message(&id, NHS[0]))) {
            Ok(ack) => {
                let text = String::from_utf8_lossy(&ack).into_owned();
                assert!(
                    text.contains("MSA|AR|") && text.contains("207"),
                    "without quorum {id} must get AR 207: {text}"
                );
                eprintln!("no quorum: {id} answered AR 207 after {:?}", asked.elapsed());
                refused.push(id);
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(_) => {
                no_listener += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    eprintln!("no quorum: {} answered AR 207, {no_listener} attempts found no listener, none AA", refused.len());
    assert!(!refused.is_empty(), "without quorum the active node never answered AR 207\n{}", a.log());

    nats.restart(0);
    nats.restart(1);
    // A node that stood down exits for its service manager to restart it as
    // a follower: the test is that service manager.
    if !a.is_running() {
        eprintln!("the active node stood down without quorum and exited; restarting it");
        a.restart();
    }
    for id in &refused {
        let mut last = String::new();
        let accepted = wait_until(Duration::from_secs(60), || {
            // The service manager again: a node whose start-up met a
            // recovering NATS exits; it is restarted (systemd Restart=).
            if !a.is_running() {
                a.restart();
            }
            let ack = Conn::open(a.mllp, limit).and_then(|mut c| c.call(&message(id, NHS[0])));
            let Ok(ack) = ack else {
                // Not listening yet: the node takes the lease again first.
                std::thread::sleep(Duration::from_millis(200));
                return false;
            };
            last = String::from_utf8_lossy(&ack).into_owned();
            match msa(&ack) {
                Some((code, _)) if code == "AA" => true,
                _ => {
                    assert!(last.contains("MSA|AR|") && last.contains("207"), "while recovering: {last}");
                    std::thread::sleep(Duration::from_millis(500));
                    false
                }
            }
        });
        assert!(accepted, "{id}, resent after the quorum came back, got no AA: {last}\n{}", a.log());
        acked.push(id.clone());
    }
    stream::assert_each_once(&stream::entries(&nats), &acked);
}
