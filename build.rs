//! Build metadata for `recordhub --version`: the git commit and the build date.
//!
//! Never fails the build: from a tarball without git (or without `.git`) the
//! commit is "unknown". The date honours `SOURCE_DATE_EPOCH` (reproducible
//! builds, https://reproducible-builds.org/specs/source-date-epoch/), else now.
//! `RECORDHUB_GIT_COMMIT` names the commit where git cannot (a container build).

use std::process::Command;

fn main() {
    // A container build has no .git: the commit may be passed in instead.
    println!("cargo:rerun-if-env-changed=RECORDHUB_GIT_COMMIT");
    let given = std::env::var("RECORDHUB_GIT_COMMIT").ok().filter(|c| !c.trim().is_empty());
    let commit = given.or_else(|| git(&["rev-parse", "--short", "HEAD"])).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=RECORDHUB_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=RECORDHUB_BUILD_DATE={}", build_date());
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // Rerun when HEAD moves (a commit, a checkout), not on every source edit.
    // Only paths that exist: a missing one would rerun the script every build.
    let mut watched = vec!["HEAD".to_string()];
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(r);
    }
    watched.push("packed-refs".to_string());
    for w in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &w]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// A git command's trimmed output, or `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git").args(args).current_dir(dir).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// `YYYY-MM-DD` (UTC) of `SOURCE_DATE_EPOCH`, else of now.
fn build_date() -> String {
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.trim().parse::<i64>().ok());
    let secs = epoch.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    });
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => t.date().to_string(),
        Err(_) => "unknown".to_string(),
    }
}
