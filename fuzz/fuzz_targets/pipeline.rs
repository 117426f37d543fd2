//! cargo-fuzz target: the whole synchronous pipeline over a temporary data
//! directory (one engine for the whole run, as a server has). The input is
//! cut into frames at FS bytes, processed as one batch; every frame must get
//! its ACK or NAK (see `harness::PipelineHarness::check`).
#![no_main]

use std::sync::{Mutex, OnceLock};

#[path = "../harness.rs"]
mod harness;

static ENGINE: OnceLock<Mutex<harness::PipelineHarness>> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let engine = ENGINE.get_or_init(|| Mutex::new(harness::PipelineHarness::new()));
    let frames: Vec<&[u8]> = data.split(|&b| b == 0x1c).filter(|f| !f.is_empty()).take(64).collect();
    // A poisoned lock means an earlier input already failed: libFuzzer has stopped.
    let mut engine = engine.lock().unwrap_or_else(|e| e.into_inner());
    engine.check(&frames);
});
