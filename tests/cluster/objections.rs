//! Governance across the cluster: an objection recorded on one node.

use std::time::{Duration, Instant};

use serde_json::json;

use super::node::{encounters, send_json, Node, Spec};
use super::sender::{message, msa, wait_until, Conn, NHS};
use super::{setup, READ_BOUND, START_LIMIT};

/// An objection posted to the active node's admin API makes the reader
/// answer 403 (objection) for that patient within READ_BOUND, while another
/// patient stays readable; withdrawing it on the active node makes the
/// reader serve the record again, restored from its journal.
#[test]
fn objection_on_one_node_hides_the_record_on_every_reader() {
    let Some((_serial, nats)) = setup() else { return };
    let urls = nats.urls();
    let mut a = Node::spawn(Spec { name: "a", role: "active", ack_after: "replicated" }, &urls);
    a.wait_mllp(START_LIMIT);
    let mut r = Node::spawn(Spec { name: "r", role: "reader", ack_after: "replicated" }, &urls);
    r.wait_http("/ready", START_LIMIT);

    let (objector, other) = (NHS[0], NHS[1]);
    let mut conn = Conn::open(a.mllp, Duration::from_secs(15)).expect("connect to the active node");
    for (id, nhs) in [("obj1", objector), ("obj2", other)] {
        let ack = conn.call(&message(id, nhs)).expect("an ACK");
        assert_eq!(msa(&ack), Some(("AA".into(), id.to_string())), "{}", String::from_utf8_lossy(&ack));
    }
    let shows =
        |nhs: &str, id: &str| r.record(nhs).is_some_and(|(s, b)| s == 200 && encounters(&b).iter().any(|e| e == id));
    assert!(wait_until(READ_BOUND, || shows(objector, "obj1")), "the reader never served obj1\n{}", r.log());

    let admin = a.token("admin");
    let body =
        json!({ "nhs_number": objector, "reason": "patient asked", "recorded_by": "officer.c", "source": "patient" });
    let added = send_json("POST", &format!("{}/admin/objections", a.http_url()), &admin, &body);
    assert_eq!(added.as_ref().map(|(s, _)| *s), Some(200), "objection not added on the active node: {added:?}");
    let at = Instant::now();
    let hidden = wait_until(READ_BOUND, || r.record(objector).is_some_and(|(s, b)| s == 403 && b["objection"] == true));
    assert!(hidden, "the reader still serves an objected record {READ_BOUND:?} after the objection\n{}", r.log());
    eprintln!("objection on the active node → 403 on the reader after {:?}", at.elapsed());
    assert!(shows(other, "obj2"), "another patient's record must stay readable on the reader");

    let body = json!({ "recorded_by": "officer.c", "reason": "patient withdrew the objection" });
    let removed = send_json("DELETE", &format!("{}/admin/objections/{objector}", a.http_url()), &admin, &body);
    assert_eq!(removed.as_ref().map(|(s, _)| *s), Some(200), "objection not withdrawn: {removed:?}");
    let at = Instant::now();
    assert!(
        wait_until(READ_BOUND, || shows(objector, "obj1")),
        "the reader does not serve the record again {READ_BOUND:?} after the withdrawal\n{}",
        r.log()
    );
    eprintln!("withdrawal on the active node → record served on the reader after {:?}", at.elapsed());
}
