//! `GET /metrics`: exact counts for accepted, rejected and duplicate
//! messages, histogram counts that agree with them, valid Prometheus text
//! format, and the shipped alert rules and dashboard only naming metrics the
//! engine exports.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{adt, config, Engine};

fn get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut resp = agent.get(url).call().expect("HTTP answers");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

async fn scrape(e: &Engine) -> (u16, String) {
    let url = format!("http://{}/metrics", e.running.as_ref().unwrap().http_addr);
    tokio::task::spawn_blocking(move || get(&url)).await.unwrap()
}

/// A parsed exposition: declared types, and every sample as
/// `name{labels}` (labels as written) → value.
struct Exposition {
    types: BTreeMap<String, String>,
    samples: BTreeMap<String, f64>,
}

impl Exposition {
    fn value(&self, key: &str) -> f64 {
        *self.samples.get(key).unwrap_or_else(|| panic!("no sample {key}"))
    }

    /// Every metric name a query may use: families and their sample names.
    fn names(&self) -> BTreeSet<String> {
        let samples = self.samples.keys().map(|k| k.split('{').next().unwrap().to_string());
        self.types.keys().cloned().chain(samples).collect()
    }
}

fn is_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// Checks the Prometheus text format (0.0.4) line by line: HELP/TYPE
/// comments, `name{k="v",...} value` samples with valid names, escapes and
/// numbers, each sample after its family's TYPE; histogram buckets
/// cumulative with `+Inf` equal to `_count`.
fn parse(text: &str) -> Exposition {
    let mut types = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, tail) = (parts.next().unwrap(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(is_name(name), "bad metric name in {line:?}");
            match kind {
                "HELP" => {}
                "TYPE" => {
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail), "{line:?}");
                    assert!(types.insert(name.to_string(), tail.to_string()).is_none(), "TYPE twice: {line:?}");
                }
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        assert!(!line.is_empty(), "blank line in exposition");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(is_name(name), "bad sample name {line:?}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            check_labels(labels, line);
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).map(String::as_str) == Some("histogram")))
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line:?}");
        assert!(samples.insert(series.to_string(), value).is_none(), "sample twice: {line:?}");
    }
    for (family, t) in &types {
        if t == "histogram" {
            let buckets: Vec<f64> =
                samples.iter().filter(|(k, _)| k.starts_with(&format!("{family}_bucket{{"))).map(|(_, v)| *v).collect();
            let inf = samples[&format!("{family}_bucket{{le=\"+Inf\"}}")];
            assert_eq!(inf, samples[&format!("{family}_count")], "{family}: +Inf bucket is the count");
            assert!(buckets.iter().all(|b| *b <= inf), "{family}: buckets are cumulative");
        }
    }
    Exposition { types, samples }
}

/// `{k="v",k2="v2"}` with only `\\`, `\"` and `\n` escapes.
fn check_labels(labels: &str, line: &str) {
    let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}')).unwrap_or_else(|| panic!("{line:?}"));
    let mut rest = inner;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
        assert!(is_name(key), "bad label name in {line:?}");
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    assert!(matches!(chars.next(), Some((_, '\\' | '"' | 'n'))), "bad escape in {line:?}")
                }
                Some((i, '"')) => break i,
                Some((_, '\n')) => panic!("raw newline in {line:?}"),
                Some(_) => {}
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn messages(msg_type: &str, app: &str, facility: &str, verdict: &str, duplicate: bool) -> String {
    format!(
        "recordhub_messages_total{{msg_type=\"{msg_type}\",sending_app=\"{app}\",sending_facility=\"{facility}\",\
         verdict=\"{verdict}\",duplicate=\"{duplicate}\"}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_accepted_rejected_and_duplicate_messages_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let mut c = e.connect().await;
    assert!(c.call(&adt("M1")).await.contains("MSA|AA|M1"));
    assert!(c.call(&adt("M2")).await.contains("MSA|AA|M2"));
    assert!(c.call(&adt("M1")).await.contains("MSA|AA|M1"), "a retransmission is answered AA again");
    // OBR-3 (filler order number) is required for a result: AE 101.
    let no_filler = "MSH|^~\\&|WINPATH|RAL|RECORDHUB|LCR|20261130092000||ORU^R01^ORU_R01|E101|P|2.5\r\
                     PID|1||9449305552^^^NHS^NH\rOBR|1|||K^Potassium\r";
    assert!(c.call(no_filler).await.contains("MSA|AE|E101"));
    let unknown_event = "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261130093000||ADT^Z99|E201|P|2.4\rPID|1\r";
    assert!(c.call(unknown_event).await.contains("MSA|AR|E201|"));

    let (status, text) = scrape(&e).await;
    assert_eq!(status, 200, "{text}");
    let m = parse(&text);
    assert_eq!(m.value(&messages("ADT^A01^ADT_A01", "PAS", "RJ1", "accepted", false)), 2.0);
    assert_eq!(m.value(&messages("ADT^A01^ADT_A01", "PAS", "RJ1", "accepted", true)), 1.0);
    assert_eq!(m.value(&messages("ORU^R01^ORU_R01", "WINPATH", "RAL", "error", false)), 1.0);
    assert_eq!(m.value(&messages("ADT^Z99", "PAS", "RJ1", "rejected", false)), 1.0);
    let all: f64 = m.samples.iter().filter(|(k, _)| k.starts_with("recordhub_messages_total{")).map(|(_, v)| v).sum();
    assert_eq!(all, 5.0, "{text}");
    assert_eq!(m.value("recordhub_naks_total{code=\"101\"}"), 1.0);
    assert_eq!(m.value("recordhub_naks_total{code=\"201\"}"), 1.0);
    assert_eq!(m.value("recordhub_ack_latency_seconds_count"), 5.0, "one ACK latency per message");
    // Sent one at a time: each journaled message is its own commit; the
    // duplicate is answered from the dedup table and commits nothing.
    assert_eq!(m.value("recordhub_journal_commit_seconds_count"), 4.0);
    assert_eq!(m.value("recordhub_journal_commit_batch_entries_count"), 4.0);
    assert_eq!(m.value("recordhub_journal_commit_batch_entries_sum"), 4.0);
    assert_eq!(m.value("recordhub_journal_commit_failures_total"), 0.0);
    assert_eq!(m.value("recordhub_journal_refused_messages_total"), 0.0);
    assert_eq!(m.value("recordhub_connections_total{event=\"accepted\"}"), 1.0);
    assert_eq!(m.value("recordhub_connections_open"), 1.0);
    assert_eq!(m.value("recordhub_journal_segments"), 1.0);
    assert!(m.value("recordhub_journal_bytes") > 0.0);
    for part in ["pipeline", "journal", "index"] {
        assert_eq!(m.value(&format!("recordhub_health{{part=\"{part}\"}}")), 1.0, "{part}");
    }
    assert_eq!(m.value("recordhub_ready{check=\"listening\"}"), 1.0);
    for name in ["recordhub_index_lag_entries", "recordhub_unindexed_entries", "recordhub_log_dropped_lines_total"] {
        assert!(m.samples.contains_key(name), "{name} missing:\n{text}");
    }
    drop(c);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_answers_404_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.http.metrics = false;
    let e = Engine::start(cfg).await;
    let mut c = e.connect().await;
    assert!(c.call(&adt("OFF1")).await.contains("MSA|AA|OFF1"));
    let (status, text) = scrape(&e).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("[http] metrics"), "{text}");
    drop(c);
    e.stop().await;
}

/// Metric names a PromQL expression uses (`recordhub_…` identifiers).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("recordhub_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_alerts_and_dashboard_load_and_name_only_exported_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let mut c = e.connect().await;
    assert!(c.call(&adt("D1")).await.contains("MSA|AA|D1"));
    // A family shows once it has a series: one NAK for recordhub_naks_total.
    let unknown_event = "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261130093000||ADT^Z99|D2|P|2.4\rPID|1\r";
    assert!(c.call(unknown_event).await.contains("MSA|AR|D2|"));
    let (_, text) = scrape(&e).await;
    let exported = parse(&text).names();
    drop(c);
    e.stop().await;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let yaml = std::fs::read_to_string(root.join("prometheus-alerts.yml")).unwrap();
    let alerts: serde_json::Value = serde_norway::from_str(&yaml).expect("alerts YAML loads");
    let mut exprs = Vec::new();
    for group in alerts["groups"].as_array().expect("groups") {
        assert!(group["name"].is_string());
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            assert!(rule["expr"].is_string(), "{name}: expr");
            assert!(rule["labels"]["severity"].is_string(), "{name}: severity");
            assert!(rule["annotations"]["summary"].is_string(), "{name}: summary");
            exprs.push((name.to_string(), rule["expr"].as_str().unwrap().to_string()));
        }
    }
    assert!(exprs.len() >= 5, "no ACKs, NAK rate, index lag, journal refusing, disk, health");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("grafana-dashboard.json")).unwrap())
            .expect("dashboard JSON loads");
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push((panel["title"].to_string(), target["expr"].as_str().expect("expr").to_string()));
        }
    }
    for (what, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{what}: {expr} names no recordhub metric");
        for n in names {
            assert!(exported.contains(&n), "{what}: {n} is not exported by /metrics");
        }
    }
}
