//! Mapping only: a parsed message through the shipped mappings; and ORUs of 1k, 4k
//! and 16k OBR/OBX groups, whose time per group must stay flat (issue 8, hole 10:
//! mapping was quadratic in the group count). `govern/*`: the govern stage with
//! the shipped exclusion rules on an already mapped message (a copy of it:
//! `govern/*_copy_only` is that copy alone, to subtract).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use recordhub::hl7::Message;
use recordhub::mapping::MappingSet;
use recordhub::record::Provenance;

mod common;

/// An ORU^R01 with `groups` OBR + OBX groups, as `scripts/bigmsg.py oru` writes it.
fn oru_groups(groups: usize) -> Vec<u8> {
    let mut m = b"MSH|^~\\&|WINPATH|RJ1LAB|RECORDHUB|LCR|20261121090000||ORU^R01^ORU_R01|BIGORU1|P|2.4\r\
PID|1||9434765919^^^NHS^NH||TEST^PATIENT||19700101|F\rPV1|1|O|OPD\r"
        .to_vec();
    for g in 1..=groups {
        m.extend_from_slice(format!("OBR|{g}||A{g:06}|K\rOBX|1|NM|K^Potassium||6.8|mmol/L|3.5-5.3|H|||F\r").as_bytes());
    }
    m
}

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

    let rules = recordhub::govern::Rules::load_dir(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/mappings/governance"
    )))
    .expect("shipped rules load");
    let parse = recordhub::hl7::ParseOptions::default();
    let mut g = c.benchmark_group("govern");
    for (name, input) in [("adt", common::ADT), ("oru_30obx", common::ORU)] {
        let msg = Message::parse(input).expect("fixture parses");
        let mapped = set.apply(&msg, &prov).expect("fixture maps");
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{name}_copy_only"), |b| b.iter(|| std::hint::black_box(mapped.clone()).items.len()));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut m = mapped.clone();
                recordhub::govern::govern(&rules, &set, &parse, std::hint::black_box(&msg), &prov, &mut m);
                m.items.len()
            })
        });
    }
    g.finish();

    // Elements = groups, so criterion prints time per group: flat means linear.
    let mut g = c.benchmark_group("mapping_groups");
    g.sample_size(10);
    for groups in [1_000, 4_000, 16_000] {
        let input = oru_groups(groups);
        let msg = Message::parse(&input).expect("generated ORU parses");
        let mapped = set.apply(&msg, &prov).expect("generated ORU maps");
        let results = mapped.items.iter().filter(|i| i.kind == recordhub::record::Kind::Result).count();
        assert_eq!(results, groups, "one result per group");
        g.throughput(Throughput::Elements(groups as u64));
        g.bench_function(format!("oru_{groups}_groups"), |b| {
            b.iter(|| set.apply(std::hint::black_box(&msg), &prov).map(|m| m.items.len()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
