//! What the follower reads from the stream: delivered messages decoded into
//! journal entries (in order, gap fillers passed, anything else refused),
//! the stream's end, and the check that the local journal is a prefix of
//! the stream before following starts.

use async_nats::jetstream::Message;

use crate::journal::{wire, Entry};
use crate::pipeline::{error_chain, Pipeline};

use crate::cluster::{Cluster, ClusterError, HDR_FORMAT, HDR_GAP};

/// A delivered batch, decoded: entries to append in order, the last seq it
/// covers (gap fillers included) and the stream's last sequence as seen.
pub(super) struct Decoded {
    pub(super) entries: Vec<Entry>,
    pub(super) through: u64,
    pub(super) stream_last: u64,
    /// Why the message after `through` cannot be applied: following stops.
    pub(super) bad: Option<String>,
}

/// A seq missing from the delivery: make the consumer again from the position.
pub(super) struct OutOfOrder(pub(super) String);

pub(super) fn decode_batch(batch: &[Message], held: u64) -> Result<Decoded, OutOfOrder> {
    let mut d = Decoded { entries: Vec::with_capacity(batch.len()), through: held, stream_last: 0, bad: None };
    for m in batch {
        let info = m.info().map_err(|e| OutOfOrder(format!("message info: {e}")))?;
        let seq = info.stream_sequence;
        d.stream_last = d.stream_last.max(seq + info.pending);
        if seq <= d.through {
            continue; // a redelivery of an entry already held
        }
        if seq != d.through + 1 {
            return Err(OutOfOrder(format!("stream seq {seq} delivered after {}", d.through)));
        }
        let header = |name: &str| m.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
        if header(HDR_GAP).is_some() {
            d.through = seq;
            continue; // stands for a seq burned on the active node
        }
        let format = header(HDR_FORMAT).filter(|f| *f != wire::FORMAT_VERSION.to_string());
        let decoded = match format {
            Some(f) => Err(format!(
                "stream message {seq} is in journal entry format {f}, which this build does not read; upgrade this node"
            )),
            None => decode_at(seq, &m.payload),
        };
        match decoded {
            Ok(entry) => d.entries.push(entry),
            // What came before it is applied; it is never skipped.
            Err(why) => {
                d.bad = Some(why);
                break;
            }
        }
        d.through = seq;
    }
    Ok(d)
}

/// The journal entry a stream message at `seq` carries.
fn decode_at(seq: u64, payload: &[u8]) -> Result<Entry, String> {
    let entry = wire::decode(payload).map_err(|why| {
        format!("stream message {seq} is not a journal entry ({why}); was it published by another program?")
    })?;
    if entry.seq != seq {
        return Err(format!("stream message {seq} carries journal seq {}; the stream is not this journal", entry.seq));
    }
    Ok(entry)
}

/// The stream's last sequence.
pub(super) async fn stream_last(cluster: &Cluster) -> Result<u64, ClusterError> {
    let stream = cluster.js.get_stream(&cluster.names.stream).await.map_err(|e| ClusterError::Nats(e.to_string()))?;
    let info = stream.get_info().await.map_err(|e| ClusterError::Nats(e.to_string()))?;
    Ok(info.state.last_sequence)
}

/// The local journal must be a prefix of the stream: the stream holds the
/// local committed seq C with the same message.
pub(super) async fn check_prefix(cluster: &Cluster, pipeline: &Pipeline) -> Result<(), ClusterError> {
    let c = pipeline.committed_seq();
    if c == 0 {
        return Ok(());
    }
    let advice = format!(
        "this node's journal holds entries the stream does not (acknowledged locally but never replicated, or \
         written after another node took over); move {dir}/journal and {dir}/index aside and start again to \
         re-sync from the stream",
        dir = pipeline.data_dir().display()
    );
    let diverged = |why: String| ClusterError::Diverged { seq: c, why: format!("{why}; {advice}") };
    let local = pipeline.journal_entry(c).map_err(|e| ClusterError::Journal(error_chain(&e)))?;
    let Some(local) = local else {
        // Retention retired it: nothing left to compare; the stream decides from here.
        tracing::warn!(
            seq = c,
            "the local journal no longer holds its last committed entry; not checked against the stream"
        );
        return Ok(());
    };
    let last = stream_last(cluster).await?;
    if last < c {
        return Err(diverged(format!("the stream ends at seq {last}, before the local journal's seq {c}")));
    }
    let stream = cluster.js.get_stream(&cluster.names.stream).await.map_err(|e| ClusterError::Nats(e.to_string()))?;
    let msg =
        stream.get_raw_message(c).await.map_err(|e| diverged(format!("the stream does not hold seq {c} ({e})")))?;
    if msg.headers.get(HDR_GAP).is_some() {
        return Err(diverged(format!("the stream holds no entry at seq {c} (a burned seq)")));
    }
    let theirs = decode_at(c, &msg.payload).map_err(diverged)?;
    match differs(&local, &theirs) {
        Some(field) => Err(diverged(format!("the stream's entry at seq {c} is another message ({field} differs)"))),
        None => Ok(()),
    }
}

/// The first field that tells two journal entries apart, if any.
fn differs(a: &Entry, b: &Entry) -> Option<&'static str> {
    if a.control_id != b.control_id {
        Some("control id")
    } else if (&a.sending_app, &a.sending_facility) != (&b.sending_app, &b.sending_facility) {
        Some("sender")
    } else if a.received_at_ms != b.received_at_ms {
        Some("received at")
    } else if a.raw != b.raw {
        Some("message bytes")
    } else {
        None
    }
}

/// Why the stream cannot be followed past `seq` if it holds no message
/// there although it goes on after it (a message deleted from the stream):
/// a follower never passes a seq it lacks.
pub(super) async fn hole_at(cluster: &Cluster, seq: u64) -> Option<String> {
    use async_nats::jetstream::stream::RawMessageErrorKind;
    let stream = cluster.js.get_stream(&cluster.names.stream).await.ok()?;
    match stream.get_raw_message(seq).await {
        Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Some(format!(
            "the stream holds no message at seq {seq} but goes on after it (deleted from the stream?); this node \
             cannot follow past it: copy the data directory of a node that holds seq {seq}, then start again"
        )),
        _ => None,
    }
}
