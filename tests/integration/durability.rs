//! Accepted means durable: restarts, replays, and kill -9 of the real binary.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{adt, code, config, frame, journal_lines, Engine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_messages_survive_a_restart_and_duplicates_are_still_known() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let mut c = e.connect().await;
    let mut first_acks = Vec::new();
    for i in 0..20 {
        first_acks.push(c.call(&adt(&format!("R{i}"))).await);
    }
    let cfg = e.stop().await;

    let e = Engine::start(cfg).await;
    let ids: Vec<String> =
        journal_lines(dir.path()).iter().map(|j| j["control_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, (0..20).map(|i| format!("R{i}")).collect::<Vec<_>>());
    let mut c = e.connect().await;
    assert_eq!(c.call(&adt("R7")).await, first_acks[7], "retransmission after restart gets the original ACK");
    let next = c.call(&adt("R20")).await;
    assert_eq!(code(&next), "AA");
    e.stop().await;
    let seqs: Vec<u64> = journal_lines(dir.path()).iter().map(|j| j["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=21).collect::<Vec<_>>(), "sequence numbers continue, none reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_show_prints_the_raw_message() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    e.connect().await.call(&adt("SHOW1")).await;
    e.stop().await;
    let out = Command::new(env!("CARGO_BIN_EXE_recordhub"))
        .args(["journal", "--show", "1", "--user", "ops.test", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), adt("SHOW1").replace('\r', "\n"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn_server(data: &std::path::Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_recordhub"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--http",
            &format!("127.0.0.1:{}", free_port()),
            "--data",
        ])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("recordhub serve starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Sends messages in lockstep until the connection breaks; records every
/// control id that got AA.
fn sender(addr: SocketAddr, tag: usize, acked: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let id = format!("K{tag}-{i}");
        if s.write_all(&frame(adt(&id).as_bytes())).is_err() {
            return;
        }
        loop {
            if let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                let ack = String::from_utf8_lossy(&buf[1..end]).to_string();
                buf.drain(..end + 2);
                if ack.contains(&format!("MSA|AA|{id}|")) {
                    acked.lock().unwrap().push(id.clone());
                }
                break;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = spawn_server(dir.path(), port);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (a, s) = (acked.clone(), stop.clone());
            std::thread::spawn(move || sender(addr, t, a, s))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().expect("SIGKILL"); // std's kill() is SIGKILL on Unix
    let _ = child.wait();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "the load produced ACKs before the kill ({})", acked.len());

    // Restart on the same data: recovery must succeed, then count.
    let mut child = spawn_server(dir.path(), port);
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(&frame(adt("AFTER-CRASH").as_bytes())).unwrap();
    let mut b = [0u8; 1024];
    let n = c.read(&mut b).unwrap();
    assert!(String::from_utf8_lossy(&b[..n]).contains("MSA|AA|AFTER-CRASH|"));
    let mut seen: HashMap<String, usize> = HashMap::new();
    for j in journal_lines(dir.path()) {
        *seen.entry(j["control_id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    child.kill().unwrap();
    let _ = child.wait();
    for id in &acked {
        assert_eq!(seen.get(id), Some(&1), "{id} was acknowledged AA; it must be in the journal exactly once");
    }
}
