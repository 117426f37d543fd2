//! `[cluster]`: the journal replicated through NATS JetStream (issue 13).
//! Raw form, validated form and validation in one file. Without the section
//! the engine runs as a single embedded node, exactly as before.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::{resolve_path, Validator};

/// `[cluster]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCluster {
    /// NATS server URLs (`nats://host:4222`); the client reconnects across them.
    pub servers: Vec<String>,
    /// This node's name, unique in the cluster: part of every published entry's
    /// id and the lease holder's name. Empty: the host name.
    pub node: String,
    /// `active` (takes the lease and the MLLP listeners when it can, follows
    /// the stream until then), `standby` (the same, named for the operator) or
    /// `reader` (never takes the lease: serves reads only). `serve --role` wins.
    pub role: String,
    /// The JetStream stream holding the journal (created when missing).
    pub stream: String,
    /// Replicas of the stream and the KV buckets (1, 3 or 5).
    pub replicas: u64,
    /// `replicated`: the sender's AA waits for the stream's quorum ack as well
    /// as the local fsync; `local`: only the fsync, publishing lags and catches up.
    pub ack_after: String,
    /// Seconds an AA waits for the quorum ack before the message is answered
    /// AR 207 (resend) under `ack_after = "replicated"`.
    pub publish_timeout_secs: u64,
    /// Seconds the active node's lease lives without renewal; a standby takes
    /// over after it lapses.
    pub lease_ttl_secs: u64,
    /// Seconds to wait for a NATS connection at start-up.
    pub connect_timeout_secs: u64,
    /// `/ready` fails on a follower whose lag behind the stream exceeds this many entries.
    pub ready_max_lag: u64,
    /// NATS credentials file (`.creds`), relative to the config file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creds: Option<PathBuf>,
    /// CA bundle to verify the NATS servers' certificates (TLS), relative to the config file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key for NATS mutual TLS, relative to the config file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Default for RawCluster {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            node: String::new(),
            role: "active".into(),
            stream: "RECORDHUB".into(),
            replicas: 3,
            ack_after: "replicated".into(),
            publish_timeout_secs: 5,
            lease_ttl_secs: 3,
            connect_timeout_secs: 10,
            ready_max_lag: 1000,
            creds: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows the stream until it holds the lease, then ingests.
    Active,
    /// As `Active`; the name tells the operator which node is meant to wait.
    Standby,
    /// Follows the stream and serves reads; never ingests.
    Reader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby => "standby",
            Role::Reader => "reader",
        }
    }

    /// Parses `serve --role`.
    pub fn parse(s: &str) -> Option<Role> {
        ROLES.iter().find(|(n, _)| *n == s).map(|(_, r)| *r)
    }

    /// Whether this node may take the lease and the MLLP listeners.
    pub fn may_ingest(self) -> bool {
        !matches!(self, Role::Reader)
    }
}

const ROLES: [(&str, Role); 3] = [("active", Role::Active), ("standby", Role::Standby), ("reader", Role::Reader)];

/// When the sender's AA is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckAfter {
    /// After the local fsync; publishing lags.
    Local,
    /// After the local fsync and the stream's quorum ack.
    Replicated,
}

/// Validated `[cluster]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub servers: Vec<String>,
    pub node: String,
    pub role: Role,
    pub stream: String,
    pub replicas: usize,
    pub ack_after: AckAfter,
    pub publish_timeout: Duration,
    pub lease_ttl: Duration,
    pub connect_timeout: Duration,
    pub ready_max_lag: u64,
    /// Resolved paths.
    pub creds: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

pub(super) fn validate(raw: Option<RawCluster>, v: &mut Validator<'_>) -> Option<ClusterConfig> {
    let raw = raw?;
    if raw.servers.is_empty() {
        v.report("cluster.servers", "[]".into(), "list at least one NATS server URL (nats://host:4222)");
    }
    for s in &raw.servers {
        if !(s.starts_with("nats://") || s.starts_with("tls://") || s.contains(':')) {
            v.report("cluster.servers", format!("{s:?}"), "not a NATS URL like nats://127.0.0.1:4222");
        }
    }
    if ![1, 3, 5].contains(&raw.replicas) {
        v.report("cluster.replicas", raw.replicas.to_string(), "must be 1, 3 or 5");
    }
    if raw.stream.is_empty() || !raw.stream.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        v.report("cluster.stream", format!("{:?}", raw.stream), "letters, digits, _ and - only");
    }
    let node = if raw.node.is_empty() { host_name() } else { raw.node.clone() };
    if node.is_empty() || !node.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        v.report(
            "cluster.node",
            format!("{node:?}"),
            "letters, digits, _ and - only (it names the node in the stream)",
        );
    }
    let role = v.choice("cluster.role", &raw.role, &ROLES);
    let ack_after = v.choice(
        "cluster.ack_after",
        &raw.ack_after,
        &[("replicated", AckAfter::Replicated), ("local", AckAfter::Local)],
    );
    let path =
        |v: &mut Validator<'_>, key: &str, p: Option<PathBuf>| p.map(|p| resolve_path(&p, v.origins.base_for(key)));
    if raw.tls_cert.is_some() != raw.tls_key.is_some() {
        v.report("cluster.tls_cert", "".into(), "tls_cert and tls_key go together");
    }
    Some(ClusterConfig {
        servers: raw.servers,
        node,
        role,
        stream: raw.stream,
        replicas: raw.replicas as usize,
        ack_after,
        publish_timeout: v.secs("cluster.publish_timeout_secs", raw.publish_timeout_secs),
        lease_ttl: v.secs("cluster.lease_ttl_secs", raw.lease_ttl_secs),
        connect_timeout: v.secs("cluster.connect_timeout_secs", raw.connect_timeout_secs),
        ready_max_lag: raw.ready_max_lag,
        creds: path(v, "cluster.creds", raw.creds),
        tls_ca: path(v, "cluster.tls_ca", raw.tls_ca),
        tls_cert: path(v, "cluster.tls_cert", raw.tls_cert),
        tls_key: path(v, "cluster.tls_key", raw.tls_key),
    })
}

/// The machine's host name, as a node-name default ("recordhub" when unknown).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect())
        .filter(|h: &String| !h.is_empty())
        .unwrap_or_else(|| "recordhub".into())
}

#[cfg(test)]
mod tests {
    use super::super::{load, Overrides};
    use super::*;

    fn load_text(text: &str) -> Result<super::super::Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("engine.toml");
        std::fs::write(&file, text).unwrap();
        load(Some(&file), &Overrides::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn no_section_means_a_single_node() {
        assert_eq!(load_text("").unwrap().cluster, None);
    }

    #[test]
    fn a_cluster_section_loads_with_safe_defaults() {
        let c = load_text("[cluster]\nservers = [\"nats://127.0.0.1:4222\"]\nnode = \"a\"\n").unwrap().cluster.unwrap();
        assert_eq!((c.role, c.ack_after, c.replicas), (Role::Active, AckAfter::Replicated, 3));
        assert_eq!(c.node, "a");
    }

    #[test]
    fn bad_cluster_keys_name_their_line() {
        let e =
            load_text("[cluster]\nservers = [\"nats://x:4222\"]\nreplicas = 2\nack_after = \"soon\"\n").unwrap_err();
        assert!(e.contains("engine.toml:3:") && e.contains("cluster.replicas"), "{e}");
        assert!(e.contains("engine.toml:4:") && e.contains("\"replicated\""), "{e}");
        let e = load_text("[cluster]\nnode = \"a\"\n").unwrap_err();
        assert!(e.contains("cluster.servers"), "{e}");
    }
}
