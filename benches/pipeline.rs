//! The whole pipeline in process: parse + map + journal (one fdatasync per
//! batch: durable group commit) + ACK, through `Pipeline::process`, the
//! function the server calls, and the index writer filing every item. Each
//! sample runs batches back to back and then waits until the index writer has
//! filed the last one, so the time includes all indexing, overlapped with the
//! next batch as it is in the server.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use recordhub::pipeline::{Inbound, Mappings, Options, Pipeline};

mod common;

// The same allocator as the binary, so the bench measures what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 256;

/// `rules`: the shipped exclusion rules (mappings/governance), or none:
/// the govern stage's cost, side by side (issue 10: ≤ 10% slower).
fn open(dir: &std::path::Path, rules: bool) -> Pipeline {
    let set = recordhub::mapping::MappingSet::load_dir(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/mappings"
    )))
    .expect("shipped mappings load");
    let opts = Options {
        data_dir: dir.to_path_buf(),
        journal_segment_bytes: 1 << 30,
        index_cache_bytes: recordhub::store::DEFAULT_CACHE_BYTES,
        journal_damage: Default::default(),
        application: "RECORDHUB".into(),
        facility: "RECORDHUB".into(),
        policy: Default::default(),
        mappings: if rules {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings/governance");
            Mappings::with_rules(
                set,
                recordhub::govern::Rules::load_dir(std::path::Path::new(dir)).expect("shipped rules load"),
            )
        } else {
            Mappings::new(set)
        },
        health: Default::default(),
        faults: Default::default(),
    };
    Pipeline::open(opts).expect("pipeline opens").0
}

fn bench(c: &mut Criterion) {
    let mdm = common::mdm_1mb();
    // The fixtures are each about one patient: resent as they are, every
    // message updates the same few items of one record. `*_100k_patients`
    // spreads the same messages over 100,000 patients, as a feed does.
    let patients = common::nhs_numbers(100_000);
    let mut g = c.benchmark_group("pipeline_durable");
    g.sample_size(10);
    let inputs = [
        ("adt", common::ADT, BATCH, "9434765919", false),
        ("adt_100k_patients", common::ADT, BATCH, "9434765919", true),
        ("oru_30obx", common::ORU, BATCH, "9449305552", false),
        ("oru_30obx_100k_patients", common::ORU, BATCH, "9449305552", true),
        ("mdm_1mb", &mdm[..], 8, "9434765919", false),
    ];
    // Each input runs with the shipped governance rules, as the engine does;
    // RECORDHUB_BENCH_NO_RULES=1 adds it without them (`NAME/no_rules`).
    let without = std::env::var_os("RECORDHUB_BENCH_NO_RULES").is_some();
    let runs = inputs.iter().flat_map(|i| [(*i, true), (*i, false)]).filter(|(_, rules)| without || *rules);
    for ((name, input, batch, nhs, spread), rules) in runs {
        let name = match rules {
            true => name.to_string(),
            false => format!("{name}/no_rules"),
        };
        let name = name.as_str();
        let dir = tempfile::tempdir().unwrap();
        let mut p = open(dir.path(), rules);
        let mut next = 0u64;
        let mut make = || {
            (0..batch)
                .map(|_| {
                    next += 1;
                    let m = common::with_control_id(input, next);
                    match spread {
                        true => common::for_patient(&m, nhs, &patients[next as usize % patients.len()]),
                        false => m,
                    }
                })
                .collect::<Vec<_>>()
        };
        let check = make();
        let frames: Vec<Inbound> = check.iter().map(|m| Inbound::message(m, "bench", 0)).collect();
        let out = p.process(&frames);
        p.sync_index();
        assert!(
            out.iter().all(|o| o.code.is_accept()),
            "{name}: every message accepted: {:?}",
            out.iter().find(|o| !o.code.is_accept()).map(|o| &o.problem)
        );
        let nhs = if spread { &patients[1] } else { nhs };
        let nhs = recordhub::hl7::nhs::NhsNumber::parse(nhs).unwrap();
        assert!(!p.store().record(&nhs).unwrap().is_empty(), "{name}: items filed under {nhs}");
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let inputs: Vec<Vec<Vec<u8>>> = (0..iters).map(|_| make()).collect();
                let start = Instant::now();
                for msgs in &inputs {
                    let frames: Vec<Inbound> = msgs.iter().map(|m| Inbound::message(m, "bench", 0)).collect();
                    black_box(p.process(&frames));
                }
                p.sync_index();
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
