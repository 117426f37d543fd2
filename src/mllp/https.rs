//! TLS for the HTTP API (`[http] tls = { cert, key }`): an axum listener whose
//! connections are TLS streams.
//!
//! Handshakes run in their own tasks (under
//! [`HANDSHAKE_TIMEOUT`](super::tls::HANDSHAKE_TIMEOUT)) and only completed
//! streams reach axum, so a slow or garbage handshake does not hold up the
//! next connection. Failures are logged at DEBUG: the HTTP API faces
//! operators and scrapers, not senders.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::tls::HANDSHAKE_TIMEOUT;

/// Completed handshakes waiting for axum; beyond this, accepting pauses.
const READY_QUEUE: usize = 64;

/// A TLS listener for `axum::serve`.
pub struct HttpsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl HttpsListener {
    /// Starts accepting on `listener` and handshaking with `acceptor`.
    ///
    /// # Errors
    /// The listener has no local address.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<HttpsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(listener, acceptor, tx));
        Ok(HttpsListener { local, ready })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = tx.closed() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "HTTPS handshake failed"),
                Err(_) => tracing::debug!(peer = %peer, "HTTPS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(x) => x,
            // The accept loop only ends when this receiver is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
