//! The `recordhub` command: CLI parsing, telemetry, config, then the library.
//! The clap definitions live in `main/args.rs`, what each subcommand does in
//! `main/run.rs` (binary modules: anyhow stays out of the library).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

#[path = "main/args.rs"]
mod args;
#[path = "main/run.rs"]
mod run;

// glibc malloc trims and regrows its heap around every large message and
// dominated the pipeline profile (DESIGN.md; measured in the closing note).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Every file any subcommand creates (journal, index, audit, keys) is the owner's only.
    recordhub::serve::owner_only_umask();
    let cli = args::Cli::parse();
    match run::run(cli) {
        Ok(code) => code,
        // `recordhub journal | head`: the reader has all it wanted.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "recordhub: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// True when stdout's reader went away (EPIPE), anywhere in the chain.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
