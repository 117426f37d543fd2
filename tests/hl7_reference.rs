//! Differential test: our parser against `hl7-parser` 0.3.0 on every field.
//!
//! Inputs: every `fixtures/*.hl7`, plus every file under `$RECORDHUB_CORPUS` when that
//! variable names a directory (e.g. `RECORDHUB_CORPUS=../shared/corpus/public`).
//! Files are split at each `MSH` line (hl7-parser reads only the first message) and
//! batch envelope lines (FHS/BHS/BTS/FTS, which it rejects) are dropped. We compare raw,
//! un-decoded bytes of every field, repetition, component and sub-component of every
//! segment, and skip only what hl7-parser is known to get wrong (see `Skip`). Any other
//! difference fails the test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use recordhub::hl7::{Message, ParseErrorKind, Segment};

/// Why a message (or the rest of one) was not compared: hl7-parser's known limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Skip {
    /// It parses `&str` only.
    NotUtf8,
    /// It reads exactly 4 encoding characters: 3 breaks it, 5 (v2.7 `^~\&#`) shifts MSH.
    NotFourEncodingChars,
    /// It stops silently at a blank line or a segment with no field separator;
    /// the segments before are still compared.
    TruncatedAfter,
    /// We reject a line that is not a segment; it silently stops there.
    UnparsableSegment,
    /// We reject MSH-2 (not 3 to 5 distinct non-alphanumeric characters: fuzz inputs, a
    /// doubled `\\`); it takes any 4 characters unchecked.
    BadEncodingChars,
}

#[derive(Default)]
struct Tally {
    files: usize,
    messages: usize,
    segments: usize,
    fields: usize,
    fields_agreed: usize,
    values: usize,
    skipped: BTreeMap<Skip, usize>,
    disagreements: Vec<String>,
}

#[test]
fn agrees_with_hl7_parser() {
    let mut files = hl7_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"), false);
    assert!(files.len() >= 4, "fixtures/*.hl7 missing");
    if let Some(dir) = std::env::var_os("RECORDHUB_CORPUS") {
        files.extend(hl7_files(Path::new(&dir), true));
    }
    let mut tally = Tally::default();
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        tally.files += 1;
        for msg in split_messages(&bytes) {
            tally.messages += 1;
            compare_message(&path.display().to_string(), msg, &mut tally);
        }
    }
    println!(
        "hl7-parser differential: {} files, {} messages, {} segments, {} fields compared, {} agreed, {} values (repetitions/components/sub-components) compared; skipped: {:?}",
        tally.files, tally.messages, tally.segments, tally.fields, tally.fields_agreed, tally.values, tally.skipped
    );
    assert!(
        tally.disagreements.is_empty(),
        "{} unexplained disagreements:\n{}",
        tally.disagreements.len(),
        tally.disagreements.join("\n")
    );
    assert_eq!(tally.fields, tally.fields_agreed);
}

fn hl7_files(dir: &Path, all: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if all {
                out.extend(hl7_files(&p, all));
            }
        } else if all || p.extension().is_some_and(|e| e == "hl7") {
            out.push(p);
        }
    }
    out
}

/// Each message of a file: from an `MSH` line to the next, without batch envelope lines.
fn split_messages(bytes: &[u8]) -> Vec<&[u8]> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(
            (1..bytes.len()).filter(|&i| matches!(bytes[i - 1], b'\r' | b'\n') && !matches!(bytes[i], b'\r' | b'\n')),
        )
        .collect();
    let is = |i: usize, names: &[&[u8]]| names.iter().any(|n| bytes[i..].starts_with(n));
    let mut out = Vec::new();
    for (k, &start) in line_starts.iter().enumerate().filter(|&(_, &s)| is(s, &[b"MSH"])) {
        let end = line_starts[k + 1..]
            .iter()
            .copied()
            .find(|&s| is(s, &[b"MSH", b"FHS", b"BHS", b"BTS", b"FTS"]))
            .unwrap_or(bytes.len());
        out.push(&bytes[start..end]);
    }
    out
}

fn compare_message(file: &str, msg: &[u8], tally: &mut Tally) {
    let ours = Message::parse(msg);
    let Ok(text) = std::str::from_utf8(msg) else {
        *tally.skipped.entry(Skip::NotUtf8).or_default() += 1;
        return;
    };
    if let Ok(m) = &ours {
        if m.delimiters().msh2().1 != 4 {
            *tally.skipped.entry(Skip::NotFourEncodingChars).or_default() += 1;
            return;
        }
    }
    let theirs = match hl7_parser::Message::parse_with_lenient_newlines(text, true) {
        Ok(t) => t,
        Err(e) => {
            tally.disagreements.push(format!("{file}: hl7-parser rejects ({e}), we say {:?}", ours.as_ref().err()));
            return;
        }
    };
    let ours = match ours {
        Ok(m) => m,
        Err(e) if e.kind == ParseErrorKind::BadSegmentName && theirs.segments.len() == e.segment - 1 => {
            *tally.skipped.entry(Skip::UnparsableSegment).or_default() += 1;
            return;
        }
        Err(e) if e.kind == ParseErrorKind::BadEncodingCharacters => {
            *tally.skipped.entry(Skip::BadEncodingChars).or_default() += 1;
            return;
        }
        Err(e) => {
            tally
                .disagreements
                .push(format!("{file}: we reject ({e}), hl7-parser reads {} segments", theirs.segments.len()));
            return;
        }
    };
    let n = theirs.segments.len();
    if n < ours.segment_count() {
        if truncation_explained(&ours, n) {
            *tally.skipped.entry(Skip::TruncatedAfter).or_default() += 1;
        } else {
            tally
                .disagreements
                .push(format!("{file}: hl7-parser stops after {n} of {} segments", ours.segment_count()));
        }
    } else if n > ours.segment_count() {
        tally.disagreements.push(format!("{file}: hl7-parser reads {n} segments, we read {}", ours.segment_count()));
    }
    for (seg, their) in ours.segments().zip(&theirs.segments) {
        tally.segments += 1;
        compare_segment(file, seg, their, tally);
    }
}

/// hl7-parser stops before segment `n` (0-based) when a blank line or a segment with no fields comes first.
fn truncation_explained(ours: &Message<'_>, n: usize) -> bool {
    let (Some(prev), Some(next)) = (ours.segment(n.wrapping_sub(1)), ours.segment(n)) else {
        return false;
    };
    let start = prev.raw().as_ptr() as usize + prev.raw().len() - ours.raw().as_ptr() as usize;
    let end = next.raw().as_ptr() as usize - ours.raw().as_ptr() as usize;
    let gap = &ours.raw()[start..end];
    let blank_line = gap != b"\r" && gap != b"\n" && gap != b"\r\n";
    blank_line || next.raw().len() == 3
}

fn compare_segment(file: &str, ours: Segment<'_>, theirs: &hl7_parser::message::Segment<'_>, tally: &mut Tally) {
    let at = |what: String| format!("{file}: segment {} {}: {what}", ours.index() + 1, ours.name());
    if ours.name() != theirs.name || ours.raw() != theirs.raw_value().as_bytes() {
        tally.disagreements.push(at(format!(
            "segment differs: {:?} vs {:?}",
            ours.raw().escape_ascii().to_string(),
            theirs.raw_value()
        )));
        return;
    }
    if ours.field_count() != theirs.fields.len() {
        tally.disagreements.push(at(format!("{} fields vs {}", ours.field_count(), theirs.fields.len())));
    }
    for (i, their) in theirs.fields.iter().enumerate() {
        let n = i + 1;
        let field = ours.field(n);
        tally.fields += 1;
        let mut diffs = Vec::new();
        let mut check = |path: String, a: &[u8], b: &str| {
            tally.values += 1;
            if a != b.as_bytes() {
                diffs.push(format!("{}-{n}{path}: {:?} vs {b:?}", ours.name(), a.escape_ascii().to_string()));
            }
        };
        check(String::new(), field.raw(), their.raw_value());
        let literal = ours.name() == "MSH" && n <= 2;
        let reps = if literal { 0 } else { their.repeats.len().max(field.repetition_count()) };
        for r in 1..=reps {
            let (rep, their_rep) = (field.repetition(r), their.repeat(r));
            check(format!("[{r}]"), rep.raw(), their_rep.map_or("", |x| x.raw_value()));
            let comps = their_rep.map_or(0, |x| x.components.len()).max(rep.component_count());
            for c in 1..=comps {
                let (comp, their_comp) = (rep.component(c), their_rep.and_then(|x| x.component(c)));
                check(format!("[{r}].{c}"), comp.raw(), their_comp.map_or("", |x| x.raw_value()));
                let subs = their_comp.map_or(0, |x| x.subcomponents.len()).max(comp.subcomponent_count());
                for s in 1..=subs {
                    let their_sub = their_comp.and_then(|x| x.subcomponent(s)).map_or("", |x| x.raw_value());
                    check(format!("[{r}].{c}.{s}"), comp.subcomponent(s).raw(), their_sub);
                }
            }
        }
        if diffs.is_empty() {
            tally.fields_agreed += 1;
        } else {
            tally.disagreements.extend(diffs.into_iter().map(&at));
        }
    }
}
