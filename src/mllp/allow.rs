//! The sender allow-list of a listener: which connection may send as which
//! MSH-3 (sending application) / MSH-4 (sending facility).
//!
//! A connection's [`Identity`] is what it proved: its client certificate's
//! subject CN (mutual TLS) and its source IP. When the connection opens, the
//! listener's rules that match that identity become its [`SenderRights`],
//! which travel with each of its messages (`worker::Job`); the pipeline's
//! intake stage asks [`verdict`] whether the message's MSH-3/MSH-4 is one of
//! them. The decision is the pipeline's, so a mismatch is journaled and
//! answered like every other rejection.
//!
//! A mismatch is AR with ERR-3 = 103 "table value not found", located at the
//! field that is not allowed: MSH-3 and MSH-4 are HD values coded from HL7
//! user-defined tables 0361 (application) and 0362 (facility), and the value
//! sent is not in this connection's table. Not 207 (an engine fault: the
//! sender would retry forever) nor 200-203 (type, event, processing id,
//! version); AR rather than AE because the message itself may be fine: it
//! came from the wrong place, and resending it from there will not help.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ack::{Location, Problem, Verdict};
use crate::intake::Envelope;

/// Messages refused because their MSH-3/MSH-4 is not allowed for their connection.
static SENDERS_REFUSED: AtomicU64 = AtomicU64::new(0);

/// How many messages were refused for their sender (for `/metrics` and tests).
pub fn senders_refused() -> u64 {
    SENDERS_REFUSED.load(Ordering::Relaxed)
}

/// An IP network, `10.1.0.0/16` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` (a bare address is a single host).
    ///
    /// # Errors
    /// Not an address, or a prefix longer than the address.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix {p:?} is not a number from 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { net, prefix })
    }

    /// Whether `ip` is inside (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip.to_canonical() {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let (net, net_len) = bits(self.net);
        let (addr, addr_len) = bits(ip);
        if net_len != addr_len {
            return false;
        }
        let prefix = u32::from(self.prefix);
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
        net & mask == addr & mask
    }
}

/// Who a rule is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// A client certificate whose subject CN is exactly this (mutual TLS listeners).
    Subject(String),
    /// A source address inside this network.
    Cidr(Cidr),
}

/// One `allow = [{ ... }]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    pub who: Who,
    /// MSH-3 it may send as; `None`: any.
    pub sending_app: Option<String>,
    /// MSH-4 it may send as; `None`: any.
    pub sending_facility: Option<String>,
}

/// What a connection proved about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub ip: IpAddr,
    /// The verified client certificate's subject CN.
    pub subject_cn: Option<String>,
}

impl Identity {
    fn matches(&self, who: &Who) -> bool {
        match who {
            Who::Subject(cn) => self.subject_cn.as_deref() == Some(cn.as_str()),
            Who::Cidr(net) => net.contains(self.ip),
        }
    }
}

/// The (MSH-3, MSH-4) pairs one connection may send as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderRights {
    /// For the ERR text: `CN=…` or the IP address.
    pub who: String,
    allowed: Vec<(Option<String>, Option<String>)>,
}

/// The rights of a connection with `identity` under `rules` (possibly none:
/// then each of its messages is refused, with the reason).
pub fn rights(rules: &[AllowRule], identity: &Identity) -> SenderRights {
    let who = match &identity.subject_cn {
        Some(cn) => format!("CN={cn}"),
        None => identity.ip.to_string(),
    };
    let allowed = rules
        .iter()
        .filter(|r| identity.matches(&r.who))
        .map(|r| (r.sending_app.clone(), r.sending_facility.clone()))
        .collect();
    SenderRights { who, allowed }
}

/// `field` equals `want`, or its first component does (`PAS^1.2.3^ISO` is `PAS`).
fn field_is(field: &str, want: &str, component_sep: char) -> bool {
    field == want || field.split(component_sep).next() == Some(want)
}

/// `None` when the message may be sent on this connection (or the listener
/// has no allow-list); otherwise the AR verdict (see the module docs), counted.
pub fn verdict(rights: Option<&SenderRights>, envelope: &Envelope) -> Option<Verdict> {
    let rights = rights?;
    let e = &envelope.inbound;
    let sep = e.delimiters.map_or('^', |d| char::from(d.component));
    let app_ok = |a: &Option<String>| a.as_deref().is_none_or(|a| field_is(&e.sending_app, a, sep));
    let fac_ok = |f: &Option<String>| f.as_deref().is_none_or(|f| field_is(&e.sending_facility, f, sep));
    if rights.allowed.iter().any(|(a, f)| app_ok(a) && fac_ok(f)) {
        return None;
    }
    SENDERS_REFUSED.fetch_add(1, Ordering::Relaxed);
    // Point at MSH-4 unless the application alone is what no rule allows.
    let field = if rights.allowed.iter().any(|(a, _)| app_ok(a)) { 4 } else { 3 };
    let text = format!(
        "sending application/facility {}/{} is not allowed on this connection ({}); see the listener's allow-list",
        e.sending_app, e.sending_facility, rights.who
    );
    Some(Verdict::Rejected(Problem::new(103, text).at(Location::field("MSH", 1, field))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_contains_its_network_only() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped IPv6 is IPv4");
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("192.0.2.1")));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(!Cidr::parse("fd00::/8").unwrap().contains(ip("10.0.0.1")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0/8").is_err());
    }

    fn envelope(app: &str, fac: &str) -> Envelope {
        let mut e = Envelope::default();
        e.inbound.sending_app = app.into();
        e.inbound.sending_facility = fac.into();
        e
    }

    #[test]
    fn a_subject_may_send_only_as_its_msh3_msh4() {
        let rules = vec![AllowRule {
            who: Who::Subject("pas.rj1.nhs.uk".into()),
            sending_app: Some("PAS".into()),
            sending_facility: Some("RJ1".into()),
        }];
        let pas = rights(&rules, &Identity { ip: ip("10.0.0.1"), subject_cn: Some("pas.rj1.nhs.uk".into()) });
        assert_eq!(verdict(Some(&pas), &envelope("PAS", "RJ1")), None);
        assert_eq!(verdict(Some(&pas), &envelope("PAS^1.2.3^ISO", "RJ1")), None);
        let Some(Verdict::Rejected(p)) = verdict(Some(&pas), &envelope("PAS", "RX9")) else { panic!("refused") };
        assert_eq!(p.code, 103);
        let lab = rights(&rules, &Identity { ip: ip("10.0.0.1"), subject_cn: Some("lab".into()) });
        assert!(verdict(Some(&lab), &envelope("PAS", "RJ1")).is_some(), "another subject");
        assert_eq!(verdict(None, &envelope("X", "Y")), None, "no allow-list: no check");
    }
}
