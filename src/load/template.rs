//! The messages a load run sends: each file's messages as templates whose
//! MSH-10 is rewritten per send, so none is taken for a retransmission.

use std::io::Write as _;
use std::path::PathBuf;

use super::LoadError;
use crate::mllp::codec::{CR, FS, VT};
use crate::mllp::expect::AckExpected;
use crate::mllp::split::split_messages;

/// A short tag that differs between runs (hex of the wall clock in ms), so
/// control ids do not repeat across runs against the same store.
pub(super) fn run_tag() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("{:x}", ms & 0xfff_ffff)
}

/// One message, cut around the end of its MSH-10 so a suffix can be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Template {
    /// Everything up to the end of MSH-10.
    head: Vec<u8>,
    /// Where MSH-10 starts in `head`.
    id_start: usize,
    /// Everything after MSH-10 (from the separator or segment end on).
    tail: Vec<u8>,
}

impl Template {
    /// `None` when the message does not start with an MSH segment holding
    /// at least nine field separators (MSH-1 is the one after `MSH`, so
    /// MSH-10 starts after the ninth and ends at the tenth or the segment end).
    pub(super) fn new(message: &[u8]) -> Option<Template> {
        if !message.starts_with(b"MSH") || message.len() < 4 {
            return None;
        }
        let sep = message[3];
        let segment_end = memchr::memchr2(b'\r', b'\n', message).unwrap_or(message.len());
        let mut seps = memchr::memchr_iter(sep, &message[..segment_end]);
        let id_start = seps.nth(8)? + 1;
        let id_end = seps.next().unwrap_or(segment_end);
        Some(Template { head: message[..id_end].to_vec(), id_start, tail: message[id_end..].to_vec() })
    }

    /// Appends the unique control id of message `n` of connection `conn`.
    pub(super) fn write_id(&self, out: &mut Vec<u8>, run: &str, conn: usize, n: u64) {
        out.extend_from_slice(&self.head[self.id_start..]);
        // Writing to a Vec cannot fail.
        let _ = write!(out, "-{run}-L{conn}-{n}");
    }

    /// Appends the framed message (`VT`, payload, `FS CR`).
    pub(super) fn write_framed(&self, out: &mut Vec<u8>, run: &str, conn: usize, n: u64) {
        out.push(VT);
        out.extend_from_slice(&self.head[..self.id_start]);
        self.write_id(out, run, conn, n);
        out.extend_from_slice(&self.tail);
        out.extend_from_slice(&[FS, CR]);
    }
}

pub(super) fn load_templates(files: &[PathBuf]) -> Result<Vec<Template>, LoadError> {
    let mut templates = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: path.clone(), source })?;
        for (index, message) in split_messages(&bytes).iter().enumerate() {
            let template = Template::new(message)
                .ok_or_else(|| LoadError::NoControlId { path: path.clone(), index: index + 1 })?;
            let msh15 = match AckExpected::of(message) {
                AckExpected::Always => None,
                AckExpected::Never => Some("NE"),
                AckExpected::OnlyOnError => Some("ER"),
                AckExpected::OnlyOnSuccess => Some("SU"),
            };
            if let Some(msh15) = msh15 {
                return Err(LoadError::NoAckRequested { path: path.clone(), index: index + 1, msh15 });
            }
            templates.push(template);
        }
    }
    if templates.is_empty() {
        return Err(LoadError::NoMessages);
    }
    Ok(templates)
}
