//! Intake: read a frame's MSH and decide whether the engine takes the message.
//!
//! This is the first half of the pipeline, before anything is stored: parse,
//! echo fields for the ACK, acknowledgement mode, and the envelope checks of
//! hl7-ack.md ("Which code"): message type, version, processing id, control
//! id. It does not map content; the mapping stage adds its own verdicts.

use crate::ack::{self, Location, Mode, Problem, Verdict, VersionNum};
use crate::config::UnknownCharset;
use crate::hl7::{Charset, Message, ParseError, ParseErrorKind, ParseOptions, Segment};

/// Longest MSH-18 value repeated in an ACK or a log line; longer ones are cut.
const CHARSET_ECHO_CHARS: usize = 32;

/// Message types this engine handles (MSH-9.1). Anything else is AR 200.
pub const HANDLED_TYPES: [&str; 3] = ["ADT", "ORU", "MDM"];

/// What the listener accepts, from `engine.toml`.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Accepted MSH-11.1 values (default P, D, T).
    pub processing_ids: Vec<String>,
    pub parse: ParseOptions,
    /// What an MSH-18 we cannot decode gets (`hl7.unknown_charset`; default reject).
    pub unknown_charset: UnknownCharset,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            processing_ids: vec!["P".into(), "D".into(), "T".into()],
            parse: ParseOptions::default(),
            unknown_charset: UnknownCharset::default(),
        }
    }
}

/// The envelope of one frame: enough to answer, log and journal it.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// Fields the ACK echoes (raw, as the sender wrote them).
    pub inbound: ack::Inbound,
    /// MSH-9 as written, e.g. `ADT^A01^ADT_A01`.
    pub message_type: String,
    /// MSH-9.1, e.g. `ADT`.
    pub message_code: String,
}

/// The result of intake.
pub struct Inspection<'a> {
    pub envelope: Envelope,
    pub mode: Mode,
    /// The parsed message when it parsed.
    pub message: Option<Message<'a>>,
    /// `Accepted` here means only "passed intake"; mapping and storage may still fail it.
    pub verdict: Verdict,
}

/// Parses `raw` and checks its envelope. Never fails: a frame that cannot be
/// read at all is a `Rejected` verdict with default delimiters.
pub fn inspect<'a>(raw: &'a [u8], policy: &Policy) -> Inspection<'a> {
    match Message::parse_with(raw, &policy.parse) {
        Ok(msg) => {
            let (envelope, mode) = read_envelope(msg.header(), &msg);
            let verdict = check_envelope(&envelope, msg.header(), policy);
            Inspection { envelope, mode, message: Some(msg), verdict }
        }
        Err(err) => inspect_broken(raw, &err, policy),
    }
}

/// A frame whose body did not parse: answer from its MSH alone when that
/// much is readable, so the sender still gets its own delimiters and MSA-2.
fn inspect_broken<'a>(raw: &'a [u8], err: &ParseError, policy: &Policy) -> Inspection<'a> {
    let header_only = first_segment(raw).and_then(|h| Message::parse_with(h, &policy.parse).ok());
    let Some(head) = header_only else {
        let problem = Problem::new(err.kind.hl7_error_code(), err.kind.to_string());
        return Inspection {
            envelope: Envelope::default(),
            mode: Mode::Original,
            message: None,
            verdict: Verdict::Rejected(problem),
        };
    };
    let (envelope, mode) = read_envelope(head.header(), &head);
    let verdict = match err.kind {
        ParseErrorKind::MissingMsh | ParseErrorKind::BadEncodingCharacters | ParseErrorKind::Empty => {
            Verdict::Rejected(Problem::new(err.kind.hl7_error_code(), err.kind.to_string()))
        }
        // A broken segment after a readable MSH is a content error: the
        // sender's message is wrong and resending it will not help.
        _ => {
            // The name of a broken segment is message bytes: neither the ACK
            // nor the log repeats it unless it is a well-formed segment id.
            let name = &err.segment_name;
            let well_formed = name.len() == 3 && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            let segment = if well_formed { name.clone() } else { String::new() };
            let loc = Location { segment, sequence: err.segment, field: err.field, ..Location::default() };
            let text = format!("segment {} at byte {}: {}", err.segment, err.offset, err.kind);
            Verdict::Error(Problem::new(err.kind.hl7_error_code(), text).at(loc))
        }
    };
    Inspection { envelope, mode, message: None, verdict }
}

/// The bytes of the first segment (after an optional BOM), if any.
fn first_segment(raw: &[u8]) -> Option<&[u8]> {
    let body = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    let end = memchr::memchr2(b'\r', b'\n', body).unwrap_or(body.len());
    let start = raw.len() - body.len();
    (end > 0).then(|| &raw[..start + end])
}

fn text(seg: Segment<'_>, field: usize) -> String {
    String::from_utf8_lossy(seg.field(field).raw()).into_owned()
}

fn component(seg: Segment<'_>, field: usize, c: usize) -> String {
    String::from_utf8_lossy(seg.field(field).component(c).raw()).into_owned()
}

fn read_envelope(msh: Segment<'_>, msg: &Message<'_>) -> (Envelope, Mode) {
    let inbound = ack::Inbound {
        delimiters: Some(msg.delimiters()),
        sending_app: text(msh, 3),
        sending_facility: text(msh, 4),
        receiving_app: text(msh, 5),
        receiving_facility: text(msh, 6),
        event: component(msh, 9, 2),
        control_id: text(msh, 10),
        processing_id: component(msh, 11, 1),
        version: component(msh, 12, 1),
        charset: String::from_utf8_lossy(msh.field(18).repetition(1).raw()).into_owned(),
    };
    let mode = Mode::from_msh(&text(msh, 15), &text(msh, 16));
    let envelope = Envelope { message_type: text(msh, 9), message_code: component(msh, 9, 1), inbound };
    (envelope, mode)
}

fn check_envelope(env: &Envelope, msh: Segment<'_>, policy: &Policy) -> Verdict {
    let at = |field| Location::field("MSH", 1, field);
    if env.message_code.is_empty() {
        return Verdict::Error(Problem::new(101, "MSH-9 message type is empty").at(at(9)));
    }
    if !HANDLED_TYPES.contains(&env.message_code.as_str()) {
        let text = format!("message type {} is not handled (ADT, ORU and MDM are)", env.message_code);
        return Verdict::Rejected(Problem::new(200, text).at(at(9)));
    }
    let v = VersionNum::parse(&env.inbound.version);
    if !(VersionNum(2, 2, 0)..VersionNum(2, 9, 0)).contains(&v) {
        let text = format!("version '{}' is not accepted (2.2 to 2.8 are)", env.inbound.version);
        return Verdict::Rejected(Problem::new(203, text).at(at(12)));
    }
    if !policy.processing_ids.iter().any(|p| p == &env.inbound.processing_id) {
        let text = format!("processing id '{}' is not accepted by this listener", env.inbound.processing_id);
        return Verdict::Rejected(Problem::new(202, text).at(at(11)));
    }
    if msh.field(10).is_empty() {
        return Verdict::Error(Problem::new(101, "MSH-10 message control id is empty").at(at(10)));
    }
    check_charset(&env.inbound.charset, policy)
}

/// Issue 8, hole 8: an MSH-18 we do not know was decoded as Windows-1252 without
/// a word. Rejected with table 0357 code 103 "table value not found": MSH-18 is
/// coded from HL7 table 0211 and this value is not one we support. Not 203 (that
/// is MSH-12, the version) nor 207 (an engine fault the sender should retry);
/// AR rather than AE because the content may be right: the engine cannot read it
/// (an analyst may choose `fallback`, or the sender may send a supported charset).
fn check_charset(charset: &str, policy: &Policy) -> Verdict {
    if charset.trim().is_empty() || Charset::from_msh18(charset.as_bytes()).is_some() {
        return Verdict::Accepted;
    }
    let shown: String = charset.trim().chars().take(CHARSET_ECHO_CHARS).collect();
    match policy.unknown_charset {
        UnknownCharset::Reject => {
            let text =
                format!("MSH-18 character set '{shown}' is not supported; supported: {}", Charset::msh18_names());
            Verdict::Rejected(Problem::new(103, text).at(Location::field("MSH", 1, 18)))
        }
        UnknownCharset::Fallback => {
            crate::telemetry::count_charset_fallback();
            tracing::warn!(charset = %shown, fallback = policy.parse.fallback_charset.name(),
                "MSH-18 names an unknown character set; decoding with the fallback (hl7.unknown_charset = \"fallback\")");
            Verdict::Accepted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(raw: &str) -> Verdict {
        inspect(raw.as_bytes(), &Policy::default()).verdict
    }

    fn code(v: &Verdict) -> Option<u16> {
        match v {
            Verdict::Accepted => None,
            Verdict::Error(p) | Verdict::Rejected(p) => Some(p.code),
        }
    }

    #[test]
    fn envelope_checks_pick_the_table_0357_code() {
        let ok = "MSH|^~\\&|PAS|RJ1|RH|LCR|20260101||ADT^A01|1|P|2.4\rPID|1\r";
        assert_eq!(verdict(ok), Verdict::Accepted);
        let orm = verdict("MSH|^~\\&|PAS|RJ1|RH|LCR|20260101||ORM^O01|1|P|2.4\r");
        assert!(matches!(orm, Verdict::Rejected(_)) && code(&orm) == Some(200));
        assert_eq!(code(&verdict("MSH|^~\\&|PAS|RJ1|RH|LCR|20260101||ADT^A01|1|P|3.0\r")), Some(203));
        assert_eq!(code(&verdict("MSH|^~\\&|PAS|RJ1|RH|LCR|20260101||ADT^A01|1|X|2.4\r")), Some(202));
        let no_id = verdict("MSH|^~\\&|PAS|RJ1|RH|LCR|20260101||ADT^A01||P|2.4\r");
        assert!(matches!(no_id, Verdict::Error(_)) && code(&no_id) == Some(101));
        assert_eq!(code(&verdict("MSH|^~\\&|PAS|RJ1|RH|LCR|20260101||ADT^A01|1|P|2.8.2\r")), None);
    }

    #[test]
    fn broken_segment_after_readable_msh_is_a_content_error_with_location() {
        let i =
            inspect(b"MSH|^~\\&|PAS|RJ1|RH|LCR|20260101||ADT^A01|C9|P|2.5\rPID|1\rp!d|x\rPV1|1\r", &Policy::default());
        assert_eq!(i.envelope.inbound.control_id, "C9");
        match i.verdict {
            Verdict::Error(p) => assert_eq!(p.location.map(|l| l.sequence), Some(3)),
            other => panic!("expected AE, got {other:?}"),
        }
    }

    #[test]
    fn hole_8_unknown_charset_is_rejected_at_msh_18_naming_it() {
        let raw = "MSH|^~\\&|PAS|RJ1|RH|LCR|20260101||ADT^A01|C1|P|2.5||||||ISO IR87\rPID|1\r";
        match verdict(raw) {
            Verdict::Rejected(p) => {
                assert_eq!(p.code, 103);
                assert_eq!(p.location, Some(Location::field("MSH", 1, 18)));
                assert!(p.text.contains("'ISO IR87'") && p.text.contains("UNICODE UTF-8"), "{}", p.text);
            }
            other => panic!("expected AR, got {other:?}"),
        }
        let known = "MSH|^~\\&|PAS|RJ1|RH|LCR|20260101||ADT^A01|C1|P|2.5||||||8859/1\rPID|1\r";
        assert_eq!(verdict(known), Verdict::Accepted);
    }

    #[test]
    fn hole_8_unknown_charset_with_fallback_is_accepted_and_counted() {
        let policy = Policy { unknown_charset: UnknownCharset::Fallback, ..Policy::default() };
        let before = crate::telemetry::charset_fallbacks();
        let raw = b"MSH|^~\\&|PAS|RJ1|RH|LCR|20260101||ADT^A01|C1|P|2.5||||||KLINGON\rPID|1||||M\xfcller\r";
        let i = inspect(raw, &policy);
        assert_eq!(i.verdict, Verdict::Accepted);
        assert!(crate::telemetry::charset_fallbacks() > before, "the fallback is counted");
        let msg = i.message.expect("parsed");
        assert_eq!(msg.charset(), Charset::Windows1252);
    }

    #[test]
    fn unreadable_frame_is_rejected_without_envelope() {
        let i = inspect(b"garbage", &Policy::default());
        assert!(matches!(i.verdict, Verdict::Rejected(_)));
        assert_eq!(i.envelope.inbound.control_id, "");
    }
}
