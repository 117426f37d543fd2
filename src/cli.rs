//! The analyst-facing commands that are not the server: `send`, `journal`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::journal::JournalReader;
use crate::mllp::client::{summarize_ack, MllpClient};
use crate::mllp::split::split_messages;

/// Errors a user of the CLI sees.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] crate::mllp::client::ClientError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error("no journal entry with sequence {0}")]
    NoEntry(u64),
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
}

/// Sends every message of `files` on one connection, in lockstep; prints
/// `<control id> <ack code> <text>` per message. Returns false when any ACK
/// was not AA/CA or none came.
pub async fn send(to: &str, timeout: Duration, files: &[PathBuf]) -> Result<bool, CliError> {
    let mut messages = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).map_err(|source| CliError::Read {
            path: path.clone(),
            source,
        })?;
        messages.extend(split_messages(&bytes));
    }
    let mut client = MllpClient::connect(to, timeout).await?;
    let mut all_ok = true;
    let mut out = std::io::stdout().lock();
    for msg in &messages {
        let sent_id = control_id_of(msg);
        match client.call(msg, timeout).await {
            Ok(ack) => match summarize_ack(&ack) {
                Some(s) => {
                    all_ok &= s.code == "AA" || s.code == "CA";
                    writeln!(out, "{} {} {}", s.control_id, s.code, s.text)?;
                }
                None => {
                    all_ok = false;
                    writeln!(out, "{sent_id} ?? unreadable ACK")?;
                }
            },
            Err(e) => {
                writeln!(out, "{sent_id} -- {e}")?;
                return Ok(false);
            }
        }
    }
    Ok(all_ok)
}

/// MSH-10 of an outgoing message, for lines about messages with no ACK.
fn control_id_of(msg: &[u8]) -> String {
    crate::hl7::Message::parse(msg)
        .map(|m| String::from_utf8_lossy(m.header().field(10).raw()).into_owned())
        .unwrap_or_default()
}

/// Lists journal entries as JSON lines, or prints one raw message (segments
/// on separate lines) with `show`.
pub fn journal(data_dir: &Path, since: u64, show: Option<u64>) -> Result<(), CliError> {
    let reader = JournalReader::open(&crate::pipeline::journal_dir(data_dir))?;
    let mut out = std::io::stdout().lock();
    if let Some(seq) = show {
        let entry = reader.get(seq)?.ok_or(CliError::NoEntry(seq))?;
        let text: Vec<u8> = entry
            .raw
            .iter()
            .map(|&b| if b == b'\r' { b'\n' } else { b })
            .collect();
        out.write_all(&text)?;
        if !text.ends_with(b"\n") {
            out.write_all(b"\n")?;
        }
        return Ok(());
    }
    for entry in reader.iter_from(since) {
        let entry = entry?;
        let line = serde_json::json!({
            "seq": entry.seq,
            "received_at": crate::ack::hl7_timestamp(entry.received_at_ms),
            "received_at_ms": entry.received_at_ms,
            "peer": entry.peer,
            "sending_app": entry.sending_app,
            "sending_facility": entry.sending_facility,
            "control_id": entry.control_id,
            "message_type": entry.message_type,
            "ack_code": entry.ack_code,
            "bytes": entry.raw.len(),
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}
