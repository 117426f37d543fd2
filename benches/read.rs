//! Issue 11's read costs, for one patient with 1,000 and 10,000 items:
//! - `json`: the JSON read (`read::read_audited`, what `GET /patients/{nhs}`
//!   does after authentication: index scan, fold, role filter, one audit
//!   line appended and synced);
//! - `page`: the record page (`web::record_page` + rendering the template:
//!   the same read, then the page model and the HTML);
//! - `jwt`: verifying one bearer token alone, so the split shows whether
//!   verification dominates a lookup.
//!
//! ```text
//! cargo bench --bench read
//! ```
//!
//! Criterion's median is in `target/criterion/<group>/<case>/new/estimates.json`;
//! after the criterion groups a plain loop prints p50/p99 (criterion reports
//! no percentiles). The items are results of ten observations each (a
//! patient's items are one prefix scan whatever their kind); no document
//! bodies (those add one journal read each). The audit log is on the same
//! disk as `target/`, so its fsync is in the figures, as in production.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use criterion::{criterion_group, BenchmarkId, Criterion};
use recordhub::access::Access;
use recordhub::audit::AuditLog;
use recordhub::auth::mint::{mint, MintRequest};
use recordhub::auth::{Auth, Principal, Purpose};
use recordhub::config::Config;
use recordhub::hl7::nhs::NhsNumber;
use recordhub::read::{read_audited, ReadCtx, ReadRequest, View, Viewed};
use recordhub::record::{Fields, Identity, Item, Kind, Mapped, Provenance};
use recordhub::store::Store;
use recordhub::web::{record_page, Rendered};

const NHS: &str = "9434765919";
const SIZES: [usize; 2] = [1_000, 10_000];

fn result(i: usize, prov: &Arc<Provenance>) -> Item {
    let obs: Vec<serde_json::Value> = (0..10)
        .map(|o| {
            serde_json::json!({
                "code": format!("T{o}"), "name": format!("Test {o}"), "value": format!("{}.{}", 4 + o, i % 10),
                "units": "mmol/L", "range": "3.5-5.3", "abnormal_flag": if o == 3 { "H" } else { "N" },
                "status": "final", "value_type": "NM",
            })
        })
        .collect();
    let fields: Fields = [
        ("test_code", serde_json::json!("UE")),
        ("test_name", serde_json::json!("Urea and electrolytes")),
        ("collected", serde_json::json!(format!("2026-{:02}-{:02}T09:30:00", 1 + i % 12, 1 + i % 28))),
        ("status", serde_json::json!("final")),
        ("observations", serde_json::Value::Array(obs)),
    ]
    .into_iter()
    .collect();
    Item {
        kind: Kind::Result,
        id: format!("ACC{i:06}^UE"),
        fields,
        provenance: prov.clone(),
        version: Default::default(),
        scopes: Vec::new(),
    }
}

/// A store under `target/` with `n` items for one patient, and its read context.
fn fixture(n: usize) -> (tempfile::TempDir, ReadCtx) {
    let dir = tempfile::Builder::new().prefix("bench-read").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let store = Store::open(&dir.path().join("index")).expect("store opens");
    let prov = Arc::new(Provenance {
        sending_app: "WINPATH".into(),
        sending_facility: "RJ1LAB".into(),
        control_id: "C1".into(),
        message_type: "ORU^R01".into(),
        event_time: Some("2026-11-20T15:10:00".into()),
        seq: 1,
    });
    let items: Vec<Item> = (0..n).map(|i| result(i, &prov)).collect();
    let mapped = Mapped {
        identity: Identity::default(),
        items,
        warnings: vec![],
        seq_refs: vec![],
        ignored: false,
        governed: Default::default(),
    };
    let nhs = NhsNumber::parse(NHS).expect("a valid NHS number");
    store.index(&nhs, &mapped).expect("filed");
    let audit = AuditLog::open(dir.path()).expect("audit log opens");
    (dir, ReadCtx { store, audit, access: Arc::new(Access::allow_all()) })
}

fn who() -> Principal {
    Principal { user: "bench".into(), role: "clinician".into(), org: "RJ1".into() }
}

fn json(ctx: &ReadCtx, nhs: &NhsNumber) -> usize {
    let (who, purpose) = (who(), Purpose::default());
    let req = ReadRequest { nhs, who: &who, purpose: &purpose, client: "bench", via: "http", view: View::Record };
    match read_audited(ctx, &req) {
        Ok(Viewed::Shown(v)) => serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(0),
        _ => 0,
    }
}

fn page(ctx: &ReadCtx, dir: &std::path::Path, nhs: &NhsNumber) -> usize {
    match record_page(ctx, dir, nhs, &who(), &Purpose::default(), "bench") {
        Ok(Rendered::Page(p)) => p.render().map(|h| h.len()).unwrap_or(0),
        _ => 0,
    }
}

fn reads(c: &mut Criterion) {
    let nhs = NhsNumber::parse(NHS).expect("a valid NHS number");
    let mut g = c.benchmark_group("read");
    g.sample_size(10);
    for n in SIZES {
        let (dir, ctx) = fixture(n);
        let html = page(&ctx, &dir.path().join("journal"), &nhs);
        assert!(json(&ctx, &nhs) > n * 100 && html > n * 100, "the read shows every item");
        g.bench_with_input(BenchmarkId::new("json", n), &n, |b, _| b.iter(|| black_box(json(&ctx, &nhs))));
        g.bench_with_input(BenchmarkId::new("page", n), &n, |b, _| {
            b.iter(|| black_box(page(&ctx, &dir.path().join("journal"), &nhs)))
        });
    }
    g.finish();
}

/// A verifier trusting a fresh local key, and a token it signed.
fn jwt_fixture() -> (tempfile::TempDir, Auth, String) {
    let dir = tempfile::Builder::new().prefix("bench-jwt").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let mut cfg = Config::default();
    cfg.store.data_dir = dir.path().to_path_buf();
    let req = MintRequest {
        user: "bench".into(),
        role: "clinician".into(),
        org: "RJ1".into(),
        lifetime: std::time::Duration::from_secs(3600),
    };
    let token = mint(&cfg, &req).expect("token minted");
    let auth = Auth::open(&cfg).expect("verifier");
    assert!(auth.verify(&token).is_ok(), "the token verifies");
    (dir, auth, token)
}

fn jwt(c: &mut Criterion) {
    let (_dir, auth, token) = jwt_fixture();
    c.bench_function("read/jwt", |b| b.iter(|| black_box(auth.verify(black_box(&token)).is_ok())));
}

/// p50 and p99 of `f` over `runs` calls, in µs.
fn percentiles(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut t: Vec<u128> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_nanos()
        })
        .collect();
    t.sort_unstable();
    let at = |q: f64| t[((t.len() as f64 * q) as usize).min(t.len() - 1)] as f64 / 1000.0;
    (at(0.50), at(0.99))
}

fn report() {
    let nhs = NhsNumber::parse(NHS).expect("a valid NHS number");
    for n in SIZES {
        let (dir, ctx) = fixture(n);
        let runs = if n >= 10_000 { 50 } else { 200 };
        let (j50, j99) = percentiles(runs, || {
            black_box(json(&ctx, &nhs));
        });
        let (p50, p99) = percentiles(runs, || {
            black_box(page(&ctx, &dir.path().join("journal"), &nhs));
        });
        // The parts: the index scan and fold alone, and one audit line alone.
        let (s50, s99) = percentiles(runs, || {
            black_box(ctx.store.record(&nhs).map(|r| r.len()).unwrap_or(0));
        });
        let event = recordhub::audit::AuditEvent {
            items: (0..n).map(|i| format!("result/RJ1LAB/ACC{i:06}^UE")).collect(),
            ..Default::default()
        };
        let (a50, a99) = percentiles(runs, || {
            black_box(ctx.audit.append(&event).is_ok());
        });
        println!(
            "read items={n} runs={runs} json_p50_us={j50:.0} json_p99_us={j99:.0} page_p50_us={p50:.0} page_p99_us={p99:.0} \
             store_p50_us={s50:.0} store_p99_us={s99:.0} audit_p50_us={a50:.0} audit_p99_us={a99:.0}"
        );
    }
    let (_dir, auth, token) = jwt_fixture();
    let (v50, v99) = percentiles(2000, || {
        black_box(auth.verify(&token).is_ok());
    });
    println!("jwt runs=2000 verify_p50_us={v50:.1} verify_p99_us={v99:.1}");
}

criterion_group!(benches, reads, jwt);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
}
