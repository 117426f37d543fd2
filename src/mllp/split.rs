//! Splitting a file of HL7 messages (what an analyst saves from a capture,
//! an export or an editor) into the messages `recordhub send` frames one by
//! one.
//!
//! Two shapes are recognised. A file holding MLLP framing (a `VT` byte) is
//! cut into its frames, payloads unchanged. Any other file is read as text
//! lines: each message starts at a line beginning with `MSH`; LF, CRLF and
//! CR line ends all become the HL7 segment terminator CR; blank lines and
//! batch envelope lines (FHS, BHS, BTS, FTS; HL7 v2.5 chapter 2.10.3) are
//! dropped. It does not validate or parse the messages: the server does.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use super::codec::{Frame, MllpCodec, FS, VT};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
const BATCH_SEGMENTS: [&[u8; 3]; 4] = [b"FHS", b"BHS", b"BTS", b"FTS"];

/// Splits `file` into messages, each ending with exactly one CR (text
/// files) or exactly as framed (MLLP files).
///
/// Lines before the first `MSH` form a message of their own rather than
/// vanishing silently, so the server's reject makes them visible. In a
/// framed file, a last frame missing its end block is still returned.
pub fn split_messages(file: &[u8]) -> Vec<Vec<u8>> {
    if memchr::memchr(VT, file).is_some() {
        split_frames(file)
    } else {
        split_lines(file.strip_prefix(UTF8_BOM).unwrap_or(file))
    }
}

fn split_frames(file: &[u8]) -> Vec<Vec<u8>> {
    let mut codec = MllpCodec::new(usize::MAX);
    let mut buf = BytesMut::from(file);
    let mut messages = Vec::new();
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(Frame::Message(payload))) => messages.push(payload.to_vec()),
            // With no maximum, the codec never reports an oversize frame.
            Ok(Some(Frame::Oversize { .. })) | Ok(None) => return messages,
            Err(_) => {
                // Truncated last frame: the codec has dropped its bytes, so
                // take them from the file (after the last VT).
                if let Some(start) = memchr::memrchr(VT, file) {
                    messages.push(file[start + 1..].to_vec());
                }
                return messages;
            }
        }
    }
}

fn split_lines(text: &[u8]) -> Vec<Vec<u8>> {
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    for line in text.split(|&b| b == b'\r' || b == b'\n') {
        if is_blank(line) || BATCH_SEGMENTS.iter().any(|id| is_segment(line, id)) {
            continue;
        }
        if is_segment(line, b"MSH") && !current.is_empty() {
            messages.push(std::mem::take(&mut current));
        }
        current.extend_from_slice(line);
        current.push(b'\r');
    }
    if !current.is_empty() {
        messages.push(current);
    }
    messages
}

/// Empty, whitespace, or a stray end block left by a tool that wrote FS CR
/// after each message without the VT.
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| b.is_ascii_whitespace() || b == FS)
}

/// A segment ID is three characters followed by the field separator, which
/// is never alphanumeric (so `MSHX|` is not MSH; `MSH#@!$%` is).
fn is_segment(line: &[u8], id: &[u8; 3]) -> bool {
    line.starts_with(id) && line.get(3).is_none_or(|b| !b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"MSH|^~\\&|LAB|H|HUB|X|20250101||ORU^R01|A|P|2.5";
    const B: &[u8] = b"MSH|^~\\&|LAB|H|HUB|X|20250101||ADT^A01|B|P|2.5";

    fn expected() -> Vec<Vec<u8>> {
        vec![[A, b"\rPID|1\rOBX|1\r"].concat(), [B, b"\rPID|2\r"].concat()]
    }

    fn file(terminator: &str) -> Vec<u8> {
        let t = terminator.as_bytes();
        [A, t, b"PID|1", t, b"OBX|1", t, B, t, b"PID|2", t].concat()
    }

    #[test]
    fn lf_file_with_two_messages() {
        assert_eq!(split_messages(&file("\n")), expected());
    }

    #[test]
    fn crlf_file() {
        assert_eq!(split_messages(&file("\r\n")), expected());
    }

    #[test]
    fn cr_file() {
        assert_eq!(split_messages(&file("\r")), expected());
    }

    #[test]
    fn blank_lines_and_missing_final_newline() {
        let text = [b"\n\n", A, b"\n\nPID|1\r\n\r\nOBX|1\n  \n", B, b"\nPID|2"].concat();
        assert_eq!(split_messages(&text), expected());
    }

    #[test]
    fn bom_is_stripped() {
        let text = [UTF8_BOM, &file("\r\n")].concat();
        assert_eq!(split_messages(&text), expected());
    }

    #[test]
    fn framed_file_keeps_payloads_unchanged() {
        // LF inside a payload stays: framed payloads are not normalised.
        let text = b"\x0bMSH|a\nPID|1\r\x1c\r\n\x0bMSH|b\r\x1c\r\n";
        assert_eq!(split_messages(text), vec![b"MSH|a\nPID|1\r".to_vec(), b"MSH|b\r".to_vec()]);
    }

    #[test]
    fn framed_file_with_truncated_last_frame() {
        let text = b"\x0bMSH|a\r\x1c\r\x0bMSH|b\r";
        assert_eq!(split_messages(text), vec![b"MSH|a\r".to_vec(), b"MSH|b\r".to_vec()]);
    }

    #[test]
    fn stray_end_blocks_in_a_text_file_are_dropped() {
        let text = [A, b"\rPID|1\rOBX|1\r\x1c\r", B, b"\rPID|2\r\x1c\r"].concat();
        assert_eq!(split_messages(&text), expected());
    }

    #[test]
    fn custom_delimiters() {
        let text = b"MSH#@!$%#LAB#H\nPID#1\nMSH#@!$%#LAB#H\nPID#2\n";
        assert_eq!(
            split_messages(text),
            vec![b"MSH#@!$%#LAB#H\rPID#1\r".to_vec(), b"MSH#@!$%#LAB#H\rPID#2\r".to_vec()]
        );
    }

    #[test]
    fn batch_envelope_is_dropped() {
        let text = [b"FHS|^~\\&|LAB\nBHS|^~\\&|LAB\n", &file("\n")[..], b"BTS|2\nFTS|1\n"].concat();
        assert_eq!(split_messages(&text), expected());
    }

    #[test]
    fn mshx_does_not_start_a_message() {
        let text = [A, b"\nMSHX|1\n"].concat();
        assert_eq!(split_messages(&text), vec![[A, b"\rMSHX|1\r"].concat()]);
    }

    #[test]
    fn lines_before_the_first_msh_are_kept_apart() {
        let text = [b"PID|0\n", A, b"\n"].concat();
        assert_eq!(split_messages(&text), vec![b"PID|0\r".to_vec(), [A, b"\r"].concat()]);
    }

    #[test]
    fn empty_file() {
        assert!(split_messages(b"").is_empty());
        assert!(split_messages(UTF8_BOM).is_empty());
        assert!(split_messages(b"\r\n\r\n").is_empty());
    }
}
