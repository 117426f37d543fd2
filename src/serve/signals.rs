//! The signals `recordhub serve` answers: SIGTERM/ctrl-c shut down
//! cleanly, SIGHUP reloads the mappings.

use tokio_util::sync::CancellationToken;

use crate::http::{self, Api};

pub(super) async fn shutdown_on_signal(cancel: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            cancel.cancel();
            return;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested: no new connections; finishing messages in hand");
    cancel.cancel();
}

/// SIGHUP reloads the mappings atomically; a broken set keeps the old one.
pub(super) async fn reload_on_sighup(api: Api, cancel: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = hup.recv() => if r.is_none() { return },
            }
            let api = api.clone();
            let _ = tokio::task::spawn_blocking(move || http::reload_and_regovern(&api)).await;
        }
    }
    #[cfg(not(unix))]
    let _ = (api, cancel);
}
