//! `recordhub cluster status` and `recordhub cluster audit`, read straight
//! from NATS (no node needs to be up, only the NATS cluster).
//!
//! - `status [--json]`: a row per node (role, journal and applied seq, lag
//!   behind the stream, seconds since its report, `silent` after 10 s), the
//!   lease holder and its revision, the stream's last seq.
//! - `audit [--json]`: the cluster's one audit log: every node's audit lines
//!   in stream order, each with its node, its seq and hash in that node's
//!   chain (check it there with `recordhub audit verify`), and whether it is
//!   sound and follows that node's line before it.
//!
//! Exit 0; exit 1 with a message when the config has no `[cluster]` or NATS
//! cannot be reached.

use std::io::Write;
use std::process::ExitCode;

use crate::cluster::govern::audit;
use crate::cluster::{status, Cluster};
use crate::config::Config;

/// Connects to the cluster the config names, or says why not (exit 1).
fn connect(cfg: &Config) -> Result<(tokio::runtime::Runtime, Cluster), String> {
    let Some(cc) = &cfg.cluster else {
        return Err("no [cluster] section in the config: this engine runs as a single node \
                    (add [cluster] servers = [\"nats://…\"], or pass --config with the cluster's engine.toml)"
            .into());
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let cluster = rt.block_on(Cluster::connect(cc)).map_err(|e| format!("{e} (is NATS running?)"))?;
    Ok((rt, cluster))
}

fn fail(text: &str) -> ExitCode {
    eprintln!("recordhub cluster: {text}");
    ExitCode::from(1)
}

fn print(text: &str) {
    // A closed stdout (`| head`) is not an error worth reporting.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Prints the cluster's nodes, roles, lease holder and positions.
///
/// # Errors
/// None of its own: failures (no `[cluster]`, NATS unreachable) print a
/// message and return exit code 1.
pub fn cluster_status(cfg: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let (rt, cluster) = match connect(cfg) {
        Ok(c) => c,
        Err(text) => return Ok(fail(&text)),
    };
    let snap = match rt.block_on(status::snapshot(&cluster)) {
        Ok(s) => s,
        Err(e) => return Ok(fail(&e.to_string())),
    };
    if json {
        print(&format!("{}\n", serde_json::to_string_pretty(&snap)?));
    } else {
        print(&status::table(&snap));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the cluster's audit log (JSON lines with `--json`, else a table).
///
/// # Errors
/// None of its own: failures print a message and return exit code 1.
pub fn cluster_audit(cfg: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let (rt, cluster) = match connect(cfg) {
        Ok(c) => c,
        Err(text) => return Ok(fail(&text)),
    };
    let lines = match rt.block_on(audit::lines(&cluster)) {
        Ok(l) => l,
        Err(e) => return Ok(fail(&e.to_string())),
    };
    if json {
        let mut out = String::new();
        for l in &lines {
            out.push_str(&serde_json::to_string(l)?);
            out.push('\n');
        }
        print(&out);
    } else {
        print(&audit::table(&lines));
    }
    Ok(ExitCode::SUCCESS)
}
