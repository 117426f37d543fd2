//! `[[mllp.listeners]]` → [`ListenerConfig`]: addresses, TLS files (loaded
//! once here, so a missing or broken certificate stops start-up naming the
//! file) and allow-lists.
//!
//! Problems are reported under keys like `mllp.listeners[2].tls.cert` (1-based,
//! as a reader counts the entries) at the position of `listeners` in the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::raw::{RawAllow, RawHttpTls, RawListener, RawTls};
use super::validate::{resolve_path, Validator};
use super::ListenerConfig;
use crate::mllp::allow::{AllowRule, Cidr, Who};
use crate::mllp::tls::{self, TlsFiles};

const AT: &str = "mllp.listeners";

pub(super) fn validate(raw: &[RawListener], v: &mut Validator<'_>) -> Vec<ListenerConfig> {
    raw.iter().enumerate().map(|(i, l)| listener(&format!("{AT}[{}]", i + 1), l, v)).collect()
}

fn listener(key: &str, raw: &RawListener, v: &mut Validator<'_>) -> ListenerConfig {
    let listen = raw.listen.parse().unwrap_or_else(|_| {
        let reason = "not an IP socket address like 0.0.0.0:2576";
        v.report_in(AT, &format!("{key}.listen"), format!("{:?}", raw.listen), reason);
        SocketAddr::from(([0, 0, 0, 0], 0))
    });
    let tls = raw.tls.as_ref().map(|t| tls_files(AT, &format!("{key}.tls"), t, v));
    let mutual = tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    let rules: Vec<AllowRule> = raw
        .allow
        .iter()
        .enumerate()
        .filter_map(|(i, a)| rule(&format!("{key}.allow[{}]", i + 1), a, mutual, v))
        .collect();
    let allow = (!raw.allow.is_empty()).then_some(rules);
    ListenerConfig { listen, tls, allow }
}

fn path(v: &Validator<'_>, at: &str, p: &Path) -> PathBuf {
    resolve_path(p, v.origins.base_for(at))
}

/// `[http] tls`: resolved and loaded like a listener's.
pub(super) fn http_tls(raw: &RawHttpTls, v: &mut Validator<'_>) -> TlsFiles {
    let raw = RawTls { cert: raw.cert.clone(), key: raw.key.clone(), client_ca: None };
    tls_files("http.tls", "http.tls", &raw, v)
}

/// Resolves the paths and loads them the way the listener will.
fn tls_files(at: &str, key: &str, raw: &RawTls, v: &mut Validator<'_>) -> TlsFiles {
    let files = TlsFiles {
        cert: path(v, at, &raw.cert),
        key: path(v, at, &raw.key),
        client_ca: raw.client_ca.as_ref().map(|p| path(v, at, p)),
    };
    if let Err(e) = tls::acceptor(&files) {
        let (field, value) = match &e {
            tls::TlsError::Pem { path, .. } | tls::TlsError::Rustls { path, .. } if *path == files.key => ("key", path),
            tls::TlsError::Pem { path, .. } | tls::TlsError::Rustls { path, .. }
                if Some(path) == files.client_ca.as_ref() =>
            {
                ("client_ca", path)
            }
            _ => ("cert", &files.cert),
        };
        v.report_in(at, &format!("{key}.{field}"), format!("{:?}", value.display().to_string()), e.to_string());
    }
    files
}

fn rule(key: &str, raw: &RawAllow, mutual: bool, v: &mut Validator<'_>) -> Option<AllowRule> {
    let who = match (&raw.subject, &raw.cidr) {
        (Some(subject), None) => {
            let Some(cn) = subject.strip_prefix("CN=").filter(|cn| !cn.is_empty()) else {
                let reason = "write the client certificate's subject common name as \"CN=<name>\"";
                v.report_in(AT, &format!("{key}.subject"), format!("{subject:?}"), reason);
                return None;
            };
            if !mutual {
                let reason = "a subject can only be checked on a listener with tls.client_ca (mutual TLS)";
                v.report_in(AT, &format!("{key}.subject"), format!("{subject:?}"), reason);
                return None;
            }
            Who::Subject(cn.to_string())
        }
        (None, Some(cidr)) => match Cidr::parse(cidr) {
            Ok(net) => Who::Cidr(net),
            Err(reason) => {
                v.report_in(
                    AT,
                    &format!("{key}.cidr"),
                    format!("{cidr:?}"),
                    format!("{reason}; expected like 10.1.0.0/16"),
                );
                return None;
            }
        },
        _ => {
            v.report_in(AT, key, "{ ... }".into(), "give exactly one of subject = \"CN=...\" or cidr = \"10.0.0.0/8\"");
            return None;
        }
    };
    if raw.sending_app.is_none() && raw.sending_facility.is_none() {
        v.report_in(AT, key, "{ ... }".into(), "give sending_app, sending_facility or both (MSH-3, MSH-4)");
        return None;
    }
    let sending_app = raw.sending_app.clone().map(|a| v.hl7_name(&format!("{key}.sending_app"), a));
    let sending_facility = raw.sending_facility.clone().map(|f| v.hl7_name(&format!("{key}.sending_facility"), f));
    Some(AllowRule { who, sending_app, sending_facility })
}
