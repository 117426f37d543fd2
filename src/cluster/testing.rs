//! Test support: a throwaway single JetStream `nats-server` on a free
//! loopback port, and a `[cluster]` config pointing at it. Tests that need
//! it call [`NatsServer::start`], which returns `None` (and the test returns
//! early, saying so on stderr) when `nats-server` is not installed, unless
//! `RECORDHUB_REQUIRE_NATS=1` (set by `.ci/run`, which installs it): then
//! it panics, so CI cannot pass without having run them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{AckAfter, ClusterConfig, Role};

/// A running `nats-server -js`, killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    bin: PathBuf,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The `nats-server` binary: `$NATS_SERVER`, else on PATH or in /usr/sbin.
pub fn nats_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

impl NatsServer {
    /// Starts one server with JetStream; waits until it accepts connections.
    pub fn start() -> Option<NatsServer> {
        let Some(bin) = nats_binary() else {
            assert!(
                std::env::var("RECORDHUB_REQUIRE_NATS").is_err(),
                "RECORDHUB_REQUIRE_NATS is set but nats-server is not installed"
            );
            eprintln!("skipped: nats-server is not installed (apt-get install nats-server)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = NatsServer { child: None, bin, port: free_port(), dir };
        server.restart();
        Some(server)
    }

    /// Kills the server (as an outage would); [`NatsServer::restart`] brings
    /// it back on the same port with the same store.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again (after [`NatsServer::stop`]) on the same port
    /// and store directory; waits until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        let child = Command::new(&self.bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A `[cluster]` config for node `node` against this server, with one
    /// replica (a single server cannot hold three).
    pub fn config(&self, node: &str) -> ClusterConfig {
        ClusterConfig {
            servers: vec![self.url()],
            node: node.to_string(),
            role: Role::Active,
            stream: "RECORDHUB".into(),
            replicas: 1,
            ack_after: AckAfter::Replicated,
            publish_timeout: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            ready_max_lag: 1000,
            creds: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

#[tokio::test]
async fn connect_creates_the_streams_and_buckets() {
    let Some(nats) = NatsServer::start() else { return };
    let cluster = super::Cluster::connect(&nats.config("a")).await.unwrap();
    let n = &cluster.names;
    for s in [&n.stream, &n.gov_stream, &n.audit_stream] {
        cluster.js.get_stream(s.as_str()).await.unwrap_or_else(|e| panic!("stream {s}: {e}"));
    }
    cluster.js.get_key_value(n.lease_bucket.as_str()).await.unwrap();
    cluster.js.get_key_value(n.nodes_bucket.as_str()).await.unwrap();
    // Idempotent: a second node connecting finds them in place.
    super::Cluster::connect(&nats.config("b")).await.unwrap();
}
