//! A recordhub node: the real binary (`recordhub serve`) with its own
//! engine.toml (`[cluster]` pointing at every NATS server), its own data
//! directory (so its own signing key: tokens are minted per node) and fixed
//! free ports chosen up front, because a standby opens its MLLP listener only
//! when it takes the lease. kill -9 and restart on the same directory.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::nats::{free_port, LEASE_TTL_SECS, PUBLISH_TIMEOUT_SECS, STREAM};

pub const BIN: &str = env!("CARGO_BIN_EXE_recordhub");

/// How a node is configured.
#[derive(Clone)]
pub struct Spec {
    pub name: &'static str,
    /// `active`, `standby` or `reader` (`serve --role`).
    pub role: &'static str,
    /// `replicated` or `local`.
    pub ack_after: &'static str,
}

pub struct Node {
    pub spec: Spec,
    pub mllp: SocketAddr,
    pub http: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// (WARN/ERROR lines, the last lines).
    log: Arc<Mutex<(Vec<String>, VecDeque<String>)>>,
}

impl Node {
    /// Writes the node's engine.toml and starts it (without waiting).
    pub fn spawn(spec: Spec, nats: &[String]) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let mllp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("an address");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("an address");
        let servers: Vec<String> = nats.iter().map(|u| format!("{u:?}")).collect();
        let toml = format!(
            "[mllp]\nlisten = \"{mllp}\"\n\n[http]\nlisten = \"{http}\"\n\n\
             [store]\ndata_dir = {data:?}\n\n[mapping]\ndir = {mappings:?}\n\n\
             [cluster]\nservers = [{servers}]\nnode = \"{name}\"\nrole = \"{role}\"\nstream = \"{STREAM}\"\n\
             replicas = 3\nack_after = \"{ack}\"\nlease_ttl_secs = {LEASE_TTL_SECS}\n\
             publish_timeout_secs = {PUBLISH_TIMEOUT_SECS}\nconnect_timeout_secs = 10\n",
            data = dir.path().join("data"),
            mappings = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings"),
            servers = servers.join(", "),
            name = spec.name,
            role = spec.role,
            ack = spec.ack_after,
        );
        std::fs::write(dir.path().join("engine.toml"), toml).expect("engine.toml written");
        let mut node = Node { spec, mllp, http, dir, child: None, log: Arc::default() };
        node.start();
        node
    }

    fn start(&mut self) {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(self.dir.path().join("engine.toml"))
            .args(["--role", self.spec.role])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("recordhub serve starts");
        // Drained so the node never blocks on a full pipe; the last lines
        // are kept for a failing test's message.
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = self.log.clone();
        let name = self.spec.name;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                // WARN/ERROR lines other than per-message outcomes stay (up
                // to 200): they say why a node stood down long before the end.
                let notable = (line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\""))
                    && !line.contains("\"message\":\"message\"");
                if notable && l.0.len() < 200 {
                    l.0.push(format!("[{name}] {line}"));
                }
                l.1.push_back(format!("[{name}] {line}"));
                if l.1.len() > 60 {
                    l.1.pop_front();
                }
            }
        });
        self.child = Some(child);
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The node's last log lines, for an assertion message.
    pub fn log(&self) -> String {
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let tail: Vec<String> = l.1.iter().cloned().collect();
        format!("warnings and errors:\n{}\nlast lines:\n{}", l.0.join("\n"), tail.join("\n"))
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// kill -9 (if running), then start again on the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// Waits until the MLLP listener accepts connections (the node holds the lease).
    pub fn wait_mllp(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while std::net::TcpStream::connect_timeout(&self.mllp, Duration::from_millis(200)).is_err() {
            assert!(self.is_running(), "node {} exited before listening on MLLP:\n{}", self.spec.name, self.log());
            assert!(
                Instant::now() < deadline,
                "node {} not listening on MLLP within {limit:?}:\n{}",
                self.spec.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `GET path` answers 200 (`/health`: up; `/ready`: caught up).
    pub fn wait_http(&mut self, path: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let url = format!("{}{path}", self.http_url());
        loop {
            if get(&url, "").map(|(s, _)| s) == Some(200) {
                return;
            }
            assert!(self.is_running(), "node {} exited before {path} answered 200:\n{}", self.spec.name, self.log());
            assert!(
                Instant::now() < deadline,
                "node {} {path} not 200 within {limit:?}:\n{}",
                self.spec.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// As [`wait_http`](Self::wait_http), but an exit is an answer too:
    /// true when `path` answered 200, false when the process exited.
    pub fn wait_http_or_exit(&mut self, path: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let url = format!("{}{path}", self.http_url());
        loop {
            if get(&url, "").map(|(s, _)| s) == Some(200) {
                return true;
            }
            if !self.is_running() {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "node {} {path} not 200 within {limit:?}:\n{}",
                self.spec.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A bearer token this node accepts (signed with its own data
    /// directory's key), for `role` (clinician, admin).
    pub fn token(&self, role: &str) -> String {
        token(&self.data(), role)
    }

    /// `GET /patients/{nhs}` as a clinician: (status, body).
    pub fn record(&self, nhs: &str) -> Option<(u16, serde_json::Value)> {
        get(&format!("{}/patients/{nhs}", self.http_url()), &self.token("clinician"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A token signed with `data`'s key, valid for an hour.
pub fn token(data: &Path, role: &str) -> String {
    let mut cfg = recordhub::config::Config::default();
    cfg.store.data_dir = data.to_path_buf();
    let req = recordhub::auth::mint::MintRequest {
        user: "cluster-test".into(),
        role: role.into(),
        org: "RJ1".into(),
        lifetime: Duration::from_secs(3600),
    };
    recordhub::auth::mint::mint(&cfg, &req).expect("token minted")
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Option<(u16, serde_json::Value)> {
    let mut r = r.ok()?;
    let text = r.body_mut().read_to_string().unwrap_or_default();
    Some((r.status().as_u16(), serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)))
}

/// `GET url` with a bearer token (none when empty); `None` when nothing answered.
pub fn get(url: &str, token: &str) -> Option<(u16, serde_json::Value)> {
    let mut req = agent().get(url);
    if !token.is_empty() {
        req = req.header("Authorization", &format!("Bearer {token}"));
    }
    answer(req.call())
}

/// `method url` with a JSON body and a bearer token.
pub fn send_json(method: &str, url: &str, token: &str, body: &serde_json::Value) -> Option<(u16, serde_json::Value)> {
    let auth = format!("Bearer {token}");
    let body = body.to_string();
    let a = agent();
    let r = match method {
        "DELETE" => a
            .delete(url)
            .force_send_body()
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(&body),
        _ => a.post(url).header("Authorization", &auth).header("Content-Type", "application/json").send(&body),
    };
    answer(r)
}

/// Encounter ids (PV1-19: each test message's own control id) in a record body.
pub fn encounters(body: &serde_json::Value) -> Vec<String> {
    body["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| i["kind"] == "encounter")
                .filter_map(|i| i["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
