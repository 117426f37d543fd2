//! Role-based views: which roles may read, which record categories (item
//! kinds) each role sees, and which roles may use the admin and audit APIs.
//!
//! Declared in the access file (`mappings/access.toml`, or `[auth]
//! access_file`), loaded at start-up and again on `POST /admin/reload`. A
//! role the file does not list sees nothing. A broken file names
//! `file:line:col` and what is wrong; on reload the old rules stay in force.
//!
//! Deliberately not here: who the user is (the token, `auth`), and writing
//! the audit (`read`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use toml::Spanned;

use crate::record::Kind;

/// The access file's name inside the mapping directory (which the mapping
/// loader skips).
pub const FILE: &str = "access.toml";

/// The roles and what each sees. Cheap to share; [`Access::reload`] swaps
/// the rules in place for every holder.
#[derive(Debug)]
pub struct Access {
    rules: RwLock<Arc<Rules>>,
}

#[derive(Debug, Default)]
struct Rules {
    roles: BTreeMap<String, Role>,
    everything: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Role {
    /// One bit per [`Kind`], in `Kind::ALL` order.
    kinds: u16,
    reads: bool,
    admin: bool,
    audit: bool,
}

/// What one role sees of a record.
#[derive(Debug, Clone, Copy)]
pub struct RoleView<'a> {
    kinds: u16,
    _access: std::marker::PhantomData<&'a Access>,
}

/// Why the access file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The file cannot be read.
    #[error("{}: cannot read the access file (set [auth] access_file, or ship mappings/access.toml)", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// What is wrong, at `file:line:col`; every problem, one per line.
    #[error("{}", problems.join("\n"))]
    Invalid { problems: Vec<String> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    roles: BTreeMap<Spanned<String>, RoleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleSpec {
    /// Item kinds this role sees in a record, or `["*"]` for all.
    #[serde(default)]
    categories: Vec<Spanned<String>>,
    /// May use `/admin/*`.
    #[serde(default)]
    admin: bool,
    /// May use the audit API.
    #[serde(default)]
    audit: bool,
}

fn bit(kind: Kind) -> u16 {
    let i = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    1 << i
}

impl Access {
    /// Every role sees every category and may use every API (tests, and
    /// the CLI's local reads by an operator with disk access).
    pub fn allow_all() -> Access {
        Access { rules: RwLock::new(Arc::new(Rules { everything: true, ..Rules::default() })) }
    }

    /// Loads the access file.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML, or names an unknown category:
    /// every problem with `file:line:col`.
    pub fn load(file: &Path) -> Result<Access, AccessError> {
        Ok(Access { rules: RwLock::new(Arc::new(parse(file)?)) })
    }

    /// Parses `text` as if read from `file` (tests and `check`).
    ///
    /// # Errors
    /// As [`Access::load`].
    pub fn from_str(file: &Path, text: &str) -> Result<Access, AccessError> {
        Ok(Access { rules: RwLock::new(Arc::new(parse_text(file, text)?)) })
    }

    /// Loads `file` again; on error the rules in force stay. Returns the
    /// number of roles.
    ///
    /// # Errors
    /// As [`Access::load`].
    pub fn reload(&self, file: &Path) -> Result<usize, AccessError> {
        Ok(self.replace(Access::load(file)?))
    }

    /// Puts `other`'s rules in force for every holder of `self`; returns
    /// the number of roles.
    pub fn replace(&self, other: Access) -> usize {
        let rules = other.current();
        let n = rules.roles.len();
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = rules;
        n
    }

    fn current(&self) -> Arc<Rules> {
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn role(&self, role: &str) -> Option<Role> {
        let rules = self.current();
        if rules.everything {
            return Some(Role { kinds: u16::MAX, reads: true, admin: true, audit: true });
        }
        rules.roles.get(role).copied()
    }

    /// What `role` sees, or `None` when the role may not read records.
    pub fn view(&self, role: &str) -> Option<RoleView<'_>> {
        let r = self.role(role).filter(|r| r.reads)?;
        Some(RoleView { kinds: r.kinds, _access: std::marker::PhantomData })
    }

    /// Whether `role` may use the admin API.
    pub fn is_admin(&self, role: &str) -> bool {
        self.role(role).is_some_and(|r| r.admin)
    }

    /// Whether `role` may read the audit log over the API.
    pub fn may_audit(&self, role: &str) -> bool {
        self.role(role).is_some_and(|r| r.audit)
    }

    /// The roles listed in the file (empty for [`Access::allow_all`]).
    pub fn roles(&self) -> Vec<String> {
        self.current().roles.keys().cloned().collect()
    }
}

impl RoleView<'_> {
    /// Whether the role sees items of this kind.
    pub fn shows(&self, kind: Kind) -> bool {
        self.kinds & bit(kind) != 0
    }
}

fn parse(file: &Path) -> Result<Rules, AccessError> {
    let text = std::fs::read_to_string(file).map_err(|source| AccessError::Io { file: file.to_path_buf(), source })?;
    parse_text(file, &text)
}

fn parse_text(file: &Path, text: &str) -> Result<Rules, AccessError> {
    let at = |offset: usize| {
        let (line, col) = crate::mapping::compile::line_col(text, offset);
        format!("{}:{line}:{col}", file.display())
    };
    let spec: FileSpec = toml::from_str(text).map_err(|e| AccessError::Invalid {
        problems: vec![format!("{}: {}", at(e.span().map_or(0, |s| s.start)), e.message().trim())],
    })?;
    let mut problems = Vec::new();
    let mut roles = BTreeMap::new();
    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    for (name, spec) in spec.roles {
        let mut role = Role { kinds: 0, reads: !spec.categories.is_empty(), admin: spec.admin, audit: spec.audit };
        for c in &spec.categories {
            match c.get_ref().as_str() {
                "*" => role.kinds = u16::MAX,
                other => match Kind::ALL.iter().find(|k| k.as_str() == other) {
                    Some(k) => role.kinds |= bit(*k),
                    None => problems.push(format!(
                        "{}: role '{}': unknown category '{other}'; expected \"*\" or some of {}",
                        at(c.span().start),
                        name.get_ref(),
                        names.join(", ")
                    )),
                },
            }
        }
        roles.insert(name.into_inner(), role);
    }
    if problems.is_empty() {
        Ok(Rules { roles, everything: false })
    } else {
        Err(AccessError::Invalid { problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Access {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings").join(FILE);
        Access::load(&file).expect("the shipped access file loads")
    }

    fn kinds(access: &Access, role: &str) -> Vec<&'static str> {
        let Some(view) = access.view(role) else { return Vec::new() };
        Kind::ALL.iter().filter(|k| view.shows(**k)).map(|k| k.as_str()).collect()
    }

    #[test]
    fn the_shipped_file_gives_social_care_no_clinical_detail() {
        let a = shipped();
        assert_eq!(kinds(&a, "clinician").len(), Kind::ALL.len());
        assert_eq!(
            kinds(&a, "social_care"),
            ["patient", "identifier", "gp_registration", "contact", "encounter", "document"]
        );
        assert!(a.view("admin").is_none() && a.is_admin("admin") && !a.is_admin("clinician"));
        assert!(a.may_audit("ig_officer") && !a.may_audit("nurse"));
    }

    #[test]
    fn a_role_not_listed_sees_nothing_and_administers_nothing() {
        let a = shipped();
        assert!(a.view("porter").is_none());
        assert!(!a.is_admin("porter") && !a.may_audit("porter"));
    }

    #[test]
    fn an_unknown_category_names_file_line_and_column() {
        let text = "[roles.nurse]\ncategories = [\"patient\", \"results\"]\n";
        let err = Access::from_str(Path::new("access.toml"), text).unwrap_err().to_string();
        assert!(err.starts_with("access.toml:2:26: role 'nurse': unknown category 'results'"), "{err}");
    }

    #[test]
    fn a_misspelt_key_names_its_line() {
        let err = Access::from_str(Path::new("a.toml"), "[roles.x]\nadmn = true\n").unwrap_err().to_string();
        assert!(err.starts_with("a.toml:2:1: unknown field `admn`"), "{err}");
    }

    #[test]
    fn a_failed_reload_keeps_the_rules_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE);
        std::fs::write(&file, "[roles.nurse]\ncategories = [\"*\"]\n").unwrap();
        let a = Access::load(&file).unwrap();
        std::fs::write(&file, "[roles.nurse]\ncategories = [\"bogus\"]\n").unwrap();
        assert!(a.reload(&file).is_err());
        assert!(a.view("nurse").is_some());
        std::fs::write(&file, "[roles.other]\ncategories = [\"patient\"]\n").unwrap();
        assert_eq!(a.reload(&file).unwrap(), 1);
        assert!(a.view("nurse").is_none());
    }
}
