//! A 3-server NATS JetStream cluster on loopback, started by the test: each
//! server with its own store directory, client port and route port; one can
//! be killed (SIGKILL) and restarted on the same ports and store. Dropping
//! the cluster kills every server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use recordhub::cluster::{AckAfter, Cluster, ClusterConfig, Role};

/// The stream every test's nodes share (one cluster per test, so one name is enough).
pub const STREAM: &str = "RECORDHUB";
/// The lease TTL every node (and the test's own connection) uses: the
/// lease bucket's max_age is set by whoever creates it first, so all agree.
pub const LEASE_TTL_SECS: u64 = 3;
/// How long an AA waits for the quorum ack before the node answers AR 207.
pub const PUBLISH_TIMEOUT_SECS: u64 = 2;

/// The `nats-server` binary: `$NATS_SERVER`, else on PATH or in /usr/sbin
/// (Debian installs it there). `None` means skip, unless
/// `RECORDHUB_REQUIRE_NATS=1` (set by `.ci/run`): then the test fails.
pub fn nats_binary() -> Option<PathBuf> {
    let found = std::env::var_os("NATS_SERVER").map(PathBuf::from).or_else(|| {
        let path = std::env::var("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("RECORDHUB_REQUIRE_NATS").map_or(true, |v| v != "1"),
            "RECORDHUB_REQUIRE_NATS=1 but nats-server is not installed (apt-get install nats-server)"
        );
        eprintln!("skipped: nats-server is not installed (apt-get install nats-server)");
    }
    found
}

/// A free loopback port (bound then released: a small race, fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

struct Server {
    name: String,
    port: u16,
    route_port: u16,
    store: PathBuf,
    child: Option<Child>,
}

pub struct NatsCluster {
    bin: PathBuf,
    servers: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts three servers and waits until JetStream can place a stream
    /// with three replicas (a meta leader is elected and every peer is
    /// known), creating recordhub's streams and buckets on the way.
    /// `None` when nats-server is missing (see [`nats_binary`]).
    pub fn start() -> Option<NatsCluster> {
        let bin = nats_binary()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let servers = (0..3)
            .map(|i| Server {
                name: format!("n{i}"),
                port: free_port(),
                route_port: free_port(),
                store: dir.path().join(format!("n{i}")),
                child: None,
            })
            .collect();
        let mut c = NatsCluster { bin, servers, _dir: dir };
        for i in 0..3 {
            c.spawn(i);
        }
        // A meta leader that has not yet heard from every peer answers "no
        // suitable peers for placement"; on a loaded machine (a CI run beside
        // a disk-bound benchmark) that took over a minute.
        c.wait_for_jetstream(Duration::from_secs(180));
        Some(c)
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .servers
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| format!("nats://127.0.0.1:{}", s.route_port))
            .collect();
        let s = &mut self.servers[i];
        let child = Command::new(&self.bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &s.port.to_string(), "-n", &s.name])
            .args(["--cluster_name", "rh", "--cluster", &format!("nats://127.0.0.1:{}", s.route_port)])
            .args(["--routes", &routes.join(",")])
            .arg("-sd")
            .arg(&s.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        s.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", s.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server {} did not listen on {}", s.name, s.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client URLs of all three servers.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| format!("nats://127.0.0.1:{}", s.port)).collect()
    }

    /// SIGKILL server `i` (its store stays for a restart).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts server `i` again on its ports and store.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// A `[cluster]` config as the nodes have it, for the test's own connection.
    pub fn config(&self, node: &str) -> ClusterConfig {
        ClusterConfig {
            servers: self.urls(),
            node: node.to_string(),
            role: Role::Reader,
            stream: STREAM.into(),
            replicas: 3,
            ack_after: AckAfter::Replicated,
            publish_timeout: Duration::from_secs(PUBLISH_TIMEOUT_SECS),
            lease_ttl: Duration::from_secs(LEASE_TTL_SECS),
            connect_timeout: Duration::from_secs(5),
            ready_max_lag: 1000,
            creds: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }

    /// Connects as the test (node "harness"), creating the streams when missing.
    pub async fn connect(&self) -> Result<Cluster, recordhub::cluster::ClusterError> {
        Cluster::connect(&self.config("harness")).await
    }

    /// Retries [`connect`](Self::connect) until it succeeds: creating a
    /// 3-replica stream needs a meta leader and all three peers.
    pub fn wait_for_jetstream(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let rt = runtime();
        loop {
            match rt.block_on(self.connect()) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!("JetStream cluster not ready within {limit:?}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

/// A small tokio runtime for the test's own NATS calls (the tests are
/// plain threads: the senders block on sockets).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}
