//! `recordhub record` and `recordhub reindex`.

use std::io::Write;

/// How `recordhub record` reaches the record.
pub enum RecordSource {
    /// A running server's read API, e.g. `http://127.0.0.1:8080`, and the
    /// bearer token to send (`--token` or `RECORDHUB_TOKEN`).
    Server { url: String, token: Option<String> },
    /// The data directory itself, when no server holds it.
    Local(Box<crate::config::Config>),
}

/// Prints a patient's record (or its history) as JSON. Returns false when
/// the patient is unknown; [`RecordError::Objected`] when the patient has
/// objected to sharing. Every read is audited, whichever way it goes.
pub fn record(nhs: &str, user: &str, source: RecordSource, view: crate::read::View) -> Result<bool, RecordError> {
    let nhs = crate::hl7::nhs::NhsNumber::parse(nhs).map_err(|_| RecordError::BadNhs(nhs.to_string()))?;
    let body = match source {
        RecordSource::Local(cfg) => {
            let mappings = crate::serve::load_mappings(&cfg).map_err(|e| RecordError::Open(e.to_string()))?;
            // Opening the pipeline replays anything the index missed (after
            // a crash), so a local read is as complete as the journal.
            let (mut p, _) = crate::pipeline::Pipeline::open(crate::serve::pipeline_options(&cfg, mappings))
                .map_err(|e| RecordError::Open(format!("{e}: {}", source_chain(&e))))?;
            let audit = crate::audit::AuditLog::open(&cfg.store.data_dir)
                .map_err(|e| RecordError::Open(format!("the audit log: {e}")))?;
            let ctx = crate::read::ReadCtx {
                store: p.store().clone(),
                audit,
                access: std::sync::Arc::new(crate::access::Access::allow_all()),
            };
            let who = crate::auth::Principal { user: user.to_string(), role: "clinician".into(), org: String::new() };
            let purpose = crate::auth::Purpose::default();
            let req =
                crate::read::ReadRequest { nhs: &nhs, who: &who, purpose: &purpose, client: "local", via: "cli", view };
            let viewed = crate::read::read_audited(&ctx, &req).map_err(|e| RecordError::Open(e.to_string()))?;
            p.shutdown().map_err(|e| RecordError::Open(e.to_string()))?;
            match viewed {
                crate::read::Viewed::Shown(body) => Some(body),
                crate::read::Viewed::Unknown | crate::read::Viewed::Forbidden => None,
                crate::read::Viewed::Objected => return Err(RecordError::Objected(nhs.as_str().to_string())),
            }
        }
        RecordSource::Server { url: base, token } => {
            let tail = if view == crate::read::View::History { "/history" } else { "" };
            let url = format!("{}/patients/{}{tail}", base.trim_end_matches('/'), nhs.as_str());
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let _ = user; // the server audits the token's user
            let mut resp = bearer(agent.get(&url), token.as_deref())
                .call()
                .map_err(|e| RecordError::Http(url.clone(), e.to_string()))?;
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().map_err(|e| RecordError::Http(url.clone(), e.to_string()))?;
            match status {
                200 => Some(serde_json::from_str(&text).map_err(|e| RecordError::Http(url.clone(), e.to_string()))?),
                404 => None,
                403 if text.contains("\"objection\":true") => {
                    return Err(RecordError::Objected(nhs.as_str().to_string()))
                }
                401 => return Err(RecordError::Unauthorized(url, text)),
                _ => return Err(RecordError::Http(url, format!("status {status}: {text}"))),
            }
        }
    };
    match body {
        Some(b) => {
            let pretty = serde_json::to_string_pretty(&b).unwrap_or_default();
            let _ = writeln!(std::io::stdout(), "{pretty}");
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Adds `Authorization: Bearer <token>` when a token is given.
pub(crate) fn bearer<B>(req: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
    match token.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => req.header("Authorization", format!("Bearer {t}")),
        None => req,
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

/// Errors from `recordhub record`.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("'{0}' is not a valid NHS number (10 digits passing the Modulus 11 check)")]
    BadNhs(String),
    #[error("cannot read the store ({0}); if a server is running, use --server instead of --data")]
    Open(String),
    #[error("request to {0} failed: {1}")]
    Http(String, String),
    /// The server wants a (valid) bearer token.
    #[error("{0}: the server refused the request (401 {1}): pass --token T or set RECORDHUB_TOKEN (`recordhub token mint` makes one)")]
    Unauthorized(String, String),
    /// A standing objection: nothing of the record may be shown (exit code 3).
    #[error("NHS number {0}: {obj}; nothing is shown", obj = crate::read::OBJECTED)]
    Objected(String),
}

/// `recordhub reindex`: rebuilds the index from the journal with the current
/// mappings. Returns how many journal entries were read.
pub fn reindex(cfg: &crate::config::Config) -> Result<u64, RecordError> {
    let mappings = crate::serve::load_mappings(cfg).map_err(|e| RecordError::Open(e.to_string()))?;
    let (mut p, _) = crate::pipeline::Pipeline::open(crate::serve::pipeline_options(cfg, mappings))
        .map_err(|e| RecordError::Open(format!("{e}: {}", source_chain(&e))))?;
    let n = p.reindex().map_err(|e| RecordError::Open(format!("{e}: {}", source_chain(&e))))?;
    Ok(n)
}

/// `recordhub parked`: parked messages and identity conflicts, as JSON, from
/// a running server or the data directory. No patient data.
pub fn parked(source: RecordSource) -> Result<serde_json::Value, RecordError> {
    match source {
        RecordSource::Local(cfg) => {
            let mappings = crate::serve::load_mappings(&cfg).map_err(|e| RecordError::Open(e.to_string()))?;
            let (mut p, _) = crate::pipeline::Pipeline::open(crate::serve::pipeline_options(&cfg, mappings))
                .map_err(|e| RecordError::Open(format!("{e}: {}", source_chain(&e))))?;
            let parked = p.store().parked().map_err(|e| RecordError::Open(e.to_string()))?;
            let conflicts = p.store().conflicts().map_err(|e| RecordError::Open(e.to_string()))?;
            p.shutdown().map_err(|e| RecordError::Open(e.to_string()))?;
            Ok(serde_json::json!({ "parked": parked, "conflicts": conflicts }))
        }
        RecordSource::Server { url: base, token } => {
            let mut out = serde_json::Map::new();
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            for what in ["parked", "conflicts"] {
                let url = format!("{}/admin/{what}", base.trim_end_matches('/'));
                let mut resp = bearer(agent.get(&url), token.as_deref())
                    .call()
                    .map_err(|e| RecordError::Http(url.clone(), e.to_string()))?;
                let status = resp.status().as_u16();
                let text =
                    resp.body_mut().read_to_string().map_err(|e| RecordError::Http(url.clone(), e.to_string()))?;
                match status {
                    200 => {}
                    401 => return Err(RecordError::Unauthorized(url, text)),
                    _ => return Err(RecordError::Http(url, format!("status {status}: {text}"))),
                }
                let v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| RecordError::Http(url.clone(), e.to_string()))?;
                out.insert(what.to_string(), v.get(what).cloned().unwrap_or_default());
            }
            Ok(serde_json::Value::Object(out))
        }
    }
}
