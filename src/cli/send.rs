//! `recordhub send`: an MLLP client for files of messages.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::CliError;
use crate::mllp::client::{summarize_ack, AckSummary, ClientError, MllpClient};
use crate::mllp::expect::AckExpected;
use crate::mllp::split::split_messages;

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
    send_with(to, None, timeout, files).await
}

/// [`send`], over TLS when `tls` is given (`--tls-ca` and friends).
///
/// A file that cannot be read or holds no message is reported and skipped;
/// the result is then false.
///
/// # Errors
/// The connection or the TLS handshake fails.
pub async fn send_with(
    to: &str,
    tls: Option<&crate::mllp::tls::ClientTls>,
    timeout: Duration,
    files: &[PathBuf],
) -> Result<bool, CliError> {
    let (messages, files_ok) = read_messages(files);
    if messages.is_empty() {
        return Ok(false);
    }
    let connector = match tls {
        Some(t) => Some(t.connector(to).map_err(ClientError::from)?),
        None => None,
    };
    let mut client = MllpClient::connect_with(to, timeout, connector.as_ref()).await?;
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
    Ok(run.all_ok && files_ok)
}

/// The messages of every file, in order. A file that cannot be read or
/// holds no message is reported on stderr and skipped (the others are still
/// sent); the flag is false when any was.
fn read_messages(files: &[PathBuf]) -> (Vec<Vec<u8>>, bool) {
    let mut messages = Vec::new();
    let mut ok = true;
    let mut err = std::io::stderr().lock();
    for path in files {
        match std::fs::read(path) {
            Ok(bytes) => {
                let found = split_messages(&bytes);
                if found.is_empty() {
                    let _ = writeln!(err, "recordhub: {} holds no HL7 message (empty file?); skipped", path.display());
                    ok = false;
                }
                messages.extend(found);
            }
            Err(source) => {
                let e = CliError::Read { path: path.clone(), source };
                let _ = writeln!(err, "recordhub: {}; skipped", super::chain(&e));
                ok = false;
            }
        }
    }
    (messages, ok)
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
