//! Logging never takes the engine down or stalls it (issue 8, hole 2): the real
//! binary with its stderr a pipe whose reader has gone away, or a pipe nobody reads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{adt, frame, journal_lines};

/// Enough INFO lines (one per message, a few hundred bytes each) to fill a 64 KiB pipe many times.
const MESSAGES: usize = 600;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `recordhub serve` at INFO with stderr a pipe the test holds the read end of.
fn spawn_logging_server(data: &std::path::Path, port: u16) -> (Child, ChildStderr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_recordhub"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--http", &format!("127.0.0.1:{}", free_port())])
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("recordhub serve starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start listening");
        assert!(child.try_wait().unwrap().is_none(), "server exited during start-up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stderr = child.stderr.take().expect("stderr is piped");
    (child, stderr)
}

/// Sends `n` messages in lockstep; returns the MSA-1 of each, "none" for a missing ACK.
fn send_all(port: u16, n: usize, tag: &str) -> Vec<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut codes = Vec::new();
    'messages: for i in 0..n {
        if s.write_all(&frame(adt(&format!("{tag}{i}")).as_bytes())).is_err() {
            break;
        }
        loop {
            if let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                let ack = String::from_utf8_lossy(&buf[1..end]).to_string();
                buf.drain(..end + 2);
                let msa = ack.split('\r').find(|seg| seg.starts_with("MSA|")).unwrap_or("MSA|?");
                codes.push(msa.split('|').nth(1).unwrap_or("?").to_string());
                break;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break 'messages,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
    }
    codes.resize(n, "none".into());
    codes
}

/// SIGTERM, then the exit status within `limit` (None: still running, killed).
fn terminate(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn assert_all_accepted(codes: &[String]) {
    let bad: Vec<_> = codes.iter().enumerate().filter(|(_, c)| *c != "AA").take(5).collect();
    assert!(bad.is_empty(), "every message gets AA; first failures (index, code): {bad:?}");
}

/// Hole 2 (a): `serve 2>&1 | head` — the log reader exits. The engine went on
/// accepting TCP but closed connections without an ACK and ignored SIGTERM.
#[test]
fn hole_2_closed_stderr_keeps_acknowledging_and_sigterm_still_stops() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, stderr) = spawn_logging_server(dir.path(), port);
    drop(stderr); // The read end is closed: every later write to stderr is EPIPE.

    let codes = send_all(port, MESSAGES, "CLOSED");
    let status = terminate(&mut child, Duration::from_secs(20));
    assert_all_accepted(&codes);
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "SIGTERM stops the engine cleanly");
    assert_eq!(journal_lines(dir.path()).len(), MESSAGES, "every acknowledged message is journaled");
}

/// Hole 2 (b): a log shipper that stops reading. Once the pipe buffer is full,
/// a blocking write stalled the pipeline thread and every sender with it.
#[test]
fn hole_2_stalled_stderr_does_not_stall_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, stderr) = spawn_logging_server(dir.path(), port);

    let codes = send_all(port, MESSAGES, "STALLED");
    let status = terminate(&mut child, Duration::from_secs(20));
    drop(stderr);
    assert_all_accepted(&codes);
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "SIGTERM stops the engine even with stderr stalled");
}
