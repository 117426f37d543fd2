use std::path::Path;

use super::*;
use crate::fault::Faults;

const ADT: &[u8] = include_bytes!("../../fixtures/adt-a01.hl7");

fn open_with(dir: &Path, faults: Faults) -> Pipeline {
    Pipeline::open(options(dir, faults)).unwrap().0
}

use super::testing::options;

fn open(dir: &Path) -> Pipeline {
    open_with(dir, Faults::none())
}

fn inbound(raw: &[u8]) -> Inbound<'_> {
    Inbound::message(raw, "test", 0)
}

fn one(p: &mut Pipeline, raw: &[u8]) -> Outcome {
    p.process(&[inbound(raw)]).remove(0)
}

fn with_control_id(id: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(ADT);
    assert!(text.contains("|MSG00001|"), "the fixture's control id");
    text.replacen("|MSG00001|", &format!("|{id}|"), 1).into_bytes()
}

#[test]
fn a_retransmission_in_the_next_batch_gets_the_original_ack_before_and_after_indexing() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path());
    let first = one(&mut p, ADT);
    assert!(first.code.is_accept() && !first.duplicate);
    // Straight away: the index writer may not have put the dedup record yet.
    let again = one(&mut p, ADT);
    assert!(again.duplicate, "answered as a duplicate");
    assert_eq!(again.ack, first.ack, "byte-identical ACK");
    assert_eq!(again.seq, first.seq);
    // After the index writer caught up: answered from sled.
    p.sync_index();
    let third = one(&mut p, ADT);
    assert!(third.duplicate);
    assert_eq!(third.ack, first.ack);
    assert!(p.recent.is_empty(), "remembered records are dropped once in sled");
    let nhs = crate::hl7::NhsNumber::parse("9434765919").unwrap();
    assert_eq!(p.store().record(&nhs).unwrap().len(), 7, "filed once: the ADT's six items and its hospital number");
    assert_eq!(p.store().history(&nhs).unwrap().iter().map(|h| h.versions.len()).sum::<usize>(), 7, "one version each");
    p.shutdown().unwrap();
}

#[test]
fn a_copy_in_the_same_batch_as_its_original_shares_its_seq_and_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path());
    let out = p.process(&[inbound(ADT), inbound(ADT)]);
    assert!(!out[0].duplicate && out[1].duplicate);
    assert_eq!((out[1].seq, &out[1].ack), (out[0].seq, &out[0].ack));
    p.shutdown().unwrap();
}

/// Hole 3 (the mapping half): a panic while mapping one message answers that
/// message AE 207, journals it, and the pipeline goes on with the next.
#[test]
fn a_panic_inside_mapping_answers_ae_207_and_the_next_message_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open_with(dir.path(), Faults::parse("pipeline.map=1*panic").unwrap());
    let a = with_control_id("P1");
    let b = with_control_id("P2");
    let out = p.process(&[inbound(&a), inbound(&b)]);
    assert_eq!(out[0].verdict(), "error", "AE (CE in enhanced mode)");
    let ack = String::from_utf8(out[0].ack.clone().unwrap()).unwrap();
    assert!(ack.contains("207&Application internal error"), "ERR code 207 in {ack:?}");
    assert!(out[0].seq.is_some(), "the message is journaled for re-processing");
    assert_eq!(out[1].verdict(), "accepted");
    // A retransmission of the failed one is mapped again, not answered from dedup.
    let again = one(&mut p, &a);
    assert!(!again.duplicate);
    assert_eq!(again.verdict(), "accepted");
    p.shutdown().unwrap();
}

/// An ADT^A01 (original mode) filing encounter `visit`.
fn adt(control_id: &str, visit: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{control_id}|P|2.4\r\
         EVN|A01|20261121083000\r\
         PID|1||9434765919^^^NHS^NH||SMITH^JOHN||19700101|M\r\
         PV1|1|I|RJ1WARD1^BED1||||C123^JONES^ANN||||||||||||{visit}\r"
    )
    .into_bytes()
}

fn journal(dir: &Path) -> Vec<crate::journal::Entry> {
    let reader = crate::journal::JournalReader::open(&journal_dir(dir)).unwrap();
    reader.iter_from(0).collect::<Result<_, _>>().unwrap()
}

/// Hole 4: a copy in the same batch as its original was answered AA from
/// the batch's dedup memory even when the batch's commit failed (a full
/// disk), and the copy's seq was then reused. Every answer now follows the
/// fate of the entry it answers.
#[test]
fn a_copy_in_its_originals_batch_is_refused_when_the_commit_fails() {
    let dir = tempfile::tempdir().unwrap();
    let health = crate::health::Health::default();
    let mut opts = options(dir.path(), Faults::parse("journal.fdatasync=1*error").unwrap());
    opts.health = health.clone();
    let mut p = Pipeline::open(opts).unwrap().0;
    let msg = adt("DUP1", "V1");
    let out = p.process(&[inbound(&msg), inbound(&msg)]);
    for o in &out {
        assert_eq!((o.verdict(), o.seq, o.duplicate), ("rejected", None, false));
        let ack = String::from_utf8(o.ack.clone().unwrap()).unwrap();
        assert!(ack.contains("MSA|AR|DUP1") && ack.contains("207"), "{ack}");
    }
    let journal_report = health.health();
    assert!(journal_report.checks["journal"].reason.as_deref().unwrap().contains("No space left"));
    let again = one(&mut p, &msg);
    assert_eq!((again.verdict(), again.duplicate), ("accepted", false), "the resent message is taken");
    assert!(health.health().ok(), "journal health recovers with the next commit");
    let copy = one(&mut p, &msg);
    assert_eq!((copy.duplicate, copy.seq), (true, again.seq));
    p.shutdown().unwrap();
    let entries = journal(dir.path());
    assert_eq!(entries.len(), 1, "one entry, the accepted one");
    assert!(entries[0].seq > 1, "the failed batch's seq 1 is burned, not reused");
}

/// Hole 1 (the index side): after one damaged byte, the intact entries
/// around it are kept, the index is rebuilt so nothing points at the lost
/// entry, a resent lost message is journaled again under a new seq (not
/// answered as a duplicate of what is gone), and refusing is the default.
#[test]
fn after_journal_damage_the_index_forgets_the_lost_entry_and_its_resend_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path());
    let msgs: Vec<Vec<u8>> = (1..=5).map(|i| adt(&format!("DMG{i}"), &format!("V{i}"))).collect();
    for m in &msgs {
        assert_eq!(one(&mut p, m).verdict(), "accepted");
    }
    p.sync_index();
    p.shutdown().unwrap();
    drop(p);
    // Flip a byte inside message 3's raw bytes in the segment file.
    let seg = std::fs::read_dir(journal_dir(dir.path()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.windows(4).position(|w| w == b"DMG3").unwrap() + 40;
    bytes[at] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();

    let refused = Pipeline::open(options(dir.path(), Faults::none())).err().expect("refused by default");
    assert!(format!("{refused:?}").contains("Damaged"), "{refused:?}");

    let mut opts = options(dir.path(), Faults::none());
    opts.journal_damage = crate::journal::DamagePolicy::Quarantine;
    let (mut p, startup) = Pipeline::open(opts).unwrap();
    assert_eq!(startup.recovery.damage.len(), 1);
    let d = &startup.recovery.damage[0];
    assert_eq!((d.seq_before, d.seq_after), (Some(2), Some(4)));
    let nhs = crate::hl7::NhsNumber::parse("9434765919").unwrap();
    let seqs: Vec<u64> = p.store().record(&nhs).unwrap().iter().map(|i| i.provenance.seq).collect();
    assert!(!seqs.contains(&3) && seqs.contains(&2) && seqs.contains(&4), "{seqs:?}");
    let resent = one(&mut p, &msgs[2]);
    assert_eq!((resent.verdict(), resent.duplicate, resent.seq), ("accepted", false, Some(6)));
    p.shutdown().unwrap();
}
