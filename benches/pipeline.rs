//! The whole pipeline in process: parse + map + journal (one fdatasync per
//! batch: durable group commit) + index + ACK, through `Pipeline::process`,
//! the function the server calls. And the same without the journal
//! (parse + map + index only, sync excluded).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use recordhub::pipeline::{Frame, Inbound, Mappings, Options, Pipeline};

mod common;

// The same allocator as the binary, so the bench measures what runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 256;

fn open(dir: &std::path::Path) -> Pipeline {
    let set = recordhub::mapping::MappingSet::load_dir(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/mappings"
    )))
    .expect("shipped mappings load");
    let opts = Options {
        data_dir: dir.to_path_buf(),
        journal_segment_bytes: 1 << 30,
        application: "RECORDHUB".into(),
        facility: "RECORDHUB".into(),
        policy: Default::default(),
        mappings: Mappings::new(set),
    };
    Pipeline::open(opts).expect("pipeline opens").0
}

fn bench(c: &mut Criterion) {
    let mdm = common::mdm_1mb();
    let mut g = c.benchmark_group("pipeline_durable");
    g.sample_size(10);
    for (name, input, batch) in
        [("adt", common::ADT, BATCH), ("oru_30obx", common::ORU, BATCH), ("mdm_1mb", &mdm[..], 8)]
    {
        let dir = tempfile::tempdir().unwrap();
        let mut p = open(dir.path());
        let mut next = 0u64;
        let mut make = || {
            (0..batch)
                .map(|_| {
                    next += 1;
                    common::with_control_id(input, next)
                })
                .collect::<Vec<_>>()
        };
        let check = make();
        let frames: Vec<Inbound> =
            check.iter().map(|m| Inbound { frame: Frame::Message(m), peer: "bench", received_at_ms: 0 }).collect();
        let out = p.process(&frames);
        assert!(
            out.iter().all(|o| o.code.is_accept()),
            "{name}: every message accepted: {:?}",
            out.iter().find(|o| !o.code.is_accept()).map(|o| &o.problem)
        );
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(name, |b| {
            b.iter_batched(
                &mut make,
                |msgs| {
                    let frames: Vec<Inbound> = msgs
                        .iter()
                        .map(|m| Inbound { frame: Frame::Message(m), peer: "bench", received_at_ms: 0 })
                        .collect();
                    p.process(&frames).len()
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
