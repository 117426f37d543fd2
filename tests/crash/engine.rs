//! The real `recordhub` binary as a child process: start it on free ports,
//! kill it with SIGKILL or stop it with SIGTERM, and run its other commands
//! with a time limit. Every wait here is bounded, so a hung engine fails the
//! test instead of hanging CI.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_recordhub");

/// How long an engine may take to open (replay included) before the test fails.
const START_LIMIT: Duration = Duration::from_secs(120);

/// What the engine's stderr has said so far: the start-up lines in full
/// (they are few), the last lines, and every WARN or ERROR line (capped).
#[derive(Default)]
pub struct Log {
    pub mllp: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// A line that only comes after the journal was opened and replayed.
    pub opened: bool,
    /// stderr reached EOF: the process is gone.
    pub closed: bool,
    pub startup: Vec<String>,
    pub tail: VecDeque<String>,
    pub notable: Vec<String>,
}

impl Log {
    fn take(&mut self, line: String) {
        let json: Option<serde_json::Value> = serde_json::from_str(&line).ok();
        let get = |key: &str| {
            let j = json.as_ref()?;
            j.get(key).or_else(|| j.get("fields").and_then(|f| f.get(key)))?.as_str().map(str::to_string)
        };
        let message = get("message").unwrap_or_default();
        let level = get("level").unwrap_or_default();
        // Both listen lines and "journal opened" are logged after the
        // journal's recovery and the index replay (src/serve.rs): any of them
        // proves start-up replay is over.
        if let Some(addr) = get("listen").and_then(|l| l.parse::<SocketAddr>().ok()) {
            self.opened = true;
            if message.contains("MLLP") {
                self.mllp = Some(addr);
            } else {
                self.http = Some(addr);
            }
        }
        if message.starts_with("journal opened") {
            self.opened = true;
        }
        if self.mllp.is_none() || self.http.is_none() {
            self.startup.push(line.clone());
        }
        if (level == "WARN" || level == "ERROR") && self.notable.len() < 1000 {
            self.notable.push(line.clone());
        }
        self.tail.push_back(line);
        if self.tail.len() > 100 {
            self.tail.pop_front();
        }
    }

    /// The lines worth showing when a test fails.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for (title, lines) in [("start-up", self.startup.iter()), ("warnings and errors", self.notable.iter())] {
            out.push_str(&format!("{title}:\n"));
            lines.for_each(|l| out.push_str(&format!("  {l}\n")));
        }
        out.push_str("last lines:\n");
        self.tail.iter().for_each(|l| out.push_str(&format!("  {l}\n")));
        out
    }
}

type Shared = Arc<(Mutex<Log>, Condvar)>;

/// A `recordhub serve` process. Dropping it kills the process, so a failing
/// test leaves nothing running.
pub struct Server {
    /// Its data directory, whose key signs the tokens `record --server` sends.
    data: std::path::PathBuf,
    child: Child,
    log: Shared,
    reader: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts the engine on `data` with port 0 for MLLP and HTTP (the real
    /// addresses are read from its log), without waiting for it.
    pub fn spawn(data: &Path) -> Server {
        let mut child = Command::new(BIN)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["serve", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/engine.toml")])
            .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data"])
            .arg(data)
            // INFO for the start-up lines; the per-message lines are read and
            // dropped by the reader thread, so the engine never blocks on them.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("recordhub serve starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log: Shared = Arc::default();
        let shared = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (m, cv) = &*shared;
                m.lock().unwrap().take(line);
                cv.notify_all();
            }
            let (m, cv) = &*shared;
            m.lock().unwrap().closed = true;
            cv.notify_all();
        });
        Server { data: data.to_path_buf(), child, log, reader: Some(reader) }
    }

    /// Starts the engine and waits until both listeners are up.
    pub fn start(data: &Path) -> Server {
        let s = Server::spawn(data);
        let ok = s.wait_log(START_LIMIT, |l| (l.mllp.is_some() && l.http.is_some()) || l.closed);
        let log = s.log.0.lock().unwrap();
        assert!(ok && !log.closed, "the engine did not start within {START_LIMIT:?}; its log:\n{}", log.dump());
        drop(log);
        s
    }

    /// Waits (at most `limit`) until `done` holds for the log; false on timeout.
    pub fn wait_log(&self, limit: Duration, done: impl Fn(&Log) -> bool) -> bool {
        let (m, cv) = &*self.log;
        let deadline = Instant::now() + limit;
        let mut log = m.lock().unwrap();
        while !done(&log) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            log = cv.wait_timeout(log, left).unwrap().0;
        }
        true
    }

    pub fn with_log<T>(&self, f: impl FnOnce(&Log) -> T) -> T {
        f(&self.log.0.lock().unwrap())
    }

    pub fn mllp(&self) -> SocketAddr {
        self.with_log(|l| l.mllp).expect("started")
    }

    pub fn http_url(&self) -> String {
        let url = format!("http://{}", self.with_log(|l| l.http).expect("started"));
        SERVED.lock().unwrap().push((url.clone(), self.data.clone()));
        url
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL (std's `Child::kill` on Unix), then reads the log to its end.
    pub fn kill(mut self) -> Log {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finish_log()
    }

    /// SIGTERM, and the exit status of a clean shutdown (at most 60 s).
    pub fn stop(mut self) -> (ExitStatus, Log) {
        let pid = self.child.id().to_string();
        // The shell's builtin kill: no libc binding, no procps needed.
        let sent = Command::new("sh").args(["-c", &format!("kill -TERM {pid}")]).status().expect("sh runs");
        assert!(sent.success(), "SIGTERM could not be sent to {pid}");
        let status = wait_with_limit(&mut self.child, Duration::from_secs(60));
        let log = self.finish_log();
        match status {
            Some(s) => (s, log),
            None => panic!("the engine did not stop within 60 s of SIGTERM; its log:\n{}", log.dump()),
        }
    }

    fn finish_log(&mut self) -> Log {
        // The process is gone, so its stderr reaches EOF and the reader ends.
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        std::mem::take(&mut *self.log.0.lock().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `child` until it exits or `limit` passes (then kills it: None).
fn wait_with_limit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Which data directory serves which HTTP URL: its key signs the tokens
/// `record --server` sends.
static SERVED: Mutex<Vec<(String, std::path::PathBuf)>> = Mutex::new(Vec::new());

/// A clinician's token the server at `url` accepts.
fn token(url: &str) -> String {
    let mut cfg = recordhub::config::Config::default();
    let served = SERVED.lock().unwrap();
    let (_, data) = served.iter().rev().find(|(u, _)| u == url).expect("a server at this URL");
    cfg.store.data_dir = data.clone();
    let req = recordhub::auth::mint::MintRequest {
        user: "crash-test".into(),
        role: "clinician".into(),
        org: "RJ1".into(),
        lifetime: Duration::from_secs(3600),
    };
    recordhub::auth::mint::mint(&cfg, &req).expect("token minted")
}

/// Runs `recordhub ARGS` to completion, reading its output as it comes (a
/// journal listing is megabytes), killed after `limit`.
pub fn run(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("recordhub runs");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let status = wait_with_limit(&mut child, limit);
    let (stdout, stderr) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    match status {
        Some(status) => Output { status, stdout, stderr },
        None => panic!("recordhub {} did not finish within {limit:?}", args.join(" ")),
    }
}

/// `recordhub journal --data DIR`: one JSON object per entry.
pub fn journal(data: &Path) -> Vec<serde_json::Value> {
    let data = data.to_str().expect("temp paths are UTF-8");
    let out = run(&["journal", "--data", data], Duration::from_secs(120));
    assert!(out.status.success(), "recordhub journal failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .expect("the listing is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("journal line is not JSON ({e}): {l}")))
        .collect()
}

/// `recordhub record NHS --user crash-test` against a running server's read
/// API (`--server URL`) or a stopped one's data (`--data DIR`); `None` when
/// the patient has no record.
pub fn record(nhs: &str, source: &[&str]) -> Option<serde_json::Value> {
    let mut args = vec!["record", nhs, "--user", "crash-test"];
    args.extend_from_slice(source);
    let token = (source.first() == Some(&"--server")).then(|| token(source[1]));
    if let Some(t) = &token {
        args.extend_from_slice(&["--token", t]);
    }
    let out = run(&args, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(1) && stderr.contains("no record") {
        return None;
    }
    assert!(out.status.success(), "recordhub {} failed: {stderr}", args.join(" "));
    Some(serde_json::from_slice(&out.stdout).expect("the record is JSON"))
}
