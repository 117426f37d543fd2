//! Tests of the journal as a whole (writer, recovery, reader), named after the
//! holes of issue 8 they pin.

use std::fs;
use std::path::{Path, PathBuf};

use super::scan::{Item, SegmentScan};
use super::*;
use crate::fault::Faults;

fn entry<'a>(control_id: &'a str, raw: &'a [u8]) -> EntryRef<'a> {
    EntryRef {
        received_at_ms: 1_700_000_000_000,
        peer: "127.0.0.1:4000",
        sending_app: "PAS",
        sending_facility: "RGT",
        control_id,
        message_type: "ADT^A01",
        ack_code: "AA",
        ack_sent: true,
        reason: Reason::default(),
        ack: b"MSA|AA\r",
        raw,
    }
}

fn opts(segment_bytes: u64, on_damage: DamagePolicy) -> JournalOptions {
    JournalOptions { segment_bytes, on_damage, faults: Faults::none() }
}

fn open(dir: &Path) -> (Journal, Recovery) {
    Journal::open(dir, JournalOptions::default()).unwrap()
}

/// Every committed entry and the damage the reader skipped.
fn read_all(dir: &Path) -> (Vec<Entry>, Vec<Damage>) {
    let mut it = JournalReader::open(dir).unwrap().iter_from(0);
    let entries = it.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    (entries, it.damage().to_vec())
}

fn seqs(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

/// Commits `n` entries, one commit each, in segments of `segment_bytes`.
fn write_n(dir: &Path, n: u64, segment_bytes: u64) -> Vec<(u64, PathBuf)> {
    let (mut j, _) = Journal::open(dir, opts(segment_bytes, DamagePolicy::Refuse)).unwrap();
    for i in 1..=n {
        j.append(&entry(&format!("C{i}"), format!("MSH|^~\\&|{i}").as_bytes())).unwrap();
        j.commit().unwrap();
    }
    list_segments(dir).unwrap()
}

/// (offset, length, entry seq or None for a commit record) of every record.
fn records(path: &Path, first_seq: u64) -> Vec<(u64, u64, Option<u64>)> {
    let mut scan = SegmentScan::open(path, first_seq).unwrap();
    let mut out: Vec<(u64, u64, Option<u64>)> = Vec::new();
    loop {
        let offset = scan.offset();
        match scan.next_item().unwrap() {
            None => break,
            Some(Item::Entry { seq, .. }) => out.push((offset, 0, Some(seq))),
            Some(Item::Commit { .. }) => out.push((offset, 0, None)),
            Some(other) => panic!("{other:?}"),
        }
    }
    let end = fs::metadata(path).unwrap().len();
    let starts: Vec<u64> = out.iter().map(|r| r.0).skip(1).chain([end]).collect();
    out.iter().zip(starts).map(|(&(o, _, s), next)| (o, next - o, s)).collect()
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

fn damaged(err: JournalError) -> Vec<Damage> {
    match err {
        JournalError::Damaged { damage } => damage,
        other => panic!("expected Damaged, got {other}"),
    }
}

#[test]
fn roundtrip_many_entries_with_empty_strings_and_binary_raw() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, rec) = open(dir.path());
    assert_eq!((rec.segments, rec.entries, rec.last_seq, rec.truncated), (1, 0, 0, None));
    let raws: Vec<Vec<u8>> = (0..300u32).map(|i| (0..i).map(|b| (b * 7) as u8).collect()).collect();
    let mut expected = Vec::new();
    for (i, raw) in raws.iter().enumerate() {
        let e = if i % 2 == 0 {
            entry("", raw)
        } else {
            EntryRef { peer: "", ack_code: "AR", ack_sent: false, ack: b"", ..entry("X", raw) }
        };
        let seq = j.append(&e).unwrap();
        assert_eq!(seq, i as u64 + 1);
        expected.push(Entry::from_ref(seq, 2, &e));
        if i % 7 == 0 {
            j.commit().unwrap();
        }
    }
    j.commit().unwrap();
    assert_eq!(j.committed_seq(), 300);
    assert_eq!(read_all(dir.path()), (expected, vec![]));
}

#[test]
fn reopen_sees_committed_entries_and_continues_seqs() {
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 5, 64 << 20);
    let (mut j, rec) = open(dir.path());
    assert_eq!((rec.entries, rec.last_seq, rec.truncated, rec.uncommitted_kept), (5, 5, None, 0));
    assert_eq!((j.next_seq(), j.committed_seq()), (6, 5));
    assert_eq!(j.append(&entry("C6", b"six")).unwrap(), 6);
    j.commit().unwrap();
    drop(j);
    assert_eq!(seqs(&read_all(dir.path()).0), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn uncommitted_entries_are_gone_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = open(dir.path());
    j.append(&entry("C1", b"one")).unwrap();
    j.commit().unwrap();
    j.append(&entry("C2", b"two")).unwrap();
    drop(j); // kill -9 before commit: the buffer never reached the file
    let (mut j, rec) = open(dir.path());
    assert_eq!((rec.entries, rec.last_seq, rec.truncated), (1, 1, None));
    assert_eq!(j.append(&entry("C2", b"two again")).unwrap(), 2);
}

/// Hole 1: a cut anywhere in the last group is a torn tail (nothing valid
/// after it): cut, never reported as damage. A cut inside the commit record
/// leaves an intact entry, which is kept and committed.
#[test]
fn hole1_every_cut_inside_the_last_group_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_n(dir.path(), 4, 64 << 20);
    let path = &segments[0].1;
    let recs = records(path, 1);
    let (entry4, commit4) = (recs[recs.len() - 2], recs[recs.len() - 1]);
    assert_eq!((entry4.2, commit4.2), (Some(4), None));
    let bytes = fs::read(path).unwrap();
    for cut in entry4.0..bytes.len() as u64 {
        let crash = tempfile::tempdir().unwrap();
        let seg = segment_path(crash.path(), 1);
        fs::write(&seg, &bytes[..cut as usize]).unwrap();
        let (mut j, rec) = open(crash.path());
        assert!(rec.damage.is_empty(), "cut at {cut}: {:?}", rec.damage);
        let kept = if cut >= commit4.0 { 4 } else { 3 };
        assert_eq!((rec.entries, rec.last_seq), (kept, kept), "cut at {cut}");
        assert_eq!(rec.uncommitted_kept, u64::from(cut >= commit4.0), "cut at {cut}");
        if cut != entry4.0 && cut != commit4.0 {
            let t = rec.truncated.expect("a torn tail");
            assert_eq!((t.offset, t.bytes_dropped), (if kept == 4 { commit4.0 } else { entry4.0 }, cut - t.offset));
        }
        assert_eq!(j.append(&entry("C5", b"retry")).unwrap(), kept + 1, "cut at {cut}");
        j.commit().unwrap();
        drop(j);
        assert_eq!(read_all(crash.path()).0.len() as u64, kept + 1, "cut at {cut}");
    }
}

/// Hole 1: one damaged byte in the middle of the last segment used to drop
/// every entry after it, call it a torn tail, and reuse the lost seqs.
#[test]
fn hole1_damaged_byte_in_the_middle_of_the_last_segment_is_damage_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_n(dir.path(), 20, 64 << 20);
    let path = segments[0].1.clone();
    let recs = records(&path, 1);
    let e10 = *recs.iter().find(|r| r.2 == Some(10)).unwrap();
    flip(&path, e10.0 + 30);
    let before = fs::read(&path).unwrap();

    let err = Journal::open(dir.path(), JournalOptions::default()).unwrap_err();
    let text = err.to_string();
    let damage = damaged(err);
    assert_eq!(damage.len(), 1, "{damage:?}");
    let d = &damage[0];
    assert_eq!((&d.segment, d.offset, d.len, d.seq_before, d.seq_after), (&path, e10.0, e10.1, Some(9), Some(11)));
    assert!(text.contains("CRC32C") && text.contains("--verify") && text.contains("quarantine"), "{text}");
    assert!(!text.contains("nothing acknowledged was lost"), "{text}");
    assert_eq!(fs::read(&path).unwrap(), before, "refusing changes nothing");

    let (entries, damage) = read_all(dir.path());
    assert_eq!(seqs(&entries), (1..=20).filter(|&s| s != 10).collect::<Vec<_>>());
    assert_eq!((damage.len(), damage[0].offset), (1, e10.0));

    let (mut j, rec) = Journal::open(dir.path(), opts(64 << 20, DamagePolicy::Quarantine)).unwrap();
    assert_eq!((rec.entries, rec.last_seq, rec.truncated.as_ref(), rec.damage.len()), (19, 20, None, 1));
    let side = rec.damage[0].quarantined.clone().unwrap();
    assert_eq!(side, dir.path().join("quarantine").join(format!("00000000000000000001.seg.{}.bin", e10.0)));
    assert_eq!(fs::read(&side).unwrap(), &before[e10.0 as usize..(e10.0 + e10.1) as usize]);
    let note = fs::read_to_string(side.with_extension("json")).unwrap();
    assert!(note.contains("\"seq_before\":9") && note.contains("\"seq_after\":11"), "{note}");
    assert_eq!(fs::read(&path).unwrap(), before, "quarantine leaves the segment as it is");
    assert_eq!(j.append(&entry("C21", b"21")).unwrap(), 21, "no seq reused");
    j.commit().unwrap();
    drop(j);
    let (entries, damage) = read_all(dir.path());
    assert_eq!(entries.len(), 20);
    assert_eq!((entries.last().unwrap().seq, damage.len()), (21, 1));

    // Once quarantined, a later start under the default policy goes on.
    let (_, rec) = open(dir.path());
    assert_eq!((rec.damage.len(), rec.damage[0].quarantined.as_ref()), (1, Some(&side)));
}

/// Hole 1: one damaged byte at the start (the segment header, the first
/// entry), in the middle and at the end (the last entry, followed by its
/// commit record) of an earlier segment and of the last segment: all damage,
/// every other entry still read, the seqs around reported, no seq reused.
#[test]
fn hole1_damaged_byte_at_start_middle_and_end_of_a_segment_and_of_the_last_segment() {
    let template = tempfile::tempdir().unwrap();
    let segments = write_n(template.path(), 24, 700);
    assert!(segments.len() >= 4, "{segments:?}");
    let last_index = segments.len() - 1;
    for seg_index in [1, last_index] {
        let (first, path) = &segments[seg_index];
        let recs = records(path, *first);
        let entries: Vec<_> = recs.iter().filter(|r| r.2.is_some()).copied().collect();
        assert!(entries.len() >= 3, "{recs:?}");
        let mid = entries[entries.len() / 2];
        let cases = [
            ("header", 0, (0, 8, entries[0].2.unwrap() - 1, Some(entries[0].2.unwrap()))),
            ("first entry", entries[0].0 + 20, (entries[0].0, entries[0].1, entries[0].2.unwrap() - 1, None)),
            ("middle entry", mid.0 + 20, (mid.0, mid.1, mid.2.unwrap() - 1, None)),
            ("last entry", entries[entries.len() - 1].0 + 20, {
                let e = entries[entries.len() - 1];
                (e.0, e.1, e.2.unwrap() - 1, None)
            }),
        ];
        for (what, at, (offset, len, seq_before, seq_after)) in cases {
            let label = format!("{what} of segment {seg_index}");
            let dir = tempfile::tempdir().unwrap();
            for (_, p) in &segments {
                fs::copy(p, dir.path().join(p.file_name().unwrap())).unwrap();
            }
            let target = dir.path().join(path.file_name().unwrap());
            flip(&target, at);
            let damage = damaged(Journal::open(dir.path(), JournalOptions::default()).unwrap_err());
            assert_eq!(damage.len(), 1, "{label}: {damage:?}");
            let d = &damage[0];
            assert_eq!(
                (&d.segment, d.offset, d.len, d.seq_before),
                (&target, offset, len, Some(seq_before)),
                "{label}"
            );
            let lost = seq_after.map_or(1, |_| 0);
            let expected_after = seq_after.unwrap_or(seq_before + 2);
            let expected_after = (expected_after <= 24).then_some(expected_after);
            assert_eq!(d.seq_after, expected_after, "{label}");

            let (entries, damage) = read_all(dir.path());
            assert_eq!(entries.len(), 24 - lost, "{label}: intact entries before and after are all read");
            assert_eq!(damage.len(), 1, "{label}");

            let q = opts(700, DamagePolicy::Quarantine);
            let (mut j, rec) = Journal::open(dir.path(), q).unwrap();
            assert_eq!((rec.entries as usize, rec.damage.len()), (24 - lost, 1), "{label}");
            assert!(rec.damage[0].quarantined.as_ref().unwrap().exists(), "{label}");
            assert_eq!(j.append(&entry("new", b"new")).unwrap(), 25, "{label}: no seq reused");
            j.commit().unwrap();
        }
    }
}

/// Hole 1: a segment removed from the middle is damage, named by the commit
/// record that says what was committed before it.
#[test]
fn hole1_a_missing_segment_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_n(dir.path(), 12, 400);
    fs::remove_file(&segments[1].1).unwrap();
    let damage = damaged(Journal::open(dir.path(), JournalOptions::default()).unwrap_err());
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].segment, segments[2].1);
    assert!(damage[0].reason.contains("missing"), "{}", damage[0].reason);
}

/// Hole 7: a failed commit (injected fdatasync error) used to reset next_seq,
/// so the next message reused the seq; and its entry must never be readable.
#[test]
fn hole7_failed_commit_burns_its_seqs_and_no_reader_sees_them() {
    for point in ["journal.write", "journal.fdatasync"] {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::parse(&format!("{point}=after(1)1*error")).unwrap();
        let (mut j, _) = Journal::open(dir.path(), JournalOptions { faults, ..JournalOptions::default() }).unwrap();
        j.append(&entry("C1", b"one")).unwrap();
        j.commit().unwrap();
        assert_eq!(j.append(&entry("C2", b"two")).unwrap(), 2);
        let err = j.commit().unwrap_err();
        let op = point.trim_start_matches("journal.");
        match &err {
            JournalError::Io { op: got, source, .. } => assert_eq!((*got, source.raw_os_error()), (op, Some(28))),
            other => panic!("{other}"),
        }
        assert_eq!(seqs(&read_all(dir.path()).0), [1], "{point}");
        assert_eq!((j.next_seq(), j.committed_seq()), (3, 1), "{point}: seq 2 is burned");
        assert_eq!(j.append(&entry("C2", b"two, retried")).unwrap(), 3);
        j.commit().unwrap();
        drop(j);
        let (entries, damage) = read_all(dir.path());
        assert_eq!((seqs(&entries), damage), (vec![1, 3], vec![]), "{point}");
        assert_eq!(entries[1].raw, b"two, retried");
        let (j, rec) = open(dir.path());
        assert_eq!((rec.damage.len(), j.next_seq()), (0, 4), "{point}: a gap of burned seqs is not damage");
    }
}

/// Hole 7: between a group's write and its commit record, a reader beside
/// the live writer must see none of it.
#[test]
fn hole7_reader_beside_a_live_writer_sees_nothing_before_the_commit_record() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::parse("journal.commit_record=after(1)1*error").unwrap();
    let (mut j, _) = Journal::open(dir.path(), JournalOptions { faults, ..JournalOptions::default() }).unwrap();
    j.append(&entry("C1", b"one")).unwrap();
    j.commit().unwrap();
    let r = JournalReader::open(dir.path()).unwrap();
    // The state between `write` and `fdatasync`: bytes in the file, no record.
    let mut group = Vec::new();
    entry::encode(2, &entry("C2", b"two"), &mut group).unwrap();
    j.file.write_all_at(&group, j.seg_len).unwrap();
    assert_eq!(seqs(&r.iter_from(0).collect::<Result<Vec<_>, _>>().unwrap()), [1]);
    assert_eq!(r.get(2).unwrap(), None);
    j.file.set_len(j.seg_len).unwrap();
    // The state between `fdatasync` and the commit record (its write failed).
    j.append(&entry("C2", b"two")).unwrap();
    j.commit().unwrap();
    assert_eq!(seqs(&r.iter_from(0).collect::<Result<Vec<_>, _>>().unwrap()), [1]);
    j.append(&entry("C3", b"three")).unwrap();
    j.commit().unwrap();
    assert_eq!(seqs(&r.iter_from(0).collect::<Result<Vec<_>, _>>().unwrap()), [1, 2, 3]);
    assert_eq!(r.get(2).unwrap().unwrap().raw, b"two");
}

use std::os::unix::fs::FileExt;

/// Hole 14: a bogus length in the first entry header of a 120-byte segment
/// made the reader allocate 256 MiB. It is bounded by the segment's size:
/// here nothing valid follows, so it is a torn tail.
#[test]
fn hole14_bogus_length_in_a_120_byte_segment_is_bounded_by_the_segment() {
    for version in [1u16, 2] {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = b"RHJL".to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&[0, 0]);
        if version == 2 {
            bytes.extend_from_slice(&[0xF7, b'R', b'J', b'2', 0, 0, 0, 0, 1, 0, 0, 0]);
        }
        bytes.extend_from_slice(&(MAX_BODY_LEN - 1).to_le_bytes());
        bytes.resize(120, 0x41);
        let seg = segment_path(dir.path(), 1);
        fs::write(&seg, &bytes).unwrap();
        let mut it = JournalReader::open(dir.path()).unwrap().iter_from(0);
        assert!(it.next().is_none());
        let torn = it.torn_tail().unwrap();
        assert!(torn.reason.contains("runs past the end of the segment"), "{}", torn.reason);
        assert!(it.damage().is_empty());
        let (mut j, rec) = open(dir.path());
        let t = rec.truncated.unwrap();
        assert_eq!((t.offset, t.bytes_dropped, rec.damage.len()), (8, 112, 0), "version {version}");
        assert!(t.reason.contains("bytes left"), "{}", t.reason);
        assert_eq!(j.append(&entry("C1", b"1")).unwrap(), 1);
        j.commit().unwrap();
    }
}

/// Hole 5: a message sent with MSH-15 = NE (no ACK sent) is journaled as
/// accepted, so replay and reindex keep it; a rejection keeps its reason.
#[test]
fn hole5_ne_message_reads_back_as_accepted_and_a_rejection_keeps_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = open(dir.path());
    j.append(&EntryRef { ack_code: "AA", ack_sent: false, ack: b"", ..entry("NE1", b"MSH|") }).unwrap();
    let reason = Reason { stage: "map", code: 102, location: "PID-7", text: "PID-7 is not a date" };
    j.append(&EntryRef { ack_code: "AE", reason, ..entry("E1", b"MSH|") }).unwrap();
    j.commit().unwrap();
    let (entries, _) = read_all(dir.path());
    assert_eq!((entries[0].accepted(), entries[0].ack_sent, entries[0].format_version), (Some(true), false, 2));
    let r = entries[1].reason.as_ref().unwrap();
    assert_eq!(
        (entries[1].accepted(), r.stage.as_str(), r.error_code, r.location.as_str()),
        (Some(false), "map", 102, "PID-7")
    );
}

/// A version 1 segment as the old encoder wrote it.
fn v1_segment(dir: &Path, seqs: std::ops::RangeInclusive<u64>) -> PathBuf {
    let mut bytes = b"RHJL\x01\x00\x00\x00".to_vec();
    for seq in seqs.clone() {
        let code = if seq == 2 { "" } else { "AA" }; // seq 2 was sent with MSH-15 = NE
        v1::encode(seq, &EntryRef { ack_code: code, ..entry(&format!("V{seq}"), b"MSH|v1") }, &mut bytes);
    }
    let path = segment_path(dir, *seqs.start());
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn version_1_segments_written_by_the_old_encoder_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    v1_segment(dir.path(), 1..=5);
    let (mut j, rec) = open(dir.path());
    assert_eq!((rec.entries, rec.last_seq, rec.segments, rec.damage.len()), (5, 5, 2, 0));
    assert_eq!(j.append(&entry("C6", b"six")).unwrap(), 6);
    j.commit().unwrap();
    drop(j);
    assert!(segment_path(dir.path(), 6).exists(), "new entries go to a version 2 segment");
    let (entries, damage) = read_all(dir.path());
    assert_eq!((seqs(&entries), damage), (vec![1, 2, 3, 4, 5, 6], vec![]));
    let versions: Vec<u16> = entries.iter().map(|e| e.format_version).collect();
    assert_eq!(versions, [1, 1, 1, 1, 1, 2]);
    assert_eq!((entries[0].accepted(), entries[1].accepted(), entries[1].ack_sent), (Some(true), None, false));
    let (_, rec) = open(dir.path());
    assert_eq!((rec.entries, rec.segments), (6, 2));
}

/// Hole 1 for version 1: damage followed by valid version 1 entries is found
/// by a best-effort scan and reported as damage, never as a torn tail.
#[test]
fn hole1_version_1_damage_followed_by_valid_entries_is_not_called_torn() {
    let dir = tempfile::tempdir().unwrap();
    let path = v1_segment(dir.path(), 1..=6);
    let recs = records(&path, 1);
    flip(&path, recs[2].0 + 12);
    let damage = damaged(Journal::open(dir.path(), JournalOptions::default()).unwrap_err());
    assert_eq!(damage.len(), 1);
    assert_eq!(
        (damage[0].offset, damage[0].len, damage[0].seq_before, damage[0].seq_after),
        (recs[2].0, recs[2].1, Some(2), Some(4))
    );
    assert_eq!(seqs(&read_all(dir.path()).0), [1, 2, 4, 5, 6]);
    let (mut j, _) = Journal::open(dir.path(), opts(64 << 20, DamagePolicy::Quarantine)).unwrap();
    assert_eq!(j.append(&entry("C7", b"7")).unwrap(), 7);
}

#[test]
fn rotation_across_segments_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let segments = write_n(dir.path(), 10, 400);
    assert!(segments.len() >= 3, "{segments:?}");
    let r = JournalReader::open(dir.path()).unwrap();
    for (first, path) in &segments {
        assert!(fs::metadata(path).unwrap().len() <= 400 + record::COMMIT_LEN as u64);
        assert_eq!(r.get(*first).unwrap().unwrap().seq, *first);
    }
    assert_eq!(seqs(&r.iter_from(7).collect::<Result<Vec<_>, _>>().unwrap()), [7, 8, 9, 10]);
    let (mut j, rec) = Journal::open(dir.path(), opts(400, DamagePolicy::Refuse)).unwrap();
    assert_eq!((rec.segments, rec.entries, rec.last_seq), (segments.len(), 10, 10));
    j.append(&entry("C11", b"x")).unwrap();
    j.commit().unwrap();
    assert_eq!(read_all(dir.path()).0.len(), 11);
}

#[test]
fn short_last_segment_from_a_crashed_rotation_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 2, 64 << 20);
    let partial = segment_path(dir.path(), 3);
    fs::write(&partial, b"RHJ").unwrap();
    assert_eq!(read_all(dir.path()).0.len(), 2);
    let (mut j, rec) = open(dir.path());
    let t = rec.truncated.unwrap();
    assert_eq!((t.segment, t.offset, t.bytes_dropped), (partial.clone(), 0, 3));
    assert!(!partial.exists());
    assert_eq!((rec.segments, j.append(&entry("C3", b"3")).unwrap()), (1, 3));
}

#[test]
fn a_segment_of_a_newer_format_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    write_n(dir.path(), 1, 64 << 20);
    let seg = segment_path(dir.path(), 1);
    let mut bytes = fs::read(&seg).unwrap();
    bytes[4] = 9;
    fs::write(&seg, &bytes).unwrap();
    let err = Journal::open(dir.path(), JournalOptions::default()).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { offset: 4, .. }) && err.to_string().contains("version 9"), "{err}");
    assert_eq!(fs::read(&seg).unwrap(), bytes);
}

#[test]
fn oversize_append_leaves_the_journal_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = open(dir.path());
    let raw = vec![0u8; MAX_BODY_LEN as usize];
    assert!(matches!(j.append(&entry("C1", &raw)), Err(JournalError::TooLarge { .. })));
    assert_eq!(j.append(&entry("C1", b"ok")).unwrap(), 1);
}

#[test]
fn empty_and_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let r = JournalReader::open(dir.path()).unwrap();
    assert_eq!(r.iter_from(0).count(), 0);
    assert_eq!(r.get(1).unwrap(), None);
    assert!(matches!(JournalReader::open(&dir.path().join("nope")), Err(JournalError::Io { .. })));
}

/// The cluster publisher follows the journal's tail: resuming after the last
/// commit record must yield exactly what a full read would, without reading
/// the segment from its start, across later appends and rotations.
#[test]
fn a_tailing_reader_resumes_after_the_last_commit_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), opts(600, DamagePolicy::Refuse)).unwrap();
    let reader = JournalReader::open(dir.path()).unwrap();
    let mut resume = None;
    let mut next = 1;
    let mut seen = Vec::new();
    for round in 0..6u64 {
        for i in 0..=round {
            j.append(&entry(&format!("R{round}-{i}"), format!("MSH|^~\\&|{round}|{i}").as_bytes())).unwrap();
        }
        j.commit().unwrap();
        // An appended entry not yet committed is not shown, and the resume
        // point stays before it.
        j.append(&entry("pending", b"MSH|^~\\&|pending")).unwrap();
        let mut it = reader.iter_resuming(next, resume);
        let got = it.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
        resume = it.resume_point();
        let full: Vec<u64> = reader.iter_from(next).map(|e| e.unwrap().seq).collect();
        assert_eq!(seqs(&got), full, "round {round}: resumed read differs from a full read");
        next = got.last().map_or(next, |e| e.seq + 1);
        seen.extend(got);
        j.commit().unwrap();
    }
    let (all, _) = read_all(dir.path());
    assert!(list_segments(dir.path()).unwrap().len() > 2, "rotation was exercised");
    let mut it = reader.iter_resuming(next, resume);
    seen.extend(it.by_ref().map(|e| e.unwrap()));
    assert_eq!(seqs(&seen), seqs(&all));
    // A resume point past the seq asked for is not used.
    let again: Vec<u64> = reader.iter_resuming(1, resume).map(|e| e.unwrap().seq).collect();
    assert_eq!(again, seqs(&all));
}
