//! What `Journal::open` does before the first append: scan every segment,
//! tell a torn tail (invalid bytes with nothing valid after them, at the end of
//! the last segment: never acknowledged, cut off) from damage (invalid bytes
//! followed by a valid record, anywhere: refused or quarantined), keep every
//! intact entry, commit intact entries that a crash left without a commit
//! record, and find the seq to continue from so that no seq is ever reused.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::damage::{self, Damage, DamagePolicy, Tracker};
use super::record::{Commit, COMMIT_LEN};
use super::scan::{self, Item, SegmentScan};
use super::writer::{create_segment, open_rw};
use super::{list_segments, sync_dir, JournalError, HEADER_LEN};

/// What [`super::Journal::open`] found and repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files in the journal after recovery.
    pub segments: usize,
    /// Intact entries found.
    pub entries: u64,
    /// The highest intact entry's seq, 0 when there is none.
    pub last_seq: u64,
    /// The torn tail that was cut off, if any. Log it as a warning: these
    /// bytes were never acknowledged, so nothing acknowledged is lost.
    pub truncated: Option<Truncation>,
    /// Damage found (only when the policy let the journal open: quarantined
    /// now or by an earlier start). Log each at ERROR: entries inside a range
    /// are lost unless restored from a backup.
    pub damage: Vec<Damage>,
    /// Intact entries after the last commit record (the process died between
    /// their write and their commit record): kept and committed now. They
    /// may not have been acknowledged; a retransmission is a duplicate.
    pub uncommitted_kept: u64,
}

/// A torn tail removed by [`super::Journal::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The segment that was cut (or removed, when `offset` is 0).
    pub segment: PathBuf,
    /// Its new length.
    pub offset: u64,
    /// How many bytes were dropped.
    pub bytes_dropped: u64,
    /// Why the first dropped record was rejected.
    pub reason: String,
}

/// Where the writer goes on after recovery.
pub(super) struct Opened {
    pub(super) file: File,
    pub(super) seg_path: PathBuf,
    pub(super) seg_len: u64,
    pub(super) next_seq: u64,
    pub(super) committed_seq: u64,
}

/// The last segment, as the scan left it.
struct Last {
    path: PathBuf,
    version: u16,
    first_seq: u64,
    /// End of the valid data.
    end: u64,
    torn: Option<(u64, String)>,
    /// Intact entries not covered by a commit record: (first seq, the seq
    /// committed before it, count).
    uncommitted: Option<(u64, u64, u64)>,
}

/// Scans, applies `policy`, repairs. See the module doc.
pub(super) fn recover(dir: &Path, policy: DamagePolicy) -> Result<(Opened, Recovery), JournalError> {
    fs::create_dir_all(dir).map_err(JournalError::io("create", dir))?;
    let mut segments = list_segments(dir)?;
    let short = take_short_last_segment(&mut segments)?;
    let mut tracker = Tracker::default();
    let (mut entries, mut last) = (0, None);
    let mut v1_next: Option<u64> = None;
    for (i, (first_seq, path)) in segments.iter().enumerate() {
        if let Some(expected) = v1_next.filter(|&e| e != *first_seq) {
            let reason = format!("segment starts at seq {first_seq} but the previous segment ends before {expected}");
            tracker.missing(path, reason);
        }
        let l = scan_segment(path, *first_seq, i + 1 == segments.len(), &mut tracker, &mut entries)?;
        v1_next = (l.version == 1).then(|| tracker.last_seq.map_or(*first_seq, |s| s.max(*first_seq - 1) + 1));
        last = Some(l);
    }
    let mut damage = std::mem::take(&mut tracker.damage);
    apply_policy(dir, policy, &mut damage)?;
    let mut truncated = match short {
        Some((path, len)) => Some(remove_segment(dir, path, len)?),
        None => None,
    };
    let Some(last) = last else {
        let first_seq = truncated.as_ref().map_or(Ok(1), |t| first_seq_of(&t.segment))?;
        let (file, seg_path) = create_segment(dir, first_seq)?;
        sync_dir(dir)?;
        let opened = Opened { file, seg_path, seg_len: HEADER_LEN, next_seq: first_seq, committed_seq: 0 };
        let recovery = Recovery { segments: 1, entries: 0, last_seq: 0, truncated, damage, uncommitted_kept: 0 };
        return Ok((opened, recovery));
    };
    let seen = tracker.seen.unwrap_or(0);
    let next_seq = seen.max(last.first_seq.saturating_sub(1)) + 1;
    let mut file = open_rw(&last.path)?;
    if let Some((offset, reason)) = last.torn {
        let cut = cut_tail(&file, &last.path, offset, reason)?;
        truncated = Some(match truncated {
            Some(removed) => Truncation {
                reason: format!("{}; also removed {}: {}", cut.reason, removed.segment.display(), removed.reason),
                ..cut
            },
            None => cut,
        });
    }
    let (mut seg_path, mut seg_len, mut kept, mut count) = (last.path, last.end, 0, segments.len());
    if last.version == 1 {
        // Version 1 segments are only read now: go on in a version 2 one (it
        // replaces an empty version 1 segment of the same name).
        let before = list_segments(dir)?.len();
        (file, seg_path) = create_segment(dir, next_seq)?;
        sync_dir(dir)?;
        seg_len = HEADER_LEN;
        count += list_segments(dir)?.len() - before;
    } else if let Some((first, prev, n)) = last.uncommitted {
        let c = Commit { first, last: tracker.last_seq.unwrap_or(first), prev: prev.min(first - 1) };
        file.write_all_at(&c.encode(), seg_len).map_err(JournalError::io("write", &seg_path))?;
        file.sync_data().map_err(JournalError::io("fdatasync", &seg_path))?;
        seg_len += COMMIT_LEN as u64;
        kept = n;
    }
    let opened = Opened { file, seg_path, seg_len, next_seq, committed_seq: seen };
    let last_seq = tracker.last_seq.unwrap_or(0);
    Ok((opened, Recovery { segments: count, entries, last_seq, truncated, damage, uncommitted_kept: kept }))
}

/// Refuse: fail unless every range was quarantined before. Quarantine: copy
/// each range aside (once).
fn apply_policy(dir: &Path, policy: DamagePolicy, damage: &mut [Damage]) -> Result<(), JournalError> {
    for d in damage.iter_mut() {
        d.quarantined = damage::already_quarantined(dir, d);
        if d.quarantined.is_none() && policy == DamagePolicy::Quarantine {
            d.quarantined = Some(damage::quarantine(dir, d)?);
        }
    }
    if damage.iter().any(|d| d.quarantined.is_none()) {
        return Err(JournalError::Damaged { damage: damage.to_vec() });
    }
    Ok(())
}

fn scan_segment(
    path: &Path,
    first_seq: u64,
    is_last: bool,
    tracker: &mut Tracker,
    entries: &mut u64,
) -> Result<Last, JournalError> {
    let mut scan = match SegmentScan::open(path, first_seq) {
        Ok(scan) => scan,
        Err(scan::OpenError::Io(e)) => return Err(JournalError::io("read", path)(e)),
        Err(scan::OpenError::Unsupported(v)) => return Err(unsupported(path, v)),
        // Only a segment that is not the last gets here (see take_short_last_segment).
        Err(scan::OpenError::Short(len)) => {
            tracker.invalid(path, 0, len, format!("segment is {len} bytes, shorter than its header"));
            let end = len;
            return Ok(Last { path: path.into(), version: 2, first_seq, end, torn: None, uncommitted: None });
        }
    };
    let (mut torn, mut uncommitted, mut horizon) = (None, None::<(u64, u64, u64)>, 0);
    while let Some(item) = scan.next_item().map_err(JournalError::io("read", path))? {
        match item {
            Item::Entry { seq, .. } => {
                let before = tracker.seen.unwrap_or(0);
                tracker.entry(seq);
                *entries += 1;
                if is_last && scan.version == 2 && seq > horizon {
                    let (first, prev, n) = uncommitted.unwrap_or((seq, before, 0));
                    uncommitted = Some((first, prev, n + 1));
                }
            }
            Item::Commit { offset, commit } => {
                tracker.commit(path, offset, &commit);
                horizon = horizon.max(commit.last);
                if uncommitted.is_some() && tracker.last_seq.is_some_and(|s| commit.last >= s) {
                    uncommitted = None;
                }
            }
            Item::Invalid { offset, reason, trailing: true, .. } if is_last => torn = Some((offset, reason)),
            Item::Invalid { offset, len, reason, .. } => tracker.invalid(path, offset, len, reason),
        }
    }
    let end = torn.as_ref().map_or(scan.offset(), |(offset, _)| *offset);
    Ok(Last { path: path.into(), version: scan.version, first_seq, end, torn, uncommitted })
}

pub(super) fn unsupported(path: &Path, version: u16) -> JournalError {
    JournalError::Corrupt {
        segment: path.to_path_buf(),
        offset: 4,
        reason: format!("format version {version}; this build reads versions 1 and 2 (upgrade recordhub?)"),
    }
}

/// Takes the last segment out of the list if it is shorter than a header (a
/// crash while an older writer created it; this one renames complete files).
fn take_short_last_segment(segments: &mut Vec<(u64, PathBuf)>) -> Result<Option<(PathBuf, u64)>, JournalError> {
    let Some((_, path)) = segments.last() else {
        return Ok(None);
    };
    let len = fs::metadata(path).map_err(JournalError::io("stat", path))?.len();
    if len >= HEADER_LEN {
        return Ok(None);
    }
    let path = path.clone();
    segments.pop();
    Ok(Some((path, len)))
}

fn remove_segment(dir: &Path, path: PathBuf, len: u64) -> Result<Truncation, JournalError> {
    fs::remove_file(&path).map_err(JournalError::io("remove", &path))?;
    sync_dir(dir)?;
    let reason = format!("segment was {len} bytes, shorter than its header (crash while creating it); removed");
    Ok(Truncation { segment: path, offset: 0, bytes_dropped: len, reason })
}

fn first_seq_of(segment: &Path) -> Result<u64, JournalError> {
    let name = segment.file_name().and_then(|n| n.to_str());
    name.and_then(super::parse_segment_name).ok_or_else(|| JournalError::Corrupt {
        segment: segment.to_path_buf(),
        offset: 0,
        reason: "not a segment file name".to_owned(),
    })
}

/// Cuts the last segment at `offset` and syncs it.
fn cut_tail(file: &File, path: &Path, offset: u64, reason: String) -> Result<Truncation, JournalError> {
    let len = file.metadata().map_err(JournalError::io("stat", path))?.len();
    file.set_len(offset).map_err(JournalError::io("truncate", path))?;
    file.sync_all().map_err(JournalError::io("fsync", path))?;
    Ok(Truncation { segment: path.to_path_buf(), offset, bytes_dropped: len - offset, reason })
}
