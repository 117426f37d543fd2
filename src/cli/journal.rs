//! `recordhub journal`: what was received, with verdict and reason; and
//! `journal --show`, one raw message, audited as a view of patient data.

use std::io::Write;
use std::path::Path;

use super::CliError;
use crate::audit::{AuditEvent, AuditLog};
use crate::journal::JournalReader;

/// Lists committed journal entries as JSON lines (verdict, whether an ACK was
/// sent, and why a message was rejected), with a `{"damage": ...}` line for
/// each damaged range skipped; or, with `verify`, scans everything and prints
/// only damage and a summary. Returns false when damage was found.
pub fn journal(data_dir: &Path, since: u64, verify: bool) -> Result<bool, CliError> {
    let reader = JournalReader::open(&crate::pipeline::journal_dir(data_dir))?;
    let mut out = std::io::stdout().lock();
    let mut entries = reader.iter_from(if verify { 0 } else { since });
    let (mut shown, mut count) = (0, 0u64);
    while let Some(entry) = entries.next() {
        let entry = entry?;
        count += 1;
        shown = print_damage(&mut out, entries.damage(), shown)?;
        if !verify {
            writeln!(out, "{}", entry_json(&entry))?;
        }
    }
    print_damage(&mut out, entries.damage(), shown)?;
    let damaged = entries.damage().len();
    if let Some(t) = entries.torn_tail() {
        let line = serde_json::json!({ "torn_tail": t, "note": "never acknowledged: a write in progress, or cut at the next start" });
        writeln!(std::io::stderr(), "{line}")?;
    }
    if verify {
        writeln!(
            out,
            "{}",
            serde_json::json!({ "verify": { "entries": count, "damaged_ranges": damaged, "ok": damaged == 0 } })
        )?;
    }
    if damaged > 0 {
        writeln!(
            std::io::stderr(),
            "recordhub: the journal has {damaged} damaged range(s) (the \"damage\" lines); entries inside them are lost unless the segment is restored from a backup or replica"
        )?;
    }
    Ok(damaged == 0)
}

/// Prints the damage found since `shown`; returns the new count shown.
fn print_damage(out: &mut impl Write, damage: &[crate::journal::Damage], shown: usize) -> Result<usize, CliError> {
    for d in damage.iter().skip(shown) {
        writeln!(out, "{}", serde_json::json!({ "damage": d }))?;
    }
    Ok(damage.len().max(shown))
}

/// One listing line: metadata and verdict, never message content (the
/// same line `journal search` and `GET /admin/messages` print).
fn entry_json(entry: &crate::journal::Entry) -> serde_json::Value {
    crate::journal::query::metadata(entry)
}

/// Why `journal --show` printed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error("no journal entry with sequence {0}")]
    NoEntry(u64),
    /// Every view of a raw message names its user.
    #[error("--show needs --user (or RECORDHUB_USER): who is looking is recorded in the audit log")]
    NoUser,
    /// Nothing is shown unaudited.
    #[error("the audit log under {0} could not be written, so the message is not shown")]
    Audit(String, #[source] std::io::Error),
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
}

/// Prints the raw message of entry `seq` (segments on separate lines),
/// after appending a `journal_show` event to the audit log: who, when, the
/// seq, and the NHS number the message names under the mappings in force
/// (when it names one). If the audit write fails nothing is printed.
///
/// # Errors
/// No such entry, no user, the audit log or the journal failed.
pub fn show(cfg: &crate::config::Config, seq: u64, user: &str) -> Result<(), ShowError> {
    let user = user.trim();
    if user.is_empty() {
        return Err(ShowError::NoUser);
    }
    let data_dir = &cfg.store.data_dir;
    let reader = JournalReader::open(&crate::pipeline::journal_dir(data_dir))?;
    let entry = reader.get(seq)?.ok_or(ShowError::NoEntry(seq))?;
    let event = AuditEvent {
        at_ms: crate::pipeline::now_ms(),
        user: user.to_string(),
        nhs_number: nhs_number_of(cfg, &entry),
        action: "journal_show".into(),
        items: vec![format!("journal/{seq}")],
        client: "local".into(),
        via: "cli".into(),
        outcome: "shown".into(),
        ..AuditEvent::default()
    };
    let audit_dir = crate::audit::dir(data_dir).display().to_string();
    AuditLog::open(data_dir).and_then(|log| log.append(&event)).map_err(|e| ShowError::Audit(audit_dir, e))?;
    let text: Vec<u8> = entry.raw.iter().map(|&b| if b == b'\r' { b'\n' } else { b }).collect();
    let mut out = std::io::stdout().lock();
    out.write_all(&text)?;
    if !text.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The NHS number a journaled message names, read with the mappings in
/// force; `None` when they cannot be loaded or the message names none.
fn nhs_number_of(cfg: &crate::config::Config, entry: &crate::journal::Entry) -> Option<String> {
    let mappings = crate::serve::load_mappings(cfg).ok()?;
    let policy = crate::serve::pipeline_options(cfg, mappings.clone()).policy;
    let replayer = crate::pipeline::Replayer { journal_dir: Default::default(), mappings, policy };
    replayer.nhs_number_of(&entry.raw, entry.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hole 5: `recordhub journal` shows the verdict, whether an ACK was sent
    /// and why a message was rejected, without the logs and without content.
    #[test]
    fn hole5_journal_listing_shows_verdict_ack_sent_and_reason() {
        let entry = crate::journal::Entry {
            seq: 7,
            format_version: 2,
            received_at_ms: 0,
            peer: "p".into(),
            sending_app: "PAS".into(),
            sending_facility: "RJ1".into(),
            control_id: "C7".into(),
            message_type: "ADT^A01".into(),
            ack_code: "AE".into(),
            ack_sent: false,
            reason: Some(crate::journal::OwnedReason {
                stage: "map".into(),
                error_code: 102,
                location: "PID-7".into(),
                text: "not a date".into(),
            }),
            ack: Vec::new(),
            raw: b"MSH|secret".to_vec(),
        };
        let line = entry_json(&entry).to_string();
        for want in [
            r#""ack_code":"AE""#,
            r#""accepted":false"#,
            r#""ack_sent":false"#,
            r#""stage":"map""#,
            r#""error_code":102"#,
            r#""location":"PID-7""#,
        ] {
            assert!(line.contains(want), "{want}: {line}");
        }
        assert!(!line.contains("secret"), "{line}");
    }

    /// Hole 1: `recordhub journal --verify` reads everything and fails on
    /// damage; the listing goes on past it.
    #[test]
    fn hole1_journal_verify_fails_on_a_damaged_byte() {
        use crate::journal::{EntryRef, Journal, JournalOptions, Reason};
        let data = tempfile::tempdir().unwrap();
        let dir = crate::pipeline::journal_dir(data.path());
        let (mut j, _) = Journal::open(&dir, JournalOptions::default()).unwrap();
        for i in 1..=3u64 {
            let raw = format!("MSH|^~\\&|{i}");
            let e = EntryRef {
                received_at_ms: 0,
                peer: "p",
                sending_app: "A",
                sending_facility: "F",
                control_id: "C",
                message_type: "ADT^A01",
                ack_code: "AA",
                ack_sent: true,
                reason: Reason::default(),
                ack: b"",
                raw: raw.as_bytes(),
            };
            j.append(&e).unwrap();
            j.commit().unwrap();
        }
        drop(j);
        assert!(journal(data.path(), 0, true).unwrap(), "a clean journal verifies");
        let seg = dir.join("00000000000000000001.seg");
        let mut bytes = std::fs::read(&seg).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        std::fs::write(&seg, &bytes).unwrap();
        assert!(!journal(data.path(), 0, true).unwrap(), "--verify fails on damage");
        assert!(!journal(data.path(), 0, false).unwrap(), "the listing reports it too");
    }
}
