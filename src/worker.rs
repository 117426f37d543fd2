//! The pipeline worker: one thread that owns the journal and the index.
//!
//! Connections hand it jobs over a channel; it takes every job waiting (up to
//! `max_batch`) as one batch, so all messages that arrived while the previous
//! fdatasync ran share the next one (group commit). It logs one INFO line per
//! message outcome. A dedicated OS thread, not a tokio task, because
//! fdatasync blocks.
//!
//! Supervised: if the thread panics, it reports the pipeline failing in
//! health and cancels the server (see `supervise.rs` for why the process
//! then exits rather than limping on).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::cluster::publish::Replication;
use crate::cluster::AckAfter;
use crate::events::MessageOutcome;
use crate::health::{Health, Part};
use crate::pipeline::{self, Frame, Inbound, Outcome, Pipeline, Premapped, Premapper};

/// A frame as received, owned.
#[derive(Debug)]
pub enum FrameBuf {
    Message(BytesMut),
    Oversize { head: Bytes, len: u64 },
}

/// One message waiting for the pipeline.
pub struct Job {
    pub frame: FrameBuf,
    pub peer: Arc<str>,
    /// What the connection may send as (MSH-3/MSH-4), when its listener has
    /// an allow-list; checked at intake (`mllp::allow::verdict`).
    pub sender: Option<Arc<crate::mllp::allow::SenderRights>>,
    pub received_at_ms: u64,
    pub started: Instant,
    pub reply: oneshot::Sender<Outcome>,
}

/// A job on its way to the pipeline thread, with its mapping when it was
/// large enough to be mapped ahead (see `pipeline/premap.rs`).
struct Queued {
    job: Job,
    premapped: Option<Premapped>,
}

/// Cheap to clone; the worker stops when every handle is dropped.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Queued>,
    premapper: Option<Arc<Premapper>>,
}

impl Handle {
    /// Queues a job; waits while the queue is full (back-pressure to the
    /// socket). A large frame is first mapped on tokio's blocking pool, so
    /// the pipeline thread only journals it and other senders do not wait
    /// behind its mapping; the connection that sent it does (its later
    /// frames keep their order).
    ///
    /// # Errors
    /// The worker has stopped.
    pub async fn submit(&self, job: Job) -> Result<(), Job> {
        let (job, premapped) = match (&self.premapper, &job.frame) {
            (Some(pm), FrameBuf::Message(raw)) if pm.wants(raw.len()) => {
                let pm = pm.clone();
                let ahead = tokio::task::spawn_blocking(move || {
                    let premapped = match &job.frame {
                        // Mapping panics are caught inside; this guards intake too.
                        FrameBuf::Message(raw) => catch_unwind(AssertUnwindSafe(|| pm.premap(raw))).ok().flatten(),
                        FrameBuf::Oversize { .. } => None,
                    };
                    (job, premapped)
                });
                match ahead.await {
                    Ok(pair) => pair,
                    // Only at runtime shutdown: the job and its reply are
                    // dropped, so the connection closes unanswered and the
                    // sender retries; nothing was acknowledged.
                    Err(_) => return Ok(()),
                }
            }
            _ => (job, None),
        };
        self.tx.send(Queued { job, premapped }).await.map_err(|e| e.0.job)
    }
}

/// How the worker runs.
pub struct WorkerOptions {
    /// Most messages sharing one fdatasync.
    pub max_batch: usize,
    /// Told when the thread panics.
    pub health: Health,
    /// Cancelled when the thread panics, to stop the server.
    pub on_panic: CancellationToken,
    /// Maps large frames ahead; `None` maps everything on the pipeline thread.
    pub premapper: Option<Premapper>,
    /// The cluster publisher (an active cluster node): told of each commit,
    /// and with `ack_after = "replicated"` the batch's AAs wait for the
    /// stream's quorum ack (see `pipeline/replicated.rs`). `None`: one node.
    pub replication: Option<Replication>,
}

/// How the worker thread ended.
pub enum Ended {
    /// Every handle was dropped: the pipeline comes back for a clean shutdown.
    Stopped(Box<Pipeline>),
    /// It panicked with this message; the pipeline was dropped.
    Panicked(String),
}

/// Starts the worker thread. Join it after dropping every `Handle` to get the
/// pipeline back (for a clean shutdown flush). If it panics, `health` says so
/// and `on_panic` is cancelled.
pub fn spawn(mut pipeline: Pipeline, opts: WorkerOptions) -> std::io::Result<(Handle, JoinHandle<Ended>)> {
    let WorkerOptions { max_batch, health, on_panic, premapper, replication } = opts;
    let (tx, mut rx) = mpsc::channel::<Queued>(max_batch.max(1) * 4);
    let max_batch = max_batch.max(1);
    let thread = std::thread::Builder::new().name("pipeline".into()).spawn(move || {
        let run = catch_unwind(AssertUnwindSafe(|| {
            let mut jobs: Vec<Queued> = Vec::with_capacity(max_batch);
            while let Some(first) = rx.blocking_recv() {
                jobs.push(first);
                while jobs.len() < max_batch {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                run_batch(&mut pipeline, &mut jobs, replication.as_ref());
            }
        }));
        match run {
            Ok(()) => Ended::Stopped(Box::new(pipeline)),
            Err(payload) => {
                let why = crate::supervise::panic_text(payload.as_ref());
                health.fail(Part::Pipeline, &format!("the pipeline thread panicked: {why}"));
                tracing::error!(panic = %why,
                    "pipeline thread panicked: no message can be acknowledged; stopping so the service manager restarts recordhub (nothing acknowledged is lost)");
                // Refuse further jobs at once rather than after the batch in hand.
                rx.close();
                on_panic.cancel();
                drop(pipeline);
                Ended::Panicked(why)
            }
        }
    })?;
    Ok((Handle { tx, premapper: premapper.map(Arc::new) }, thread))
}

fn run_batch(pipeline: &mut Pipeline, jobs: &mut Vec<Queued>, replication: Option<&Replication>) {
    let inbound: Vec<Inbound<'_>> = jobs
        .iter()
        .map(|q| Inbound {
            frame: match &q.job.frame {
                FrameBuf::Message(b) => Frame::Message(b),
                FrameBuf::Oversize { head, len } => Frame::Oversize { head, len: *len },
            },
            peer: &q.job.peer,
            received_at_ms: q.job.received_at_ms,
            premapped: q.premapped.as_ref(),
            sender: q.job.sender.as_deref(),
        })
        .collect();
    let mut outcomes = pipeline.process(&inbound);
    drop(inbound);
    if let Some(r) = replication {
        replicate(pipeline, r, jobs, &mut outcomes);
    }
    for (Queued { job, .. }, outcome) in jobs.drain(..).zip(outcomes) {
        log_outcome(pipeline, &job, &outcome);
        // The connection may be gone (peer closed); its ACK has nowhere to go
        // but the message is durable and journaled either way.
        let _ = job.reply.send(outcome);
    }
}

/// Tells the publisher of the commit; under `ack_after = "replicated"`
/// waits for the stream to hold the batch's accepted entries, else turns
/// their AA/CA into AR/CR 207. Duplicates count with their original's seq:
/// a resend of an entry not yet replicated must not get AA either.
fn replicate(pipeline: &Pipeline, r: &Replication, jobs: &[Queued], outcomes: &mut [Outcome]) {
    r.note_committed(pipeline.committed_seq());
    if r.ack_after() != AckAfter::Replicated {
        return;
    }
    let Some(top) = outcomes.iter().filter(|o| o.code.is_accept()).filter_map(|o| o.seq).max() else {
        return;
    };
    let timeout = r.publish_timeout();
    let Err(e) = r.wait_published(top, timeout) else {
        return;
    };
    for (q, o) in jobs.iter().zip(outcomes.iter_mut()) {
        let raw = match &q.job.frame {
            FrameBuf::Message(b) => &b[..],
            FrameBuf::Oversize { head, .. } => &head[..],
        };
        pipeline.not_replicated(o, raw, &e.0, timeout);
    }
}

/// The one INFO line per message and its counters (see `events.rs`).
fn log_outcome(pipeline: &Pipeline, job: &Job, o: &Outcome) {
    let elapsed_us = pipeline::elapsed_us(job.started);
    MessageOutcome { outcome: o, peer: &job.peer, elapsed_us }.emit(pipeline.metrics());
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::ack::AckCode;
    use crate::cluster::testing::NatsServer;
    use crate::cluster::{Cluster, ClusterState};
    use crate::pipeline::Options;

    const ADT: &[u8] = include_bytes!("../fixtures/adt-a01.hl7");

    fn options(dir: &Path) -> Options {
        crate::pipeline::testing::options(dir, crate::fault::Faults::none())
    }

    /// The fixture in original acknowledgement mode (no MSH-15/16), v2.5.
    fn original_mode(control_id: &str) -> Vec<u8> {
        let text = String::from_utf8_lossy(ADT);
        assert!(text.contains("|MSG00001|P|2.4|||AL|NE"), "the fixture's MSH");
        text.replacen("|MSG00001|P|2.4|||AL|NE", &format!("|{control_id}|P|2.5"), 1).into_bytes()
    }

    async fn send(h: &Handle, raw: &[u8]) -> (Outcome, String) {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            frame: FrameBuf::Message(BytesMut::from(raw)),
            peer: Arc::from("test"),
            sender: None,
            received_at_ms: 0,
            started: Instant::now(),
            reply,
        };
        assert!(h.submit(job).await.is_ok(), "the worker runs");
        let o = rx.await.unwrap();
        let ack = String::from_utf8_lossy(o.ack.as_deref().unwrap_or_default()).into_owned();
        (o, ack)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_ack_after_replicated_no_quorum_answers_ar_207_and_the_resend_gets_aa_once_replicated() {
        let Some(mut nats) = NatsServer::start() else { return };
        let dir = tempfile::tempdir().unwrap();
        let (pipeline, _) = Pipeline::open(options(dir.path())).unwrap();
        let cluster = Cluster::connect(&nats.config("a")).await.unwrap();
        let jdir = pipeline::journal_dir(dir.path());
        let fenced = CancellationToken::new();
        let r =
            crate::cluster::publish::spawn(cluster, jdir, pipeline.committed_seq(), ClusterState::default(), fenced)
                .await
                .unwrap();
        let opts = WorkerOptions {
            max_batch: 8,
            health: Health::default(),
            on_panic: CancellationToken::new(),
            premapper: None,
            replication: Some(r.clone()),
        };
        let (handle, thread) = spawn(pipeline, opts).unwrap();

        let (o, ack) = send(&handle, &original_mode("UP1")).await;
        assert!(ack.contains("\rMSA|AA|UP1\r"), "{ack}");
        assert_eq!(r.published(), o.seq.unwrap(), "AA only once the stream has it");

        nats.stop();
        let msg = original_mode("DOWN1");
        let (o, ack) = send(&handle, &msg).await;
        assert!(ack.contains("\rMSA|AR|DOWN1\r"), "{ack}");
        assert!(ack.contains("|207^Application internal error^HL70357|"), "{ack}");
        assert!(ack.contains("not replicated to the cluster's quorum within 2 s; resend"), "{ack}");
        assert_eq!(o.code, AckCode::AR);
        assert_eq!(o.verdict(), "rejected", "the log line says rejected");
        assert_eq!(o.problem.as_ref().map(|(_, p)| p.code), Some(207));
        let seq = o.seq.unwrap();
        // Enhanced mode (the fixture as is: MSH-15 AL) gets CR.
        let (o, ack) = send(&handle, ADT).await;
        assert_eq!(o.code, AckCode::CR, "{ack}");
        assert!(ack.contains("\rMSA|CR|MSG00001|"), "{ack}");

        nats.restart();
        // The sender resends until AA: a duplicate answered with the
        // original's AA, and only once the original is in the stream.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (o, ack) = send(&handle, &msg).await;
            if o.code == AckCode::AA {
                assert!(o.duplicate && o.seq == Some(seq), "the original answers");
                assert!(ack.contains("\rMSA|AA|DOWN1\r"), "{ack}");
                assert!(r.published() >= seq);
                break;
            }
            assert!(ack.contains("\rMSA|AR|DOWN1\r"), "{ack}");
            assert!(Instant::now() < deadline, "never AA after the server came back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(handle);
        assert!(matches!(thread.join().unwrap(), Ended::Stopped(_)));
    }
}
