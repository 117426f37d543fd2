//! Governance: the stage right after mapping (`… → map → **govern** → journal
//! → index`) that keeps the leaflets' promise that sensitive information
//! (sexual health, HIV, fertility, gender reassignment, domestic violence,
//! criminal records, documents marked very restricted) is not shared.
//!
//! An information-governance lead writes exclusion rules in TOML
//! (`mappings/governance/*.toml`, code lists in `codes/`; see the README
//! there). They are compiled at load time like mappings ([`compile`]: paths
//! parsed once, code lists resolved, errors as `file:line:col`) into a
//! [`Rules`] set that reloads swap with the mappings. [`Rules::govern`]
//! ([`eval`]) marks, on the [`Mapped`] message, the items a rule excludes
//! and the visits and orders it makes sensitive; the store never files an
//! excluded item nor any item of a sensitive scope, whichever arrives first
//! (`store/sensitive.rs`). Live ingest, replay, `reindex`, objection restores
//! and parked messages all go through the same call, so exclusion holds on
//! every path to the record. The journal keeps every message as received.
//!
//! Deliberately not here: objections (`store/objection.rs`), access control.

pub mod codes;
pub mod compile;
pub mod eval;
pub mod spec;

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use crate::mapping::path::Path;
use crate::mapping::LoadErrorKind;
pub use crate::mapping::{LoadError, LoadErrors};
pub use eval::{Hit, Report};

/// The governance directory inside a mapping directory.
pub const DIR: &str = "governance";

/// Every compiled rule, and how visits and orders are named. Immutable: a
/// reload builds a new set and swaps it.
#[derive(Debug, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    /// The rules that test a field, grouped by the field (six test DG1-3.1),
    /// in first-rule order: the values of each segment are read and
    /// normalised once per group, not once per rule.
    groups: Vec<Group>,
    cascade: Cascade,
    /// Identifies the rule files' content: the index remembers the set it
    /// was built with and is re-evaluated at start-up when it changed.
    fingerprint: u64,
}

/// Rules that test the same path (indexes into `Rules::rules`).
#[derive(Debug)]
struct Group {
    path: Path,
    rules: Vec<usize>,
}

/// One compiled `[[rule]]`.
#[derive(Debug)]
pub struct Rule {
    pub id: Arc<str>,
    pub category: String,
    pub sending_app: Vec<String>,
    pub sending_facility: Vec<String>,
    pub test: Option<Test>,
    pub action: Action,
}

/// `field` with the values it is compared with (normalised, see [`codes::normalise`]).
#[derive(Debug)]
pub struct Test {
    pub path: Path,
    /// Sorted, without repeats: a binary search per value (code lists are
    /// short, and this is compared with every coded value of every message).
    exact: Box<[String]>,
    pub prefixes: Vec<String>,
}

impl Test {
    pub fn new(path: Path, mut exact: Vec<String>, prefixes: Vec<String>) -> Test {
        exact.sort_unstable();
        exact.dedup();
        Test { path, exact: exact.into(), prefixes }
    }

    /// Whether a normalised `code` is listed, exactly or by a prefix.
    pub fn lists(&self, code: &str) -> bool {
        self.exact.binary_search_by(|e| e.as_str().cmp(code)).is_ok()
            || self.prefixes.iter().any(|p| code.starts_with(p.as_str()))
    }
}

/// What a rule that holds does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The whole message contributes nothing, and its visit and orders become sensitive.
    Message,
    /// Only the items of the segment group that matched (one DG1, one OBR
    /// with its OBX); an OBR group's order becomes sensitive.
    Item,
    /// These item fields are removed from every item of the message.
    DropFields(Vec<String>),
}

/// Paths naming a visit and an order; each value, with MSH-4, is a scope.
#[derive(Debug, Clone)]
pub struct Cascade {
    pub visit: Vec<Path>,
    pub order: Vec<Path>,
}

impl Default for Cascade {
    fn default() -> Cascade {
        let p = |s: &str| crate::mapping::path::parse(s).ok();
        Cascade {
            visit: p("PV1-19.1").into_iter().collect(),
            order: ["OBR-3.1", "OBR-2.1"].into_iter().filter_map(p).collect(),
        }
    }
}

impl Rules {
    /// No rules: nothing is excluded (scopes are still recorded, so rules
    /// added later reach items filed now).
    pub fn empty() -> Rules {
        Rules::default()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Loads `dir/*.toml` with code lists from `dir/codes/`. A missing
    /// directory is an empty set (a deployment without rules).
    ///
    /// # Errors
    /// Every problem of every file at once, each with `file:line:col`.
    pub fn load_dir(dir: &FsPath) -> Result<Rules, LoadErrors> {
        let mut errors = Vec::new();
        if !dir.is_dir() {
            return Ok(Rules::empty());
        }
        let lists = codes::load(&dir.join("codes"), &mut errors);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(e) => e
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
                .collect(),
            Err(e) => return Err(LoadErrors(vec![io_error(dir, &e)])),
        };
        files.sort();
        let mut hash = String::new();
        for l in lists.values() {
            hash.push_str(&l.codes.join(","));
            hash.push('\n');
        }
        let (mut rules, mut cascade): (Vec<Rule>, Option<(Cascade, PathBuf)>) = (Vec::new(), None);
        for file in &files {
            let src = match std::fs::read_to_string(file) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(io_error(file, &e));
                    continue;
                }
            };
            hash.push_str(&src);
            let mut c = compile::Compiler { file, src: &src, lists: &lists, errors: Vec::new() };
            match toml::from_str::<spec::FileSpec>(&src) {
                Ok(spec) => {
                    let (mut r, casc) = c.file(&spec);
                    for (k, rule) in r.iter().enumerate() {
                        if rules.iter().chain(&r[..k]).any(|o: &Rule| o.id == rule.id) {
                            let at = spec
                                .rules
                                .iter()
                                .find(|s| s.id.get_ref().trim() == &*rule.id)
                                .map_or(0..0, |s| s.id.span());
                            c.invalid(
                                at,
                                format!("rule id '{}' is used twice: ids must be unique across the directory", rule.id),
                            );
                        }
                    }
                    rules.append(&mut r);
                    if let Some((casc, span)) = casc {
                        match &cascade {
                            Some((_, other)) => {
                                c.invalid(span, format!("[cascade] is also declared in {}: keep one", other.display()))
                            }
                            None => cascade = Some((casc, file.clone())),
                        }
                    }
                }
                Err(e) => c.invalid(e.span().unwrap_or(0..0), e.message().trim().to_string()),
            }
            errors.extend(c.errors);
        }
        if !errors.is_empty() {
            errors.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
            return Err(LoadErrors(errors));
        }
        let fingerprint = if rules.is_empty() { 0 } else { u64::from(crc32c::crc32c(hash.as_bytes())) | 1 << 32 };
        let groups = group_by_path(&rules);
        Ok(Rules { rules, groups, cascade: cascade.map(|(c, _)| c).unwrap_or_default(), fingerprint })
    }
}

fn group_by_path(rules: &[Rule]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let Some(t) = &r.test else { continue };
        match groups.iter_mut().find(|g| g.path == t.path) {
            Some(g) => g.rules.push(i),
            None => groups.push(Group { path: t.path.clone(), rules: vec![i] }),
        }
    }
    groups
}

fn io_error(file: &FsPath, e: &std::io::Error) -> LoadError {
    LoadError { file: file.to_path_buf(), line: 0, col: 0, kind: LoadErrorKind::Io(e.to_string()) }
}

/// Logs and counts what the govern stage excluded from one message.
pub fn note_suppressed(metrics: &crate::metrics::Metrics, m: &crate::record::Mapped, seq: u64) {
    let g = &m.governed;
    if g.is_empty() {
        return;
    }
    let control_id = m.items.first().map(|i| i.provenance.control_id.as_str()).unwrap_or_default();
    let mut per_rule: Vec<(&str, u64)> = Vec::new();
    for (_, rule) in &g.excluded {
        match per_rule.iter_mut().find(|(r, _)| r == rule) {
            Some((_, n)) => *n += 1,
            None => per_rule.push((rule, 1)),
        }
    }
    for (rule, n) in &per_rule {
        metrics.items_suppressed(rule, *n);
        tracing::info!(rule = %rule, control_id, seq, items = n, outcome = "suppressed", "exclusion rule kept items out of the record");
    }
    for (_, rule) in g.sensitive_scopes.iter().filter(|(_, r)| !per_rule.iter().any(|(p, _)| p == r)) {
        tracing::info!(rule = %rule, control_id, seq, outcome = "scope_sensitive", "exclusion rule made a visit or order sensitive");
    }
}

#[cfg(test)]
mod tests;

/// The govern stage for a message `set` has mapped to `mapped`: the one
/// call the map stage, replay, restore and `check` make. Item rules map
/// the message again without the matched group (with `set` and `parse`).
pub fn govern(
    rules: &Rules,
    set: &crate::mapping::MappingSet,
    parse: &crate::hl7::ParseOptions,
    msg: &crate::hl7::Message<'_>,
    prov: &Arc<crate::record::Provenance>,
    mapped: &mut crate::record::Mapped,
) -> Report {
    let remap = |bytes: &[u8]| {
        let m = crate::hl7::Message::parse_with(bytes, parse).ok()?;
        set.apply(&m, prov).ok()
    };
    rules.govern(msg, mapped, &remap)
}
