//! An MLLP client: the sending side of the pipeline's first stage, used by
//! `recordhub send`, the load tool and the tests.
//!
//! It frames messages with [`MllpCodec`], can pipeline (call [`MllpClient::send`]
//! several times, then [`MllpClient::recv_ack`] as many times), and reads just
//! enough of an ACK to tell a user what happened ([`summarize_ack`]). It does
//! not retry, reconnect or parse HL7 beyond MSA/ERR: callers decide that.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::codec::{Frame, FrameError, MllpCodec};
use super::tls::{Connector, TlsError};

/// A byte stream to a listener: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Largest ACK the client accepts. ACKs are a few hundred bytes; this only
/// bounds memory against a misbehaving peer.
pub const MAX_ACK_BYTES: usize = 1 << 20;

/// Why a send or an acknowledgement failed.
#[derive(thiserror::Error, Debug)]
pub enum ClientError {
    /// The TCP connection could not be opened (refused, unreachable, or no
    /// answer within the connect timeout).
    #[error("could not connect to {addr}; check the address and that the listener is running")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// No acknowledgement arrived in time.
    #[error("no acknowledgement within {after:?}; the server may be busy, or did not recognise the frame")]
    Timeout { after: Duration },
    /// The server closed (or reset) the connection before answering.
    #[error("the server closed the connection before acknowledging")]
    Closed,
    /// The server's reply was not a complete MLLP frame.
    #[error("the server's reply was not a valid MLLP frame")]
    Frame(#[source] FrameError),
    /// The server's reply was larger than [`MAX_ACK_BYTES`].
    #[error("the server's reply was {len} bytes, more than the {MAX_ACK_BYTES} an acknowledgement may have")]
    AckTooLarge { len: u64 },
    /// Reading from or writing to the connection failed.
    #[error("network error while talking to the server")]
    Io(#[source] io::Error),
    /// The TLS handshake failed (the server's certificate is not trusted by
    /// `--tls-ca` or names another host, or the server refused our certificate).
    #[error("TLS handshake with {addr} failed; check --tls-ca, --tls-server-name and --tls-cert/--tls-key")]
    Handshake {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// The TLS files given could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Opens a connection to `addr`, with TLS when `tls` is given; `timeout`
/// bounds the TCP connect and the handshake together.
///
/// # Errors
/// [`ClientError::Connect`] or [`ClientError::Handshake`].
pub async fn open(addr: &str, timeout: Duration, tls: Option<&Connector>) -> Result<Box<dyn Io>, ClientError> {
    let connect_error = |source| ClientError::Connect { addr: addr.to_owned(), source };
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {timeout:?}"));
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => return Err(connect_error(source)),
        Err(_) => return Err(connect_error(timed_out())),
    };
    // Small request/response frames: do not let Nagle hold them back.
    stream.set_nodelay(true).map_err(connect_error)?;
    let Some(tls) = tls else { return Ok(Box::new(stream)) };
    let handshake_error = |source| ClientError::Handshake { addr: addr.to_owned(), source };
    match tokio::time::timeout_at(deadline, tls.connector.connect(tls.server_name.clone(), stream)).await {
        Ok(Ok(stream)) => Ok(Box::new(stream)),
        Ok(Err(source)) => Err(handshake_error(source)),
        Err(_) => Err(handshake_error(timed_out())),
    }
}

impl From<io::Error> for ClientError {
    fn from(err: io::Error) -> Self {
        use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        match err.kind() {
            BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof => ClientError::Closed,
            _ => ClientError::Io(err),
        }
    }
}

impl From<FrameError> for ClientError {
    fn from(err: FrameError) -> Self {
        match err {
            FrameError::Io(io) => io.into(),
            truncated @ FrameError::Truncated(_) => ClientError::Frame(truncated),
        }
    }
}

/// One MLLP connection to a listener.
pub struct MllpClient {
    framed: Framed<Box<dyn Io>, MllpCodec>,
}

impl std::fmt::Debug for MllpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MllpClient").finish_non_exhaustive()
    }
}

impl MllpClient {
    /// Opens a connection to `addr` (`host:port`).
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the connection is refused, the name does
    /// not resolve, or nothing answers within `timeout`.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<MllpClient, ClientError> {
        Self::connect_with(addr, timeout, None).await
    }

    /// Opens a connection to `addr`, over TLS when `tls` is given.
    ///
    /// # Errors
    /// As [`MllpClient::connect`], and [`ClientError::Handshake`].
    pub async fn connect_with(
        addr: &str,
        timeout: Duration,
        tls: Option<&Connector>,
    ) -> Result<MllpClient, ClientError> {
        let stream = open(addr, timeout, tls).await?;
        Ok(MllpClient { framed: Framed::new(stream, MllpCodec::new(MAX_ACK_BYTES)) })
    }

    /// Writes one framed message and flushes it; does not wait for the ACK,
    /// so several messages may be sent before reading their ACKs.
    ///
    /// # Errors
    /// [`ClientError::Closed`] if the server has gone, [`ClientError::Io`]
    /// for other write failures.
    pub async fn send(&mut self, message: &[u8]) -> Result<(), ClientError> {
        self.framed.send(message).await?;
        Ok(())
    }

    /// Waits for the next frame from the server and returns its payload.
    /// Cancel-safe: bytes already read stay buffered for the next call.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] when nothing complete arrives within
    /// `timeout`, [`ClientError::Closed`] when the server closes the
    /// connection between frames, [`ClientError::Frame`] when it closes in
    /// the middle of one, [`ClientError::AckTooLarge`] for an oversize reply.
    pub async fn recv_ack(&mut self, timeout: Duration) -> Result<Bytes, ClientError> {
        let next = tokio::time::timeout(timeout, self.framed.next()).await;
        match next.map_err(|_| ClientError::Timeout { after: timeout })? {
            None => Err(ClientError::Closed),
            Some(Err(err)) => Err(err.into()),
            Some(Ok(Frame::Message(payload))) => Ok(payload.freeze()),
            Some(Ok(Frame::Oversize { len, .. })) => Err(ClientError::AckTooLarge { len }),
        }
    }

    /// Sends one message and waits for its acknowledgement.
    ///
    /// # Errors
    /// As [`MllpClient::send`] and [`MllpClient::recv_ack`].
    pub async fn call(&mut self, message: &[u8], timeout: Duration) -> Result<Bytes, ClientError> {
        self.send(message).await?;
        self.recv_ack(timeout).await
    }
}

/// What a user needs to know from an ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckSummary {
    /// MSA-1: AA, AE, AR, CA, CE or CR.
    pub code: String,
    /// MSA-2: the control ID of the message being acknowledged.
    pub control_id: String,
    /// MSA-3 when valued, else ERR-8, ERR-3.2, or the text inside ERR-1
    /// (`SEG^seq^field^code&text&system`, before v2.5), escapes decoded
    /// (`\F\` is `|`) when the ACK parses as HL7.
    pub text: String,
}

/// Reads MSA (and ERR) from an ACK. A standalone reader, so that `send` can
/// report on replies from any engine: field separator = the byte after
/// `MSH`, component separator = the next one; segments end at CR or LF.
/// Returns `None` without an MSH or MSA segment.
pub fn summarize_ack(ack: &[u8]) -> Option<AckSummary> {
    // The HL7 parser decodes escapes and MSH-18; the standalone reader is
    // for replies it refuses.
    let parsed = crate::hl7::Message::parse(ack).ok();
    parsed.as_ref().and_then(summarize_parsed).or_else(|| summarize_raw(ack))
}

/// [`summarize_ack`] through the HL7 parser: texts with escapes decoded.
fn summarize_parsed(msg: &crate::hl7::Message<'_>) -> Option<AckSummary> {
    let msa = msg.first("MSA")?;
    let mut text = msa.field(3).text().into_owned();
    if let (true, Some(err)) = (text.is_empty(), msg.first("ERR")) {
        text = err.field(8).text().into_owned();
        if text.is_empty() {
            text = err.field(3).component(2).text().into_owned();
        }
        if text.is_empty() {
            let code = err.field(1).as_value().components().find(|c| c.subcomponent_count() > 1);
            text = code.map(|c| c.subcomponent(2).text().into_owned()).unwrap_or_default();
        }
    }
    Some(AckSummary { code: msa.field(1).text().into_owned(), control_id: msa.field(2).text().into_owned(), text })
}

/// [`summarize_ack`] without the HL7 parser: escapes left as sent.
fn summarize_raw(ack: &[u8]) -> Option<AckSummary> {
    let mut segments = ack.split(|&b| b == b'\r' || b == b'\n').filter(|s| !s.is_empty());
    let msh = segments.clone().find(|s| s.starts_with(b"MSH") && s.len() >= 5)?;
    let seps = Separators {
        field: msh[3],
        component: msh[4],
        // MSH-2 is component, repetition, escape, subcomponent.
        subcomponent: msh.get(7).copied().filter(|&b| b != msh[3]).unwrap_or(b'&'),
    };
    let msa = segments.clone().find(|s| is_segment(s, b"MSA", seps.field))?;
    let err = segments.find(|s| is_segment(s, b"ERR", seps.field));

    let msa_field = |n| text(field(msa, seps.field, n));
    let mut summary = AckSummary { code: msa_field(1), control_id: msa_field(2), text: msa_field(3) };
    if summary.text.is_empty() {
        if let Some(err) = err {
            summary.text = err_text(err, seps);
        }
    }
    Some(summary)
}

#[derive(Debug, Clone, Copy)]
struct Separators {
    field: u8,
    component: u8,
    subcomponent: u8,
}

fn is_segment(segment: &[u8], id: &[u8; 3], field_sep: u8) -> bool {
    segment.starts_with(id) && segment.get(3).is_none_or(|&b| b == field_sep)
}

/// Field `n` of a (non-MSH) segment; field 0 is the segment ID.
fn field(segment: &[u8], sep: u8, n: usize) -> &[u8] {
    segment.split(|&b| b == sep).nth(n).unwrap_or(&[])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// ERR-8 (user message), else ERR-3.2 (error code text), else the text
/// subcomponent of ERR-1's code (pre-2.5 layout).
fn err_text(err: &[u8], seps: Separators) -> String {
    let user_message = field(err, seps.field, 8);
    if !user_message.is_empty() {
        return text(user_message);
    }
    // Components count from 1 in HL7 and from 0 here: ERR-3.2 is index 1.
    let code_text = field(field(err, seps.field, 3), seps.component, 1);
    if !code_text.is_empty() {
        return text(code_text);
    }
    field(err, seps.field, 1)
        .split(|&b| b == seps.component)
        .find(|component| component.contains(&seps.subcomponent))
        .map(|code| text(field(code, seps.subcomponent, 1)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
