//! The active node publishes its committed journal entries to the stream, in
//! journal order, and tells the pipeline thread how far the stream has them
//! (`ack_after = "replicated"` releases AAs only up to there).
//!
//! One tokio task reads committed entries from the journal directory
//! (`JournalReader`, which shows committed entries only) and publishes each
//! with `Nats-Msg-Id = <node>:<seq>` and `Nats-Expected-Last-Sequence =
//! seq - 1`, up to [`MAX_IN_FLIGHT`] at once, settling their acks in order.
//! A seq the journal skipped (burned by a failed commit) is published as an
//! empty [`HDR_GAP`] filler so the stream sequence stays the journal seq.
//!
//! What it does not keep: entries are not held in memory for a retry. After
//! any failure it backs off and reads the journal again from the first seq
//! the stream has not acknowledged; a re-publish of an entry that did land
//! is answered `duplicate` by the stream, which counts as success.
//!
//! Fencing: each publish also carries `Nats-Expected-Last-Msg-Id` (the id
//! of `seq - 1`): with many publishes in flight, an expected sequence alone
//! would let this node's `seq + 1` land right after another node's `seq`.
//! A "wrong last sequence" (or "wrong last message id") answer means the
//! stream's last entry is not ours at `seq - 1`. If the entry at `seq` carries our id, it landed
//! and only its ack was lost; otherwise another node has appended: the
//! `fenced` token is cancelled, the node stands down, and nothing more is
//! published.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::HeaderMap;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{msg_id, Cluster, ClusterError, ClusterState, Part};
use super::{HDR_FORMAT, HDR_GAP, HDR_NODE, HDR_PARTITION, HDR_SEQ};
use crate::journal::{wire, JournalReader};

/// Most publishes awaiting their ack at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// Entries read from the journal per pass (a pass rescans its segment).
const CHUNK_ENTRIES: usize = 4096;
const CHUNK_BYTES: usize = 8 << 20;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[path = "publish_handle.rs"]
mod handle;
pub use handle::{NotReplicated, Replication};
use handle::{Progress, Shared};

/// Starts publishing the journal in `journal_dir` from the stream's last
/// sequence + 1 (the stream sequence is the journal seq). `committed` is the
/// journal's committed seq now. When the stream refuses an append because
/// another node has appended (`Nats-Expected-Last-Sequence`), `fenced` is
/// cancelled and publishing stops.
///
/// # Errors
/// The stream's state cannot be read, or it already holds entries this
/// journal does not (the caller must follow first).
pub async fn spawn(
    cluster: Cluster,
    journal_dir: PathBuf,
    committed: u64,
    state: ClusterState,
    fenced: CancellationToken,
) -> Result<Replication, ClusterError> {
    let mut stream = cluster.js.get_stream(cluster.names.stream.as_str()).await.map_err(|e| {
        ClusterError::Nats(format!("cannot read stream {}: {e}; is the NATS cluster up?", cluster.names.stream))
    })?;
    let last = stream
        .info()
        .await
        .map_err(|e| ClusterError::Nats(format!("cannot read stream {}: {e}", cluster.names.stream)))?
        .state
        .last_sequence;
    if last > committed {
        return Err(ClusterError::Diverged {
            seq: committed + 1,
            why: format!(
                "the stream holds entries up to {last}, this journal only up to {committed}; follow the stream first"
            ),
        });
    }
    // The id the stream's last entry carries: what our first publish expects.
    let last_id = match last {
        0 => None,
        _ => stream
            .get_raw_message(last)
            .await
            .map_err(|e| {
                ClusterError::Nats(format!("cannot read entry {last} of stream {}: {e}", cluster.names.stream))
            })?
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_string()),
    };
    JournalReader::open(&journal_dir).map_err(|e| ClusterError::Journal(e.to_string()))?;
    state.set_committed(committed);
    state.set_published(last);
    state.set_nats_connected(true);
    let shared = Arc::new(Shared {
        progress: Mutex::new(Progress { published: last, ..Progress::default() }),
        changed: Condvar::new(),
        wake: Notify::new(),
        ack_after: cluster.cfg.ack_after,
        publish_timeout: cluster.cfg.publish_timeout,
        state,
    });
    tracing::info!(node = %cluster.cfg.node, stream_last = last, committed, "publishing the journal to the stream");
    let publisher = Publisher {
        cluster,
        stream,
        journal_dir,
        shared: shared.clone(),
        fenced,
        start: (last, last_id),
        resume: Arc::new(std::sync::Mutex::new(None)),
    };
    tokio::spawn(publisher.run());
    Ok(Replication { shared })
}

/// The publisher task.
struct Publisher {
    cluster: Cluster,
    stream: async_nats::jetstream::stream::Stream,
    journal_dir: PathBuf,
    shared: Arc<Shared>,
    fenced: CancellationToken,
    /// The stream's last seq at start and its `Nats-Msg-Id` (maybe another
    /// node's): later seqs were published by this node, with its ids.
    start: (u64, Option<String>),
    /// Where the last read of the journal stopped: the next read starts
    /// there instead of scanning the last segment from its start (which
    /// costs a whole 64 MiB segment per batch under `replicated`).
    resume: Arc<std::sync::Mutex<Option<crate::journal::Resume>>>,
}

/// Why a pass ended early.
enum Stop {
    /// Another node appended at `seq`.
    Fenced { seq: u64, by: String },
    /// Retry after a back-off: the oldest failing publish was sent at `since`.
    Failed { since: Instant, why: String },
}

/// One message to publish: an entry's body, or a filler for a burned seq.
struct Item {
    seq: u64,
    body: Bytes,
    /// `None` for a gap filler.
    partition: Option<String>,
}

impl Publisher {
    async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            if self.fenced.is_cancelled() {
                self.shared.stop("this node was fenced: another node holds the lease".into());
                return;
            }
            let published = self.shared.lock().published;
            if self.shared.state.committed() > published {
                match self.pass(published).await {
                    Ok(progressed) => {
                        backoff = MIN_BACKOFF;
                        if progressed {
                            continue;
                        }
                    }
                    Err(Stop::Fenced { seq, by }) => return self.stand_down(seq, &by),
                    Err(Stop::Failed { since, why }) => {
                        // WARN once per outage; the retries at DEBUG.
                        if self.shared.lock().down.is_none() {
                            tracing::warn!(node = %self.cluster.cfg.node, from = published + 1, error = %why,
                                "cannot publish to the stream; retrying (entries stay in the local journal, AAs wait)");
                        } else {
                            tracing::debug!(from = published + 1, error = %why, "publish retry failed");
                        }
                        let connected =
                            matches!(self.cluster.client.connection_state(), async_nats::connection::State::Connected);
                        self.shared.state.set_nats_connected(connected);
                        self.shared.set_down(since, why);
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = self.fenced.cancelled() => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            tokio::select! {
                () = self.shared.wake.notified() => {}
                () = self.fenced.cancelled() => {}
            }
        }
    }

    fn stand_down(&self, seq: u64, by: &str) {
        tracing::error!(seq, node = %self.cluster.cfg.node, by = %by,
            "fenced: another node has appended to the stream; this node stands down and publishes nothing more");
        self.shared.state.set_part(Part::StoodDown);
        self.shared.stop(format!("fenced: node {by} appended to the stream at seq {seq}"));
        self.fenced.cancel();
    }

    /// Publishes what the journal has after `published`; `Ok(true)` when
    /// something new was acknowledged.
    async fn pass(&self, published: u64) -> Result<bool, Stop> {
        let mut in_flight: VecDeque<(u64, Instant, PublishAckFuture)> = VecDeque::new();
        let mut next = published + 1;
        let mut progressed = false;
        loop {
            let chunk = self.read_chunk(next).await?;
            let full = chunk.len() >= CHUNK_ENTRIES;
            for item in chunk {
                // Seqs the journal skipped (a failed commit) get fillers.
                if item.seq > next {
                    tracing::info!(
                        from = next,
                        to = item.seq - 1,
                        "journal seqs burned by a failed commit: publishing gap fillers"
                    );
                }
                let fillers = (next..item.seq).map(|seq| Item { seq, body: Bytes::new(), partition: None });
                for it in fillers.chain(std::iter::once(item)) {
                    if in_flight.len() >= MAX_IN_FLIGHT {
                        if let Some((seq, sent, fut)) = in_flight.pop_front() {
                            progressed |= self.settle(seq, sent, fut).await?;
                        }
                    }
                    next = it.seq + 1;
                    let sent = Instant::now();
                    let fut = self.send(it).await.map_err(|why| Stop::Failed { since: sent, why })?;
                    in_flight.push_back((next - 1, sent, fut));
                }
            }
            if !full {
                break;
            }
        }
        while let Some((seq, sent, fut)) = in_flight.pop_front() {
            progressed |= self.settle(seq, sent, fut).await?;
        }
        Ok(progressed)
    }

    /// Committed entries from `from` on, at most a chunk, read off the runtime.
    async fn read_chunk(&self, from: u64) -> Result<Vec<Item>, Stop> {
        let dir = self.journal_dir.clone();
        let resume = self.resume.clone();
        let read = tokio::task::spawn_blocking(move || -> Result<Vec<Item>, String> {
            let reader = JournalReader::open(&dir).map_err(|e| e.to_string())?;
            let mut items = Vec::new();
            let mut bytes = 0;
            // A poisoned lock only loses the hint: the read falls back to a scan.
            let mut hint = resume.lock().unwrap_or_else(|e| e.into_inner());
            let mut entries = reader.iter_resuming(from, *hint);
            for entry in entries.by_ref() {
                let entry = entry.map_err(|e| e.to_string())?;
                let body = wire::encode(&entry).map_err(|e| e.to_string())?;
                bytes += body.len();
                let partition = header_safe(&format!("{}^{}", entry.sending_app, entry.sending_facility));
                items.push(Item { seq: entry.seq, body: body.into(), partition: Some(partition) });
                if items.len() >= CHUNK_ENTRIES || bytes >= CHUNK_BYTES {
                    break;
                }
            }
            *hint = entries.resume_point().or(*hint);
            Ok(items)
        });
        let failed = |why: String| Stop::Failed { since: Instant::now(), why: format!("reading the journal: {why}") };
        read.await.map_err(|e| failed(e.to_string()))?.map_err(failed)
    }

    async fn send(&self, item: Item) -> Result<PublishAckFuture, String> {
        let node = &self.cluster.cfg.node;
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", msg_id(node, item.seq).as_str());
        h.insert("Nats-Expected-Last-Sequence", (item.seq - 1).to_string().as_str());
        let prev = match item.seq - 1 {
            0 => None,
            p if p == self.start.0 => self.start.1.clone(),
            p => Some(msg_id(node, p)),
        };
        if let Some(prev) = prev {
            h.insert("Nats-Expected-Last-Msg-Id", prev.as_str());
        }
        h.insert(HDR_SEQ, item.seq.to_string().as_str());
        h.insert(HDR_NODE, node.as_str());
        match &item.partition {
            Some(partition) => {
                h.insert(HDR_FORMAT, wire::FORMAT_VERSION.to_string().as_str());
                h.insert(HDR_PARTITION, partition.as_str());
            }
            None => h.insert(HDR_GAP, "1"),
        }
        let subject = self.cluster.names.journal_subject.clone();
        self.cluster.js.publish_with_headers(subject, h, item.body).await.map_err(|e| e.to_string())
    }

    /// Awaits one publish's ack; `Ok(true)` when the stream has `seq`.
    async fn settle(&self, seq: u64, sent: Instant, fut: PublishAckFuture) -> Result<bool, Stop> {
        match fut.await {
            Ok(_ack) => {
                // A duplicate (a retry of an entry that had landed) is the same success.
                self.shared.set_published(seq);
                Ok(true)
            }
            Err(e)
                if matches!(e.kind(), PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId) =>
            {
                self.whose(seq, sent).await
            }
            Err(e) => Err(Stop::Failed { since: sent, why: e.to_string() }),
        }
    }

    /// The stream refused `seq` (its last entry is not our `seq - 1`): did ours
    /// land already (only the ack was lost), or did another node append?
    async fn whose(&self, seq: u64, sent: Instant) -> Result<bool, Stop> {
        let msg = match self.stream.get_raw_message(seq).await {
            Ok(m) => m,
            Err(e) => {
                let why = format!(
                    "the stream refused seq {seq} (its last entry is not {}) and has no entry {seq}: {e}",
                    seq - 1
                );
                return Err(Stop::Failed { since: sent, why });
            }
        };
        let ours = msg_id(&self.cluster.cfg.node, seq);
        if msg.headers.get("Nats-Msg-Id").map(|v| v.as_str()) == Some(ours.as_str()) {
            self.shared.set_published(seq);
            return Ok(true);
        }
        let by = msg.headers.get(HDR_NODE).map_or_else(|| "unknown".to_string(), |v| v.as_str().to_string());
        Err(Stop::Fenced { seq, by })
    }
}

/// A header value cannot hold CR or LF (nor should it hold other controls).
fn header_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
#[path = "publish_tests.rs"]
mod tests;
