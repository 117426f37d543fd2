//! Load runs against small in-process MLLP servers.

use super::conn::msa_code_and_id;
use super::tally::percentiles;
use super::template::{load_templates, Template};
use super::*;
use crate::mllp::codec::{Frame, MllpCodec};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashSet;
use std::sync::Mutex;
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

const ADT: &[u8] = b"MSH|^~\\&|PAS|RJ1|HUB|X|20250101||ADT^A01|C1|P|2.4\rPID|1\r";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// AA echoing MSH-10.
    Ack,
    /// AA with a wrong MSA-2.
    WrongId,
    /// Reads, never answers.
    Silent,
}

/// An MLLP server on 127.0.0.1:0 for any number of connections; returns
/// its address and the control ids it received.
async fn ack_server(mode: Mode) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let ids = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let ids = Arc::clone(&ids);
            tokio::spawn(async move {
                let mut framed = Framed::new(socket, MllpCodec::new(1 << 20));
                while let Some(Ok(Frame::Message(msg))) = framed.next().await {
                    let id = msg[..].split(|&b| b == b'|').nth(9).unwrap_or(b"").to_vec();
                    ids.lock().unwrap().push(String::from_utf8(id.clone()).unwrap());
                    let mut ack = b"MSH|^~\\&|HUB|X|||20250101||ACK|A1|P|2.4\rMSA|AA|".to_vec();
                    match mode {
                        Mode::Ack => ack.extend_from_slice(&id),
                        Mode::WrongId => ack.extend_from_slice(b"nope"),
                        Mode::Silent => continue,
                    }
                    ack.push(b'\r');
                    framed.send(&ack[..]).await.unwrap();
                }
            });
        }
    });
    (addr, seen)
}

fn options(to: String, file: PathBuf) -> LoadOptions {
    LoadOptions {
        to,
        connections: 2,
        messages: 200,
        pipeline: 4,
        rate: None,
        files: vec![file],
        timeout: Duration::from_secs(5),
        tls: None,
    }
}

fn fixture(dir: &tempfile::TempDir, text: &[u8]) -> PathBuf {
    let path = dir.path().join("m.hl7");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn two_connections_pipelined_all_acked() {
    let dir = tempfile::tempdir().unwrap();
    let two = [ADT, &ADT.to_vec().iter().map(|&b| if b == b'1' { b'2' } else { b }).collect::<Vec<_>>()].concat();
    let file = fixture(&dir, &two);
    let (addr, seen) = ack_server(Mode::Ack).await;
    let s = run(options(addr, file)).await.unwrap();
    assert_eq!(s.sent, 200);
    assert_eq!(s.acked_by_code.get("AA"), Some(&200), "{s:?}");
    assert_eq!((s.timeouts, s.errors), (0, 0));
    let l = s.latency_us;
    assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max && l.max > 0, "{l:?}");
    assert!(s.messages_per_sec > 0.0);
    let seen = seen.lock().unwrap();
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 200, "every control id is unique");
    assert!(seen.iter().any(|id| id.starts_with("C1-")) && seen.iter().any(|id| id.starts_with("C2-")));
}

#[tokio::test]
async fn lockstep_with_rate_is_paced() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture(&dir, ADT);
    let (addr, _) = ack_server(Mode::Ack).await;
    let opts = LoadOptions { messages: 20, pipeline: 1, rate: Some(200.0), ..options(addr, file) };
    let s = run(opts).await.unwrap();
    assert_eq!(s.acked_by_code.get("AA"), Some(&20));
    // 10 per connection, 10 ms apart, the first at once: at least 90 ms.
    assert!(s.elapsed_secs >= 0.085, "{s:?}");
}

#[tokio::test]
async fn silent_server_counts_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture(&dir, ADT);
    let (addr, _) = ack_server(Mode::Silent).await;
    let opts = LoadOptions { timeout: Duration::from_millis(100), ..options(addr, file) };
    let s = run(opts).await.unwrap();
    // Each connection writes its window of 4, then times out.
    assert_eq!((s.sent, s.timeouts, s.errors), (8, 8, 0), "{s:?}");
    assert!(s.acked_by_code.is_empty());
}

#[tokio::test]
async fn ack_for_another_control_id_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture(&dir, ADT);
    let (addr, _) = ack_server(Mode::WrongId).await;
    let s = run(LoadOptions { messages: 10, ..options(addr, file) }).await.unwrap();
    assert_eq!((s.sent, s.errors), (10, 10), "{s:?}");
}

#[tokio::test]
async fn refused_connection_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture(&dir, ADT);
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let err = run(options(addr.to_string(), file)).await.unwrap_err();
    assert!(matches!(err, LoadError::Connect { .. }), "{err:?}");
}

#[test]
fn template_rewrites_msh_10_only() {
    let t = Template::new(ADT).unwrap();
    let mut out = Vec::new();
    t.write_framed(&mut out, "r1", 3, 42);
    assert_eq!(out, b"\x0bMSH|^~\\&|PAS|RJ1|HUB|X|20250101||ADT^A01|C1-r1-L3-42|P|2.4\rPID|1\r\x1c\r");
}

#[test]
fn template_with_custom_separator_and_msh_10_last() {
    let t = Template::new(b"MSH#@!$%#A#B#C#D#1##ORU@R01#ID9\nPID#1").unwrap();
    let mut out = Vec::new();
    t.write_framed(&mut out, "r", 0, 7);
    assert_eq!(out, b"\x0bMSH#@!$%#A#B#C#D#1##ORU@R01#ID9-r-L0-7\nPID#1\x1c\r");
}

#[test]
fn a_message_asking_for_no_ack_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let ok = fixture(&dir, b"MSH|^~\\&|A|B|C|D|20250101||ADT^A01|X1|P|2.5|||AL|NE\rPID|1\r");
    assert!(load_templates(&[ok]).is_ok());
    let ne = fixture(&dir, b"MSH|^~\\&|A|B|C|D|20250101||ADT^A01|X1|P|2.5|||NE|NE\rPID|1\r");
    let err = load_templates(&[ne]).unwrap_err();
    assert!(matches!(err, LoadError::NoAckRequested { index: 1, msh15: "NE", .. }), "{err:?}");
    assert!(err.to_string().contains("leave MSH-15 empty or set it to AL"), "{err}");
}

#[test]
fn template_needs_msh_10() {
    assert_eq!(Template::new(b"MSH|^~\\&|A|B|C|D|1||ADT\r"), None);
    assert_eq!(Template::new(b"PID|1|2|3|4|5|6|7|8|9|10|11\r"), None);
}

#[test]
fn msa_fields() {
    assert_eq!(msa_code_and_id(b"MSH|^~\\&|H\rMSA|CA|X-1|text\r"), Some((&b"CA"[..], &b"X-1"[..])));
    assert_eq!(msa_code_and_id(b"MSH#@!$%#H\rMSA#AE#9\r"), Some((&b"AE"[..], &b"9"[..])));
    assert_eq!(msa_code_and_id(b"MSH|^~\\&|H\rMSA||1\r"), None);
    assert_eq!(msa_code_and_id(b"junk"), None);
}

#[test]
fn nearest_rank_percentiles() {
    let v: Vec<u64> = (1..=100).collect();
    assert_eq!(percentiles(&v), Latency { p50: 50, p90: 90, p99: 99, max: 100 });
    assert_eq!(percentiles(&[7]), Latency { p50: 7, p90: 7, p99: 7, max: 7 });
    assert_eq!(percentiles(&[]), Latency::default());
}
