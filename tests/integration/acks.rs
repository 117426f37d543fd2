//! One test per row of the ACK contract (../shared/research/hl7-ack.md).

use std::time::Duration;

use crate::common::{adt, code, config, normalise, Engine};

async fn engine() -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Engine::start(config(dir.path())).await, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aa_in_original_mode_byte_exact() {
    let (e, _d) = engine().await;
    let mut c = e.connect().await;
    let ack = c.call(&adt("MSG00001")).await;
    assert_eq!(
        normalise(&ack),
        "MSH|^~\\&|RECORDHUB|LCR|PAS|RJ1|<now>||ACK^A01^ACK|<id>|P|2.4\rMSA|AA|MSG00001|Message accepted\r"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_in_enhanced_mode_v25_has_no_msa3() {
    let (e, _d) = engine().await;
    let mut c = e.connect().await;
    let msg = "MSH|^~\\&|LAB|RJ1|RECORDHUB|LCR|20261121083000||ORU^R01^ORU_R01|L1|P|2.5|||AL|NE\rPID|1||9434765919^^^NHS^NH\r";
    let ack = c.call(msg).await;
    assert_eq!(normalise(&ack), "MSH|^~\\&|RECORDHUB|LCR|LAB|RJ1|<now>||ACK^R01^ACK|<id>|P|2.5\rMSA|CA|L1\r");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_retransmission_gets_the_identical_ack_and_is_journaled_once() {
    let (e, d) = engine().await;
    let mut c = e.connect().await;
    let first = c.call(&adt("DUP1")).await;
    // The sender lost the ACK and resends on a new connection a moment later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut c2 = e.connect().await;
    let second = c2.call(&adt("DUP1")).await;
    assert_eq!(first, second, "byte-identical, including MSH-7 and MSH-10");
    // Same id, different content: a reset counter, processed as new.
    let changed = adt("DUP1").replace("SMITH", "SMYTH");
    let third = c2.call(&changed).await;
    assert_eq!(code(&third), "AA");
    assert_ne!(third, first);
    e.stop().await;
    let ids: Vec<_> = crate::common::journal_lines(d.path()).into_iter().map(|j| j["control_id"].clone()).collect();
    assert_eq!(ids, vec!["DUP1", "DUP1"], "the retransmission is not journaled again; the changed one is");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_msh_is_ar_100_with_default_delimiters() {
    let (e, _d) = engine().await;
    let mut c = e.connect().await;
    let ack = normalise(&c.call("PID|1||x\r").await);
    let head = "MSH|^~\\&|RECORDHUB|RECORDHUB|||<now>||ACK^^ACK|<id>|P|2.5\rMSA|AR|\rERR|||100^Segment sequence error^HL70357|E||||";
    assert!(ack.starts_with(head), "{ack:?}");
    assert!(ack.ends_with('\r') && ack.matches('\r').count() == 3, "{ack:?}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_type_is_ar_200_in_v23_layout() {
    let (e, _d) = engine().await;
    let mut c = e.connect().await;
    let ack = c.call("MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ORM^O01|O1|P|2.3\rPID|1\r").await;
    assert_eq!(
        normalise(&ack),
        "MSH|^~\\&|RECORDHUB|LCR|PAS|RJ1|<now>||ACK^O01|<id>|P|2.3\r\
         MSA|AR|O1|message type ORM is not handled (ADT, ORU and MDM are)\r\
         ERR|MSH^1^9^^200&Unsupported message type&HL70357\r"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_processing_id_rejections() {
    let (e, _d) = engine().await;
    let mut c = e.connect().await;
    let v3 = c.call("MSH|^~\\&|PAS|RJ1|RH|LCR|20261121083000||ADT^A01|V1|P|3.0\r").await;
    assert_eq!(code(&v3), "AR");
    assert!(v3.contains("|203^Unsupported version id^HL70357|"), "{v3}");
    let pid = c.call("MSH|^~\\&|PAS|RJ1|RH|LCR|20261121083000||ADT^A01|V2|X|2.5.1\r").await;
    assert!(
        pid.contains("MSA|AR|V2\r") && pid.contains("ERR||MSH^1^11|202^Unsupported processing id^HL70357|E|"),
        "{pid}"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_segment_is_ae_with_location_not_a_shorter_message() {
    let (e, _d) = engine().await;
    let mut c = e.connect().await;
    let ack = c.call("MSH|^~\\&|PAS|RJ1|RH|LCR|20261121083000||ADT^A01|B1|P|2.5\rEVN|A01\r\x01\x02junk\rPID|1\r").await;
    assert!(ack.contains("MSA|AE|B1\r"), "{ack}");
    assert!(ack.contains("ERR||") && ack.contains("^3|100^Segment sequence error^HL70357|E|"), "{ack}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_delimiters_are_answered_in_kind() {
    let (e, _d) = engine().await;
    let mut c = e.connect().await;
    let ack =
        c.call("MSH#@!$%#PAS#RJ1#RECORDHUB#LCR#20261121083000##ADT@A08#C1#P#2.4\rPID#1##9434765919@@@NHS@NH\r").await;
    assert_eq!(
        normalise(&ack),
        "MSH#@!$%#RECORDHUB#LCR#PAS#RJ1#<now>##ACK@A08@ACK#<id>#P#2.4\rMSA#AA#C1#Message accepted\r"
    );
    let v27 = c.call("MSH|^~\\&#|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|C2|P|2.7\rPID|1\r").await;
    assert_eq!(normalise(&v27), "MSH|^~\\&#|RECORDHUB|LCR|PAS|RJ1|<now>||ACK^A01^ACK|<id>|P|2.7\rMSA|AA|C2\r");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msh15_decides_whether_an_accept_ack_is_sent() {
    let (e, _d) = engine().await;
    let mut c = e.connect().await;
    // NE: no ACK at all; ER: only on error; SU: only on success.
    c.send("MSH|^~\\&|PAS|RJ1|RH|LCR|20261121083000||ADT^A01|N1|P|2.5|||NE|NE\rPID|1\r").await;
    c.send("MSH|^~\\&|PAS|RJ1|RH|LCR|20261121083000||ADT^A01|E1|P|2.5|||ER|NE\rPID|1\r").await;
    c.send("MSH|^~\\&|PAS|RJ1|RH|LCR|20261121083000||ORM^O01|E2|P|2.5|||ER|NE\rPID|1\r").await;
    c.send("MSH|^~\\&|PAS|RJ1|RH|LCR|20261121083000||ADT^A01|S1|P|2.5|||SU|NE\rPID|1\r").await;
    c.send("MSH|^~\\&|PAS|RJ1|RH|LCR|20261121083000||ORM^O01|S2|P|2.5|||SU|NE\rPID|1\r").await;
    let a = c.ack().await.unwrap();
    assert!(a.contains("MSA|CR|E2\r"), "the first ACK on the wire is E2's CR: {a}");
    let b = c.ack().await.unwrap();
    assert!(b.contains("MSA|CA|S1\r"), "{b}");
    // N1, E1 and S2 got nothing: the next ACK on the wire is for this one.
    let z = c.call("MSH|^~\\&|PAS|RJ1|RH|LCR|20261121083000||ADT^A01|Z1|P|2.5\rPID|1\r").await;
    assert!(z.contains("MSA|AA|Z1\r"), "{z}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_is_rejected_and_the_connection_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.mllp.max_frame_bytes = 4096;
    let e = Engine::start(cfg).await;
    let mut c = e.connect().await;
    let mut big = adt("BIG1");
    big.push_str(&format!("OBX|1|TX|||{}\r", "x".repeat(100_000)));
    let ack = c.call(&big).await;
    assert!(ack.contains("MSA|AR|BIG1|"), "{ack}");
    assert!(ack.contains("exceeds max_frame_bytes"), "{ack}");
    assert_eq!(code(&c.call(&adt("AFTER")).await), "AA");
    e.stop().await;
}
