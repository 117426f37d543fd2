//! What to do next, for the start-up and read failures a new user meets
//! first: a port already in use (which listener, which key), `record` with
//! no server answering (use `--data`), `reindex` beside a running server
//! (stop it first). Each returns the whole message, or `None` to keep the
//! error as it is.

use std::net::SocketAddr;

use super::RecordError;
use crate::config::Config;
use crate::serve::ServeError;

/// Which listener each configured address is, for a bind failure.
pub fn listener_names(cfg: &Config) -> Vec<(SocketAddr, String)> {
    let mut names = vec![
        (cfg.mllp.listen, "the MLLP listener ([mllp] listen or --listen)".to_string()),
        (cfg.http.listen, "the HTTP API ([http] listen or --http)".to_string()),
    ];
    for (i, l) in cfg.mllp.listeners.iter().enumerate() {
        names.push((l.listen, format!("MLLP listener {} of [[mllp.listeners]]", i + 1)));
    }
    names
}

/// A listener that cannot bind: its name, the OS error and what to do.
pub fn bind_failure(e: &ServeError, names: &[(SocketAddr, String)]) -> Option<String> {
    let ServeError::Bind { addr, source } = e else { return None };
    let (_, name) = names.iter().find(|(a, _)| a == addr)?;
    let hint = match source.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "; another process holds port {0} (`ss -ltnp 'sport = :{0}'` shows which): stop it or choose another address",
            addr.port()
        ),
        std::io::ErrorKind::PermissionDenied => "; ports below 1024 need privileges: use a higher port".to_string(),
        _ => String::new(),
    };
    Some(format!("{name} cannot listen on {addr}: {source}{hint}"))
}

/// `record`, `history`, `parked` against a server that does not answer.
pub fn no_server(e: &RecordError) -> Option<String> {
    match e {
        RecordError::Http(url, why) if why.contains("Connection refused") || why.contains("connect") => Some(format!(
            "no recordhub answers at {url} ({why}); start it, give its address with --server URL, \
             or read the data directory itself with --data DIR (only while the server is stopped)"
        )),
        _ => None,
    }
}

/// `reindex` failing to open the data directory; beside a running server
/// (which holds the index) it says to stop the server first.
pub fn reindex(e: &RecordError) -> Option<String> {
    match e {
        RecordError::Open(why) if why.contains("another recordhub") => Some(format!(
            "cannot reindex: {why}; reindex needs the data directory to itself: stop the running \
             recordhub (e.g. `systemctl stop recordhub`), run reindex, then start it again"
        )),
        RecordError::Open(why) => Some(format!("cannot reindex: {why}")),
        _ => None,
    }
}
