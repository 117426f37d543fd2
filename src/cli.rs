//! The analyst-facing commands that are not the server: `send`, `journal`.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::journal::JournalReader;
use crate::mllp::client::{summarize_ack, AckSummary, ClientError, MllpClient};
use crate::mllp::expect::AckExpected;
use crate::mllp::split::split_messages;

/// Errors a user of the CLI sees.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Client(#[from] crate::mllp::client::ClientError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error("no journal entry with sequence {0}")]
    NoEntry(u64),
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
}

/// How long `send` waits at the end for ACKs that may still come: an `ER`
/// message's rejection, or an `SU` message's late acceptance.
const LATE_ACK_WAIT: Duration = Duration::from_secs(1);

/// Sends every message of `files` on one connection, in lockstep; prints
/// `<control id> <ack code> <text>` per ACK. Returns false when any ACK was
/// not AA/CA, or an ACK that was owed did not come.
///
/// A message's MSH-15 says whether an ACK comes at all ([`AckExpected`]):
/// - `NE`: none is awaited; prints `<id> -- no ACK requested (MSH-15 = NE)`;
/// - `ER`: an ACK comes only on rejection, so none is awaited; prints
///   `<id> -- no ACK unless rejected (MSH-15 = ER)`, and the rejection's
///   line if one comes (read before the next ACK, or at the end);
/// - `SU`: an ACK comes only on acceptance, so it is awaited; none within
///   `timeout` means not accepted (a failure), and sending goes on.
///
/// ACKs come back in order, so an ACK whose MSA-2 is an earlier `NE`/`ER`/
/// `SU` message's control id is that message's, reported as such.
pub async fn send(to: &str, timeout: Duration, files: &[PathBuf]) -> Result<bool, CliError> {
    let mut messages = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).map_err(|source| CliError::Read { path: path.clone(), source })?;
        messages.extend(split_messages(&bytes));
    }
    let mut client = MllpClient::connect(to, timeout).await?;
    let mut run = SendRun { out: std::io::stdout().lock(), all_ok: true, unanswered: VecDeque::new(), late: false };
    for msg in &messages {
        let sent_id = control_id_of(msg);
        let expected = AckExpected::of(msg);
        if let Err(e) = client.send(msg).await {
            writeln!(run.out, "{sent_id} -- {e}")?;
            return Ok(false);
        }
        match expected {
            AckExpected::Never => {
                writeln!(run.out, "{sent_id} -- no ACK requested (MSH-15 = NE)")?;
                run.unanswered.push_back(sent_id);
            }
            AckExpected::OnlyOnError => {
                writeln!(run.out, "{sent_id} -- no ACK unless rejected (MSH-15 = ER)")?;
                run.unanswered.push_back(sent_id);
                run.late = true;
            }
            AckExpected::Always | AckExpected::OnlyOnSuccess => match run.ack_for(&mut client, &sent_id, timeout).await
            {
                Ok(()) => {}
                Err(ClientError::Timeout { .. }) if expected == AckExpected::OnlyOnSuccess => {
                    writeln!(
                        run.out,
                        "{sent_id} -- no ACK within {timeout:?}: with MSH-15 = SU that means not accepted"
                    )?;
                    run.all_ok = false;
                    run.unanswered.push_back(sent_id);
                    run.late = true;
                }
                Err(e) => {
                    writeln!(run.out, "{sent_id} -- {e}")?;
                    return Ok(false);
                }
            },
        }
    }
    if run.late {
        run.late_acks(&mut client, LATE_ACK_WAIT.min(timeout)).await?;
    }
    Ok(run.all_ok)
}

/// The state of one `send` run.
struct SendRun<W: Write> {
    out: W,
    all_ok: bool,
    /// Control ids sent, in order, that got no ACK (yet): NE, ER, timed-out SU.
    unanswered: VecDeque<String>,
    /// Some of `unanswered` may still be answered (ER or SU).
    late: bool,
}

impl<W: Write> SendRun<W> {
    /// Reads ACKs up to the one for `sent_id`, printing each.
    async fn ack_for(&mut self, client: &mut MllpClient, sent_id: &str, timeout: Duration) -> Result<(), ClientError> {
        loop {
            let ack = client.recv_ack(timeout).await?;
            let Some(s) = summarize_ack(&ack) else {
                self.all_ok = false;
                self.unanswered.clear();
                self.late = false;
                let _ = writeln!(self.out, "{sent_id} ?? unreadable ACK");
                return Ok(());
            };
            let earlier = s.control_id != sent_id && self.take_unanswered(&s.control_id);
            self.print(&s);
            if !earlier {
                // In order: nothing sent before this message is answered now.
                self.unanswered.clear();
                self.late = false;
                return Ok(());
            }
        }
    }

    /// At the end: ACKs for ER or SU messages that may still come.
    async fn late_acks(&mut self, client: &mut MllpClient, wait: Duration) -> std::io::Result<()> {
        while !self.unanswered.is_empty() {
            let Ok(ack) = client.recv_ack(wait).await else { break };
            match summarize_ack(&ack) {
                Some(s) if self.take_unanswered(&s.control_id) => self.print(&s),
                _ => {
                    self.all_ok = false;
                    writeln!(self.out, "-- unexpected reply after the last message")?;
                }
            }
        }
        Ok(())
    }

    /// Removes `control_id` and everything sent before it from `unanswered`.
    fn take_unanswered(&mut self, control_id: &str) -> bool {
        match self.unanswered.iter().position(|id| id == control_id) {
            Some(pos) => {
                self.unanswered.drain(..=pos);
                true
            }
            None => false,
        }
    }

    fn print(&mut self, s: &AckSummary) {
        self.all_ok &= s.code == "AA" || s.code == "CA";
        let _ = writeln!(self.out, "{} {} {}", s.control_id, s.code, s.text);
    }
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
        let text: Vec<u8> = entry.raw.iter().map(|&b| if b == b'\r' { b'\n' } else { b }).collect();
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

/// How `recordhub record` reaches the record.
pub enum RecordSource {
    /// A running server's read API, e.g. `http://127.0.0.1:8080`.
    Server(String),
    /// The data directory itself, when no server holds it.
    Local(Box<crate::config::Config>),
}

/// Prints a patient's record as JSON. Returns false when the patient is
/// unknown. Every read is audited, whichever way it goes.
pub fn record(nhs: &str, user: &str, source: RecordSource) -> Result<bool, RecordError> {
    let nhs = crate::hl7::nhs::NhsNumber::parse(nhs).map_err(|_| RecordError::BadNhs(nhs.to_string()))?;
    let body = match source {
        RecordSource::Local(cfg) => {
            let mappings = crate::serve::load_mappings(&cfg).map_err(|e| RecordError::Open(e.to_string()))?;
            // Opening the pipeline replays anything the index missed (after
            // a crash), so a local read is as complete as the journal.
            let (mut p, _) = crate::pipeline::Pipeline::open(crate::serve::pipeline_options(&cfg, mappings))
                .map_err(|e| RecordError::Open(format!("{e}: {}", source_chain(&e))))?;
            let body = crate::http::read_audited(p.store(), &nhs, user, "cli")
                .map_err(|e| RecordError::Open(e.to_string()))?;
            p.shutdown().map_err(|e| RecordError::Open(e.to_string()))?;
            body
        }
        RecordSource::Server(base) => {
            let url = format!("{}/patients/{}", base.trim_end_matches('/'), nhs.as_str());
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let mut resp = agent
                .get(&url)
                .header("X-User", user)
                .call()
                .map_err(|e| RecordError::Http(url.clone(), e.to_string()))?;
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().map_err(|e| RecordError::Http(url.clone(), e.to_string()))?;
            match status {
                200 => Some(serde_json::from_str(&text).map_err(|e| RecordError::Http(url.clone(), e.to_string()))?),
                404 => None,
                _ => return Err(RecordError::Http(url, format!("status {status}: {text}"))),
            }
        }
    };
    match body {
        Some(b) => {
            let pretty = serde_json::to_string_pretty(&b).unwrap_or_default();
            let _ = writeln!(std::io::stdout(), "{pretty}");
            Ok(true)
        }
        None => Ok(false),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

/// Errors from `recordhub record`.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("'{0}' is not a valid NHS number (10 digits passing the Modulus 11 check)")]
    BadNhs(String),
    #[error("cannot read the store ({0}); if a server is running, use --server instead of --data")]
    Open(String),
    #[error("request to {0} failed: {1}")]
    Http(String, String),
}

/// `recordhub reindex`: rebuilds the index from the journal with the current
/// mappings. Returns how many journal entries were read.
pub fn reindex(cfg: &crate::config::Config) -> Result<u64, RecordError> {
    let mappings = crate::serve::load_mappings(cfg).map_err(|e| RecordError::Open(e.to_string()))?;
    let (mut p, _) = crate::pipeline::Pipeline::open(crate::serve::pipeline_options(cfg, mappings))
        .map_err(|e| RecordError::Open(format!("{e}: {}", source_chain(&e))))?;
    let n = p.reindex().map_err(|e| RecordError::Open(format!("{e}: {}", source_chain(&e))))?;
    Ok(n)
}

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
    let mut ok = true;
    for path in files {
        let bytes = std::fs::read(path).map_err(|source| CliError::Read { path: path.clone(), source })?;
        for checked in crate::mapping::check::check(&set, &bytes) {
            ok &= checked.result.is_ok();
            let mut json = checked.to_json();
            if let Some(obj) = json.as_object_mut() {
                obj.insert("file".into(), path.display().to_string().into());
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&json).unwrap_or_default())?;
        }
    }
    Ok(ok)
}
