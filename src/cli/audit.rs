//! `recordhub audit`: who looked at which record.
//!
//! - `recordhub audit [--nhs N] [--user U] [--since T] [--break-glass]`:
//!   the events, as the JSON lines of the log (oldest first, newest last),
//!   read from the data directory (safe while the server runs) or from a
//!   server's `GET /admin/audit` with `--server URL --token T`.
//! - `recordhub audit verify [--anchor HASH]`: checks the hash chain; exit 0
//!   when intact, 1 naming the first line changed, removed or reordered.
//! - `recordhub audit export --format fhir --nhs N`: FHIR R4 AuditEvent
//!   resources as NDJSON, for a subject access request.

use std::io::Write;
use std::path::PathBuf;

use crate::audit::{fhir, query, verify};
use crate::config::{self, Config, Overrides};

/// `recordhub audit …`
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(clap::Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain across files: exit 0 when intact, 1 naming
    /// the first line (file:line) that was changed, removed or reordered.
    Verify {
        /// A chain head logged earlier ("audit chain head" at INFO) and kept
        /// elsewhere: also check the log still reaches that line (catches
        /// lines cut from the end).
        #[arg(long, value_name = "HASH")]
        anchor: Option<String>,
        #[command(flatten)]
        at: Local,
    },
    /// Write a patient's audit events as FHIR R4 AuditEvent resources, one
    /// JSON object per line (NDJSON), to stdout.
    Export {
        #[arg(long, value_enum)]
        format: Format,
        /// The patient's NHS number (spaces and dashes allowed).
        #[arg(long)]
        nhs: String,
        /// Only events at or after: RFC 3339 (2026-11-28T09:30:00Z) or a date (2026-11-28, midnight UTC).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        at: Local,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// FHIR R4 AuditEvent (NDJSON).
    Fhir,
}

/// The listing's filters and where to read.
#[derive(clap::Args)]
struct ListArgs {
    /// Only events about this patient (spaces and dashes allowed).
    #[arg(long)]
    nhs: Option<String>,
    /// Only events by this user.
    #[arg(long)]
    user: Option<String>,
    /// Only events at or after: RFC 3339 (2026-11-28T09:30:00Z) or a date (2026-11-28, midnight UTC).
    #[arg(long)]
    since: Option<String>,
    /// Only break-glass reads.
    #[arg(long)]
    break_glass: bool,
    /// A table for reading (UTC time, who, what, why, outcome) instead of JSON lines.
    #[arg(long)]
    table: bool,
    /// A running server's HTTP API (GET /admin/audit), e.g. http://127.0.0.1:8080.
    #[arg(long, conflicts_with = "data")]
    server: Option<String>,
    /// The bearer token for --server (or RECORDHUB_TOKEN).
    #[arg(long, env = "RECORDHUB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    at: Local,
}

/// The data directory, read directly.
#[derive(clap::Args)]
struct Local {
    /// The config file (default ./engine.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory, overriding [store] data_dir.
    #[arg(long)]
    data: Option<PathBuf>,
}

impl Local {
    fn load(&self) -> Result<Config, AuditCliError> {
        let overrides = Overrides { data_dir: self.data.clone(), ..Overrides::default() };
        Ok(config::load(self.config.as_deref(), &overrides)?)
    }
}

/// Errors from `recordhub audit` (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum AuditCliError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("'{0}' is not a valid NHS number (10 digits passing the Modulus 11 check)")]
    BadNhs(String),
    #[error(transparent)]
    Since(#[from] query::SinceError),
    #[error("cannot read the audit log in {dir}: {source}")]
    Read { dir: PathBuf, source: std::io::Error },
    #[error("request to {url} failed: {why}")]
    Http { url: String, why: String },
}

/// Exit code when `verify` finds the chain broken.
pub const EXIT_BROKEN: u8 = 1;

/// Runs `recordhub audit …` and returns the exit code.
///
/// # Errors
/// Bad arguments or config, an unreadable log, a failed request.
pub fn audit(args: AuditArgs) -> Result<u8, AuditCliError> {
    match args.command {
        None => list(args.list),
        Some(AuditCommand::Verify { anchor, at }) => verify_chain(&at, anchor.as_deref()),
        Some(AuditCommand::Export { format: Format::Fhir, nhs, since, at }) => export(&at, &nhs, since.as_deref()),
    }
}

fn nhs_number(s: &str) -> Result<String, AuditCliError> {
    crate::hl7::nhs::NhsNumber::parse(s).map(|n| n.as_str().to_string()).map_err(|_| AuditCliError::BadNhs(s.into()))
}

fn out(bytes: &[u8]) {
    // A closed stdout (`| head`) is not an error worth reporting.
    let _ = std::io::stdout().lock().write_all(bytes);
}

fn list(args: ListArgs) -> Result<u8, AuditCliError> {
    let nhs = args.nhs.as_deref().map(nhs_number).transpose()?;
    let since_ms = args.since.as_deref().map(query::parse_since).transpose()?;
    let lines = match &args.server {
        Some(server) => list_remote(server, args.token.as_deref(), &args, nhs)?,
        None => {
            let filter = query::Filter { nhs, user: args.user.clone(), since_ms, break_glass: args.break_glass };
            let dir = crate::audit::dir(&args.at.load()?.store.data_dir);
            query::lines(&dir, &filter).map_err(|source| AuditCliError::Read { dir, source })?
        }
    };
    if args.table {
        out(table(&lines).as_bytes());
    } else {
        out(&lines);
    }
    Ok(0)
}

/// The events of `lines` as aligned columns, a header first.
fn table(lines: &[u8]) -> String {
    let header = [
        "TIME (UTC)",
        "USER",
        "ROLE",
        "ORG",
        "ACTION",
        "OUTCOME",
        "PURPOSE",
        "REASON",
        "NHS NUMBER",
        "ITEMS",
        "VIA",
        "CLIENT",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(e) = serde_json::from_slice::<crate::audit::AuditEvent>(line) else { continue };
        let purpose = if e.break_glass { "BREAK-GLASS".to_string() } else { e.purpose };
        let mut time = fhir::instant(e.at_ms);
        time.truncate(19);
        rows.push(vec![
            time.replace('T', " "),
            e.user,
            e.role,
            e.org,
            e.action,
            e.outcome,
            purpose,
            e.reason,
            e.nhs_number.unwrap_or_default(),
            e.items.len().to_string(),
            e.via,
            e.client,
        ]);
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut text = String::new();
    for r in rows {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

fn list_remote(
    server: &str,
    token: Option<&str>,
    args: &ListArgs,
    nhs: Option<String>,
) -> Result<Vec<u8>, AuditCliError> {
    let url = format!("{}/admin/audit", server.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut req = agent.get(&url);
    for (k, v) in [("nhs", nhs.as_deref()), ("user", args.user.as_deref()), ("since", args.since.as_deref())] {
        if let Some(v) = v {
            req = req.query(k, v);
        }
    }
    if args.break_glass {
        req = req.query("break_glass", "true");
    }
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let http = |why: String| AuditCliError::Http { url: url.clone(), why };
    let mut resp = req.call().map_err(|e| http(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().with_config().limit(u64::MAX).read_to_vec().map_err(|e| http(e.to_string()))?;
    if status != 200 {
        return Err(http(format!("status {status}: {}", String::from_utf8_lossy(&body))));
    }
    Ok(body)
}

fn verify_chain(at: &Local, anchor: Option<&str>) -> Result<u8, AuditCliError> {
    let dir = crate::audit::dir(&at.load()?.store.data_dir);
    let report = verify::verify(&dir, anchor).map_err(|source| AuditCliError::Read { dir: dir.clone(), source })?;
    let mut err = std::io::stderr().lock();
    for note in &report.notes {
        let _ = writeln!(err, "recordhub: note: {note}");
    }
    match &report.problem {
        None => {
            let files = if report.files == 1 { "1 file".to_string() } else { format!("{} files", report.files) };
            let text = format!("audit log intact: {} lines in {files}; chain head {}\n", report.lines, report.head);
            out(text.as_bytes());
            Ok(0)
        }
        Some(p) => {
            let _ = writeln!(err, "recordhub: audit log broken at {p}");
            let _ =
                writeln!(err, "recordhub: the {} lines before it are sound (chain head {})", report.lines, report.head);
            Ok(EXIT_BROKEN)
        }
    }
}

/// This machine's name, for `source.observer`.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn export(at: &Local, nhs: &str, since: Option<&str>) -> Result<u8, AuditCliError> {
    let nhs = nhs_number(nhs)?;
    let since_ms = since.map(query::parse_since).transpose()?;
    let cfg = at.load()?;
    let source = fhir::Source { site: cfg.ack.facility.clone(), node: node_name() };
    let filter = query::Filter { nhs: Some(nhs), since_ms, ..query::Filter::default() };
    let dir = crate::audit::dir(&cfg.store.data_dir);
    let mut ndjson = Vec::new();
    query::each(&dir, |line, e| {
        if filter.matches(&e) {
            let resource = fhir::audit_event(&e, query::seq(line).unwrap_or(0), &source);
            serde_json::to_writer(&mut ndjson, &resource).map_err(std::io::Error::other)?;
            ndjson.push(b'\n');
        }
        Ok(())
    })
    .map_err(|source| AuditCliError::Read { dir, source })?;
    out(&ndjson);
    Ok(0)
}
