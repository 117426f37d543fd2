//! The line format and the hash chain: what is hashed, exactly.
//!
//! One line per event, one JSON object per line (a SIEM can take the files
//! as they are), the event's fields first, then three written by the log:
//!
//! ```text
//! {"at_ms":…,"user":"dr.jones",…,"outcome":"shown","seq":7,"prev":"<hex>","hash":"<hex>"}
//! ```
//!
//! - `seq`: the line's position in the whole chain, from 1, across files.
//! - `prev`: the `hash` of the line before (across files: the first line of
//!   `audit-000002.jsonl` holds the hash of the last line of
//!   `audit-000001.jsonl`); the first line of a fresh log holds [`GENESIS`].
//! - `hash`: the SHA-256, in lower-case hex, of the line's own bytes without
//!   its final `,"hash":"…"` member, i.e. of `{…,"seq":7,"prev":"<hex>"}`
//!   exactly as written (UTF-8, no newline). `hash` is always the last
//!   member, so anyone can check a line with `sha256sum`: drop the last 75
//!   bytes (`,"hash":"` + 64 hex digits + `"}`), add `}`, hash.
//!
//! So every byte of a line is covered by its own `hash` (an edit anywhere,
//! the last line included, is seen), and `prev`/`seq` tie each line to the
//! one before (a removed, inserted or reordered line is seen). What a chain
//! cannot show by itself is lines cut from the end of the log: that is what
//! the chain head logged at INFO is for (an external copy of a recent head
//! proves the log reached at least that far).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `prev` of the first line of a fresh log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `,"hash":"`
const HASH_KEY: &[u8] = b",\"hash\":\"";
/// Bytes from the start of `,"hash":"` to the end of the line (no newline).
pub(super) const HASH_TAIL: usize = HASH_KEY.len() + 64 + 2;

/// SHA-256 of `parts` concatenated, in lower-case hex.
pub(super) fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    hex(ctx.finish().as_ref())
}

/// Lower-case hex (a digest is 32 bytes: not worth a crate).
pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Turns an event's JSON object into a chained line (with its newline) and
/// returns it with its hash. `event_json` is what `serde_json::to_vec` made
/// of an [`super::AuditEvent`]: an object with at least one member.
pub(super) fn seal(event_json: &[u8], seq: u64, prev: &str) -> (Vec<u8>, String) {
    let open = event_json.strip_suffix(b"}").unwrap_or(event_json);
    let mut line = Vec::with_capacity(event_json.len() + 64 + HASH_TAIL + 48);
    line.extend_from_slice(open);
    line.extend_from_slice(format!(",\"seq\":{seq},\"prev\":\"{prev}\"}}").as_bytes());
    let hash = sha256_hex(&[&line]);
    line.pop();
    line.extend_from_slice(HASH_KEY);
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}\n");
    (line, hash)
}

/// What the log wrote on a line, beside the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Links {
    pub seq: u64,
    pub prev: String,
    pub hash: String,
}

/// Why a line is not a sound chained line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LineFault {
    /// Not JSON, or missing `seq`/`prev`/`hash` in their places.
    Malformed(String),
    /// The bytes do not hash to the line's own `hash`: the line was edited.
    Changed,
}

#[derive(Deserialize)]
struct RawLinks {
    seq: u64,
    prev: String,
    hash: String,
}

/// Checks one line (without its newline) against its own hash and returns
/// its links.
pub(super) fn check(line: &[u8]) -> Result<Links, LineFault> {
    let links: RawLinks =
        serde_json::from_slice(line).map_err(|e| LineFault::Malformed(format!("not an audit line: {e}")))?;
    let n = line.len();
    if n < HASH_TAIL + 2 || &line[n - HASH_TAIL..n - HASH_TAIL + HASH_KEY.len()] != HASH_KEY || !line.ends_with(b"\"}")
    {
        return Err(LineFault::Malformed("\"hash\" is not the last member".into()));
    }
    let recorded = &line[n - 66..n - 2];
    if links.hash.as_bytes() != recorded || !is_hex64(&links.hash) || !is_hex64(&links.prev) {
        return Err(LineFault::Malformed("\"hash\" or \"prev\" is not 64 hex digits".into()));
    }
    if sha256_hex(&[&line[..n - HASH_TAIL], b"}"]) != links.hash {
        return Err(LineFault::Changed);
    }
    Ok(Links { seq: links.seq, prev: links.prev, hash: links.hash })
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `audit-000042.jsonl`.
pub(super) fn file_name(n: u64) -> String {
    format!("audit-{n:06}.jsonl")
}

/// The number in a chain file's name, or `None` for any other file
/// (`.damaged` side files, the pre-chain `audit.jsonl`).
pub(super) fn file_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The chain's files, in order: (number, path). A missing directory is an
/// empty log.
pub(super) fn files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if let Some(n) = entry.file_name().to_str().and_then(file_number) {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}
