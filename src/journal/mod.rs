//! The journal: the engine's source of truth.
//!
//! Every MLLP frame the engine receives is appended here with its metadata and
//! the outcome it was answered with, *before* the sender sees an AA. The sled
//! index is derived from the journal and can always be rebuilt from it.
//!
//! ```text
//! frame ──▶ parse ──▶ map ──▶ Journal::append (memory) ──▶ Journal::commit (write + fdatasync) ──▶ index ──▶ ACK
//! ```
//!
//! - [`Journal`] is the single writer. `append` only encodes into a buffer;
//!   `commit` makes everything appended since the previous commit durable with
//!   one write and one `fdatasync` (group commit), then writes a small commit
//!   record (no second sync: the next commit's `fdatasync` covers it). Readers
//!   only see entries that a commit record covers, so nothing is readable
//!   before it is durable. A failed commit burns its seqs: seqs are never
//!   reused. On `open` it scans every segment, truncates a torn tail left by a
//!   crash, and finds damage (invalid bytes followed by valid records), which
//!   it refuses or quarantines per [`DamagePolicy`], keeping every intact entry.
//! - [`JournalReader`] reads the same files without ever modifying them, so
//!   `reindex`, replication or an operator's tool can run beside a live server.
//!   It skips damaged ranges by resynchronising and reports them.
//!
//! The on-disk format is versioned and documented in `docs/journal-format.md`
//! for readers written in other languages.
//!
//! What it deliberately does not do: interpret the message (it stores the raw
//! bytes as received), index anything, delete old segments (retention is a
//! separate decision), or lock the directory against a second writer (the
//! caller must run one engine per journal directory).

mod damage;
mod entry;
pub mod query;
mod reader;
mod record;
mod recovery;
pub mod retention;
mod scan;
#[cfg(test)]
mod tests;
mod v1;
pub mod wire;
mod writer;

use std::io;
use std::path::{Path, PathBuf};

pub use damage::{Damage, DamagePolicy};
pub use entry::{Entry, EntryRef, OwnedReason, Reason, MAX_BODY_LEN};
pub use reader::{Entries, JournalReader, Resume};
pub use recovery::{Recovery, Truncation};
pub use writer::{Journal, JournalOptions};

/// Errors from opening, writing or reading the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file-system operation on the journal failed. The journal is still
    /// consistent on disk; retry later, or check free space and permissions on
    /// `path`.
    #[error("journal: could not {op} {path}")]
    Io {
        /// What was being done ("open", "write", "fdatasync", ...).
        op: &'static str,
        /// The segment file or journal directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A segment cannot be read at all (written by a newer format version, or
    /// not a segment). Nothing was modified: an operator must inspect it.
    #[error(
        "journal segment {segment} is unreadable at byte {offset}: {reason}; \
         nothing was changed; an operator must inspect the segment before the journal is used again"
    )]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the bad entry (or header) within the segment.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// Damage found at open under [`DamagePolicy::Refuse`]: bytes that are not
    /// valid records but are followed by valid ones, or committed seqs that
    /// are missing. Nothing was modified; the text says how to proceed.
    #[error("{}", damage::refusal_text(damage))]
    Damaged {
        /// Every damaged range found, in journal order.
        damage: Vec<Damage>,
    },
    /// An entry would be larger than the format allows; it was not appended.
    /// Lower the MLLP maximum frame size below the limit.
    #[error("journal entry body of {bytes} bytes exceeds the limit of {max} bytes; lower the maximum frame size")]
    TooLarge {
        /// The encoded body size that was refused.
        bytes: u64,
        /// [`MAX_BODY_LEN`].
        max: u64,
    },
}

impl JournalError {
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> JournalError + 'a {
        move |source| JournalError::Io { op, path: path.to_path_buf(), source }
    }
}

/// Every segment file starts with these four bytes.
const MAGIC: [u8; 4] = *b"RHJL";
/// The segment format version this code writes; it also reads version 1.
const FORMAT_VERSION: u16 = 2;
/// Segment header: magic, u16 LE version, 2 reserved zero bytes.
const HEADER_LEN: u64 = 8;
const SEGMENT_SUFFIX: &str = ".seg";
const SEGMENT_NAME_DIGITS: usize = 20;

/// The header every segment file starts with.
fn segment_header() -> [u8; HEADER_LEN as usize] {
    let v = FORMAT_VERSION.to_le_bytes();
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], v[0], v[1], 0, 0]
}

/// `<dir>/<first_seq, 20 digits>.seg`.
fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:0width$}{SEGMENT_SUFFIX}", width = SEGMENT_NAME_DIGITS))
}

/// The first seq encoded in a segment file name, or `None` for other files.
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment files in `dir`, sorted by first seq. Other files are ignored.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut segments = Vec::new();
    for item in std::fs::read_dir(dir).map_err(JournalError::io("list", dir))? {
        let item = item.map_err(JournalError::io("list", dir))?;
        let name = item.file_name();
        if let Some(first_seq) = name.to_str().and_then(parse_segment_name) {
            segments.push((first_seq, item.path()));
        }
    }
    segments.sort_unstable_by_key(|(first_seq, _)| *first_seq);
    Ok(segments)
}

/// Makes file creations, renames and removals in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    let d = std::fs::File::open(dir).map_err(JournalError::io("open", dir))?;
    d.sync_all().map_err(JournalError::io("fsync", dir))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn segment_names_roundtrip_and_sort() {
        let p = segment_path(Path::new("/j"), 42);
        assert_eq!(p, Path::new("/j/00000000000000000042.seg"));
        assert_eq!(parse_segment_name("00000000000000000042.seg"), Some(42));
        assert_eq!(parse_segment_name("00000000000000000042.seg.tmp"), None);
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_segment_name("99999999999999999999.seg"), None, "over u64::MAX");
    }

    #[test]
    fn header_is_magic_version_reserved() {
        assert_eq!(&segment_header(), b"RHJL\x02\x00\x00\x00");
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let e = JournalError::Corrupt {
            segment: PathBuf::from("/j/00000000000000000001.seg"),
            offset: 8,
            reason: "bad CRC".into(),
        };
        let text = e.to_string();
        assert!(text.contains("/j/00000000000000000001.seg"), "{text}");
        assert!(text.contains("operator"), "{text}");
        let d = Damage {
            segment: PathBuf::from("/j/00000000000000000001.seg"),
            offset: 100,
            len: 20,
            seq_before: Some(4),
            seq_after: Some(6),
            reason: "CRC32C mismatch".into(),
            quarantined: None,
        };
        let text = JournalError::Damaged { damage: vec![d] }.to_string();
        for want in ["bytes 100..120", "seq 4 and seq 6", "--verify", "backup", "on_journal_damage = \"quarantine\""] {
            assert!(text.contains(want), "{want}: {text}");
        }
    }
}
