//! The active node's lease: key [`super::LEASE_KEY`] in the lease bucket,
//! whose entries expire after `lease_ttl`. The holder renews it at its
//! revision (compare-and-swap) well inside the TTL; a standby creates it once
//! it has expired. A renewal refused at our revision because another node
//! holds the key cancels [`Lease::lost`] and the node stands down; so does a
//! TTL without a renewal under `ack_after = "local"` (see [`renew`] for why
//! not under `"replicated"`). A clean stop deletes the key at our revision
//! ([`Lease::release`]) so a standby takes over at once.
//!
//! The lease alone does not make two actives impossible (a paused holder
//! learns of its loss only when it next renews); the stream's
//! `Nats-Expected-Last-Sequence` does: a stale holder's next publish is
//! refused once the new holder has appended (see `publish.rs`). The lease
//! decides who *should* ingest; the stream decides whose entries count.
//!
//! OWNER: helper "lease" (issue 13). Interface fixed by the skeleton.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{AckAfter, Cluster, ClusterError, ClusterState, Part, LEASE_KEY};

/// A held lease, renewed in the background until dropped or lost.
pub struct Lease {
    lost: CancellationToken,
    revision: u64,
    /// The revision of our latest renewal (what [`Lease::release`] deletes at).
    current: Arc<AtomicU64>,
    /// Cancelled on drop: stops the renewal task.
    stop: CancellationToken,
    renewer: Option<tokio::task::JoinHandle<()>>,
    kv: kv::Store,
    node: String,
}

impl Lease {
    /// Cancelled when the lease is lost (renewal refused or impossible for a TTL).
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// The revision at which it was taken: the fencing token in logs and status.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Stops renewing and deletes the key if it is still ours (a delete
    /// conditional on our last revision), so a standby takes over at once
    /// rather than after the TTL: for a planned stop, once this node takes
    /// no more messages and has published what it committed.
    pub async fn release(mut self) {
        self.stop.cancel();
        if let Some(task) = self.renewer.take() {
            // Joined so no renewal races the delete.
            let _ = task.await;
        }
        if self.lost.is_cancelled() {
            return;
        }
        let rev = self.current.load(Ordering::Acquire);
        match self.kv.delete_expect_revision(LEASE_KEY, Some(rev)).await {
            Ok(()) => tracing::info!(node = %self.node, revision = rev, "released the lease"),
            // Someone else holds it by now, or NATS is away: the key expires by itself.
            Err(e) => tracing::warn!(node = %self.node, revision = rev, error = %e,
                "could not release the lease; a standby takes over when it expires"),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Waits until this node holds the lease (or `stop` is cancelled: `Ok(None)`).
///
/// # Errors
/// The bucket cannot be read.
pub async fn acquire(
    cluster: &Cluster,
    state: &ClusterState,
    stop: CancellationToken,
) -> Result<Option<Lease>, ClusterError> {
    let bucket = cluster.names.lease_bucket.as_str();
    let kv = cluster
        .js
        .get_key_value(bucket)
        .await
        .map_err(|e| ClusterError::Setup { what: format!("key-value bucket {bucket}"), why: e.to_string() })?;
    let node = cluster.cfg.node.clone();
    let ttl = cluster.cfg.lease_ttl;
    let poll = (ttl / 4).max(Duration::from_millis(50));
    let mut told_holder: Option<String> = None;
    loop {
        if stop.is_cancelled() {
            return Ok(None);
        }
        let sent = Instant::now();
        match kv.create(LEASE_KEY, node.clone().into()).await {
            Ok(rev) => {
                tracing::info!(node = %node, revision = rev, "took the lease");
                state.set_lease_revision(rev);
                let lapse_loses = cluster.cfg.ack_after == AckAfter::Local;
                return Ok(Some(hold(kv, node, rev, sent, ttl, lapse_loses, state.clone())));
            }
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                let holder = holder_of(&kv).await;
                if told_holder.as_deref() != Some(holder.as_str()) {
                    tracing::info!(node = %node, holder = %holder, "waiting for the lease held by {holder}");
                    told_holder = Some(holder);
                }
            }
            // NATS away or slow: keep trying; nobody can take it meanwhile either.
            Err(e) => tracing::debug!(node = %node, error = %e, "could not try the lease; retrying"),
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(None),
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// Who holds the lease now (`None`: nobody, or the bucket cannot be read).
pub async fn holder(cluster: &Cluster) -> Option<String> {
    let kv = cluster.js.get_key_value(cluster.names.lease_bucket.as_str()).await.ok()?;
    let entry = kv.entry(LEASE_KEY).await.ok()??;
    Some(String::from_utf8_lossy(&entry.value).into_owned())
}

/// Who holds the lease, for the log.
async fn holder_of(kv: &kv::Store) -> String {
    match kv.entry(LEASE_KEY).await {
        Ok(Some(e)) => String::from_utf8_lossy(&e.value).into_owned(),
        Ok(None) => "(expired)".into(),
        Err(_) => "(unknown)".into(),
    }
}

/// Starts renewing a lease taken at `rev` (the create was sent at `sent`).
fn hold(
    kv: kv::Store,
    node: String,
    rev: u64,
    sent: Instant,
    ttl: Duration,
    lapse_loses: bool,
    state: ClusterState,
) -> Lease {
    let lost = CancellationToken::new();
    let stop = CancellationToken::new();
    let current = Arc::new(AtomicU64::new(rev));
    let renewer = tokio::spawn(renew(Renewal {
        kv: kv.clone(),
        node: node.clone(),
        ttl,
        lapse_loses,
        last_ok: sent,
        current: current.clone(),
        lost: lost.clone(),
        stop: stop.clone(),
        state,
    }));
    Lease { lost, revision: rev, current, stop, renewer: Some(renewer), kv, node }
}

struct Renewal {
    kv: kv::Store,
    node: String,
    ttl: Duration,
    /// Whether a lapse (no renewal for a TTL, NATS away or without quorum)
    /// loses the lease: see [`renew`].
    lapse_loses: bool,
    /// When the last successful write was *sent*: the key expires no
    /// earlier than `ttl` after it, so counting from the send is safe.
    last_ok: Instant,
    current: Arc<AtomicU64>,
    lost: CancellationToken,
    stop: CancellationToken,
    state: ClusterState,
}

/// Renews every `ttl / 3` until stopped or lost.
///
/// A renewal refused at our revision loses the lease, unless the key is
/// still ours (a renewal that landed but whose ack was lost) or free (it
/// expired during an outage and nobody took it: taken again). A lapse —
/// no renewal for a TTL — loses it under `ack_after = "local"`, where this
/// node would otherwise go on acknowledging entries another active node's
/// stream would never hold. Under `"replicated"` a lapse is only a WARN:
/// no AA can be given without the stream's quorum anyway (every message
/// gets AR 207), and a node that took over meanwhile fences this one's
/// publishes; the node keeps its listener so it resumes when NATS does.
async fn renew(mut r: Renewal) {
    let every = r.ttl / 3;
    let mut lapsed = false;
    loop {
        tokio::select! {
            () = r.stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let rev = r.current.load(Ordering::Acquire);
        let sent = Instant::now();
        // Bounded so a hung request cannot outlive the lease unnoticed.
        let left = (r.last_ok + r.ttl).saturating_duration_since(sent);
        let bound = if left.is_zero() { every } else { left };
        let outcome = tokio::time::timeout(bound, r.kv.update(LEASE_KEY, r.node.clone().into(), rev)).await;
        let renewed = match outcome {
            Ok(Ok(new)) => Ok(new),
            Ok(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => match retake(&r.kv, &r.node).await {
                Retake::Ours(new) => Ok(new),
                Retake::Theirs(by) => Err(Some(format!("the lease is no longer at revision {rev}: {by} holds it"))),
                // The key cannot be read now (a leader election): try again.
                Retake::Unknown => Err(None),
            },
            Ok(Err(e)) => {
                tracing::debug!(node = %r.node, revision = rev, error = %e, "could not renew the lease; retrying");
                Err(None)
            }
            Err(_) => Err(None),
        };
        let why = match renewed {
            Ok(new) => {
                r.current.store(new, Ordering::Release);
                r.state.set_lease_revision(new);
                r.last_ok = sent;
                if std::mem::take(&mut lapsed) {
                    tracing::info!(node = %r.node, revision = new, "renewed the lease again");
                }
                continue;
            }
            Err(Some(why)) => why,
            Err(None) if r.last_ok.elapsed() < r.ttl => continue,
            Err(None) if r.lapse_loses => {
                format!("not renewed for {:?} (the lease TTL): another node may hold it", r.ttl)
            }
            Err(None) => {
                if !lapsed {
                    lapsed = true;
                    tracing::warn!(node = %r.node, revision = rev,
                        "cannot renew the lease (NATS away or without quorum): messages are refused with AR 207 until it can; retrying");
                }
                continue;
            }
        };
        if r.stop.is_cancelled() {
            return;
        }
        tracing::error!(node = %r.node, revision = rev, reason = %why, "lost the lease: standing down");
        r.state.set_part(Part::StoodDown);
        r.state.set_lease_revision(0);
        r.lost.cancel();
        return;
    }
}

/// What a renewal refused at our revision found.
enum Retake {
    /// Still ours, at this revision.
    Ours(u64),
    /// Another node (named) holds it.
    Theirs(String),
    /// The key could not be read or written: an outage, not an answer.
    Unknown,
}

/// After a renewal refused at our revision: the key's revision if it still
/// holds our name (only this node writes it), or a new one if it is free
/// and we create it again.
async fn retake(kv: &kv::Store, node: &str) -> Retake {
    let entry = match kv.entry(LEASE_KEY).await {
        Ok(e) => e,
        Err(_) => return Retake::Unknown,
    };
    match entry {
        Some(e) if e.operation == kv::Operation::Put => {
            if e.value == node.as_bytes() {
                Retake::Ours(e.revision)
            } else {
                Retake::Theirs(String::from_utf8_lossy(&e.value).into_owned())
            }
        }
        _ => match kv.create(LEASE_KEY, node.to_string().into()).await {
            Ok(rev) => {
                tracing::warn!(
                    node,
                    revision = rev,
                    "the lease expired while it could not be renewed and nobody took it: took it again"
                );
                Retake::Ours(rev)
            }
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Retake::Theirs("another node".into()),
            Err(_) => Retake::Unknown,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing::NatsServer;

    async fn node(nats: &NatsServer, name: &str) -> (Cluster, ClusterState) {
        (Cluster::connect(&nats.config(name)).await.unwrap(), ClusterState::default())
    }

    /// Tries to take the lease for `within`; `None` if it is still held elsewhere.
    async fn try_for(c: &Cluster, s: &ClusterState, within: Duration) -> Option<Lease> {
        let stop = CancellationToken::new();
        let guard = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(within).await;
            guard.cancel();
        });
        acquire(c, s, stop).await.unwrap()
    }

    #[tokio::test]
    async fn a_standby_waits_while_the_holder_renews_and_takes_over_once_it_stops() {
        let Some(nats) = NatsServer::start() else { return };
        let (a, sa) = node(&nats, "a").await;
        let (b, sb) = node(&nats, "b").await;
        let held = acquire(&a, &sa, CancellationToken::new()).await.unwrap().expect("a takes the free lease");
        assert_eq!(sa.lease_revision(), held.revision());
        // Three TTLs (2 s each): the renewals keep it.
        assert!(try_for(&b, &sb, Duration::from_secs(6)).await.is_none(), "b took a lease a renews");
        assert!(!held.lost().is_cancelled());
        assert!(sa.lease_revision() > held.revision(), "renewals move the revision");
        assert_eq!(holder(&a).await.as_deref(), Some("a"));
        // a crashes (stops renewing): b has it within the TTL plus the poll.
        drop(held);
        let started = std::time::Instant::now();
        let taken = try_for(&b, &sb, Duration::from_secs(5)).await.expect("b takes the lapsed lease");
        // TTL (2 s) + one poll (0.5 s) + the server's expiry timer.
        assert!(started.elapsed() <= Duration::from_millis(3500), "took {:?}", started.elapsed());
        assert_eq!(sb.lease_revision(), taken.revision());
    }

    #[tokio::test]
    async fn a_holder_whose_key_was_taken_over_loses_the_lease() {
        let Some(nats) = NatsServer::start() else { return };
        let (a, sa) = node(&nats, "a").await;
        sa.set_part(Part::Active);
        let held = acquire(&a, &sa, CancellationToken::new()).await.unwrap().unwrap();
        // Another writer moves the key (as a node that took it after a pause would).
        let kv = a.js.get_key_value(&a.names.lease_bucket).await.unwrap();
        kv.put(LEASE_KEY, "b".into()).await.unwrap();
        let lost = held.lost();
        tokio::time::timeout(Duration::from_secs(3), lost.cancelled()).await.expect("loss noticed at the next renewal");
        assert_eq!(sa.part(), Part::StoodDown);
        assert_eq!(sa.lease_revision(), 0);
        // Releasing a lost lease leaves the new holder's key alone.
        held.release().await;
        assert_eq!(holder(&a).await.as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn a_holder_keeps_a_key_that_expired_unclaimed_or_still_holds_its_name() {
        let Some(nats) = NatsServer::start() else { return };
        let (a, sa) = node(&nats, "a").await;
        let held = acquire(&a, &sa, CancellationToken::new()).await.unwrap().unwrap();
        let kv = a.js.get_key_value(&a.names.lease_bucket).await.unwrap();
        // Freed behind its back (as by expiry during an outage): taken again.
        kv.delete(LEASE_KEY).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(holder(&a).await.as_deref(), Some("a"));
        // Its own name at a newer revision (a renewal whose ack was lost): kept.
        kv.put(LEASE_KEY, "a".into()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!held.lost().is_cancelled());
        assert_eq!(holder(&a).await.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn release_lets_a_waiting_standby_in_at_once() {
        let Some(nats) = NatsServer::start() else { return };
        let (a, sa) = node(&nats, "a").await;
        let (b, sb) = node(&nats, "b").await;
        let held = acquire(&a, &sa, CancellationToken::new()).await.unwrap().unwrap();
        let waiter = tokio::spawn(async move {
            let got = acquire(&b, &sb, CancellationToken::new()).await.unwrap();
            (got, std::time::Instant::now())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished(), "b must wait while a holds it");
        let released = std::time::Instant::now();
        held.release().await;
        let (got, at) = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert!(got.is_some());
        // Well under the 2 s TTL: one poll (TTL / 4) after the delete.
        assert!(at.duration_since(released) < Duration::from_millis(1500), "took {:?}", at.duration_since(released));
    }

    #[tokio::test]
    async fn acquire_returns_none_when_stopped_while_waiting() {
        let Some(nats) = NatsServer::start() else { return };
        let (a, sa) = node(&nats, "a").await;
        let (b, sb) = node(&nats, "b").await;
        let _held = acquire(&a, &sa, CancellationToken::new()).await.unwrap().unwrap();
        assert!(try_for(&b, &sb, Duration::from_millis(500)).await.is_none());
        assert_eq!(sb.lease_revision(), 0);
    }
}
