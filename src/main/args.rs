//! The clap definitions of the `recordhub` command: every subcommand, its
//! arguments and their `--help` text. Parsing only; `run` acts on them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use recordhub::cli;
use recordhub::config::{self, Config, Overrides};

/// `recordhub --version`: the crate version, git commit and build date (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RECORDHUB_GIT_COMMIT"),
    ", built ",
    env!("RECORDHUB_BUILD_DATE"),
    ")"
);

#[derive(Parser)]
#[command(name = "recordhub", version = VERSION, about = "HL7 v2 interface engine and record indexer")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the MLLP listener (and the read API) from engine.toml.
    Serve {
        #[command(flatten)]
        common: Common,
        /// MLLP listen address, overriding [mllp] listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// HTTP read API address, overriding [http] listen.
        #[arg(long)]
        http: Option<SocketAddr>,
        /// With [cluster]: active, standby or reader, overriding [cluster] role.
        #[arg(long, value_parser = ["active", "standby", "reader"])]
        role: Option<String>,
    },
    /// Send every message in FILES over MLLP, in order on one connection,
    /// and print one line per ACK: `<control id> <code> <text>` (text with
    /// HL7 escapes decoded). A file that cannot be read or holds no message
    /// is reported and skipped; exit 1 at the end if any was, or any message
    /// was not accepted.
    Send {
        /// host:port of the MLLP listener.
        #[arg(long)]
        to: String,
        /// Seconds to wait for each ACK.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        #[command(flatten)]
        tls: TlsArgs,
        /// Files of HL7 messages: text (each message starts at a line beginning
        /// MSH; LF, CRLF or CR line ends; FHS/BHS batch lines ignored) or MLLP
        /// frames (as captured). Several messages per file; several files.
        #[arg(required = true, value_name = "FILES")]
        files: Vec<PathBuf>,
    },
    /// List what was received (JSON lines), print one raw message (audited),
    /// or `journal search` by metadata or patient. Safe while the server runs.
    #[command(args_conflicts_with_subcommands = true)]
    Journal {
        #[command(subcommand)]
        action: Option<JournalAction>,
        #[command(flatten)]
        common: Common,
        /// Who is looking (required with --show): recorded in the audit log.
        #[arg(long, env = "RECORDHUB_USER")]
        user: Option<String>,
        /// Only entries with this sequence number or later.
        #[arg(long, default_value_t = 1)]
        since: u64,
        /// Print the raw message of this sequence number instead of the listing.
        #[arg(long)]
        show: Option<u64>,
        /// Scan every segment and report damage only; exit 1 if any is found.
        #[arg(long, conflicts_with = "show")]
        verify: bool,
    },
    /// Print every version of every item of a patient's record, hidden ones
    /// included, with provenance and why hidden (the read is audited).
    History(PatientRead),
    /// List messages parked until their patient's NHS number is known, and
    /// identity conflicts (seq, sender, control id, why: no patient data).
    Parked(Admin),
    /// Print a patient's record as JSON (the read is audited).
    Record(PatientRead),
    /// Offer load over MLLP and report messages/s and ACK latency (JSON).
    Load {
        /// host:port of the MLLP listener.
        #[arg(long)]
        to: String,
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Messages in total, spread over the connections.
        #[arg(long, default_value_t = 10_000)]
        messages: u64,
        /// Messages outstanding per connection (1 = lockstep).
        #[arg(long, default_value_t = 1)]
        pipeline: usize,
        /// Total messages per second offered.
        #[arg(long)]
        rate: Option<f64>,
        /// Seconds to wait for each ACK.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        #[command(flatten)]
        tls: TlsArgs,
        /// Files of HL7 messages: text (each message starts at a line beginning
        /// MSH; LF, CRLF or CR line ends; FHS/BHS batch lines ignored) or MLLP
        /// frames (as captured). Several messages per file; several files.
        #[arg(required = true, value_name = "FILES")]
        files: Vec<PathBuf>,
    },
    /// Ask a running engine's `GET /health` and print its answer: exit 0
    /// when healthy, 1 when not, 2 when it cannot be reached (for container
    /// HEALTHCHECKs and scripts).
    Health {
        /// The engine's HTTP API, e.g. http://127.0.0.1:8080 (default: [http] listen).
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Rebuild the index from the journal with the current mappings (server
    /// stopped), or with --server re-map every entry in place while it runs.
    /// After retention retired segments, only what the journal still holds is rebuilt.
    Reindex {
        /// A running engine's HTTP API: re-map and re-file in place while it serves.
        #[arg(long, conflicts_with = "data")]
        server: Option<String>,
        /// Bearer token for --server.
        #[arg(long, env = "RECORDHUB_TOKEN", requires = "server")]
        token: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Re-map and re-file the journal entries the filters select with the
    /// mappings in force, reporting per entry the items added, changed and
    /// removed. Never re-journals or re-acknowledges. Against a running engine
    /// with --server, else the data directory (server stopped).
    Replay {
        #[command(flatten)]
        query: recordhub::journal::query::Filters,
        /// Say what would change without changing anything.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        at: Remote,
    },
    /// The objection register: patients who do not want their record shared.
    /// While an objection stands nothing of the record is shown (`record`
    /// exits 3, the API answers 403) and new messages are journaled and
    /// acknowledged as usual but not filed. Every change is audited.
    Objection {
        #[command(subcommand)]
        action: ObjectionCommand,
    },
    /// The audit log: who looked at which record (list, `verify` the hash chain, `export --format fhir`).
    Audit(cli::AuditArgs),
    /// Exclusion rules (mappings/governance/): sensitive information kept out of the record.
    Governance {
        #[command(subcommand)]
        action: GovernanceCommand,
    },
    /// The NATS JetStream cluster ([cluster]): `status` shows nodes, roles,
    /// the lease holder and each node's applied position.
    Cluster {
        #[command(subcommand)]
        action: ClusterCommand,
    },
    /// Bearer tokens for the read and admin APIs (signed with the data directory's key).
    Token {
        #[command(subcommand)]
        action: cli::TokenCommand,
    },
    /// Show the engine's verdict on messages without sending them: the ACK
    /// code and ERR text the sender would get, the items, unused fields,
    /// warnings on NHS numbers (Modulus 11, placeholders, 999 test range),
    /// and which exclusion rule excludes what. Exit 1 if any message would
    /// not be accepted or any file cannot be read.
    Check {
        /// The mappings directory (default: [mapping] dir).
        #[arg(long)]
        mappings: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Files of HL7 messages: text (each message starts at a line beginning
        /// MSH; LF, CRLF or CR line ends; FHS/BHS batch lines ignored) or MLLP
        /// frames (as captured). Several messages per file; several files.
        #[arg(required = true, value_name = "FILES")]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum ClusterCommand {
    /// Nodes, their roles, the lease holder and each node's applied position.
    Status {
        #[command(flatten)]
        common: Common,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The cluster's one audit log: every node's audit lines in stream
    /// order, each with its node and its seq and hash in that node's chain.
    Audit {
        #[command(flatten)]
        common: Common,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum JournalAction {
    /// Find messages by control id, sender, type, verdict, ERR code, time or
    /// seq, or patient (--nhs, --local-id: through the index). Prints
    /// metadata and the rejection reason as JSON lines, never message content.
    Search {
        #[command(flatten)]
        query: recordhub::journal::query::Filters,
        #[command(flatten)]
        at: Remote,
    },
}

/// Where `journal search` and `replay` act: `--server` (a running engine's
/// API), else the data directory.
#[derive(clap::Args)]
pub(crate) struct Remote {
    /// A running engine's HTTP API, e.g. http://127.0.0.1:8080.
    #[arg(long, conflicts_with = "data")]
    pub(crate) server: Option<String>,
    /// Bearer token for --server.
    #[arg(long, env = "RECORDHUB_TOKEN", requires = "server")]
    pub(crate) token: Option<String>,
    #[command(flatten)]
    pub(crate) common: Common,
}

impl Remote {
    pub(crate) fn target(self) -> anyhow::Result<cli::Target> {
        Ok(match self.server {
            Some(url) => cli::Target::Server { url, token: self.token },
            None => cli::Target::Local(Box::new(self.common.load(None, None)?)),
        })
    }
}

#[derive(Subcommand)]
pub(crate) enum GovernanceCommand {
    /// Run only the exclusion rules over sample messages: one JSON object
    /// per message with the rules that hold (id, category, action, segment).
    Test {
        /// The rules directory (default: the governance/ folder of [mapping] dir).
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Files of HL7 messages: text (each message starts at a line beginning
        /// MSH; LF, CRLF or CR line ends; FHS/BHS batch lines ignored) or MLLP
        /// frames (as captured). Several messages per file; several files.
        #[arg(required = true, value_name = "FILES")]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum ObjectionCommand {
    /// Register an objection: the patient's items are removed from the record at once.
    Add {
        /// The NHS number (spaces and dashes allowed).
        nhs_number: String,
        /// Why (e.g. "Individual Rights Request form, 2026-11-20").
        #[arg(long)]
        reason: String,
        /// The records officer recording it.
        #[arg(long)]
        recorded_by: String,
        /// Where the objection came from: connect-care, gp, patient, …
        #[arg(long, default_value = "patient")]
        source: String,
        #[command(flatten)]
        at: Admin,
    },
    /// Withdraw an objection: the record is restored from the journal, no re-send needed.
    Remove {
        nhs_number: String,
        #[arg(long)]
        recorded_by: String,
        /// Why (e.g. "patient gave consent at clinic").
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        at: Admin,
    },
    /// List the objections standing, as JSON.
    List {
        #[command(flatten)]
        at: Admin,
    },
    /// Every change ever made to the register (who, when, why, add/remove), as JSON.
    Log {
        #[command(flatten)]
        at: Admin,
    },
    /// Import a CSV list (header row; columns nhs_number (required),
    /// recorded_at, source, reason, in any order). A bad row is reported as
    /// FILE:LINE and nothing of the file is applied until it is fixed.
    Import {
        file: PathBuf,
        /// Who imports (default: $USER).
        #[arg(long, env = "USER")]
        recorded_by: String,
        #[command(flatten)]
        at: Admin,
    },
}

/// Where `recordhub objection`, `parked`, `record` and `history` act:
/// `--server`, else `--data` (server stopped), else the configured HTTP listener.
#[derive(clap::Args)]
pub(crate) struct Admin {
    /// A running server's HTTP API, e.g. http://127.0.0.1:8080 (default: http://<[http] listen>).
    #[arg(long, conflicts_with = "data")]
    pub(crate) server: Option<String>,
    /// Bearer token for the server (`recordhub token mint`); not used with --data.
    #[arg(long, env = "RECORDHUB_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// One patient's record, read by someone (the read is audited).
#[derive(clap::Args)]
pub(crate) struct PatientRead {
    /// The NHS number (spaces and dashes allowed).
    pub(crate) nhs_number: String,
    /// Who is looking: recorded in the audit trail (with --data; a server
    /// records the user named in the token).
    #[arg(long)]
    pub(crate) user: String,
    #[command(flatten)]
    pub(crate) at: Admin,
}

/// TLS for `send` and `load`: given `--tls-ca`, the connection uses TLS.
#[derive(clap::Args)]
pub(crate) struct TlsArgs {
    /// PEM file of CA certificates to verify the listener's certificate with; turns TLS on.
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// PEM file of our client certificate, for a listener with mutual TLS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key", requires = "tls_ca")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM file of our client certificate's private key (with --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// The name the listener's certificate must carry (default: the host in --to).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub(crate) tls_server_name: Option<String>,
}

impl TlsArgs {
    pub(crate) fn client(self) -> Option<recordhub::mllp::tls::ClientTls> {
        let ca = self.tls_ca?;
        Some(recordhub::mllp::tls::ClientTls {
            ca,
            cert_key: self.tls_cert.zip(self.tls_key),
            server_name: self.tls_server_name,
        })
    }
}

#[derive(clap::Args)]
pub(crate) struct Common {
    /// The config file (default ./engine.toml when present).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Data directory, overriding [store] data_dir.
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
}

impl Common {
    pub(crate) fn load(&self, listen: Option<SocketAddr>, http: Option<SocketAddr>) -> anyhow::Result<Config> {
        let overrides = Overrides { listen, data_dir: self.data.clone(), http_listen: http };
        Ok(config::load(self.config.as_deref(), &overrides)?)
    }
}
