//! `recordhub check`: the mapping dry run.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::CliError;

/// `recordhub check`: loads the mappings (every error as file:line:col) and
/// prints, for each message of each file, one JSON object: its control id,
/// the items it produces or its error, and the fields no rule read. Returns
/// false on any error.
pub fn check(mapping_dir: &Path, files: &[PathBuf]) -> Result<bool, CliError> {
    let mut out = std::io::stdout().lock();
    let set = match crate::mapping::MappingSet::load_dir(mapping_dir) {
        Ok(set) => set,
        Err(errors) => {
            let mut err = std::io::stderr().lock();
            writeln!(err, "{errors}")?;
            return Ok(false);
        }
    };
    // The exclusion rules beside the mappings: which rule excludes what.
    let rules = match crate::govern::Rules::load_dir(&mapping_dir.join(crate::govern::DIR)) {
        Ok(rules) => rules,
        Err(errors) => {
            writeln!(std::io::stderr().lock(), "{errors}")?;
            return Ok(false);
        }
    };
    let mut ok = true;
    for path in files {
        let bytes = std::fs::read(path).map_err(|source| CliError::Read { path: path.clone(), source })?;
        let raws = crate::mllp::split::split_messages(&bytes);
        for (checked, raw) in crate::mapping::check::check(&set, &bytes).into_iter().zip(&raws) {
            ok &= checked.result.is_ok();
            let mut json = checked.to_json();
            if let Some(obj) = json.as_object_mut() {
                obj.insert("file".into(), path.display().to_string().into());
                if let (false, Ok(mapped)) = (rules.is_empty(), checked.result.as_ref()) {
                    if let Some(g) = super::governance::check_json(&rules, &set, raw, mapped) {
                        obj.insert("governance".into(), g);
                    }
                }
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&json).unwrap_or_default())?;
        }
    }
    Ok(ok)
}
