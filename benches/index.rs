//! The index: the cost of filing one more result for a patient who already
//! has 10,000 items, against one who has none (DESIGN.md: one key per item,
//! so the two should cost the same), and reading a record back.

use criterion::{criterion_group, criterion_main, Criterion};
use recordhub::hl7::nhs::NhsNumber;
use recordhub::record::{Fields, Identity, Item, Kind, Mapped, Provenance};
use recordhub::store::Store;

fn result(i: u64) -> Mapped {
    let fields: Fields = [("code", serde_json::json!("FBC")), ("value", serde_json::json!(i))].into_iter().collect();
    let provenance = Provenance {
        sending_app: "WINPATH".into(),
        sending_facility: "RAL".into(),
        control_id: format!("C{i}"),
        message_type: "ORU^R01".into(),
        event_time: None,
        seq: i,
    };
    Mapped {
        identity: Identity::default(),
        items: vec![Item {
            kind: Kind::Result,
            id: format!("ACC{i}|FBC"),
            fields,
            provenance: provenance.into(),
            version: Default::default(),
        }],
        warnings: Vec::new(),
        seq_refs: Vec::new(),
        ignored: false,
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let busy = NhsNumber::parse("9434765919").unwrap();
    let fresh_numbers: Vec<NhsNumber> =
        (0..200_000u64).filter_map(|n| NhsNumber::parse(&format!("{:010}", 4_000_000_000 + n * 11)).ok()).collect();
    for i in 0..10_000 {
        store.index(&busy, &result(i)).unwrap();
    }
    assert_eq!(store.record(&busy).unwrap().len(), 10_000);
    // Reads first: the index benches below keep adding items to these patients.
    store.index(&fresh_numbers[1], &result(1)).unwrap();
    let mut r = c.benchmark_group("record_read");
    r.sample_size(20);
    r.bench_function("record_of_10000_items", |b| b.iter(|| store.record(&busy).unwrap().len()));
    r.bench_function("record_of_1_item", |b| b.iter(|| store.record(&fresh_numbers[1]).unwrap().len()));
    r.finish();
    let mut g = c.benchmark_group("index_one_result");
    let mut n = 10_000u64;
    g.bench_function("patient_with_10000_items", |b| {
        b.iter(|| {
            n += 1;
            store.index(&busy, &result(n)).unwrap()
        })
    });
    let mut k = 0usize;
    g.bench_function("patient_with_no_items", |b| {
        b.iter(|| {
            k = (k + 1) % fresh_numbers.len();
            n += 1;
            store.index(&fresh_numbers[k], &result(n)).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
