//! Unit tests of the govern stage: the shipped rules load, bad files say
//! `file:line:col`, and rules hold where they should.

use std::path::Path;

use super::*;
use crate::hl7::Message;

fn shipped() -> Rules {
    Rules::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/governance")).unwrap()
}

fn hit_ids(rules: &Rules, hl7: &str) -> Vec<String> {
    let msg = Message::parse(hl7.as_bytes()).unwrap();
    rules.hits(&msg).iter().map(|h| rules.rules()[h.rule].id.to_string()).collect()
}

#[test]
fn the_shipped_rule_set_loads_and_covers_the_six_categories_and_restricted_documents() {
    let rules = shipped();
    let mut cats: Vec<_> = rules.rules().iter().map(|r| r.category.as_str()).collect();
    cats.sort();
    cats.dedup();
    assert_eq!(
        cats,
        [
            "criminal_record",
            "domestic_violence",
            "fertility",
            "gender_reassignment",
            "hiv",
            "restricted",
            "sexual_health"
        ]
    );
}

#[test]
fn codes_match_with_or_without_dots_and_by_prefix() {
    let rules = shipped();
    let adt = |code: &str| {
        format!("MSH|^~\\&|PAS|RJ1|RH|LCR|20261121||ADT^A08|C1|P|2.4\rPID|1||9434765919^^^NHS^NH\rPV1|1|I|W1\rDG1|1||{code}^x^I10\r")
    };
    assert_eq!(hit_ids(&rules, &adt("Z65.1")), ["criminal-record-diagnosis"]);
    assert_eq!(hit_ids(&rules, &adt("Z651")), ["criminal-record-diagnosis"]);
    assert_eq!(hit_ids(&rules, &adt("B20.7")), ["hiv-diagnosis"]);
    assert_eq!(hit_ids(&rules, &adt("F64.0")), ["gender-identity-diagnosis"]);
    assert!(hit_ids(&rules, &adt("Z65.4")).is_empty(), "victim of crime is not in the legal list");
    assert!(hit_ids(&rules, &adt("J45")).is_empty());
}

#[test]
fn a_broken_rule_file_is_refused_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("x.toml"),
        "[[rule]]\nid = \"a\"\ncategory = \"hiv\"\nfield = \"DG1-3.1\"\nin_list = \"nope\"\nexclude = \"item\"\n",
    )
    .unwrap();
    let text = Rules::load_dir(dir.path()).unwrap_err().to_string();
    assert!(text.ends_with("x.toml:5:11: no code list 'nope' in codes/ (lists: none); add codes/nope.txt"), "{text}");
    std::fs::write(
        dir.path().join("x.toml"),
        "[[rule]]\nid = \"a\"\ncategory = \"hiv\"\nfield = \"DG1-3.1\"\nin = [\"B20\"]\nexclude = \"segment\"\n",
    )
    .unwrap();
    let text = Rules::load_dir(dir.path()).unwrap_err().to_string();
    assert!(text.ends_with("x.toml:6:11: exclude = \"segment\": expected \"message\" or \"item\""), "{text}");
    std::fs::write(
        dir.path().join("x.toml"),
        "[[rule]]\nid = \"a\"\ncategory = \"hiv\"\nfield = \"DG1-3.x\"\nin = [\"B20\"]\nexclude = \"item\"\n",
    )
    .unwrap();
    let text = Rules::load_dir(dir.path()).unwrap_err().to_string();
    assert!(text.contains("x.toml:4:"), "{text}");
}

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Maps and governs a fixture of fixtures/governance with the shipped mappings and `rules`.
fn governed(rules: &Rules, name: &str) -> crate::record::Mapped {
    let set = crate::mapping::MappingSet::load_dir(&root().join("mappings")).unwrap();
    let raw = std::fs::read(root().join("fixtures/governance").join(name)).unwrap();
    let msg = Message::parse(&raw).unwrap();
    let prov = crate::mapping::check::provenance(&msg, 7);
    let mut m = set.apply(&msg, &prov).unwrap();
    govern(rules, &set, &Default::default(), &msg, &prov, &mut m);
    m
}

fn excluded_ids(m: &crate::record::Mapped) -> Vec<String> {
    m.governed.excluded.iter().map(|(i, r)| format!("{r}:{}", m.items[*i].id)).collect()
}

#[test]
fn an_item_rule_marks_only_the_matching_diagnosis_and_keeps_every_items_place() {
    let m = governed(&shipped(), "adt-gender-identity.hl7");
    assert_eq!(excluded_ids(&m), ["gender-identity-diagnosis:F64.0"]);
    assert!(m.items.iter().any(|i| i.id == "J45.9"), "the other diagnosis stays, unmarked");
    assert!(
        m.governed.message.is_none() && m.governed.sensitive_scopes.is_empty(),
        "a diagnosis makes no visit sensitive"
    );
    assert!(
        m.items.iter().all(|i| i.scopes.iter().map(|s| &**s).eq(["PV1-19.1|RJ1|V000777003"])),
        "every item is in the message's visit"
    );
}

#[test]
fn a_message_rule_excludes_everything_and_makes_the_visit_sensitive() {
    let m = governed(&shipped(), "adt-gum-clinic.hl7");
    assert_eq!(m.governed.message.as_deref(), Some("sexual-health-clinic"));
    assert_eq!(m.governed.excluded.len(), m.items.len());
    assert_eq!(
        m.governed.sensitive_scopes,
        [("PV1-19.1|RJ1|VGUM0001".to_string(), "sexual-health-clinic".to_string())]
    );
}

#[test]
fn an_order_rule_excludes_that_order_and_each_result_carries_only_its_own_order() {
    let m = governed(&shipped(), "oru-hiv-viral-load.hl7");
    assert_eq!(excluded_ids(&m), ["hiv-test:LHIV0001^20447-9"]);
    let scopes: Vec<_> = m.governed.sensitive_scopes.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(scopes, ["OBR-3.1|WINPATH|LHIV0001", "OBR-2.1|ICE|ORD2"], "named by the order's assigning authority");
    let fbc = m.items.iter().find(|i| i.id == "LFBC0001^FBC").unwrap();
    assert_eq!(
        fbc.scopes.iter().map(|s| &**s).collect::<Vec<_>>(),
        ["PV1-19.1|RJ1|V000777001", "OBR-3.1|WINPATH|LFBC0001", "OBR-2.1|ICE|ORD1"]
    );
}

#[test]
fn drop_fields_removes_the_named_fields_and_keeps_the_items() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.toml"),
        "[[rule]]\nid = \"no-ward\"\ncategory = \"restricted\"\nfield = \"PV1-10\"\nin = [\"300\"]\ndrop_fields = [\"ward\"]\n",
    )
    .unwrap();
    let rules = Rules::load_dir(dir.path()).unwrap();
    let m = governed(&rules, "adt-imprisonment.hl7");
    let enc = m.items.iter().find(|i| i.kind == crate::record::Kind::Encounter).unwrap();
    assert!(enc.fields.get("ward").is_none() && enc.fields.get("bed").is_some(), "{:?}", enc.fields);
    assert!(m.governed.is_empty());
}

/// The one-pass matcher (rules grouped by field): an occurrence path holds
/// on that occurrence only, a sender filter is honoured per rule, two values
/// of one segment that both match give one hit, and two rules on the same
/// field each hold where their own list says.
#[test]
fn rules_sharing_a_field_hold_per_rule_per_occurrence_and_per_sender() {
    let dir = tempfile::tempdir().unwrap();
    let rule = |id: &str, field: &str, values: &str, app: &str| {
        let app = if app.is_empty() { String::new() } else { format!("sending_app = [\"{app}\"]\n") };
        format!("[[rule]]\nid = \"{id}\"\ncategory = \"hiv\"\nfield = \"{field}\"\nin = [{values}]\n{app}exclude = \"item\"\n")
    };
    let src = [
        rule("any-dg1", "DG1-3.1", "\"B20\", \"B21\"", ""),
        rule("second-dg1", "DG1(2)-3.1", "\"B20\"", ""),
        rule("lab-only", "DG1-3.1", "\"B21\"", "LAB"),
    ]
    .concat();
    std::fs::write(dir.path().join("r.toml"), src).unwrap();
    let rules = Rules::load_dir(dir.path()).unwrap();
    let msg = |app: &str| {
        format!(
            "MSH|^~\\&|{app}|RJ1|RH|LCR|20261121||ADT^A08|C1|P|2.4\rPID|1||9434765919^^^NHS^NH\r\
             DG1|1||B20^x^I10~b.20^y^I10\rDG1|2||J45^x^I10\rDG1|3||B21^x^I10\r"
        )
    };
    let hits = |app: &str| {
        let m = msg(app);
        let m = Message::parse(m.as_bytes()).unwrap();
        rules.hits(&m).iter().map(|h| (rules.rules()[h.rule].id.to_string(), h.segment)).collect::<Vec<_>>()
    };
    let s = |i: usize| Some(i);
    // DG1(1) is segment 2, DG1(2) segment 3, DG1(3) segment 4.
    assert_eq!(hits("PAS"), [("any-dg1".to_string(), s(2)), ("any-dg1".to_string(), s(4))]);
    assert_eq!(
        hits("LAB"),
        [("any-dg1".to_string(), s(2)), ("any-dg1".to_string(), s(4)), ("lab-only".to_string(), s(4))]
    );
    let second = "MSH|^~\\&|PAS|RJ1|RH|LCR|20261121||ADT^A08|C1|P|2.4\rDG1|1||J45\rDG1|2||B20\r";
    assert_eq!(hit_ids(&rules, second), ["any-dg1", "second-dg1"]);
}
