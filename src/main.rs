//! The `recordhub` command: CLI parsing, telemetry, config, then the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use recordhub::cli;
use recordhub::config::{self, Config, Overrides};

#[derive(Parser)]
#[command(
    name = "recordhub",
    version,
    about = "HL7 v2 interface engine and record indexer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the MLLP listener (and the read API) from engine.toml.
    Serve {
        #[command(flatten)]
        common: Common,
        /// MLLP listen address, overriding [mllp] listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// HTTP read API address, overriding [http] listen.
        #[arg(long)]
        http: Option<SocketAddr>,
    },
    /// Send every message in FILEs over MLLP and print one line per ACK.
    Send {
        /// host:port of the MLLP listener.
        #[arg(long)]
        to: String,
        /// Seconds to wait for each ACK.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List what was received (JSON lines), or print one raw message. Safe while the server runs.
    Journal {
        #[command(flatten)]
        common: Common,
        /// Only entries with this sequence number or later.
        #[arg(long, default_value_t = 1)]
        since: u64,
        /// Print the raw message of this sequence number instead of the listing.
        #[arg(long)]
        show: Option<u64>,
    },
}

#[derive(clap::Args)]
struct Common {
    /// The config file (default ./engine.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory, overriding [store] data_dir.
    #[arg(long)]
    data: Option<PathBuf>,
}

impl Common {
    fn load(&self, listen: Option<SocketAddr>, http: Option<SocketAddr>) -> anyhow::Result<Config> {
        let overrides = Overrides {
            listen,
            data_dir: self.data.clone(),
            http_listen: http,
        };
        Ok(config::load(self.config.as_deref(), &overrides)?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "recordhub: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            common,
            listen,
            http,
        } => {
            let cfg = common.load(listen, http)?;
            recordhub::telemetry::init(&cfg.log.level, cfg.log.format)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            rt.block_on(recordhub::serve::serve(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Send { to, timeout, files } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            let ok = rt.block_on(cli::send(
                &to,
                std::time::Duration::from_secs(timeout),
                &files,
            ))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Journal {
            common,
            since,
            show,
        } => {
            let cfg = common.load(None, None)?;
            cli::journal(&cfg.store.data_dir, since, show)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
