//! HL7 v2: the second stage of the pipeline (`MLLP frame → **parse** → map → …`).
//!
//! [`Message::parse`] turns one de-framed message into a zero-copy, lazily split view:
//! segments are indexed in one `memchr` pass, fields and their parts are slices of the
//! frame found on demand, and escapes (`escape`) and the MSH-18 charset (`charset`)
//! are decoded only when `text()` is asked for. An unparsable line is a [`ParseError`]
//! with its position, never a silently shorter message.
//!
//! Deliberately not here: message structure or data-type validation, batch (FHS/BHS)
//! splitting, encoding messages, and anything about what a field means (that is the
//! mapping's job), except the NHS number check in [`nhs`], shared by mapping and index.

mod charset;
mod error;
mod escape;
mod message;
pub mod nhs;

pub use charset::{Charset, ParseOptions};
pub use error::{ParseError, ParseErrorKind};
pub use message::{Delimiters, Field, FieldTable, Message, Segment, Value};
pub use nhs::{NhsError, NhsNumber};
