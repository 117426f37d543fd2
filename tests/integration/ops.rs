//! Issue 12, operations: finding messages (`journal search`, `GET
//! /admin/messages`), the audited `journal --show`, re-processing after a
//! mapping fix while the engine runs (`replay --query`, `POST /admin/replay`,
//! `POST /admin/reindex`), and journal retention.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{code, config, Engine};

const NHS: &str = "9434765919";

/// An A01 with a verified NHS number and PV1-4 (admission type) = `R`.
fn admit(control_id: &str, visit: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{control_id}|P|2.4\r\
         EVN|A01|20261121083000\r\
         PID|1||{NHS}^^^NHS^NH~RJ1-123456^^^RJ1^MR||SMITH^JOHN^^^MR||19700101|M|||||||||||||||||||||||||NSTS01\r\
         PV1|1|I|RJ1WARD1^BED1|R|||C123^JONES^ANN||||||||||||{visit}\r"
    )
}

/// A message the engine rejects: processing id X (AR, ERR 202).
fn rejected(control_id: &str) -> String {
    admit(control_id, "V9").replace("|P|2.4", "|X|2.4")
}

/// Runs the binary; a `--server` command carries an admin's token for that engine.
async fn recordhub(args: Vec<String>) -> Output {
    let token = args
        .iter()
        .position(|a| a == "--server")
        .and_then(|i| args.get(i + 1))
        .map(|url| crate::common::bearer_for(url, "admin").trim_start_matches("Bearer ").to_string());
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_recordhub"));
        cmd.args(&args).env_remove("RECORDHUB_USER").env_remove("RECORDHUB_TOKEN");
        if let Some(t) = token {
            cmd.env("RECORDHUB_TOKEN", t);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn lines(o: &Output) -> Vec<serde_json::Value> {
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

async fn http(method: &'static str, url: String, body: &'static str) -> (u16, serde_json::Value) {
    let auth = crate::common::bearer_for(&url, "admin");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut r = match method {
            "POST" => agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body)
                .expect("POST"),
            _ => agent.get(&url).header("Authorization", &auth).call().expect("GET"),
        };
        let text = r.body_mut().read_to_string().unwrap();
        (r.status().as_u16(), serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    })
    .await
    .unwrap()
}

fn seqs(v: &[serde_json::Value]) -> Vec<u64> {
    v.iter().filter_map(|l| l["seq"].as_u64()).collect()
}

fn base(e: &Engine) -> String {
    format!("http://{}", e.running.as_ref().unwrap().http_addr)
}

/// Copies the shipped mappings (with their sub-folders) into `dir`, so a test can fix one.
fn copy_mappings(dir: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for f in std::fs::read_dir(from).unwrap() {
            let f = f.unwrap();
            if f.file_type().unwrap().is_dir() {
                copy(&f.path(), &to.join(f.file_name()));
            } else {
                std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
        }
    }
    copy(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"), dir);
}

/// The index of a stopped engine: `Engine::stop` returns once sled has let
/// go of the index's lock (`Pipeline::close`), so it opens at once.
fn open_index(data: &Path) -> recordhub::store::Store {
    recordhub::store::Store::open(&recordhub::pipeline::index_dir(data)).expect("a stopped engine's index opens")
}

/// The encounter items of the patient's record, read from the index of a stopped engine.
fn encounters(data: &Path) -> Vec<serde_json::Value> {
    let store = open_index(data);
    let nhs = recordhub::hl7::nhs::NhsNumber::parse(NHS).unwrap();
    let items = store.record(&nhs).unwrap();
    assert!(store.close(Duration::from_secs(10)), "the index is released for what the test runs next");
    items
        .into_iter()
        .filter(|i| i.kind == recordhub::record::Kind::Encounter)
        .map(|i| serde_json::to_value(&i).unwrap())
        .collect()
}

/// An operator finds a rejected message and a patient's messages while the
/// engine runs, from the CLI and the API, and sees metadata, never content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_search_finds_by_metadata_and_by_patient_while_the_engine_runs() {
    let data = tempfile::tempdir().unwrap();
    let e = Engine::start(config(data.path())).await;
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&admit("S1", "V1")).await), "AA");
    assert_eq!(code(&c.call(&rejected("S2")).await), "AR");
    assert_eq!(code(&c.call(&admit("S3", "V3")).await), "AA");
    let d = data.path().to_str().unwrap();

    // Metadata only: the journal is read directly, beside the running engine.
    let o = recordhub(args(&["journal", "search", "--data", d, "--verdict", "rejected"])).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let found = lines(&o);
    assert_eq!(seqs(&found), [2]);
    assert_eq!(found[0]["control_id"], "S2");
    assert_eq!(found[0]["error_code"], 202);
    let o = recordhub(args(&["journal", "search", "--data", d, "--type", "ADT^A01", "--limit", "1"])).await;
    assert_eq!(seqs(&lines(&o)), [1]);

    // By patient: through the running engine's index (its data directory is locked).
    let o = recordhub(args(&["journal", "search", "--data", d, "--nhs", NHS])).await;
    assert!(!o.status.success() && o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--server"), "{}", String::from_utf8_lossy(&o.stderr));
    let server = base(&e);
    let o = recordhub(args(&["journal", "search", "--server", &server, "--nhs", NHS])).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(seqs(&lines(&o)), [1, 3]);
    let o = recordhub(args(&["journal", "search", "--server", &server, "--local-id", "RJ1^RJ1-123456"])).await;
    assert_eq!(seqs(&lines(&o)), [1, 3]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains(NHS) && !text.contains("SMITH") && !text.contains("RJ1-123456"), "{text}");

    // The same over the API; a bad filter is a 400 naming it.
    let (status, body) = http("GET", format!("{server}/admin/messages?sender=PAS%5ERJ1&err=202"), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seqs(body["messages"].as_array().unwrap()), [2]);
    assert_eq!(body["messages"][0]["reason"]["error_code"], 202);
    let (status, body) = http("GET", format!("{server}/admin/messages?verdict=maybe"), "").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("verdict"), "{body}");
    let (status, body) = http("GET", format!("{server}/admin/messages?nhs=1234567890"), "").await;
    assert_eq!(status, 400, "{body}");
    // Which messages a patient had is patient data: each search by patient is audited.
    let audited = recordhub::audit::AuditLog::open(data.path()).unwrap().events().unwrap();
    let searches: Vec<_> = audited.iter().filter(|ev| ev.action == "message_search").collect();
    assert_eq!(searches.len(), 2, "{audited:?}");
    assert_eq!(searches[0].nhs_number.as_deref(), Some(NHS));
    assert_eq!(searches[1].items, ["identifier/RJ1/RJ1-123456"]);
    e.stop().await;

    // Engine stopped: by patient from the data directory.
    let o = recordhub(args(&["journal", "search", "--data", d, "--nhs", NHS, "--since", "2"])).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(seqs(&lines(&o)), [3]);
}

/// `journal --show` prints a raw message only after the view is in the
/// audit log, naming who and which patient; with the audit log unwritable
/// it prints nothing and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_show_is_audited_and_shows_nothing_when_the_audit_log_cannot_be_written() {
    let data = tempfile::tempdir().unwrap();
    let e = Engine::start(config(data.path())).await;
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&admit("A1", "V1")).await), "AA");
    let cfg = e.stop().await;
    let d = data.path().to_str().unwrap();
    let mapping_dir = cfg.mapping.dir.display().to_string();
    let env = [("RECORDHUB__MAPPING__DIR", mapping_dir.as_str())];
    let run = |extra: &[&str]| {
        let mut a = args(&["journal", "--data", d, "--show", "1"]);
        a.extend(args(extra));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_recordhub"));
        cmd.args(&a).env_remove("RECORDHUB_USER").envs(env);
        cmd.output().unwrap()
    };

    let o = run(&[]);
    assert!(!o.status.success() && o.stdout.is_empty(), "no user, nothing shown");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--user"));

    let o = run(&["--user", "it.support"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ADT^A01^ADT_A01|A1|"));
    let events = recordhub::audit::AuditLog::open(data.path()).unwrap().events().unwrap();
    let shown: Vec<_> = events.iter().filter(|ev| ev.action == "journal_show").collect();
    assert_eq!(shown.len(), 1, "{events:?}");
    let ev = shown[0];
    assert_eq!((ev.user.as_str(), ev.via.as_str(), ev.client.as_str()), ("it.support", "cli", "local"));
    assert_eq!(ev.nhs_number.as_deref(), Some(NHS));
    assert_eq!(ev.outcome, "shown");

    // The audit directory replaced by a file: it cannot be opened.
    let audit = recordhub::audit::dir(data.path());
    std::fs::remove_dir_all(&audit).unwrap();
    std::fs::write(&audit, b"not a directory").unwrap();
    let o = run(&["--user", "it.support"]);
    assert!(!o.status.success(), "an unaudited view fails");
    assert!(o.stdout.is_empty(), "and shows nothing: {}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stderr).contains("audit"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// An analyst fixes a mapping (adds a field), reloads, and re-processes the
/// ADT messages while the engine runs: the record gains the field with no
/// resend, the journal holds as many entries as before, nothing is ACKed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_a_mapping_fix_shows_the_field_without_a_resend_and_journals_nothing() {
    let data = tempfile::tempdir().unwrap();
    let maps = tempfile::tempdir().unwrap();
    copy_mappings(maps.path());
    let mut cfg = config(data.path());
    cfg.mapping.dir = maps.path().to_path_buf();
    let e = Engine::start(cfg).await;
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&admit("R1", "V1")).await), "AA");
    assert_eq!(code(&c.call(&admit("R2", "V2")).await), "AA");
    assert_eq!(code(&c.call(&rejected("R3")).await), "AR");
    let server = base(&e);
    let entries_before = crate::common::journal_lines(data.path()).len();

    // The fix: PV1-4 as the encounter's admission_type.
    let adt = maps.path().join("adt.toml");
    let text = std::fs::read_to_string(&adt).unwrap();
    let anchor = "class = { path = \"PV1-2\", table = \"patient_class\" }\n";
    assert!(text.contains(anchor), "the encounter fields moved in adt.toml");
    std::fs::write(&adt, text.replace(anchor, &format!("{anchor}admission_type = \"PV1-4\"\n"))).unwrap();
    let (status, body) = http("POST", format!("{server}/admin/reload"), "").await;
    assert_eq!(status, 200, "{body}");

    // A dry run says what would change and changes nothing.
    let o = recordhub(args(&["replay", "--server", &server, "--type", "ADT", "--dry-run"])).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = lines(&o);
    let summary = &report.last().unwrap()["summary"];
    assert_eq!((summary["refiled"].as_u64(), summary["dry_run"].as_bool()), (Some(2), Some(true)), "{report:?}");

    // For real, over the API: per entry what changed; the rejected one stays rejected.
    let (status, body) = http("POST", format!("{server}/admin/replay"), r#"{"type": "ADT"}"#).await;
    assert_eq!(status, 200, "{body}");
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(seqs(entries), [1, 2, 3]);
    assert_eq!(entries[0]["outcome"], "refiled");
    assert_eq!(entries[0]["changed"][0]["kind"], "encounter");
    assert_eq!(entries[0]["changed"][0]["fields"], serde_json::json!(["admission_type"]));
    assert_eq!(entries[2]["outcome"], "not_accepted");
    let text = body.to_string();
    assert!(!text.contains(NHS) && !text.contains("SMITH"), "no patient data in the report: {text}");

    // Again: nothing left to change.
    let o = recordhub(args(&["replay", "--server", &server, "--control-id", "R1"])).await;
    assert_eq!(lines(&o)[0]["outcome"], "unchanged", "{:?}", lines(&o));

    // A live reindex goes over everything while the engine serves.
    let (status, body) = http("POST", format!("{server}/admin/reindex"), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reindexed"]["selected"], 3, "{body}");
    assert_eq!(body["warning"], serde_json::Value::Null);
    assert_eq!(code(&c.call(&admit("R4", "V4")).await), "AA", "ingest goes on");

    assert_eq!(crate::common::journal_lines(data.path()).len(), entries_before + 1, "only R4 was journaled");
    e.stop().await;
    let enc = encounters(data.path());
    assert_eq!(enc.len(), 3, "{enc:?}");
    assert!(enc.iter().all(|i| i["fields"]["admission_type"] == "R"), "{enc:?}");
}

/// Retention removes old, applied segments at start-up; the engine still
/// starts, serves and files, `reindex` warns that it rebuilds only what the
/// journal still holds, and `journal search` lists the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_segments_leave_an_engine_that_starts_serves_and_warns_on_reindex() {
    let data = tempfile::tempdir().unwrap();
    let archive = data.path().join("archive");
    let mut cfg = config(data.path());
    cfg.store.journal_segment_bytes = 1024;
    let e = Engine::start(cfg.clone()).await;
    let mut c = e.connect().await;
    for i in 0..8 {
        assert_eq!(code(&c.call(&admit(&format!("T{i}"), &format!("V{i}"))).await), "AA");
    }
    e.stop().await;
    let journal = recordhub::pipeline::journal_dir(data.path());
    let segments = || {
        std::fs::read_dir(&journal)
            .unwrap()
            .filter(|f| f.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
            .count()
    };
    let before = segments();
    assert!(before >= 3, "{before} segments");

    cfg.retention.journal = Some(Duration::from_millis(1));
    cfg.retention.archive_dir = Some(archive.clone());
    std::thread::sleep(Duration::from_millis(5));
    let e = Engine::start(cfg.clone()).await;
    // The start-up check runs beside the engine: wait for its note.
    for _ in 0..500 {
        if recordhub::journal::retention::retired(&journal).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    recordhub::journal::retention::retired(&journal).expect("segments retired at start-up");
    assert!(segments() < before, "{} of {before} segments left", segments());
    assert!(std::fs::read_dir(&archive).unwrap().count() >= 1, "archived, not lost");
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&admit("T9", "V9")).await), "AA", "the engine still files");
    let server = base(&e);
    let (status, body) = http("POST", format!("{server}/admin/reindex"), "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["warning"].as_str().is_some_and(|w| w.contains("retired")), "{body}");
    e.stop().await;

    // The engine starts again on what is left, and the rest is searchable.
    let e = Engine::start(cfg.clone()).await;
    e.stop().await;
    let d = data.path().to_str().unwrap();
    let mark = recordhub::journal::retention::retired(&journal).unwrap();
    let o = recordhub(args(&["journal", "search", "--data", d])).await;
    let found = seqs(&lines(&o));
    assert_eq!(found.first().copied(), Some(mark.up_to_seq + 1), "{found:?}");
    assert_eq!(found.last().copied(), Some(9));
    let o = recordhub(args(&["reindex", "--data", d])).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("WARNING") && err.contains("retired"), "{err}");
}

/// The dedup window is bounded in time: within it a resend gets the original
/// ACK (a duplicate); once the retention check has forgotten it, the same
/// resend is processed as a new message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_inside_the_dedup_window_is_a_duplicate_and_after_it_a_new_message() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    let e = Engine::start(cfg.clone()).await;
    let first = e.connect().await.call(&admit("D1", "V1")).await;
    e.stop().await;
    let e = Engine::start(cfg.clone()).await;
    let again = e.connect().await.call(&admit("D1", "V1")).await;
    assert_eq!(again, first, "inside the window: the original ACK");
    e.stop().await;

    // The check the engine runs at start-up and hourly, with a 1 ms window.
    cfg.dedup.window = Some(Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(5));
    let store = open_index(data.path());
    let check = recordhub::pipeline::retain::Retention {
        store: store.clone(),
        journal_dir: recordhub::pipeline::journal_dir(data.path()),
        retention: cfg.retention.clone(),
        dedup: cfg.dedup.clone(),
    };
    let done = check.check(recordhub::pipeline::now_ms()).unwrap();
    assert_eq!(done.dedup_forgotten, 1);
    drop(check);
    assert!(store.close(Duration::from_secs(10)), "released before the engine opens it again");

    let e = Engine::start(config(data.path())).await;
    let late = e.connect().await.call(&admit("D1", "V1")).await;
    assert_eq!(code(&late), "AA");
    assert_ne!(late, first, "outside the window: processed as new, with its own ACK");
    e.stop().await;
}
