//! Whether a message asks for an accept acknowledgement, read from the
//! sender's side (MSH-15, accept acknowledgement type, HL7 table 0155; with
//! MSH-15 and MSH-16 both empty, original mode: always an ACK).
//!
//! The client must not wait for an ACK the message asked not to get (issue 8,
//! hole 9: `recordhub send` gave up on every later message after one with
//! MSH-15 = NE). The rules are the server's own ([`crate::ack::Mode`]), so
//! both sides agree on what is owed.

use crate::ack::{AcceptCondition, Mode};

/// When the receiver sends an accept ACK for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckExpected {
    /// Original mode, `AL`, or an MSH the client cannot read (the receiver
    /// answers those with a NAK).
    Always,
    /// `NE`: never.
    Never,
    /// `ER`: only when the message is not accepted.
    OnlyOnError,
    /// `SU`: only when the message is accepted.
    OnlyOnSuccess,
}

impl AckExpected {
    /// Reads MSH-15 and MSH-16 of an outgoing message.
    pub fn of(message: &[u8]) -> AckExpected {
        let Ok(parsed) = crate::hl7::Message::parse(message) else {
            return AckExpected::Always;
        };
        let msh = parsed.header();
        let text = |n| String::from_utf8_lossy(msh.field(n).raw()).into_owned();
        match Mode::from_msh(&text(15), &text(16)) {
            Mode::Original | Mode::Enhanced(AcceptCondition::Always) => AckExpected::Always,
            Mode::Enhanced(AcceptCondition::Never) => AckExpected::Never,
            Mode::Enhanced(AcceptCondition::OnError) => AckExpected::OnlyOnError,
            Mode::Enhanced(AcceptCondition::OnSuccess) => AckExpected::OnlyOnSuccess,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msh(tail: &str) -> Vec<u8> {
        format!("MSH|^~\\&|LAB|RJ1|RH|LCR|20261121||ADT^A01|C1|P|2.5{tail}\rPID|1\r").into_bytes()
    }

    #[test]
    fn msh_15_decides() {
        assert_eq!(AckExpected::of(&msh("")), AckExpected::Always, "original mode");
        assert_eq!(AckExpected::of(&msh("|||AL|NE")), AckExpected::Always);
        assert_eq!(AckExpected::of(&msh("|||NE|NE")), AckExpected::Never);
        assert_eq!(AckExpected::of(&msh("|||ER|AL")), AckExpected::OnlyOnError);
        assert_eq!(AckExpected::of(&msh("|||SU")), AckExpected::OnlyOnSuccess);
        assert_eq!(AckExpected::of(&msh("|||XX|NE")), AckExpected::Always, "unknown means AL");
        assert_eq!(AckExpected::of(&msh("||||NE")), AckExpected::Always, "enhanced, MSH-15 empty means AL");
    }

    #[test]
    fn an_unreadable_message_expects_its_nak() {
        assert_eq!(AckExpected::of(b"not hl7"), AckExpected::Always);
        assert_eq!(AckExpected::of(b""), AckExpected::Always);
    }
}
