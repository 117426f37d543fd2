//! The analyst-facing commands that are not the server: `send`, `journal`,
//! `record`, `reindex`, `check`, `objection`, `governance`. One file per command.

mod check;
mod governance;
mod journal;
mod objection;
mod record;
mod replay;
mod send;

use std::path::PathBuf;

pub use check::check;
pub use governance::governance_test;
pub use journal::{journal, show as journal_show, ShowError};
pub use objection::{
    objection, parse_import, remove_and_restore, Action as ObjectionAction, AddRequest, ObjectionError, RemoveRequest,
};
pub use record::{parked, record, reindex, RecordError, RecordSource};
pub use replay::{reindex_live, replay, search as journal_search, OpsError, Target};
pub use send::{send, send_with};

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
