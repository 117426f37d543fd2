//! Mapping: the third stage of the pipeline (`… → parse → **map** → record → store`).
//!
//! Analysts describe, in TOML files under `mappings/`, which fields of which messages
//! become which parts of the canonical [`crate::record`]. At start-up every file is
//! read ([`spec`]), compiled into a plan ([`compile`]: paths become indices, tables
//! become maps, every problem is reported as `file:line:col`), and a [`MappingSet`]
//! holds the plans. [`MappingSet::apply`] selects a plan by MSH-9 and the sender
//! (MSH-3/MSH-4) and runs it ([`apply`]) over the zero-copy message; [`scope`] decides
//! which segment each path reads (an item's own group, then the message-level
//! segments, never a sibling group) in time linear in the message.
//!
//! Besides its fields, each item gets a [`crate::record::Version`] (`version.rs`):
//! its clinical time and status rank, and whether it updates, hides or undoes
//! (the `time`, `rank`, `hide`, `undo`, `supersedes`, `groups`, `append` and `drop`
//! keys); the store folds versions into the current record. An event a file
//! `ignore`s maps to an empty, ignored [`Mapped`]: accepted, never filed.
//!
//! Mapping does not need the journal seq: map with seq 0 and call
//! [`crate::record::Mapped::assign_seq`] once the seq is known, so a large message
//! can be mapped off the pipeline thread.
//!
//! Deliberately not here: NHS number validation, merging items into a record,
//! storage, reload scheduling (the caller swaps an `Arc<MappingSet>`).

pub mod apply;
pub mod check;
pub mod compile;
mod compile_field;
mod compile_version;
pub mod convert;
mod identity;
pub mod path;
pub mod plan;
mod read;
pub mod scope;
pub mod spec;
mod version;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use compile::Compiler;
use plan::{FilePlan, Plan, Table};

use crate::ack::Problem;
use crate::hl7::Message;
use crate::record::{Identity, Mapped, Provenance};

/// Every compiled mapping file. Immutable: reload builds a new set and swaps it.
#[derive(Debug, Default)]
pub struct MappingSet {
    files: Vec<FilePlan>,
}

/// Why a mapping file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadErrorKind {
    /// The file or directory cannot be read.
    #[error("cannot read: {0}")]
    Io(String),
    /// Not valid TOML, an unknown key, or a value of the wrong TOML type.
    #[error("{0}")]
    Toml(String),
    /// A field path or segment name that does not parse.
    #[error("{0}")]
    Path(String),
    /// `table = "…"` names no file in `tables/`.
    #[error("unknown table '{name}' (tables: {known})")]
    UnknownTable { name: String, known: String },
    /// Anything else the file says that cannot work; the text says what to do.
    #[error("{0}")]
    Invalid(String),
}

/// One problem in one mapping file, at a line and column (both from 1).
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{col}: {kind}", file.display())]
pub struct LoadError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub kind: LoadErrorKind,
}

/// All problems of all files, one per line.
#[derive(Debug)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

/// Why a message could not be mapped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MapError {
    /// No mapping file handles this MSH-9 (ACK AR, table 0357 code 201).
    #[error("no mapping for message type {message_type}")]
    NoMapping { message_type: String },
    /// The content does not fit the mapping: 101/102/103 with its location (ACK AE).
    #[error("{} {}", .0.code, .0.text)]
    Content(Problem),
}

impl MappingSet {
    /// A set that maps nothing.
    pub fn empty() -> MappingSet {
        MappingSet::default()
    }

    /// Loads every `*.toml` directly in `dir`, with code tables from `dir/tables/*.toml`.
    ///
    /// # Errors
    /// Every problem of every file at once, each with `file:line:col`.
    pub fn load_dir(dir: &FsPath) -> Result<MappingSet, LoadErrors> {
        let mut errors = Vec::new();
        let files = toml_files(dir, &mut errors);
        MappingSet::load_files(&files, &dir.join("tables"), errors)
    }

    /// Loads the given mapping files, with code tables from `tables_dir/*.toml`;
    /// `errors` are problems found before (they are reported with the rest).
    ///
    /// # Errors
    /// Every problem of every file at once, each with `file:line:col`.
    pub fn load_files(
        paths: &[PathBuf],
        tables_dir: &FsPath,
        mut errors: Vec<LoadError>,
    ) -> Result<MappingSet, LoadErrors> {
        let tables = load_tables(tables_dir, &mut errors);
        let mut files = Vec::new();
        for file in paths {
            let Some(src) = read(file, &mut errors) else { continue };
            let mut c = Compiler { file, src: &src, tables: &tables, errors: Vec::new() };
            match toml::from_str::<spec::FileSpec>(&src) {
                Ok(spec) => files.push(c.file(&spec)),
                Err(e) => c.error(e.span().map_or(0, |s| s.start), LoadErrorKind::Toml(e.message().trim().to_string())),
            }
            errors.extend(c.errors);
        }
        check_overlaps(&files, &mut errors);
        errors.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        // A file's default plan and each sender plan compile the same text: report once.
        errors.dedup_by(|a, b| a.to_string() == b.to_string());
        if errors.is_empty() {
            Ok(MappingSet { files })
        } else {
            Err(LoadErrors(errors))
        }
    }

    /// How many mapping files the set holds.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// True if some file maps or knowingly ignores `message_code^event` (MSH-9.1, MSH-9.2).
    pub fn handles(&self, message_code: &str, event: &str) -> bool {
        self.file_for(message_code, event).is_some()
    }

    /// Maps a message with the plan for its MSH-9 and sender.
    ///
    /// # Errors
    /// [`MapError::NoMapping`] if no file takes the message type; [`MapError::Content`]
    /// for a missing required value (101), a bad date or number (102), or a value not
    /// in a strict code table (103).
    pub fn apply(&self, msg: &Message<'_>, prov: &Arc<Provenance>) -> Result<Mapped, MapError> {
        self.apply_traced(msg, prov, None)
    }

    /// [`Self::apply`], recording `(segment index, field)` of every read in `reads`.
    pub(crate) fn apply_traced(
        &self,
        msg: &Message<'_>,
        prov: &Arc<Provenance>,
        reads: Option<&mut Vec<(usize, usize)>>,
    ) -> Result<Mapped, MapError> {
        let plan = self.select(msg).ok_or_else(|| {
            let msh9 = msg.header().field(9);
            let (code, event) = (msh9.component(1).text(), msh9.component(2).text());
            MapError::NoMapping { message_type: format!("{code}^{event}") }
        })?;
        let msh9 = msg.header().field(9);
        if plan.ignores(msh9.component(1).raw(), msh9.component(2).raw()) {
            // Accepted and journaled, never filed: no identity, no items.
            let identity = Identity::default();
            return Ok(Mapped {
                identity,
                items: Vec::new(),
                warnings: Vec::new(),
                seq_refs: Vec::new(),
                ignored: true,
                governed: Default::default(),
            });
        }
        let mut run = apply::Run::new(msg, prov, reads);
        run.plan(plan).map_err(MapError::Content)
    }

    fn select(&self, msg: &Message<'_>) -> Option<&Plan> {
        let msh = msg.header();
        let msh9 = msh.field(9);
        let file = self.file_for(&msh9.component(1).text(), &msh9.component(2).text())?;
        let (app, facility) = (msh.field(3).component(1).text(), msh.field(4).component(1).text());
        let matches = |want: &Option<String>, got: &str| want.as_deref().is_none_or(|w| w == got);
        let sender = file.senders.iter().find(|s| matches(&s.app, &app) && matches(&s.facility, &facility));
        Some(sender.map_or(&file.base, |s| &s.plan))
    }

    /// The file naming this exact event, else one with `CODE^*`.
    fn file_for(&self, code: &str, event: &str) -> Option<&FilePlan> {
        let exact = |f: &&FilePlan| f.selectors.iter().any(|s| s.code == code && s.event.as_deref() == Some(event));
        let wild = |f: &&FilePlan| f.selectors.iter().any(|s| s.code == code && s.event.is_none());
        self.files.iter().find(exact).or_else(|| self.files.iter().find(wild))
    }
}

/// Two files claiming the same MSH-9 would make the choice depend on file names.
fn check_overlaps(files: &[FilePlan], errors: &mut Vec<LoadError>) {
    for (i, f) in files.iter().enumerate() {
        for s in &f.selectors {
            if let Some(other) = files[..i].iter().find(|o| o.selectors.contains(s)) {
                let event = s.event.as_deref().unwrap_or("*");
                errors.push(LoadError {
                    file: f.file.clone(),
                    line: 1,
                    col: 1,
                    kind: LoadErrorKind::Invalid(format!(
                        "{}^{event} is also mapped by {}: remove it from one of the two files",
                        s.code,
                        other.file.display()
                    )),
                });
            }
        }
    }
}

fn toml_files(dir: &FsPath, errors: &mut Vec<LoadError>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(LoadError { file: dir.to_path_buf(), line: 0, col: 0, kind: LoadErrorKind::Io(e.to_string()) });
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        // The access file (roles and what each sees) lives beside the mappings.
        .filter(|p| p.file_name().is_none_or(|n| n != crate::access::FILE))
        .collect();
    files.sort();
    files
}

fn read(file: &FsPath, errors: &mut Vec<LoadError>) -> Option<String> {
    std::fs::read_to_string(file)
        .map_err(|e| {
            errors.push(LoadError { file: file.to_path_buf(), line: 0, col: 0, kind: LoadErrorKind::Io(e.to_string()) })
        })
        .ok()
}

/// Tables are optional: a missing `tables/` directory is an empty set.
fn load_tables(dir: &FsPath, errors: &mut Vec<LoadError>) -> BTreeMap<String, Arc<Table>> {
    let mut tables = BTreeMap::new();
    if !dir.is_dir() {
        return tables;
    }
    for file in toml_files(dir, errors) {
        let Some(src) = read(&file, errors) else { continue };
        let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        match toml::from_str::<spec::TableSpec>(&src) {
            Ok(t) => {
                let values = t.values.into_iter().collect();
                tables.insert(name.clone(), Arc::new(Table { name, values, default: t.default }));
            }
            Err(e) => {
                let (line, col) = compile::line_col(&src, e.span().map_or(0, |s| s.start));
                let kind = LoadErrorKind::Toml(e.message().trim().to_string());
                errors.push(LoadError { file, line, col, kind });
            }
        }
    }
    tables
}
