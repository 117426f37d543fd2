//! The analyst-facing commands that are not the server: `send`, `journal`,
//! `record`, `reindex`, `check`, `objection`, `governance`. One file per command.

mod check;
mod governance;
mod journal;
mod objection;
mod record;
mod send;
mod token;

use std::path::PathBuf;

pub use check::check;
pub use governance::governance_test;
pub use journal::journal;
pub use objection::{
    objection, parse_import, remove_and_restore, Action as ObjectionAction, AddRequest, ObjectionError, RemoveRequest,
};
pub use record::{parked, record, reindex, RecordError, RecordSource};
pub use send::{send, send_with};
pub use token::{token, TokenCommand, TokenError};

/// Errors a user of the CLI sees.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Client(#[from] crate::mllp::client::ClientError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error("no journal entry with sequence {0}")]
    NoEntry(u64),
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
}
