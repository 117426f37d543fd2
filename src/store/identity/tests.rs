use super::*;
use crate::record::Kind;
use crate::store::{IndexBatch, Store};

const NHS_A: &str = "9434765919";
const NHS_B: &str = "9434765870";

fn message(seq: u64, nhs: Option<&str>, status: Option<&str>, local: &[(&str, &str)]) -> Mapped {
    let mut identity = crate::record::Identity {
        nhs_number: nhs.map(str::to_string),
        nhs_status: status.map(str::to_string),
        ..Default::default()
    };
    identity.local_ids =
        local.iter().map(|(o, i)| LocalId { organisation: o.to_string(), id: i.to_string() }).collect();
    crate::store::testing::encounters(seq, identity, &[(&format!("V{seq}"), &format!("W{seq}"))])
}

fn file_all(store: &Store, messages: Vec<Mapped>) {
    let mut batch = IndexBatch::new();
    for m in messages {
        let seq = m.items[0].provenance.seq;
        batch.file(seq, m);
    }
    store.apply(batch).unwrap();
}

fn encounters(store: &Store, nhs: &str) -> Vec<String> {
    let nhs = NhsNumber::parse(nhs).unwrap();
    store.record(&nhs).unwrap().into_iter().filter(|i| i.kind == Kind::Encounter).map(|i| i.id).collect()
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn a_verified_nhs_number_files_and_links_the_hospital_number() {
    let (_d, store) = open();
    file_all(&store, vec![message(1, Some(NHS_A), Some("NSTS01"), &[("RAL", "H1")])]);
    assert_eq!(encounters(&store, NHS_A), ["V1"]);
    assert_eq!(store.lookup_local("RAL", "H1").unwrap().as_deref(), Some(NHS_A));
    let ids: Vec<_> = store.record(&NhsNumber::parse(NHS_A).unwrap()).unwrap();
    assert!(ids.iter().any(|i| i.kind == Kind::Identifier && i.id == "H1"), "the record shows the hospital number");
}

#[test]
fn a_local_only_message_parks_until_its_nhs_number_is_known_then_files_without_a_resend() {
    let (_d, store) = open();
    file_all(&store, vec![message(1, None, None, &[("RAL", "H1")])]);
    assert_eq!(store.parked().unwrap().len(), 1);
    assert_eq!(store.parked().unwrap()[0].control_id, "C1");
    file_all(&store, vec![message(2, Some(NHS_A), Some("01"), &[("RAL", "H1")])]);
    assert!(store.parked().unwrap().is_empty());
    assert_eq!(encounters(&store, NHS_A), ["V1", "V2"]);
    // Known now: a later local-only message files straight away.
    file_all(&store, vec![message(3, None, None, &[("RAL", "H1")])]);
    assert_eq!(encounters(&store, NHS_A), ["V1", "V2", "V3"]);
}

#[test]
fn an_unverified_nhs_number_parks_and_is_never_linked() {
    let (_d, store) = open();
    file_all(&store, vec![message(1, Some(NHS_A), Some("NSTS02"), &[("RAL", "H1")])]);
    assert!(encounters(&store, NHS_A).is_empty());
    assert_eq!(store.lookup_local("RAL", "H1").unwrap(), None, "an unverified number links nothing");
    assert!(store.parked().unwrap()[0].why.contains("not verified"));
    // A sender not trusted to send traced numbers: empty PID-32 is unverified too.
    let mut m = message(2, Some(NHS_A), None, &[("RAL", "H2")]);
    m.identity.trust_unstated_status = false;
    file_all(&store, vec![m]);
    assert_eq!(store.parked().unwrap().len(), 2);
    file_all(&store, vec![message(3, Some(NHS_A), Some("NSTS01"), &[("RAL", "H1"), ("RAL", "H2")])]);
    assert_eq!(encounters(&store, NHS_A), ["V1", "V2", "V3"]);
}

#[test]
fn a_test_range_number_is_filed_only_from_a_test_message() {
    let (_d, store) = open();
    let test_nhs = "9990000018";
    assert!(NhsNumber::parse(test_nhs).is_ok());
    file_all(&store, vec![message(1, Some(test_nhs), None, &[])]);
    assert_eq!(store.unindexed_count().unwrap(), 1);
    let mut m = message(2, Some(test_nhs), None, &[]);
    m.identity.processing_id = Some("T".into());
    file_all(&store, vec![m]);
    assert_eq!(encounters(&store, test_nhs), ["V2"]);
}

#[test]
fn a_second_verified_nhs_number_for_a_hospital_number_is_a_conflict_not_a_relink() {
    let (_d, store) = open();
    file_all(&store, vec![message(1, Some(NHS_A), None, &[("RAL", "H1")])]);
    file_all(&store, vec![message(2, Some(NHS_B), None, &[("RAL", "H1")])]);
    assert_eq!(store.lookup_local("RAL", "H1").unwrap().as_deref(), Some(NHS_A));
    let c = store.conflicts().unwrap();
    assert_eq!((c.len(), c[0].control_id.as_str(), c[0].organisation.as_str()), (1, "C2", "RAL"));
    assert_eq!(encounters(&store, NHS_B), ["V2"], "filed under the number it states (verified)");
}

#[test]
fn a_merge_relinks_prior_hospital_numbers_and_moves_a_prior_nhs_numbers_record() {
    let (_d, store) = open();
    // A&E "unknown male" under a temporary number: parked.
    file_all(&store, vec![message(1, None, None, &[("RAL", "TEMP9")])]);
    file_all(&store, vec![message(2, Some(NHS_B), None, &[("RAL", "H2")])]);
    let mut merge = message(3, Some(NHS_A), None, &[("RAL", "H1")]);
    merge.identity.prior_local_ids = vec![LocalId { organisation: "RAL".into(), id: "TEMP9".into() }];
    merge.identity.prior_nhs_number = Some(NHS_B.into());
    file_all(&store, vec![merge]);
    assert_eq!(encounters(&store, NHS_A), ["V1", "V2", "V3"]);
    assert!(store.parked().unwrap().is_empty());
    // Late messages on the old identifiers follow the merge.
    file_all(&store, vec![message(4, None, None, &[("RAL", "TEMP9")]), message(5, Some(NHS_B), None, &[])]);
    assert_eq!(encounters(&store, NHS_A), ["V1", "V2", "V3", "V4", "V5"]);
    assert_eq!(encounters(&store, NHS_B), encounters(&store, NHS_A), "the old number reads as its survivor");
}

#[test]
fn the_hospital_number_item_is_one_item_from_the_cross_reference_whatever_the_order() {
    let timed = |seq: u64, t: i64| {
        let mut m = message(seq, Some(NHS_A), None, &[("RAL", "H1")]);
        m.items[0].version.time_ms = Some(t);
        m
    };
    let mut seen = Vec::new();
    for order in [[1u64, 2], [2, 1]] {
        let (_d, store) = open();
        for seq in order {
            file_all(&store, vec![timed(seq, if seq == 1 { 5_000 } else { 1_000 })]);
        }
        let record = store.record(&NhsNumber::parse(NHS_A).unwrap()).unwrap();
        let ids: Vec<_> = record.into_iter().filter(|i| i.kind == Kind::Identifier).collect();
        assert_eq!(ids.len(), 1, "one item per hospital number, not one per message");
        assert_eq!(ids[0].provenance.message_type, "xref", "it comes from the cross-reference");
        seen.push(ids.into_iter().next().unwrap());
    }
    assert_eq!(seen[0], seen[1], "the same item in either order");
}
