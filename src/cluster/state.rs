//! What this node knows of its place in the cluster, shared between the
//! publisher, the follower, the lease and the parts that report it
//! (`/metrics`, `/ready`, the nodes bucket). Cheap to clone; all atomics,
//! so the pipeline thread never waits on it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// This node's current part (changes at takeover and at stand-down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Part {
    /// Following the stream, waiting for the lease (or a reader).
    Following = 0,
    /// Holds the lease: ingesting and publishing.
    Active = 1,
    /// Lost the lease or was fenced: takes no more messages.
    StoodDown = 2,
}

#[derive(Debug, Default)]
struct Inner {
    part: AtomicU8,
    /// Highest journal seq committed locally.
    committed: AtomicU64,
    /// Highest journal seq the stream acknowledged (active node).
    published: AtomicU64,
    /// The stream's last sequence as last seen (followers).
    stream_last: AtomicU64,
    /// Highest journal seq appended from the stream (followers).
    followed: AtomicU64,
    /// The lease revision held (0: none).
    lease_revision: AtomicU64,
    nats_connected: AtomicBool,
}

/// Shared cluster state of one node.
#[derive(Debug, Clone, Default)]
pub struct ClusterState(Arc<Inner>);

impl ClusterState {
    pub fn part(&self) -> Part {
        match self.0.part.load(Ordering::Relaxed) {
            1 => Part::Active,
            2 => Part::StoodDown,
            _ => Part::Following,
        }
    }
    pub fn set_part(&self, p: Part) {
        self.0.part.store(p as u8, Ordering::Relaxed);
    }
    pub fn committed(&self) -> u64 {
        self.0.committed.load(Ordering::Relaxed)
    }
    pub fn set_committed(&self, seq: u64) {
        self.0.committed.fetch_max(seq, Ordering::Relaxed);
    }
    pub fn published(&self) -> u64 {
        self.0.published.load(Ordering::Relaxed)
    }
    pub fn set_published(&self, seq: u64) {
        self.0.published.fetch_max(seq, Ordering::Relaxed);
    }
    pub fn stream_last(&self) -> u64 {
        self.0.stream_last.load(Ordering::Relaxed)
    }
    pub fn set_stream_last(&self, seq: u64) {
        self.0.stream_last.fetch_max(seq, Ordering::Relaxed);
    }
    pub fn followed(&self) -> u64 {
        self.0.followed.load(Ordering::Relaxed)
    }
    pub fn set_followed(&self, seq: u64) {
        self.0.followed.fetch_max(seq, Ordering::Relaxed);
    }
    pub fn lease_revision(&self) -> u64 {
        self.0.lease_revision.load(Ordering::Relaxed)
    }
    pub fn set_lease_revision(&self, rev: u64) {
        self.0.lease_revision.store(rev, Ordering::Relaxed);
    }
    pub fn nats_connected(&self) -> bool {
        self.0.nats_connected.load(Ordering::Relaxed)
    }
    pub fn set_nats_connected(&self, on: bool) {
        self.0.nats_connected.store(on, Ordering::Relaxed);
    }
    /// Entries committed here and not yet in the stream (active node).
    pub fn publish_lag(&self) -> u64 {
        self.committed().saturating_sub(self.published())
    }
    /// Entries in the stream not yet in this node's journal (followers).
    pub fn follow_lag(&self) -> u64 {
        self.stream_last().saturating_sub(self.followed())
    }
}
