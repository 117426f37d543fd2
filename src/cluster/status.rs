//! `recordhub cluster status` and each node's heartbeat in the nodes bucket:
//! nodes, roles, the lease holder, and each node's applied position.
//!
//! Each node puts its [`NodeStatus`] under its name in the nodes bucket
//! ([`report`], called by the node's orchestration every few seconds); the
//! command reads every key, the lease (its value is the holder's name, its
//! revision the fencing token) and the journal stream's last sequence, and
//! prints one row per node. A node whose last report is older than
//! [`SILENT_AFTER_MS`] is marked `silent`: it may be down, cut off from
//! NATS, or hung — its row shows the last thing it said.

use futures_util::StreamExt;

use super::{Cluster, ClusterError, LEASE_KEY};

/// What a node reports about itself (the nodes bucket's value, JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    pub node: String,
    /// `active` (holds the lease), `standby`, `reader`, `stood-down`.
    pub role: String,
    /// Last journal seq this node has in its journal.
    pub journal_seq: u64,
    /// Last journal seq filed into its index.
    pub applied_seq: u64,
    /// Milliseconds since the epoch.
    pub at_ms: u64,
    pub mllp: Option<String>,
    pub http: Option<String>,
}

/// A report older than this marks the node `silent`.
pub const SILENT_AFTER_MS: u64 = 10_000;

fn nats(what: &str) -> impl Fn(&dyn std::fmt::Display) -> ClusterError + '_ {
    move |e| ClusterError::Nats(format!("{what}: {e}"))
}

/// Writes `status` under this node's key.
///
/// # Errors
/// The bucket cannot be written.
pub async fn report(cluster: &Cluster, status: &NodeStatus) -> Result<(), ClusterError> {
    let fail = nats("nodes bucket");
    let kv = cluster.js.get_key_value(cluster.names.nodes_bucket.as_str()).await.map_err(|e| fail(&e))?;
    let body = serde_json::to_vec(status).map_err(|e| fail(&e))?;
    kv.put(cluster.cfg.node.as_str(), body.into()).await.map_err(|e| fail(&e))?;
    Ok(())
}

/// Who holds the lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseView {
    pub holder: String,
    /// The revision it was taken or last renewed at (the fencing token).
    pub revision: u64,
}

/// One node as the status command shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeRow {
    #[serde(flatten)]
    pub status: NodeStatus,
    /// Stream entries not yet filed into this node's index
    /// (stream last seq − `applied_seq`).
    pub lag: u64,
    /// Seconds since its last report.
    pub age_secs: u64,
    /// No report for more than [`SILENT_AFTER_MS`].
    pub silent: bool,
    pub holds_lease: bool,
}

/// The cluster as NATS knows it at one moment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Snapshot {
    /// The journal stream's last sequence (the cluster's journal seq).
    pub stream_last_seq: u64,
    /// `None`: no node holds it (expired or never taken).
    pub lease: Option<LeaseView>,
    /// By node name.
    pub nodes: Vec<NodeRow>,
}

impl Snapshot {
    /// Builds the rows from raw reports, at `now_ms`.
    pub fn new(stream_last_seq: u64, lease: Option<LeaseView>, mut reports: Vec<NodeStatus>, now_ms: u64) -> Snapshot {
        reports.sort_by(|a, b| a.node.cmp(&b.node));
        let nodes = reports
            .into_iter()
            .map(|status| {
                let age_ms = now_ms.saturating_sub(status.at_ms);
                NodeRow {
                    lag: stream_last_seq.saturating_sub(status.applied_seq),
                    age_secs: age_ms / 1000,
                    silent: age_ms > SILENT_AFTER_MS,
                    holds_lease: lease.as_ref().is_some_and(|l| l.holder == status.node),
                    status,
                }
            })
            .collect();
        Snapshot { stream_last_seq, lease, nodes }
    }
}

/// Reads the lease, every node's report and the stream's last sequence.
///
/// # Errors
/// NATS cannot be read.
pub async fn snapshot(cluster: &Cluster) -> Result<Snapshot, ClusterError> {
    let n = &cluster.names;
    let fail = nats("cluster status");
    let lease_kv = cluster.js.get_key_value(n.lease_bucket.as_str()).await.map_err(|e| fail(&e))?;
    let lease = lease_kv.entry(LEASE_KEY).await.map_err(|e| fail(&e))?.and_then(|e| {
        use async_nats::jetstream::kv::Operation;
        (e.operation == Operation::Put).then(|| LeaseView { holder: lease_holder(&e.value), revision: e.revision })
    });
    let nodes_kv = cluster.js.get_key_value(n.nodes_bucket.as_str()).await.map_err(|e| fail(&e))?;
    let mut keys = nodes_kv.keys().await.map_err(|e| fail(&e))?;
    let mut reports = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| fail(&e))?;
        let Some(v) = nodes_kv.get(&key).await.map_err(|e| fail(&e))? else { continue };
        match serde_json::from_slice::<NodeStatus>(&v) {
            Ok(s) => reports.push(s),
            Err(e) => tracing::warn!(node = %key, error = %e, "unreadable node status in the nodes bucket"),
        }
    }
    let mut stream = cluster.js.get_stream(n.stream.as_str()).await.map_err(|e| fail(&e))?;
    let last = stream.info().await.map_err(|e| fail(&e))?.state.last_sequence;
    Ok(Snapshot::new(last, lease, reports, crate::pipeline::now_ms()))
}

/// The lease's value names the holder: the node name, or JSON with a `node`.
fn lease_holder(value: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_slice(value) {
        if let Some(n) = m.get("node").and_then(|v| v.as_str()) {
            return n.to_string();
        }
    }
    String::from_utf8_lossy(value).trim().to_string()
}

/// The snapshot for people: a table of nodes, then the lease and stream lines.
pub fn table(s: &Snapshot) -> String {
    let mut rows = vec![["NODE", "ROLE", "JOURNAL SEQ", "APPLIED SEQ", "LAG", "LAST REPORT", "MLLP", "HTTP"]
        .map(String::from)
        .to_vec()];
    for r in &s.nodes {
        let mark = if r.holds_lease { "*" } else { "" };
        let seen = if r.silent { format!("{}s ago (silent)", r.age_secs) } else { format!("{}s ago", r.age_secs) };
        rows.push(vec![
            format!("{}{mark}", r.status.node),
            r.status.role.clone(),
            r.status.journal_seq.to_string(),
            r.status.applied_seq.to_string(),
            r.lag.to_string(),
            seen,
            r.status.mllp.clone().unwrap_or_else(|| "-".into()),
            r.status.http.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut out = columns(&rows);
    if s.nodes.is_empty() {
        out.push_str("no node has reported (none started with this [cluster] yet)\n");
    }
    match &s.lease {
        Some(l) => out.push_str(&format!("lease: held by {} at revision {} (* above)\n", l.holder, l.revision)),
        None => out.push_str("lease: held by no node (expired or never taken): no node is ingesting\n"),
    }
    out.push_str(&format!("stream: last seq {}\n", s.stream_last_seq));
    out
}

/// Rows as left-aligned columns two spaces apart (the first row a header).
pub fn columns(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
