//! Mapping only: a parsed message through the shipped mappings.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use recordhub::hl7::Message;
use recordhub::mapping::MappingSet;
use recordhub::record::Provenance;

mod common;

fn bench(c: &mut Criterion) {
    let set = MappingSet::load_dir(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/mappings")))
        .expect("shipped mappings load");
    let prov = std::sync::Arc::new(Provenance {
        sending_app: "PAS".into(),
        sending_facility: "RJ1".into(),
        control_id: "1".into(),
        message_type: String::new(),
        event_time: None,
        seq: 1,
    });
    let mdm = common::mdm_1mb();
    let mut g = c.benchmark_group("mapping");
    for (name, input) in [("adt", common::ADT), ("oru_30obx", common::ORU), ("mdm", common::MDM), ("mdm_1mb", &mdm[..])]
    {
        let msg = Message::parse(input).expect("fixture parses");
        let mapped = set.apply(&msg, &prov).expect("fixture maps");
        assert!(!mapped.items.is_empty(), "{name} produces items");
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| b.iter(|| set.apply(std::hint::black_box(&msg), &prov).map(|m| m.items.len())));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
