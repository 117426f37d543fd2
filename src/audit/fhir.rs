//! `recordhub audit export --format fhir`: audit events as FHIR R4
//! AuditEvent resources, one JSON object per line (NDJSON), for a patient's
//! subject access request or an ATNA/FHIR audit repository (IHE BALP).
//!
//! - `type`: DICOM `110110` Patient Record; `subtype`: the RESTful
//!   interaction (`read`, or `search-type` for searches); `action` `R`.
//! - `outcome`: `0` when the event went as asked (shown, not found,
//!   migrated), `4` when it was refused (forbidden, objected,
//!   unauthenticated), `8` otherwise; `outcomeDesc` holds our word for it.
//! - `agent`: the user (role, ODS organisation, client address),
//!   `requestor: true`, and the purpose of use.
//! - `source`: this recordhub node; `entity`: the patient by NHS number,
//!   with the categories and item ids shown as details.
//! - `purposeOfEvent`: v3 ActReason `TREAT` for direct care, `BTG` (break
//!   the glass) for break-glass, with the stated reason as text.

use serde_json::{json, Value};

use super::AuditEvent;

/// The NHS number identifier system.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// The ODS organisation code identifier system.
pub const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// Which recordhub made the export: `source` of every resource.
#[derive(Debug, Clone)]
pub struct Source {
    /// The site (our `[ack] facility`).
    pub site: String,
    /// The node (host name).
    pub node: String,
}

/// `at_ms` as an RFC 3339 instant in UTC with milliseconds.
pub fn instant(at_ms: u64) -> String {
    use time::format_description::well_known::Rfc3339;
    let nanos = i128::from(at_ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

fn outcome_code(outcome: &str) -> &'static str {
    match outcome {
        "shown" | "not_found" | "migrated" | "found" | "none_found" => "0",
        "forbidden" | "objected" | "unauthenticated" | "refused" | "rate_limited" => "4",
        _ => "8",
    }
}

fn purpose(e: &AuditEvent) -> Value {
    let (code, display) = if e.break_glass { ("BTG", "break the glass") } else { ("TREAT", "treatment") };
    let mut concept = json!({ "coding": [{ "system": ACT_REASON, "code": code, "display": display }] });
    if !e.reason.is_empty() {
        concept["text"] = json!(e.reason);
    }
    concept
}

/// One event as a FHIR R4 AuditEvent. `seq` is its line in the chain,
/// which makes the resource id stable across exports.
pub fn audit_event(e: &AuditEvent, seq: u64, source: &Source) -> Value {
    let search = e.action.contains("search");
    let (subtype, subtype_display) = if search { ("search-type", "search") } else { ("read", "read") };
    let mut agent = json!({
        "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
            "code": "humanuser", "display": "human user" }] },
        "who": { "identifier": { "value": e.user }, "display": e.user },
        "requestor": true,
        "purposeOfUse": [purpose(e)],
    });
    if !e.role.is_empty() {
        agent["role"] = json!([{ "text": e.role }]);
    }
    if !e.org.is_empty() {
        agent["location"] = json!({ "identifier": { "system": ODS_SYSTEM, "value": e.org } });
        agent["who"]["identifier"]["assigner"] = json!({ "identifier": { "system": ODS_SYSTEM, "value": e.org } });
    }
    if !e.client.is_empty() && e.client != "local" {
        let host = e.client.rsplit_once(':').map_or(e.client.as_str(), |(h, _)| h);
        agent["network"] = json!({ "address": host.trim_matches(['[', ']']), "type": "2" });
    }
    let mut resource = json!({
        "resourceType": "AuditEvent",
        "id": format!("recordhub-audit-{seq}"),
        "type": { "system": DCM, "code": "110110", "display": "Patient Record" },
        "subtype": [{ "system": "http://hl7.org/fhir/restful-interaction", "code": subtype, "display": subtype_display }],
        "action": "R",
        "recorded": instant(e.at_ms),
        "outcome": outcome_code(&e.outcome),
        "outcomeDesc": e.outcome,
        "purposeOfEvent": [purpose(e)],
        "agent": [agent],
        "source": {
            "site": source.site,
            "observer": { "display": format!("recordhub on {}", source.node) },
            "type": [{ "system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                "display": "Application Server" }],
        },
    });
    if let Some(nhs) = &e.nhs_number {
        let mut details = vec![json!({ "type": "via", "valueString": e.via })];
        if !e.categories.is_empty() {
            details.push(json!({ "type": "categories", "valueString": e.categories.join(",") }));
        }
        if !e.items.is_empty() {
            details.push(json!({ "type": "items", "valueString": e.items.join(",") }));
        }
        resource["entity"] = json!([{
            "what": { "identifier": { "system": NHS_NUMBER_SYSTEM, "value": nhs } },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1",
                "display": "Person" },
            "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1",
                "display": "Patient" },
            "detail": details,
        }]);
    }
    resource
}
