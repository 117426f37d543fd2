//! `recordhub objection add|remove|list|import`: the records officer's view
//! of the objection register (`store/objection.rs`), against the data
//! directory (`--data`, server stopped) or a running server's admin API
//! (`--server`; in a cluster the node publishes the change to every node,
//! while `--data` changes that directory only, with a warning). Also the pieces the HTTP admin API shares: request
//! validation, the CSV import parser, and remove-then-restore.
//!
//! The CSV import is all or nothing: every row is checked first, each bad
//! one reported as `FILE:LINE: what is wrong`, and nothing of the file is
//! applied until all are fixed (a half-imported opt-out list would share
//! records of patients further down it). A small parser of our own rather
//! than the `csv` crate: four columns, quoted fields, and exact line numbers
//! are all this needs, and no new dependency enters Cargo.lock.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::hl7::nhs::NhsNumber;
use crate::pipeline::{journal_dir, now_ms, Pipeline, Replayer};
use crate::store::{Objection, Store, StoreError};

mod import;

pub use import::parse_import;

const BAD_NHS: &str = "is not a valid NHS number (10 digits passing the Modulus 11 check)";

/// `POST /admin/objections` and `objection add`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddRequest {
    pub nhs_number: String,
    pub reason: String,
    pub recorded_by: String,
    /// `connect-care`, `gp`, `patient`, … (default `patient`).
    #[serde(default)]
    pub source: Option<String>,
}

impl AddRequest {
    /// The NHS number and the objection to register, or what is wrong.
    ///
    /// # Errors
    /// A bad NHS number, or an empty `reason` or `recorded_by`.
    pub fn validate(&self) -> Result<(NhsNumber, Objection), String> {
        let nhs = NhsNumber::parse(&self.nhs_number).map_err(|_| format!("'{}' {BAD_NHS}", self.nhs_number))?;
        let (reason, by) = (self.reason.trim(), self.recorded_by.trim());
        if reason.is_empty() || by.is_empty() {
            return Err("reason and recorded_by are required: every change to the register is audited".into());
        }
        let source = self.source.as_deref().map(str::trim).filter(|s| !s.is_empty()).unwrap_or("patient");
        let objection = Objection {
            reason: reason.into(),
            recorded_by: by.into(),
            source: source.into(),
            recorded_at_ms: now_ms() as i64,
        };
        Ok((nhs, objection))
    }
}

/// `DELETE /admin/objections/{nhs}` and `objection remove`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveRequest {
    pub recorded_by: String,
    pub reason: String,
}

impl RemoveRequest {
    /// # Errors
    /// An empty `reason` or `recorded_by`.
    pub fn validate(&self) -> Result<(), String> {
        if self.reason.trim().is_empty() || self.recorded_by.trim().is_empty() {
            return Err("reason and recorded_by are required: every change to the register is audited".into());
        }
        Ok(())
    }
}

/// Withdraws the objection for `nhs` and restores the record from the
/// journal. `None` when no objection stood; else how many messages were
/// filed again.
///
/// # Errors
/// The register, the journal or the index could not be read or written.
pub fn remove_and_restore(
    store: &Store,
    replayer: &Replayer,
    nhs: &NhsNumber,
    req: &RemoveRequest,
) -> Result<Option<u64>, ObjectionError> {
    if store.remove_objection(nhs, req.recorded_by.trim(), req.reason.trim())?.is_none() {
        return Ok(None);
    }
    let n = replayer.restore(store, nhs).map_err(|e| ObjectionError::Restore(crate::pipeline::error_chain(&e)))?;
    tracing::info!(messages_restored = n, "record restored from the journal after an objection was withdrawn");
    Ok(Some(n))
}

/// Errors of `recordhub objection`.
#[derive(Debug, thiserror::Error)]
pub enum ObjectionError {
    /// The data directory is held by a running server, or unreadable.
    #[error("cannot open the store ({0}); if a server is running, use --server URL instead of --data")]
    Open(String),
    #[error("objection register")]
    Store(#[from] StoreError),
    #[error("the objection was removed but the record could not be restored from the journal ({0}); run `recordhub reindex`")]
    Restore(String),
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Bad rows of an import, each `FILE:LINE: what is wrong`; nothing was applied.
    #[error("nothing imported; fix these rows and import again:\n{}", .0.join("\n"))]
    Import(Vec<String>),
    /// A refused request (bad NHS number, missing reason…).
    #[error("{0}")]
    Invalid(String),
    #[error("no objection is registered for NHS number {0}")]
    NotFound(String),
    #[error("request to {0} failed: {1}")]
    Http(String, String),
}

/// What `recordhub objection` was asked to do.
pub enum Action {
    Add(AddRequest),
    Remove {
        nhs_number: String,
        req: RemoveRequest,
    },
    List,
    /// Every change to the register, oldest first.
    Log,
    Import {
        file: PathBuf,
        recorded_by: String,
    },
}

/// Where it acts: a running server's admin API, or the data directory.
pub use super::RecordSource as Target;

/// Runs one `recordhub objection` command; returns the JSON to print.
///
/// # Errors
/// See [`ObjectionError`]; `NotFound` when removing an objection that does not stand.
pub fn objection(action: Action, target: Target) -> Result<serde_json::Value, ObjectionError> {
    match target {
        Target::Local(cfg) => local(action, &cfg),
        Target::Server { url, token } => remote(action, url.trim_end_matches('/'), token.as_deref()),
    }
}

fn local(action: Action, cfg: &crate::config::Config) -> Result<serde_json::Value, ObjectionError> {
    let changes = matches!(action, Action::Add(_) | Action::Remove { .. } | Action::Import { .. });
    if changes && cfg.cluster.is_some() {
        // Nothing here publishes to the governance stream (cluster/govern.rs).
        eprintln!(
            "warning: the config has [cluster], but --data changes only this data directory's register: \
             the other nodes will not get this change. Use --server URL (a running node) for the cluster."
        );
    }
    let mappings = crate::serve::load_mappings(cfg).map_err(|e| ObjectionError::Open(e.to_string()))?;
    let opts = crate::serve::pipeline_options(cfg, mappings.clone());
    let replayer = Replayer { journal_dir: journal_dir(&cfg.store.data_dir), mappings, policy: opts.policy.clone() };
    let (mut p, _) = Pipeline::open(opts).map_err(|e| ObjectionError::Open(crate::pipeline::error_chain(&e)))?;
    let out = act_on_store(action, p.store(), &replayer);
    p.shutdown()?;
    out
}

fn act_on_store(action: Action, store: &Store, replayer: &Replayer) -> Result<serde_json::Value, ObjectionError> {
    match action {
        Action::Add(req) => {
            let (nhs, o) = req.validate().map_err(ObjectionError::Invalid)?;
            let n = store.add_objection(&nhs, o)?;
            Ok(serde_json::json!({ "added": true, "nhs_number": nhs.as_str(), "items_removed": n }))
        }
        Action::Remove { nhs_number, req } => {
            req.validate().map_err(ObjectionError::Invalid)?;
            let nhs = NhsNumber::parse(&nhs_number)
                .map_err(|_| ObjectionError::Invalid(format!("'{nhs_number}' {BAD_NHS}")))?;
            match remove_and_restore(store, replayer, &nhs, &req)? {
                Some(n) => Ok(serde_json::json!({ "removed": true, "messages_restored": n })),
                None => Err(ObjectionError::NotFound(nhs_number)),
            }
        }
        Action::List => Ok(serde_json::json!({ "objections": store.objections()? })),
        Action::Log => Ok(serde_json::json!({ "log": store.objection_log()? })),
        Action::Import { file, recorded_by } => {
            let text = read(&file)?;
            let rows = parse_import(&file.display().to_string(), &text, &recorded_by, now_ms())
                .map_err(ObjectionError::Import)?;
            let n = rows.len();
            store.add_objections(rows)?;
            Ok(serde_json::json!({ "imported": n }))
        }
    }
}

fn read(file: &std::path::Path) -> Result<String, ObjectionError> {
    std::fs::read_to_string(file).map_err(|source| ObjectionError::Read { path: file.to_path_buf(), source })
}

fn remote(action: Action, base: &str, token: Option<&str>) -> Result<serde_json::Value, ObjectionError> {
    use super::record::bearer;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let removing = match &action {
        Action::Remove { nhs_number, .. } => Some(nhs_number.clone()),
        _ => None,
    };
    let (url, resp) = match &action {
        Action::Add(req) => {
            let url = format!("{base}/admin/objections");
            let r = bearer(agent.post(&url), token).header("Content-Type", "application/json").send(json(req));
            (url, r)
        }
        Action::Remove { nhs_number, req } => {
            let url = format!("{base}/admin/objections/{}", nhs_number.trim());
            let r = bearer(agent.delete(&url), token)
                .force_send_body()
                .header("Content-Type", "application/json")
                .send(json(req));
            (url, r)
        }
        Action::List | Action::Log => {
            let tail = if matches!(action, Action::Log) { "/log" } else { "" };
            let url = format!("{base}/admin/objections{tail}");
            (url.clone(), bearer(agent.get(&url), token).call())
        }
        Action::Import { file, recorded_by } => {
            let url = format!("{base}/admin/objections/import");
            let body = read(file)?;
            let name = file.display().to_string();
            let r = bearer(agent.post(&url), token)
                .header("X-User", recorded_by)
                .header("X-File-Name", &name)
                // A CSV body, not JSON: the header a browser page cannot send cross-origin.
                .header("X-Requested-By", "recordhub-cli")
                .send(body);
            (url, r)
        }
    };
    let mut resp = resp.map_err(|e| ObjectionError::Http(url.clone(), e.to_string()))?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().map_err(|e| ObjectionError::Http(url.clone(), e.to_string()))?;
    let body: serde_json::Value = serde_json::from_str(&text)
        .map_err(|_| ObjectionError::Http(url.clone(), format!("status {status}: {text}")))?;
    let message = || body["error"].as_str().unwrap_or(&text).to_string();
    match status {
        200 => Ok(body),
        404 if removing.is_some() => Err(ObjectionError::NotFound(removing.unwrap_or_default())),
        422 => {
            let errors = body["errors"].as_array().into_iter().flatten().filter_map(|e| e.as_str()).map(str::to_string);
            Err(ObjectionError::Import(errors.collect()))
        }
        400 => Err(ObjectionError::Invalid(message())),
        401 | 403 => Err(ObjectionError::Http(
            url,
            format!(
                "status {status}: {} (the admin API needs a token with an admin role: --token T or RECORDHUB_TOKEN)",
                message()
            ),
        )),
        _ => Err(ObjectionError::Http(url, format!("status {status}: {}", message()))),
    }
}

/// A request body as JSON text (ureq here is built without its JSON feature).
fn json<T: Serialize>(v: &T) -> String {
    // Plain structs of strings: serialising cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}
