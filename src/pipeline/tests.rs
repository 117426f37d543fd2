use std::path::Path;

use super::*;
use crate::fault::Faults;
use crate::mapping::MappingSet;

const ADT: &[u8] = include_bytes!("../../fixtures/adt-a01.hl7");

fn open_with(dir: &Path, faults: Faults) -> Pipeline {
    let set = MappingSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap();
    let opts = Options {
        data_dir: dir.to_path_buf(),
        journal_segment_bytes: 1 << 20,
        application: "RECORDHUB".into(),
        facility: "LCR".into(),
        policy: crate::intake::Policy::default(),
        mappings: Mappings::new(set),
        health: crate::health::Health::default(),
        faults,
    };
    Pipeline::open(opts).unwrap().0
}

fn open(dir: &Path) -> Pipeline {
    open_with(dir, Faults::none())
}

fn inbound(raw: &[u8]) -> Inbound<'_> {
    Inbound { frame: Frame::Message(raw), peer: "test", received_at_ms: 0 }
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
    assert_eq!(p.store().record(&nhs).unwrap().len(), 6, "filed once, the ADT's six items");
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
