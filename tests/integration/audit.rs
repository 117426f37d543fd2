//! The audit log as an information-governance officer uses it: who looked
//! at a record (`recordhub audit`), whether the log was tampered with
//! (`audit verify`), a subject access request (`audit export --format
//! fhir`), across restarts and rotation; and no unaudited view, ever.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use recordhub::audit::AuditLog;
use recordhub::auth::{Principal, Purpose};
use recordhub::hl7::nhs::NhsNumber;
use recordhub::read::{read_audited, ReadCtx, ReadRequest, View, Viewed};

use crate::common::{adt, code, config, Engine};

const NHS: &str = "9434765919";

fn recordhub(args: &[&str], data: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recordhub"));
    cmd.args(args).arg("--data").arg(data).env_remove("RECORDHUB_FAULTS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("recordhub runs")
}

fn stdout_lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// A data directory holding one admission for [`NHS`].
async fn admitted(dir: &Path) {
    let e = Engine::start(config(dir)).await;
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&adt("AUD1")).await), "AA");
    e.stop().await;
}

/// Reads [`NHS`] through the one read path, as `who` with `purpose`.
fn read_as(dir: &Path, audit: &AuditLog, who: &Principal, purpose: &Purpose, client: &str) -> Viewed {
    // The previous read's sled may still hold its lock for a moment after the drop.
    let index = recordhub::pipeline::index_dir(dir);
    assert!(recordhub::store::wait_released(&index, std::time::Duration::from_secs(10)));
    let store = recordhub::store::Store::open(&index).unwrap();
    let ctx = ReadCtx { store, audit: audit.clone(), access: Arc::new(recordhub::access::Access::allow_all()) };
    let nhs = NhsNumber::parse(NHS).unwrap();
    let req = ReadRequest { nhs: &nhs, who, purpose, client, via: "http", view: View::Record };
    read_audited(&ctx, &req).expect("the read is audited")
}

fn principal(user: &str, role: &str, org: &str) -> Principal {
    Principal { user: user.into(), role: role.into(), org: org.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lists_each_read_with_every_field_and_filters_by_patient_user_time_and_break_glass() {
    let dir = tempfile::tempdir().unwrap();
    admitted(dir.path()).await;
    let before = recordhub::pipeline::now_ms();
    {
        let audit = AuditLog::open(dir.path()).unwrap();
        let care = Purpose::DirectCare { relationship: "ward team".into() };
        let glass = Purpose::BreakGlass { reason: "unconscious in ED".into() };
        let jones = principal("dr.jones", "clinician", "RJ1");
        assert!(matches!(read_as(dir.path(), &audit, &jones, &care, "10.0.0.7:51000"), Viewed::Shown(_)));
        let smith = principal("dr.smith", "clinician", "RAL");
        assert!(matches!(read_as(dir.path(), &audit, &smith, &glass, "10.0.0.8:52000"), Viewed::Shown(_)));
    }
    let out = recordhub(&["record", NHS, "--user", "nurse.cli"], dir.path(), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let all = stdout_lines(&recordhub(&["audit", "--nhs", "943 476 5919"], dir.path(), &[]));
    let users: Vec<&str> = all.iter().map(|e| e["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["dr.jones", "dr.smith", "nurse.cli"], "every read, oldest first");
    let first = &all[0];
    for (field, want) in [
        ("role", "clinician"),
        ("org", "RJ1"),
        ("purpose", "direct_care"),
        ("reason", "ward team"),
        ("nhs_number", NHS),
        ("action", "read"),
        ("client", "10.0.0.7:51000"),
        ("via", "http"),
        ("outcome", "shown"),
    ] {
        assert_eq!(first[field], want, "{field}: {first}");
    }
    assert_eq!(first["break_glass"], false);
    assert!(first["at_ms"].as_u64().unwrap() >= before);
    assert!(first["categories"].as_array().unwrap().iter().any(|c| c == "patient"), "{first}");
    assert!(first["items"].as_array().unwrap().iter().any(|i| i.as_str().unwrap().starts_with("patient/")), "{first}");
    assert_eq!((first["seq"].as_u64(), first["hash"].as_str().map(str::len)), (Some(1), Some(64)));
    assert_eq!(all[1]["prev"], first["hash"], "the listing shows the lines as chained");
    assert_eq!((all[2]["via"].as_str(), all[2]["client"].as_str()), (Some("cli"), Some("local")));

    let glass = stdout_lines(&recordhub(&["audit", "--break-glass"], dir.path(), &[]));
    assert_eq!(glass.len(), 1);
    assert_eq!((&glass[0]["user"], &glass[0]["reason"]), (&"dr.smith".into(), &"unconscious in ED".into()));
    assert_eq!(glass[0]["purpose"], "break_glass");
    let jones = stdout_lines(&recordhub(&["audit", "--user", "dr.jones"], dir.path(), &[]));
    assert_eq!(jones.len(), 1);
    assert!(stdout_lines(&recordhub(&["audit", "--nhs", "9434765870"], dir.path(), &[])).is_empty());
    assert_eq!(stdout_lines(&recordhub(&["audit", "--since", "2000-01-01"], dir.path(), &[])).len(), 3);
    assert!(stdout_lines(&recordhub(&["audit", "--since", "2999-01-01T00:00:00Z"], dir.path(), &[])).is_empty());
    let table = recordhub(&["audit", "--nhs", NHS, "--table"], dir.path(), &[]);
    let table = String::from_utf8_lossy(&table.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 4, "a header and one row per read: {table}");
    assert!(
        rows[0].starts_with("TIME (UTC)") && rows[2].contains("dr.smith") && rows[2].contains("BREAK-GLASS"),
        "{table}"
    );
    let bad = recordhub(&["audit", "--since", "last tuesday"], dir.path(), &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"), "{}", String::from_utf8_lossy(&bad.stderr));
}

fn verify(dir: &Path) -> (Option<i32>, String, String) {
    let out = recordhub(&["audit", "verify"], dir, &[]);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_the_line_that_was_edited_deleted_or_swapped() {
    let dir = tempfile::tempdir().unwrap();
    admitted(dir.path()).await;
    for user in ["a", "b", "c", "d"] {
        let out = recordhub(&["record", NHS, "--user", user], dir.path(), &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let (status, out, _) = verify(dir.path());
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("audit log intact: 4 lines in 1 file;"), "{out}");

    let file = dir.path().join("audit/audit-000001.jsonl");
    let original = std::fs::read(&file).unwrap();
    let lines: Vec<&[u8]> = original.split_inclusive(|&b| b == b'\n').collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "one byte of line 2 edited",
            original
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    let at = lines[0].len() + 12; // inside line 2's "user" value or thereabouts
                    if i == at {
                        b ^ 1
                    } else {
                        b
                    }
                })
                .collect(),
            "audit-000001.jsonl:2: ",
        ),
        (
            "the last line edited",
            {
                let mut v = original.clone();
                let at = v.len() - 100;
                v[at] = if v[at] == b'0' { b'1' } else { b'0' };
                v
            },
            "audit-000001.jsonl:4: ",
        ),
        ("line 2 deleted", [lines[0], lines[2], lines[3]].concat(), "audit-000001.jsonl:2: "),
        ("lines 3 and 4 swapped", [lines[0], lines[1], lines[3], lines[2]].concat(), "audit-000001.jsonl:3: "),
    ];
    for (what, bytes, named) in cases {
        std::fs::write(&file, &bytes).unwrap();
        let (status, _, err) = verify(dir.path());
        assert_eq!(status, Some(1), "{what}: {err}");
        assert!(err.contains(named), "{what}: expected {named:?} in {err}");
    }
    std::fs::write(&file, &original).unwrap();
    assert_eq!(verify(dir.path()).0, Some(0), "restored, intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_continues_across_restarts_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    admitted(dir.path()).await;
    // Every CLI read is a fresh process (a restart of the log); with
    // rotate_bytes = 1 each one also starts a new file.
    let tiny = [("RECORDHUB__AUDIT__ROTATE_BYTES", "1")];
    for user in ["a", "b", "c"] {
        let out = recordhub(&["record", NHS, "--user", user], dir.path(), &tiny);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // And the server, configured the same way, goes on from there.
    let mut cfg = config(dir.path());
    cfg.audit.rotate_bytes = 1;
    let e = Engine::start(cfg).await;
    e.stop().await;
    let out = recordhub(&["record", NHS, "--user", "d"], dir.path(), &tiny);
    assert!(out.status.success());

    let (status, out, err) = verify(dir.path());
    assert_eq!(status, Some(0), "{err}");
    assert!(out.contains("4 lines in 4 files"), "{out}");
    let listed = stdout_lines(&recordhub(&["audit"], dir.path(), &[]));
    let seqs: Vec<u64> = listed.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);

    std::fs::remove_file(dir.path().join("audit/audit-000002.jsonl")).unwrap();
    let (status, _, err) = verify(dir.path());
    assert_eq!(status, Some(1));
    assert!(err.contains("audit-000002.jsonl") && err.contains("missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_audit_write_means_the_record_is_not_shown() {
    let dir = tempfile::tempdir().unwrap();
    admitted(dir.path()).await;
    let out =
        recordhub(&["record", NHS, "--user", "dr.jones"], dir.path(), &[("RECORDHUB_FAULTS", "audit.append=error")]);
    assert!(!out.status.success(), "a read whose audit failed must fail");
    assert!(out.stdout.is_empty(), "no item is printed: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audit log could not be written"), "{err}");
    assert!(stdout_lines(&recordhub(&["audit"], dir.path(), &[])).is_empty(), "and nothing was audited as shown");
    assert_eq!(verify(dir.path()).0, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_export_writes_one_audit_event_per_line_with_the_nhs_number() {
    let dir = tempfile::tempdir().unwrap();
    admitted(dir.path()).await;
    {
        let audit = AuditLog::open(dir.path()).unwrap();
        let glass = Purpose::BreakGlass { reason: "unconscious in ED".into() };
        read_as(dir.path(), &audit, &principal("dr.smith", "clinician", "RAL"), &glass, "10.0.0.8:52000");
    }
    assert!(recordhub(&["record", NHS, "--user", "dr.jones"], dir.path(), &[]).status.success());
    let out = recordhub(&["audit", "export", "--format", "fhir", "--nhs", NHS], dir.path(), &[]);
    let resources = stdout_lines(&out);
    assert_eq!(resources.len(), 2);
    for r in &resources {
        assert_eq!(r["resourceType"], "AuditEvent");
        assert_eq!(r["entity"][0]["what"]["identifier"]["system"], "https://fhir.nhs.uk/Id/nhs-number");
        assert_eq!(r["entity"][0]["what"]["identifier"]["value"], NHS);
        assert_eq!(r["action"], "R");
        assert_eq!(r["agent"][0]["requestor"], true);
    }
    assert_eq!(resources[0]["purposeOfEvent"][0]["coding"][0]["code"], "BTG");
    assert_eq!(resources[0]["agent"][0]["location"]["identifier"]["value"], "RAL");
    assert_eq!(resources[1]["agent"][0]["who"]["identifier"]["value"], "dr.jones");
    let other = recordhub(&["audit", "export", "--format", "fhir", "--nhs", "9434765870"], dir.path(), &[]);
    assert!(stdout_lines(&other).is_empty(), "another patient's export holds none of these");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_audit_over_http_lists_events_and_is_itself_audited() {
    let dir = tempfile::tempdir().unwrap();
    admitted(dir.path()).await;
    assert!(recordhub(&["record", NHS, "--user", "dr.jones"], dir.path(), &[]).status.success());
    let e = Engine::start(config(dir.path())).await;
    let base = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    let auth = format!("Bearer {}", crate::common::token(dir.path(), "ig.officer", "ig_officer"));
    let (status, body) = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut r = agent
            .get(format!("{base}/admin/audit?nhs={NHS}&since=2000-01-01"))
            .header("Authorization", &auth)
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap();
    e.stop().await;
    assert_eq!(status, 200, "{body}");
    let lines: Vec<serde_json::Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["user"], "dr.jones");
    let searched = stdout_lines(&recordhub(&["audit", "--user", "ig.officer"], dir.path(), &[]));
    assert_eq!(searched.len(), 1, "the search is in the log");
    assert_eq!((&searched[0]["action"], &searched[0]["nhs_number"]), (&"audit_search".into(), &NHS.into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_audit_tree_from_before_the_chain_is_copied_in_at_first_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(recordhub::pipeline::index_dir(dir.path())).unwrap();
        let old = serde_json::json!({ "at_ms": 1_700_000_000_000u64, "user": "dr.before", "nhs_number": NHS,
            "action": "read", "via": "http", "items": 4 });
        db.open_tree("audit").unwrap().insert(1u64.to_be_bytes(), serde_json::to_vec(&old).unwrap()).unwrap();
        db.flush().unwrap();
    }
    let released = recordhub::store::wait_released(
        &recordhub::pipeline::index_dir(dir.path()),
        std::time::Duration::from_secs(10),
    );
    assert!(released, "sled let go of the index");
    let e = Engine::start(config(dir.path())).await;
    e.stop().await;
    let e = Engine::start(config(dir.path())).await;
    e.stop().await;
    let listed = stdout_lines(&recordhub(&["audit", "--nhs", NHS], dir.path(), &[]));
    assert_eq!(listed.len(), 1, "copied once, however many starts: {listed:?}");
    assert_eq!((&listed[0]["user"], &listed[0]["outcome"]), (&"dr.before".into(), &"migrated".into()));
    assert_eq!(verify(dir.path()).0, Some(0));
}
