//! Issue 9 end to end through the real server: a cancelled admission leaves
//! the record but stays in its history; a result with only a hospital number
//! is parked, listed without patient data, and filed when the PAS links the
//! number, without a re-send; restart and reindex give the same record.

use std::process::Command;

use crate::common::{code, config, Engine};

const NHS: &str = "9434765919";

fn adt(event: &str, id: &str, time: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|{time}||ADT^{event}^ADT_A01|{id}|P|2.4\r\
         EVN|{event}|{time}|||||{time}\r\
         PID|1||{NHS}^^^NHS^NH~RJ1-123456^^^RJ1^MR||SMITH^JOHN^^^MR||19700101|M|||1 HIGH ST^^LONDON^^SW1A 1AA||||||||||||||||||||NSTS01\r\
         PV1|1|I|RJ1WARD1^^BED1||||C123^JONES^ANN||||||||||||V0001|||||||||||||||||||||||||20261121083000\r"
    )
}

fn lab_result_local_only(id: &str) -> String {
    format!(
        "MSH|^~\\&|WINPATH|RJ1|RECORDHUB|LCR|20261121090000||ORU^R01^ORU_R01|{id}|P|2.4\r\
         PID|1||RJ1-123456^^^RJ1^MR||SMITH^JOHN||19700101|M\r\
         OBR|1|PL1|FL1^WINPATH|FBC^Full blood count^L|||20261121085000|||||||||||||||20261121090000|||F\r\
         OBX|1|NM|HB^Haemoglobin^L||135|g/L|130-170|N|||F\r"
    )
}

/// Runs the CLI against a server with a token it accepts (admin for `parked`).
fn cli(args: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recordhub"));
    if let Some(i) = args.iter().position(|a| *a == "--server") {
        let role = if args[0] == "parked" { "admin" } else { "clinician" };
        let bearer = crate::common::bearer_for(args[i + 1], role);
        cmd.env("RECORDHUB_TOKEN", bearer.trim_start_matches("Bearer "));
    }
    let out = cmd.args(args).output().expect("recordhub runs");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("prints JSON")
}

fn kinds(record: &serde_json::Value) -> Vec<String> {
    record["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_admission_leaves_the_record_and_a_parked_result_is_filed_when_linked() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    let e = Engine::start(cfg.clone()).await;
    let http = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    let mut c = e.connect().await;

    // The result arrives first, with only the hospital number: parked.
    assert_eq!(code(&c.call(&lab_result_local_only("LAB1")).await), "AA");
    let parked = tokio::task::spawn_blocking({
        let http = http.clone();
        move || cli(&["parked", "--server", &http])
    })
    .await
    .unwrap();
    let listed = parked["parked"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{parked}");
    assert_eq!(listed[0]["control_id"], "LAB1");
    assert!(!parked.to_string().contains("RJ1-123456") && !parked.to_string().contains("SMITH"), "no patient data");

    // The cancel arrives before the admission it cancels; the admission links the number.
    assert_eq!(code(&c.call(&adt("A11", "CANCEL1", "20261121100000")).await), "AA");
    assert_eq!(code(&c.call(&adt("A01", "ADMIT1", "20261121083000")).await), "AA");

    let (record, history, parked) = tokio::task::spawn_blocking({
        let http = http.clone();
        move || {
            (
                cli(&["record", NHS, "--user", "dr.jones", "--server", &http]),
                cli(&["history", NHS, "--user", "dr.jones", "--server", &http]),
                cli(&["parked", "--server", &http]),
            )
        }
    })
    .await
    .unwrap();
    let shown = kinds(&record);
    assert!(!shown.contains(&"encounter".to_string()), "a cancelled admission is not shown: {shown:?}");
    assert!(shown.contains(&"result".to_string()), "the parked result was filed without a re-send: {shown:?}");
    assert!(shown.contains(&"identifier".to_string()), "the hospital number is on the record: {shown:?}");
    assert_eq!(parked["parked"].as_array().unwrap().len(), 0, "{parked}");
    let enc = history["items"].as_array().unwrap().iter().find(|i| i["kind"] == "encounter").expect("in history");
    assert_eq!(enc["shown"], false);
    assert_eq!(enc["hidden"]["reason"], "cancelled", "{enc}");
    assert_eq!(enc["hidden"]["by"]["control_id"], "CANCEL1", "{enc}");
    assert_eq!(enc["versions"].as_array().unwrap().len(), 2, "both versions kept: {enc}");
    e.stop().await;

    // Restart from the data directory, and reindex: the same record.
    let data = dir.path().to_str().unwrap().to_string();
    let local = cli(&["record", NHS, "--user", "dr.smith", "--data", &data]);
    let strip = |v: &serde_json::Value| v["items"].to_string();
    assert_eq!(strip(&local), strip(&record));
    let re = Command::new(env!("CARGO_BIN_EXE_recordhub")).args(["reindex", "--data", &data]).output().unwrap();
    assert!(re.status.success(), "{}", String::from_utf8_lossy(&re.stderr));
    assert_eq!(strip(&cli(&["record", NHS, "--user", "dr.smith", "--data", &data])), strip(&record));
}
