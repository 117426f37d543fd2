//! Shared harness: start/stop an engine, a raw MLLP client, ACK helpers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use recordhub::config::Config;
use recordhub::serve::{self, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Engine {
    pub addr: SocketAddr,
    pub running: Option<Running>,
    pub cfg: Config,
}

pub fn config(data: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.store.data_dir = data.to_path_buf();
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.mapping.dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mappings");
    cfg
}

impl Engine {
    pub async fn start(cfg: Config) -> Engine {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let running = serve::start(&cfg, listener).await.expect("engine starts");
        register(running.http_addr, &cfg.store.data_dir);
        Engine { addr, running: Some(running), cfg }
    }

    /// A bearer token this engine accepts, for `role`.
    pub fn token(&self, role: &str) -> String {
        token(&self.cfg.store.data_dir, "dr.jones", role)
    }

    pub async fn stop(mut self) -> Config {
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
        self.cfg.clone()
    }

    pub async fn connect(&self) -> Conn {
        Conn { stream: TcpStream::connect(self.addr).await.unwrap(), buf: Vec::new() }
    }

    /// A connection from another loopback address (all of 127.0.0.0/8 is
    /// loopback on Linux), so the engine sees a different peer.
    pub async fn connect_from(&self, ip: &str) -> Conn {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        Conn { stream: socket.connect(self.addr).await.unwrap(), buf: Vec::new() }
    }
}

pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut v = vec![0x0b];
    v.extend_from_slice(msg);
    v.extend_from_slice(&[0x1c, 0x0d]);
    v
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn { stream, buf: Vec::new() }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub async fn send(&mut self, msg: &str) {
        self.send_raw(&frame(msg.as_bytes())).await;
    }

    /// The next ACK payload, or None when the server closed the connection.
    pub async fn ack(&mut self) -> Option<String> {
        self.ack_within(Duration::from_secs(10)).await
    }

    pub async fn ack_within(&mut self, limit: Duration) -> Option<String> {
        tokio::time::timeout(limit, async {
            loop {
                if let Some(end) = self.buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                    let start = self.buf.iter().position(|&b| b == 0x0b).expect("ACK frame starts with VT");
                    let payload = self.buf[start + 1..end].to_vec();
                    self.buf.drain(..end + 2);
                    return Some(String::from_utf8(payload).expect("ACK is UTF-8"));
                }
                let mut chunk = [0u8; 8192];
                let n = self.stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("ACK within the time limit")
    }

    pub async fn call(&mut self, msg: &str) -> String {
        self.send(msg).await;
        self.ack().await.expect("an ACK")
    }

    /// True when the server has closed the connection (EOF) within `limit`.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut chunk = [0u8; 64];
        matches!(tokio::time::timeout(limit, self.stream.read(&mut chunk)).await, Ok(Ok(0)) | Ok(Err(_)))
    }
}

/// An ADT^A01 v2.4 message with the given control id.
pub fn adt(control_id: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{control_id}|P|2.4\r\
         EVN|A01|20261121083000\r\
         PID|1||9434765919^^^NHS^NH~RJ1-123456^^^RJ1^MR||SMITH^JOHN^^^MR||19700101|M\r\
         PV1|1|I|RJ1WARD1^BED1||||C123^JONES^ANN|||||||||||V0001\r"
    )
}

/// Replaces MSH-7 (the ACK's own timestamp) and MSH-10 (its own control id),
/// which differ every run, after checking their form.
pub fn normalise(ack: &str) -> String {
    let sep = ack.as_bytes()[3] as char;
    let mut segs: Vec<String> = ack.split('\r').map(str::to_string).collect();
    let mut f: Vec<String> = segs[0].split(sep).map(str::to_string).collect();
    assert!(f[6].len() == 19 && f[6].ends_with("+0000"), "MSH-7 is a UTC timestamp: {ack:?}");
    assert!(f[9].starts_with("RH"), "MSH-10 is ours: {ack:?}");
    f[6] = "<now>".into();
    f[9] = "<id>".into();
    segs[0] = f.join(&sep.to_string());
    segs.join("\r")
}

/// MSA-1 of an ACK.
pub fn code(ack: &str) -> String {
    let sep = ack.as_bytes()[3] as char;
    ack.split('\r').find(|s| s.starts_with("MSA")).and_then(|s| s.split(sep).nth(1)).unwrap_or("").to_string()
}

pub fn journal_lines(data: &Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_recordhub"))
        .args(["journal", "--data"])
        .arg(data)
        .output()
        .expect("recordhub journal runs");
    assert!(out.status.success(), "journal failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

/// A bearer token for `user` with `role`, signed with the data directory's
/// own key (the one a default engine trusts), valid for an hour.
pub fn token(data: &Path, user: &str, role: &str) -> String {
    let mut cfg = Config::default();
    cfg.store.data_dir = data.to_path_buf();
    let req = recordhub::auth::mint::MintRequest {
        user: user.into(),
        role: role.into(),
        org: "RJ1".into(),
        lifetime: Duration::from_secs(3600),
    };
    recordhub::auth::mint::mint(&cfg, &req).expect("token minted")
}

/// `method` `url` with `Authorization: Bearer <token>` (none when empty):
/// (status, body).
pub async fn http_as(method: &'static str, url: String, token: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let auth = format!("Bearer {token}");
        let mut r = match (method, token.is_empty()) {
            ("POST", false) => agent.post(&url).header("Authorization", &auth).send_empty(),
            ("POST", true) => agent.post(&url).send_empty(),
            (_, false) => agent.get(&url).header("Authorization", &auth).call(),
            (_, true) => agent.get(&url).call(),
        }
        .expect("HTTP answers");
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .expect("request task")
}

/// Which data directory (whose key signs tokens) serves which HTTP address,
/// so a helper given only a URL can send a token that engine accepts.
static SERVERS: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());

/// Records that the engine at `http` trusts `data`'s key.
pub fn register(http: SocketAddr, data: &Path) {
    let mut s = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    s.retain(|(a, _)| *a != http.to_string());
    s.push((http.to_string(), data.to_path_buf()));
}

/// `Bearer <token>` for `role`, accepted by the engine serving `url`
/// (started through [`Engine::start`] or [`register`]ed).
pub fn bearer_for(url: &str, role: &str) -> String {
    let s = SERVERS.lock().unwrap_or_else(|e| e.into_inner());
    let (_, data) = s.iter().rev().find(|(a, _)| url.contains(&format!("//{a}"))).expect("a registered engine");
    format!("Bearer {}", token(data, "dr.jones", role))
}

/// The role a test reads `url` with: admin for `/admin/*`, else clinician.
pub fn role_for(url: &str) -> &'static str {
    if url.contains("/admin/") {
        "admin"
    } else {
        "clinician"
    }
}
