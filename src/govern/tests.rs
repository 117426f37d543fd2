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
