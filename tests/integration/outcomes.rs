//! What the one log line per message says about its outcome, read from the
//! real binary's stderr as an on-call engineer's log shipper would.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{code, Conn};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Hole 9 (the server half): a message sent with MSH-15 NE was logged with
/// `ack_code: CA` although no ACK was sent. The line now gives the verdict
/// and whether an ACK went out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_line_of_a_message_sent_with_ne_gives_its_verdict_and_no_ack_code() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_recordhub"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--http", &format!("127.0.0.1:{}", free_port())])
        .arg("--data")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["message"] == "message" && tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            break s;
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut c = Conn::new(stream);
    let msg = |id: &str, accept: &str| {
        format!(
            "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{id}|P|2.5|||{accept}|NE\r\
             EVN|A01|20261121083000\rPID|1||9434765919^^^NHS^NH||SMITH^JOHN||19700101|M\r"
        )
    };
    c.send(&msg("LOGNE", "NE")).await;
    assert_eq!(code(&c.call(&msg("LOGAL", "AL")).await), "CA");
    let mut lines = Vec::new();
    while lines.len() < 2 {
        lines.push(rx.recv_timeout(Duration::from_secs(10)).expect("a log line per message"));
    }
    let _ = child.kill();
    let _ = child.wait();
    let ne = lines.iter().find(|l| l["control_id"] == "LOGNE").expect("NE message logged");
    assert_eq!((&ne["verdict"], &ne["ack_code"], &ne["ack_sent"]), (&"accepted".into(), &"none".into(), &false.into()));
    let al = lines.iter().find(|l| l["control_id"] == "LOGAL").expect("AL message logged");
    assert_eq!((&al["verdict"], &al["ack_code"], &al["ack_sent"]), (&"accepted".into(), &"CA".into(), &true.into()));
}
