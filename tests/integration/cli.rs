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
