use super::*;
use crate::journal::{EntryRef, Journal, JournalOptions, Reason};

fn entry(seq: u64, app: &str, fac: &str, cid: &str, ty: &str, ack: &str, code: u16) -> Entry {
    Entry {
        seq,
        format_version: 2,
        received_at_ms: seq * 1000,
        peer: "p".into(),
        sending_app: app.into(),
        sending_facility: fac.into(),
        control_id: cid.into(),
        message_type: ty.into(),
        ack_code: ack.into(),
        ack_sent: true,
        reason: (code != 0).then(|| crate::journal::OwnedReason {
            stage: "map".into(),
            error_code: code,
            location: "PID-7".into(),
            text: "not a date".into(),
        }),
        ack: Vec::new(),
        raw: b"MSH|PID|9434765919|SMITH".to_vec(),
    }
}

fn q(f: Filters) -> Query {
    f.parse().unwrap()
}

#[test]
fn each_filter_selects_by_metadata() {
    let a01 = entry(1, "PAS", "RJ1", "C1", "ADT^A01^ADT_A01", "AA", 0);
    let oru = entry(2, "LAB^X", "RJ1", "C2", "ORU^R01", "AE", 102);
    let f = |f: Filters| (q(f.clone()).matches(&a01), q(f).matches(&oru));
    assert_eq!(f(Filters { control_id: Some("C2".into()), ..Default::default() }), (false, true));
    assert_eq!(f(Filters { sender: Some("LAB".into()), ..Default::default() }), (false, true));
    assert_eq!(f(Filters { sender: Some("PAS^RJ1".into()), ..Default::default() }), (true, false));
    assert_eq!(f(Filters { sender: Some("PAS^RJ2".into()), ..Default::default() }), (false, false));
    assert_eq!(f(Filters { message_type: Some("ADT".into()), ..Default::default() }), (true, false));
    assert_eq!(f(Filters { message_type: Some("ADT^A01".into()), ..Default::default() }), (true, false));
    assert_eq!(f(Filters { message_type: Some("ADT^A08".into()), ..Default::default() }), (false, false));
    assert_eq!(f(Filters { verdict: Some("rejected".into()), ..Default::default() }), (false, true));
    assert_eq!(f(Filters { verdict: Some("aa".into()), ..Default::default() }), (true, false));
    assert_eq!(f(Filters { err: Some(102), ..Default::default() }), (false, true));
    assert_eq!(f(Filters { since: Some("2".into()), ..Default::default() }), (false, true));
    assert_eq!(f(Filters { until: Some("1".into()), ..Default::default() }), (true, false));
}

#[test]
fn times_and_dates_bound_the_range() {
    let day = |s: &str| q(Filters { since: Some(s.into()), ..Default::default() }).since;
    assert_eq!(day("1970-01-02"), Some(Bound::Ms(86_400_000)));
    assert_eq!(day("1970-01-01T01:00:00Z"), Some(Bound::Ms(3_600_000)));
    assert_eq!(day("1970-01-01T02:00:00+01:00"), Some(Bound::Ms(3_600_000)));
    assert_eq!(day("1970-01-01T01:00:00.5Z"), Some(Bound::Ms(3_600_500)));
    let until = q(Filters { until: Some("1970-01-01".into()), ..Default::default() }).until;
    assert_eq!(until, Some(Bound::Ms(86_400_000)), "a date as an upper bound is the whole day");
    for bad in ["yesterday", "2026-13-01", "2026-11-21T08:30", "-1", "2026-11-21T08:30:00.é5Z", "２０２６-11-21"] {
        let e = Filters { since: Some(bad.into()), ..Default::default() }.parse().unwrap_err();
        assert!(e.to_string().contains("since"), "{e}");
    }
    let e = Filters { verdict: Some("ok".into()), ..Default::default() }.parse().unwrap_err();
    assert!(e.to_string().contains("AA, AE"), "{e}");
}

#[test]
fn metadata_never_carries_the_message() {
    let line = metadata(&entry(7, "PAS", "RJ1", "C7", "ADT^A01", "AE", 102)).to_string();
    for want in [r#""error_code":102"#, r#""ack_code":"AE""#, r#""control_id":"C7""#, r#""text":"not a date""#] {
        assert!(line.contains(want), "{want}: {line}");
    }
    assert!(!line.contains("9434765919") && !line.contains("SMITH"), "{line}");
}

#[test]
fn run_reads_the_journal_in_order_and_stops_at_the_limit() {
    let data = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(data.path(), JournalOptions::default()).unwrap();
    for i in 1..=10u64 {
        let ty = if i % 2 == 0 { "ORU^R01" } else { "ADT^A01" };
        let cid = format!("C{i}");
        let e = EntryRef {
            received_at_ms: i,
            peer: "p",
            sending_app: "PAS",
            sending_facility: "RJ1",
            control_id: &cid,
            message_type: ty,
            ack_code: "AA",
            ack_sent: true,
            reason: Reason::default(),
            ack: b"",
            raw: b"MSH|",
        };
        j.append(&e).unwrap();
        j.commit().unwrap();
    }
    drop(j);
    let reader = JournalReader::open(data.path()).unwrap();
    let collect = |query: Query| {
        let mut seqs = Vec::new();
        let s = query
            .run(&reader, |e| {
                seqs.push(e.seq);
                Ok::<_, JournalError>(())
            })
            .unwrap();
        (seqs, s.truncated)
    };
    let adt = q(Filters { message_type: Some("ADT".into()), limit: Some(3), ..Default::default() });
    assert_eq!(collect(adt), (vec![1, 3, 5], true));
    let mut by_patient = q(Filters::default());
    by_patient.seqs = Some([4, 9].into_iter().collect());
    assert_eq!(collect(by_patient), (vec![4, 9], false));
    let mut nobody = q(Filters::default());
    nobody.seqs = Some(BTreeSet::new());
    assert_eq!(collect(nobody), (vec![], false));
}
