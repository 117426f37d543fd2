//! Mapping goldens: every `fixtures/*.hl7` with a `.json` beside it is checked against
//! the shipped `mappings/`, and every `fixtures/invalid-mappings/*.toml` must fail to
//! load with exactly the text in the `.err` beside it.
//! `RECORDHUB_BLESS=1 cargo test --test mapping` rewrites the expected files.

use std::fs;
use std::path::{Path, PathBuf};

use recordhub::mapping::{check::check, MappingSet};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bless() -> bool {
    std::env::var_os("RECORDHUB_BLESS").is_some()
}

fn with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

/// Compares or (when blessing) rewrites; returns a failure description.
fn compare(expected_file: &Path, actual: &str) -> Option<String> {
    if bless() {
        fs::write(expected_file, actual).unwrap();
        return None;
    }
    let expected = fs::read_to_string(expected_file).unwrap_or_default();
    (expected != actual)
        .then(|| format!("{}:\n--- expected\n{expected}\n--- actual\n{actual}", expected_file.display()))
}

#[test]
fn shipped_mappings_load() {
    let set = MappingSet::load_dir(&root().join("mappings")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.files(), 3);
    assert!(set.handles("ADT", "A01") && set.handles("ORU", "R01") && set.handles("MDM", "T11"));
    assert!(!set.handles("SIU", "S12"));
}

#[test]
fn golden_fixtures() {
    let set = MappingSet::load_dir(&root().join("mappings")).unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    let mut n = 0;
    for hl7 in with_ext(&root().join("fixtures"), "hl7") {
        let json = hl7.with_extension("json");
        if !json.exists() && !bless() {
            continue;
        }
        n += 1;
        let checked: Vec<_> = check(&set, &fs::read(&hl7).unwrap()).iter().map(|c| c.to_json()).collect();
        let actual = serde_json::to_string_pretty(&checked).unwrap() + "\n";
        failures.extend(compare(&json, &actual));
    }
    assert!(n >= 3, "no golden fixtures found");
    assert!(failures.is_empty(), "{} golden(s) differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn invalid_mappings_fail_with_their_message() {
    let dir = root().join("fixtures/invalid-mappings");
    let tables = root().join("mappings/tables");
    let mut failures = Vec::new();
    for toml in with_ext(&dir, "toml") {
        let rel = toml.strip_prefix(root()).unwrap().to_path_buf();
        let actual = match MappingSet::load_files(std::slice::from_ref(&rel), &tables, Vec::new()) {
            Ok(_) => "loaded without error\n".to_string(),
            Err(e) => format!("{e}\n"),
        };
        failures.extend(compare(&toml.with_extension("err"), &actual));
    }
    assert!(failures.is_empty(), "{} error text(s) differ:\n{}", failures.len(), failures.join("\n"));
}
