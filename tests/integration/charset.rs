//! Issue 8, hole 8: an MSH-18 charset the engine does not know is never decoded
//! silently with a guess: rejected (the default) or, when configured, decoded
//! with the fallback and counted.

use std::process::Command;

use recordhub::config::UnknownCharset;

use crate::common::{code, config, frame, normalise, Engine};

/// An ADT^A01 with MSH-18 = `charset`, MSH-15 = `msh15`, and a family name in Latin-1 bytes.
fn latin1_adt(id: &str, version: &str, msh15: &str, charset: &str) -> Vec<u8> {
    let mut m = format!("MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{id}|P|{version}|||{msh15}|||{charset}\rEVN|A01|20261121083000\rPID|1||9434765919^^^NHS^NH||M").into_bytes();
    m.push(0xfc); // ü in ISO-8859-1 / Windows-1252; not valid UTF-8.
    m.extend_from_slice(b"LLER^J\xf6RG||19700101|M\rPV1|1|I|RJ1WARD1\r");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_8_unknown_charset_is_ar_with_err_at_msh_18_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let mut c = e.connect().await;

    c.send_raw(&frame(&latin1_adt("CS1", "2.5", "", "ISO IR87"))).await;
    let ack = normalise(&c.ack().await.expect("an ACK"));
    let text = "MSH-18 character set 'ISO IR87' is not supported; supported: ASCII, ISO IR6, \
                UNICODE UTF-8, UTF-8, UTF8, 8859/1, ISO IR100, 8859/15, WINDOWS-1252, CP1252";
    assert_eq!(
        ack,
        format!(
            "MSH|^~\\&|RECORDHUB|LCR|PAS|RJ1|<now>||ACK^A01^ACK|<id>|P|2.5||||||ISO IR87\r\
             MSA|AR|CS1\rERR||MSH^1^18|103^Table value not found^HL70357|E||||{text}\r"
        )
    );

    // Enhanced mode: CR.
    c.send_raw(&frame(&latin1_adt("CS2", "2.5", "AL", "KLINGON"))).await;
    assert_eq!(code(&c.ack().await.expect("an ACK")), "CR");
    e.stop().await;
    let journal = crate::common::journal_lines(dir.path());
    assert!(journal.iter().all(|j| j["ack_code"] != "AA" && j["ack_code"] != "CA"), "nothing accepted: {journal:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_8_unknown_charset_with_fallback_decodes_with_the_fallback_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.hl7.unknown_charset = UnknownCharset::Fallback;
    cfg.hl7.fallback_charset = "iso-8859-1".into();
    let before = recordhub::telemetry::charset_fallbacks();
    let e = Engine::start(cfg).await;
    let mut c = e.connect().await;
    c.send_raw(&frame(&latin1_adt("CS3", "2.4", "", "KLINGON"))).await;
    assert_eq!(code(&c.ack().await.expect("an ACK")), "AA");
    e.stop().await;
    assert!(recordhub::telemetry::charset_fallbacks() > before, "the fallback is counted");

    let out = Command::new(env!("CARGO_BIN_EXE_recordhub"))
        .args(["record", "9434765919", "--user", "test", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let record = String::from_utf8(out.stdout).expect("the record is UTF-8");
    assert!(record.contains("MüLLER"), "the name is decoded as ISO-8859-1: {record}");
}
