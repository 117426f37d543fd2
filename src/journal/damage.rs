//! Damage: bytes in a segment that are not valid records but are followed by
//! valid ones (so they are not a torn tail), and seqs that a commit record
//! says were committed but that are nowhere in the journal. Found by
//! [`Tracker`] while scanning, acted on by [`DamagePolicy`], and copied aside
//! by [`quarantine`].

use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::record::Commit;
use super::JournalError;

/// What `Journal::open` does when it finds damage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DamagePolicy {
    /// Refuse to open ([`JournalError::Damaged`]) and change nothing, unless
    /// every damaged range was already quarantined by an earlier start.
    #[default]
    Refuse,
    /// Copy the damaged bytes to `<journal>/quarantine/`, leave the segment
    /// as it is (readers skip the range), report the damage and go on.
    Quarantine,
}

/// One damaged range of a segment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// The segment file.
    pub segment: PathBuf,
    /// Where the damaged bytes start.
    pub offset: u64,
    /// How many bytes are damaged; 0 for seqs missing between segments.
    pub len: u64,
    /// The last intact entry before the range, if any.
    pub seq_before: Option<u64>,
    /// The first intact entry after the range, if any. Entries with seqs
    /// strictly between the two may have been lost.
    pub seq_after: Option<u64>,
    /// Why the first damaged record was rejected.
    pub reason: String,
    /// The side file the bytes were copied to, once quarantined.
    pub quarantined: Option<PathBuf>,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = |s: Option<u64>| s.map_or("none".to_owned(), |s| s.to_string());
        write!(
            f,
            "{} bytes {}..{} ({} bytes, between seq {} and seq {}): {}",
            self.segment.display(),
            self.offset,
            self.offset + self.len,
            self.len,
            seq(self.seq_before),
            seq(self.seq_after),
            self.reason
        )?;
        if let Some(q) = &self.quarantined {
            write!(f, "; copied to {}", q.display())?;
        }
        Ok(())
    }
}

/// The text of [`JournalError::Damaged`]: what was found and how to proceed.
pub(super) fn refusal_text(damage: &[Damage]) -> String {
    let list: Vec<String> = damage.iter().map(|d| d.to_string()).collect();
    format!(
        "the journal is damaged: {} damaged range(s): {}. Intact entries before and after each range are \
         still readable, but entries inside a range are lost unless restored. Nothing was changed. To proceed: \
         inspect with `recordhub journal --verify`; restore the segment from a backup or replica; or start with \
         store.on_journal_damage = \"quarantine\" in engine.toml to copy the damaged bytes to <journal>/quarantine/ \
         and continue without them",
        damage.len(),
        list.join("; ")
    )
}

/// Entry seqs held for the commit-record gap check before folding.
const MAX_SINCE_COMMIT: usize = 4096;

/// Accumulates damage while segments are scanned in order, filling in the
/// seqs around each range and checking commit records for missing seqs.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    pub(super) damage: Vec<Damage>,
    /// `damage[open..]` still wait for their `seq_after`.
    open: usize,
    /// The highest intact entry seq so far.
    pub(super) last_seq: Option<u64>,
    /// The highest seq seen in an entry or a commit record.
    pub(super) seen: Option<u64>,
    /// Damage was found since `seen` last grew, which explains missing seqs.
    damaged_since: bool,
    /// `seen` right after the last commit record.
    seen_at_commit: Option<u64>,
    /// Entry seqs since the last commit record (reused, not reallocated).
    since_commit: Vec<u64>,
}

impl Tracker {
    pub(super) fn entry(&mut self, seq: u64) {
        for d in &mut self.damage[self.open..] {
            d.seq_after = Some(seq);
        }
        self.open = self.damage.len();
        self.last_seq = Some(seq);
        if self.since_commit.len() >= MAX_SINCE_COMMIT {
            // Version 1 (no commit records) or a huge group: fold what is
            // held into the floor. That can only hide a gap, never invent one.
            self.seen_at_commit = self.seen_at_commit.max(self.since_commit.iter().copied().max());
            self.since_commit.clear();
        }
        self.since_commit.push(seq);
        self.saw(seq);
    }

    pub(super) fn commit(&mut self, segment: &Path, offset: u64, c: &Commit) {
        // The highest seq seen before this commit's group.
        let before = self.since_commit.iter().copied().filter(|&s| s < c.first).max();
        let before = before.max(self.seen_at_commit);
        self.since_commit.clear();
        if let Some(seen) = before.filter(|&seen| c.prev > seen && !self.damaged_since) {
            let reason = format!(
                "a commit record says seqs up to {} were committed, but the journal ends at {seen} before it \
                 (a segment file missing or replaced?)",
                c.prev
            );
            self.push(segment, offset, 0, reason);
        }
        self.saw(c.last);
        self.seen_at_commit = self.seen;
    }

    /// Seqs missing between segments (a version 1 segment whose successor
    /// does not continue it), unless damage already explains them.
    pub(super) fn missing(&mut self, segment: &Path, reason: String) {
        if !self.damaged_since {
            self.push(segment, 0, 0, reason);
        }
    }

    pub(super) fn invalid(&mut self, segment: &Path, offset: u64, len: u64, reason: String) {
        self.push(segment, offset, len, reason);
    }

    fn saw(&mut self, seq: u64) {
        if self.seen.is_none_or(|s| seq > s) {
            self.seen = Some(seq);
            self.damaged_since = false;
        }
    }

    fn push(&mut self, segment: &Path, offset: u64, len: u64, reason: String) {
        let d = Damage {
            segment: segment.to_path_buf(),
            offset,
            len,
            seq_before: self.last_seq,
            seq_after: None,
            reason,
            quarantined: None,
        };
        self.damage.push(d);
        self.damaged_since = true;
    }
}

/// `<journal>/quarantine/<segment file name>.<offset>` + `ext`.
fn side_path(journal_dir: &Path, d: &Damage, ext: &str) -> PathBuf {
    let name = d.segment.file_name().map_or("segment".into(), |n| n.to_string_lossy().into_owned());
    journal_dir.join("quarantine").join(format!("{name}.{}.{ext}", d.offset))
}

/// Whether an earlier start already quarantined this range (its note exists).
pub(super) fn already_quarantined(journal_dir: &Path, d: &Damage) -> Option<PathBuf> {
    let note = side_path(journal_dir, d, "json");
    let text = fs::read_to_string(&note).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    (json.get("len").and_then(|v| v.as_u64()) == Some(d.len)).then(|| side_path(journal_dir, d, "bin"))
}

/// Copies the damaged bytes to `<journal>/quarantine/<segment>.<offset>.bin`
/// with a JSON note beside it (`.json`), both synced. The segment itself is
/// not modified. Returns the `.bin` path.
pub(super) fn quarantine(journal_dir: &Path, d: &Damage) -> Result<PathBuf, JournalError> {
    let qdir = journal_dir.join("quarantine");
    fs::create_dir_all(&qdir).map_err(JournalError::io("create", &qdir))?;
    let bin = side_path(journal_dir, d, "bin");
    if d.len > 0 {
        let mut src = File::open(&d.segment).map_err(JournalError::io("open", &d.segment))?;
        src.seek(SeekFrom::Start(d.offset)).map_err(JournalError::io("seek", &d.segment))?;
        write_synced(&bin, |out| std::io::copy(&mut (&mut src).take(d.len), out).map(drop))?;
    }
    let mut note = serde_json::to_value(d).unwrap_or_default();
    if let Some(obj) = note.as_object_mut() {
        obj.insert("quarantined".into(), bin.display().to_string().into());
        obj.insert("quarantined_at_ms".into(), crate::pipeline::now_ms().into());
    }
    let note_path = side_path(journal_dir, d, "json");
    write_synced(&note_path, |out| writeln!(out, "{note}"))?;
    super::sync_dir(&qdir)?;
    Ok(bin)
}

/// Writes `path` through a temporary file, fsynced, then renamed into place.
fn write_synced(path: &Path, write: impl FnOnce(&mut File) -> std::io::Result<()>) -> Result<(), JournalError> {
    let tmp = path.with_extension("tmp");
    let mut out = File::create(&tmp).map_err(JournalError::io("create", &tmp))?;
    write(&mut out).map_err(JournalError::io("write", &tmp))?;
    out.sync_all().map_err(JournalError::io("fsync", &tmp))?;
    fs::rename(&tmp, path).map_err(JournalError::io("rename", &tmp))
}
