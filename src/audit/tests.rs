//! Unit tests of the audit log: the chain on disk, verify, rotation,
//! restarts, torn tails, failures, concurrency, migration, the head log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const NHS: &str = "9434765919";

fn event(user: &str, i: usize) -> AuditEvent {
    AuditEvent {
        at_ms: 1_764_000_000_000 + i as u64,
        user: user.into(),
        role: "clinician".into(),
        org: "RJ1".into(),
        purpose: "direct_care".into(),
        reason: "declared by the professional".into(),
        nhs_number: Some(NHS.into()),
        action: "read".into(),
        categories: vec!["result".into()],
        items: vec![format!("result/RAL/ACC{i}")],
        client: "127.0.0.1:5000".into(),
        via: "http".into(),
        outcome: "shown".into(),
        ..AuditEvent::default()
    }
}

fn quiet() -> Options {
    Options { head_log: None, ..Options::default() }
}

fn open(data: &Path) -> AuditLog {
    AuditLog::open_with(data, quiet()).unwrap()
}

/// A log of `n` events in one file; returns the file.
fn log_of(data: &Path, n: usize) -> PathBuf {
    let log = open(data);
    for i in 0..n {
        log.append(&event("dr.jones", i)).unwrap();
    }
    dir(data).join("audit-000001.jsonl")
}

fn lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

fn verify_problem(data: &Path) -> Option<verify::Problem> {
    verify::verify(&dir(data), None).unwrap().problem
}

#[test]
fn each_line_holds_the_event_its_own_hash_and_the_hash_of_the_line_before() {
    let data = tempfile::tempdir().unwrap();
    let file = log_of(data.path(), 3);
    let mut prev = GENESIS.to_string();
    for (i, line) in lines(&file).iter().enumerate() {
        let line = line.strip_suffix(b"\n").expect("newline-terminated");
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert_eq!(v["seq"], i as u64 + 1);
        assert_eq!(v["prev"], prev.as_str(), "line {i} points at the line before");
        assert_eq!(v["user"], "dr.jones");
        assert_eq!(v["items"][0], format!("result/RAL/ACC{i}"));
        // The documented recipe: drop `,"hash":"<64 hex>"}`, add `}`, SHA-256.
        let body = [&line[..line.len() - 75], b"}"].concat();
        let digest = ring::digest::digest(&ring::digest::SHA256, &body);
        assert_eq!(v["hash"], chain::hex(digest.as_ref()));
        prev = v["hash"].as_str().unwrap().to_string();
    }
    let report = verify::verify(&dir(data.path()), None).unwrap();
    assert!(report.intact(), "{:?}", report.problem);
    assert_eq!((report.lines, report.head.as_str()), (3, prev.as_str()));
    assert_eq!(open(data.path()).head().hash, prev, "the head after reopening is the last line's hash");
}

#[test]
fn editing_one_byte_of_any_line_names_that_line() {
    let data = tempfile::tempdir().unwrap();
    let file = log_of(data.path(), 4);
    let original = lines(&file);
    for (i, line) in original.iter().enumerate() {
        // A byte in the event, in `prev`, and in `hash` itself.
        for at in [10, line.len() - 100, line.len() - 20] {
            let mut changed = original.clone();
            changed[i][at] = if changed[i][at] == b'1' { b'2' } else { b'1' };
            std::fs::write(&file, changed.concat()).unwrap();
            let p = verify_problem(data.path()).unwrap_or_else(|| panic!("line {i} byte {at}: not detected"));
            assert_eq!((p.file.as_path(), p.line), (file.as_path(), i as u64 + 1), "{p}");
            assert!(p.what.contains("changed"), "{p}");
        }
    }
}

#[test]
fn a_deleted_line_or_two_swapped_lines_are_named() {
    let data = tempfile::tempdir().unwrap();
    let file = log_of(data.path(), 5);
    let original = lines(&file);

    let mut deleted = original.clone();
    deleted.remove(2);
    std::fs::write(&file, deleted.concat()).unwrap();
    let p = verify_problem(data.path()).expect("a deleted line is detected");
    assert_eq!(p.line, 3, "the line now where the deleted one was: {p}");
    assert!(p.what.contains("removed, inserted or reordered"), "{p}");

    let mut swapped = original.clone();
    swapped.swap(1, 2);
    std::fs::write(&file, swapped.concat()).unwrap();
    let p = verify_problem(data.path()).expect("swapped lines are detected");
    assert_eq!(p.line, 2, "{p}");

    std::fs::write(&file, original.concat()).unwrap();
    assert_eq!(verify_problem(data.path()), None, "put back, it is intact again");
}

#[test]
fn a_forged_line_with_a_recomputed_hash_breaks_the_next_line() {
    let data = tempfile::tempdir().unwrap();
    let file = log_of(data.path(), 3);
    let mut all = lines(&file);
    let v: serde_json::Value = serde_json::from_slice(&all[1][..all[1].len() - 1]).unwrap();
    let mut forged = event("someone.else", 1);
    forged.at_ms = v["at_ms"].as_u64().unwrap();
    let (line, _) = chain::seal(&serde_json::to_vec(&forged).unwrap(), 2, v["prev"].as_str().unwrap());
    all[1] = line;
    std::fs::write(&file, all.concat()).unwrap();
    let p = verify_problem(data.path()).expect("detected");
    assert_eq!(p.line, 3, "{p}");
    assert!(p.what.contains("the line before it was replaced"), "{p}");
}

#[test]
fn the_chain_continues_across_reopening() {
    let data = tempfile::tempdir().unwrap();
    log_of(data.path(), 2);
    let log = open(data.path());
    assert_eq!(log.head().lines, 2);
    log.append(&event("dr.smith", 9)).unwrap();
    drop(log);
    let report = verify::verify(&dir(data.path()), None).unwrap();
    assert!(report.intact() && report.lines == 3, "{report:?}");
    let users: Vec<String> = open(data.path()).events().unwrap().into_iter().map(|e| e.user).collect();
    assert_eq!(users, ["dr.jones", "dr.jones", "dr.smith"]);
}

#[test]
fn rotation_continues_the_chain_across_files_and_a_missing_file_is_named() {
    let data = tempfile::tempdir().unwrap();
    let opts = Options { rotate_bytes: 1, ..quiet() };
    let log = AuditLog::open_with(data.path(), opts.clone()).unwrap();
    for i in 0..3 {
        log.append(&event("dr.jones", i)).unwrap();
    }
    drop(log);
    // Reopened with the same options, the chain goes on in a fourth file.
    AuditLog::open_with(data.path(), opts).unwrap().append(&event("dr.smith", 3)).unwrap();
    let files = chain::files(&dir(data.path())).unwrap();
    assert_eq!(files.len(), 4, "one line per file at rotate_bytes = 1: {files:?}");
    let first_of_second: serde_json::Value = serde_json::from_slice(&lines(&files[1].1)[0]).unwrap();
    let last_of_first: serde_json::Value = serde_json::from_slice(&lines(&files[0].1)[0]).unwrap();
    assert_eq!(first_of_second["prev"], last_of_first["hash"]);
    let report = verify::verify(&dir(data.path()), None).unwrap();
    assert!(report.intact() && report.lines == 4 && report.files == 4, "{report:?}");
    assert_eq!(open(data.path()).events().unwrap().len(), 4);

    std::fs::remove_file(&files[1].1).unwrap();
    let p = verify_problem(data.path()).expect("a missing file is detected");
    assert_eq!(p.file, files[1].1, "{p}");
    assert!(p.what.contains("missing"), "{p}");
}

#[test]
fn concurrent_appends_from_many_threads_keep_one_valid_chain() {
    let data = tempfile::tempdir().unwrap();
    let log = open(data.path());
    std::thread::scope(|s| {
        for t in 0..16 {
            let log = log.clone();
            s.spawn(move || {
                for i in 0..40 {
                    log.append(&event(&format!("user{t}"), i)).unwrap();
                }
            });
        }
    });
    let report = verify::verify(&dir(data.path()), None).unwrap();
    assert!(report.intact() && report.lines == 640, "{report:?}");
    let events = log.events().unwrap();
    for t in 0..16 {
        let mine: Vec<String> =
            events.iter().filter(|e| e.user == format!("user{t}")).map(|e| e.items[0].clone()).collect();
        let expected: Vec<String> = (0..40).map(|i| format!("result/RAL/ACC{i}")).collect();
        assert_eq!(mine, expected, "each thread's events, all there, in its order");
    }
}

#[test]
fn two_writers_on_one_directory_do_not_fork_the_chain() {
    // As the server and `recordhub journal --show` in another process: each
    // batch is written under the lock after re-reading a moved tail.
    let data = tempfile::tempdir().unwrap();
    let (a, b) = (open(data.path()), open(data.path()));
    for i in 0..10 {
        a.append(&event("server", i)).unwrap();
        b.append(&event("cli", i)).unwrap();
    }
    let report = verify::verify(&dir(data.path()), None).unwrap();
    assert!(report.intact() && report.lines == 20, "{report:?}");
}

#[test]
fn a_torn_last_line_is_moved_aside_and_the_chain_goes_on() {
    let data = tempfile::tempdir().unwrap();
    let file = log_of(data.path(), 2);
    let sound = std::fs::read(&file).unwrap();
    let torn = b"{\"at_ms\":1764000000099,\"user\":\"dr.cut";
    std::fs::write(&file, [&sound[..], torn].concat()).unwrap();
    let report = verify::verify(&dir(data.path()), None).unwrap();
    assert!(report.intact(), "a torn tail is not tampering: {report:?}");
    assert!(report.notes.iter().any(|n| n.contains("unfinished last line")), "{:?}", report.notes);

    let log = open(data.path());
    assert_eq!(std::fs::read(&file).unwrap(), sound, "cut back to the last newline");
    let damaged = std::fs::read(file.with_extension("jsonl.damaged")).unwrap();
    assert_eq!(damaged, [&torn[..], b"\n"].concat(), "the torn bytes are kept aside");
    log.append(&event("dr.smith", 2)).unwrap();
    let report = verify::verify(&dir(data.path()), None).unwrap();
    assert!(report.intact() && report.lines == 3, "{report:?}");
    assert!(report.notes.iter().any(|n| n.contains(".damaged")), "{:?}", report.notes);
}

#[test]
fn a_failed_write_or_sync_shows_as_an_error_and_leaves_no_line() {
    for point in ["audit.append", "audit.fdatasync"] {
        let data = tempfile::tempdir().unwrap();
        let faults = crate::fault::Faults::parse(&format!("{point}=after(1)1*error")).unwrap();
        let log = AuditLog::open_with(data.path(), Options { faults, ..quiet() }).unwrap();
        log.append(&event("dr.jones", 0)).unwrap();
        let e = log.append(&event("dr.jones", 1)).expect_err(point);
        assert_eq!(e.raw_os_error(), Some(28), "{point}: the injected ENOSPC reaches the caller");
        log.append(&event("dr.jones", 2)).unwrap();
        let items: Vec<String> = log.events().unwrap().into_iter().map(|e| e.items[0].clone()).collect();
        assert_eq!(items, ["result/RAL/ACC0", "result/RAL/ACC2"], "{point}: the failed event left no line");
        assert_eq!(verify_problem(data.path()), None, "{point}");
    }
}

#[test]
fn the_index_audit_tree_is_copied_in_once_even_after_an_open_without_it() {
    let data = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(&data.path().join("index")).unwrap();
    for (i, user) in ["dr.old", "dr.older"].iter().enumerate() {
        let old = serde_json::json!({ "at_ms": 1_700_000_000_000u64 + i as u64, "user": user,
            "nhs_number": NHS, "action": "read", "via": "http", "items": 3 });
        let key = [(1_700_000_000_000u64 + i as u64).to_be_bytes(), (i as u64).to_be_bytes()].concat();
        store.t().unwrap().audit.insert(key, serde_json::to_vec(&old).unwrap()).unwrap();
    }
    // A tool that opens the log without the index (`journal --show`) first.
    open(data.path()).append(&event("dr.tool", 0)).unwrap();
    let opts = || Options { legacy: Some(store.clone()), ..quiet() };
    let log = AuditLog::open_with(data.path(), opts()).unwrap();
    log.append(&event("dr.new", 0)).unwrap();
    drop(log);
    let log = AuditLog::open_with(data.path(), opts()).unwrap();
    let events = log.events().unwrap();
    let seen: Vec<(&str, &str)> = events.iter().map(|e| (e.user.as_str(), e.outcome.as_str())).collect();
    let expected = [("dr.tool", "shown"), ("dr.old", "migrated"), ("dr.older", "migrated"), ("dr.new", "shown")];
    assert_eq!(seen, expected, "copied once");
    assert_eq!(events[1].nhs_number.as_deref(), Some(NHS));
    assert!(events[1].reason.contains("3 items"), "{:?}", events[1].reason);
    assert_eq!(store.t().unwrap().audit.len(), 2, "the old tree is left as it was");
    assert_eq!(verify_problem(data.path()), None);
}

#[test]
fn filters_and_since_formats() {
    assert_eq!(query::parse_since("1970-01-02").unwrap(), 86_400_000);
    assert_eq!(query::parse_since("1970-01-01T01:00:00+01:00").unwrap(), 0);
    assert_eq!(query::parse_since("2026-11-28T09:30:00.5Z").unwrap(), 1_795_858_200_500);
    let e = query::parse_since("yesterday").unwrap_err().to_string();
    assert!(e.contains("RFC 3339") && e.contains("2026-11-28"), "{e}");

    let mut bg = event("dr.a", 5);
    bg.break_glass = true;
    let f = |nhs: Option<&str>, user: Option<&str>, since_ms, break_glass| query::Filter {
        nhs: nhs.map(String::from),
        user: user.map(String::from),
        since_ms,
        break_glass,
    };
    assert!(f(Some(NHS), Some("dr.a"), Some(bg.at_ms), true).matches(&bg));
    assert!(!f(Some("9434765870"), None, None, false).matches(&bg));
    assert!(!f(None, Some("dr.b"), None, false).matches(&bg));
    assert!(!f(None, None, Some(bg.at_ms + 1), false).matches(&bg));
    assert!(!f(None, None, None, true).matches(&event("dr.a", 1)));
}

#[test]
fn an_anchor_catches_lines_cut_from_the_end() {
    let data = tempfile::tempdir().unwrap();
    let file = log_of(data.path(), 3);
    let head = open(data.path()).head().hash;
    assert!(verify::verify(&dir(data.path()), Some(&head)).unwrap().intact());
    let all = lines(&file);
    std::fs::write(&file, all[..2].concat()).unwrap();
    assert!(verify::verify(&dir(data.path()), None).unwrap().intact(), "a cut end leaves a sound chain");
    let p = verify::verify(&dir(data.path()), Some(&head)).unwrap().problem.expect("the anchor is missing");
    assert!(p.what.contains("anchored chain head"), "{p}");
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines of the whole test binary. A global subscriber, because a
/// scoped one races with other tests over tracing's per-callsite cache.
fn captured_logs() -> &'static Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let w = logs.clone();
        let subscriber = tracing_subscriber::fmt().json().with_writer(move || w.clone()).finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other test sets a global subscriber");
        logs
    })
}

#[test]
fn the_chain_head_is_logged_at_info_with_no_patient_data() {
    let logs = captured_logs();
    let data = tempfile::tempdir().unwrap();
    let ours = |logs: &Captured| -> Vec<serde_json::Value> {
        let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["file"].as_str().is_some_and(|f| f.starts_with(&*data.path().to_string_lossy())))
            .collect()
    };
    let opts = Options { head_log: Some(Duration::from_millis(20)), ..Options::default() };
    let log = AuditLog::open_with(data.path(), opts).unwrap();
    log.append(&event("dr.jones", 0)).unwrap();
    let head = log.head();
    // The writer logs the moved head at its next tick; wait for it (bounded).
    for _ in 0..500 {
        if ours(logs).iter().any(|v| v["fields"]["chain_head"] == head.hash.as_str()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(log);
    let lines = ours(logs);
    assert!(!lines.is_empty(), "no log line about this log");
    assert_eq!(lines[0]["fields"]["chain_head"], GENESIS, "logged at open: {lines:?}");
    let moved = lines.iter().find(|v| v["fields"]["chain_head"] == head.hash.as_str()).expect("the moved head");
    assert_eq!((&moved["level"], &moved["fields"]["message"]), (&"INFO".into(), &"audit chain head".into()));
    assert_eq!(moved["fields"]["lines"], 1);
    assert!(moved["fields"]["file"].as_str().unwrap().ends_with("audit-000001.jsonl"));
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains(NHS) && !text.contains("dr.jones"), "no patient or user data: {text}");
}

#[test]
fn fhir_export_is_an_r4_audit_event_with_the_nhs_number() {
    let mut e = event("dr.jones", 1);
    e.break_glass = true;
    e.purpose = "break_glass".into();
    e.reason = "unconscious in ED".into();
    let source = fhir::Source { site: "RECORDHUB".into(), node: "node1".into() };
    let r = fhir::audit_event(&e, 7, &source);
    assert_eq!(r["resourceType"], "AuditEvent");
    assert_eq!(r["id"], "recordhub-audit-7");
    assert_eq!(r["type"]["code"], "110110");
    assert_eq!(r["subtype"][0]["code"], "read");
    assert_eq!(r["action"], "R");
    assert_eq!(r["recorded"], "2025-11-24T16:00:00.001Z");
    assert_eq!(r["outcome"], "0");
    assert_eq!(r["agent"][0]["requestor"], true);
    assert_eq!(r["agent"][0]["who"]["identifier"]["value"], "dr.jones");
    assert_eq!(r["agent"][0]["role"][0]["text"], "clinician");
    assert_eq!(r["agent"][0]["location"]["identifier"]["value"], "RJ1");
    assert_eq!(r["agent"][0]["network"]["address"], "127.0.0.1");
    assert_eq!(r["purposeOfEvent"][0]["coding"][0]["code"], "BTG");
    assert_eq!(r["purposeOfEvent"][0]["text"], "unconscious in ED");
    assert_eq!(r["entity"][0]["what"]["identifier"]["system"], fhir::NHS_NUMBER_SYSTEM);
    assert_eq!(r["entity"][0]["what"]["identifier"]["value"], NHS);
    let mut refused = event("dr.jones", 1);
    refused.outcome = "objected".into();
    assert_eq!(fhir::audit_event(&refused, 8, &source)["outcome"], "4");
    assert_eq!(fhir::audit_event(&refused, 8, &source)["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
}
