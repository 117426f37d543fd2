//! Faults made to happen: a panicking pipeline thread, a process killed
//! inside the index writer, a full disk (a real one on a small tmpfs when
//! the machine allows mounting, and an injected one always).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use recordhub::fault::Faults;
use recordhub::serve;
use tokio::net::TcpListener;

use crate::common::{adt, code, config, Conn, Engine};

async fn start_with_faults(cfg: recordhub::config::Config, spec: &str) -> Engine {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mappings = serve::load_mappings(&cfg).unwrap();
    let running = serve::start_with_faults(&cfg, listener, mappings, Faults::parse(spec).unwrap()).await.unwrap();
    crate::common::register(running.http_addr, &cfg.store.data_dir);
    Engine { addr, running: Some(running), cfg }
}

fn get(url: &str) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut req = agent.get(url);
    if url.contains("/patients/") {
        req = req.header("Authorization", crate::common::bearer_for(url, "clinician"));
    }
    let mut resp = req.call().expect("HTTP answers");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

async fn get_async(url: String) -> (u16, serde_json::Value) {
    tokio::task::spawn_blocking(move || get(&url)).await.unwrap()
}

fn journal_ids(data: &Path) -> Vec<String> {
    crate::common::journal_lines(data)
        .iter()
        .filter(|j| matches!(j["ack_code"].as_str(), Some("AA" | "CA")))
        .map(|j| j["control_id"].as_str().unwrap().to_string())
        .collect()
}

/// Hole 3: a panic in the pipeline thread (outside mapping) used to leave
/// the engine up, silent, with `/health` ok. Now health says why, the engine
/// stops with an error (the binary exits non-zero), and what was
/// acknowledged is all there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_thread_panic_fails_health_and_stops_the_engine_nothing_acknowledged_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = start_with_faults(config(dir.path()), "pipeline.commit=after(3)1*panic").await;
    let mut c = e.connect().await;
    for i in 0..3 {
        assert_eq!(code(&c.call(&adt(&format!("PANIC{i}"))).await), "AA");
    }
    c.send(&adt("PANIC3")).await;
    assert_eq!(c.ack().await, None, "no ACK: the connection is closed");
    let running = e.running.take().unwrap();
    // The connection closes as the panic unwinds; health is set just after.
    let deadline = Instant::now() + Duration::from_secs(5);
    while running.health.health().ok() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = running.health.health();
    assert!(!report.ok(), "{report:?}");
    let why = report.checks["pipeline"].reason.clone().unwrap();
    assert!(why.contains("pipeline.commit: injected panic"), "{why}");
    let ended = tokio::time::timeout(Duration::from_secs(10), running.wait()).await.expect("the engine stops");
    assert!(matches!(ended, Err(serve::ServeError::PipelinePanicked(_))), "{ended:?}");

    let e = Engine::start(config(dir.path())).await;
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&adt("PANIC3")).await), "AA", "the unacknowledged message is taken on resend");
    e.stop().await;
    assert_eq!(journal_ids(dir.path()), ["PANIC0", "PANIC1", "PANIC2", "PANIC3"]);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve_binary(data: &Path, faults: &str) -> (std::process::Child, u16, u16) {
    let (port, http) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_recordhub"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--http", &format!("127.0.0.1:{http}"), "--data"])
        .arg(data)
        .env("RECORDHUB_FAULTS", faults)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port, http)
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Hole 3, as a service manager sees it: the process exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_thread_panic_makes_the_process_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, _) = serve_binary(dir.path(), "pipeline.commit=after(1)1*panic");
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut c = Conn::new(stream);
    assert_eq!(code(&c.call(&adt("EXIT0")).await), "AA");
    c.send(&adt("EXIT1")).await;
    assert_eq!(c.ack().await, None);
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut child)).await.unwrap();
    assert!(!status.success() && status.code().is_some(), "exits with an error code: {status:?}");
}

/// Hole 6: the process killed inside an index batch (items written, the
/// rest not) loses nothing: the restart replays from `applied_seq` and the
/// record holds every acknowledged message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_inside_the_index_writer_is_repaired_by_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, _) = serve_binary(dir.path(), "indexer.mid_batch=after(4)1*abort");
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut c = Conn::new(stream);
    let mut acked = Vec::new();
    for i in 0..50 {
        // Each message gets its own visit number, so each files its own encounter.
        let id = format!("KILL{i}");
        // adt() leaves PV1-19 empty; fill it.
        c.send(&adt(&id).replace("|V0001\r", &format!("|V0001|V{i:04}\r"))).await;
        match c.ack_within(Duration::from_secs(5)).await {
            Some(ack) if code(&ack) == "AA" => acked.push(id),
            _ => break,
        }
    }
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut child)).await.unwrap();
    assert!(!status.success(), "the injected abort killed it");
    assert!(acked.len() >= 4, "acknowledged before the kill: {acked:?}");
    let e = Engine::start(config(dir.path())).await;
    let (status, body) =
        get_async(format!("http://{}/patients/9434765919", e.running.as_ref().unwrap().http_addr)).await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().unwrap();
    for id in &acked {
        assert!(
            items.iter().any(|i| i["kind"] == "encounter" && i["provenance"]["control_id"] == id.as_str()),
            "the acknowledged message {id} has its encounter filed"
        );
    }
    e.stop().await;
    let ids = journal_ids(dir.path());
    for id in &acked {
        assert_eq!(ids.iter().filter(|j| *j == id).count(), 1, "{id} once in the journal");
    }
}

/// Hole 13 with an injected fault: an index write fails, `/health` says so
/// with the reason, and the index catches up by itself (reopened, replayed
/// from the journal) with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_index_write_is_reported_and_recovered_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let e = start_with_faults(config(dir.path()), "store.write=after(1)1*error").await;
    let http = e.running.as_ref().unwrap().http_addr;
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&adt("IDX0")).await), "AA");
    assert_eq!(code(&c.call(&adt("IDX1")).await), "AA", "acknowledged: it is in the journal");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut saw_failing = false;
    loop {
        let (status, body) = get_async(format!("http://{http}/health")).await;
        if status == 503 {
            assert!(body["checks"]["index"]["reason"].as_str().unwrap().contains("No space left"), "{body}");
            saw_failing = true;
        } else if saw_failing && status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "health never recovered: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code(&c.call(&adt("IDX2")).await), "AA");
    let (status, body) = get_async(format!("http://{http}/patients/9434765919")).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> =
        body["items"].as_array().unwrap().iter().filter_map(|i| i["provenance"]["control_id"].as_str()).collect();
    assert!(ids.contains(&"IDX2"), "{ids:?}");
    e.stop().await;
}

/// A small tmpfs as the data directory, unmounted on drop. `None` where the
/// machine does not allow mounting (not root): the injected-fault tests
/// cover the same code paths there.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(SmallDisk { dir })
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        // Byte by byte into the last partial page, so no write fits anywhere.
        while f.write_all(&[0]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Hole 13, on a real full disk: messages are refused with AR 207 (never
/// AA), `/health` says the journal is failing with the OS error, and once
/// space returns the engine accepts again, `/health` is ok and records can
/// be read — all without a restart — and it stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_reports_and_recovers_by_itself_when_space_returns() {
    let Some(disk) = SmallDisk::mount(48 << 20) else {
        eprintln!("cannot mount a tmpfs here (not root?): the real-disk variant is skipped");
        return;
    };
    let data = disk.dir.path().join("data");
    let e = Engine::start(config(&data)).await;
    let http = e.running.as_ref().unwrap().http_addr;
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&adt("DISK0")).await), "AA");
    let filler = disk.fill();
    let mut refused = None;
    for i in 1..200 {
        let ack = c.call(&adt(&format!("DISK{i}"))).await;
        if code(&ack) != "AA" {
            refused = Some(ack);
            break;
        }
    }
    let refused = refused.expect("a full disk refuses messages");
    assert_eq!(code(&refused), "AR");
    assert!(refused.contains("207") && refused.contains("retry later"), "{refused}");
    let (status, body) = get_async(format!("http://{http}/health")).await;
    assert_eq!(status, 503, "{body}");
    let reason = body["checks"]["journal"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("No space left on device"), "the OS error is named: {body}");

    std::fs::remove_file(filler).unwrap();
    assert_eq!(code(&c.call(&adt("DISK-AFTER")).await), "AA", "accepted again once space returns");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get_async(format!("http://{http}/health")).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "health did not recover: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = get_async(format!("http://{http}/patients/9434765919")).await;
    assert_eq!(status, 200, "records can be read again: {body}");
    drop(c);
    e.stop().await;
    let ids = journal_ids(&data);
    assert_eq!(ids.first().map(String::as_str), Some("DISK0"));
    assert_eq!(ids.last().map(String::as_str), Some("DISK-AFTER"));
}
