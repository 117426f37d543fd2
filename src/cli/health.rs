//! `recordhub health`: a running engine's `GET /health`, for a container
//! HEALTHCHECK (the runtime image has no curl) and for scripts.

use std::io::Write;
use std::net::SocketAddr;

use super::CliError;

/// How long a health probe may take before it counts as unreachable.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The URL of a listener on this host: an unspecified address (`0.0.0.0`,
/// `::`) is reached on loopback.
pub fn local_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// Prints the engine's `/health` answer; true when it is 200.
///
/// # Errors
/// [`CliError::Http`] when the engine cannot be reached.
pub fn health(base: &str) -> Result<bool, CliError> {
    let url = format!("{}/health", base.trim_end_matches('/'));
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(TIMEOUT)).build().into();
    let mut resp = agent.get(&url).call().map_err(|e| CliError::Http { url: url.clone(), error: e.to_string() })?;
    let ok = resp.status().as_u16() == 200;
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    let _ = writeln!(std::io::stdout(), "{}", body.trim_end());
    Ok(ok)
}
