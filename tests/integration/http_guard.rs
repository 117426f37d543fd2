//! The read API's edges (issue 11, found by a probe): Host checks against
//! DNS rebinding, header abuse, cross-origin and text/plain POSTs, read
//! rate limits with the enumeration alert, and owner-only data files.
//! Requests are written byte for byte, so Host and duplicate headers are
//! exactly what a hostile client would send. What the handlers answer
//! behind the guard (a record, 401 without a token, 404) is not these
//! tests' business: they assert what the guard refuses and what it lets by.

use std::net::SocketAddr;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{adt, code, config, Engine};

const NHS: &str = "9434765919";

struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// One HTTP/1.1 request on its own connection; `headers` are sent as given
/// (add `Host` yourself, see [`ours`]).
async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Reply { status, head: head.to_string(), body: body.to_string() }
}

fn http_addr(e: &Engine) -> SocketAddr {
    e.running.as_ref().unwrap().http_addr
}

/// The default `Host` of the engine's read API.
fn ours(e: &Engine) -> String {
    format!("127.0.0.1:{}", http_addr(e).port())
}

async fn get(e: &Engine, path: &str, headers: &[(&str, &str)]) -> Reply {
    let host = ours(e);
    let mut all = vec![("Host", host.as_str())];
    all.extend_from_slice(headers);
    send(http_addr(e), "GET", path, &all, "").await
}

async fn metrics(e: &Engine) -> String {
    get(e, "/metrics", &[]).await.body
}

/// The value of one series in a scrape, 0 when absent.
fn series(scrape: &str, name: &str) -> u64 {
    scrape.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0)
}

/// The `n`th valid NHS number (Modulus 11) from 943476000.
fn nhs(n: usize) -> String {
    (943_476_000u64..)
        .filter_map(|base| {
            let digits: Vec<u64> = base.to_string().bytes().map(|b| u64::from(b - b'0')).collect();
            let sum: u64 = digits.iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
            match 11 - sum % 11 {
                10 => None,
                11 => Some(format!("{base}0")),
                check => Some(format!("{base}{check}")),
            }
        })
        .nth(n)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_a_foreign_host_is_refused_on_patient_reads_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    assert_eq!(code(&e.connect().await.call(&adt("HOST1")).await), "AA");
    let evil = [("Host", "evil.example"), ("X-User", "dr.jones")];
    let r = send(http_addr(&e), "GET", &format!("/patients/{NHS}"), &evil, "").await;
    assert_eq!(r.status, 421, "{}", r.head);
    assert!(r.body.contains("\"error\"") && !r.body.contains("SMITH"), "{}", r.body);
    let port = http_addr(&e).port().to_string();
    let rebound = format!("evil.example:{port}");
    let r = send(http_addr(&e), "GET", "/health", &[("Host", rebound.as_str())], "").await;
    assert_eq!(r.status, 421, "{}", r.head);

    for host in [ours(&e), format!("localhost:{port}")] {
        let r = send(http_addr(&e), "GET", "/health", &[("Host", host.as_str())], "").await;
        assert_eq!(r.status, 200, "{host}: {}", r.body);
    }
    let r = get(&e, &format!("/patients/{NHS}"), &[("X-User", "dr.jones")]).await;
    assert_ne!(r.status, 421, "our own Host reaches the handler: {}", r.body);
    assert_eq!(series(&metrics(&e).await, "recordhub_http_refused_total{reason=\"host\"}"), 2);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_credentials_or_oversized_headers_are_refused_before_any_handler() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let path = format!("/patients/{NHS}");
    let r = get(&e, &path, &[("X-User", "dr.jones"), ("X-User", "admin")]).await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(r.body.contains("more than once"), "{}", r.body);
    let r =
        get(&e, &path, &[("X-User", "dr.jones"), ("Authorization", "Bearer a"), ("Authorization", "Bearer b")]).await;
    assert_eq!(r.status, 400, "{}", r.head);

    // The probe's 60 kB X-User.
    let big = "a".repeat(60 * 1024);
    let r = get(&e, &path, &[("X-User", big.as_str())]).await;
    assert_eq!(r.status, 431, "{}", r.head);
    assert!(r.body.contains("max_header_bytes"), "{}", r.body);
    // Many headers, each under the bound, too much together (40 × 1 KiB).
    let kib = "b".repeat(1024);
    let names: Vec<String> = (0..40).map(|i| format!("X-Pad-{i}")).collect();
    let mut padded: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), kib.as_str())).collect();
    padded.push(("X-User", "dr.jones"));
    let r = get(&e, &path, &padded).await;
    assert_eq!(r.status, 431, "{}", r.head);
    assert!(r.body.contains("max_headers_bytes"), "{}", r.body);
    // Too many small ones.
    let many: Vec<(&str, &str)> = names.iter().chain(&names).take(80).map(|n| (n.as_str(), "x")).collect();
    let r = get(&e, "/health", &many).await;
    assert_eq!(r.status, 431, "{}", r.head);

    let scrape = metrics(&e).await;
    assert_eq!(series(&scrape, "recordhub_http_refused_total{reason=\"duplicate_header\"}"), 2, "{scrape}");
    assert_eq!(series(&scrape, "recordhub_http_refused_total{reason=\"header_too_large\"}"), 2, "{scrape}");
    assert_eq!(series(&scrape, "recordhub_http_refused_total{reason=\"too_many_headers\"}"), 1, "{scrape}");
    e.stop().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Issue 11: a browser page could `POST /admin/reload` with text/plain (no
/// preflight) and it reloaded. A rule file is added while the engine runs:
/// the refused POSTs must not load it, so a message it would exclude is
/// still filed whole (no suppression counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_plain_or_cross_origin_reload_is_refused_and_reloads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let maps = dir.path().join("mappings");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"), &maps);
    let gender = maps.join("governance/gender.toml");
    let shipped = std::fs::read_to_string(&gender).unwrap();
    std::fs::remove_file(&gender).unwrap();
    let mut cfg = config(&dir.path().join("data"));
    cfg.mapping.dir = maps.clone();
    let e = Engine::start(cfg).await;
    std::fs::write(&gender, &shipped).unwrap();
    let (addr, host) = (http_addr(&e), ours(&e));
    let post = |headers: Vec<(&'static str, String)>| {
        let mut all = vec![("Host", host.clone())];
        all.extend(headers);
        async move {
            let h: Vec<(&str, &str)> = all.iter().map(|(n, v)| (*n, v.as_str())).collect();
            send(addr, "POST", "/admin/reload", &h, "").await
        }
    };

    let r = post(vec![("Content-Type", "text/plain".into())]).await;
    assert_eq!(r.status, 403, "{}", r.head);
    assert!(r.body.contains("application/json"), "{}", r.body);
    let r = post(vec![("Content-Type", "application/x-www-form-urlencoded".into())]).await;
    assert_eq!(r.status, 403, "{}", r.head);
    let r = post(vec![]).await;
    assert_eq!(r.status, 403, "a bodyless POST without the header: {}", r.head);
    let evil = vec![("Content-Type", "application/json".into()), ("Origin", "http://evil.example".into())];
    let r = post(evil).await;
    assert_eq!(r.status, 403, "{}", r.head);
    assert!(r.body.contains("cross-origin"), "{}", r.body);
    let r = post(vec![("Content-Type", "application/json".into()), ("Sec-Fetch-Site", "cross-site".into())]).await;
    assert_eq!(r.status, 403, "{}", r.head);

    // Nothing was reloaded: a message the new rule would exclude is filed whole.
    let gid = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/governance/adt-gender-identity.hl7"),
    )
    .unwrap();
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&gid).await), "AA");
    let suppressed = "recordhub_items_suppressed_total{rule=\"gender-identity-diagnosis\"}";
    assert_eq!(series(&metrics(&e).await, suppressed), 0, "the refused POSTs loaded the new rule");

    // Our own origin with JSON, or a custom header, pass the guard (what the
    // handler then decides, e.g. whether the caller is an admin, is its own).
    let guard_refusal = |r: &Reply| r.status == 403 && (r.body.contains("cross-origin") || r.body.contains("changes"));
    let origin = format!("http://{host}");
    let json = post(vec![("Content-Type", "application/json".into()), ("Origin", origin)]).await;
    assert!(!guard_refusal(&json), "{}", json.body);
    let marked = post(vec![("X-Requested-By", "ops-script".into())]).await;
    assert!(!guard_refusal(&marked), "{}", marked.body);
    if json.status == 200 {
        // Where the handler let the reload happen, the rule is now in force: the metric does move.
        assert_eq!(code(&c.call(&gid.replace("GID00001", "GID00002")).await), "AA");
        assert!(series(&metrics(&e).await, suppressed) > 0, "the control: a loaded rule counts");
    }

    let scrape = metrics(&e).await;
    assert_eq!(series(&scrape, "recordhub_http_refused_total{reason=\"content_type\"}"), 3, "{scrape}");
    assert_eq!(series(&scrape, "recordhub_http_refused_total{reason=\"cross_origin\"}"), 2, "{scrape}");
    e.stop().await;
}

/// The probe: 300 NHS-number lookups in 0.1 s, unlimited. Now the user's
/// bucket (120 a minute) runs dry, later reads get 429 with Retry-After,
/// and reading that many distinct patients raises the enumeration alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_300_lookups_is_rate_limited_and_raises_the_enumeration_alert() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let (mut ok, mut limited, mut retry_after) = (0, 0, None);
    for i in 0..300 {
        let r = get(&e, &format!("/patients/{}", nhs(i)), &[("X-User", "dr.probe")]).await;
        match r.status {
            421 | 431 | 400 | 403 => panic!("refused by the guard for another reason: {}", r.body),
            429 => {
                limited += 1;
                assert!(r.body.contains("reads_per_minute"), "{}", r.body);
                let header = |l: &str| l.to_ascii_lowercase().strip_prefix("retry-after: ").map(str::to_string);
                retry_after = r.head.lines().find_map(header);
            }
            _ => ok += 1,
        }
    }
    // A minute's worth passes at once, plus what refilled (2 a second) while the loop ran.
    assert!((120..150).contains(&ok), "{ok} passed");
    assert_eq!(ok + limited, 300);
    let secs: u64 = retry_after.expect("Retry-After on a 429").parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    let scrape = metrics(&e).await;
    assert_eq!(series(&scrape, "recordhub_http_rate_limited_total{scope=\"user\"}"), limited, "{scrape}");
    assert_eq!(series(&scrape, "recordhub_http_enumeration_alerts_total{scope=\"user\"}"), 1, "{scrape}");
    assert_eq!(series(&scrape, "recordhub_http_enumeration_alerts_total{scope=\"client\"}"), 1, "{scrape}");
    // Another user is unaffected (the address is well under its 600).
    let other = get(&e, &format!("/patients/{NHS}"), &[("X-User", "dr.jones")]).await;
    assert_ne!(other.status, 429, "{}", other.body);
    assert_ne!(other.status, 421, "{}", other.body);
    e.stop().await;
}

/// A ward: a few clinicians each opening a handful of records, again and
/// again, are never limited and raise no alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_pace_of_reads_is_not_limited() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    for round in 0..10 {
        for (user, patient) in [("dr.a", 0), ("dr.b", 1), ("nurse.c", 2), ("dr.a", 3 + round % 5)] {
            let r = get(&e, &format!("/patients/{}", nhs(patient)), &[("X-User", user)]).await;
            assert!(![421, 429].contains(&r.status), "{}", r.body);
        }
    }
    let scrape = metrics(&e).await;
    assert!(!scrape.contains("recordhub_http_rate_limited_total{"), "{scrape}");
    assert!(!scrape.contains("recordhub_http_enumeration_alerts_total{"), "{scrape}");
    e.stop().await;
}

/// Many users behind one address share its allowance (a scraper rotating
/// `X-User`), while each stays under their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_users_from_one_address_meet_the_client_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.http.guard.client_reads_per_minute = 20;
    let e = Engine::start(cfg).await;
    for i in 0..20 {
        let user = format!("user{i}");
        let r = get(&e, &format!("/patients/{NHS}"), &[("X-User", user.as_str())]).await;
        assert!(![421, 429].contains(&r.status), "{}", r.body);
    }
    let r = get(&e, &format!("/patients/{NHS}"), &[("X-User", "user20")]).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("from this address"), "{}", r.body);
    assert_eq!(series(&metrics(&e).await, "recordhub_http_rate_limited_total{scope=\"client\"}"), 1);
    e.stop().await;
}

/// Issue 11: journal segments and sled files were created 0644 in a 0755
/// directory. After a run (a message filed, a record read and audited),
/// nothing under the data directory is readable by group or others, even
/// when the directory existed with 0755 before.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_under_the_data_directory_is_owner_only_after_a_run() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("left-by-an-older-version"), "x").unwrap();
    std::fs::set_permissions(data.join("left-by-an-older-version"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = Engine::start(config(&data)).await;
    assert_eq!(code(&e.connect().await.call(&adt("MODE1")).await), "AA");
    // A read attempt (shown or refused, it is audited).
    assert_ne!(get(&e, &format!("/patients/{NHS}"), &[("X-User", "dr.jones")]).await.status, 421);
    e.stop().await;

    let mut seen = Vec::new();
    let mut todo = vec![data.clone()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", p.display());
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        seen.push(p.strip_prefix(&data).unwrap().display().to_string());
    }
    let mode = |p: &str| std::fs::metadata(data.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(""), 0o700);
    assert!(seen.iter().any(|p| p.ends_with(".seg")), "a journal segment was checked: {seen:?}");
    assert!(seen.iter().any(|p| p.starts_with("audit/")), "the audit log was checked: {seen:?}");
    assert!(seen.iter().any(|p| p.starts_with("index/")), "the index was checked: {seen:?}");
}

/// The web page's forms (sign-in, search, break glass) are browser form
/// posts (no JSON): they pass the guard only from our own pages (Origin,
/// or else Referer), never cross-site; the API under /admin takes no form
/// post even from our own origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_form_posts_must_come_from_our_own_origin_and_the_admin_api_takes_none() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let (addr, host) = (http_addr(&e), ours(&e));
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let ours_origin = format!("http://{host}");
    let ours_referer = format!("http://{host}/signin");
    let record = format!("/record/{NHS}");
    for path in ["/signin", "/search", record.as_str()] {
        let refused: [&[(&str, &str)]; 3] = [
            &[("Host", &host), form],
            &[("Host", &host), form, ("Origin", "http://evil.example")],
            &[("Host", &host), form, ("Referer", "http://evil.example/phish")],
        ];
        for headers in refused {
            let r = send(addr, "POST", path, headers, "token=x").await;
            assert_eq!(r.status, 403, "{path} {headers:?}: {}", r.head);
        }
        let passed: [&[(&str, &str)]; 2] =
            [&[("Host", &host), form, ("Origin", &ours_origin)], &[("Host", &host), form, ("Referer", &ours_referer)]];
        for headers in passed {
            let r = send(addr, "POST", path, headers, "token=x").await;
            let refused = r.status == 403 && r.body.contains("cross-origin");
            assert!(!refused, "{path} {headers:?} is ours: {}", r.body);
        }
    }
    let r = send(addr, "POST", "/admin/reload", &[("Host", &host), form, ("Origin", &ours_origin)], "a=b").await;
    assert_eq!(r.status, 403, "{}", r.head);
    let scrape = metrics(&e).await;
    assert_eq!(series(&scrape, "recordhub_http_refused_total{reason=\"cross_origin\"}"), 9, "{scrape}");
    assert_eq!(series(&scrape, "recordhub_http_refused_total{reason=\"content_type\"}"), 1, "{scrape}");
    e.stop().await;
}

/// The real binary: the enumeration alert and a Host refusal are WARN
/// lines, and no NHS number reaches the log (a refused patient read is
/// logged by its route, `/patients/{id}`); the data directory the binary
/// creates is 0700.
#[cfg(unix)]
#[test]
fn the_binary_logs_the_enumeration_alert_and_refusals_without_nhs_numbers() {
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (mllp, http) = (free(), free());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_recordhub"))
        .args(["serve", "--listen", &format!("127.0.0.1:{mllp}"), "--http", &format!("127.0.0.1:{http}")])
        .arg("--data")
        .arg(&data)
        .env("RUST_LOG", "info")
        .env("RECORDHUB__HTTP__ENUMERATION_PATIENTS", "3")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("recordhub serve starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the read API did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let request = |host: &str, nhs: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        let req =
            format!("GET /patients/{nhs} HTTP/1.1\r\nHost: {host}\r\nX-User: dr.probe\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let numbers: Vec<String> = (0..5).map(nhs).collect();
    let ours = format!("127.0.0.1:{http}");
    for n in &numbers {
        let reply = request(&ours, n);
        assert!(!reply.starts_with("HTTP/1.1 421") && !reply.starts_with("HTTP/1.1 429"), "{reply}");
    }
    assert!(request("evil.example", &numbers[0]).starts_with("HTTP/1.1 421"));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    child.wait().unwrap();

    let warn = |text: &str| log.lines().find(|l| l.contains(text) && l.contains("WARN")).map(str::to_string);
    let alert = warn("possible enumeration: many distinct patients read").expect("the alert is logged");
    assert!(alert.contains("\"distinct_patients\":4") && alert.contains("dr.probe"), "{alert}");
    let refused = warn("HTTP request refused").expect("the Host refusal is logged");
    assert!(refused.contains("evil.example") && refused.contains("/patients/{id}"), "{refused}");
    for n in &numbers {
        assert!(!log.contains(n.as_str()), "NHS number {n} in the log:\n{log}");
    }
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
}
