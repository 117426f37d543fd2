//! Issue 3 end to end: two senders, one patient, one record; audited reads;
//! retransmissions add nothing; restart and reindex give the same record.

use std::process::Command;

use crate::common::{code, config, Engine};

const NHS: &str = "9434765919";

fn pas_admit(id: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{id}|P|2.4\r\
         EVN|A01|20261121083000\r\
         PID|1||{NHS}^^^NHS^NH~RJ1-123456^^^RJ1^MR||SMITH^JOHN^^^MR||19700101|M|||1 HIGH ST^^LONDON^^SW1A 1AA||||||||||||||||||||NSTS01\r\
         PV1|1|I|RJ1WARD1^BED1||||C123^JONES^ANN||||||||||||V0001|||||||||||||||||||||||||20261121083000\r\
         AL1|1|DA|PENICILLIN^Penicillin|SV|Rash\r"
    )
}

fn lab_result(id: &str) -> String {
    format!(
        "MSH|^~\\&|WINPATH|RAL|RECORDHUB|LCR|20261121090000||ORU^R01^ORU_R01|{id}|P|2.4\r\
         PID|1||{NHS}^^^NHS^NH~RAL-999^^^RAL^MR||SMITH^JOHN||19700101|M\r\
         OBR|1|PL1|FL1^WINPATH|FBC^Full blood count^L|||20261121085000|||||||||||||||20261121090000|||F\r\
         OBX|1|NM|HB^Haemoglobin^L||135|g/L|130-170|N|||F\r\
         OBX|2|NM|WBC^White cells^L||11.2|10*9/L|4.0-11.0|H|||F\r"
    )
}

fn record_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_recordhub")).args(["record"]).args(args).output().expect("recordhub record runs")
}

fn items(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "record failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("record prints JSON");
    v["items"].as_array().expect("items").clone()
}

fn facilities(items: &[serde_json::Value]) -> Vec<String> {
    let mut f: Vec<String> =
        items.iter().map(|i| i["provenance"]["sending_facility"].as_str().unwrap_or("").to_string()).collect();
    f.sort();
    f.dedup();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_one_record_retransmission_restart_and_reindex() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    let e = Engine::start(cfg.clone()).await;
    let http = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&pas_admit("PAS1")).await), "AA");
    assert_eq!(code(&c.call(&lab_result("LAB1")).await), "AA");

    let out = tokio::task::spawn_blocking({
        let http = http.clone();
        move || record_cmd(&[NHS, "--user", "dr.jones", "--server", &http])
    })
    .await
    .unwrap();
    let first = items(&out);
    assert_eq!(facilities(&first), vec!["RAL", "RJ1"], "items from both senders in one record");
    let kinds: Vec<&str> = first.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    for k in ["patient", "encounter", "allergy", "result"] {
        assert!(kinds.contains(&k), "record has a {k} item: {kinds:?}");
    }

    // A retransmission (same bytes) and a re-send with a new control id add nothing.
    c.call(&lab_result("LAB1")).await;
    assert_eq!(code(&c.call(&lab_result("LAB2")).await), "AA");
    let again = items(
        &tokio::task::spawn_blocking({
            let http = http.clone();
            move || record_cmd(&[NHS, "--user", "dr.jones", "--server", &http])
        })
        .await
        .unwrap(),
    );
    assert_eq!(again.len(), first.len(), "upserts by natural id: nothing added");

    // Unknown patient: clear message, non-zero exit. No X-User: refused.
    let unknown =
        tokio::task::spawn_blocking(move || record_cmd(&["9449305552", "--user", "dr.jones", "--server", &http])).await.unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no record for NHS number"));
    e.stop().await;

    // After a restart, read straight from the data directory: same record.
    let local = record_cmd(&[NHS, "--user", "dr.smith", "--data", dir.path().to_str().unwrap()]);
    let strip = |v: &[serde_json::Value]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
    assert_eq!(strip(&items(&local)), strip(&again));

    // reindex rebuilds the same record from the journal.
    let re = Command::new(env!("CARGO_BIN_EXE_recordhub"))
        .args(["reindex", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(re.status.success(), "{}", String::from_utf8_lossy(&re.stderr));
    let after = record_cmd(&[NHS, "--user", "dr.smith", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(strip(&items(&after)), strip(&again), "reindex gives the identical record");

    // Every view was audited: 2 over HTTP + 1 unknown + 2 local, with the user's name.
    let store = recordhub::store::Store::open(&recordhub::pipeline::index_dir(dir.path())).unwrap();
    let audit = store.audit_events().unwrap();
    let users: Vec<&str> = audit.iter().map(|a| a.user.as_str()).collect();
    assert_eq!(users, vec!["dr.jones", "dr.jones", "dr.jones", "dr.smith", "dr.smith"]);
    assert!(audit.iter().all(|a| a.action == "read"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_invalid_nhs_number_is_accepted_but_not_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    let e = Engine::start(cfg).await;
    let mut c = e.connect().await;
    let bad = pas_admit("BADNHS").replace(NHS, "9990000001");
    assert_eq!(code(&c.call(&bad).await), "AA", "kept and acknowledged: resending cannot fix it");
    let none = pas_admit("NONHS").replace(&format!("{NHS}^^^NHS^NH~"), "");
    assert_eq!(code(&c.call(&none).await), "AA");
    e.stop().await;
    assert_eq!(crate::common::journal_lines(dir.path()).len(), 2, "both are in the journal");
    let store = recordhub::store::Store::open(&recordhub::pipeline::index_dir(dir.path())).unwrap();
    assert_eq!(store.unindexed_count().unwrap(), 2);
}
