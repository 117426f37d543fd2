//! The cluster's one audit log: each node forwards the lines of its own
//! audit chain (`<data>/audit/audit-*.jsonl`) to the audit stream, subject
//! `<audit_subject_prefix>.<node>`, and `recordhub cluster audit` lists the
//! stream: every node's events in stream order, each line as its node's
//! chain holds it (so each can be checked against that chain by its hash).
//!
//! The forwarder never stands in the read path: a read is audited by the
//! local chain write (`audit/writer.rs`) as on a single node; forwarding
//! follows behind, polling the files. Exactly once: each line is published
//! with `Nats-Msg-Id = <node>:audit:<chain seq>` (a retry inside the
//! stream's duplicate window is dropped), its position is written to
//! `<data>/audit/published` only after the PubAck, and at start-up the
//! forwarder also asks the stream for the last line it holds from this node
//! (so a position file lost or behind, after any outage, re-sends nothing).
//! Lines only: bytes after the last newline are a line still being written.

use std::io::{BufRead, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, ClusterError, HDR_NODE};

/// Header: the line's `seq` in its node's chain.
pub const HDR_AUDIT_SEQ: &str = "Recordhub-Audit-Seq";
/// Header: the line's `hash` in its node's chain.
pub const HDR_AUDIT_HASH: &str = "Recordhub-Audit-Hash";

/// How often the chain files are looked at for new lines.
const POLL: Duration = Duration::from_millis(500);
/// Lines sent before their acks are awaited.
const BURST: usize = 256;

/// How far this node's chain has been published (`<data>/audit/published`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// The chain `seq` of the last line the stream acknowledged.
    pub seq: u64,
    /// The chain file holding the next line, and the byte offset in it.
    pub file: u64,
    pub offset: u64,
}

fn position_path(audit_dir: &Path) -> PathBuf {
    audit_dir.join("published")
}

/// The saved position (the default when there is none or it is unreadable:
/// the stream's own last line then says where to go on).
pub fn load_position(audit_dir: &Path) -> Position {
    std::fs::read(position_path(audit_dir)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Writes the position durably (temporary file, fsync, rename).
fn save_position(audit_dir: &Path, pos: &Position) -> std::io::Result<()> {
    let tmp = audit_dir.join("published.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(pos).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, position_path(audit_dir))
}

/// One complete line of a chain file and where the next one starts.
struct Line {
    bytes: Vec<u8>,
    seq: u64,
    hash: String,
    file: u64,
    next_offset: u64,
}

/// The complete lines after `pos` (at most `max`), across files.
fn read_lines(audit_dir: &Path, pos: &Position, max: usize) -> std::io::Result<Vec<Line>> {
    let mut out = Vec::new();
    let mut last_seq = pos.seq;
    for (no, path) in crate::audit::chain_files(audit_dir)? {
        if no < pos.file {
            continue;
        }
        let mut offset = if no == pos.file { pos.offset } else { 0 };
        let mut f = std::fs::File::open(&path)?;
        if f.metadata()?.len() < offset {
            // Not the file the position was taken in: read it whole.
            offset = 0;
        }
        f.seek(SeekFrom::Start(offset))?;
        let mut r = std::io::BufReader::new(f);
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            let n = r.read_until(b'\n', &mut bytes)?;
            if n == 0 || bytes.last() != Some(&b'\n') {
                break; // the end, or a line still being written
            }
            offset += n as u64;
            bytes.pop();
            let (seq, hash) = match crate::audit::check_line(&bytes) {
                Ok(l) => (l.seq, l.hash),
                // Forwarded as it is; the listing shows it is not sound.
                Err(_) => (last_seq + 1, crate::audit::line_digest(&bytes)),
            };
            if seq <= last_seq {
                continue;
            }
            last_seq = seq;
            out.push(Line { bytes: bytes.clone(), seq, hash, file: no, next_offset: offset });
            if out.len() >= max {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

/// Forwards this node's audit chain (under `data_dir`) to the audit stream
/// until `stop` is cancelled. Never fails: NATS or file errors are logged
/// (WARN, once per outage) and retried.
pub fn forwarder(cluster: Cluster, data_dir: &Path, stop: CancellationToken) -> JoinHandle<()> {
    let dir = crate::audit::dir(data_dir);
    tokio::spawn(async move {
        let mut pos: Option<Position> = None;
        let mut failing = false;
        loop {
            let round = async {
                let p = match pos {
                    Some(p) => p,
                    None => start_position(&cluster, &dir).await?,
                };
                pos = Some(p);
                forward(&cluster, &dir, &mut pos).await
            };
            match round.await {
                Ok(n) => {
                    if failing {
                        tracing::info!("audit lines are reaching the cluster's audit stream again");
                        failing = false;
                    }
                    if n >= BURST && !stop.is_cancelled() {
                        continue; // more waiting: no pause
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "audit lines not forwarded to the cluster yet (kept locally; retrying)");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    })
}

/// The saved position, moved on to the stream's last line from this node.
async fn start_position(cluster: &Cluster, dir: &Path) -> Result<Position, ClusterError> {
    let mut pos = load_position(dir);
    let subject = format!("{}.{}", cluster.names.audit_subject_prefix, cluster.cfg.node);
    let stream = cluster.js.get_stream(cluster.names.audit_stream.as_str()).await.map_err(nats)?;
    let in_stream = match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(m) => m.headers.get(HDR_AUDIT_SEQ).and_then(|v| v.as_str().parse::<u64>().ok()).unwrap_or(0),
        Err(e) if e.kind() == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound => 0,
        Err(e) => return Err(nats(e)),
    };
    if in_stream > pos.seq {
        // The stream has lines the position file does not know of: find
        // the line after them by reading from the start.
        pos = Position { seq: in_stream, file: 0, offset: 0 };
    }
    Ok(pos)
}

fn nats(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Nats(e.to_string())
}

/// Publishes the lines after `pos` (up to [`BURST`]); moves and saves the
/// position after their acks. Returns how many were published.
async fn forward(cluster: &Cluster, dir: &Path, pos: &mut Option<Position>) -> Result<usize, ClusterError> {
    let Some(p) = *pos else { return Ok(0) };
    let read_dir = dir.to_path_buf();
    let lines = tokio::task::spawn_blocking(move || read_lines(&read_dir, &p, BURST))
        .await
        .map_err(nats)?
        .map_err(|e| ClusterError::Journal(format!("reading the audit log: {e}")))?;
    let Some(last) = lines.last() else { return Ok(0) };
    let node = &cluster.cfg.node;
    let subject = format!("{}.{}", cluster.names.audit_subject_prefix, node);
    let mut acks = Vec::with_capacity(lines.len());
    for line in &lines {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("{node}:audit:{}", line.seq).as_str());
        h.insert(HDR_NODE, node.as_str());
        h.insert(HDR_AUDIT_SEQ, line.seq.to_string().as_str());
        h.insert(HDR_AUDIT_HASH, line.hash.as_str());
        let sent = cluster.js.publish_with_headers(subject.clone(), h, line.bytes.clone().into());
        acks.push(tokio::time::timeout(cluster.cfg.publish_timeout, sent).await.map_err(nats)?.map_err(nats)?);
    }
    for ack in acks {
        tokio::time::timeout(cluster.cfg.publish_timeout, ack).await.map_err(nats)?.map_err(nats)?;
    }
    let moved = Position { seq: last.seq, file: last.file, offset: last.next_offset };
    *pos = Some(moved);
    let save_dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || save_position(&save_dir, &moved))
        .await
        .map_err(nats)?
        .map_err(|e| ClusterError::Journal(format!("saving the audit position: {e}")))?;
    Ok(lines.len())
}

/// One line of the cluster's audit stream, as `recordhub cluster audit` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClusterAuditLine {
    /// Its place in the cluster's audit log.
    pub stream_seq: u64,
    /// The node whose chain holds it.
    pub node: String,
    /// Its `seq` and `hash` in that chain (`recordhub audit verify` there).
    pub chain_seq: u64,
    pub chain_hash: String,
    /// `ok`: its bytes hash to its own hash and it follows the node's line
    /// before it in the stream; `changed`, `malformed`; `gap`: lines of that
    /// node are missing before it.
    pub check: String,
    /// The event (the line as the node's chain holds it).
    pub event: serde_json::Value,
}

/// Every line of the cluster's audit stream, in stream order, each checked.
///
/// # Errors
/// The stream cannot be read.
pub async fn lines(cluster: &Cluster) -> Result<Vec<ClusterAuditLine>, ClusterError> {
    let mut stream = cluster.js.get_stream(cluster.names.audit_stream.as_str()).await.map_err(nats)?;
    let state = stream.info().await.map_err(nats)?.state.clone();
    let mut out = Vec::new();
    let mut last: std::collections::HashMap<String, (u64, String)> = Default::default();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        let m = match stream.get_raw_message(seq).await {
            Ok(m) => m,
            Err(e) if e.kind() == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound => continue,
            Err(e) => return Err(nats(e)),
        };
        let node = m.headers.get(HDR_NODE).map(|v| v.as_str().to_string()).unwrap_or_default();
        let (chain_seq, chain_hash, check) = match crate::audit::check_line(&m.payload) {
            Ok(l) => {
                let follows = last.get(&node).is_none_or(|(s, h)| l.seq == s + 1 && l.prev == *h);
                let check = if follows { "ok" } else { "gap" };
                last.insert(node.clone(), (l.seq, l.hash.clone()));
                (l.seq, l.hash, check.to_string())
            }
            Err(why) => {
                let seq = m.headers.get(HDR_AUDIT_SEQ).and_then(|v| v.as_str().parse().ok()).unwrap_or(0);
                let kind = if why.starts_with("changed") { "changed" } else { "malformed" };
                (seq, crate::audit::line_digest(&m.payload), kind.to_string())
            }
        };
        let event = serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::Null);
        out.push(ClusterAuditLine { stream_seq: m.sequence, node, chain_seq, chain_hash, check, event });
    }
    Ok(out)
}

/// The lines as aligned columns, a header first.
pub fn table(lines: &[ClusterAuditLine]) -> String {
    let mut rows =
        vec![["STREAM", "NODE", "CHAIN SEQ", "CHECK", "TIME (UTC)", "USER", "ACTION", "OUTCOME", "CHAIN HASH"]
            .map(String::from)
            .to_vec()];
    for l in lines {
        let field = |k: &str| l.event.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let mut time = crate::audit::fhir::instant(l.event.get("at_ms").and_then(|v| v.as_u64()).unwrap_or(0));
        time.truncate(19);
        rows.push(vec![
            l.stream_seq.to_string(),
            l.node.clone(),
            l.chain_seq.to_string(),
            l.check.clone(),
            time.replace('T', " "),
            field("user"),
            field("action"),
            field("outcome"),
            l.chain_hash.clone(),
        ]);
    }
    crate::cluster::status::columns(&rows)
}
