//! Parse speed: our zero-copy parser against `hl7-parser` 0.3.0 on the same inputs.
//!
//! Both sides touch every field of every segment (summing raw lengths), so the lazy
//! splitting of our parser is not mistaken for less work. Run:
//! `cargo bench --bench parse -- --warm-up-time 1 --measurement-time 3`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

use recordhub::hl7::Message;

const INPUTS: [(&str, &[u8]); 2] =
    [("adt-a01", include_bytes!("../fixtures/adt-a01.hl7")), ("oru-r01", include_bytes!("../fixtures/oru-r01.hl7"))];

fn ours(input: &[u8]) -> usize {
    let Ok(m) = Message::parse(input) else { return 0 };
    m.segments().map(|s| s.fields().map(|f| f.raw().len()).sum::<usize>()).sum()
}

fn theirs(input: &str) -> usize {
    let Ok(m) = hl7_parser::Message::parse(input) else { return 0 };
    m.segments().map(|s| s.fields().map(|f| f.raw_value().len()).sum::<usize>()).sum()
}

fn parse(c: &mut Criterion) {
    for (name, bytes) in INPUTS {
        let text = std::str::from_utf8(bytes).expect("fixtures are UTF-8");
        // Correctness before timing: both read the whole message and see the same field bytes.
        let m = Message::parse(bytes).expect("our parser reads the fixture");
        let t = hl7_parser::Message::parse(text).expect("hl7-parser reads the fixture");
        assert_eq!(m.segment_count(), t.segments.len(), "{name}: segment count");
        assert_eq!(ours(bytes), theirs(text), "{name}: field bytes");

        let mut group = c.benchmark_group(format!("parse/{name}"));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("recordhub", bytes.len()), bytes, |b, i| b.iter(|| ours(black_box(i))));
        group.bench_with_input(BenchmarkId::new("hl7-parser", bytes.len()), text, |b, i| {
            b.iter(|| theirs(black_box(i)))
        });
        group.finish();
    }
}

criterion_group!(benches, parse);
criterion_main!(benches);
