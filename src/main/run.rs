//! What each subcommand does with its parsed arguments: load the config,
//! call into the library, turn the outcome into an exit code.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use recordhub::cli;
use recordhub::config::{self, Config, Overrides};
use recordhub::read::View;

use crate::args::{
    Admin, Cli, ClusterCommand, Command, Common, GovernanceCommand, JournalAction, ObjectionCommand, PatientRead,
};

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { common, listen, http, role } => serve(&common, listen, http, role.as_deref()),
        Command::Cluster { action: ClusterCommand::Status { common, json } } => {
            let cfg = common.load(None, None)?;
            cli::cluster_status(&cfg, json)
        }
        Command::Cluster { action: ClusterCommand::Audit { common, json } } => {
            let cfg = common.load(None, None)?;
            cli::cluster_audit(&cfg, json)
        }
        Command::Send { to, timeout, tls, files } => {
            let rt =
                tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
            let tls = tls.client();
            let ok = rt.block_on(cli::send_with(&to, tls.as_ref(), std::time::Duration::from_secs(timeout), &files))?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Journal { action: Some(JournalAction::Search { query, at }), .. } => {
            cli::journal_search(&query, at.target()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Journal { action: None, common, user, since, show, verify } => {
            let cfg = common.load(None, None)?;
            if let Some(seq) = show {
                cli::journal_show(&cfg, seq, user.as_deref().unwrap_or(""))?;
                return Ok(ExitCode::SUCCESS);
            }
            let clean = cli::journal(&cfg.store.data_dir, since, verify)?;
            Ok(if clean || !verify { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Replay { query, dry_run, at } => {
            cli::replay(&query, dry_run, at.target()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reindex { server: Some(url), token, .. } => reindex_live(&url, token.as_deref()),
        Command::Parked(at) => parked(at),
        Command::Record(read) => show_record(read, View::Record),
        Command::History(read) => show_record(read, View::History),
        Command::Load { to, connections, messages, pipeline, rate, timeout, tls, files } => {
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
            load(opts)
        }
        Command::Health { server, config } => {
            let base = match server {
                Some(s) => s,
                None => {
                    let cfg = config::load(config.as_deref(), &Overrides::default())?;
                    cli::local_url(cfg.http.listen)
                }
            };
            Ok(if cli::health(&base)? { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Reindex { server: None, common, .. } => reindex_local(&common),
        Command::Objection { action } => objection(action),
        Command::Audit(args) => Ok(ExitCode::from(cli::audit(args)?)),
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
            Ok(if cli::check(&cfg, &files)? { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

/// `recordhub serve`: the engine until shutdown, then a word on log lines lost.
fn serve(
    common: &Common,
    listen: Option<std::net::SocketAddr>,
    http: Option<std::net::SocketAddr>,
    role: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut cfg = common.load(listen, http)?;
    if let Some(role) = role {
        let Some(cluster) = cfg.cluster.as_mut() else {
            anyhow::bail!("--role needs a [cluster] section in the config (NATS servers to follow)");
        };
        cluster.role = recordhub::config::Role::parse(role).context("--role: active, standby or reader")?;
    }
    // Held until `run` returns: dropping it flushes the log queue (bounded wait).
    let _log = recordhub::telemetry::init(&cfg.log)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let names = cli::hints::listener_names(&cfg);
    let served = rt.block_on(recordhub::serve::serve(cfg)).map_err(|e| {
        let hint = cli::hints::bind_failure(&e, &names);
        hinted(e, hint)
    });
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

/// `recordhub load`: offer the load, print the summary; exit 1 on any timeout or error.
fn load(opts: recordhub::load::LoadOptions) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let summary = rt.block_on(recordhub::load::run(opts))?;
    // A closed stdout (`| head`) is not an error worth a panic.
    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&summary)?);
    Ok(if summary.timeouts + summary.errors == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `recordhub reindex --server`: re-map in place on a running engine.
fn reindex_live(url: &str, token: Option<&str>) -> anyhow::Result<ExitCode> {
    let answer = cli::reindex_live(url, token)?;
    if let Some(w) = answer["warning"].as_str() {
        let _ = writeln!(std::io::stderr(), "recordhub: WARNING: {w}");
    }
    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&answer)?);
    Ok(ExitCode::SUCCESS)
}

/// `recordhub reindex` on the data directory (server stopped), warning first
/// when retention has retired segments the rebuild cannot see.
fn reindex_local(common: &Common) -> anyhow::Result<ExitCode> {
    let cfg = common.load(None, None)?;
    if let Some(r) = recordhub::journal::retention::retired(&recordhub::pipeline::journal_dir(&cfg.store.data_dir)) {
        let _ = writeln!(std::io::stderr(),
            "recordhub: WARNING: retention retired journal segments up to seq {}: their messages are not in the journal and will NOT be in the rebuilt index{}",
            r.up_to_seq, r.archive_dir.map(|d| format!(" (archived in {})", d.display())).unwrap_or_default());
    }
    let n = cli::reindex(&cfg).map_err(|e| {
        let hint = cli::hints::reindex(&e);
        hinted(e, hint)
    })?;
    let _ = writeln!(std::io::stdout(), "reindexed {n} journal entries");
    Ok(ExitCode::SUCCESS)
}

/// `recordhub parked`: the parked messages and identity conflicts, as JSON.
fn parked(at: Admin) -> anyhow::Result<ExitCode> {
    let Admin { server, token, common } = at;
    let cfg = common.load(None, None)?;
    let source = record_source(server, token, common.data.is_some(), cfg);
    let listing = cli::parked(source).map_err(|e| {
        let hint = cli::hints::no_server(&e);
        hinted(e, hint)
    })?;
    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&listing).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// `recordhub objection …`: the register change or listing as JSON; refusals
/// the officer can fix exit 1 with the message as it is.
fn objection(action: ObjectionCommand) -> anyhow::Result<ExitCode> {
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
        ObjectionCommand::Import { file, recorded_by, at } => (cli::ObjectionAction::Import { file, recorded_by }, at),
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
            e @ (cli::ObjectionError::Import(_) | cli::ObjectionError::NotFound(_) | cli::ObjectionError::Invalid(_)),
        ) => {
            let _ = writeln!(std::io::stderr(), "recordhub: {e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
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
        other => other.map_err(|e| {
            let hint = cli::hints::no_server(&e);
            hinted(e, hint)
        })?,
    };
    if shown {
        Ok(ExitCode::SUCCESS)
    } else {
        let _ = writeln!(std::io::stderr(), "recordhub: no record for NHS number {nhs}");
        Ok(ExitCode::from(1))
    }
}

/// An error with its hint (`cli::hints`) when there is one.
fn hinted<E: Into<anyhow::Error>>(e: E, hint: Option<String>) -> anyhow::Error {
    match hint {
        Some(message) => anyhow::anyhow!(message),
        None => e.into(),
    }
}
