//! Stand-in for `recordhub load` until `pub mod load;` is in src/lib.rs:
//! compiles src/load.rs into this example so its unit tests run
//! (`cargo test --example load_check`) and so it can drive a real engine:
//!
//! `cargo run --release --example load_check -- ADDR CONNECTIONS MESSAGES PIPELINE RATE|- FILE...`

// src/load.rs names the codec as `crate::mllp::...`.
pub use recordhub::mllp;

#[path = "../src/load.rs"]
#[allow(dead_code)]
mod load;

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        eprintln!("usage: load_check ADDR CONNECTIONS MESSAGES PIPELINE RATE|- FILE...");
        std::process::exit(2);
    }
    let opts = load::LoadOptions {
        to: args[0].clone(),
        connections: args[1].parse().expect("CONNECTIONS is a number"),
        messages: args[2].parse().expect("MESSAGES is a number"),
        pipeline: args[3].parse().expect("PIPELINE is a number"),
        rate: (args[4] != "-").then(|| args[4].parse().expect("RATE is a number")),
        files: args[5..].iter().map(Into::into).collect(),
        timeout: Duration::from_secs(30),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime starts");
    match rt.block_on(load::run(opts)) {
        Ok(summary) => println!("{}", serde_json::to_string_pretty(&summary).expect("serialises")),
        Err(e) => {
            eprintln!("load_check: {e}");
            std::process::exit(1);
        }
    }
}
