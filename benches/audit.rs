//! The audit log's append path: one reader at a time (every append waits
//! its own fdatasync) against many readers at once (group commit: one
//! fdatasync per batch), in appends/s. The log lives in a temporary
//! directory (`AUDIT_BENCH_DIR` to choose its file system).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use recordhub::audit::{verify, AuditEvent, AuditLog, Options};

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        at_ms: 1_764_000_000_000 + i as u64,
        user: "dr.jones".into(),
        role: "clinician".into(),
        org: "RJ1".into(),
        purpose: "direct_care".into(),
        reason: "declared by the professional".into(),
        nhs_number: Some("9434765919".into()),
        action: "read".into(),
        categories: vec!["patient".into(), "encounter".into(), "result".into()],
        items: (0..20).map(|k| format!("result/RAL/ACC{i}-{k}")).collect(),
        client: "10.1.2.3:50412".into(),
        via: "http".into(),
        outcome: "shown".into(),
        ..AuditEvent::default()
    }
}

/// `threads` callers each appending `per_thread` events; the elapsed time.
fn run(log: &AuditLog, threads: usize, per_thread: usize) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..per_thread {
                    log.append(&event(t * per_thread + i)).expect("append");
                }
            });
        }
    });
    start.elapsed()
}

fn appends(c: &mut Criterion) {
    let base = std::env::var_os("AUDIT_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let log = AuditLog::open_with(dir.path(), Options { head_log: None, ..Options::default() }).expect("open");
    // Correct before timed: appends from many threads chain into one sound log.
    run(&log, 8, 10);
    let report = verify::verify(log.dir(), None).expect("verify");
    assert!(report.intact() && report.lines == 80, "{report:?}");

    let mut g = c.benchmark_group("audit_append");
    g.sample_size(10);
    const TOTAL: usize = 256;
    g.throughput(Throughput::Elements(TOTAL as u64));
    for threads in [1, 16, 64] {
        g.bench_function(format!("{threads}_readers"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run(&log, threads, TOTAL / threads)).sum())
        });
    }
    g.finish();
}

criterion_group!(benches, appends);
criterion_main!(benches);
