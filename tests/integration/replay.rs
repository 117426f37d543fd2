//! What replay and `reindex` rebuild: every accepted message, whatever its
//! sender asked of the ACK.

use std::process::Command;

use crate::common::{code, config, Engine};

/// An ADT^A01 in enhanced mode with MSH-15 (accept ack) set, filing the
/// encounter `visit`.
fn adt_enhanced(control_id: &str, accept_ack: &str, visit: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{control_id}|P|2.5|||{accept_ack}|NE\r\
         EVN|A01|20261121083000\r\
         PID|1||9434765919^^^NHS^NH||SMITH^JOHN||19700101|M\r\
         PV1|1|I|RJ1WARD1^BED1||||C123^JONES^ANN||||||||||||{visit}\r"
    )
}

fn encounters(data: &std::path::Path) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_recordhub"))
        .args(["record", "9434765919", "--user", "replay-test", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "encounter")
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Hole 5: messages sent with MSH-15 NE or ER got no ACK, so the journal
/// recorded no ACK code and replay skipped them: after a restart with a
/// lost index, or a `reindex`, they vanished from the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_with_ne_or_er_survive_replay_and_reindex() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let mut c = e.connect().await;
    c.send(&adt_enhanced("NE1", "NE", "VNE")).await;
    c.send(&adt_enhanced("ER1", "ER", "VER")).await;
    // ACKs come in order and the first two ask for none: the next ACK is AL's.
    let ack = c.call(&adt_enhanced("AL1", "AL", "VAL")).await;
    assert_eq!(code(&ack), "CA");
    assert!(ack.contains("|AL1"), "{ack}");
    e.stop().await;
    let all = ["VAL", "VER", "VNE"];
    assert_eq!(encounters(dir.path()), all);

    std::fs::remove_dir_all(recordhub::pipeline::index_dir(dir.path())).unwrap();
    assert_eq!(encounters(dir.path()), all, "rebuilt from the journal at start-up");

    let re =
        Command::new(env!("CARGO_BIN_EXE_recordhub")).args(["reindex", "--data"]).arg(dir.path()).output().unwrap();
    assert!(re.status.success(), "{}", String::from_utf8_lossy(&re.stderr));
    assert_eq!(encounters(dir.path()), all, "after reindex");
}
