//! Fuzzing on stable: the cargo-fuzz targets' properties (`fuzz/harness.rs`)
//! over bounded, seeded mutations of every fixture. Deterministic: a failure
//! prints the seed, iteration and input so it can be replayed and turned
//! into a regression test. `FUZZ_ITERS` scales the work (default below, a
//! few seconds each in a debug build), `FUZZ_SEED` changes the stream.
//! `.ci/run` runs the real cargo-fuzz targets when a nightly toolchain is there.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

use recordhub::mllp::split::split_messages;

/// splitmix64: a tiny deterministic generator (no state across runs).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Bytes that mean something to MLLP or HL7 (also in fuzz/hl7.dict).
const INTERESTING: &[&[u8]] = &[
    b"|",
    b"^",
    b"~",
    b"\\",
    b"&",
    b"#",
    b"\r",
    b"\n",
    b"\x0b",
    b"\x1c",
    b"\x1c\r",
    b"\x00",
    b"\xff",
    b"\xef\xbb\xbf",
    b"\\F\\",
    b"\\S\\",
    b"\\T\\",
    b"\\R\\",
    b"\\E\\",
    b"\\X0D\\",
    b"\\.br\\",
    b"\\H\\",
    b"\"\"",
    b"MSH|^~\\&|",
    b"MSH",
    b"PID",
    b"OBX",
    b"EVN",
    b"MRG",
    b"TXA",
    b"ZZZ",
    b"|NE|",
    b"|ER|",
    b"|SU|",
    b"|AL|",
    b"|2.4",
    b"|2.5.1",
    b"|3.0",
    b"UNICODE UTF-8",
    b"8859/1",
    b"KLINGON",
    b"9999999999",
    b"9434765919",
    b"ADT^A01",
    b"ORU^R01",
    b"MDM^T02",
    b"ADT^A40",
    b"ADT^A34",
    b"^^^NHS^NH",
    b"\xc3\xa9",
    b"\xe9",
];

const DELIMITERS: &[u8] = b"|^~\\&#*:!/%$@";

fn iters(default: usize) -> usize {
    std::env::var("FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seed() -> u64 {
    std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5EED_0012)
}

/// Every message of every `.hl7` file under fixtures/ (and the public corpus
/// beside the checkout, when CI has it).
fn seeds() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    collect(&root.join("fixtures"), &mut files);
    collect(&root.join("../shared/corpus/public"), &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        if let Ok(bytes) = std::fs::read(&f) {
            out.extend(split_messages(&bytes).into_iter().filter(|m| !m.is_empty()));
        }
    }
    assert!(out.len() > 20, "fixtures found: {}", out.len());
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "hl7" || x == "txt") {
            out.push(p);
        }
    }
}

/// One to four mutations of `input`, spliced with `other` at times.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut m = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(11) {
            0 if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(m.len() + 1);
                let b = rng.next() as u8;
                m.insert(i, b);
            }
            2 => {
                let i = rng.below(m.len() + 1);
                let ins = rng.pick(INTERESTING);
                m.splice(i..i, ins.iter().copied());
            }
            3 if !m.is_empty() => {
                let i = rng.below(m.len());
                let n = 1 + rng.below(16.min(m.len() - i));
                m.drain(i..i + n);
            }
            4 => m.truncate(rng.below(m.len() + 1)),
            // Segment splicing: a segment of another message at a segment boundary.
            5 => {
                let segs: Vec<&[u8]> = other.split(|&b| b == b'\r').filter(|s| !s.is_empty()).collect();
                if !segs.is_empty() {
                    let seg = rng.pick(&segs);
                    let bounds: Vec<usize> =
                        m.iter().enumerate().filter(|(_, &b)| b == b'\r').map(|(i, _)| i + 1).collect();
                    let at = if bounds.is_empty() { m.len() } else { *rng.pick(&bounds) };
                    let mut ins = seg.to_vec();
                    ins.push(b'\r');
                    m.splice(at..at, ins);
                }
            }
            // Field splicing: a field of another message replaces one of ours.
            6 => {
                let fields: Vec<&[u8]> = other.split(|&b| b == b'|' || b == b'\r').collect();
                let seps: Vec<usize> = m.iter().enumerate().filter(|(_, &b)| b == b'|').map(|(i, _)| i).collect();
                if let (false, false) = (fields.is_empty(), seps.is_empty()) {
                    let start = *rng.pick(&seps) + 1;
                    let end = m[start..].iter().position(|&b| b == b'|' || b == b'\r').map_or(m.len(), |n| start + n);
                    m.splice(start..end, rng.pick(&fields).iter().copied());
                }
            }
            // Delimiter swap: every occurrence of one delimiter becomes another.
            7 => {
                let (from, to) = (*rng.pick(DELIMITERS), *rng.pick(DELIMITERS));
                for b in m.iter_mut().filter(|b| **b == from) {
                    *b = to;
                }
            }
            // A chunk duplicated in place (repeated segments, repetitions).
            8 if !m.is_empty() => {
                let i = rng.below(m.len());
                let n = 1 + rng.below(64.min(m.len() - i));
                let chunk = m[i..i + n].to_vec();
                m.splice(i..i, chunk);
            }
            // Line ends changed: LF, CRLF.
            9 => {
                let to: &[u8] = if rng.below(2) == 0 { b"\n" } else { b"\r\n" };
                let mut out = Vec::with_capacity(m.len() + 64);
                for &b in &m {
                    if b == b'\r' {
                        out.extend_from_slice(to);
                    } else {
                        out.push(b);
                    }
                }
                m = out;
            }
            _ => {
                // A byte that is a delimiter somewhere replaced by another one.
                if !m.is_empty() {
                    let i = rng.below(m.len());
                    m[i] = *rng.pick(DELIMITERS);
                }
            }
        }
    }
    m
}

/// Runs `check` on `n` mutants; on a panic, reports what to replay.
fn run(name: &str, n: usize, mut check: impl FnMut(&[u8])) {
    let seeds = seeds();
    let mut rng = Rng(seed() ^ name.len() as u64);
    for i in 0..n {
        let input = rng.pick(&seeds).clone();
        let other = rng.pick(&seeds).clone();
        let mutant = mutate(&mut rng, &input, &other);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&mutant)));
        if let Err(e) = result {
            panic!(
                "{name}: finding at iteration {i} (FUZZ_SEED={}): {:?}\ninput: {:?}",
                seed(),
                e.downcast_ref::<String>().map(String::as_str).or(e.downcast_ref::<&str>().copied()),
                String::from_utf8_lossy(&mutant)
            );
        }
    }
}

#[test]
fn fuzz_hl7_parser_and_intake() {
    run("hl7_parse", iters(20_000), harness::hl7_parse);
}

#[test]
fn fuzz_mllp_codec() {
    // Frames around mutated messages, with junk and partial frames from the mutator.
    run("mllp_codec", iters(20_000), |m| {
        let mut framed = vec![m.first().copied().unwrap_or(0)];
        framed.push(0x0b);
        framed.extend_from_slice(m);
        framed.extend_from_slice(b"\x1c\r\x0b");
        framed.extend_from_slice(&m[..m.len() / 2]);
        harness::mllp_codec(&framed);
        harness::mllp_codec(m);
    });
}

#[test]
fn fuzz_mapping_path_language() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<Vec<u8>> = Vec::new();
    for e in std::fs::read_dir(root.join("mappings")).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for quoted in text.split('"').skip(1).step_by(2) {
            if quoted.len() > 4 && quoted.as_bytes()[3] == b'-' {
                paths.push(quoted.as_bytes().to_vec());
            }
        }
    }
    assert!(paths.len() > 20, "paths found in mappings/: {}", paths.len());
    let mut rng = Rng(seed());
    for _ in 0..iters(50_000) {
        let input = rng.pick(&paths).clone();
        let other = rng.pick(&paths).clone();
        let mutant = mutate(&mut rng, &input, &other);
        harness::mapping_path(&mutant);
    }
}

/// The whole synchronous pipeline: every frame of a batch gets its ACK or
/// NAK (or none, exactly when MSH-15 says so).
#[test]
fn fuzz_pipeline_every_frame_is_answered() {
    let mut h = harness::PipelineHarness::new();
    let seeds = seeds();
    let mut rng = Rng(seed() ^ 0x9199);
    let batches = iters(20_000) / 100;
    for b in 0..batches {
        let frames: Vec<Vec<u8>> = (0..32)
            .map(|_| {
                let (input, other) = (rng.pick(&seeds), rng.pick(&seeds));
                // Some unmutated frames: retransmissions of earlier ones.
                if rng.below(8) == 0 {
                    input.clone()
                } else {
                    mutate(&mut rng, input, other)
                }
            })
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.check(&refs)));
        if let Err(e) = result {
            let texts: Vec<String> = frames.iter().map(|f| format!("{:?}", String::from_utf8_lossy(f))).collect();
            panic!("pipeline: finding in batch {b} (FUZZ_SEED={}): {e:?}\nframes:\n{}", seed(), texts.join("\n"));
        }
    }
    assert_eq!(h.frames, batches as u64 * 32);
    // Mutants that still pass and mutants that fail: both paths were explored.
    eprintln!("pipeline: {} frames, {} accepted, {} NAKed", h.frames, h.accepted, h.naks);
    assert!(h.accepted > h.frames / 20 && h.naks > h.frames / 20, "{} accepted, {} NAKed", h.accepted, h.naks);
}
