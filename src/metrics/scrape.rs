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
