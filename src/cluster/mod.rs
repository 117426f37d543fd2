//! The journal replicated through NATS JetStream (`[cluster]`, issue 13).
//!
//! One stream holds the journal: every committed entry, accepted or not, is
//! published in journal order to `<subject>` with its id `<node>:<seq>` as
//! `Nats-Msg-Id` (a retry after an unknown outcome is de-duplicated by the
//! stream) and `Nats-Expected-Last-Sequence = seq - 1`. So the **stream
//! sequence is the journal seq**: a stale active node's publish fails as soon
//! as another node has appended (fencing), and a follower that appends the
//! stream's entries to its own journal gets the same seqs, so a standby that
//! takes over continues the sequence where the stream ends.
//!
//! Roles (`config::Role`): every node follows the stream into its own journal
//! and index (`follow.rs`) until it holds the lease (`lease.rs`); the lease
//! holder ingests over MLLP and publishes (`publish.rs`). Readers never take
//! the lease. Governance (objections) and audit events travel on their own
//! streams (`govern.rs`). `status.rs` is `recordhub cluster status`.

pub mod follow;
pub mod govern;
pub mod lease;
pub mod publish;
pub mod state;
pub mod status;
#[cfg(test)]
pub mod testing;

use std::time::Duration;

pub use crate::config::{AckAfter, ClusterConfig, Role};
pub use state::{ClusterState, Part};

/// Header: the entry's journal seq (decimal).
pub const HDR_SEQ: &str = "Recordhub-Seq";
/// Header: the publishing node.
pub const HDR_NODE: &str = "Recordhub-Node";
/// Header: the journal entry format version (`docs/journal-format.md`).
pub const HDR_FORMAT: &str = "Recordhub-Format";
/// Header: the mapping set's fingerprint when the entry was written.
pub const HDR_MAPPINGS: &str = "Recordhub-Mappings";
/// Header present (value "1") on a filler message standing for a journal seq
/// that was burned (a failed commit leaves a gap in the journal): it keeps
/// stream sequence == journal seq. Followers skip it.
pub const HDR_GAP: &str = "Recordhub-Gap";
/// Header: the partition key (the sender, `MSH-3^MSH-4`), for consumers that
/// want one sender's entries; the journal subject itself is not partitioned
/// because the stream sequence must equal the journal seq.
pub const HDR_PARTITION: &str = "Recordhub-Partition";

/// The id a published entry carries as `Nats-Msg-Id`.
pub fn msg_id(node: &str, seq: u64) -> String {
    format!("{node}:{seq}")
}

/// Names of the streams, subjects and buckets, derived from `cluster.stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The journal stream (stream seq == journal seq).
    pub stream: String,
    /// Its only subject.
    pub journal_subject: String,
    /// Governance changes (objections): every node applies them.
    pub gov_stream: String,
    pub gov_subject: String,
    /// Audit events from every node: the cluster's one ordered audit log.
    pub audit_stream: String,
    /// `<audit_subject_prefix>.<node>`.
    pub audit_subject_prefix: String,
    /// KV bucket holding the lease (key [`LEASE_KEY`]).
    pub lease_bucket: String,
    /// KV bucket where each node reports its role and position (key: node name).
    pub nodes_bucket: String,
}

/// The key of the lease in [`Names::lease_bucket`].
pub const LEASE_KEY: &str = "active";

impl Names {
    pub fn new(stream: &str) -> Names {
        let lower = stream.to_ascii_lowercase();
        Names {
            stream: stream.to_string(),
            journal_subject: format!("{lower}.journal"),
            gov_stream: format!("{stream}_GOV"),
            gov_subject: format!("{lower}.gov"),
            audit_stream: format!("{stream}_AUDIT"),
            audit_subject_prefix: format!("{lower}.audit"),
            lease_bucket: format!("{stream}_lease"),
            nodes_bucket: format!("{stream}_nodes"),
        }
    }
}

/// A connection to the NATS cluster with the streams and buckets in place.
/// Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pub cfg: ClusterConfig,
    pub names: Names,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.cfg.node).field("stream", &self.names.stream).finish()
    }
}

/// Why the cluster part failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to NATS at {servers}: {why}")]
    Connect { servers: String, why: String },
    #[error("cannot set up JetStream {what}: {why}")]
    Setup { what: String, why: String },
    #[error("NATS: {0}")]
    Nats(String),
    /// Another node appended to the stream: this node no longer holds the lease.
    #[error("fenced: another node ({by}) has appended to the stream at seq {seq}; this node stands down")]
    Fenced { seq: u64, by: String },
    /// The local journal holds entries the stream does not (acknowledged
    /// locally but never replicated, or written while another node was active).
    #[error("the local journal diverges from the stream at seq {seq}: {why}")]
    Diverged { seq: u64, why: String },
    #[error("journal: {0}")]
    Journal(String),
    #[error("index: {0}")]
    Index(String),
    #[error("stopped")]
    Stopped,
}

impl Cluster {
    /// Connects (waiting up to `connect_timeout`) and creates, where missing,
    /// the journal, governance and audit streams and the lease and nodes
    /// buckets, each with `replicas` replicas.
    ///
    /// # Errors
    /// No server answered in time, or JetStream refused to create a stream.
    pub async fn connect(cfg: &ClusterConfig) -> Result<Cluster, ClusterError> {
        let names = Names::new(&cfg.stream);
        let servers = cfg.servers.join(",");
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("recordhub-{}", cfg.node))
            .connection_timeout(cfg.connect_timeout)
            .request_timeout(Some(cfg.publish_timeout.max(Duration::from_secs(1))))
            .retry_on_initial_connect();
        if let Some(creds) = &cfg.creds {
            opts = opts.credentials_file(creds).await.map_err(|e| ClusterError::Connect {
                servers: servers.clone(),
                why: format!("credentials file {}: {e}", creds.display()),
            })?;
        }
        if let Some(ca) = &cfg.tls_ca {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        let addrs: Vec<async_nats::ServerAddr> = cfg
            .servers
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .map_err(|e| ClusterError::Connect { servers: servers.clone(), why: format!("{e}") })?;
        let connecting = opts.connect(addrs);
        let client = tokio::time::timeout(cfg.connect_timeout, connecting)
            .await
            .map_err(|_| ClusterError::Connect { servers: servers.clone(), why: "timed out".into() })?
            .map_err(|e| ClusterError::Connect { servers: servers.clone(), why: e.to_string() })?;
        let js = async_nats::jetstream::new(client.clone());
        let cluster = Cluster { cfg: cfg.clone(), names, client, js };
        cluster.ensure_streams().await?;
        Ok(cluster)
    }

    /// Creates the streams and buckets this engine uses, where missing.
    async fn ensure_streams(&self) -> Result<(), ClusterError> {
        use async_nats::jetstream::stream;
        let n = &self.names;
        let replicas = self.cfg.replicas;
        let setup = |what: &str| {
            let what = what.to_string();
            move |e: &dyn std::fmt::Display| ClusterError::Setup { what: what.clone(), why: e.to_string() }
        };
        let journal = stream::Config {
            name: n.stream.clone(),
            subjects: vec![n.journal_subject.clone()],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            // A retry after an unknown outcome within this window is dropped
            // by the stream; beyond it, Nats-Expected-Last-Sequence refuses it.
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        let fail = setup(&format!("stream {}", n.stream));
        self.js.get_or_create_stream(journal).await.map_err(|e| fail(&e))?;
        for (name, subjects) in [
            (&n.gov_stream, vec![n.gov_subject.clone()]),
            (&n.audit_stream, vec![format!("{}.>", n.audit_subject_prefix)]),
        ] {
            let cfg = stream::Config {
                name: name.clone(),
                subjects,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            };
            let fail = setup(&format!("stream {name}"));
            self.js.get_or_create_stream(cfg).await.map_err(|e| fail(&e))?;
        }
        // Key-value buckets are made as their backing streams directly:
        // async-nats's create_key_value first reads the account info, whose
        // reply from a 2.9 server (Debian's) it cannot parse. The settings are
        // those a KV bucket has (one value per key, rollups, direct gets).
        for (bucket, max_age) in [(&n.lease_bucket, self.cfg.lease_ttl), (&n.nodes_bucket, Duration::ZERO)] {
            let cfg = stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age,
                // Within max_age (the server refuses a longer window).
                duplicate_window: if max_age.is_zero() { Duration::from_secs(120) } else { max_age },
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                num_replicas: replicas,
                storage: stream::StorageType::File,
                ..Default::default()
            };
            let fail = setup(&format!("key-value bucket {bucket}"));
            self.js.get_or_create_stream(cfg).await.map_err(|e| fail(&e))?;
        }
        Ok(())
    }
}
