//! The `recordhub` command: CLI parsing, telemetry, config, then the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use recordhub::cli;
use recordhub::read::View;

// glibc malloc trims and regrows its heap around every large message and
// dominated the pipeline profile (DESIGN.md; measured in the closing note).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use recordhub::config::{self, Config, Overrides};

#[derive(Parser)]
#[command(name = "recordhub", version, about = "HL7 v2 interface engine and record indexer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    },
    /// Send every message in FILEs over MLLP and print one line per ACK.
    Send {
        /// host:port of the MLLP listener.
        #[arg(long)]
        to: String,
        /// Seconds to wait for each ACK.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        #[command(flatten)]
        tls: TlsArgs,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List what was received (JSON lines), or print one raw message. Safe while the server runs.
    Journal {
        #[command(flatten)]
        common: Common,
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
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Rebuild the index from the journal with the current mappings (server stopped).
    Reindex {
        #[command(flatten)]
        common: Common,
    },
    /// The objection register: patients who do not want their record shared.
    /// While an objection stands nothing of the record is shown (`record`
    /// exits 3, the API answers 403) and new messages are journaled and
    /// acknowledged as usual but not filed. Every change is audited.
    Objection {
        #[command(subcommand)]
        action: ObjectionCommand,
    },
    /// Exclusion rules (mappings/governance/): sensitive information kept out of the record.
    Governance {
        #[command(subcommand)]
        action: GovernanceCommand,
    },
    /// Bearer tokens for the read and admin APIs (signed with the data directory's key).
    Token {
        #[command(subcommand)]
        action: cli::TokenCommand,
    },
    /// Show what mappings make of messages: items, unused fields, errors,
    /// and which exclusion rule excludes what.
    Check {
        /// The mappings directory (default: [mapping] dir).
        #[arg(long)]
        mappings: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum GovernanceCommand {
    /// Run only the exclusion rules over sample messages: one JSON object
    /// per message with the rules that hold (id, category, action, segment).
    Test {
        /// The rules directory (default: the governance/ folder of [mapping] dir).
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ObjectionCommand {
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
struct Admin {
    /// A running server's HTTP API, e.g. http://127.0.0.1:8080 (default: http://<[http] listen>).
    #[arg(long, conflicts_with = "data")]
    server: Option<String>,
    /// Bearer token for the server (`recordhub token mint`); not used with --data.
    #[arg(long, env = "RECORDHUB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// One patient's record, read by someone (the read is audited).
#[derive(clap::Args)]
struct PatientRead {
    /// The NHS number (spaces and dashes allowed).
    nhs_number: String,
    /// Who is looking: recorded in the audit trail (with --data; a server
    /// records the user named in the token).
    #[arg(long)]
    user: String,
    #[command(flatten)]
    at: Admin,
}

/// TLS for `send` and `load`: given `--tls-ca`, the connection uses TLS.
#[derive(clap::Args)]
struct TlsArgs {
    /// PEM file of CA certificates to verify the listener's certificate with; turns TLS on.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// PEM file of our client certificate, for a listener with mutual TLS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key", requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// PEM file of our client certificate's private key (with --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The name the listener's certificate must carry (default: the host in --to).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    tls_server_name: Option<String>,
}

impl TlsArgs {
    fn client(self) -> Option<recordhub::mllp::tls::ClientTls> {
        let ca = self.tls_ca?;
        Some(recordhub::mllp::tls::ClientTls {
            ca,
            cert_key: self.tls_cert.zip(self.tls_key),
            server_name: self.tls_server_name,
        })
    }
}

#[derive(clap::Args)]
struct Common {
    /// The config file (default ./engine.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory, overriding [store] data_dir.
    #[arg(long)]
    data: Option<PathBuf>,
}

impl Common {
    fn load(&self, listen: Option<SocketAddr>, http: Option<SocketAddr>) -> anyhow::Result<Config> {
        let overrides = Overrides { listen, data_dir: self.data.clone(), http_listen: http };
        Ok(config::load(self.config.as_deref(), &overrides)?)
    }
}

/// Where `record`, `history` and `parked` read: `--server`, else `--data`
/// (the data directory itself), else the configured HTTP listener.
fn record_source(server: Option<String>, token: Option<String>, data_given: bool, cfg: Config) -> cli::RecordSource {
    match server {
        Some(url) => cli::RecordSource::Server { url, token },
        None if data_given => cli::RecordSource::Local(Box::new(cfg)),
        None => cli::RecordSource::Server { url: format!("http://{}", cfg.http.listen), token },
    }
}

/// Exit code of `record`/`history` for a patient who has objected to sharing.
const EXIT_OBJECTED: u8 = 3;

fn show_record(read: PatientRead, view: View) -> anyhow::Result<ExitCode> {
    let PatientRead { nhs_number: nhs, user, at: Admin { server, token, common } } = read;
    let (nhs, user) = (nhs.as_str(), user.as_str());
    let cfg = common.load(None, None)?;
    let source = record_source(server, token, common.data.is_some(), cfg);
    let shown = match cli::record(nhs, user, source, view) {
        Err(e @ cli::RecordError::Objected(_)) => {
            let _ = writeln!(std::io::stderr(), "recordhub: {e}");
            return Ok(ExitCode::from(EXIT_OBJECTED));
        }
        other => other?,
    };
    if shown {
        Ok(ExitCode::SUCCESS)
    } else {
        let _ = writeln!(std::io::stderr(), "recordhub: no record for NHS number {nhs}");
        Ok(ExitCode::from(1))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "recordhub: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { common, listen, http } => {
            let cfg = common.load(listen, http)?;
            // Held until `run` returns: dropping it flushes the log queue (bounded wait).
            let _log = recordhub::telemetry::init(&cfg.log)?;
            let rt =
                tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
            let served = rt.block_on(recordhub::serve::serve(cfg));
            let lost = recordhub::telemetry::log_stats();
            if lost != recordhub::telemetry::LogStats::default() {
                // Reaches the log only if stderr has recovered; /metrics can read the same counts.
                tracing::warn!(
                    dropped_lines = lost.dropped_lines,
                    write_errors = lost.write_errors,
                    "log lines were lost while stderr was stalled or closed"
                );
            }
            served?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Send { to, timeout, tls, files } => {
            let rt =
                tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
            let tls = tls.client();
            let ok = rt.block_on(cli::send_with(&to, tls.as_ref(), std::time::Duration::from_secs(timeout), &files))?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Journal { common, since, show, verify } => {
            let cfg = common.load(None, None)?;
            let clean = cli::journal(&cfg.store.data_dir, since, show, verify)?;
            Ok(if clean || !verify { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Parked(Admin { server, token, common }) => {
            let cfg = common.load(None, None)?;
            let source = record_source(server, token, common.data.is_some(), cfg);
            let listing = cli::parked(source)?;
            let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&listing).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Command::Record(read) => show_record(read, View::Record),
        Command::History(read) => show_record(read, View::History),
        Command::Load { to, connections, messages, pipeline, rate, timeout, tls, files } => {
            let rt =
                tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
            let opts = recordhub::load::LoadOptions {
                to,
                connections,
                messages,
                pipeline,
                rate,
                files,
                timeout: std::time::Duration::from_secs(timeout),
                tls: tls.client(),
            };
            let summary = rt.block_on(recordhub::load::run(opts))?;
            // A closed stdout (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&summary)?);
            Ok(if summary.timeouts + summary.errors == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Reindex { common } => {
            let cfg = common.load(None, None)?;
            let n = cli::reindex(&cfg)?;
            let _ = writeln!(std::io::stdout(), "reindexed {n} journal entries");
            Ok(ExitCode::SUCCESS)
        }
        Command::Objection { action } => {
            let (action, at) = match action {
                ObjectionCommand::Add { nhs_number, reason, recorded_by, source, at } => {
                    let req = cli::AddRequest { nhs_number, reason, recorded_by, source: Some(source) };
                    (cli::ObjectionAction::Add(req), at)
                }
                ObjectionCommand::Remove { nhs_number, recorded_by, reason, at } => {
                    let req = cli::RemoveRequest { recorded_by, reason };
                    (cli::ObjectionAction::Remove { nhs_number, req }, at)
                }
                ObjectionCommand::List { at } => (cli::ObjectionAction::List, at),
                ObjectionCommand::Log { at } => (cli::ObjectionAction::Log, at),
                ObjectionCommand::Import { file, recorded_by, at } => {
                    (cli::ObjectionAction::Import { file, recorded_by }, at)
                }
            };
            let cfg = at.common.load(None, None)?;
            let target = record_source(at.server, at.token, at.common.data.is_some(), cfg);
            match cli::objection(action, target) {
                Ok(v) => {
                    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&v)?);
                    Ok(ExitCode::SUCCESS)
                }
                // Refusals the officer can fix: exit 1, the message as it is.
                Err(
                    e @ (cli::ObjectionError::Import(_)
                    | cli::ObjectionError::NotFound(_)
                    | cli::ObjectionError::Invalid(_)),
                ) => {
                    let _ = writeln!(std::io::stderr(), "recordhub: {e}");
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Token { action } => {
            cli::token(action)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Governance { action: GovernanceCommand::Test { rules, config, files } } => {
            let cfg = config::load(config.as_deref(), &Overrides::default())?;
            let dir = rules.unwrap_or_else(|| cfg.mapping.dir.join(recordhub::govern::DIR));
            Ok(if cli::governance_test(&dir, &files)? { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Check { mappings, config, files } => {
            let mut cfg = config::load(config.as_deref(), &Overrides::default())?;
            if let Some(dir) = mappings {
                cfg.mapping.dir = dir;
            }
            Ok(if cli::check(&cfg.mapping.dir, &files)? { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}
