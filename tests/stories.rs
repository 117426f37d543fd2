//! Issue 9: golden stories. Each `fixtures/stories/NAME.hl7` is a short,
//! realistic UK feed (PAS, lab, document system) about one rule of the issue;
//! `NAME.json` beside it holds the record (and history) the sending systems
//! mean, written by reasoning from the issue's semantics, not copied from
//! output.
//!
//! Each story goes through the real library pipeline (`Pipeline::open` with
//! the repo's `mappings/`, one `process` call per message as a lockstep
//! sender would, the index writer drained) in the file's order and in every
//! other order (every permutation up to 5 messages, else 50 seeded random
//! orders), and must give the same record each time: the record is a
//! function of the messages, not of their arrival order. The natural order
//! must equal the golden, survive a restart and a `reindex` unchanged, and
//! its `recordhub history` must hold the versions the golden lists. One story
//! also goes through the real server (MLLP in, ACK bytes checked).
//!
//! How records are compared (decided here, once):
//! - items as JSON in the store's key order (kind, source, id); the item's
//!   `version` (internal) is dropped, and so is `provenance.seq`: journal seqs
//!   differ between arrival orders. A `journal:N` value (MDM `body_ref`, ORU
//!   `value_ref`) becomes `journal:<seq>` for the same reason;
//! - `identifier` items (the cross-reference's local ids, whose shape is the
//!   store's choice) are not compared item by item: the golden's `local_ids`
//!   must each appear in one of them (organisation and id);
//! - history entries are compared as a set of (kind, id, control id), and
//!   where the golden says `"hidden": null` the version must be shown as not
//!   hidden, where it says `"hidden": "word"` it must be hidden with a reason
//!   containing that word (an entry without `hidden` is not checked for it).
//!   A version's reason is its item's hide reason when the item is hidden,
//!   `undone` when a cancel (A12, A13) undid it.
//!
//! Story files use LF line ends for review; the harness sends CR.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use recordhub::config::Config;
use recordhub::hl7::nhs::NhsNumber;
use recordhub::pipeline::{Inbound, Pipeline};
use serde_json::{json, Value};

/// At most this many orders per story beyond the natural one.
const RANDOM_ORDERS: usize = 50;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stories_dir() -> PathBuf {
    root().join("fixtures/stories")
}

/// One story: its messages in file (arrival) order and its golden.
struct Story {
    name: String,
    messages: Vec<Vec<u8>>,
    golden: Value,
}

/// Splits a story file into messages: each starts at a line beginning `MSH|`;
/// LF/CRLF become the HL7 segment terminator CR; blank lines are dropped.
fn split_messages(text: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<String> = Vec::new();
    for line in text.replace("\r\n", "\n").replace('\r', "\n").lines() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with("MSH|") || out.is_empty() {
            out.push(String::new());
        }
        if let Some(m) = out.last_mut() {
            m.push_str(line);
            m.push('\r');
        }
    }
    out.into_iter().map(String::into_bytes).collect()
}

fn load(name: &str) -> Story {
    let dir = stories_dir();
    let text = std::fs::read_to_string(dir.join(format!("{name}.hl7"))).expect("story .hl7 readable");
    let golden_text = std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("story .json readable");
    let golden: Value = serde_json::from_str(&golden_text).unwrap_or_else(|e| panic!("{name}.json: {e}"));
    let messages = split_messages(&text);
    assert!(!messages.is_empty(), "{name}: no messages");
    Story { name: name.to_string(), messages, golden }
}

fn config(data: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.store.data_dir = data.to_path_buf();
    cfg.http.listen = "127.0.0.1:0".parse().expect("literal address");
    cfg.mapping.dir = root().join("mappings");
    cfg
}

fn open(data: &Path) -> Pipeline {
    let cfg = config(data);
    let mappings = recordhub::serve::load_mappings(&cfg).expect("the repo's mappings load");
    Pipeline::open(recordhub::serve::pipeline_options(&cfg, mappings)).expect("pipeline opens").0
}

/// The NHS numbers whose records the golden describes.
fn nhs_numbers(story: &Story) -> Vec<String> {
    let records =
        story.golden["records"].as_object().unwrap_or_else(|| panic!("{}: golden has no records", story.name));
    records.keys().cloned().collect()
}

/// What one run leaves: per NHS number, the normalised items and the
/// identifier items (kept apart, see the module doc).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    records: BTreeMap<String, Vec<Value>>,
    identifiers: BTreeMap<String, Vec<Value>>,
}

/// Drops what differs between arrival orders without meaning anything: the
/// internal `version`, `provenance.seq`, and journal seqs in `journal:N` values.
fn normalise(mut item: Value) -> Value {
    if let Some(o) = item.as_object_mut() {
        o.remove("version");
        if let Some(p) = o.get_mut("provenance").and_then(Value::as_object_mut) {
            p.remove("seq");
        }
    }
    if let Some(fields) = item.get_mut("fields") {
        unseq(fields);
    }
    item
}

fn unseq(v: &mut Value) {
    match v {
        Value::String(s)
            if s.strip_prefix("journal:").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) =>
        {
            *s = "journal:<seq>".into();
        }
        Value::Array(a) => a.iter_mut().for_each(unseq),
        Value::Object(o) => o.values_mut().for_each(unseq),
        _ => {}
    }
}

fn read(p: &Pipeline, numbers: &[String]) -> Seen {
    let mut seen = Seen { records: BTreeMap::new(), identifiers: BTreeMap::new() };
    for n in numbers {
        let nhs = NhsNumber::parse(n).expect("golden NHS numbers pass Modulus 11");
        let items = p.store().record(&nhs).expect("record reads");
        let (ids, rest): (Vec<Value>, Vec<Value>) = items
            .iter()
            .map(|i| normalise(serde_json::to_value(i).expect("items serialise")))
            .partition(|i| i["kind"] == "identifier");
        seen.records.insert(n.clone(), rest);
        seen.identifiers.insert(n.clone(), ids);
    }
    seen
}

/// Sends `order` (indexes into the story's messages) one message per batch,
/// as a lockstep sender would; every message must be accepted.
fn feed(p: &mut Pipeline, story: &Story, order: &[usize]) {
    for &i in order {
        let out = p.process(&[Inbound::message(&story.messages[i], "story", 0)]).remove(0);
        assert_eq!(
            out.verdict(),
            "accepted",
            "{}: message {} ({}) was not accepted: {:?}",
            story.name,
            i + 1,
            control_id(&story.messages[i]),
            out.ack.as_deref().map(String::from_utf8_lossy)
        );
    }
    p.sync_index();
}

/// A fresh data directory, the messages in `order`, the records read.
fn run(story: &Story, order: &[usize]) -> Seen {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = open(dir.path());
    feed(&mut p, story, order);
    let seen = read(&p, &nhs_numbers(story));
    p.shutdown().expect("clean shutdown");
    seen
}

fn control_id(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg);
    text.split('\r').next().and_then(|msh| msh.split('|').nth(9)).unwrap_or("?").to_string()
}

fn order_ids(story: &Story, order: &[usize]) -> Vec<String> {
    order.iter().map(|&i| control_id(&story.messages[i])).collect()
}

/// Every permutation of 0..n (Heap's algorithm).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn heap(k: usize, a: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if k <= 1 {
            out.push(a.clone());
            return;
        }
        for i in 0..k - 1 {
            heap(k - 1, a, out);
            if k % 2 == 0 {
                a.swap(i, k - 1);
            } else {
                a.swap(0, k - 1);
            }
        }
        heap(k - 1, a, out);
    }
    let mut a: Vec<usize> = (0..n).collect();
    let mut out = Vec::new();
    heap(n, &mut a, &mut out);
    out
}

/// 50 orders from a fixed seed (xorshift + Fisher–Yates): the same orders
/// every run, so a failure names an order that can be replayed.
fn seeded_orders(n: usize, count: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let mut a: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                let j = (next() % (i as u64 + 1)) as usize;
                a.swap(i, j);
            }
            a
        })
        .collect()
}

/// The orders other than the natural one.
fn other_orders(n: usize) -> Vec<Vec<usize>> {
    let natural: Vec<usize> = (0..n).collect();
    let all = if n <= 5 { permutations(n) } else { seeded_orders(n, RANDOM_ORDERS, 0x9e37_79b9_7f4a_7c15) };
    all.into_iter().filter(|o| *o != natural).collect()
}

fn pretty(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The natural run against the golden: items exactly, local ids as a subset.
fn check_golden(story: &Story, seen: &Seen) {
    for (nhs, expected) in story.golden["records"].as_object().expect("records") {
        let want_items = expected["items"].as_array().cloned().unwrap_or_default();
        let got = &seen.records[nhs];
        assert!(
            *got == want_items,
            "{}: record {nhs} differs from the golden\n--- expected\n{}\n--- actual\n{}",
            story.name,
            pretty(&want_items),
            pretty(got)
        );
        let ids = &seen.identifiers[nhs];
        for want in expected["local_ids"].as_array().cloned().unwrap_or_default() {
            let (org, id) = (want["organisation"].as_str().unwrap_or(""), want["id"].as_str().unwrap_or(""));
            let found = ids.iter().any(|i| {
                let text = i.to_string();
                text.contains(&format!("\"{org}\"")) && text.contains(&format!("\"{id}\""))
                    || text.contains(id) && text.contains(org)
            });
            assert!(
                found,
                "{}: record {nhs} shows no local identifier {org} {id}; identifier items: {}",
                story.name,
                pretty(ids)
            );
        }
    }
}

/// The story in every order gives the natural order's record: its items,
/// then its identifier items (checked apart, over every order, so a failure
/// says which disagree).
fn check_orders(story: &Story, natural: &Seen) {
    let names = |order: &[usize]| order_ids(story, order);
    let natural_order: Vec<usize> = (0..story.messages.len()).collect();
    let (mut items_differ, mut ids_differ) = (None, None);
    for order in other_orders(story.messages.len()) {
        let seen = run(story, &order);
        if items_differ.is_none() && seen.records != natural.records {
            items_differ = Some((order.clone(), seen.clone()));
        }
        if ids_differ.is_none() && seen.identifiers != natural.identifiers {
            ids_differ = Some((order, seen));
        }
    }
    if let Some((order, seen)) = items_differ {
        panic!(
            "{}: arriving as {:?} gives other items than the natural order {:?}\n--- natural\n{}\n--- this order\n{}",
            story.name,
            names(&order),
            names(&natural_order),
            pretty(&natural.records),
            pretty(&seen.records)
        );
    }
    if let Some((order, seen)) = ids_differ {
        panic!(
            "{}: the items agree in every order, but arriving as {:?} gives other identifier items than the natural \
             order {:?}\n--- natural\n{}\n--- this order\n{}",
            story.name,
            names(&order),
            names(&natural_order),
            pretty(&natural.identifiers),
            pretty(&seen.identifiers)
        );
    }
}

/// Every version in a patient's history (`Store::history`, what `recordhub
/// history` and `GET /patients/{nhs}/history` print) as (kind, id, control
/// id, why hidden): an item's hide reason for each of its versions when the
/// item is hidden, `undone` for a version a cancel undid, none otherwise.
fn history_versions(p: &Pipeline, nhs: &str) -> Vec<(String, String, String, Option<String>)> {
    let n = NhsNumber::parse(nhs).expect("golden NHS numbers pass Modulus 11");
    let history = serde_json::to_value(p.store().history(&n).expect("history reads")).expect("history serialises");
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut out = Vec::new();
    for item in history.as_array().cloned().unwrap_or_default() {
        let hidden = item["hidden"]["reason"].as_str().map(String::from);
        for v in item["versions"].as_array().cloned().unwrap_or_default() {
            let why = hidden.clone().or_else(|| (v["state"] == "undone").then(|| "undone".to_string()));
            out.push((s(&item["kind"]), s(&item["id"]), s(&v["provenance"]["control_id"]), why));
        }
    }
    out
}

fn check_history(story: &Story, p: &Pipeline) {
    let Some(expected) = story.golden["history"].as_object() else { return };
    for (nhs, want) in expected {
        let got = history_versions(p, nhs);
        let mut got_keys: Vec<(String, String, String)> = got
            .iter()
            .map(|(k, i, c, _)| (k.clone(), i.clone(), c.clone()))
            .filter(|(k, _, _)| k != "identifier")
            .collect();
        got_keys.sort();
        let want = want.as_array().cloned().unwrap_or_default();
        let mut want_keys: Vec<(String, String, String)> = want
            .iter()
            .map(|w| {
                let s = |k: &str| w[k].as_str().unwrap_or("").to_string();
                (s("kind"), s("id"), s("control_id"))
            })
            .collect();
        want_keys.sort();
        assert_eq!(want_keys, got_keys, "{}: history of {nhs}: (kind, id, control id) of every version", story.name);
        for w in &want {
            let Some(h) = w.get("hidden") else { continue };
            let key = (
                w["kind"].as_str().unwrap_or(""),
                w["id"].as_str().unwrap_or(""),
                w["control_id"].as_str().unwrap_or(""),
            );
            let entry =
                got.iter().find(|(k, i, c, _)| (k.as_str(), i.as_str(), c.as_str()) == key).expect("listed above");
            match (h.as_str(), &entry.3) {
                (None, None) => {}
                (None, Some(why)) => {
                    panic!("{}: history of {nhs}: {key:?} should be shown, is hidden ({why})", story.name)
                }
                (Some(word), Some(why)) if why.to_lowercase().contains(&word.to_lowercase()) => {}
                (Some(word), why) => {
                    panic!("{}: history of {nhs}: {key:?} should be hidden ({word}), history says {why:?}", story.name)
                }
            }
        }
    }
}

/// The whole check of one story. Every part runs and every problem is
/// reported together (the golden, reindex, restart, history, other orders),
/// so one failure does not hide the others.
fn check_story(name: &str) {
    let story = load(name);
    let natural: Vec<usize> = (0..story.messages.len()).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = open(dir.path());
    feed(&mut p, &story, &natural);
    let numbers = nhs_numbers(&story);
    let first = read(&p, &numbers);
    let mut problems = Vec::new();
    let mut part = |what: &str, f: &dyn Fn()| {
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            let text = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
            problems.push(format!("[{what}] {}", text.unwrap_or_default()));
        }
    };
    part("golden", &|| check_golden(&story, &first));
    // Derived from the journal: a reindex and a restart give the same record.
    p.reindex().expect("reindex");
    p.sync_index();
    let after_reindex = read(&p, &numbers);
    part("reindex", &|| assert_eq!(after_reindex, first, "{}: reindex changed the record", story.name));
    p.shutdown().expect("clean shutdown");
    drop(p);
    let mut p = open(dir.path());
    p.sync_index();
    let after_restart = read(&p, &numbers);
    part("restart", &|| assert_eq!(after_restart, first, "{}: a restart changed the record", story.name));
    part("history", &|| check_history(&story, &p));
    p.shutdown().expect("clean shutdown");
    drop(p);
    part("orders", &|| check_orders(&story, &first));
    assert!(problems.is_empty(), "{}: {} problem(s):\n{}", story.name, problems.len(), problems.join("\n\n"));
}

macro_rules! stories {
    ($($test:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check_story($file);
            }
        )*

        /// Every story file has a test above (a new story cannot be forgotten).
        #[test]
        fn every_story_file_is_tested() {
            let listed: Vec<&str> = vec![$($file),*];
            let mut files: Vec<String> = std::fs::read_dir(stories_dir())
                .expect("fixtures/stories")
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|f| f.ends_with(".hl7"))
                .map(|f| f.trim_end_matches(".hl7").to_string())
                .collect();
            files.sort();
            let mut listed: Vec<String> = listed.into_iter().map(String::from).collect();
            listed.sort();
            assert_eq!(files, listed, "fixtures/stories/*.hl7 and the stories! list");
            for f in &files {
                assert!(stories_dir().join(format!("{f}.json")).exists(), "{f}.hl7 has no {f}.json golden");
            }
        }
    };
}

stories! {
    a11_cancelled_admission_is_hidden_in_every_order => "a11-cancel-admit",
    a12_cancelled_transfer_goes_back_to_the_previous_location => "a12-cancel-transfer",
    a13_cancelled_discharge_reopens_the_encounter => "a13-cancel-discharge",
    a03_before_its_a01_ends_finished => "a03-before-a01",
    a08_applies_by_event_time_field_group_by_field_group => "a08-event-time",
    result_with_only_a_hospital_number_is_parked_then_linked_by_a28 => "parked-then-linked",
    a40_merge_moves_the_temporary_numbers_items_and_late_messages_follow => "a40-merge",
    a47_changed_hospital_number_links_parked_and_old_number_results => "a47-change-local-id",
    corrected_result_wins_even_when_it_arrives_first => "oru-corrected",
    obx_11_d_removes_the_observation => "oru-deleted-observation",
    obx_11_w_removes_the_result_from_this_patient => "oru-wrong-patient",
    late_preliminary_never_replaces_the_final => "oru-late-preliminary",
    t10_replacement_hides_the_superseded_document => "mdm-t10-replace",
    t11_cancelled_document_is_hidden => "mdm-t11-cancel",
    a60_iam_adds_updates_and_removes_allergies => "a60-allergies",
    unverified_nhs_number_is_parked_until_a_verified_one_arrives => "unverified-nhs-number",
    test_range_nhs_number_on_a_production_feed_is_not_filed => "test-number-on-production",
}

#[test]
fn harness_permutations_and_seeded_orders_are_what_the_doc_says() {
    assert_eq!(permutations(4).len(), 24);
    let mut p = permutations(3);
    p.sort();
    p.dedup();
    assert_eq!(p.len(), 6, "distinct");
    assert_eq!(other_orders(5).len(), 119);
    assert_eq!(
        other_orders(7).len(),
        RANDOM_ORDERS.min(50) - usize::from(seeded_orders(7, 50, 0x9e37_79b9_7f4a_7c15).contains(&(0..7).collect()))
    );
    assert_eq!(seeded_orders(7, 3, 1), seeded_orders(7, 3, 1), "seeded: the same orders every run");
    assert_eq!(split_messages("MSH|a\nPID|b\n\nMSH|c\r\nEVN|d\n").len(), 2);
    let _ = json!(null);
}

/// The property behind the stories: over generated stories (admit,
/// transfers, transfer cancels, discharge, discharge cancel, A08
/// demographics, results P/F/C), any arrival order gives the record that
/// the clinical (sorted) order gives. 64 cases by default; PROPTEST_CASES
/// raises it.
mod property {
    use super::*;
    use proptest::prelude::*;

    const NHS: &str = "4505577104";
    const WARDS: [&str; 4] = ["RJ1AMU", "RJ1W12", "RJ1W14", "RJ1W07"];

    /// What a generated story is made of.
    #[derive(Debug, Clone)]
    struct Plan {
        /// (ward index, cancelled by an A12) per transfer.
        transfers: Vec<(usize, bool)>,
        /// (address index, phone present) per A08.
        updates: Vec<(usize, bool)>,
        /// None, discharged, or discharged and the discharge cancelled.
        discharge: Option<bool>,
        /// Per result: the statuses sent (subset of P, F, C in that order) and a value seed.
        results: Vec<(Vec<char>, u8)>,
    }

    fn ts(minutes: i64) -> String {
        // 2026-11-01 00:00 plus minutes; days stay within November.
        let (d, m) = (minutes / 1440, minutes % 1440);
        format!("202611{:02}{:02}{:02}00", 1 + d, m / 60, m % 60)
    }

    fn adt_msg(ev: &str, minutes: i64, ctl: &str, pid_extra: &str, pv1: &str) -> String {
        let t = ts(minutes);
        format!(
            "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|{t}||ADT^{ev}^ADT_{ev}|{ctl}|P|2.4\rEVN|{ev}|{t}||||{t}\r\
             PID|1||{NHS}^^^NHS^NH~K5000001^^^RJ1^MR||HUGHES^MARGARET^^^MRS||19480612|F{pid_extra}\r{pv1}\r"
        )
    }

    fn pv1(ward: &str, prior: &str, discharged: &str) -> String {
        let mut f = vec![""; 46];
        f[1] = "1";
        f[2] = "I";
        f[3] = ward;
        f[6] = prior;
        f[19] = "V5000001^^^RJ1^VN";
        f[44] = "20261101000000";
        f[45] = discharged;
        format!("PV1|{}", f[1..].join("|"))
    }

    /// The story's messages in clinical order (each at its own time).
    fn messages(plan: &Plan) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut n = 0;
        let mut ctl = || {
            n += 1;
            format!("G{n:04}")
        };
        let mut t = 0i64;
        out.push(adt_msg("A01", t, &ctl(), "", &pv1("RJ1AMU", "", "")));
        let mut ward = "RJ1AMU";
        let addresses = ["1 HIGH ST^^LONDON^^SE1 1AA", "2 LOW RD^^LONDON^^SE2 2BB", "3 MID LANE^^LONDON^^SE3 3CC"];
        let mut updates = plan.updates.iter();
        for &(w, cancelled) in &plan.transfers {
            t += 60;
            let to = WARDS[w];
            out.push(adt_msg("A02", t, &ctl(), "", &pv1(to, ward, "")));
            if cancelled {
                t += 5;
                out.push(adt_msg("A12", t, &ctl(), "", &pv1(ward, "", "")));
            } else {
                ward = to;
            }
            if let Some(&(a, phone)) = updates.next() {
                t += 7;
                let extra = format!(
                    "|||{}||{}",
                    addresses[a],
                    if phone { format!("020 7946 {:04}", t % 10000) } else { String::new() }
                );
                out.push(adt_msg("A08", t, &ctl(), &extra, &pv1(ward, "", "")));
            }
        }
        for &(a, phone) in updates {
            t += 7;
            let extra = format!(
                "|||{}||{}",
                addresses[a],
                if phone { format!("020 7946 {:04}", t % 10000) } else { String::new() }
            );
            out.push(adt_msg("A08", t, &ctl(), &extra, &pv1(ward, "", "")));
        }
        for (i, (statuses, seed)) in plan.results.iter().enumerate() {
            for (k, st) in statuses.iter().enumerate() {
                t += 11;
                let when = ts(t);
                let value = 120 + u32::from(*seed) % 40 + k as u32;
                out.push(format!(
                    "MSH|^~\\&|WINPATH|RAL|RECORDHUB|LCR|{when}||ORU^R01^ORU_R01|{}|P|2.4\r\
                     PID|1||{NHS}^^^NHS^NH~K5000001^^^RJ1^MR||HUGHES^MARGARET||19480612|F\r\
                     OBR|1|PG{i}|FG{i}^WINPATH|FBC^Full blood count^WINPATH|||20261101000000|||||||||||||||{when}||HM|{st}\r\
                     OBX|1|NM|HB^Haemoglobin^WINPATH||{value}|g/L|130-170|N|||{st}\r",
                    ctl()
                ));
            }
        }
        if let Some(cancelled) = plan.discharge {
            t += 120;
            let d = ts(t);
            out.push(adt_msg("A03", t, &ctl(), "", &pv1(ward, "", &d)));
            if cancelled {
                t += 15;
                out.push(adt_msg("A13", t, &ctl(), "", &pv1(ward, "", "")));
            }
        }
        out.into_iter().map(String::into_bytes).collect()
    }

    fn plan() -> impl Strategy<Value = Plan> {
        let statuses = prop::sample::subsequence(vec!['P', 'F', 'C'], 1..=3);
        (
            prop::collection::vec((0..WARDS.len(), any::<bool>()), 0..4),
            prop::collection::vec((0..3usize, any::<bool>()), 0..3),
            prop::option::of(any::<bool>()),
            prop::collection::vec((statuses, any::<u8>()), 0..3),
        )
            .prop_map(|(transfers, updates, discharge, results)| Plan {
                transfers,
                updates,
                discharge,
                results,
            })
    }

    fn story_of(messages: Vec<Vec<u8>>) -> Story {
        Story { name: "generated".into(), messages, golden: json!({ "records": { NHS: {} } }) }
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_arrival_order_gives_the_record_of_the_clinical_order(
            (plan, order) in plan().prop_flat_map(|p| {
                let n = messages(&p).len();
                (Just(p), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
            })
        ) {
            let story = story_of(messages(&plan));
            let sorted: Vec<usize> = (0..story.messages.len()).collect();
            let want = run(&story, &sorted);
            let got = run(&story, &order);
            prop_assert_eq!(
                &got.records, &want.records,
                "items: arrival order {:?} of {:?}", order_ids(&story, &order), plan
            );
            prop_assert_eq!(
                &got.identifiers, &want.identifiers,
                "identifier items (the items agree): arrival order {:?} of {:?}", order_ids(&story, &order), plan
            );
        }
    }
}

/// One story end to end through the real server: MLLP frames in, each ACK
/// `MSA|AA|<its control id>`, then the record from `GET /patients/{nhs}`
/// equals the golden (and so the library runs above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a12_story_through_the_real_server_acks_aa_and_reads_the_golden_record() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let story = load("a12-cancel-transfer");
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound");
    let running = recordhub::serve::start(&cfg, listener).await.expect("engine starts");
    let http = format!("http://{}", running.http_addr);
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    for msg in &story.messages {
        let mut framed = vec![0x0b];
        framed.extend_from_slice(msg);
        framed.extend_from_slice(&[0x1c, 0x0d]);
        conn.write_all(&framed).await.expect("send");
        let mut ack = Vec::new();
        while !ack.ends_with(&[0x1c, 0x0d]) {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut chunk))
                .await
                .expect("an ACK within 10 s")
                .expect("read");
            assert!(n > 0, "the server closed the connection instead of answering");
            ack.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&ack[1..ack.len() - 2]).into_owned();
        let msa = text.split('\r').find(|s| s.starts_with("MSA|")).unwrap_or("").to_string();
        assert_eq!(msa, format!("MSA|AA|{}|Message accepted", control_id(msg)), "ACK bytes: {text:?}");
    }
    let nhs = nhs_numbers(&story).remove(0);
    // A token signed with the data directory's key, which a default engine trusts.
    let req = recordhub::auth::mint::MintRequest {
        user: "stories".into(),
        role: "clinician".into(),
        org: "RJ1".into(),
        lifetime: std::time::Duration::from_secs(600),
    };
    let token = recordhub::auth::mint::mint(&cfg, &req).expect("token minted");
    // Record reads wait for the index writer, so the read follows the last ACK.
    let body = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut resp = agent
            .get(&format!("{http}/patients/{nhs}"))
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .expect("GET the record");
        assert_eq!(resp.status().as_u16(), 200);
        resp.body_mut().read_to_string().expect("body")
    })
    .await
    .expect("reader");
    let record: Value = serde_json::from_str(&body).expect("the record is JSON");
    let items: Vec<Value> = record["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(normalise)
        .filter(|i| i["kind"] != "identifier")
        .collect();
    let (nhs, want) = story.golden["records"].as_object().and_then(|r| r.iter().next()).expect("one record");
    assert_eq!(Value::Array(items), want["items"], "record {nhs} over HTTP");
    running.shutdown().await.expect("clean shutdown");
}
