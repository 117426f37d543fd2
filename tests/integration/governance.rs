//! Issue 10, exclusion rules: sensitive information is accepted (AA) and
//! journaled but never reaches the shared record, on every read API; an
//! excluded visit or order takes everything in it along, whichever message
//! arrives first; a reload re-evaluates the index both ways; a broken rule
//! file keeps the old rules and says `file:line:col`.

use std::path::{Path, PathBuf};

use crate::common::{code, config, Engine};

const NHS: &str = "9434765919";

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/governance").join(name);
    std::fs::read_to_string(p).unwrap()
}

/// An ordinary admission of the same patient, so the record is never empty.
fn ordinary_admission(control_id: &str, visit: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261120083000||ADT^A01^ADT_A01|{control_id}|P|2.4\r\
         EVN|A01|20261120082900\r\
         PID|1||{NHS}^^^NHS^NH~RJ1-123456^^^RJ1^MR||O'BRIEN^SIOBHAN^MARY^^MS||19820314|F|||||||||||||||||||||||||NSTS01\r\
         PV1|1|I|RJ1WARD1^BED1^RJ1||||C3456^SMITH^JANE^^^DR|||300||||||||IP|{visit}^^^RJ1^VN\r"
    )
}

async fn http(method: &'static str, url: String) -> (u16, String) {
    let auth = crate::common::bearer_for(&url, crate::common::role_for(&url));
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut r = match method {
            "POST" => agent.post(&url).header("Authorization", auth).send_empty().expect("POST"),
            _ => agent.get(&url).header("Authorization", auth).call().expect("GET"),
        };
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap()
}

/// The record and the history as the read API shows them.
async fn reads(base: &str) -> (String, String) {
    let (s1, record) = http("GET", format!("{base}/patients/{NHS}")).await;
    let (s2, history) = http("GET", format!("{base}/patients/{NHS}/history")).await;
    assert_eq!((s1, s2), (200, 200), "{record}\n{history}");
    (record, history)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// One realistic message per category: (fixture, text of the excluded part,
/// text of an item of the same message that must still show, if any).
const CASES: &[(&str, &str, Option<&str>)] = &[
    ("adt-gum-clinic.hl7", "VGUM0001", None),
    ("oru-hiv-viral-load.hl7", "LHIV0001", Some("LFBC0001^FBC")),
    ("mdm-fertility-letter.hl7", "DOC-IVF-0001", None),
    ("adt-domestic-violence.hl7", "T74.1", Some("J45.9")),
    ("adt-gender-identity.hl7", "F64.0", Some("J45.9")),
    ("adt-imprisonment.hl7", "Z65.1", Some("J45.9")),
    ("mdm-very-restricted.hl7", "DOC-VR-0001", None),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sensitive_category_is_accepted_and_shown_nowhere_while_the_rest_of_its_message_is() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let base = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&ordinary_admission("ORD00001", "V000700001")).await), "AA");
    for (file, _, _) in CASES {
        assert_eq!(code(&c.call(&fixture(file)).await), "AA", "{file}: the sender sees no difference");
    }
    let check = |record: &str, history: &str, when: &str| {
        assert!(record.contains("V000700001"), "{when}: the ordinary visit shows");
        for (file, hidden, shown) in CASES {
            assert!(!record.contains(hidden) && !history.contains(hidden), "{when}: {file}: '{hidden}' must not show");
            if let Some(shown) = shown {
                assert!(record.contains(shown), "{when}: {file}: '{shown}' of the same message shows: {record}");
            }
        }
    };
    let (record, history) = reads(&base).await;
    check(&record, &history, "live");
    let mut metrics = http("GET", format!("{base}/metrics")).await.1;
    metrics.retain(|c| c != '\r');
    assert!(metrics.contains("recordhub_items_suppressed_total{rule=\"hiv-test\"} 1"), "{metrics}");
    assert!(metrics.contains("recordhub_items_suppressed_total{rule=\"gender-identity-diagnosis\"} 1"));
    let cfg = e.stop().await;

    // The journal keeps every message as received.
    let journal = crate::common::journal_lines(dir.path());
    assert!(journal.iter().any(|l| l["control_id"] == "LABHIV01"), "journaled");

    // After a restart, and after `reindex`: still nowhere.
    let e = Engine::start(cfg).await;
    let base = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    let (record, history) = reads(&base).await;
    check(&record, &history, "after restart");
    let cfg = e.stop().await;
    let mappings = recordhub::serve::load_mappings(&cfg).unwrap();
    let (mut p, _) = recordhub::pipeline::Pipeline::open(recordhub::serve::pipeline_options(&cfg, mappings)).unwrap();
    p.reindex().unwrap();
    let nhs = recordhub::hl7::nhs::NhsNumber::parse(NHS).unwrap();
    let record = serde_json::to_string(&p.store().record(&nhs).unwrap()).unwrap();
    let history = serde_json::to_string(&p.store().history(&nhs).unwrap()).unwrap();
    check(&record, &history, "after reindex");
    p.shutdown().unwrap();
}

/// A result filed under a visit: excluded when the GUM attendance that makes
/// the visit sensitive comes after it, and when it comes before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_ordered_in_an_excluded_visit_is_excluded_whether_it_arrives_before_or_after_the_visit() {
    for order in [["oru-in-gum-visit.hl7", "adt-gum-clinic.hl7"], ["adt-gum-clinic.hl7", "oru-in-gum-visit.hl7"]] {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::start(config(dir.path())).await;
        let base = format!("http://{}", e.running.as_ref().unwrap().http_addr);
        let mut c = e.connect().await;
        assert_eq!(code(&c.call(&ordinary_admission("ORD00001", "V000700001")).await), "AA");
        if order[0].starts_with("oru") {
            assert_eq!(code(&c.call(&fixture(order[0])).await), "AA");
            let (record, _) = reads(&base).await;
            assert!(record.contains("LUE00009"), "no rule excludes the result on its own: {record}");
            assert_eq!(code(&c.call(&fixture(order[1])).await), "AA");
        } else {
            for f in order {
                assert_eq!(code(&c.call(&fixture(f)).await), "AA");
            }
        }
        let (record, history) = reads(&base).await;
        for hidden in ["LUE00009", "VGUM0001", "LABGUM01", "GUM0001"] {
            assert!(!record.contains(hidden) && !history.contains(hidden), "{order:?}: '{hidden}' shows: {record}");
        }
        assert!(record.contains("V000700001"), "{order:?}");
        e.stop().await;
    }
}

/// The IG lead adds a rule, reloads, removes it, reloads: the index follows
/// both ways without a restart; a broken file keeps the rules in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_change_re_evaluates_the_index_both_ways_and_a_broken_rule_file_keeps_the_old_rules() {
    let dir = tempfile::tempdir().unwrap();
    let maps: PathBuf = dir.path().join("mappings");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"), &maps);
    let gender = maps.join("governance/gender.toml");
    let shipped = std::fs::read_to_string(&gender).unwrap();
    std::fs::remove_file(&gender).unwrap();
    let mut cfg = config(&dir.path().join("data"));
    cfg.mapping.dir = maps.clone();
    let e = Engine::start(cfg).await;
    let base = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&fixture("adt-gender-identity.hl7")).await), "AA");
    assert!(reads(&base).await.0.contains("F64.0"), "no rule yet");

    std::fs::write(&gender, &shipped).unwrap();
    let (status, body) = http("POST", format!("{base}/admin/reload")).await;
    assert_eq!(status, 200, "{body}");
    let (record, history) = reads(&base).await;
    assert!(!record.contains("F64.0") && !history.contains("F64.0"), "newly excluded: gone at once: {record}");
    assert!(record.contains("J45.9"), "the rest of the message stays");

    // A broken rule file: the old rules stay in force, the error says where.
    std::fs::write(maps.join("governance/broken.toml"), "[[rule]]\nid = \"x\"\ncategory = \"hiv\"\nfield = \"DG1-3.1\"\nin_list = \"no-such-list\"\nexclude = \"item\"\n").unwrap();
    let (status, body) = http("POST", format!("{base}/admin/reload")).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("broken.toml:5:11: no code list 'no-such-list'"), "{body}");
    assert_eq!(code(&c.call(&fixture("adt-gender-identity.hl7").replace("GID00001", "GID00002")).await), "AA");
    assert!(!reads(&base).await.0.contains("F64.0"), "the previous rules still hold");
    std::fs::remove_file(maps.join("governance/broken.toml")).unwrap();

    std::fs::remove_file(&gender).unwrap();
    let (status, body) = http("POST", format!("{base}/admin/reload")).await;
    assert_eq!(status, 200, "{body}");
    assert!(reads(&base).await.0.contains("F64.0"), "no rule excludes it any more: back, without a re-send");
    let cfg = e.stop().await;

    // Rules changed while the engine was stopped: the index is rebuilt at start-up.
    std::fs::write(&gender, &shipped).unwrap();
    let e = Engine::start(cfg).await;
    let base = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    let (record, history) = reads(&base).await;
    assert!(!record.contains("F64.0") && !history.contains("F64.0"), "excluded after a restart with the rule");
    e.stop().await;
}

fn json_objects(bytes: &[u8]) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_slice(bytes).into_iter().map(|v| v.unwrap()).collect()
}

/// The IG lead's dry runs: `governance test` names each rule that holds and
/// where; `check` names the items a rule excludes (rule, kind, id).
#[test]
fn governance_test_and_check_show_which_rule_excludes_which_item() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fx = root.join("fixtures/governance/oru-hiv-viral-load.hl7");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_recordhub")).args(args).arg(&fx).output().unwrap()
    };
    let rules = root.join("mappings/governance");
    let out = run(&["governance", "test", "--rules", rules.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let objs = json_objects(&out.stdout);
    let hits: Vec<String> = objs[0]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| format!("{} {} {}", h["rule"], h["action"], h["segment"]).replace('"', ""))
        .collect();
    assert_eq!(hits, ["hiv-test exclude item OBR(2)", "hiv-result exclude item OBX(2)"]);

    let out = run(&["check", "--mappings", root.join("mappings").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let objs = json_objects(&out.stdout);
    let excluded = &objs[0]["governance"]["excluded"];
    assert_eq!(excluded, &serde_json::json!([{ "rule": "hiv-test", "kind": "result", "id": "LHIV0001^20447-9" }]));
}

/// Exclusion holds on the other paths to the record: a parked message filed
/// once its hospital number is linked, and a record restored from the
/// journal when an objection is withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusion_holds_for_parked_messages_and_for_a_record_restored_after_an_objection() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let base = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    let mut c = e.connect().await;
    // No NHS number: parked under the hospital number until a message links it.
    let parked = fixture("adt-gender-identity.hl7").replace(&format!("{NHS}^^^NHS^NH~"), "");
    assert_eq!(code(&c.call(&parked).await), "AA");
    assert_eq!(code(&c.call(&ordinary_admission("ORD00001", "V000700001")).await), "AA");
    let (record, history) = reads(&base).await;
    assert!(record.contains("J45.9"), "the parked message was filed once linked: {record}");
    assert!(!record.contains("F64.0") && !history.contains("F64.0"), "parked, then filed: still excluded");

    let admin = e.token("admin");
    let run = |a: Vec<String>| {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_recordhub"))
                .args(a)
                .env("RECORDHUB_TOKEN", &admin)
                .output()
                .unwrap()
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let add = run(args(&["objection", "add", NHS, "--reason", "IRR", "--recorded-by", "officer", "--server", &base]));
    assert!(add.await.unwrap().status.success());
    let rm = ["objection", "remove", NHS, "--reason", "consent", "--recorded-by", "officer", "--server", &base];
    let out = run(args(&rm)).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (record, history) = reads(&base).await;
    assert!(record.contains("J45.9") && record.contains("V000700001"), "restored: {record}");
    assert!(!record.contains("F64.0") && !history.contains("F64.0"), "restored from the journal: still excluded");
    e.stop().await;
}
