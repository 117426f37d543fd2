//! The record page's content, built from what [`crate::read::read_audited`]
//! returned (already filtered to the reader's role): one section per
//! leaflet category, entries newest first, each saying who sent it and when.
//!
//! Pure functions of the JSON the read path returns, so the page shows
//! exactly what the audit says was shown. The document bodies are the one
//! thing read besides (from the journal, `body.rs`), by the caller.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::dates::uk;
use crate::record::{Kind, Provenance};

/// One item as the read path serialises it.
#[derive(Debug, Deserialize)]
pub struct Shown {
    pub kind: Kind,
    pub id: String,
    #[serde(default)]
    pub fields: Map<String, Value>,
    pub provenance: Provenance,
}

/// One labelled value.
#[derive(Debug, Clone)]
pub struct Fact {
    pub label: &'static str,
    pub value: String,
}

/// One observation of a result.
#[derive(Debug, Clone)]
pub struct Obs {
    pub name: String,
    pub value: String,
    pub units: String,
    pub range: String,
    /// The abnormal flag as sent (`H`, `LL`, `A` …), empty when normal.
    pub flag: String,
    /// What the flag means, in words (never colour alone).
    pub flag_text: &'static str,
}

/// One move of an encounter (A02).
#[derive(Debug, Clone)]
pub struct Move {
    pub when: String,
    pub from: String,
    pub to: String,
}

/// One entry of a section.
#[derive(Debug, Clone)]
pub struct Entry {
    pub title: String,
    /// The clinical time, UK format (may be empty).
    pub when: String,
    /// ISO, for ordering (newest first).
    sort: String,
    /// `Sent by RJ1 (PAS, ADT^A01) on 21 Nov 2026 08:29`.
    pub source: String,
    pub facts: Vec<Fact>,
    pub observations: Vec<Obs>,
    /// Whether any observation is flagged abnormal.
    pub abnormal: bool,
    pub moves: Vec<Move>,
    /// A document's journal seq, for the body (filled in by the caller).
    pub body_seq: Option<u64>,
    pub body: Option<super::body::Body>,
}

/// One section of the page.
#[derive(Debug, Clone)]
pub struct Section {
    pub id: &'static str,
    pub heading: &'static str,
    pub entries: Vec<Entry>,
    /// The reader's role does not see this category.
    pub hidden: bool,
}

/// The page's content.
#[derive(Debug, Clone, Default)]
pub struct RecordView {
    /// The name in the banner (from the newest demographics).
    pub name: String,
    pub birth_date: String,
    pub sex: String,
    /// Local identifiers: (organisation, id).
    pub identifiers: Vec<(String, String)>,
    pub sections: Vec<Section>,
}

fn s(f: &Map<String, Value>, k: &str) -> String {
    match f.get(k) {
        Some(Value::String(v)) => v.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn join(parts: &[String]) -> String {
    parts.iter().filter(|p| !p.trim().is_empty()).map(|p| p.trim()).collect::<Vec<_>>().join(" ")
}

fn fact(facts: &mut Vec<Fact>, label: &'static str, value: String) {
    if !value.trim().is_empty() {
        facts.push(Fact { label, value });
    }
}

fn date_fact(facts: &mut Vec<Fact>, label: &'static str, iso: String) {
    if !iso.is_empty() {
        facts.push(Fact { label, value: uk(&iso) });
    }
}

/// What an HL7 abnormal flag (table 0078) means, in words.
pub fn flag_text(flag: &str) -> &'static str {
    match flag {
        "H" => "High",
        "HH" => "Critically high",
        "L" => "Low",
        "LL" => "Critically low",
        "A" => "Abnormal",
        "AA" => "Critically abnormal",
        ">" => "Above the measurable range",
        "<" => "Below the measurable range",
        _ => "",
    }
}

fn source(p: &Provenance) -> String {
    let when = p.event_time.as_deref().map(uk).unwrap_or_else(|| "an unknown time".into());
    format!("Sent by {} ({}, {}) on {when}", p.sending_facility, p.sending_app, p.message_type)
}

fn entry(item: &Shown, title: String, when_iso: String) -> Entry {
    let sort =
        if when_iso.is_empty() { item.provenance.event_time.clone().unwrap_or_default() } else { when_iso.clone() };
    Entry {
        title,
        when: if when_iso.is_empty() { String::new() } else { uk(&when_iso) },
        sort,
        source: source(&item.provenance),
        facts: Vec::new(),
        observations: Vec::new(),
        abnormal: false,
        moves: Vec::new(),
        body_seq: None,
        body: None,
    }
}

fn first_of(f: &Map<String, Value>, keys: &[&str]) -> String {
    keys.iter().map(|k| s(f, k)).find(|v| !v.is_empty()).unwrap_or_default()
}

/// Builds the page from the items the read path returned; `shows` says
/// which categories the reader's role sees (the others say so, rather than
/// "nothing recorded").
pub fn build(items: Vec<Shown>, shows: impl Fn(Kind) -> bool) -> RecordView {
    let mut view = RecordView::default();
    let mut by_kind: BTreeMap<Kind, Vec<Entry>> = BTreeMap::new();
    let mut newest_demo = String::new();
    for item in &items {
        let f = &item.fields;
        let e = match item.kind {
            Kind::Identifier => {
                view.identifiers.push((s(f, "organisation"), s(f, "id")));
                continue;
            }
            Kind::Patient => {
                let when = item.provenance.event_time.clone().unwrap_or_default();
                let name = join(&[s(f, "title"), s(f, "given_name"), s(f, "middle_names"), s(f, "family_name")]);
                if when >= newest_demo {
                    newest_demo = when;
                    view.name = name.clone();
                    view.birth_date = s(f, "birth_date").get(..10).map(uk).unwrap_or_default();
                    view.sex = s(f, "sex");
                }
                patient(item, name)
            }
            Kind::GpRegistration => {
                let mut e = entry(item, join(&[s(f, "practice_name"), paren(s(f, "practice_code"))]), String::new());
                fact(&mut e.facts, "GP", join(&[s(f, "gp_name"), paren(s(f, "gp_code"))]));
                e
            }
            Kind::Contact => {
                let mut e = entry(item, join(&[s(f, "given_name"), s(f, "family_name")]), String::new());
                fact(&mut e.facts, "Relationship", s(f, "relationship"));
                fact(&mut e.facts, "Role", s(f, "role").replace('-', " "));
                fact(&mut e.facts, "Phone", s(f, "phone"));
                fact(&mut e.facts, "Postcode", s(f, "postcode"));
                e
            }
            Kind::Encounter => encounter(item),
            Kind::Allergy => {
                let mut e = entry(item, first_of(f, &["allergen", "code"]), s(f, "identified"));
                fact(&mut e.facts, "Type", s(f, "type"));
                fact(&mut e.facts, "Severity", s(f, "severity"));
                fact(&mut e.facts, "Reaction", s(f, "reaction").replace('\n', "; "));
                e
            }
            Kind::Diagnosis => {
                let title =
                    join(&[first_of(f, &["description", "code"]), paren(join(&[s(f, "coding_system"), s(f, "code")]))]);
                let mut e = entry(item, title, s(f, "diagnosed"));
                // HL7 table 0052 (DG1-6).
                let kind = match s(f, "type").as_str() {
                    "A" => "Admitting".to_string(),
                    "W" => "Working".to_string(),
                    "F" => "Final".to_string(),
                    other => other.to_string(),
                };
                fact(&mut e.facts, "Type", kind);
                e
            }
            Kind::Procedure => {
                let title =
                    join(&[first_of(f, &["description", "code"]), paren(join(&[s(f, "coding_system"), s(f, "code")]))]);
                let mut e = entry(item, title, s(f, "performed"));
                fact(&mut e.facts, "Surgeon", s(f, "surgeon"));
                e
            }
            Kind::Result => result(item),
            Kind::Document => {
                let mut e = entry(
                    item,
                    first_of(f, &["title", "type", "type_code"]),
                    first_of(f, &["activity_time", "created"]),
                );
                fact(&mut e.facts, "Author", first_of(f, &["author", "provider"]));
                fact(&mut e.facts, "Status", s(f, "status"));
                e.body_seq = super::body::seq_of(&s(f, "body_ref"));
                e
            }
        };
        by_kind.entry(item.kind).or_default().push(e);
    }
    view.sections = SECTIONS
        .iter()
        .map(|(kind, id, heading)| {
            let mut entries = by_kind.remove(kind).unwrap_or_default();
            entries.sort_by(|a, b| b.sort.cmp(&a.sort));
            Section { id, heading, entries, hidden: !shows(*kind) }
        })
        .collect();
    view
}

/// The page's sections, in the leaflets' order, except allergies, which
/// come straight after the demographics: the first thing to check before
/// prescribing.
const SECTIONS: [(Kind, &str, &str); 9] = [
    (Kind::Patient, "demographics", "Demographics"),
    (Kind::Allergy, "allergies", "Allergies and reactions"),
    (Kind::GpRegistration, "gp", "GP"),
    (Kind::Contact, "contacts", "Contacts and care team"),
    (Kind::Encounter, "encounters", "Encounters"),
    (Kind::Diagnosis, "diagnoses", "Diagnoses"),
    (Kind::Procedure, "procedures", "Procedures"),
    (Kind::Result, "results", "Results"),
    (Kind::Document, "documents", "Documents"),
];

fn paren(v: String) -> String {
    if v.trim().is_empty() {
        v
    } else {
        format!("({})", v.trim())
    }
}

fn patient(item: &Shown, name: String) -> Entry {
    let f = &item.fields;
    let mut e = entry(item, name, String::new());
    date_fact(&mut e.facts, "Born", s(f, "birth_date"));
    fact(&mut e.facts, "Sex", s(f, "sex"));
    let address = [s(f, "address_line1"), s(f, "address_line2"), s(f, "address_city"), s(f, "postcode")];
    fact(&mut e.facts, "Address", address.iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>().join(", "));
    fact(&mut e.facts, "Phone (home)", s(f, "phone_home"));
    fact(&mut e.facts, "Phone (work)", s(f, "phone_business"));
    fact(&mut e.facts, "Language", s(f, "language"));
    date_fact(&mut e.facts, "Died", s(f, "death_time"));
    fact(&mut e.facts, "Merged from", s(f, "merged_from"));
    e
}

fn location(f: &Map<String, Value>, ward: &str, room: &str, bed: &str) -> String {
    [s(f, ward), s(f, room), s(f, bed)].iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>().join(" / ")
}

fn encounter(item: &Shown) -> Entry {
    let f = &item.fields;
    let title = join(&[cap(&s(f, "class")), "encounter".into(), s(f, "specialty")]);
    let mut e = entry(item, title, first_of(f, &["admitted", "discharged"]));
    fact(&mut e.facts, "Visit", item.id.clone());
    fact(&mut e.facts, "Status", s(f, "status").replace('-', " "));
    fact(&mut e.facts, "Location", location(f, "ward", "room", "bed"));
    fact(&mut e.facts, "Consultant", s(f, "consultant_name"));
    date_fact(&mut e.facts, "Admitted", s(f, "admitted"));
    date_fact(&mut e.facts, "Discharged", s(f, "discharged"));
    fact(&mut e.facts, "Reason", s(f, "reason"));
    if let Some(Value::Array(moves)) = f.get("transfers") {
        for m in moves.iter().filter_map(Value::as_object) {
            e.moves.push(Move {
                when: uk(&s(m, "time")),
                from: location(m, "from_ward", "from_room", "from_bed"),
                to: location(m, "ward", "room", "bed"),
            });
        }
    }
    e
}

fn result(item: &Shown) -> Entry {
    let f = &item.fields;
    let title = first_of(f, &["test_name", "test_code"]);
    let mut e = entry(item, title, first_of(f, &["collected", "reported", "received"]));
    fact(&mut e.facts, "Status", s(f, "status"));
    fact(&mut e.facts, "Specimen", s(f, "specimen"));
    fact(&mut e.facts, "Requested by", s(f, "requester"));
    date_fact(&mut e.facts, "Reported", s(f, "reported"));
    fact(&mut e.facts, "Order", s(f, "filler_order_number"));
    fact(&mut e.facts, "Comment", s(f, "comment"));
    if let Some(Value::Array(obs)) = f.get("observations") {
        for o in obs.iter().filter_map(Value::as_object) {
            let flag = s(o, "abnormal_flag");
            let flag_text = flag_text(&flag);
            let flag = if flag_text.is_empty() { String::new() } else { flag };
            e.abnormal |= !flag.is_empty();
            let value = if s(o, "value_ref").is_empty() { s(o, "value") } else { "(embedded document)".into() };
            e.observations.push(Obs {
                name: first_of(o, &["name", "code"]),
                value,
                units: s(o, "units"),
                range: s(o, "range"),
                flag,
                flag_text,
            });
        }
    }
    e
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(fixture: &str) -> Vec<Shown> {
        let all: Vec<Value> = serde_json::from_str(fixture).unwrap();
        all.iter()
            .flat_map(|m| m["items"].as_array().unwrap().clone())
            .map(|i| serde_json::from_value(i).unwrap())
            .collect()
    }

    #[test]
    fn a_full_blood_count_is_one_result_with_its_flags_in_words() {
        let v = build(items(include_str!("../../fixtures/oru-r01.json")), |_| true);
        let results = v.sections.iter().find(|s| s.id == "results").unwrap();
        let fbc = &results.entries[0];
        assert_eq!(fbc.title, "Full blood count and profile");
        assert!(fbc.abnormal);
        let wbc = fbc.observations.iter().find(|o| o.name == "White cell count").unwrap();
        assert_eq!((wbc.flag.as_str(), wbc.flag_text), ("H", "High"));
        let rbc = fbc.observations.iter().find(|o| o.name == "Red cell count").unwrap();
        assert_eq!(rbc.flag, "", "N is normal: no badge");
        assert_eq!(fbc.when, "20 Nov 2026 14:30");
        assert!(fbc.source.starts_with("Sent by RJ1LAB (WINPATH, ORU^R01) on "), "{}", fbc.source);
        assert_eq!(v.name, "GARETH WILLIAMS");
        assert_eq!(v.birth_date, "2 Jul 1956");
    }

    #[test]
    fn an_admission_shows_every_category_it_carries_newest_first() {
        let v = build(items(include_str!("../../fixtures/adt-a01.json")), |_| true);
        let count = |id: &str| v.sections.iter().find(|s| s.id == id).unwrap().entries.len();
        for id in ["demographics", "gp", "contacts", "encounters", "allergies", "diagnoses"] {
            assert_eq!(count(id), 1, "{id}");
        }
        assert_eq!(count("results"), 0);
        let allergy = &v.sections.iter().find(|s| s.id == "allergies").unwrap().entries[0];
        assert_eq!(allergy.title, "Penicillin");
        assert!(allergy.facts.iter().any(|f| f.label == "Reaction" && f.value == "Rash; Anaphylaxis"));
        assert_eq!(v.name, "MS SIOBHAN MARY O'BRIEN");
    }
}
