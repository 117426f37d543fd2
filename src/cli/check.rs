//! `recordhub check`: the engine's verdict on files of messages, without a sender.
//!
//! Each message goes through a real [`Pipeline`] (intake, dedup, map, govern,
//! journal, ACK) over a scratch data directory that is deleted afterwards, so
//! the ACK code and ERR printed are the ones the engine would send: the
//! stages are called, not copied. Beside the verdict it prints what the
//! mappings make of the message (items, unused fields, exclusion rules) and
//! warns on NHS numbers that fail Modulus 11 or are placeholders or test
//! numbers. It cannot know the connection a message would come on, so a
//! listener's sender allow-list is not applied, and the scratch journal is
//! empty, so a retransmission of a message the real engine already holds is
//! checked as new.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};

use super::CliError;
use crate::config::Config;
use crate::hl7::{NhsError, NhsNumber};
use crate::mapping::check::CheckedMessage;
use crate::mapping::MappingSet;
use crate::mllp::client::summarize_ack;
use crate::pipeline::{now_ms, Inbound, Mappings, Outcome, Pipeline};

/// The peer recorded in the scratch journal.
const PEER: &str = "recordhub-check";

/// `recordhub check`: loads the mappings and exclusion rules of `cfg`
/// (every error as file:line:col) and prints, for each message of each file,
/// one JSON object: its control id, the `ack` the engine would send (code,
/// text unescaped, the MSA and ERR segments), the items it produces or its
/// error, the fields no rule read, and `nhs_warnings`. A file that cannot be
/// read is reported on stderr and skipped. Returns false when a file could
/// not be read or a message would not be accepted.
///
/// # Errors
/// The scratch engine could not be started, or stdout cannot be written.
pub fn check(cfg: &Config, files: &[PathBuf]) -> Result<bool, CliError> {
    let mut err = std::io::stderr().lock();
    let set = match MappingSet::load_dir(&cfg.mapping.dir) {
        Ok(set) => set,
        Err(errors) => {
            writeln!(err, "{errors}")?;
            return Ok(false);
        }
    };
    let rules = match crate::govern::Rules::load_dir(&cfg.mapping.dir.join(crate::govern::DIR)) {
        Ok(rules) => rules,
        Err(errors) => {
            writeln!(err, "{errors}")?;
            return Ok(false);
        }
    };
    let mappings = Mappings::with_rules(set, rules);
    let scratch = tempfile::Builder::new().prefix("recordhub-check-").tempdir().map_err(CliError::Scratch)?;
    let mut opts = crate::serve::pipeline_options(cfg, mappings.clone());
    opts.data_dir = scratch.path().to_path_buf();
    let (mut pipeline, _) =
        Pipeline::open(opts).map_err(|source| CliError::Engine { dir: scratch.path().to_path_buf(), source })?;
    let checked = check_files(&mut pipeline, &mappings, files);
    // Stops the index writer before the scratch directory goes.
    let _ = pipeline.shutdown();
    checked
}

fn check_files(pipeline: &mut Pipeline, mappings: &Mappings, files: &[PathBuf]) -> Result<bool, CliError> {
    let mut out = std::io::stdout().lock();
    let (set, rules) = mappings.both();
    let mut ok = true;
    for path in files {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(source) => {
                // Keep going: the other files are still worth checking.
                let e = CliError::Read { path: path.clone(), source };
                let _ = writeln!(std::io::stderr(), "recordhub: {}", super::chain(&e));
                ok = false;
                continue;
            }
        };
        let raws = crate::mllp::split::split_messages(&bytes);
        if raws.is_empty() {
            let _ = writeln!(std::io::stderr(), "recordhub: {} holds no HL7 message", path.display());
            ok = false;
        }
        for (checked, raw) in crate::mapping::check::check(&set, &bytes).into_iter().zip(&raws) {
            let outcome = pipeline.process(&[Inbound::message(raw, PEER, now_ms())]);
            let Some(outcome) = outcome.first() else { continue };
            ok &= checked.result.is_ok() && outcome.code.is_accept();
            let mut json = report(&checked, outcome, path);
            if let (false, Ok(mapped), Some(obj)) = (rules.is_empty(), checked.result.as_ref(), json.as_object_mut()) {
                if let Some(g) = super::governance::check_json(&rules, &set, raw, mapped) {
                    obj.insert("governance".into(), g);
                }
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&json).unwrap_or_default())?;
        }
    }
    Ok(ok)
}

/// One message's JSON: the mapping report, the file, the ACK, NHS warnings.
fn report(checked: &CheckedMessage, outcome: &Outcome, path: &Path) -> Json {
    let mut json = checked.to_json();
    let Some(obj) = json.as_object_mut() else { return json };
    obj.insert("file".into(), path.display().to_string().into());
    obj.insert("ack".into(), ack_json(outcome));
    let warnings = match &checked.result {
        Ok(m) => {
            nhs_warnings(&[("NHS number", &m.identity.nhs_number), ("prior NHS number", &m.identity.prior_nhs_number)])
        }
        Err(_) => Vec::new(),
    };
    if !warnings.is_empty() {
        obj.insert("nhs_warnings".into(), warnings.into());
    }
    json
}

/// What the sender would get: the code, and when an ACK is sent its
/// MSA-3/ERR text (escapes decoded) and its MSA and ERR segments as sent.
fn ack_json(o: &Outcome) -> Json {
    let mut ack = json!({ "code": o.code.as_str(), "sent": o.ack.is_some() });
    if o.duplicate {
        ack["duplicate"] = true.into();
    }
    match o.ack.as_deref() {
        Some(bytes) => {
            let text = summarize_ack(bytes).map(|s| s.text).unwrap_or_default();
            ack["text"] = text.into();
            let seg = |id: &[u8]| {
                bytes
                    .split(|&b| b == b'\r')
                    .find(|s| s.starts_with(id))
                    .map(|s| String::from_utf8_lossy(s).into_owned())
            };
            ack["msa"] = seg(b"MSA").into();
            if let Some(err) = seg(b"ERR") {
                ack["err"] = err.into();
            }
        }
        // MSH-15 asked for no ACK of this kind: say why it would be one anyway.
        None => {
            if let Some((_, p)) = &o.problem {
                ack["text"] = p.text.clone().into();
            }
        }
    }
    ack
}

/// Warnings for NHS numbers that the index would refuse or that are not a
/// real patient's: bad check digit, placeholder, the 999 test range.
pub(crate) fn nhs_warnings(numbers: &[(&str, &Option<String>)]) -> Vec<String> {
    let mut out = Vec::new();
    for (what, n) in numbers {
        let Some(n) = n else { continue };
        let problem = match NhsNumber::parse(n) {
            Ok(nhs) if nhs.is_test_number() => "is in the 999 test range: not a real patient".to_string(),
            Ok(_) => continue,
            Err(NhsError::Placeholder) => "is a placeholder (all digits the same), not a real NHS number".to_string(),
            Err(e @ (NhsError::BadCheckDigit | NhsError::NoCheckDigit)) => format!("fails Modulus 11: {e}"),
            Err(e) => format!("is not an NHS number: {e}"),
        };
        out.push(format!("{what} {n} {problem}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::nhs_warnings;

    #[test]
    fn placeholder_test_range_and_bad_check_digit_warn_a_real_number_does_not() {
        let w = |n: &str| nhs_warnings(&[("NHS number", &Some(n.to_string()))]);
        assert!(w("9434765919").is_empty());
        assert!(w("9999999999")[0].contains("placeholder"), "{:?}", w("9999999999"));
        assert!(w("9990000018")[0].contains("999 test range"));
        assert!(w("9434765918")[0].contains("Modulus 11"));
        assert!(w("12345")[0].contains("not an NHS number"));
        assert!(nhs_warnings(&[("NHS number", &None)]).is_empty());
    }
}
