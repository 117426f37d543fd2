//! `recordhub audit verify`: checks the whole chain across files and names
//! the first line (file:line) that was changed, removed, inserted or
//! reordered. Reads only, so it is safe while the server appends.
//!
//! Each line must hash to its own `hash` (else it was changed), carry the
//! next `seq` (else lines were removed, inserted or reordered before it),
//! and carry in `prev` the `hash` of the line before (else the line before
//! was replaced by a forged one). Files must run `audit-000001.jsonl`,
//! `audit-000002.jsonl`, … without a gap. Lines cut from the end leave a
//! sound chain: `--anchor HASH` (a chain head logged earlier, kept outside)
//! checks that the log still reaches that line.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::chain::{self, LineFault, GENESIS};

/// Where the chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line in `file` (0: the file as a whole).
    pub line: u64,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.what)
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub files: usize,
    /// Sound lines before the first problem (all of them when intact).
    pub lines: u64,
    /// `hash` of the last sound line.
    pub head: String,
    /// The first break, if any.
    pub problem: Option<Problem>,
    /// Not breaks: an unfinished last line, `.damaged` side files.
    pub notes: Vec<String>,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.problem.is_none()
    }
}

struct Walk {
    report: Report,
    seq: u64,
    prev: String,
    anchor: Option<String>,
    anchor_seen: bool,
}

impl Walk {
    /// Checks one line; `Err` is the first problem.
    fn line(&mut self, file: &Path, n: u64, line: &[u8]) -> Result<(), Problem> {
        let at = |what: String| Problem { file: file.to_path_buf(), line: n, what };
        let links = chain::check(line).map_err(|fault| match fault {
            LineFault::Changed => at("this line was changed: its bytes do not match its own hash".into()),
            LineFault::Malformed(why) => at(format!("this line was changed or damaged: {why}")),
        })?;
        let expected = self.seq + 1;
        if links.seq != expected {
            return Err(at(format!(
                "expected line {expected} of the chain, found line {}: a line was removed, inserted or reordered here",
                links.seq
            )));
        }
        if links.prev != self.prev {
            return Err(at(
                "its prev is not the hash of the line before: the line before it was replaced or reordered".into(),
            ));
        }
        if self.anchor.as_deref() == Some(links.hash.as_str()) {
            self.anchor_seen = true;
        }
        (self.seq, self.prev) = (links.seq, links.hash);
        self.report.lines += 1;
        Ok(())
    }

    fn file(&mut self, path: &Path, last: bool) -> Result<(), Problem> {
        let bytes = std::fs::read(path).map_err(|e| Problem {
            file: path.into(),
            line: 0,
            what: format!("cannot be read: {e}"),
        })?;
        let complete = memchr::memrchr(b'\n', &bytes).map_or(0, |nl| nl + 1);
        let mut n = 0;
        for line in bytes[..complete].split_inclusive(|&b| b == b'\n') {
            n += 1;
            self.line(path, n, &line[..line.len() - 1])?;
        }
        if complete < bytes.len() {
            let torn = bytes.len() - complete;
            if !last {
                let what = format!("{torn} bytes without a newline at the end of a file that is not the last");
                return Err(Problem { file: path.into(), line: n + 1, what });
            }
            self.report.notes.push(format!(
                "{}:{}: an unfinished last line ({torn} bytes): a write in progress, or cut short by a crash \
                 (never acknowledged); the next start moves it to a .damaged file",
                path.display(),
                n + 1
            ));
        }
        Ok(())
    }
}

/// Checks the chain in `audit_dir`. With `anchor`, also that a line with
/// that hash is still in it.
///
/// # Errors
/// The directory could not be listed.
pub fn verify(audit_dir: &Path, anchor: Option<&str>) -> io::Result<Report> {
    let files = chain::files(audit_dir)?;
    let mut walk = Walk {
        report: Report { files: files.len(), head: GENESIS.into(), ..Report::default() },
        seq: 0,
        prev: GENESIS.into(),
        anchor: anchor.map(|a| a.trim().to_ascii_lowercase()),
        anchor_seen: false,
    };
    for (i, (no, path)) in files.iter().enumerate() {
        let expected_no = i as u64 + 1;
        if *no != expected_no {
            let missing = audit_dir.join(chain::file_name(expected_no));
            let what =
                format!("this file is missing (the next file present is {}): lines were removed", path.display());
            walk.report.problem = Some(Problem { file: missing, line: 0, what });
            break;
        }
        if let Err(p) = walk.file(path, i + 1 == files.len()) {
            walk.report.problem = Some(p);
            break;
        }
    }
    walk.report.head = walk.prev.clone();
    if let (None, Some(a)) = (&walk.report.problem, &walk.anchor) {
        if !walk.anchor_seen {
            let what = format!(
                "the anchored chain head {a} is not in the log: lines were cut from its end, or it was rewritten"
            );
            let file = files.last().map_or_else(|| audit_dir.to_path_buf(), |(_, p)| p.clone());
            walk.report.problem = Some(Problem { file, line: 0, what });
        }
    }
    for entry in std::fs::read_dir(audit_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".damaged") {
            walk.report.notes.push(format!(
                "{}: bytes of torn lines moved aside at start-up (never acknowledged)",
                entry.path().display()
            ));
        }
    }
    Ok(walk.report)
}
