//! What recording one message's counters costs on the pipeline thread
//! (labels already seen, the common case; and a NAK): the budget is well
//! under a microsecond at ~40k messages/s. Run:
//! `cargo bench --bench metrics -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

use recordhub::metrics::{JournalSize, MessageLabels, Metrics, Scrape};

fn labels(verdict: &'static str) -> MessageLabels<'static> {
    MessageLabels {
        msg_type: "ADT^A01^ADT_A01",
        sending_app: "PAS",
        sending_facility: "RJ1",
        verdict,
        duplicate: false,
    }
}

fn record(c: &mut Criterion) {
    let m = Metrics::new();
    let accepted = labels("accepted");
    let rejected = labels("rejected");
    m.message(&accepted, None, Duration::from_micros(300));
    m.message(&rejected, Some(201), Duration::from_micros(300));
    let mut g = c.benchmark_group("metrics");
    g.bench_function("message/accepted", |b| {
        b.iter(|| m.message(black_box(&accepted), None, black_box(Duration::from_micros(300))))
    });
    g.bench_function("message/nak", |b| {
        b.iter(|| m.message(black_box(&rejected), Some(201), black_box(Duration::from_micros(300))))
    });
    g.bench_function("commit", |b| b.iter(|| m.commit(black_box(40), black_box(Duration::from_micros(900)))));
    let scrape = Scrape {
        journal: JournalSize::default(),
        index_lag: 0,
        unindexed: Some(0),
        refused: 0,
        connections: Default::default(),
        log: Default::default(),
        charset_fallbacks: 0,
        health: vec![("journal", true)],
        ready: vec![],
        cluster: None,
    };
    // Correctness once before timing: the series exist.
    assert!(m.render(&scrape).contains("recordhub_naks_total{code=\"201\"}"));
    g.bench_function("render", |b| b.iter(|| black_box(m.render(&scrape)).len()));
    g.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
