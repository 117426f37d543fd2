//! Issue 10, objections: a patient who objected is never shown (403, exit 3),
//! senders cannot tell (same ACK), nothing new is filed, withdrawing restores
//! the record from the journal, and the register with its audited log
//! survives restart and reindex. Over the admin API and the CLI.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{code, config, normalise, Engine};

const NHS: &str = "9434765919";
const OTHER: &str = "9434765870";

fn admit(control_id: &str, nhs: &str, visit: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{control_id}|P|2.4\r\
         EVN|A01|20261121083000\r\
         PID|1||{nhs}^^^NHS^NH~RJ1-{nhs}^^^RJ1^MR||SMITH^JOHN^^^MR||19700101|M|||||||||||||||||||||||||NSTS01\r\
         PV1|1|I|RJ1WARD1^BED1||||C123^JONES^ANN||||||||||||{visit}\r"
    )
}

/// Runs the CLI; against a server (`--server URL`) with a token that
/// server accepts (clinician for `record`, admin for `objection`).
fn recordhub(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recordhub"));
    if let Some(i) = args.iter().position(|a| *a == "--server") {
        let role = if args[0] == "record" { "clinician" } else { "admin" };
        let bearer = crate::common::bearer_for(args[i + 1], role);
        cmd.env("RECORDHUB_TOKEN", bearer.trim_start_matches("Bearer "));
    }
    cmd.args(args).output().expect("recordhub runs")
}

async fn recordhub_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        recordhub(&args)
    })
    .await
    .unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn get(url: String) -> (u16, serde_json::Value) {
    let auth = crate::common::bearer_for(&url, crate::common::role_for(&url));
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut r = agent.get(&url).header("Authorization", auth).call().expect("GET");
        let text = r.body_mut().read_to_string().unwrap();
        (r.status().as_u16(), serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    })
    .await
    .unwrap()
}

/// Encounter ids in a record body.
fn visits(body: &serde_json::Value) -> Vec<String> {
    let items = body["items"].as_array().cloned().unwrap_or_default();
    let mut v: Vec<String> = items
        .iter()
        .filter(|i| i["kind"] == "encounter")
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// The ACK with its own timestamp/control id and the message's control id blanked.
fn ack_shape(ack: &str, control_id: &str) -> String {
    normalise(ack).replace(control_id, "<ctl>")
}

/// The index, once the last handle's sled has let go of it (a handle this
/// test dropped a moment ago may still hold the lock).
fn store(dir: &Path) -> recordhub::store::Store {
    let index = recordhub::pipeline::index_dir(dir);
    assert!(recordhub::store::wait_released(&index, LOCK_WAIT), "the index stays locked");
    recordhub::store::Store::open(&index).unwrap()
}

const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn nhs(n: &str) -> recordhub::hl7::nhs::NhsNumber {
    recordhub::hl7::nhs::NhsNumber::parse(n).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_objection_hides_the_record_with_403_and_the_sender_sees_the_same_ack_but_nothing_is_filed() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let http = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&admit("A1", NHS, "V1")).await), "AA");
    assert_eq!(code(&c.call(&admit("B1", OTHER, "W1")).await), "AA");
    assert_eq!(visits(&get(format!("{http}/patients/{NHS}")).await.1), ["V1"]);

    let add = ["objection", "add", NHS, "--reason", "IRR form", "--recorded-by", "officer.a", "--server", &http];
    let out = recordhub_async(args(&add)).await;
    assert!(out.status.success(), "{}", stderr(&out));

    for tail in ["", "/history"] {
        let (status, body) = get(format!("{http}/patients/{NHS}{tail}")).await;
        assert_eq!(status, 403, "{tail}: {body}");
        assert_eq!(body["error"], "the patient has objected to sharing their record");
        assert!(body.get("items").is_none(), "no item, not even demographics: {body}");
    }
    let cli = recordhub_async(args(&["record", NHS, "--user", "dr.jones", "--server", &http])).await;
    assert_eq!(cli.status.code(), Some(3), "a distinct exit code: {}", stderr(&cli));
    assert!(stderr(&cli).contains("the patient has objected to sharing their record"));
    assert!(cli.stdout.is_empty(), "nothing of the record printed");

    // The sender cannot tell: same ACK, byte for byte but for the ids.
    let objected = c.call(&admit("A2", NHS, "V2")).await;
    let plain = c.call(&admit("B2", OTHER, "W2")).await;
    assert_eq!(code(&objected), "AA");
    assert_eq!(ack_shape(&objected, "A2"), ack_shape(&plain, "B2"));
    assert_eq!(visits(&get(format!("{http}/patients/{OTHER}")).await.1), ["W1", "W2"]);
    e.stop().await;

    // Journaled, not filed, not listed as unindexed; still so after a restart (replay).
    let lines = crate::common::journal_lines(dir.path());
    assert!(lines.iter().any(|l| l["control_id"] == "A2"), "the message is in the journal");
    let e = Engine::start(config(dir.path())).await;
    let http = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    assert_eq!(get(format!("{http}/patients/{NHS}")).await.0, 403);
    e.stop().await;
    let s = store(dir.path());
    assert!(s.record(&nhs(NHS)).unwrap().is_empty(), "no version of the patient's items is held");
    assert_eq!(s.unindexed_count().unwrap(), 0);
    let refused: Vec<_> = recordhub::audit::AuditLog::open(dir.path())
        .unwrap()
        .events()
        .unwrap()
        .into_iter()
        .filter(|a| a.outcome == "objected")
        .collect();
    assert_eq!(refused.len(), 4, "every refused view is audited (2 HTTP + CLI + after restart): {refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_objection_over_the_server_restores_the_record_from_the_journal_without_a_resend() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let http = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&admit("A1", NHS, "V1")).await), "AA");
    let add = ["objection", "add", NHS, "--reason", "IRR form", "--recorded-by", "officer.a", "--source", "gp"];
    let out = recordhub_async(args(&[&add[..], &["--server", &http]].concat())).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(code(&c.call(&admit("A2", NHS, "V2")).await), "AA", "arrives while the objection stands");

    let list = recordhub_async(args(&["objection", "list", "--server", &http])).await;
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed["objections"][0]["nhs_number"], NHS);
    assert_eq!(listed["objections"][0]["source"], "gp");

    let rm = ["objection", "remove", NHS, "--recorded-by", "officer.b", "--reason", "consent given", "--server", &http];
    let out = recordhub_async(args(&rm)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, body) = get(format!("{http}/patients/{NHS}")).await;
    assert_eq!(status, 200);
    assert_eq!(visits(&body), ["V1", "V2"], "both messages back, the one sent during the objection too");
    let again = recordhub_async(args(&rm)).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("no objection is registered"), "{}", stderr(&again));
    assert_eq!(code(&c.call(&admit("A3", NHS, "V3")).await), "AA");
    assert_eq!(visits(&get(format!("{http}/patients/{NHS}")).await.1), ["V1", "V2", "V3"], "filed as usual again");

    // An import over the admin API: a bad row names its line, nothing applied; then the fixed file.
    let csv = dir.path().join("legacy.csv");
    std::fs::write(&csv, format!("nhs_number,reason\n{NHS},legacy opt-out\n{OTHER}x,typo\n")).unwrap();
    let import = args(&["objection", "import", csv.to_str().unwrap(), "--recorded-by", "officer.c", "--server", &http]);
    let out = recordhub_async(import.clone()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("{}:3: nhs_number '{OTHER}x'", csv.display())), "{}", stderr(&out));
    assert_eq!(get(format!("{http}/patients/{NHS}")).await.0, 200, "nothing of the file applied");
    std::fs::write(&csv, format!("nhs_number,reason\n{NHS},legacy opt-out\n")).unwrap();
    let out = recordhub_async(import).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get(format!("{http}/patients/{NHS}")).await.0, 403);

    let out = recordhub_async(args(&["objection", "log", "--server", &http])).await;
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seen: Vec<_> = log["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {}", c["action"], c["recorded_by"], c["reason"]).replace('"', ""))
        .collect();
    assert_eq!(
        seen,
        ["add officer.a IRR form", "remove officer.b consent given", "add officer.c legacy opt-out"],
        "every change, who and why"
    );
    assert!(log["log"].as_array().unwrap().iter().all(|c| c["at_ms"].as_u64() > Some(0) && c["nhs_number"] == NHS));
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_is_all_or_nothing_and_the_register_survives_restart_and_reindex() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let e = Engine::start(config(&data)).await;
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&admit("A1", NHS, "V1")).await), "AA");
    assert_eq!(code(&c.call(&admit("B1", OTHER, "W1")).await), "AA");
    let d = data.to_str().unwrap().to_string();

    // The server holds the store: --data says to use --server.
    let locked = recordhub_async(args(&["objection", "list", "--data", &d])).await;
    assert_eq!(locked.status.code(), Some(2));
    assert!(stderr(&locked).contains("use --server"), "{}", stderr(&locked));
    e.stop().await;

    let bad = dir.path().join("connect-care.csv");
    std::fs::write(
        &bad,
        format!("source,nhs_number,recorded_at\nconnect-care,{NHS},2019-03-04\nconnect-care,1234567890,\n"),
    )
    .unwrap();
    let out = recordhub(&["objection", "import", bad.to_str().unwrap(), "--recorded-by", "officer.c", "--data", &d]);
    assert_eq!(out.status.code(), Some(1));
    let expected = format!("{}:3: nhs_number '1234567890' is not a valid NHS number", bad.display());
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    let s = store(&data);
    assert!(s.objections().unwrap().is_empty(), "nothing of the file applied");
    // Released before the CLI below opens the index in its own process.
    assert!(s.close(LOCK_WAIT));

    std::fs::write(&bad, format!("source,nhs_number,recorded_at\nconnect-care,{NHS},2019-03-04\n")).unwrap();
    let out = recordhub(&["objection", "import", bad.to_str().unwrap(), "--recorded-by", "officer.c", "--data", &d]);
    assert!(out.status.success(), "{}", stderr(&out));
    let record = |n: &str| recordhub(&["record", n, "--user", "dr.smith", "--data", &d]);
    assert_eq!(record(NHS).status.code(), Some(3));
    assert!(record(OTHER).status.success(), "other patients unaffected");

    let re = recordhub(&["reindex", "--data", &d]);
    assert!(re.status.success(), "{}", stderr(&re));
    assert_eq!(record(NHS).status.code(), Some(3), "the register survives reindex, which files nothing for it");
    {
        let s = store(&data);
        assert!(s.record(&nhs(NHS)).unwrap().is_empty());
        let o = s.objection(&nhs(NHS)).unwrap().expect("still registered");
        assert_eq!((o.source.as_str(), o.recorded_by.as_str()), ("connect-care", "officer.c"));
        assert_eq!(o.recorded_at_ms, 1_551_657_600_000, "recorded_at kept from the old system");
        assert!(s.close(LOCK_WAIT));
    }

    let rm =
        ["objection", "remove", NHS, "--recorded-by", "officer.d", "--reason", "patient changed mind", "--data", &d];
    let out = recordhub(&rm);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = record(NHS);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let body: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(visits(&body), ["V1"], "restored from the journal by the CLI too");
    let log = store(&data).objection_log().unwrap();
    let seen: Vec<_> = log.iter().map(|c| (c.action.as_str(), c.recorded_by.as_str(), c.source.as_str())).collect();
    assert_eq!(seen, [("add", "officer.c", "connect-care"), ("remove", "officer.d", "connect-care")]);
}
