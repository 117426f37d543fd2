//! The MLLP layer at its edges (issue 8): connection bounds and idle
//! connections (hole 11), a frame ended by `FS` without `CR` (hole 12), and
//! `recordhub send` with messages that ask for no ACK (hole 9).

use std::time::{Duration, Instant};

use recordhub::mllp::admission::ConnectionCounts;
use recordhub::mllp::server::{ADMISSION_WAIT, DEFAULT_MAX_CONNECTIONS_PER_PEER};

use crate::common::{adt, code, config, frame, journal_lines, Engine};

/// Long enough for a prompt answer on a loaded CI machine, far below any
/// timeout that used to be hit (30 s frame timeout, 300 s idle timeout).
const PROMPT: Duration = Duration::from_secs(2);

fn stats(e: &Engine) -> ConnectionCounts {
    e.running.as_ref().expect("engine running").mllp_stats.snapshot()
}

/// Hole 11: one address holding every slot with idle connections used to
/// make every other sender wait in the listen backlog, without an ACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_11_idle_connections_from_one_peer_cannot_lock_out_another_sender() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.mllp.max_connections = DEFAULT_MAX_CONNECTIONS_PER_PEER + 6;
    let e = Engine::start(cfg).await;
    let mut idle = Vec::new();
    for _ in 0..DEFAULT_MAX_CONNECTIONS_PER_PEER + 36 {
        idle.push(e.connect_from("127.0.0.1").await);
    }
    let mut sender = e.connect_from("127.0.0.2").await;
    sender.send(&adt("OTHER1")).await;
    let ack = sender.ack_within(PROMPT).await.expect("an ACK, not a closed connection");
    assert!(ack.contains("MSA|AA|OTHER1|"), "{ack}");
    // The connections past the per-address bound were closed at once.
    let mut closed = 0;
    for c in idle.iter_mut().rev().take(36) {
        closed += usize::from(c.closed_within(PROMPT).await);
    }
    assert_eq!(closed, 36, "every connection past the per-address bound is closed");
    let s = stats(&e);
    assert_eq!((s.refused_per_peer, s.accepted, s.idle_evicted), (36, DEFAULT_MAX_CONNECTIONS_PER_PEER as u64 + 1, 0));
    e.stop().await;
}

/// Hole 11: at the global bound, the connection idle for longest is closed
/// so that a new sender gets its ACK promptly; busy ones are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_11_at_the_bound_the_longest_idle_connection_makes_way() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.mllp.max_connections = 3;
    let e = Engine::start(cfg).await;
    let mut oldest_idle = e.connect().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut active = e.connect().await;
    let mut mid_frame = e.connect().await;
    let mid = frame(adt("MID1").as_bytes());
    let (first_half, second_half) = mid.split_at(20);
    mid_frame.send_raw(first_half).await;
    assert_eq!(code(&active.call(&adt("ACTIVE1")).await), "AA");
    tokio::time::sleep(Duration::from_millis(50)).await;

    let started = Instant::now();
    let mut newcomer = e.connect_from("127.0.0.3").await;
    newcomer.send(&adt("NEW1")).await;
    let ack = newcomer.ack_within(PROMPT).await.expect("an ACK for the newcomer");
    assert!(ack.contains("MSA|AA|NEW1|"), "{ack}");
    assert!(started.elapsed() < PROMPT);
    assert!(oldest_idle.closed_within(PROMPT).await, "the longest-idle connection made way");
    // The one in the middle of a frame was not touched: it can finish it.
    mid_frame.send_raw(second_half).await;
    let ack = mid_frame.ack_within(PROMPT).await.expect("the busy connection still answers");
    assert!(ack.contains("MSA|AA|MID1|"), "{ack}");
    let s = stats(&e);
    assert_eq!((s.idle_evicted, s.refused_full, s.accepted), (1, 0, 4));
    e.stop().await;
}

/// Hole 11: with every slot busy and none idle, a newcomer is closed within
/// a bounded wait and counted, instead of waiting silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_11_with_no_idle_connection_a_newcomer_is_refused_promptly_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.mllp.max_connections = 1;
    let e = Engine::start(cfg).await;
    let mut busy = e.connect().await;
    busy.send_raw(b"\x0bMSH|^~\\&|PAS|RJ1").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut newcomer = e.connect_from("127.0.0.4").await;
    newcomer.send(&adt("LATE1")).await;
    assert!(newcomer.closed_within(ADMISSION_WAIT + PROMPT).await, "refused, not left waiting");
    assert_eq!(stats(&e).refused_full, 1);
    e.stop().await;
}

/// Bytes outside frames are dropped and counted, and do not keep a
/// connection open past the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_outside_frames_is_not_activity_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.mllp.idle_timeout = Duration::from_millis(300);
    let e = Engine::start(cfg).await;
    let mut c = e.connect().await;
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_millis(600) {
        if c.stream.try_write(b"junk\r\n").is_ok() {
            sent += 6;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(c.closed_within(PROMPT).await, "junk does not hold the connection open");
    let s = stats(&e);
    assert_eq!(s.timed_out, 1);
    assert!(s.bytes_dropped_outside_frames > 0 && s.bytes_dropped_outside_frames <= sent, "{s:?}, sent {sent}");
    e.stop().await;
}

/// Hole 12: `FS` without `CR`, then the sender waits: it used to get no ACK
/// until the stalled-frame timeout closed the connection (not journaled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_12_fs_without_cr_is_acknowledged_while_the_sender_waits() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let mut c = e.connect().await;
    let lone_fs = |id: &str| {
        let mut f = frame(adt(id).as_bytes());
        f.pop();
        f
    };
    c.send_raw(&lone_fs("FS1")).await;
    let ack = c.ack_within(Duration::from_secs(1)).await.expect("an ACK within a second");
    assert!(ack.contains("MSA|AA|FS1|"), "{ack}");
    // The connection goes on normally.
    assert!(c.call(&adt("FS2")).await.contains("MSA|AA|FS2|"));
    // A CR arriving after the grace is the late end of the frame, not junk.
    c.send_raw(&lone_fs("FS3")).await;
    assert!(c.ack_within(Duration::from_secs(1)).await.unwrap().contains("MSA|AA|FS3|"));
    c.send_raw(b"\r").await;
    // FS and CR split across reads within the grace: one frame, no junk.
    c.send_raw(&lone_fs("FS4")).await;
    c.send_raw(b"\r").await;
    assert!(c.ack().await.unwrap().contains("MSA|AA|FS4|"));
    assert!(c.call(&adt("FS5")).await.contains("MSA|AA|FS5|"));
    assert_eq!(stats(&e).bytes_dropped_outside_frames, 0);
    e.stop().await;
    let ids: Vec<_> = journal_lines(dir.path()).into_iter().map(|j| j["control_id"].clone()).collect();
    assert_eq!(ids, vec!["FS1", "FS2", "FS3", "FS4", "FS5"]);
}

/// Runs `recordhub send --to <engine> --timeout <secs>` on a file holding
/// `messages`; returns (exit success, stdout lines).
async fn send_file(e: &Engine, timeout_secs: u32, messages: &[String]) -> (bool, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batch.hl7");
    std::fs::write(&path, messages.iter().map(|m| m.replace('\r', "\n")).collect::<Vec<_>>().join("\n")).unwrap();
    let to = e.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_recordhub"))
            .args(["send", "--to", &to, "--timeout", &timeout_secs.to_string()])
            .arg(&path)
            .output()
            .expect("recordhub send runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    (out.status.success(), stdout.lines().map(str::to_string).collect())
}

/// An enhanced-mode message (v2.5) with the given MSH-9 and MSH-15.
fn enhanced(msg_type: &str, control_id: &str, msh15: &str) -> String {
    format!("MSH|^~\\&|PAS|RJ1|RH|LCR|20261121083000||{msg_type}|{control_id}|P|2.5|||{msh15}|NE\rPID|1\r")
}

/// Hole 9: after a message with MSH-15 = NE, `send` waited for an ACK that
/// never comes, timed out and gave up on every later message (exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_9_send_does_not_wait_for_an_ack_the_message_asked_not_to_get() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let messages =
        [adt("SEND1"), enhanced("ADT^A01", "NE1", "NE"), adt("SEND2"), enhanced("ADT^A01", "ER1", "ER"), adt("SEND3")];
    let (ok, lines) = send_file(&e, 3, &messages).await;
    assert_eq!(
        lines,
        [
            "SEND1 AA Message accepted",
            "NE1 -- no ACK requested (MSH-15 = NE)",
            "SEND2 AA Message accepted",
            "ER1 -- no ACK unless rejected (MSH-15 = ER)",
            "SEND3 AA Message accepted",
        ]
    );
    assert!(ok, "every message accepted: exit 0");
    e.stop().await;
    let ids: Vec<_> = journal_lines(dir.path()).into_iter().map(|j| j["control_id"].clone()).collect();
    assert_eq!(ids, ["SEND1", "NE1", "SEND2", "ER1", "SEND3"]);
}

/// Hole 9, the other conditions: an ER message's rejection is reported for
/// that message (not taken as the next one's ACK), an SU message that gets
/// no ACK is a failure but sending goes on, and the exit code says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_9_send_reports_er_rejections_and_missing_su_acks_and_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let messages = [
        enhanced("ORM^O01", "ER2", "ER"),
        enhanced("ADT^A01", "NE2", "NE"),
        adt("SEND4"),
        enhanced("ORM^O01", "SU2", "SU"),
        adt("SEND5"),
        enhanced("ORM^O01", "ER3", "ER"),
    ];
    let (ok, lines) = send_file(&e, 1, &messages).await;
    let rejected = "CR message type ORM is not handled (ADT, ORU and MDM are)";
    assert_eq!(
        lines,
        [
            "ER2 -- no ACK unless rejected (MSH-15 = ER)".to_string(),
            "NE2 -- no ACK requested (MSH-15 = NE)".to_string(),
            format!("ER2 {rejected}"),
            "SEND4 AA Message accepted".to_string(),
            "SU2 -- no ACK within 1s: with MSH-15 = SU that means not accepted".to_string(),
            "SEND5 AA Message accepted".to_string(),
            "ER3 -- no ACK unless rejected (MSH-15 = ER)".to_string(),
            format!("ER3 {rejected}"),
        ]
    );
    assert!(!ok, "rejections make the exit code non-zero");
    e.stop().await;
}
