//! The analyst-facing commands that are not the server: `send`, `journal`,
//! `record`, `reindex`, `check`, `objection`, `governance`. One file per command.

mod audit;
mod check;
mod cluster;
mod governance;
mod health;
pub mod hints;
mod journal;
mod objection;
mod record;
mod replay;
mod send;
mod token;

use std::path::PathBuf;

pub use audit::{audit, AuditArgs, AuditCliError};
pub use check::check;
pub use cluster::{cluster_audit, cluster_status};
pub use governance::governance_test;
pub use health::{health, local_url};
pub use journal::{journal, show as journal_show, ShowError};
pub use objection::{
    objection, parse_import, remove_and_restore, Action as ObjectionAction, AddRequest, ObjectionError, RemoveRequest,
};
pub use record::{parked, record, reindex, RecordError, RecordSource};
pub use replay::{reindex_live, replay, search as journal_search, OpsError, Target};
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
    /// `health` could not reach the engine.
    #[error("cannot reach {url}: {error}; is recordhub running and is that its [http] listen?")]
    Http { url: String, error: String },
    /// `check` runs the engine over a scratch directory in $TMPDIR.
    #[error("cannot create a scratch directory for the check; set TMPDIR to a writable directory")]
    Scratch(#[source] std::io::Error),
    #[error("cannot start the engine for the check in {dir}")]
    Engine { dir: PathBuf, source: crate::pipeline::OpenError },
}

/// An error and its causes on one line, for a message that goes on.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    crate::pipeline::error_chain(e)
}
