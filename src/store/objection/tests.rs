//! The objection register: filing stops, purges and restores, across restarts.

use super::*;
use crate::record::Kind;
use crate::store::IndexBatch;

const NHS: &str = "9434765919";
const OTHER: &str = "9434765870";

fn message(seq: u64, nhs: &str) -> Mapped {
    let identity = crate::record::Identity { nhs_number: Some(nhs.into()), ..Default::default() };
    crate::store::testing::encounters(seq, identity, &[(&format!("V{seq}"), "W1")])
}

fn file(store: &Store, m: Mapped) {
    let mut b = IndexBatch::new();
    b.file(m.items[0].provenance.seq, m);
    store.apply(b).unwrap();
}

fn objection(by: &str) -> Objection {
    Objection { reason: "asked at clinic".into(), recorded_by: by.into(), source: "patient".into(), recorded_at_ms: 7 }
}

#[test]
fn an_objection_deletes_the_record_stops_filing_and_a_refile_restores_it_after_removal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let nhs = NhsNumber::parse(NHS).unwrap();
    let other = NhsNumber::parse(OTHER).unwrap();
    file(&store, message(1, NHS));
    file(&store, message(2, OTHER));
    assert_eq!(store.record(&nhs).unwrap().len(), 1);

    assert_eq!(store.add_objection(&nhs, objection("officer1")).unwrap(), 1, "one version deleted");
    assert!(store.record(&nhs).unwrap().is_empty());
    file(&store, message(3, NHS));
    assert!(store.record(&nhs).unwrap().is_empty(), "not filed while the objection stands");
    assert_eq!(store.record(&other).unwrap().len(), 1, "other patients untouched");
    assert_eq!(store.unindexed_count().unwrap(), 0, "dropped silently, not listed as unindexed");
    assert!(!store.refile_for(&nhs, message(1, NHS)).unwrap(), "no restore while it stands");

    let removed = store.remove_objection(&nhs, "officer2", "consent given").unwrap();
    assert_eq!(removed.map(|o| o.recorded_by).as_deref(), Some("officer1"));
    assert_eq!(store.remove_objection(&nhs, "officer2", "again").unwrap(), None);
    for seq in 1..=3 {
        let target = if seq == 2 { OTHER } else { NHS };
        assert_eq!(store.refile_for(&nhs, message(seq, target)).unwrap(), seq != 2);
    }
    let ids: Vec<String> = store.record(&nhs).unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["V1", "V3"]);

    let log = store.objection_log().unwrap();
    let seen: Vec<_> = log.iter().map(|c| (c.action.as_str(), c.recorded_by.as_str(), c.reason.as_str())).collect();
    assert_eq!(seen, [("add", "officer1", "asked at clinic"), ("remove", "officer2", "consent given")]);
}

#[test]
fn an_objection_follows_a_merge_both_ways_and_is_withdrawn_for_the_whole_patient() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (nhs, other) = (NhsNumber::parse(NHS).unwrap(), NhsNumber::parse(OTHER).unwrap());
    file(&store, message(1, OTHER));
    store.add_objection(&other, objection("officer1")).unwrap();
    // OTHER (objected) is merged into NHS: the survivor is the same patient.
    let mut merge = message(2, NHS);
    merge.identity.prior_nhs_number = Some(OTHER.into());
    file(&store, merge);
    assert!(store.objection(&nhs).unwrap().is_some(), "the objection covers the survivor");
    assert!(store.record(&nhs).unwrap().is_empty(), "the merge message is not filed either");
    file(&store, message(3, OTHER));
    assert!(store.record(&nhs).unwrap().is_empty(), "nor a later message under the old number");
    let log = store.objection_log().unwrap();
    assert_eq!((log.len(), log[1].recorded_by.as_str(), log[1].nhs_number.as_str()), (2, MERGE, NHS));

    // Withdrawn by either number: both go, and the record comes back whole.
    store.remove_objection(&other, "officer2", "consent").unwrap();
    assert!(store.objections().unwrap().is_empty());
    for seq in 1..=3 {
        let mut m = message(seq, if seq == 2 { NHS } else { OTHER });
        if seq == 2 {
            m.identity.prior_nhs_number = Some(OTHER.into());
        }
        assert!(store.refile_for(&other, m).unwrap(), "message {seq} goes into the survivor's record");
    }
    assert_eq!(store.record(&nhs).unwrap().len(), 3);
}

#[test]
fn a_parked_message_linked_to_an_objected_patient_is_not_filed_and_comes_back_on_removal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let nhs = NhsNumber::parse(NHS).unwrap();
    let local = |mut m: Mapped| {
        m.identity.local_ids = vec![crate::record::LocalId { organisation: "RAL".into(), id: "H1".into() }];
        m
    };
    let mut parked = local(message(1, NHS));
    parked.identity.nhs_number = None;
    file(&store, parked.clone());
    assert_eq!(store.parked().unwrap().len(), 1);
    store.add_objection(&nhs, objection("officer1")).unwrap();
    file(&store, local(message(2, NHS)));
    assert!(store.parked().unwrap().is_empty(), "linked: no longer waiting");
    assert!(store.record(&nhs).unwrap().is_empty(), "but filed into nothing while the objection stands");
    store.remove_objection(&nhs, "officer2", "consent").unwrap();
    assert!(store.refile_for(&nhs, parked).unwrap(), "found through the hospital number now");
    assert!(store.refile_for(&nhs, local(message(2, NHS))).unwrap());
    let kinds: Vec<Kind> = store.record(&nhs).unwrap().into_iter().map(|i| i.kind).collect();
    assert_eq!(kinds, [Kind::Encounter, Kind::Encounter, Kind::Identifier]);
}

#[test]
fn the_register_and_its_log_survive_clear_derived_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let nhs = NhsNumber::parse(NHS).unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.add_objection(&nhs, objection("officer1")).unwrap();
        store.clear_derived().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.objection(&nhs).unwrap(), Some(objection("officer1")));
    assert_eq!(store.objections().unwrap().len(), 1);
    assert_eq!(store.objection_log().unwrap().len(), 1);
    file(&store, message(1, NHS));
    assert!(store.record(&nhs).unwrap().is_empty(), "the reopened register still stops filing");
}
