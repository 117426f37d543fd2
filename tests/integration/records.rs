//! Issue 3 end to end: two senders, one patient, one record; audited reads;
//! retransmissions add nothing; restart and reindex give the same record.

use std::process::Command;

use crate::common::{code, config, http_as, token, Engine};

const NHS: &str = "9434765919";

pub(crate) fn pas_admit(id: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{id}|P|2.4\r\
         EVN|A01|20261121083000\r\
         PID|1||{NHS}^^^NHS^NH~RJ1-123456^^^RJ1^MR||SMITH^JOHN^^^MR||19700101|M|||1 HIGH ST^^LONDON^^SW1A 1AA||||||||||||||||||||NSTS01\r\
         PV1|1|I|RJ1WARD1^BED1||||C123^JONES^ANN||||||||||||V0001|||||||||||||||||||||||||20261121083000\r\
         AL1|1|DA|PENICILLIN^Penicillin|SV|Rash\r"
    )
}

pub(crate) fn lab_result(id: &str) -> String {
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
    let tok = token(dir.path(), "dr.jones", "clinician");
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&pas_admit("PAS1")).await), "AA");
    assert_eq!(code(&c.call(&lab_result("LAB1")).await), "AA");
    let mdm = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/mdm-t02.hl7")).unwrap();
    assert!(mdm.contains(NHS), "the MDM fixture is for the same patient");
    assert_eq!(code(&c.call(&mdm).await), "CA", "the fixture asks for enhanced-mode ACKs");

    let out = tokio::task::spawn_blocking({
        let (http, tok) = (http.clone(), tok.clone());
        move || record_cmd(&[NHS, "--user", "dr.jones", "--server", &http, "--token", &tok])
    })
    .await
    .unwrap();
    let first = items(&out);
    assert_eq!(facilities(&first), vec!["RAL", "RJ1"], "items from both senders in one record");
    let kinds: Vec<&str> = first.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    for k in ["patient", "encounter", "allergy", "result", "document"] {
        assert!(kinds.contains(&k), "record has a {k} item: {kinds:?}");
    }
    // The document body stays in the journal; the item points at entry 3
    // (the third message journaled), live as after a reindex.
    let doc = first.iter().find(|i| i["kind"] == "document").unwrap();
    assert_eq!(doc["fields"]["body_ref"], "journal:3", "{doc}");

    // A retransmission (same bytes) and a re-send with a new control id add nothing.
    c.call(&lab_result("LAB1")).await;
    assert_eq!(code(&c.call(&lab_result("LAB2")).await), "AA");
    let again = items(
        &tokio::task::spawn_blocking({
            let (http, tok) = (http.clone(), tok.clone());
            move || record_cmd(&[NHS, "--user", "dr.jones", "--server", &http, "--token", &tok])
        })
        .await
        .unwrap(),
    );
    assert_eq!(again.len(), first.len(), "upserts by natural id: nothing added");

    // Unknown patient: clear message, non-zero exit.
    let unknown = tokio::task::spawn_blocking(move || {
        record_cmd(&["9449305552", "--user", "dr.jones", "--server", &http, "--token", &tok])
    })
    .await
    .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no record for NHS number"));
    e.stop().await;

    // After a restart, read straight from the data directory: same record.
    let local = record_cmd(&[NHS, "--user", "dr.smith", "--data", dir.path().to_str().unwrap()]);
    let strip = |v: &[serde_json::Value]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
    assert_eq!(strip(&items(&local)), strip(&again));

    // reindex rebuilds the same record from the journal.
    let re =
        Command::new(env!("CARGO_BIN_EXE_recordhub")).args(["reindex", "--data"]).arg(dir.path()).output().unwrap();
    assert!(re.status.success(), "{}", String::from_utf8_lossy(&re.stderr));
    let after = record_cmd(&[NHS, "--user", "dr.smith", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(strip(&items(&after)), strip(&again), "reindex gives the identical record");

    // Every view was audited: 2 over HTTP + 1 unknown + 2 local, with the user's name.
    let audit = recordhub::audit::AuditLog::open(dir.path()).unwrap().events().unwrap();
    let users: Vec<&str> = audit.iter().map(|a| a.user.as_str()).collect();
    assert_eq!(users, vec!["dr.jones", "dr.jones", "dr.jones", "dr.smith", "dr.smith"]);
    assert!(audit.iter().all(|a| a.action == "read"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_nhs_number_is_accepted_but_not_indexed_and_a_missing_one_parks_under_the_hospital_number() {
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
    assert_eq!(store.unindexed_count().unwrap(), 1, "the Modulus 11 failure");
    let parked = store.parked().unwrap();
    assert_eq!(parked.len(), 1, "waits for its hospital number's NHS number: {parked:?}");
    assert_eq!(parked[0].control_id, "NONHS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_required_rule_is_ae_with_the_field_located_and_unknown_events_are_ar_201() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let mut c = e.connect().await;
    // OBR-3 (filler order number) is required for a result.
    let no_filler = "MSH|^~\\&|WINPATH|RAL|RECORDHUB|LCR|20261130092000||ORU^R01^ORU_R01|E101|P|2.5\r\
                     PID|1||9449305552^^^NHS^NH\rOBR|1|||K^Potassium\r";
    let ack = c.call(no_filler).await;
    assert!(ack.contains("MSA|AE|E101\r"), "{ack}");
    assert!(ack.contains("ERR||OBR^1^3^1^1|101^Required field missing^HL70357|E|"), "{ack}");
    let siu = "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261130093000||ADT^Z99|E201|P|2.4\rPID|1\r";
    let ack = c.call(siu).await;
    assert!(ack.contains("MSA|AR|E201|"), "{ack}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_reload_swaps_atomically_and_a_broken_set_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let maps = dir.path().join("mappings");
    copy_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"), &maps);
    let mut cfg = config(&dir.path().join("data"));
    cfg.mapping.dir = maps.clone();
    let e = Engine::start(cfg).await;
    let url = format!("http://{}/admin/reload", e.running.as_ref().unwrap().http_addr);
    let admin = token(&dir.path().join("data"), "ops", "admin");
    // Break a file: the reload is refused with file:line:col, old mappings stay.
    let adt = maps.join("adt.toml");
    let good = std::fs::read_to_string(&adt).unwrap();
    std::fs::write(&adt, format!("{good}\n[bogus\n")).unwrap();
    let (status, body) = http_as("POST", url.clone(), admin.clone()).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("adt.toml:"), "error names the file and position: {body}");
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&pas_admit("RL1")).await), "AA", "old mappings still in force");
    std::fs::write(&adt, good).unwrap();
    let (status, body) = http_as("POST", url.clone(), admin.clone()).await;
    assert_eq!(status, 200, "{body}");
    e.stop().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
