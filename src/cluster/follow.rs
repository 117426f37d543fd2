//! Following the stream: every node that does not hold the lease appends the
//! stream's entries to its own journal (same seqs) and files them into its
//! own index through the same code as replay, so it can serve reads and, on
//! takeover, continue the journal where the stream ends.
//!
//! ```text
//! durable pull consumer follow-<node> ─▶ task: decode, check order ─▶ pipeline thread: Pipeline::follow
//!   (from local position + 1)              (tokio)                    (append_at, one fdatasync, index)
//!                                          ◀── ack the batch's last message (AckPolicy::All)
//! ```
//!
//! The local journal is the truth about where this node is: at start the
//! consumer is deleted and made again from the journal's position + 1, and an
//! entry at or below that position (a redelivery) is skipped. Before that,
//! the local journal must be a prefix of the stream ([`ClusterError::Diverged`]
//! otherwise: never silently mixed). A NATS outage is retried with backoff
//! (one WARN per outage) while the node keeps serving reads; a stream message
//! that is not a journal entry stops following with an ERROR (never skipped).
//!
//! What it deliberately does not do: judge entries again (the verdicts and
//! ACKs are the active node's), take the lease, or publish.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::Message;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::health::{Health, Part as HealthPart};
use crate::journal::Entry;
use crate::pipeline::{error_chain, FollowError, Pipeline};

use super::{Cluster, ClusterError, ClusterState};
use stream::{decode_batch, hole_at, stream_last, Decoded, OutOfOrder};

/// Entries handed to the pipeline thread at most at once (one fdatasync).
const MAX_BATCH: usize = 512;
/// Backoff between attempts while NATS is unreachable or a commit fails.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A running follower: a durable consumer feeding the pipeline thread.
pub struct Following {
    cluster: Cluster,
    state: ClusterState,
    shared: Arc<Shared>,
    position: watch::Receiver<u64>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    thread: std::thread::JoinHandle<Pipeline>,
    /// Dropped without `stop`: the task ends and the thread with it (the
    /// pipeline is then dropped, its journal durable as always).
    _stop_on_drop: DropGuard,
}

/// What the task and the handle share.
#[derive(Default)]
struct Shared {
    /// Why following stopped by itself (a bad message, a refused entry).
    failure: Mutex<Option<String>>,
}

impl Following {
    /// Entries the stream holds that this node has not yet applied.
    pub fn lag(&self) -> u64 {
        self.state.stream_last().saturating_sub(self.position())
    }

    /// The last journal seq this node holds.
    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    /// Why following stopped by itself, if it did (it then needs an operator).
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until the local journal holds everything the stream held when
    /// called; returns that last sequence. Following goes on. Waits through
    /// a NATS outage as long as it lasts: a caller with a deadline wraps it
    /// in `tokio::time::timeout` (the follower stays usable).
    ///
    /// # Errors
    /// The stream's end cannot be read, or following stopped by itself.
    pub async fn catch_up(&self) -> Result<u64, ClusterError> {
        let last = stream_last(&self.cluster).await?;
        self.state.set_stream_last(last);
        let mut position = self.position.clone();
        loop {
            if *position.borrow_and_update() >= last {
                return Ok(last);
            }
            if let Some(why) = self.failure() {
                return Err(ClusterError::Journal(why));
            }
            // The failure check needs a wake-up even when no batch lands.
            let _ = tokio::time::timeout(Duration::from_millis(200), position.changed()).await;
        }
    }

    /// Applies everything the stream holds now, stops, and gives the
    /// pipeline back (a standby taking over: its next `process` journals at
    /// the stream's last sequence + 1).
    ///
    /// # Errors
    /// The stream could not be read to its end, or the journal refused an
    /// entry. The follower is then stopped and its pipeline shut down; a
    /// caller that wants to keep following calls [`Following::catch_up`]
    /// and then [`Following::stop`].
    pub async fn catch_up_and_stop(self) -> Result<Pipeline, ClusterError> {
        match self.catch_up().await {
            Ok(_) => self.stop().await,
            Err(e) => {
                if let Ok(mut p) = self.stop().await {
                    let _ = p.shutdown();
                }
                Err(e)
            }
        }
    }

    /// Stops at once (shutdown) and gives the pipeline back. A batch being
    /// applied is finished first.
    ///
    /// # Errors
    /// The follower thread panicked.
    pub async fn stop(self) -> Result<Pipeline, ClusterError> {
        self.cancel.cancel();
        // The task holds the only sender to the thread: once it has ended,
        // the thread's queue closes and it returns the pipeline.
        let _ = self.task.await;
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|_| ClusterError::Stopped)?
            .map_err(|_| ClusterError::Journal("the follower thread panicked; restart recordhub".into()))
    }
}

/// Starts following: a durable consumer named after the node, from the
/// local journal's committed seq + 1. Checks first that the local journal is
/// a prefix of the stream ([`ClusterError::Diverged`] otherwise).
///
/// # Errors
/// The consumer cannot be created, or the local journal diverges.
pub async fn spawn(
    cluster: Cluster,
    pipeline: Pipeline,
    health: Health,
    state: ClusterState,
) -> Result<Following, ClusterError> {
    check_prefix(&cluster, &pipeline).await?;
    let from = pipeline.position();
    let last = stream_last(&cluster).await?;
    state.set_stream_last(last);
    state.set_followed(from);
    state.set_nats_connected(true);
    // Made once here so that a consumer that cannot be created is a start-up error.
    let consumer = consumer_from(&cluster, from + 1).await?;
    let (position_tx, position) = watch::channel(from);
    let (jobs, rx) = mpsc::sync_channel::<Job>(1);
    let thread = std::thread::Builder::new()
        .name("follower".into())
        .spawn(move || apply_jobs(pipeline, &rx))
        .map_err(|e| ClusterError::Journal(format!("cannot start the follower thread: {e}")))?;
    let shared = Arc::new(Shared::default());
    let cancel = CancellationToken::new();
    let ctx = Ctx {
        cluster: cluster.clone(),
        state: state.clone(),
        health,
        shared: shared.clone(),
        cancel: cancel.clone(),
        jobs,
        position: position_tx,
    };
    tracing::info!(node = %cluster.cfg.node, from_seq = from + 1, stream_last = last, "following the journal stream");
    let task = tokio::spawn(ctx.run(consumer));
    let _stop_on_drop = cancel.clone().drop_guard();
    Ok(Following { cluster, state, shared, position, cancel, task, thread, _stop_on_drop })
}

/// One batch for the pipeline thread: entries to append, then seqs to pass
/// (a gap filler at the batch's end).
struct Job {
    entries: Vec<Entry>,
    through: u64,
    reply: oneshot::Sender<(Vec<Entry>, Result<u64, FollowError>)>,
}

/// The pipeline thread: fsyncs block, so they stay off the runtime.
fn apply_jobs(mut pipeline: Pipeline, rx: &mpsc::Receiver<Job>) -> Pipeline {
    while let Ok(job) = rx.recv() {
        let mut result = pipeline.follow(&job.entries);
        if result.is_ok() && job.through > pipeline.position() {
            pipeline.skip_through(job.through);
            result = Ok(pipeline.position());
        }
        let _ = job.reply.send((job.entries, result));
    }
    pipeline
}

struct Ctx {
    cluster: Cluster,
    state: ClusterState,
    health: Health,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    jobs: mpsc::SyncSender<Job>,
    position: watch::Sender<u64>,
}

/// How a consumer's run ended.
enum Ended {
    Cancelled,
    /// NATS trouble or out-of-order delivery: make the consumer again.
    Retry(String),
    /// Needs an operator.
    Fatal(String),
}

impl Ctx {
    async fn run(self, first: PullConsumer) {
        let mut consumer = Some(first);
        let mut backoff = BACKOFF_MIN;
        let mut outage = false;
        loop {
            let c = match consumer.take() {
                Some(c) => Ok(c),
                None => consumer_from(&self.cluster, self.held() + 1).await,
            };
            let ended = match c {
                Ok(c) => self.follow_with(c, &mut outage).await,
                Err(e @ ClusterError::Diverged { .. }) => Ended::Fatal(e.to_string()),
                Err(e) => Ended::Retry(e.to_string()),
            };
            match ended {
                Ended::Cancelled => return,
                Ended::Fatal(why) => return self.fail(&why),
                Ended::Retry(why) => {
                    self.state.set_nats_connected(self.connected());
                    if !outage {
                        // A new outage (batches were applied since the last one).
                        outage = true;
                        backoff = BACKOFF_MIN;
                        tracing::warn!(error = %why, "following the stream paused; retrying (reads are still served)");
                    }
                    if self.pause(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Follows with one consumer until cancelled or it fails.
    async fn follow_with(&self, consumer: PullConsumer, outage: &mut bool) -> Ended {
        let stream = consumer
            .stream()
            .max_messages_per_batch(MAX_BATCH)
            .heartbeat(Duration::from_secs(1))
            .expires(Duration::from_secs(5))
            .messages()
            .await;
        let mut messages = match stream {
            Ok(m) => m,
            Err(e) => return Ended::Retry(e.to_string()),
        };
        loop {
            let first = tokio::select! {
                _ = self.cancel.cancelled() => return Ended::Cancelled,
                m = messages.next() => m,
                // Idle: keep the reported connection state true to the client's.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    self.state.set_nats_connected(self.connected());
                    continue;
                }
            };
            let mut batch = match first {
                Some(Ok(m)) => vec![m],
                Some(Err(e)) => return Ended::Retry(e.to_string()),
                None => return Ended::Retry("the consumer's message stream ended".into()),
            };
            // What has already arrived joins the batch: one fdatasync for all.
            while batch.len() < MAX_BATCH {
                match messages.next().now_or_never() {
                    Some(Some(Ok(m))) => batch.push(m),
                    _ => break,
                }
            }
            if *outage {
                *outage = false;
                tracing::info!(position = self.held(), "following the stream again");
            }
            self.state.set_nats_connected(true);
            if let Some(ended) = self.apply(&batch).await {
                return ended;
            }
        }
    }

    /// Applies one delivered batch and acknowledges it. `Some` ends the consumer.
    async fn apply(&self, batch: &[Message]) -> Option<Ended> {
        let held = self.held();
        let decoded = match decode_batch(batch, held) {
            Ok(d) => d,
            Err(OutOfOrder(why)) => {
                return Some(match hole_at(&self.cluster, held + 1).await {
                    Some(hole) => Ended::Fatal(hole),
                    None => Ended::Retry(why),
                })
            }
        };
        let Decoded { mut entries, through, stream_last, bad } = decoded;
        if through > held {
            let mut backoff = BACKOFF_MIN;
            loop {
                let (reply, answer) = oneshot::channel();
                if self.jobs.send(Job { entries, through, reply }).is_err() {
                    return Some(Ended::Fatal("the follower thread ended".into()));
                }
                let Ok((back, result)) = answer.await else {
                    return Some(Ended::Fatal("the follower thread ended".into()));
                };
                match result {
                    Ok(position) => {
                        let _ = self.position.send(position);
                        self.state.set_followed(position);
                        break;
                    }
                    // The journal said why (a full disk) in health; nothing of it is durable.
                    Err(FollowError::Commit { .. }) => {
                        entries = back;
                        if self.pause(backoff).await {
                            return Some(Ended::Cancelled);
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                    Err(e) => return Some(Ended::Fatal(error_chain(&e))),
                }
            }
        }
        self.state.set_stream_last(stream_last);
        if let Some(why) = bad {
            return Some(Ended::Fatal(why));
        }
        // AckPolicy::All: the last message acknowledges the whole batch.
        if let Some(last) = batch.last() {
            if let Err(e) = last.ack().await {
                return Some(Ended::Retry(format!("ack: {e}")));
            }
        }
        None
    }

    fn fail(&self, why: &str) {
        tracing::error!(error = %why, position = self.held(),
            "following the journal stream stopped; this node's copy of the journal is no longer updated");
        self.health.fail(HealthPart::Pipeline, &format!("following the journal stream stopped: {why}"));
        *self.shared.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_string());
    }

    /// The last seq the local journal holds.
    fn held(&self) -> u64 {
        *self.position.borrow()
    }

    fn connected(&self) -> bool {
        self.cluster.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Sleeps `d`; true when cancelled meanwhile.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }
}

/// The durable consumer `follow-<node>`, made again to start at `start`
/// (the local journal, not the consumer, knows where this node is).
async fn consumer_from(cluster: &Cluster, start: u64) -> Result<PullConsumer, ClusterError> {
    let name = format!("follow-{}", cluster.cfg.node);
    let nats = |e: &dyn std::fmt::Display| ClusterError::Nats(format!("consumer {name}: {e}"));
    let mut stream = cluster.js.get_stream(&cluster.names.stream).await.map_err(|e| nats(&e))?;
    let first = stream.info().await.map_err(|e| nats(&e))?.state.first_sequence;
    if first > start {
        let why = format!(
            "the stream no longer holds seqs {start} to {} that this node lacks (removed by stream limits or a \
             purge); copy the data directory of a node that holds them, then start again",
            first - 1
        );
        return Err(ClusterError::Diverged { seq: start, why });
    }
    // Absent at a node's first start: nothing to delete then.
    let _ = stream.delete_consumer(&name).await;
    let config = pull::Config {
        durable_name: Some(name.clone()),
        deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
        ack_policy: AckPolicy::All,
        max_ack_pending: (MAX_BATCH * 8) as i64,
        ..Default::default()
    };
    stream.create_consumer(config).await.map_err(|e| nats(&e))
}

#[path = "follow_stream.rs"]
mod stream;

/// Whether the local journal is a prefix of the stream (what [`spawn`]
/// checks first): a node under `replicated` sets a diverged journal aside
/// before it starts (`serve/rejoin.rs`).
///
/// # Errors
/// [`ClusterError::Diverged`], or the stream cannot be read.
pub async fn check_prefix(cluster: &Cluster, pipeline: &Pipeline) -> Result<(), ClusterError> {
    stream::check_prefix(cluster, pipeline).await
}
#[cfg(test)]
#[path = "follow_tests.rs"]
mod tests;
