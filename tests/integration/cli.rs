//! The CLI as a user meets it: `check`, `send`, `journal | head`, `--version`,
//! `--help`, the real binary with its exit codes and output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

fn recordhub(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_recordhub")).args(args).output().expect("recordhub runs")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn json_objects(bytes: &[u8]) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_slice(bytes).into_iter().map(|v| v.expect("JSON object")).collect()
}

/// The segment of an ACK that starts with `id` (`MSA`, `ERR`).
fn segment(ack: &str, id: &str) -> Option<String> {
    ack.split('\r').find(|s| s.starts_with(id)).map(str::to_string)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A wrong MSH-12 (AR 203) and an empty MSH-9 (AE 101).
fn naked_messages() -> [String; 2] {
    [adt("V3").replace("|P|2.4\r", "|P|3.0\r"), adt("NO9").replace("|ADT^A01^ADT_A01|", "||")]
}

/// Issue 12: `check` printed what the mappings make of a message, not what
/// the engine answers; a message the engine NAKs now shows the very MSA and
/// ERR an engine run of the same message sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_shows_the_same_ack_code_and_err_as_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let e = Engine::start(config(&data)).await;
    let mut c = e.connect().await;
    let mut engine_acks = Vec::new();
    for m in naked_messages() {
        engine_acks.push(c.call(&m).await);
    }
    let file = write(dir.path(), "naks.hl7", &naked_messages().join("\n"));
    let mappings = root().join("mappings");
    let args = ["check", "--mappings", mappings.to_str().unwrap(), file.to_str().unwrap()];
    // The check talks to no engine: blocking this worker is fine.
    let out = recordhub(&args);
    assert_eq!(out.status.code(), Some(1), "a NAK fails the check: {}", String::from_utf8_lossy(&out.stderr));
    let objs = json_objects(&out.stdout);
    assert_eq!(objs.len(), 2);
    for (obj, ack) in objs.iter().zip(&engine_acks) {
        assert_eq!(obj["ack"]["code"], code(ack), "{obj}");
        assert_eq!(obj["ack"]["msa"].as_str(), segment(ack, "MSA").as_deref(), "{obj}");
        assert_eq!(obj["ack"]["err"].as_str(), segment(ack, "ERR").as_deref(), "{obj}");
    }
    assert_eq!(objs[0]["ack"]["code"], "AR");
    assert_eq!(objs[0]["ack"]["text"], "version '3.0' is not accepted (2.2 to 2.8 are)");
    assert_eq!(objs[1]["ack"]["code"], "AE");
    e.stop().await;
}

/// `check` warns on a placeholder NHS number (the engine accepts it) and
/// goes on past a missing file, exiting non-zero at the end.
#[test]
fn check_warns_on_a_placeholder_nhs_number_and_goes_on_past_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.hl7", &adt("PH1").replace("9434765919", "9999999999"));
    let missing = dir.path().join("missing.hl7");
    let mappings = root().join("mappings");
    let out = recordhub(&[
        "check",
        "--mappings",
        mappings.to_str().unwrap(),
        missing.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a missing file fails the run at the end: {stderr}");
    assert!(stderr.contains("missing.hl7") && stderr.contains("No such file"), "{stderr}");
    let objs = json_objects(&out.stdout);
    assert_eq!(objs.len(), 1, "the readable file was still checked");
    assert_eq!(objs[0]["ack"]["code"], "AA");
    let warnings = objs[0]["nhs_warnings"].to_string();
    assert!(warnings.contains("9999999999") && warnings.contains("placeholder"), "{warnings}");
}

/// `recordhub ARGS` off the runtime's threads (the engine runs on them).
async fn recordhub_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_recordhub")).args(&args).output().expect("recordhub runs")
    })
    .await
    .unwrap()
}

/// Issue 12: `send` printed the ACK text as escaped on the wire (`ADT\S\ ORU`
/// for a sender whose component separator is `,`), stopped at the first
/// missing file, and said nothing about an empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_prints_ack_text_unescaped_and_goes_on_past_missing_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(&dir.path().join("data"))).await;
    // Component separator `,`: the engine's "(ADT, ORU and MDM are)" goes out as `\S\`.
    let orm = write(dir.path(), "orm.hl7", "MSH|,~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ORM,O01|E1|P|2.4\rPID|1\r");
    let good = write(dir.path(), "good.hl7", &adt("G1"));
    let empty = write(dir.path(), "empty.hl7", "\n\n");
    let missing = dir.path().join("missing.hl7");
    let mut args = vec!["send".to_string(), "--to".into(), e.addr.to_string()];
    args.extend([&missing, &orm, &empty, &good].iter().map(|p| p.display().to_string()));
    let out = recordhub_async(args).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["E1 AR message type ORM is not handled (ADT, ORU and MDM are)", "G1 AA Message accepted"]);
    assert!(stderr.contains("missing.hl7") && stderr.contains("No such file"), "{stderr}");
    assert!(stderr.contains("empty.hl7 holds no HL7 message"), "{stderr}");
    e.stop().await;
}

/// `--version` names the commit and the build date (build.rs), so a bug
/// report says which build it is about.
#[test]
fn version_names_the_commit_and_the_build_date() {
    let out = recordhub(&["--version"]);
    assert!(out.status.success());
    let v = String::from_utf8_lossy(&out.stdout);
    let rest = v.trim().strip_prefix(&format!("recordhub {} (commit ", env!("CARGO_PKG_VERSION"))).unwrap_or_default();
    let (commit, date) = rest.strip_suffix(')').and_then(|r| r.split_once(", built ")).unwrap_or_default();
    assert!(commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()) && commit.len() >= 7, "{v}");
    let d: Vec<&str> = date.split('-').collect();
    assert!(d.len() == 3 && d.iter().all(|p| p.parse::<u32>().is_ok()) && d[0].len() == 4, "{v}");
}

/// `--help` of the commands that take files says what FILES may hold.
#[test]
fn help_documents_files() {
    for cmd in ["send", "check", "load"] {
        let out = recordhub(&[cmd, "--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("<FILES>...  Files of HL7 messages"), "{cmd}: {help}");
    }
}

/// Issue 12: `recordhub journal | head` printed "cannot write output: Broken
/// pipe" and exited 2; a reader that has what it wants is not an error.
#[test]
fn journal_into_head_exits_quietly() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mappings = recordhub::serve::load_mappings(&cfg).unwrap();
    let (mut p, _) = recordhub::pipeline::Pipeline::open(recordhub::serve::pipeline_options(&cfg, mappings)).unwrap();
    // Far more than a pipe's 64 KiB buffer of listing.
    let msgs: Vec<String> = (0..2000).map(|i| adt(&format!("H{i}"))).collect();
    let batch: Vec<_> = msgs.iter().map(|m| recordhub::pipeline::Inbound::message(m.as_bytes(), "test", 0)).collect();
    assert!(p.process(&batch).iter().all(|o| o.code.is_accept()));
    p.shutdown().unwrap();
    drop(p);
    let mut child = Command::new(env!("CARGO_BIN_EXE_recordhub"))
        .args(["journal", "--data"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("\"control_id\":\"H0\""), "{first}");
    // The reader is gone (stdout dropped above): the next writes fail with EPIPE.
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no error text");
    assert!(out.status.success(), "{:?}", out.status);
}

/// Issue 12: `record` with the server down said only "connection refused";
/// it now says how to read without a server.
#[test]
fn record_with_the_server_down_suggests_data() {
    let out = recordhub(&["record", "9434765919", "--user", "analyst", "--server", "http://127.0.0.1:1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no recordhub answers at http://127.0.0.1:1") && stderr.contains("--data DIR"), "{stderr}");
}

/// Issue 12: `reindex` beside a running server suggested `--server`, which
/// reindex does not have; it now says to stop the server first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_beside_a_running_server_says_to_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let args = vec!["reindex".to_string(), "--data".into(), dir.path().display().to_string()];
    let out = recordhub_async(args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("stop the running recordhub") && !stderr.contains("--server"), "{stderr}");
    e.stop().await;
}

/// Issue 12: "cannot listen on 127.0.0.1:2575: Address already in use" did
/// not say which of the engine's listeners it was.
#[test]
fn a_port_already_in_use_names_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = dir.path().display().to_string();
    let out = recordhub(&["serve", "--data", &data, "--listen", &addr, "--http", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("recordhub: the MLLP listener ([mllp] listen or --listen) cannot listen on {addr}"))
    );
    assert!(last.contains("another process holds port"), "{last}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Issue 12: a rejected message logged at INFO like an accepted one, so a
/// WARN filter missed every NAK; and not every per-message line had `seq`.
#[test]
fn rejected_messages_log_at_warn_accepted_at_info_each_with_seq_and_control_id() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_recordhub"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--http", &format!("127.0.0.1:{}", free_port())])
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let file = write(dir.path(), "two.hl7", &[adt("OK1"), adt("BAD1").replace("|P|2.4\r", "|P|3.0\r")].join("\n"));
    let sent = recordhub(&["send", "--to", &format!("127.0.0.1:{port}"), file.to_str().unwrap()]);
    assert_eq!(sent.status.code(), Some(1), "{}", String::from_utf8_lossy(&sent.stdout));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &serde_json::Value| l["message"] == "message")
        .collect();
    assert_eq!(lines.len(), 2, "one line per message");
    let by_id = |id: &str| lines.iter().find(|l| l["control_id"] == id).unwrap_or_else(|| panic!("{id}: {lines:?}"));
    assert_eq!(by_id("OK1")["level"], "INFO");
    assert_eq!(by_id("BAD1")["level"], "WARN");
    assert_eq!(by_id("BAD1")["error_kind"], 203);
    assert!(lines.iter().all(|l| l["seq"].as_u64().is_some_and(|s| s > 0)), "{lines:?}");
}
