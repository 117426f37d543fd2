//! Panics: logged as one JSON line with their cause, and what a dead
//! pipeline thread means for the process.
//!
//! A panic in the pipeline thread (outside mapping, which catches its own)
//! means the engine can no longer acknowledge anything. Limping on with an
//! open port would make senders time out one by one while `/health` says
//! ok; instead the worker reports it in [`crate::health::Health`], the
//! server stops accepting, and `serve` returns an error so the process exits
//! non-zero and its supervisor (systemd, Kubernetes) restarts it. Nothing
//! acknowledged is lost: ACKs are only sent after the journal commit, and
//! the restarted engine answers retransmissions of committed messages with
//! their original ACK.

use std::any::Any;

/// The message a panic carried.
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

/// Logs every panic through tracing (JSON, with thread and location) before
/// the default hook runs. The default hook writes to stderr and ignores a
/// closed stream, so it cannot fail in turn.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = panic_text(info.payload());
        tracing::error!(thread, location, panic = %message, "panic");
        default(info);
    }));
}
