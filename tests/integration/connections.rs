//! Pipelining, concurrency, junk, and the idle and stalled-frame timeouts.
//! The connection bounds and frame-end edge cases are in `mllp_edges`.

use std::time::Duration;

use crate::common::{adt, code, config, frame, Engine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_messages_get_acks_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let mut c = e.connect().await;
    let mut all = Vec::new();
    for i in 0..50 {
        all.extend(frame(adt(&format!("P{i}")).as_bytes()));
    }
    c.send_raw(&all).await;
    for i in 0..50 {
        let ack = c.ack().await.unwrap();
        assert!(ack.contains(&format!("MSA|AA|P{i}|")), "ACK {i} out of order: {ack}");
    }
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_before_vt_is_dropped_and_the_connection_works() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let mut c = e.connect().await;
    let mut bytes = b"\r\nGARBAGE\x00\xff".to_vec();
    bytes.extend(frame(adt("J1").as_bytes()));
    c.send_raw(&bytes).await;
    assert_eq!(code(&c.ack().await.unwrap()), "AA");
    // A garbage frame gets a NAK, and the connection still works.
    let nak = c.call("\x00\x01not hl7 at all").await;
    assert_eq!(code(&nak), "AR");
    assert_eq!(code(&c.call(&adt("J2")).await), "AA");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_connections_all_get_their_acks() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let mut tasks = Vec::new();
    for n in 0..200 {
        // From four addresses: one address may hold at most
        // DEFAULT_MAX_CONNECTIONS_PER_PEER (64) connections.
        let mut c = e.connect_from(&format!("127.0.0.{}", 1 + n % 4)).await;
        tasks.push(tokio::spawn(async move {
            for m in 0..3 {
                let id = format!("C{n}-{m}");
                let ack = c.call(&adt(&id)).await;
                assert!(ack.contains(&format!("MSA|AA|{id}|")), "{ack}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    e.stop().await;
    assert_eq!(crate::common::journal_lines(dir.path()).len(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.mllp.idle_timeout = Duration::from_millis(300);
    let e = Engine::start(cfg).await;
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&adt("I1")).await), "AA");
    assert!(c.closed_within(Duration::from_secs(3)).await, "closed when idle");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_frame_is_timed_out_but_a_slow_idle_one_is_not_cut_early() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.mllp.idle_timeout = Duration::from_secs(30);
    cfg.mllp.frame_timeout = Duration::from_millis(400);
    let e = Engine::start(cfg).await;
    let mut c = e.connect().await;
    // Idle for longer than frame_timeout between frames: still open.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(code(&c.call(&adt("S1")).await), "AA");
    // Half a frame, then silence: closed by the stalled-frame timeout.
    c.send_raw(b"\x0bMSH|^~\\&|PAS|RJ1").await;
    assert!(c.closed_within(Duration::from_secs(3)).await, "stalled frame closes the connection");
    e.stop().await;
}
