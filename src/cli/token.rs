//! `recordhub token mint`: a bearer token signed with the data directory's
//! own key (created on first use), for small sites without an identity
//! provider, operators' scripts and tests.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::mint::{self, MintRequest};
use crate::config::{self, Overrides};

/// `recordhub token …`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Print a JWT for USER with ROLE at ORG, signed with <data>/auth/signing-key.pem.
    /// Send it as `Authorization: Bearer <token>`, or give it to the CLI with
    /// --token / RECORDHUB_TOKEN.
    Mint {
        /// The user id, recorded in the audit of every read.
        #[arg(long)]
        user: String,
        /// A role in the access file (mappings/access.toml), e.g. clinician, social_care, admin.
        #[arg(long)]
        role: String,
        /// The user's organisation (ODS code).
        #[arg(long)]
        org: String,
        /// Minutes until the token expires.
        #[arg(long, default_value_t = 60)]
        minutes: u64,
        /// The config file (default ./engine.toml when present): issuer, audience, claim names.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory, overriding [store] data_dir.
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// Errors from `recordhub token`.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Setup(#[from] crate::auth::AuthSetupError),
    #[error("--minutes must be between 1 and 525600 (a year)")]
    Minutes,
}

/// Runs `recordhub token …`, printing the token on stdout.
///
/// # Errors
/// The config does not load, or the key cannot be read or created.
pub fn token(cmd: TokenCommand) -> Result<(), TokenError> {
    let TokenCommand::Mint { user, role, org, minutes, config, data } = cmd;
    if minutes == 0 || minutes > 525_600 {
        return Err(TokenError::Minutes);
    }
    let cfg = config::load(config.as_deref(), &Overrides { data_dir: data, ..Overrides::default() })?;
    if let Ok(access) = crate::access::Access::load(&cfg.access_file()) {
        let known = access.view(&role).is_some() || access.is_admin(&role) || access.may_audit(&role);
        if !known {
            let _ = writeln!(
                std::io::stderr(),
                "recordhub: warning: role '{role}' is not in {}: the server will refuse its reads",
                cfg.access_file().display()
            );
        }
    }
    let req = MintRequest { user, role, org, lifetime: Duration::from_secs(minutes * 60) };
    let token = mint::mint(&cfg, &req)?;
    let _ = writeln!(std::io::stdout(), "{token}");
    Ok(())
}
