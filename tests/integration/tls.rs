//! TLS and mutual TLS on MLLP listeners, sender allow-lists, and TLS in
//! `recordhub send`; every certificate is generated here (rcgen).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use recordhub::config::{Config, ListenerConfig};
use recordhub::mllp::allow::{AllowRule, Cidr, Who};
use recordhub::mllp::client::MllpClient;
use recordhub::mllp::tls::{ClientTls, TlsFiles};

use crate::common::{adt, code, config, journal_lines, normalise, Conn, Engine};

const WAIT: Duration = Duration::from_secs(5);

/// A CA that can sign leaf certificates, written as PEM files in `dir`.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: PathBuf,
}

fn ca(dir: &Path, name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    let pem = dir.join(format!("{name}.pem"));
    std::fs::write(&pem, cert.pem()).unwrap();
    Ca { issuer: Issuer::new(params, key), pem }
}

/// A leaf certificate signed by `ca`: (cert.pem, key.pem).
fn leaf(dir: &Path, ca: &Ca, cn: &str, sans: &[&str], expired: bool) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let (c, k) = (dir.join(format!("{cn}.crt.pem")), dir.join(format!("{cn}.key.pem")));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// Everything a test needs: a CA, another CA, the server's certificate.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    other_ca: Ca,
    server: (PathBuf, PathBuf),
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let test_ca = ca(dir.path(), "test-ca");
    let other_ca = ca(dir.path(), "other-ca");
    let server = leaf(dir.path(), &test_ca, "recordhub.test", &["localhost", "127.0.0.1"], false);
    Pki { dir, ca: test_ca, other_ca, server }
}

impl Pki {
    fn client(&self, cn: &str) -> (PathBuf, PathBuf) {
        leaf(self.dir.path(), &self.ca, cn, &[], false)
    }

    fn files(&self, mutual: bool) -> TlsFiles {
        TlsFiles {
            cert: self.server.0.clone(),
            key: self.server.1.clone(),
            client_ca: mutual.then(|| self.ca.pem.clone()),
        }
    }

    fn client_tls(&self, cert_key: Option<(PathBuf, PathBuf)>) -> ClientTls {
        ClientTls { ca: self.ca.pem.clone(), cert_key, server_name: Some("localhost".into()) }
    }
}

fn subject_rule(cn: &str, app: &str, facility: &str) -> AllowRule {
    AllowRule { who: Who::Subject(cn.into()), sending_app: Some(app.into()), sending_facility: Some(facility.into()) }
}

async fn engine_with(data: &Path, listeners: Vec<ListenerConfig>) -> (Engine, Vec<SocketAddr>) {
    let mut cfg: Config = config(data);
    cfg.mllp.listeners = listeners;
    let e = Engine::start(cfg).await;
    let addrs = e.running.as_ref().unwrap().mllp_listeners.clone();
    (e, addrs)
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn handshakes_failed(e: &Engine) -> u64 {
    e.running.as_ref().unwrap().mllp_stats.snapshot().tls_handshakes_failed
}

async fn client(addr: SocketAddr, tls: &ClientTls) -> Result<MllpClient, recordhub::mllp::client::ClientError> {
    let connector = tls.connector(&addr.to_string()).unwrap();
    MllpClient::connect_with(&addr.to_string(), WAIT, Some(&connector)).await
}

async fn call(c: &mut MllpClient, msg: &str) -> String {
    String::from_utf8(c.call(msg.as_bytes(), WAIT).await.expect("an ACK").to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_round_trip_gets_the_exact_ack() {
    let p = pki();
    let d = tempfile::tempdir().unwrap();
    let tls = ListenerConfig { listen: any_port(), tls: Some(p.files(false)), allow: None };
    let (e, addrs) = engine_with(d.path(), vec![tls]).await;
    // A peer that opens a socket and never starts its handshake holds up
    // nobody: the handshake runs in its connection's task.
    let _silent = tokio::net::TcpStream::connect(addrs[0]).await.unwrap();
    let mut c = client(addrs[0], &p.client_tls(None)).await.unwrap();
    let ack = call(&mut c, &adt("TLS00001")).await;
    assert_eq!(
        normalise(&ack),
        "MSH|^~\\&|RECORDHUB|LCR|PAS|RJ1|<now>||ACK^A01^ACK|<id>|P|2.4\rMSA|AA|TLS00001|Message accepted\r"
    );
    // The plain default listener still works beside it.
    assert_eq!(code(&e.connect().await.call(&adt("PLAIN1")).await), "AA");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepts_a_client_certificate_allowed_to_send_as_its_msh3_msh4() {
    let p = pki();
    let d = tempfile::tempdir().unwrap();
    let allow = vec![subject_rule("pas.rj1.nhs.uk", "PAS", "RJ1")];
    let l = ListenerConfig { listen: any_port(), tls: Some(p.files(true)), allow: Some(allow) };
    let (e, addrs) = engine_with(d.path(), vec![l]).await;
    let mut c = client(addrs[0], &p.client_tls(Some(p.client("pas.rj1.nhs.uk")))).await.unwrap();
    assert_eq!(code(&call(&mut c, &adt("M1")).await), "AA");
    assert_eq!(handshakes_failed(&e), 0);
    e.stop().await;
}

/// A refused handshake: the connection yields no ACK and the refusal is counted.
async fn assert_refused(e: &Engine, addr: SocketAddr, tls: &ClientTls, before: u64) {
    // With TLS 1.3 the client may finish its side before the server refuses
    // its certificate: the refusal then shows on the first exchange.
    if let Ok(mut c) = client(addr, tls).await {
        assert!(c.call(adt("R1").as_bytes(), WAIT).await.is_err(), "no ACK over a refused handshake");
    }
    let deadline = std::time::Instant::now() + WAIT;
    while handshakes_failed(e) == before && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(handshakes_failed(e), before + 1, "the failed handshake is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_expired_wrong_ca_and_missing_client_certificates() {
    let p = pki();
    let d = tempfile::tempdir().unwrap();
    let l = ListenerConfig { listen: any_port(), tls: Some(p.files(true)), allow: None };
    let (e, addrs) = engine_with(d.path(), vec![l]).await;
    let expired = leaf(p.dir.path(), &p.ca, "expired.rj1", &[], true);
    assert_refused(&e, addrs[0], &p.client_tls(Some(expired)), 0).await;
    let stranger = leaf(p.dir.path(), &p.other_ca, "stranger.rj1", &[], false);
    assert_refused(&e, addrs[0], &p.client_tls(Some(stranger)), 1).await;
    assert_refused(&e, addrs[0], &p.client_tls(None), 2).await;
    // Garbage instead of a ClientHello: refused and counted, the listener goes on.
    let mut raw = tokio::net::TcpStream::connect(addrs[0]).await.unwrap();
    raw.write_all(b"\x0bMSH|^~\\&|PAS|RJ1\x1c\r").await.unwrap();
    // A TLS alert at most, then the server closes: never an ACK.
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(WAIT, raw.read_to_end(&mut reply)).await.expect("closed");
    assert!(!reply.contains(&0x0b), "no MLLP frame: {reply:?}");
    let good = p.client_tls(Some(p.client("pas.rj1.nhs.uk")));
    assert_eq!(code(&call(&mut client(addrs[0], &good).await.unwrap(), &adt("OK1")).await), "AA");
    assert_eq!(handshakes_failed(&e), 4);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_sending_as_another_msh3_gets_ar_103_and_is_journaled_as_rejected() {
    let p = pki();
    let d = tempfile::tempdir().unwrap();
    let allow = vec![subject_rule("pas.rj1.nhs.uk", "PAS", "RJ1"), subject_rule("lab.rj1.nhs.uk", "LAB", "RJ1")];
    let l = ListenerConfig { listen: any_port(), tls: Some(p.files(true)), allow: Some(allow) };
    let (e, addrs) = engine_with(d.path(), vec![l]).await;
    let refused_before = recordhub::mllp::allow::senders_refused();
    let mut lab = client(addrs[0], &p.client_tls(Some(p.client("lab.rj1.nhs.uk")))).await.unwrap();
    let ack = call(&mut lab, &adt("W1")).await;
    assert_eq!(
        normalise(&ack),
        "MSH|^~\\&|RECORDHUB|LCR|PAS|RJ1|<now>||ACK^A01^ACK|<id>|P|2.4\r\
         MSA|AR|W1|sending application/facility PAS/RJ1 is not allowed on this connection (CN=lab.rj1.nhs.uk); see the listener's allow-list\r\
         ERR|MSH^1^3^^103&Table value not found&HL70357\r"
    );
    assert!(recordhub::mllp::allow::senders_refused() > refused_before, "counted");
    let lab_msg = adt("L1").replacen("|PAS|", "|LAB|", 1);
    assert_eq!(code(&call(&mut lab, &lab_msg).await), "AA", "its own MSH-3 is accepted");
    e.stop().await;
    let lines = journal_lines(d.path());
    let w1 = lines.iter().find(|j| j["control_id"] == "W1").expect("W1 is journaled");
    assert_eq!((&w1["ack_code"], &w1["accepted"]), (&"AR".into(), &false.into()), "{w1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_listener_with_a_cidr_allow_list_takes_only_its_network() {
    let d = tempfile::tempdir().unwrap();
    let rule = AllowRule {
        who: Who::Cidr(Cidr::parse("127.0.0.2/32").unwrap()),
        sending_app: None,
        sending_facility: Some("RJ1".into()),
    };
    let l = ListenerConfig { listen: "127.0.0.1:0".parse().unwrap(), tls: None, allow: Some(vec![rule]) };
    // Bound on 127.0.0.1 only; connect from other loopback addresses.
    let (e, addrs) = engine_with(d.path(), vec![l]).await;
    let to = addrs[0];
    let from = |ip: &'static str| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        Conn::new(socket.connect(to).await.unwrap())
    };
    assert_eq!(code(&from("127.0.0.2").await.call(&adt("C1")).await), "AA");
    let ack = from("127.0.0.3").await.call(&adt("C2")).await;
    assert_eq!(code(&ack), "AR", "{ack}");
    assert!(ack.contains("(127.0.0.3)") && ack.contains("ERR|MSH^1^3^^103&"), "{ack}");
    let other_facility = adt("C3").replacen("|RJ1|", "|RX9|", 1);
    assert_eq!(code(&from("127.0.0.2").await.call(&other_facility).await), "AR");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordhub_send_with_tls_ca_talks_to_a_tls_listener() {
    let p = pki();
    let d = tempfile::tempdir().unwrap();
    let l = ListenerConfig { listen: any_port(), tls: Some(p.files(false)), allow: None };
    let (e, addrs) = engine_with(d.path(), vec![l]).await;
    let file = p.dir.path().join("m.hl7");
    std::fs::write(&file, adt("SEND1")).unwrap();
    let bin = env!("CARGO_BIN_EXE_recordhub");
    let to = addrs[0].to_string();
    let out = std::process::Command::new(bin)
        .args(["send", "--to", &to, "--tls-ca"])
        .arg(&p.ca.pem)
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, "SEND1 AA Message accepted\n");
    // Without --tls-ca the same listener gives no ACK.
    let out =
        std::process::Command::new(bin).args(["send", "--timeout", "2", "--to", &to]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    e.stop().await;
}

#[test]
fn a_missing_certificate_file_is_named_with_its_key_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[mllp]\nlisten = \"127.0.0.1:2575\"\n\n[[mllp.listeners]]\nlisten = \"0.0.0.0:2576\"\n\
                tls = { cert = \"certs/missing.pem\", key = \"certs/missing.key\" }\n";
    let path = dir.path().join("engine.toml");
    std::fs::write(&path, toml).unwrap();
    let err = recordhub::config::load(Some(&path), &Default::default()).unwrap_err().to_string();
    let cert = dir.path().join("certs/missing.pem");
    assert!(err.contains(&format!("{}:4:", path.display())), "file:line:col: {err}");
    assert!(err.contains("mllp.listeners[1].tls.cert"), "the key: {err}");
    assert!(err.contains(&format!("{}: cannot read certificates", cert.display())), "the file: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_serves_https_when_http_tls_is_set() {
    let p = pki();
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path());
    cfg.http.tls = Some(p.files(false));
    let e = Engine::start(cfg).await;
    let addr = e.running.as_ref().unwrap().http_addr;
    // Garbage first: the API goes on serving.
    let mut junk = tokio::net::TcpStream::connect(addr).await.unwrap();
    junk.write_all(b"GET /health HTTP/1.1\r\n\r\n").await.unwrap();
    let tls = p.client_tls(None).connector(&addr.to_string()).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut s = tls.connector.connect(tls.server_name.clone(), tcp).await.expect("HTTPS handshake");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut reply)).await.expect("a reply");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    e.stop().await;
}
