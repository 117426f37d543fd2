//! cargo-fuzz target: see `harness::hl7_parse` for the property.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::hl7_parse(data));
