//! Issue 4's index target: with 1,000,000 patients filed, a record lookup
//! (`Store::record`) has p99 ≤ 1 ms.
//!
//! Fills a fresh store (in a tempdir under `target/`) with `LOOKUP_PATIENTS`
//! patients (default 1,000,000), filed in random order, each with a patient,
//! an encounter, a GP registration (one ADT) and 1–4 results (one ORU); then
//! times 20,000 lookups of random known patients (checking the item count of
//! each) and 2,000 lookups of valid but never-filed NHS numbers. Prints
//! progress to stderr and one JSON summary line on stdout: fill time and rate,
//! p50/p90/p99/p99.9/max in µs, on-disk size and peak RSS.
//!
//! ```text
//! cargo bench --bench lookup
//! LOOKUP_PATIENTS=100000 cargo bench --bench lookup   # quick run
//! ```
//!
//! Not a criterion bench: criterion reports no percentiles. Wall-clock
//! figures; other work on the machine shows up in the tail.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use recordhub::hl7::nhs::NhsNumber;
use recordhub::record::{Fields, Identity, Item, Kind, Mapped, Provenance};
use recordhub::store::Store;

const LOOKUPS: usize = 20_000;
const UNKNOWN_LOOKUPS: usize = 2_000;
/// The target: p99 of a record lookup, in µs.
const TARGET_P99_US: f64 = 1_000.0;
/// Filed NHS numbers come from 9-digit stems counting up from here; unknown
/// ones from stems above those used.
const FIRST_STEM: u64 = 400_000_000;

/// xorshift64*: enough randomness for choosing patients, and repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The NHS number with these first 9 digits, if its Modulus 11 check digit is not 10.
fn nhs_from_stem(stem: u64) -> Option<NhsNumber> {
    let s = format!("{stem:09}");
    let sum: u64 = s.bytes().zip((2..=10).rev()).map(|(d, w)| u64::from(d - b'0') * w).sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return None,
        c => c,
    };
    Some(NhsNumber::parse(&format!("{s}{check}")).expect("Modulus 11 check digit computed as NhsNumber::parse does"))
}

/// The next `n` valid NHS numbers from stem `*stem` on.
fn numbers(stem: &mut u64, n: usize) -> Vec<NhsNumber> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if let Some(nhs) = nhs_from_stem(*stem) {
            out.push(nhs);
        }
        *stem += 1;
    }
    out
}

fn fields(pairs: &[(&str, String)]) -> Fields {
    pairs.iter().map(|(k, v)| (*k, serde_json::Value::String(v.clone()))).collect()
}

fn item(kind: Kind, id: String, pairs: &[(&str, String)], prov: &Arc<Provenance>) -> Item {
    Item { kind, id, fields: fields(pairs), provenance: prov.clone(), version: Default::default(), scopes: Vec::new() }
}

const FAMILY: [&str; 8] = ["O'BRIEN", "SMITH", "JONES", "PATEL", "WILLIAMS", "TAYLOR", "KHAN", "EVANS"];
const GIVEN: [&str; 8] = ["SIOBHAN", "PATRICK", "AMIRA", "JOHN", "MARY", "RAVI", "CARYS", "OLIVER"];
const WARDS: [&str; 4] = ["RJ1WARD7", "RJ1WARD3", "RJ1AMU", "RJ1CCU"];
const TESTS: [(&str, &str, &str); 4] = [
    ("FBC", "Full blood count", "BLD"),
    ("U&E", "Urea and electrolytes", "SER"),
    ("LFT", "Liver function tests", "SER"),
    ("CRP", "C-reactive protein", "SER"),
];

/// Patient `p`'s two messages: an ADT^A01 (patient, encounter, GP
/// registration) and an ORU^R01 with 1–4 results.
fn messages(p: usize) -> [Mapped; 2] {
    let seq = p as u64 * 2;
    let day = 1 + p % 28;
    let adt_prov = Arc::new(Provenance {
        sending_app: "PAS".into(),
        sending_facility: "RJ1".into(),
        control_id: format!("MSG{p:08}"),
        message_type: "ADT^A01".into(),
        event_time: Some(format!("2026-11-{day:02}T08:29:00")),
        seq: seq + 1,
    });
    let family = FAMILY[p % 8];
    let given = GIVEN[(p / 8) % 8];
    let patient = item(
        Kind::Patient,
        "RJ1".into(),
        &[
            ("family_name", family.into()),
            ("given_name", given.into()),
            ("birth_date", format!("{}-{:02}-{:02}", 1930 + p % 90, 1 + p % 12, day)),
            ("sex", if p.is_multiple_of(2) { "female" } else { "male" }.into()),
            ("address_line1", format!("{} HIGH ST", 1 + p % 200)),
            ("address_city", "LONDON".into()),
            ("postcode", format!("SE{} {}EH", 1 + p % 28, p % 10)),
            ("phone_home", format!("020 7946 {:04}", p % 10_000)),
        ][..4 + p % 5],
        &adt_prov,
    );
    let encounter = item(
        Kind::Encounter,
        format!("V{p:09}"),
        &[
            ("class", "inpatient".into()),
            ("admitted", format!("2026-11-{day:02}T08:25:00")),
            ("ward", WARDS[p % 4].into()),
            ("status", "in-progress".into()),
            ("consultant_code", format!("C{:04}", p % 5000)),
            ("consultant_name", "DR JANE SMITH".into()),
            ("specialty", "GMED".into()),
        ][..4 + (p / 3) % 4],
        &adt_prov,
    );
    let gp = item(
        Kind::GpRegistration,
        format!("F{:05}", p % 8000),
        &[
            ("gp_code", format!("G{:07}", p % 40_000)),
            ("gp_name", "DR ANIL PATEL".into()),
            ("practice_code", format!("F{:05}", p % 8000)),
            ("practice_name", "BOROUGH SURGERY".into()),
        ],
        &adt_prov,
    );
    let oru_prov = Arc::new(Provenance {
        sending_app: "WINPATH".into(),
        sending_facility: "RJ1LAB".into(),
        control_id: format!("LAB{p:08}"),
        message_type: "ORU^R01".into(),
        event_time: Some(format!("2026-11-{day:02}T15:10:00")),
        seq: seq + 2,
    });
    let results = (0..results_of(p))
        .map(|r| {
            let (code, name, specimen) = TESTS[(p + r) % 4];
            let acc = format!("L26{p:08}{r}");
            item(
                Kind::Result,
                format!("{acc}^{code}"),
                &[
                    ("test_code", code.into()),
                    ("test_name", name.into()),
                    ("status", "final".into()),
                    ("filler_order_number", acc.clone()),
                    ("specimen", specimen.into()),
                    ("collected", format!("2026-11-{day:02}T14:30:00")),
                    ("reported", format!("2026-11-{day:02}T15:05:00")),
                    ("requester", "DR CARYS EVANS".into()),
                ][..4 + (p + r) % 5],
                &oru_prov,
            )
        })
        .collect();
    let identity = Identity::default();
    [
        Mapped {
            identity: identity.clone(),
            items: vec![patient, encounter, gp],
            warnings: Vec::new(),
            seq_refs: Vec::new(),
            ignored: false,
            governed: Default::default(),
        },
        Mapped {
            identity,
            items: results,
            warnings: Vec::new(),
            seq_refs: Vec::new(),
            ignored: false,
            governed: Default::default(),
        },
    ]
}

fn results_of(p: usize) -> usize {
    1 + (p * 7 + p / 5) % 4
}

fn items_of(p: usize) -> usize {
    3 + results_of(p)
}

struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Percentiles {
    fn of(mut times: Vec<Duration>) -> Percentiles {
        times.sort_unstable();
        let at = |q: f64| {
            let i = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
            times[i].as_secs_f64() * 1e6
        };
        Percentiles { p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: at(1.0) }
    }

    fn json(&self) -> serde_json::Value {
        let r = |x: f64| (x * 10.0).round() / 10.0;
        serde_json::json!({
            "p50_us": r(self.p50), "p90_us": r(self.p90), "p99_us": r(self.p99),
            "p999_us": r(self.p999), "max_us": r(self.max),
        })
    }
}

fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read store dir").flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() { disk_bytes(&entry.path()) } else { meta.len() };
    }
    total
}

/// VmHWM from /proc/self/status, in bytes (0 where there is no /proc).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    // `cargo bench` passes `--bench`; there are no options to parse.
    let patients: usize = std::env::var("LOOKUP_PATIENTS")
        .ok()
        .map(|v| v.replace('_', "").parse().expect("LOOKUP_PATIENTS: a number of patients"))
        .unwrap_or(1_000_000);
    assert!(patients > 0, "LOOKUP_PATIENTS must be at least 1");
    let dir = tempfile::Builder::new().prefix("lookup-bench").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");

    let mut stem = FIRST_STEM;
    let nhs = numbers(&mut stem, patients);
    let unknown = numbers(&mut stem, UNKNOWN_LOOKUPS);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // NHS numbers reach the index in no particular order.
    let mut order: Vec<usize> = (0..patients).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }

    eprintln!("lookup: filing {patients} patients into {}", dir.path().display());
    let start = Instant::now();
    let mut items = 0usize;
    for (done, &p) in order.iter().enumerate() {
        for mapped in messages(p) {
            items += mapped.items.len();
            store.index(&nhs[p], &mapped).expect("index");
        }
        if (done + 1) % 100_000 == 0 {
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "lookup: {} patients, {items} items, {secs:.1} s, {:.0} items/s, peak RSS {} MiB",
                done + 1,
                items as f64 / secs,
                peak_rss_bytes() >> 20
            );
        }
    }
    store.flush().expect("flush");
    let fill_secs = start.elapsed().as_secs_f64();
    let fill_rate = items as f64 / fill_secs;
    eprintln!("lookup: filled {items} items in {fill_secs:.1} s ({fill_rate:.0} items/s, including flush)");

    let mut times = Vec::with_capacity(LOOKUPS);
    for _ in 0..LOOKUPS {
        let p = rng.below(patients);
        let t = Instant::now();
        let record = store.record(&nhs[p]).expect("record");
        times.push(t.elapsed());
        assert_eq!(record.len(), items_of(p), "patient {p} ({})", nhs[p].as_str());
    }
    let lookup = Percentiles::of(times);

    let mut times = Vec::with_capacity(UNKNOWN_LOOKUPS);
    for n in &unknown {
        let t = Instant::now();
        let record = store.record(n).expect("record");
        times.push(t.elapsed());
        assert!(record.is_empty(), "{} was never filed", n.as_str());
    }
    let unknown = Percentiles::of(times);

    let summary = serde_json::json!({
        "patients": patients,
        "items": items,
        "fill_secs": (fill_secs * 10.0).round() / 10.0,
        "fill_items_per_sec": fill_rate.round(),
        "lookup": lookup.json(),
        "unknown": unknown.json(),
        "disk_bytes": disk_bytes(dir.path()),
        "peak_rss_bytes": peak_rss_bytes(),
    });
    println!("{summary}");
    let verdict = if lookup.p99 <= TARGET_P99_US { "MET" } else { "MISSED" };
    println!(
        "target record lookup p99 <= 1 ms with {patients} patients: {verdict} (p99 {:.1} us, p99.9 {:.1} us, max {:.1} us)",
        lookup.p99, lookup.p999, lookup.max
    );
}
