//! The hosts this listener answers as: the `Host` allow-list and the
//! origin check for state-changing requests.

use std::collections::HashSet;
use std::net::SocketAddr;

/// Lower-case `host[:port]` forms a `Host` header may carry.
#[derive(Debug, Clone)]
pub struct Hosts(HashSet<String>);

impl Hosts {
    /// The loopback names, bare and with the listen port, the listen
    /// address itself (unless it is 0.0.0.0 or [::]), and each configured
    /// name: as written, and, when it has no port, with the listen port too.
    /// (A bare loopback name is no rebinding risk: a page can only make a
    /// browser send it from a loopback origin; some clients omit the port.)
    pub fn new(configured: &[String], listen: SocketAddr) -> Hosts {
        let port = listen.port();
        let mut set = HashSet::new();
        for name in ["127.0.0.1", "localhost", "[::1]"] {
            set.insert(format!("{name}:{port}"));
            set.insert(name.to_string());
        }
        if !listen.ip().is_unspecified() {
            set.insert(listen.to_string());
        }
        for name in configured {
            let name = name.to_ascii_lowercase();
            if !has_port(&name) {
                set.insert(format!("{name}:{port}"));
            }
            set.insert(name);
        }
        Hosts(set)
    }

    /// Whether a `Host` header value is one of ours.
    pub fn allowed(&self, host: &str) -> bool {
        self.0.contains(&host.trim().to_ascii_lowercase())
    }

    /// Whether an `Origin` (`http://host:port`) or `Referer` (a URL) names
    /// one of our hosts; `null` and anything without a scheme do not.
    pub fn origin_allowed(&self, url: &str) -> bool {
        let Some((scheme, rest)) = url.trim().split_once("://") else { return false };
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return false;
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        // user:password@ in a Referer is not ours to honour.
        !authority.contains('@') && self.allowed(authority)
    }
}

/// Whether `host` ends in `:port` (an IPv6 literal's colons are inside brackets).
fn has_port(host: &str) -> bool {
    let after = host.rsplit(']').next().unwrap_or(host);
    after.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(configured: &[&str], listen: &str) -> Hosts {
        let configured: Vec<String> = configured.iter().map(|s| s.to_string()).collect();
        Hosts::new(&configured, listen.parse().unwrap())
    }

    #[test]
    fn loopback_names_with_the_listen_port_are_allowed_by_default() {
        let h = hosts(&[], "127.0.0.1:8080");
        for ok in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080", "[::1]:8080"] {
            assert!(h.allowed(ok), "{ok}");
        }
        assert!(h.allowed("localhost"), "some clients omit the port");
        for bad in ["evil.example", "evil.example:8080", "localhost:8081", "127.0.0.2:8080"] {
            assert!(!h.allowed(bad), "{bad}");
        }
    }

    #[test]
    fn configured_names_without_a_port_match_bare_and_with_the_listen_port() {
        let h = hosts(&["records.rj1.nhs.uk", "proxy:8443", "[fe80::1]"], "0.0.0.0:9000");
        assert!(h.allowed("records.rj1.nhs.uk"));
        assert!(h.allowed("records.rj1.nhs.uk:9000"));
        assert!(!h.allowed("records.rj1.nhs.uk:9001"));
        assert!(h.allowed("proxy:8443"));
        assert!(!h.allowed("proxy"));
        assert!(h.allowed("[fe80::1]:9000"));
        assert!(!h.allowed("0.0.0.0:9000"), "the unspecified address is no name");
    }

    #[test]
    fn origins_and_referers_are_checked_by_their_authority() {
        let h = hosts(&[], "127.0.0.1:8080");
        assert!(h.origin_allowed("http://127.0.0.1:8080"));
        assert!(h.origin_allowed("http://localhost:8080/signin?next=/"));
        assert!(!h.origin_allowed("http://evil.example"));
        assert!(!h.origin_allowed("http://127.0.0.1:8080@evil.example/"));
        assert!(!h.origin_allowed("http://evil.example@127.0.0.1:8080/"));
        assert!(!h.origin_allowed("null"));
        assert!(!h.origin_allowed("file:///tmp/x.html"));
    }
}
