//! `recordhub governance test [--rules DIR] FILE...`: runs only the
//! exclusion rules over sample messages, one JSON object per message with
//! the rules that hold and what they do. Nothing is mapped or stored.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::CliError;
use crate::govern::Rules;
use crate::hl7::Message;
use crate::mllp::split::split_messages;

/// Prints each message's rule hits; false when the rules do not load or a
/// message does not parse.
pub fn governance_test(rules_dir: &Path, files: &[PathBuf]) -> Result<bool, CliError> {
    let rules = match Rules::load_dir(rules_dir) {
        Ok(r) => r,
        Err(errors) => {
            writeln!(std::io::stderr().lock(), "{errors}")?;
            return Ok(false);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut ok = true;
    for path in files {
        let bytes = std::fs::read(path).map_err(|source| CliError::Read { path: path.clone(), source })?;
        for raw in split_messages(&bytes) {
            let json = match Message::parse(&raw) {
                Ok(msg) => {
                    let control_id = msg.header().field(10).text().into_owned();
                    let hits: Vec<_> = rules.hits(&msg).iter().map(|h| rules.describe(&msg, h)).collect();
                    json!({ "file": path.display().to_string(), "control_id": control_id, "hits": hits })
                }
                Err(e) => {
                    ok = false;
                    json!({ "file": path.display().to_string(), "error": format!("cannot parse: {e}") })
                }
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&json).unwrap_or_default())?;
        }
    }
    Ok(ok)
}

/// `recordhub check`'s governance part for one message: the rules that
/// hold and which items they exclude (kind and id); `None` when no rule holds.
pub(super) fn check_json(
    rules: &Rules,
    set: &crate::mapping::MappingSet,
    raw: &[u8],
    mapped: &crate::record::Mapped,
) -> Option<serde_json::Value> {
    let msg = Message::parse(raw).ok()?;
    let mut m = mapped.clone();
    let prov = crate::mapping::check::provenance(&msg, 0);
    let report = crate::govern::govern(rules, set, &Default::default(), &msg, &prov, &mut m);
    let excluded: Vec<_> = m
        .governed
        .excluded
        .iter()
        .filter_map(|(i, rule)| m.items.get(*i).map(|it| json!({ "rule": rule, "kind": it.kind, "id": it.id })))
        .collect();
    let scopes: Vec<_> = m.governed.sensitive_scopes.iter().map(|(s, r)| json!({ "scope": s, "rule": r })).collect();
    (!report.hits.is_empty()).then(|| json!({ "hits": report.hits, "excluded": excluded, "sensitive_scopes": scopes }))
}
