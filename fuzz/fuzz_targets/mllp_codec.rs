//! cargo-fuzz target: see `harness::mllp_codec` for the property.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::mllp_codec(data));
