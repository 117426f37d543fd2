//! Journal read-back at start-up: `Journal::open` (the recovery scan of every
//! segment) and a full `JournalReader` pass, over a journal of ~700-byte ADT
//! entries (`JOURNAL_BENCH_MB`, default 64 MB), in entries/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use recordhub::journal::{EntryRef, Journal, JournalOptions, JournalReader, Reason};

const ADT: &[u8] = include_bytes!("../fixtures/adt-a01.hl7");
const ACK: &[u8] = b"MSH|^~\\&|RECORDHUB|LCR|PAS|RJ1|20261121083000||ACK^A01^ACK|RH1|P|2.4\rMSA|AA|MSG00001\r";

/// Writes ~`mb` MB in groups of 512 entries; returns the entry count.
fn write_journal(dir: &std::path::Path, mb: u64) -> u64 {
    let (mut j, _) = Journal::open(dir, JournalOptions::default()).expect("open");
    let (mut n, mut bytes) = (0u64, 0u64);
    while bytes < mb << 20 {
        for _ in 0..512 {
            n += 1;
            let control_id = format!("MSG{n:08}");
            let e = EntryRef {
                received_at_ms: 1_700_000_000_000 + n,
                peer: "10.1.2.3:50412",
                sending_app: "PAS",
                sending_facility: "RJ1",
                control_id: &control_id,
                message_type: "ADT^A01",
                ack_code: "AA",
                ack_sent: true,
                reason: Reason::default(),
                ack: ACK,
                raw: ADT,
            };
            j.append(&e).expect("append");
            bytes += (ADT.len() + ACK.len() + 80) as u64;
        }
        j.commit().expect("commit");
    }
    n
}

fn readback(c: &mut Criterion) {
    let mb = std::env::var("JOURNAL_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir().expect("tempdir");
    let n = write_journal(dir.path(), mb);
    let (_, rec) = Journal::open(dir.path(), JournalOptions::default()).expect("reopen");
    assert_eq!((rec.entries, rec.damage.len()), (n, 0));
    assert_eq!(JournalReader::open(dir.path()).expect("reader").iter_from(0).count() as u64, n);

    let mut g = c.benchmark_group("journal_readback");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function("open_scan", |b| {
        b.iter(|| Journal::open(dir.path(), JournalOptions::default()).expect("open").1.entries)
    });
    g.bench_function("reader_all", |b| {
        b.iter(|| JournalReader::open(dir.path()).expect("reader").iter_from(0).filter(|e| e.is_ok()).count())
    });
    g.finish();
}

criterion_group!(benches, readback);
criterion_main!(benches);
