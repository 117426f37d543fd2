//! cargo-fuzz target: see `harness::mapping_path` for the property.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::mapping_path(data));
