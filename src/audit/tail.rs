//! The end of the chain on disk: the last line of a file (read backwards, so
//! opening a 64 MiB file costs a few reads), and a torn last line after a
//! crash, moved aside.
//!
//! A torn line is bytes after the last newline: a write the crash cut short.
//! Its `append` never returned, so no record was shown on its strength.
//! It is not deleted: the bytes are appended to `<file>.damaged` and synced
//! before the chain file is cut back to its last newline, and the caller
//! says so at WARN. Nothing before the last newline is ever rewritten.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const CHUNK: u64 = 64 * 1024;

/// A torn last line that was moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    /// The chain file it was cut from.
    pub file: PathBuf,
    /// Where the torn bytes started in it.
    pub offset: u64,
    pub bytes: u64,
    /// Where they are now.
    pub damaged: PathBuf,
}

/// The offset of the last `\n` before `end`, if any.
fn rfind_newline(file: &mut File, end: u64) -> io::Result<Option<u64>> {
    let mut hi = end;
    let mut buf = vec![0u8; CHUNK as usize];
    while hi > 0 {
        let lo = hi.saturating_sub(CHUNK);
        let len = (hi - lo) as usize;
        file.seek(SeekFrom::Start(lo))?;
        file.read_exact(&mut buf[..len])?;
        if let Some(i) = memchr::memrchr(b'\n', &buf[..len]) {
            return Ok(Some(lo + i as u64));
        }
        hi = lo;
    }
    Ok(None)
}

/// Moves the bytes after the last newline of `path` to `<path>.damaged`.
///
/// # Errors
/// The file could not be read, or the side file written, or the file cut.
pub(super) fn cut_torn_tail(path: &Path) -> io::Result<Option<Torn>> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let keep = match rfind_newline(&mut file, len)? {
        Some(nl) => nl + 1,
        None => 0,
    };
    if keep == len {
        return Ok(None);
    }
    let mut torn = Vec::with_capacity((len - keep) as usize);
    file.seek(SeekFrom::Start(keep))?;
    file.read_to_end(&mut torn)?;
    let mut damaged_path = path.as_os_str().to_owned();
    damaged_path.push(".damaged");
    let damaged_path = PathBuf::from(damaged_path);
    let mut damaged = OpenOptions::new().create(true).append(true).open(&damaged_path)?;
    damaged.write_all(&torn)?;
    damaged.write_all(b"\n")?;
    damaged.sync_all()?;
    file.set_len(keep)?;
    file.sync_all()?;
    Ok(Some(Torn { file: path.to_path_buf(), offset: keep, bytes: len - keep, damaged: damaged_path }))
}

/// The last line of `path` without its newline, or `None` for an empty
/// file. Expects the file to end with a newline (see [`cut_torn_tail`]).
///
/// # Errors
/// The file could not be read.
pub(super) fn last_line(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let end = len - 1;
    let start = rfind_newline(&mut file, end)?.map_or(0, |nl| nl + 1);
    let mut line = vec![0u8; (end - start) as usize];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut line)?;
    Ok(Some(line))
}
