//! What a `/metrics` scrape reads from the rest of the engine.

use crate::mllp::admission::ConnectionCounts;
use crate::telemetry::LogStats;

/// What the scrape reads from the rest of the engine.
pub struct Scrape {
    pub journal: JournalSize,
    /// Committed − applied journal entries.
    pub index_lag: u64,
    /// `None` when the index could not be read.
    pub unindexed: Option<u64>,
    /// Messages refused because the journal could not store them.
    pub refused: u64,
    pub connections: ConnectionCounts,
    pub log: LogStats,
    pub charset_fallbacks: u64,
    /// `/health` checks: name, ok.
    pub health: Vec<(&'static str, bool)>,
    /// `/ready` checks: name, ok.
    pub ready: Vec<(&'static str, bool)>,
    /// A cluster node's state (`None` on a single node: no cluster gauges).
    pub cluster: Option<crate::cluster::ClusterState>,
}

/// Appends the `recordhub_cluster_*` gauges (classic text format) for a
/// cluster node. Written by hand rather than registered: they exist only on
/// a cluster node, and each is one atomic read.
pub(crate) fn write_cluster(out: &mut String, state: &crate::cluster::ClusterState) {
    use crate::cluster::Part;
    use std::fmt::Write as _;
    let part = state.part();
    let _ = writeln!(out, "# HELP recordhub_cluster_part This node's part in the cluster (1 for the current one).");
    let _ = writeln!(out, "# TYPE recordhub_cluster_part gauge");
    for (name, p) in [("following", Part::Following), ("active", Part::Active), ("stood_down", Part::StoodDown)] {
        let _ = writeln!(out, "recordhub_cluster_part{{part=\"{name}\"}} {}", u8::from(part == p));
    }
    for (name, help, v) in [
        ("publish_lag", "Entries committed here and not yet acknowledged by the stream.", state.publish_lag()),
        ("follow_lag", "Entries in the stream not yet in this node's journal.", state.follow_lag()),
        ("published_seq", "Highest journal seq the stream acknowledged from this node.", state.published()),
        ("stream_last_seq", "The stream's last sequence as last seen.", state.stream_last()),
        ("lease_revision", "The lease revision this node holds (0: none).", state.lease_revision()),
        ("nats_connected", "1 when connected to NATS.", u64::from(state.nats_connected())),
    ] {
        let _ = writeln!(out, "# HELP recordhub_cluster_{name} {help}");
        let _ = writeln!(out, "# TYPE recordhub_cluster_{name} gauge");
        let _ = writeln!(out, "recordhub_cluster_{name} {v}");
    }
}

/// The journal's footprint on disk.
#[derive(Debug, Default, Clone, Copy)]
pub struct JournalSize {
    pub bytes: u64,
    pub segments: u64,
}

impl JournalSize {
    /// Sums the segment files in `dir`: one `stat` per segment, so the cost is
    /// bounded by the segment count (a 64 MiB segment holds ~100k messages).
    pub fn of_dir(dir: &std::path::Path) -> JournalSize {
        let mut size = JournalSize::default();
        let Ok(entries) = std::fs::read_dir(dir) else { return size };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with(".seg") {
                size.segments += 1;
                size.bytes += e.metadata().map_or(0, |m| m.len());
            }
        }
        size
    }
}
