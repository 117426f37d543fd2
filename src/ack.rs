//! ACK building: the one place that turns an outcome into MSH/MSA/ERR bytes.
//!
//! The contract is `../shared/research/hl7-ack.md` (HL7 v2.5.1 ch. 2, 2.9 and
//! 2.15; tables 0008, 0155, 0357). This module decides nothing about *why* a
//! message was accepted or rejected: the pipeline hands it a [`Verdict`], and
//! it renders the reply in the sender's own delimiters and version layout.
//! It never copies patient data into an ACK: only MSH routing fields, the
//! inbound control id, and our own fixed error texts.

use crate::hl7::Delimiters;

/// MSA-1 (HL7 table 0008).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// Original mode: application accept.
    AA,
    /// Original mode: application error (content wrong; resending will not help).
    AE,
    /// Original mode: application reject (not accepted; may be retried later).
    AR,
    /// Enhanced mode: commit accept.
    CA,
    /// Enhanced mode: commit error.
    CE,
    /// Enhanced mode: commit reject.
    CR,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    /// True for AA and CA: the message was durably accepted.
    pub fn is_accept(self) -> bool {
        matches!(self, AckCode::AA | AckCode::CA)
    }
}

/// What happened to a message, independent of acknowledgement mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stored durably (and mapped/indexed).
    Accepted,
    /// Content error: AE / CE.
    Error(Problem),
    /// Not accepted: AR / CR.
    Rejected(Problem),
}

/// An entry of HL7 table 0357 plus where it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Table 0357 code: 100, 101, 102, 103, 200, 201, 202, 203, 207.
    pub code: u16,
    /// Operator-facing text for ERR-8 / MSA-3. Never contains message content.
    pub text: String,
    pub location: Option<Location>,
}

impl Problem {
    pub fn new(code: u16, text: impl Into<String>) -> Problem {
        Problem { code, text: text.into(), location: None }
    }

    pub fn at(mut self, location: Location) -> Problem {
        self.location = Some(location);
        self
    }
}

/// ERR-2 (ERL): segment id, its occurrence, field, repetition, component, sub-component.
/// Zero means "not applicable" and is left empty in the ACK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub segment: String,
    pub sequence: usize,
    pub field: usize,
    pub repetition: usize,
    pub component: usize,
    pub subcomponent: usize,
}

impl Location {
    pub fn field(segment: &str, sequence: usize, field: usize) -> Location {
        Location { segment: segment.to_string(), sequence, field, ..Location::default() }
    }
}

/// Short texts for table 0357 codes (ERR-3.2).
pub fn code_text(code: u16) -> &'static str {
    match code {
        0 => "Message accepted",
        100 => "Segment sequence error",
        101 => "Required field missing",
        102 => "Data type error",
        103 => "Table value not found",
        200 => "Unsupported message type",
        201 => "Unsupported event code",
        202 => "Unsupported processing id",
        203 => "Unsupported version id",
        204 => "Unknown key identifier",
        205 => "Duplicate key identifier",
        206 => "Application record locked",
        _ => "Application internal error",
    }
}

/// MSH-15 accept-acknowledgement condition (HL7 table 0155).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptCondition {
    Always,
    Never,
    OnError,
    OnSuccess,
}

/// Original mode (MSH-15 and MSH-16 empty) or enhanced mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Original,
    Enhanced(AcceptCondition),
}

impl Mode {
    /// From raw MSH-15 and MSH-16. Enhanced mode with an empty or unknown
    /// MSH-15 means `AL`: an unknown value must not silence the ACK.
    pub fn from_msh(msh15: &str, msh16: &str) -> Mode {
        if msh15.is_empty() && msh16.is_empty() {
            return Mode::Original;
        }
        Mode::Enhanced(match msh15 {
            "NE" => AcceptCondition::Never,
            "ER" => AcceptCondition::OnError,
            "SU" => AcceptCondition::OnSuccess,
            _ => AcceptCondition::Always,
        })
    }

    pub fn code(self, verdict: &Verdict) -> AckCode {
        match (self, verdict) {
            (Mode::Original, Verdict::Accepted) => AckCode::AA,
            (Mode::Original, Verdict::Error(_)) => AckCode::AE,
            (Mode::Original, Verdict::Rejected(_)) => AckCode::AR,
            (Mode::Enhanced(_), Verdict::Accepted) => AckCode::CA,
            (Mode::Enhanced(_), Verdict::Error(_)) => AckCode::CE,
            (Mode::Enhanced(_), Verdict::Rejected(_)) => AckCode::CR,
        }
    }

    /// Whether an ACK with this code is sent at all (MSH-15 in enhanced mode).
    pub fn sends(self, code: AckCode) -> bool {
        match self {
            Mode::Original | Mode::Enhanced(AcceptCondition::Always) => true,
            Mode::Enhanced(AcceptCondition::Never) => false,
            Mode::Enhanced(AcceptCondition::OnError) => !code.is_accept(),
            Mode::Enhanced(AcceptCondition::OnSuccess) => code.is_accept(),
        }
    }
}

/// The inbound MSH fields an ACK echoes, as raw (still escaped) text, so they
/// go back exactly as the sender wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inbound {
    pub delimiters: Option<Delimiters>,
    pub sending_app: String,
    pub sending_facility: String,
    pub receiving_app: String,
    pub receiving_facility: String,
    /// MSH-9.2, the trigger event.
    pub event: String,
    pub control_id: String,
    pub processing_id: String,
    pub version: String,
    pub charset: String,
}

/// Our own identity and the ACK's control id.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    pub application: &'a str,
    pub facility: &'a str,
    /// MSH-10 of the ACK: unique per ACK (the pipeline derives it from the journal sequence).
    pub control_id: &'a str,
    /// MSH-7 of the ACK, already formatted as an HL7 timestamp.
    pub timestamp: &'a str,
}

/// Version used for the ACK layout when the inbound MSH-12 could not be read.
const FALLBACK_VERSION: &str = "2.5";

/// Builds the ACK bytes (without MLLP framing; segments end with CR).
pub fn build(inbound: &Inbound, me: &Sender<'_>, code: AckCode, verdict: &Verdict) -> Vec<u8> {
    let d = inbound.delimiters.unwrap_or(Delimiters::DEFAULT);
    let version = if inbound.version.is_empty() { FALLBACK_VERSION } else { inbound.version.as_str() };
    let v = VersionNum::parse(version);
    let mut w = Writer { out: Vec::with_capacity(256), d };

    w.raw(b"MSH");
    w.out.push(d.field);
    let (enc, n) = d.msh2();
    w.raw(&enc[..n]);
    // MSH-3/4: we answer as the application the sender addressed.
    w.sep();
    w.raw_or(&inbound.receiving_app, me.application);
    w.sep();
    w.raw_or(&inbound.receiving_facility, me.facility);
    w.sep();
    w.str(&inbound.sending_app);
    w.sep();
    w.str(&inbound.sending_facility);
    w.sep();
    w.str(me.timestamp);
    w.sep(); // MSH-8 security
    w.sep();
    w.raw(b"ACK");
    // MSH-9.3 message structure exists from v2.3.1.
    let structure = v >= VersionNum(2, 3, 1);
    if structure || !inbound.event.is_empty() {
        w.out.push(d.component);
        w.str(&inbound.event);
    }
    if structure {
        w.out.push(d.component);
        w.raw(b"ACK");
    }
    w.sep();
    w.str(me.control_id);
    w.sep();
    w.str(if inbound.processing_id.is_empty() { "P" } else { &inbound.processing_id });
    w.sep();
    w.str(version);
    if !inbound.charset.is_empty() {
        // MSH-13 .. MSH-17 empty, MSH-18 charset.
        for _ in 13..=18 {
            w.sep();
        }
        w.str(&inbound.charset);
    }
    w.out.push(b'\r');

    w.raw(b"MSA");
    w.sep();
    w.raw(code.as_str().as_bytes());
    w.sep();
    w.str(&inbound.control_id);
    // MSA-3 is deprecated from v2.5 but still read by older senders.
    if v < VersionNum(2, 5, 0) {
        w.sep();
        match verdict {
            Verdict::Accepted => w.text(code_text(0)),
            Verdict::Error(p) | Verdict::Rejected(p) => w.text(&p.text),
        }
    }
    w.out.push(b'\r');

    if let Verdict::Error(p) | Verdict::Rejected(p) = verdict {
        if v >= VersionNum(2, 5, 0) {
            w.err_v25(p);
        } else {
            w.err_v2x(p);
        }
    }
    w.out
}

struct Writer {
    out: Vec<u8>,
    d: Delimiters,
}

impl Writer {
    fn raw(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    fn sep(&mut self) {
        self.out.push(self.d.field);
    }

    /// A value copied from the inbound MSH: already encoded in these delimiters.
    fn str(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    fn raw_or(&mut self, s: &str, default: &str) {
        if s.is_empty() {
            self.text(default);
        } else {
            self.str(s);
        }
    }

    /// Our own free text: every delimiter in it is escaped (HL7 2.7.4), or
    /// replaced by a space when the sender declared no escape character.
    fn text(&mut self, s: &str) {
        let d = self.d;
        for &b in s.as_bytes() {
            let esc = if b == d.field {
                Some(b'F')
            } else if b == d.component {
                Some(b'S')
            } else if b == d.repetition {
                Some(b'R')
            } else if Some(b) == d.subcomponent {
                Some(b'T')
            } else if Some(b) == d.escape {
                Some(b'E')
            } else if b == b'\r' || b == b'\n' {
                self.out.push(b' ');
                continue;
            } else {
                None
            };
            match (esc, d.escape) {
                (None, _) => self.out.push(b),
                (Some(e), Some(x)) => self.out.extend_from_slice(&[x, e, x]),
                (Some(_), None) => self.out.push(b' '),
            }
        }
    }

    fn num(&mut self, n: usize) {
        if n > 0 {
            self.out.extend_from_slice(n.to_string().as_bytes());
        }
    }

    /// An ERL/ELD location: the segment id, then each number as a component
    /// (zero written as an empty component).
    fn location(&mut self, segment: &str, parts: &[usize]) {
        self.text(segment);
        for &n in parts {
            self.out.push(self.d.component);
            self.num(n);
        }
    }

    /// v2.5+: ERR-2 location, ERR-3 code, ERR-4 severity, ERR-8 user message.
    fn err_v25(&mut self, p: &Problem) {
        let c = self.d.component;
        self.raw(b"ERR");
        self.sep(); // ERR-1 (backward compatible ELD) left empty
        self.sep();
        if let Some(l) = &p.location {
            self.location(&l.segment, &[l.sequence, l.field, l.repetition, l.component, l.subcomponent]);
            trim_trailing(&mut self.out, c);
        }
        self.sep();
        self.num(p.code as usize);
        self.out.push(c);
        self.text(code_text(p.code));
        self.out.push(c);
        self.raw(b"HL70357");
        self.sep();
        self.raw(b"E");
        self.raw(&[self.d.field; 4]); // ERR-5 .. ERR-7 empty
        self.text(&p.text);
        self.out.push(b'\r');
    }

    /// Before v2.5: ERR-1 ELD `segment^sequence^field^component^code&text&HL70357`.
    fn err_v2x(&mut self, p: &Problem) {
        let c = self.d.component;
        let sub = self.d.subcomponent;
        self.raw(b"ERR");
        self.sep();
        let l = p.location.clone().unwrap_or_default();
        self.location(&l.segment, &[l.sequence, l.field, l.component]);
        self.out.push(c);
        self.num(p.code as usize);
        if let Some(s) = sub {
            self.out.push(s);
            self.text(code_text(p.code));
            self.out.push(s);
            self.raw(b"HL70357");
        }
        self.out.push(b'\r');
    }
}

fn trim_trailing(out: &mut Vec<u8>, sep: u8) {
    while out.last() == Some(&sep) {
        out.pop();
    }
}

/// A version id like `2.3.1` or `2.5`, compared numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionNum(pub u8, pub u8, pub u8);

impl VersionNum {
    /// Unreadable parts count as 0, so a garbled version sorts low.
    pub fn parse(s: &str) -> VersionNum {
        let mut it = s.split('.').map(|p| p.trim().parse::<u8>().unwrap_or(0));
        VersionNum(it.next().unwrap_or(0), it.next().unwrap_or(0), it.next().unwrap_or(0))
    }
}

/// HL7 TS/DTM `YYYYMMDDHHMMSS+0000` in UTC from Unix milliseconds.
pub fn hl7_timestamp(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}+0000", rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(version: &str) -> Inbound {
        Inbound {
            delimiters: Some(Delimiters::DEFAULT),
            sending_app: "PAS".into(),
            sending_facility: "RJ1".into(),
            receiving_app: "RECORDHUB".into(),
            receiving_facility: "LCR".into(),
            event: "A01".into(),
            control_id: "MSG00001".into(),
            processing_id: "P".into(),
            version: version.into(),
            charset: String::new(),
        }
    }

    const ME: Sender<'static> =
        Sender { application: "RH", facility: "RHF", control_id: "RH42", timestamp: "20261121083000+0000" };

    fn s(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn aa_v24_has_structure_and_msa3() {
        let ack = build(&inbound("2.4"), &ME, AckCode::AA, &Verdict::Accepted);
        assert_eq!(
            s(ack),
            "MSH|^~\\&|RECORDHUB|LCR|PAS|RJ1|20261121083000+0000||ACK^A01^ACK|RH42|P|2.4\r\
             MSA|AA|MSG00001|Message accepted\r"
        );
    }

    #[test]
    fn ae_v251_err_layout() {
        let p = Problem::new(101, "PID-3 has no NHS number").at(Location::field("PID", 1, 3));
        let ack = build(&inbound("2.5.1"), &ME, AckCode::AE, &Verdict::Error(p));
        assert_eq!(
            s(ack),
            "MSH|^~\\&|RECORDHUB|LCR|PAS|RJ1|20261121083000+0000||ACK^A01^ACK|RH42|P|2.5.1\r\
             MSA|AE|MSG00001\r\
             ERR||PID^1^3|101^Required field missing^HL70357|E||||PID-3 has no NHS number\r"
        );
    }

    #[test]
    fn ar_v23_err1_layout_and_no_structure_before_231() {
        let p = Problem::new(200, "message type ORM is not handled");
        let mut i = inbound("2.3");
        i.event = "O01".into();
        let ack = build(&i, &ME, AckCode::AR, &Verdict::Rejected(p));
        assert_eq!(
            s(ack),
            "MSH|^~\\&|RECORDHUB|LCR|PAS|RJ1|20261121083000+0000||ACK^O01|RH42|P|2.3\r\
             MSA|AR|MSG00001|message type ORM is not handled\r\
             ERR|^^^^200&Unsupported message type&HL70357\r"
        );
    }

    #[test]
    fn custom_delimiters_are_echoed_and_text_escaped() {
        let mut i = inbound("2.7");
        i.delimiters = Some(Delimiters {
            field: b'#',
            component: b'@',
            repetition: b'!',
            escape: Some(b'$'),
            subcomponent: Some(b'%'),
            truncation: None,
        });
        let p = Problem::new(102, "bad value # here");
        let ack = s(build(&i, &ME, AckCode::CE, &Verdict::Error(p)));
        assert!(ack.starts_with("MSH#@!$%#RECORDHUB#LCR#"), "{ack}");
        assert!(ack.contains("ACK@A01@ACK"), "{ack}");
        assert!(ack.contains("MSA#CE#MSG00001\r"), "{ack}");
        assert!(ack.contains("bad value $F$ here"), "{ack}");
    }

    #[test]
    fn charset_is_echoed_in_msh18() {
        let mut i = inbound("2.5");
        i.charset = "8859/1".into();
        let ack = s(build(&i, &ME, AckCode::AA, &Verdict::Accepted));
        assert!(
            ack.starts_with(
                "MSH|^~\\&|RECORDHUB|LCR|PAS|RJ1|20261121083000+0000||ACK^A01^ACK|RH42|P|2.5||||||8859/1\r"
            ),
            "{ack}"
        );
    }

    #[test]
    fn empty_receiver_uses_our_name() {
        let mut i = inbound("2.5");
        i.receiving_app.clear();
        i.receiving_facility.clear();
        let ack = s(build(&i, &ME, AckCode::AA, &Verdict::Accepted));
        assert!(ack.starts_with("MSH|^~\\&|RH|RHF|PAS|RJ1|"), "{ack}");
    }

    #[test]
    fn mode_follows_table_0155() {
        assert_eq!(Mode::from_msh("", ""), Mode::Original);
        assert_eq!(Mode::from_msh("", "AL"), Mode::Enhanced(AcceptCondition::Always));
        let er = Mode::from_msh("ER", "NE");
        assert!(!er.sends(AckCode::CA) && er.sends(AckCode::CE) && er.sends(AckCode::CR));
        let su = Mode::from_msh("SU", "");
        assert!(su.sends(AckCode::CA) && !su.sends(AckCode::CE));
        assert!(!Mode::from_msh("NE", "").sends(AckCode::CR));
        assert_eq!(Mode::from_msh("AL", "").code(&Verdict::Accepted), AckCode::CA);
    }

    #[test]
    fn timestamps_and_versions() {
        assert_eq!(hl7_timestamp(0), "19700101000000+0000");
        assert_eq!(hl7_timestamp(1_795_250_000_000), "20261121083320+0000");
        assert!(VersionNum::parse("2.3.1") > VersionNum::parse("2.3"));
        assert!(VersionNum::parse("2.5") >= VersionNum(2, 5, 0));
        assert_eq!(VersionNum::parse("x"), VersionNum(0, 0, 0));
    }
}
