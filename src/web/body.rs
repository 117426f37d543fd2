//! A document's text, read from the journal entry that carried it: the
//! record keeps only a reference (`body_ref = journal:{seq}`), never the
//! body, so the text shown is exactly what the sender sent.
//!
//! The text is the OBX-5 of the message's text observations (TX, FT, ST;
//! ED when it is declared as text), escapes decoded (`\.br\` is a line
//! break), one line per OBX. An embedded binary (a base64 PDF) is named, not
//! shown. The caller HTML-escapes it (the template does) and shows it as
//! preformatted text.

use std::path::Path;

use crate::hl7::Message;
use crate::journal::JournalReader;

/// What the page shows for a document body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The text, one line per observation.
    Text(String),
    /// Why no text is shown (a binary attachment, a journal entry not found).
    Note(String),
}

/// The journal seq a `body_ref` (`journal:42`) points at.
pub fn seq_of(body_ref: &str) -> Option<u64> {
    body_ref.strip_prefix("journal:")?.trim().parse().ok()
}

/// The body of the document that journal entry `seq` carried.
pub fn from_journal(journal_dir: &Path, seq: u64) -> Body {
    let entry = JournalReader::open(journal_dir).and_then(|r| r.get(seq));
    match entry {
        Ok(Some(e)) => text_of(&e.raw),
        Ok(None) => {
            Body::Note(format!("The message that carried this document (journal entry {seq}) is not in the journal."))
        }
        Err(e) => {
            tracing::warn!(seq, error = %e, "document body could not be read from the journal");
            Body::Note("The journal could not be read; try again, or ask the system administrator.".into())
        }
    }
}

/// The text observations of one message.
pub fn text_of(raw: &[u8]) -> Body {
    let Ok(msg) = Message::parse(raw) else {
        return Body::Note("The message that carried this document could not be read.".into());
    };
    let mut lines: Vec<String> = Vec::new();
    let mut binary = 0usize;
    for obx in msg.segments().filter(|s| s.name() == "OBX") {
        let value_type = obx.field(2).text();
        match value_type.trim() {
            "TX" | "FT" | "ST" => {
                for rep in obx.field(5).repetitions() {
                    lines.push(rep.text().into_owned());
                }
            }
            // ED: source ^ type ^ subtype ^ encoding ^ data (HL7 2.A.24).
            "ED" => {
                let v = obx.field(5).as_value();
                let (kind, encoding) = (v.component(2).text(), v.component(4).text());
                if kind.eq_ignore_ascii_case("TEXT") && encoding.eq_ignore_ascii_case("A") {
                    lines.push(v.component(5).text().into_owned());
                } else {
                    binary += 1;
                }
            }
            _ => {}
        }
    }
    match (lines.is_empty(), binary) {
        (false, 0) => Body::Text(lines.join("\n")),
        (false, n) => Body::Text(format!("{}\n\n[{n} embedded attachment(s) not shown here]", lines.join("\n"))),
        (true, 0) => Body::Note("The message carried no document text.".into()),
        (true, n) => {
            Body::Note(format!("{n} embedded attachment(s) (for example a PDF): open them in the sending system."))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mdm_fixture_body_reads_as_its_lines_with_escapes_decoded() {
        let raw = include_bytes!("../../fixtures/mdm-t02.hl7");
        let Body::Text(t) = text_of(raw) else { panic!("text expected") };
        assert_eq!(
            t,
            "Discharge summary for Siobhán O'Brien\n\
             Diagnosis: community-acquired pneumonia & sepsis, resolved.\n\
             Follow-up: GP review in 2 weeks\nCRP ^ FBC at 6 weeks.\n\
             Medication: amoxicillin 500 mg \\ 3/day STOP on 28/11."
        );
        assert_eq!(seq_of("journal:42"), Some(42));
        assert_eq!(seq_of("http://x"), None);
    }

    #[test]
    fn an_embedded_pdf_is_named_not_dumped() {
        let raw = include_bytes!("../../fixtures/oru-embedded-pdf.hl7");
        assert_eq!(
            text_of(raw),
            Body::Text("No acute abnormality.\n\n[1 embedded attachment(s) not shown here]".into())
        );
        let only_pdf =
            String::from_utf8_lossy(raw).replace("OBX|1|TX|REP^Report^L||No acute abnormality.||||||F\r", "");
        assert!(matches!(text_of(only_pdf.as_bytes()), Body::Note(n) if n.contains("embedded")));
        assert!(matches!(text_of(b"not hl7"), Body::Note(_)));
    }
}
