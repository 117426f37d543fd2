//! The index: the cost of filing one more result for a patient who already
//! has 10,000 items, against one who has none (DESIGN.md: one key per
//! message and patient, so the two should cost the same), the same through the whole
//! filing path (identity rules, cross-reference, versions), one more version
//! of an item that already has 1,000, and reading a record back (each
//! item's versions folded).

use criterion::{criterion_group, criterion_main, Criterion};
use recordhub::hl7::nhs::NhsNumber;
use recordhub::record::LocalId;
use recordhub::record::{Fields, Identity, Item, Kind, Mapped, Provenance};
use recordhub::store::{IndexBatch, Store};

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
            scopes: Vec::new(),
        }],
        warnings: Vec::new(),
        seq_refs: Vec::new(),
        ignored: false,
        governed: Default::default(),
    }
}

/// `result(i)` as a PAS-traced message: verified NHS number and a hospital
/// number, filed through the identity rules.
fn traced(i: u64, nhs: &NhsNumber, item_id: Option<&str>) -> Mapped {
    let mut m = result(i);
    m.identity.nhs_number = Some(nhs.as_str().to_string());
    m.identity.nhs_status = Some("NSTS01".into());
    m.identity.local_ids = vec![LocalId { organisation: "RAL".into(), id: format!("H{}", nhs.as_str()) }];
    if let Some(id) = item_id {
        m.items[0].id = id.to_string();
        m.items[0].version.time_ms = Some(i as i64 * 1000);
    }
    m
}

fn file(store: &Store, seq: u64, m: Mapped) {
    let mut batch = IndexBatch::new();
    batch.file(seq, m);
    store.apply(batch).unwrap();
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

    let mut f = c.benchmark_group("file_one_message");
    f.bench_function("patient_with_10000_items", |b| {
        b.iter(|| {
            n += 1;
            file(&store, n, traced(n, &busy, None))
        })
    });
    f.bench_function("patient_with_no_items", |b| {
        b.iter(|| {
            k = (k + 1) % fresh_numbers.len();
            n += 1;
            file(&store, n, traced(n, &fresh_numbers[k], None))
        })
    });
    let versioned = &fresh_numbers[0];
    for v in 0..1_000 {
        n += 1;
        file(&store, n, traced(v, versioned, Some("ACC0|FBC")));
    }
    f.bench_function("item_with_1000_versions", |b| {
        b.iter(|| {
            n += 1;
            file(&store, n, traced(n, versioned, Some("ACC0|FBC")))
        })
    });
    f.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
