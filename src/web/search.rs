//! Finding a patient: by NHS number (straight to the record), by local
//! hospital number (the store's cross-reference, optionally within one
//! organisation), or by family name and date of birth (the `names` index).
//! One match opens the record; several are listed (NHS number, name, date of
//! birth, organisations); none says so.
//!
//! Every search by hospital number or name is audited (`action: search`,
//! the NHS numbers found as `patient/<nhs>` items, the outcome), also one
//! that found nothing or was refused. A patient who has objected to sharing
//! is left out of the results: a search must not link their name or hospital
//! number to an NHS number. Their record page (by NHS number) says that they
//! objected, and shows nothing else.

use std::collections::BTreeMap;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::dates::{parse_dob, uk};
use super::{message, page, principal, see_other, to_sign_in, ClientAddr, Who};
use crate::audit::AuditEvent;
use crate::auth::{Principal, Purpose};
use crate::hl7::nhs::NhsNumber;
use crate::http::Api;
use crate::pipeline::now_ms;
use crate::store::StoreError;

/// The search form (with what was typed, and why it found nothing).
#[derive(askama::Template)]
#[template(path = "search.html")]
struct SearchPage {
    who: Option<Who>,
    error: String,
    form: SearchForm,
}

/// One patient in a list of matches.
pub struct Match {
    pub nhs: String,
    /// As printed on letters: `943 476 5919`.
    pub nhs_spaced: String,
    pub name: String,
    pub birth_date: String,
    pub organisations: String,
}

#[derive(askama::Template)]
#[template(path = "results.html")]
struct ResultsPage {
    who: Option<Who>,
    matches: Vec<Match>,
}

/// What the form posts: `by` says which of the three searches.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct SearchForm {
    #[serde(default)]
    by: String,
    #[serde(default)]
    nhs: String,
    #[serde(default)]
    local_id: String,
    #[serde(default)]
    organisation: String,
    #[serde(default)]
    family: String,
    #[serde(default)]
    dob: String,
}

pub(super) async fn form(State(api): State<Api>, headers: HeaderMap) -> Response {
    let Ok(who) = principal(&api, &headers).await else { return to_sign_in() };
    page(StatusCode::OK, &SearchPage { who: Some((&who).into()), error: String::new(), form: SearchForm::default() })
}

fn again(who: &Principal, status: StatusCode, error: &str, form: SearchForm) -> Response {
    page(status, &SearchPage { who: Some(who.into()), error: error.into(), form })
}

pub(super) async fn submit(
    State(api): State<Api>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Form(f): Form<SearchForm>,
) -> Response {
    let Ok(who) = principal(&api, &headers).await else { return to_sign_in() };
    let query = match f.by.as_str() {
        "nhs" => {
            return match NhsNumber::parse(f.nhs.trim()) {
                Ok(n) => see_other(&format!("/record/{}", n.as_str())),
                Err(_) => again(
                    &who,
                    StatusCode::BAD_REQUEST,
                    "That is not a valid NHS number: 10 digits, as on the patient's letters or wristband.",
                    f,
                ),
            };
        }
        "local" if f.local_id.trim().is_empty() => {
            return again(&who, StatusCode::BAD_REQUEST, "Enter the hospital number.", f);
        }
        "local" => Query::Local {
            id: f.local_id.trim().into(),
            org: Some(f.organisation.trim().to_string()).filter(|o| !o.is_empty()),
        },
        "name" => match parse_dob(&f.dob) {
            Some(dob) if !crate::store::fold_family(&f.family).is_empty() => {
                Query::Name { family: f.family.clone(), dob }
            }
            Some(_) => return again(&who, StatusCode::BAD_REQUEST, "Enter the family name.", f),
            None => {
                return again(
                    &who,
                    StatusCode::BAD_REQUEST,
                    "Enter the date of birth as day/month/year, for example 14/03/1982.",
                    f,
                )
            }
        },
        _ => return again(&who, StatusCode::BAD_REQUEST, "Choose how to search.", f),
    };
    let found = tokio::task::spawn_blocking(move || {
        // As a record read does: what was acknowledged before is searchable.
        if !api.progress.wait_caught_up(std::time::Duration::from_secs(2)) {
            tracing::warn!("index writer behind; search served without the newest messages");
        }
        search_audited(&api, &who, &client, &query).map(|m| (who, m))
    })
    .await;
    match found {
        Ok(Ok((who, Found::Forbidden))) => message(
            StatusCode::FORBIDDEN,
            Some((&who).into()),
            "Not allowed",
            "Your role may not look up patient records.",
        ),
        Ok(Ok((who, Found::Matches(m)))) if m.is_empty() => {
            again(&who, StatusCode::NOT_FOUND, "No patient found. Check the details, or search by NHS number.", f)
        }
        Ok(Ok((_, Found::Matches(m)))) if m.len() == 1 => see_other(&format!("/record/{}", m[0].nhs)),
        Ok(Ok((who, Found::Matches(matches)))) => {
            page(StatusCode::OK, &ResultsPage { who: Some((&who).into()), matches })
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "search failed; nothing shown");
            message(StatusCode::SERVICE_UNAVAILABLE, None, "Search unavailable", "The search could not be completed and audited, so nothing is shown. Try again, or ask the system administrator.")
        }
        Err(_) => message(StatusCode::INTERNAL_SERVER_ERROR, None, "Search interrupted", "Try again."),
    }
}

/// A search by hospital number or by name.
pub enum Query {
    Local { id: String, org: Option<String> },
    Name { family: String, dob: String },
}

/// What a search found.
pub enum Found {
    Matches(Vec<Match>),
    /// The role may not read records, so may not search for them either.
    Forbidden,
}

/// Why a search failed. Nothing was shown.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the index could not be read")]
    Store(#[from] StoreError),
    #[error("the audit log could not be written, so nothing is shown")]
    Audit(#[from] std::io::Error),
}

/// Runs a search and audits it before returning what it found.
///
/// # Errors
/// The index could not be read or the audit event not written.
pub fn search_audited(api: &Api, who: &Principal, client: &str, q: &Query) -> Result<Found, SearchError> {
    let purpose = Purpose::default();
    let mut event = AuditEvent {
        at_ms: now_ms(),
        user: who.user.clone(),
        role: who.role.clone(),
        org: who.org.clone(),
        purpose: purpose.name().into(),
        reason: purpose.reason().into(),
        action: "search".into(),
        client: client.into(),
        via: "web".into(),
        ..AuditEvent::default()
    };
    if api.access.view(&who.role).is_none() {
        event.outcome = "forbidden".into();
        api.audit.append(&event)?;
        return Ok(Found::Forbidden);
    }
    let mut by_nhs: BTreeMap<String, Vec<crate::store::NameHit>> = BTreeMap::new();
    match q {
        Query::Local { id, org } => {
            for (_, nhs) in api.store.find_local(id, org.as_deref())? {
                let names = api.store.names_of(&nhs)?;
                by_nhs.entry(nhs).or_default().extend(names);
            }
        }
        Query::Name { family, dob } => {
            for hit in api.store.find_by_name(family, dob)? {
                by_nhs.entry(hit.nhs_number.clone()).or_default().push(hit);
            }
        }
    }
    let mut matches = Vec::new();
    for (nhs, hits) in by_nhs {
        // Only valid NHS numbers are filed; anything else is not a patient to list.
        let Ok(number) = NhsNumber::parse(&nhs) else { continue };
        if api.store.objection(&number)?.is_some() {
            continue;
        }
        event.items.push(format!("patient/{nhs}"));
        let first = hits.first();
        let mut orgs: Vec<&str> = hits.iter().map(|h| h.organisation.as_str()).collect();
        orgs.dedup();
        matches.push(Match {
            name: first.map(|h| format!("{} {}", h.given_name, h.family_name).trim().to_string()).unwrap_or_default(),
            birth_date: first.map(|h| uk(&h.birth_date)).unwrap_or_default(),
            organisations: orgs.join(", "),
            nhs_spaced: super::spaced(&nhs),
            nhs,
        });
    }
    if let [only] = matches.as_slice() {
        event.nhs_number = Some(only.nhs.clone());
    }
    event.outcome = if matches.is_empty() { "not_found" } else { "found" }.into();
    api.audit.append(&event)?;
    tracing::info!(user = %who.user, via = "web", found = matches.len(), "patient search");
    Ok(Found::Matches(matches))
}
