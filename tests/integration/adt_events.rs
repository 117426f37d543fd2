//! Issue 9: every ADT trigger event of HL7 table 0003 (A01–A62) is accepted
//! (AA) by the real server: applied where the record has a meaning for it,
//! knowingly ignored (journaled, counted) where not. Before issue 9 only 15
//! events were mapped and the other 47 got AR 201, which fills a PAS's queue.

use crate::common::{code, config, Engine};

const NHS: &str = "9434765919";

/// A realistic ADT message for `event`: PID with a verified NHS number and a
/// hospital number, a PV1 for the visit, an MRG for the merge and
/// identifier-change events, and an IAM for A60.
fn adt(event: &str, control_id: &str) -> String {
    let mut m = format!(
        "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^{event}^ADT_{event}|{control_id}|P|2.4\r\
         EVN|{event}|20261121083000||||20261121083000\r\
         PID|1||{NHS}^^^NHS^NH~K4000001^^^RJ1^MR||SMITH^JOHN^^^MR||19700101|M|||1 HIGH ST^^LONDON^^SW1A 1AA|||||||||||||||||||||NSTS01\r\
         PV1|1|I|RJ1WARD1^^BED1||||C123^JONES^ANN^^^DR|||300|||||||||V4000001^^^RJ1^VN\r"
    );
    let n: u32 = event[1..].parse().unwrap_or(0);
    // Merge, move and identifier-change events (A34–A37, A39–A42, A44, A46–A51) carry MRG.
    if matches!(n, 34..=37 | 39..=42 | 44 | 46..=51) {
        m.push_str("MRG|K4000999^^^RJ1^MR\r");
    }
    if n == 60 {
        m.push_str("IAM|1|DA|PENICILLIN^Penicillin^L|SV|Rash|A|ALG-1\r");
    }
    m
}

/// MSA-2 of an ACK.
fn msa2(ack: &str) -> String {
    ack.split('\r').find(|s| s.starts_with("MSA")).and_then(|s| s.split('|').nth(2)).unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_adt_event_a01_to_a62_gets_aa_from_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let mut c = e.connect().await;
    let mut refused = Vec::new();
    for n in 1..=62 {
        let event = format!("A{n:02}");
        let id = format!("EVT{n:02}");
        let ack = c.call(&adt(&event, &id)).await;
        if code(&ack) != "AA" || msa2(&ack) != id {
            refused.push(format!("{event}: {}", ack.replace('\r', " / ")));
        }
    }
    e.stop().await;
    assert!(refused.is_empty(), "{} of 62 ADT events not accepted:\n{}", refused.len(), refused.join("\n"));
}
