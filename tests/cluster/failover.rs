//! Failover: kill -9 of the active node under load; the standby takes over.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::node::{encounters, Node, Spec};
use super::sender::{self, wait_until, Plan, Tally, NHS};
use super::{setup, stream, FAILOVER_BOUND, READ_BOUND, START_LIMIT};

const SENDERS: usize = 8;

/// Eight senders, each holding [active, standby] as its addresses, send one
/// message at a time; the active node is killed with SIGKILL once ACKs flow.
/// The standby answers AA within FAILOVER_BOUND (measured and printed); the
/// senders resend what had no ACK; then every AA'd control id is accepted
/// in the journal stream exactly once and served by the reader. Any refusal
/// on the way must be AR 207 (a "resend" a sender acts on).
#[test]
fn failover_under_load_loses_nothing_and_applies_nothing_twice() {
    let Some((_serial, nats)) = setup() else { return };
    let urls = nats.urls();
    let mut a = Node::spawn(Spec { name: "a", role: "active", ack_after: "replicated" }, &urls);
    a.wait_mllp(START_LIMIT);
    let mut b = Node::spawn(Spec { name: "b", role: "standby", ack_after: "replicated" }, &urls);
    let mut r = Node::spawn(Spec { name: "r", role: "reader", ack_after: "replicated" }, &urls);
    b.wait_http("/health", START_LIMIT);
    r.wait_http("/ready", START_LIMIT);

    let tally = Arc::new(Tally::default());
    let plans: Vec<Plan> = (0..SENDERS)
        .map(|i| Plan {
            prefix: format!("f{i}n"),
            nhs: NHS[i % NHS.len()],
            addrs: vec![a.mllp, b.mllp],
            io_limit: Duration::from_secs(10),
            message_limit: Duration::from_secs(60),
            resend_refused: true,
        })
        .collect();
    let handles = sender::start(plans, &tally);
    let flowing = wait_until(START_LIMIT, || tally.accepted.load(Ordering::Relaxed) >= 100);
    assert!(flowing, "fewer than 100 AAs from the active node\n{}", a.log());

    let killed = Instant::now();
    a.kill();
    let before = tally.accepted.load(Ordering::Relaxed);
    let took_over = wait_until(Duration::from_secs(30), || tally.first_ack_from(b.mllp, killed).is_some());
    assert!(took_over, "the standby gave no AA within 30 s of the kill\n{}", b.log());
    let failover = tally.first_ack_from(b.mllp, killed).map(|t| t - killed).unwrap_or_default();
    eprintln!("failover: kill -9 of the active node → first AA from the standby: {failover:?}");
    assert!(failover <= FAILOVER_BOUND, "failover took {failover:?} (bound {FAILOVER_BOUND:?})\n{}", b.log());
    // Load continues on the new active node, then the senders finish the
    // message in hand (resending it until it is acknowledged).
    let more = wait_until(Duration::from_secs(30), || tally.accepted.load(Ordering::Relaxed) >= before + 100);
    assert!(more, "fewer than 100 AAs after the failover\n{}", b.log());
    sender::stop(&tally, handles);

    let refused = tally.refused.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let bad: Vec<String> = refused
        .iter()
        .map(|(_, ack)| String::from_utf8_lossy(ack).into_owned())
        .filter(|ack| !(ack.contains("MSA|AR|") && ack.contains("207")))
        .collect();
    assert!(bad.is_empty(), "refusals other than AR 207 during failover: {:?}", &bad[..bad.len().min(3)]);
    assert!(tally.stray.lock().unwrap_or_else(|e| e.into_inner()).is_empty(), "ACKs for another message");
    let acked = tally.acked_ids();
    eprintln!("{} acknowledged, {} AR 207 answers resent", acked.len(), refused.len());

    // The old active node comes back: the lease is the standby's, so it
    // must not ingest (fenced) while the new active node goes on with AA.
    // It either follows, or (when its journal holds entries committed but
    // never replicated, none of them AA'd) refuses to start, saying how to
    // re-sync; both are safe.
    a.restart();
    if !a.wait_http_or_exit("/health", START_LIMIT) {
        // Give the stderr reader a moment to file the last line.
        std::thread::sleep(Duration::from_millis(200));
        let log = a.log();
        assert!(log.contains("diverges from the stream"), "the old active node exited for another reason:\n{log}");
        eprintln!("the old active node refused to start: its journal holds entries never replicated (re-sync needed)");
    }
    let mut acked = acked;
    let mut conn = sender::Conn::open(b.mllp, Duration::from_secs(15)).expect("connect to the new active node");
    let ack = conn.call(&sender::message("f0nafter", NHS[0])).expect("an ACK from the new active node");
    assert_eq!(sender::msa(&ack), Some(("AA".into(), "f0nafter".into())), "{}", String::from_utf8_lossy(&ack));
    acked.push("f0nafter".into());
    let ingests = wait_until(Duration::from_secs(2 * super::nats::LEASE_TTL_SECS), || {
        sender::Conn::open(a.mllp, Duration::from_secs(5))
            .and_then(|mut c| c.call(&sender::message("f0nstale", NHS[0])))
            .is_ok_and(|ack| sender::msa(&ack).is_some_and(|(code, _)| code == "AA"))
    });
    assert!(!ingests, "the old active node, back after the failover, acknowledged a message\n{}", a.log());

    let entries = stream::entries(&nats);
    stream::assert_each_once(&entries, &acked);
    assert!(entries.iter().all(|e| e.control_id != "f0nstale"), "the fenced node's message is in the stream");
    assert_reader_has(&r, &acked);
}

/// The reader serves every acknowledged message (each its own encounter),
/// within READ_BOUND once the load has stopped.
fn assert_reader_has(r: &Node, acked: &[String]) {
    let mut by_patient: HashMap<&str, Vec<&String>> = HashMap::new();
    for id in acked {
        let sender: usize = id[1..].split('n').next().and_then(|s| s.parse().ok()).expect("ids are f<i>n<n>");
        by_patient.entry(NHS[sender % NHS.len()]).or_default().push(id);
    }
    for (nhs, ids) in by_patient {
        let mut missing = ids.len();
        let all = wait_until(READ_BOUND, || {
            let served = r.record(nhs).map(|(_, body)| encounters(&body)).unwrap_or_default();
            missing = ids.iter().filter(|id| !served.contains(id)).count();
            missing == 0
        });
        assert!(all, "the reader lacks {missing} of {} acknowledged messages for {nhs}\n{}", ids.len(), r.log());
    }
}
