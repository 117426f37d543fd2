//! The filters on the wire: a URL query string (`GET /admin/messages`,
//! and the CLI as its client), and the audit event of a search by patient.

use super::{FilterError, Filters, Patient};

impl Filters {
    /// The audit event of a search by patient (`nhs`, `local_id`): which
    /// messages a patient had is itself patient data. `None` for a search by
    /// metadata only.
    pub fn audit_event(&self, user: &str, via: &str, client: &str) -> Option<crate::audit::AuditEvent> {
        let patients = self.patients().ok()?;
        if patients.is_empty() {
            return None;
        }
        let mut event = crate::audit::AuditEvent {
            at_ms: crate::pipeline::now_ms(),
            user: user.to_string(),
            action: "message_search".into(),
            client: client.to_string(),
            via: via.to_string(),
            outcome: "shown".into(),
            ..Default::default()
        };
        for p in patients {
            match p {
                Patient::Nhs(n) => event.nhs_number = Some(n.as_str().to_string()),
                Patient::Local { organisation, id } => {
                    event.items.push(format!("identifier/{}/{id}", organisation.unwrap_or_default()));
                }
            }
        }
        Some(event)
    }

    /// The filters of a URL query string (`type=ADT&verdict=rejected`).
    ///
    /// # Errors
    /// An unknown key, or a number that is not one.
    pub fn from_query_string(q: &str) -> Result<Filters, FilterError> {
        let mut f = Filters::default();
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            let (k, v) = (decode(k), decode(v));
            let number =
                |key: &'static str| v.parse::<u64>().map_err(|_| FilterError::Number { key, value: v.clone() });
            match k.as_str() {
                "control_id" => f.control_id = Some(v),
                "sender" => f.sender = Some(v),
                "type" => f.message_type = Some(v),
                "verdict" => f.verdict = Some(v),
                "err" => {
                    f.err = Some(number("err")?.try_into().map_err(|_| FilterError::Number { key: "err", value: v })?)
                }
                "since" => f.since = Some(v),
                "until" => f.until = Some(v),
                "nhs" => f.nhs = Some(v),
                "local_id" => f.local_id = Some(v),
                "limit" => f.limit = Some(usize::try_from(number("limit")?).unwrap_or(usize::MAX)),
                _ => return Err(FilterError::Unknown(k)),
            }
        }
        Ok(f)
    }

    /// As a URL query string, for a client of `GET /admin/messages`.
    pub fn to_query_string(&self) -> String {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        let (err, limit) = (self.err.map(|e| e.to_string()), self.limit.map(|l| l.to_string()));
        let pairs = [
            ("control_id", self.control_id.as_ref()),
            ("sender", self.sender.as_ref()),
            ("type", self.message_type.as_ref()),
            ("verdict", self.verdict.as_ref()),
            ("err", err.as_ref()),
            ("since", self.since.as_ref()),
            ("until", self.until.as_ref()),
            ("nhs", self.nhs.as_ref()),
            ("local_id", self.local_id.as_ref()),
            ("limit", limit.as_ref()),
        ];
        let parts: Vec<String> = pairs
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC))))
            .collect();
        parts.join("&")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_string_round_trips_and_an_unknown_key_is_named() {
        let f = Filters {
            sender: Some("PAS^RJ1".into()),
            message_type: Some("ADT^A01".into()),
            err: Some(102),
            since: Some("2026-11-21T08:30:00+01:00".into()),
            local_id: Some("RJ1^RJ1-123 456".into()),
            limit: Some(5),
            ..Default::default()
        };
        assert_eq!(Filters::from_query_string(&f.to_query_string()).unwrap(), f);
        assert_eq!(Filters::from_query_string("").unwrap(), Filters::default());
        let e = Filters::from_query_string("typ=ADT").unwrap_err().to_string();
        assert!(e.contains("'typ'"), "{e}");
        let e = Filters::from_query_string("limit=ten").unwrap_err().to_string();
        assert!(e.contains("limit"), "{e}");
        let p = Filters { nhs: Some("943 476 5919".into()), local_id: Some("X".into()), ..Default::default() };
        assert_eq!(p.patients().unwrap().len(), 2);
        assert!(Filters { nhs: Some("1234567890".into()), ..Default::default() }.patients().is_err());
    }
}
