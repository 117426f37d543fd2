//! `recordhub journal search`, `recordhub replay --query …` and
//! `recordhub reindex --server`: finding and re-processing messages, against
//! a running engine (its HTTP API, `--server URL --token T`) or a stopped
//! one's data directory.
//!
//! A search by metadata alone reads the journal directly, which is safe
//! beside a running engine; a search by patient (`--nhs`, `--local-id`) and
//! re-processing need the index, which a running engine holds: they go
//! through its API.

use std::io::Write;

use crate::config::Config;
use crate::journal::query::{metadata, Filters};
use crate::journal::JournalReader;
use crate::pipeline::{self, Pipeline, Replayer};

/// Where a command acts.
pub enum Target {
    /// A running engine's HTTP API (`http://127.0.0.1:8080`), with a bearer token if given.
    Server { url: String, token: Option<String> },
    /// The data directory of a stopped engine (or, for a metadata search, a running one's).
    Local(Box<Config>),
}

/// Errors of these commands.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Filter(#[from] crate::journal::query::FilterError),
    #[error(transparent)]
    Select(#[from] pipeline::SelectError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error(transparent)]
    Reprocess(#[from] pipeline::ReprocessError),
    /// The index is held by a running engine, or damaged.
    #[error("{0}; if the engine is running, give --server URL (and --token) instead of --data")]
    Open(String),
    /// The server could not be reached or refused the request.
    #[error("{0}: {1}")]
    Http(String, String),
    /// Nothing about a patient is shown unaudited.
    #[error("the audit log could not be written, so nothing is shown")]
    Audit(#[source] std::io::Error),
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
}

/// Prints the entries `filters` select, one JSON line each (metadata, never
/// content), then a summary line on stderr. Returns how many matched.
///
/// # Errors
/// A filter is wrong, the journal, index or server failed, or stdout closed.
pub fn search(filters: &Filters, target: Target) -> Result<u64, OpsError> {
    let mut out = std::io::stdout().lock();
    let summary = match target {
        Target::Server { url, token } => {
            let body =
                call(&url, token.as_deref(), "GET", &format!("/admin/messages?{}", filters.to_query_string()), None)?;
            for m in body["messages"].as_array().into_iter().flatten() {
                writeln!(out, "{m}")?;
            }
            body["summary"].clone()
        }
        Target::Local(cfg) => {
            let mut opened = None;
            let query = if filters.needs_index() {
                let (p, _) = open(&cfg)?;
                let q = pipeline::select(p.store(), filters)?;
                // Which messages a patient had is patient data: audited first.
                let user = std::env::var("RECORDHUB_USER").or_else(|_| std::env::var("USER")).unwrap_or_default();
                if let Some(event) = filters.audit_event(&user, "cli", "local") {
                    let log = crate::audit::AuditLog::open(&cfg.store.data_dir);
                    log.and_then(|l| l.append(&event)).map_err(OpsError::Audit)?;
                }
                opened = Some(p);
                q
            } else {
                filters.parse()?
            };
            let reader = JournalReader::open(&pipeline::journal_dir(&cfg.store.data_dir))?;
            let s = query.run(&reader, |e| writeln!(out, "{}", metadata(&e)).map_err(OpsError::from))?;
            if let Some(mut p) = opened {
                p.shutdown().map_err(|e| OpsError::Open(e.to_string()))?;
            }
            serde_json::to_value(s).unwrap_or_default()
        }
    };
    writeln!(std::io::stderr(), "{}", serde_json::json!({ "summary": summary }))?;
    Ok(summary["matched"].as_u64().unwrap_or(0))
}

/// Re-maps and re-files the entries `filters` select, printing one JSON
/// line per entry (what changed) and a summary line last.
///
/// # Errors
/// A filter is wrong, or the journal, index or server failed.
pub fn replay(filters: &Filters, dry_run: bool, target: Target) -> Result<serde_json::Value, OpsError> {
    let mut out = std::io::stdout().lock();
    let summary = match target {
        Target::Server { url, token } => {
            let mut body = serde_json::to_value(filters).unwrap_or_default();
            body["dry_run"] = dry_run.into();
            let answer = call(&url, token.as_deref(), "POST", "/admin/replay", Some(body.to_string()))?;
            for e in answer["entries"].as_array().into_iter().flatten() {
                writeln!(out, "{e}")?;
            }
            answer["summary"].clone()
        }
        Target::Local(cfg) => {
            let (mut p, replayer) = open(&cfg)?;
            let query = pipeline::select(p.store(), filters)?;
            let mut failed = None;
            let tally = replayer.reprocess(p.store(), &query, dry_run, |r| {
                if let Err(e) = writeln!(out, "{}", serde_json::to_string(&r).unwrap_or_default()) {
                    failed.get_or_insert(e);
                }
            })?;
            p.shutdown().map_err(|e| OpsError::Open(e.to_string()))?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            serde_json::to_value(tally).unwrap_or_default()
        }
    };
    writeln!(out, "{}", serde_json::json!({ "summary": summary }))?;
    Ok(summary)
}

/// `POST /admin/reindex` on a running engine: every entry re-mapped and
/// re-filed in place while it serves. Returns the server's answer.
///
/// # Errors
/// The server could not be reached or refused.
pub fn reindex_live(url: &str, token: Option<&str>) -> Result<serde_json::Value, OpsError> {
    call(url, token, "POST", "/admin/reindex", Some(String::new()))
}

/// Opens the data directory as the engine would (replaying what the index
/// lacks), with the replayer re-processing needs.
fn open(cfg: &Config) -> Result<(Pipeline, Replayer), OpsError> {
    let mappings = crate::serve::load_mappings(cfg).map_err(|e| OpsError::Open(e.to_string()))?;
    let opts = crate::serve::pipeline_options(cfg, mappings.clone());
    let replayer =
        Replayer { journal_dir: pipeline::journal_dir(&cfg.store.data_dir), mappings, policy: opts.policy.clone() };
    let (p, _) = Pipeline::open(opts).map_err(|e| OpsError::Open(pipeline::error_chain(&e)))?;
    Ok((p, replayer))
}

/// One request to the admin API; the JSON answer, or the server's error text.
fn call(
    base: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<serde_json::Value, OpsError> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match (method, body) {
        ("GET", _) | (_, None) => {
            let mut r = agent.get(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        (_, Some(body)) => {
            let mut r = agent.post(&url).header("Content-Type", "application/json");
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.send(body)
        }
    };
    let mut resp = resp.map_err(|e| OpsError::Http(url.clone(), e.to_string()))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .map_err(|e| OpsError::Http(url.clone(), e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| OpsError::Http(url.clone(), format!("status {status}: {text}")))?;
    if status != 200 {
        let why = value["error"].as_str().map_or_else(|| text.clone(), str::to_string);
        return Err(OpsError::Http(url, format!("status {status}: {why}")));
    }
    Ok(value)
}
