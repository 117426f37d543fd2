//! Retention: retiring old journal segments (removed, or moved to an
//! archive directory), and finding where the dedup window starts.
//!
//! A segment is retired only when **both** hold: its newest entry is older
//! than the retention period, and every entry in it is applied to the index
//! (the next segment's name, a lower bound of its seqs, is at most
//! `applied_seq + 1`; the caller flushes the index first, so that
//! `applied_seq` is durable). Only a prefix of the journal is retired
//! (oldest first, stopping at the first segment that must stay), and never
//! the last segment, which the writer appends to. A journal whose oldest
//! segments are gone reads as a journal that starts later: the first
//! remaining commit record names seqs before it, which is not damage when
//! nothing before it was read (see `damage.rs`).
//!
//! What it deliberately does not do: decide when to run (the server does,
//! at start-up and hourly), or touch the index. A `reindex` after retention
//! rebuilds only what the journal still holds; [`retired`] tells it so.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{list_segments, sync_dir, JournalError, JournalReader};

/// The note left in the journal directory once segments were retired
/// (not a segment file, so readers ignore it).
pub const RETIRED_FILE: &str = "retired.json";

/// What to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Segments whose newest entry is older than this are retired.
    pub retain_ms: u64,
    /// Moved here instead of removed, when set.
    pub archive_dir: Option<PathBuf>,
}

/// What has been retired so far (`retired.json`), over every run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredMark {
    /// Every entry with a seq up to this one may be gone from the journal.
    pub up_to_seq: u64,
    /// Segments retired, in total.
    pub segments: u64,
    /// When the last one was (Unix ms).
    pub last_at_ms: u64,
    /// Where they went (`null`: removed).
    pub archive_dir: Option<PathBuf>,
}

/// What one run retired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Retired {
    /// The segment files retired, oldest first.
    pub segments: Vec<PathBuf>,
    /// Their bytes.
    pub bytes: u64,
    /// The highest seq they could hold (0: none retired).
    pub up_to_seq: u64,
}

/// The retirement note of `dir`, if segments were ever retired from it.
pub fn retired(dir: &Path) -> Option<RetiredMark> {
    let text = std::fs::read(dir.join(RETIRED_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Retires the segments of `dir` that [`Policy`] lets go, given that every
/// entry up to `applied_seq` is durably in the index. See the module doc.
///
/// # Errors
/// A segment cannot be read, moved or removed, or the note written. What was
/// retired before the failure stays retired (and is in the note).
pub fn retire(dir: &Path, policy: &Policy, applied_seq: u64, now_ms: u64) -> Result<Retired, JournalError> {
    let segments = list_segments(dir)?;
    let reader = JournalReader::open(dir)?;
    let mut done = Retired::default();
    let result = (|| {
        for pair in segments.windows(2) {
            // `windows(2)` yields slices of exactly two.
            let ((first, path), (next_first, _)) = (&pair[0], &pair[1]);
            if next_first.saturating_sub(1) > applied_seq || !older_than(&reader, *first, *next_first, policy, now_ms)?
            {
                break;
            }
            let bytes = std::fs::metadata(path).map_err(JournalError::io("stat", path))?.len();
            match &policy.archive_dir {
                Some(archive) => archive_segment(path, archive)?,
                None => std::fs::remove_file(path).map_err(JournalError::io("remove", path))?,
            }
            done.segments.push(path.clone());
            done.bytes += bytes;
            done.up_to_seq = next_first - 1;
        }
        Ok(())
    })();
    if !done.segments.is_empty() {
        sync_dir(dir)?;
        note(dir, policy, &done, now_ms)?;
    }
    result.map(|()| done)
}

/// Whether every entry of the segment `[first, next_first)` was received
/// before the retention period (an empty segment is).
fn older_than(
    reader: &JournalReader,
    first: u64,
    next_first: u64,
    policy: &Policy,
    now_ms: u64,
) -> Result<bool, JournalError> {
    let cutoff = now_ms.saturating_sub(policy.retain_ms);
    for entry in reader.iter_from(first) {
        let entry = entry?;
        if entry.seq >= next_first {
            break;
        }
        if entry.received_at_ms >= cutoff {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Moves a segment into `archive` durably: a rename when on the same file
/// system, else a copy, fsync and removal.
fn archive_segment(path: &Path, archive: &Path) -> Result<(), JournalError> {
    std::fs::create_dir_all(archive).map_err(JournalError::io("create", archive))?;
    let name = path.file_name().unwrap_or_default();
    let to = archive.join(name);
    if std::fs::rename(path, &to).is_err() {
        let tmp = archive.join(format!("{}.tmp", name.to_string_lossy()));
        std::fs::copy(path, &tmp).map_err(JournalError::io("copy", path))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(JournalError::io("fsync", &tmp))?;
        std::fs::rename(&tmp, &to).map_err(JournalError::io("rename", &tmp))?;
        std::fs::remove_file(path).map_err(JournalError::io("remove", path))?;
    }
    sync_dir(archive)
}

/// Adds this run to `retired.json` (written to a temporary file, then renamed).
fn note(dir: &Path, policy: &Policy, done: &Retired, now_ms: u64) -> Result<(), JournalError> {
    let mut mark = retired(dir).unwrap_or_default();
    mark.up_to_seq = mark.up_to_seq.max(done.up_to_seq);
    mark.segments += done.segments.len() as u64;
    mark.last_at_ms = now_ms;
    mark.archive_dir = policy.archive_dir.clone();
    let path = dir.join(RETIRED_FILE);
    let tmp = dir.join(format!("{RETIRED_FILE}.tmp"));
    let text = serde_json::to_vec_pretty(&mark).unwrap_or_default();
    std::fs::write(&tmp, text).map_err(JournalError::io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(JournalError::io("rename", &tmp))?;
    sync_dir(dir)
}

/// The first seq received at or after `since_ms`: dedup records of seqs
/// below it are outside the dedup window. Reads the first entry of each
/// segment, then one segment; `None` when the journal holds nothing that
/// recent (every seq is outside the window).
///
/// # Errors
/// The journal cannot be read.
pub fn first_seq_since(dir: &Path, since_ms: u64) -> Result<Option<u64>, JournalError> {
    let reader = JournalReader::open(dir)?;
    let mut start = 1;
    for (first, _) in list_segments(dir)? {
        match reader.iter_from(first).next().transpose()? {
            Some(entry) if entry.received_at_ms < since_ms => start = first,
            Some(_) => break,
            None => {}
        }
    }
    for entry in reader.iter_from(start) {
        let entry = entry?;
        if entry.received_at_ms >= since_ms {
            return Ok(Some(entry.seq));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{EntryRef, Journal, JournalOptions, Reason};

    const DAY: u64 = 86_400_000;

    /// Four segments of three entries each, received on days 1..=4.
    fn journal() -> (tempfile::TempDir, PathBuf) {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("journal");
        let opts = JournalOptions { segment_bytes: 300, ..JournalOptions::default() };
        let (mut j, _) = Journal::open(&dir, opts).unwrap();
        for day in 1..=4u64 {
            for _ in 0..3 {
                let e = EntryRef {
                    received_at_ms: day * DAY,
                    peer: "p",
                    sending_app: "PAS",
                    sending_facility: "RJ1",
                    control_id: "C",
                    message_type: "ADT^A01",
                    ack_code: "AA",
                    ack_sent: true,
                    reason: Reason::default(),
                    ack: b"",
                    raw: &[b'x'; 40],
                };
                j.append(&e).unwrap();
                j.commit().unwrap();
            }
        }
        (data, dir)
    }

    fn seqs(dir: &Path) -> Vec<u64> {
        JournalReader::open(dir).unwrap().iter_from(1).map(|e| e.unwrap().seq).collect()
    }

    #[test]
    fn old_applied_segments_go_and_the_rest_reads_and_reopens_without_damage() {
        let (_data, dir) = journal();
        let before = list_segments(&dir).unwrap().len();
        assert!(before >= 4, "{before} segments");
        let policy = Policy { retain_ms: 2 * DAY, archive_dir: None };
        let done = retire(&dir, &policy, 12, 5 * DAY).unwrap();
        assert!(!done.segments.is_empty(), "days 1 and 2 are older than two days");
        let left = seqs(&dir);
        assert!(left.first().is_some_and(|&s| s > 1 && s <= 7), "{left:?}");
        assert_eq!(left.last(), Some(&12));
        assert_eq!(retired(&dir).unwrap().up_to_seq, left[0] - 1);
        let (j, recovery) = Journal::open(&dir, JournalOptions::default()).unwrap();
        assert!(recovery.damage.is_empty(), "a retired prefix is not damage: {:?}", recovery.damage);
        assert_eq!(j.next_seq(), 13);
    }

    #[test]
    fn a_segment_with_an_unapplied_entry_is_kept() {
        let (_data, dir) = journal();
        let policy = Policy { retain_ms: 0, archive_dir: None };
        let done = retire(&dir, &policy, 0, 10 * DAY).unwrap();
        assert!(done.segments.is_empty(), "nothing applied, nothing retired");
        assert_eq!(seqs(&dir).len(), 12);
        assert!(retired(&dir).is_none());
    }

    #[test]
    fn archived_segments_are_moved_not_lost() {
        let (data, dir) = journal();
        let archive = data.path().join("archive");
        let policy = Policy { retain_ms: DAY, archive_dir: Some(archive.clone()) };
        let done = retire(&dir, &policy, 12, 10 * DAY).unwrap();
        let names: Vec<_> = done.segments.iter().map(|p| p.file_name().unwrap().to_owned()).collect();
        assert!(!names.is_empty());
        for n in &names {
            assert!(archive.join(n).exists(), "{n:?} archived");
        }
        assert!(!list_segments(&dir).unwrap().is_empty(), "the last segment always stays");
        assert_eq!(JournalReader::open(&archive).unwrap().iter_from(1).next().unwrap().unwrap().seq, 1);
    }

    #[test]
    fn the_dedup_window_starts_at_the_first_recent_entry() {
        let (_data, dir) = journal();
        assert_eq!(first_seq_since(&dir, 3 * DAY).unwrap(), Some(7));
        assert_eq!(first_seq_since(&dir, 0).unwrap(), Some(1));
        assert_eq!(first_seq_since(&dir, 5 * DAY).unwrap(), None);
    }
}
