//! Named fault points, so tests can make the rare failures happen on demand:
//! an fsync that fails, a full disk, a panic inside mapping, a process killed
//! in the middle of an index batch.
//!
//! The same idea as tikv's `fail` crate, without its global registry: a
//! [`Faults`] value is handed to each component (journal, pipeline, index
//! writer), so tests running side by side in one process each get their own,
//! and the real binary reads `RECORDHUB_FAULTS` once at start-up for tests
//! that kill it. With no faults configured a point costs one branch on a
//! `None`.
//!
//! Spec: `point=action[;point=action...]`, actions `panic`, `abort` (the
//! process dies at once, as under `kill -9`), `error` (the point returns an
//! injected `io::Error`, ENOSPC), `sleep(MS)`, each optionally prefixed with
//! `N*` to fire only on the first N hits and `after(K)` to skip K hits first:
//! `journal.fdatasync=after(3)1*error`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The environment variable the binary reads its faults from.
pub const ENV: &str = "RECORDHUB_FAULTS";

/// What a fault point does when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `panic!` with a message naming the point.
    Panic,
    /// `std::process::abort()`: no destructors, no flush, like `kill -9`.
    Abort,
    /// The point returns an `io::Error` (ENOSPC, "No space left on device").
    Error,
    /// Sleeps, then carries on.
    Sleep(Duration),
}

#[derive(Debug)]
struct Point {
    action: Action,
    /// Hits to let through before firing.
    skip: u64,
    /// How many times it may fire; `u64::MAX` for always.
    times: u64,
    hits: AtomicU64,
}

/// A set of armed fault points. Cheap to clone; `Faults::default()` has none.
#[derive(Debug, Clone, Default)]
pub struct Faults(Option<Arc<HashMap<String, Point>>>);

/// A spec that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{ENV}: cannot parse {part:?}: {why}; expected point=action with action panic, abort, error or sleep(MS), optionally after(K) and N* before it")]
pub struct SpecError {
    part: String,
    why: &'static str,
}

impl Faults {
    /// No fault points armed.
    pub fn none() -> Faults {
        Faults(None)
    }

    /// Reads [`ENV`]; unset or empty means none.
    ///
    /// # Errors
    /// The variable is set but does not parse.
    pub fn from_env() -> Result<Faults, SpecError> {
        match std::env::var(ENV) {
            Ok(spec) if !spec.trim().is_empty() => Faults::parse(&spec),
            _ => Ok(Faults::none()),
        }
    }

    /// Parses a spec (see the module doc).
    ///
    /// # Errors
    /// A part that is not `point=action`.
    pub fn parse(spec: &str) -> Result<Faults, SpecError> {
        let mut points = HashMap::new();
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let err = |why| SpecError { part: part.to_string(), why };
            let (name, action) = part.split_once('=').ok_or_else(|| err("no '='"))?;
            let mut rest = action.trim();
            let mut skip = 0;
            if let Some(after) = rest.strip_prefix("after(") {
                let (k, tail) = after.split_once(')').ok_or_else(|| err("after( without )"))?;
                skip = k.trim().parse().map_err(|_| err("after(K) needs a number"))?;
                rest = tail.trim();
            }
            let mut times = u64::MAX;
            if let Some((n, tail)) = rest.split_once('*') {
                times = n.trim().parse().map_err(|_| err("N* needs a number"))?;
                rest = tail.trim();
            }
            let action = match rest {
                "panic" => Action::Panic,
                "abort" => Action::Abort,
                "error" => Action::Error,
                s => {
                    let ms = s
                        .strip_prefix("sleep(")
                        .and_then(|s| s.strip_suffix(')'))
                        .ok_or_else(|| err("unknown action"))?;
                    Action::Sleep(Duration::from_millis(
                        ms.trim().parse().map_err(|_| err("sleep(MS) needs a number"))?,
                    ))
                }
            };
            points.insert(name.trim().to_string(), Point { action, skip, times, hits: AtomicU64::new(0) });
        }
        Ok(if points.is_empty() { Faults(None) } else { Faults(Some(Arc::new(points))) })
    }

    /// Whether any point is armed (for a start-up warning).
    pub fn any(&self) -> bool {
        self.0.is_some()
    }

    /// Runs fault point `name`: panics, aborts or sleeps if it is armed and
    /// due, and returns the injected error for [`Action::Error`].
    #[inline]
    pub fn hit(&self, name: &str) -> Option<std::io::Error> {
        let points = self.0.as_ref()?;
        fire(points.get(name)?, name)
    }

    /// [`Faults::hit`] for call sites that return `io::Result`.
    ///
    /// # Errors
    /// The injected error, when the point is armed with `error`.
    #[inline]
    pub fn check(&self, name: &str) -> std::io::Result<()> {
        match self.hit(name) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cold]
fn fire(p: &Point, name: &str) -> Option<std::io::Error> {
    let n = p.hits.fetch_add(1, Ordering::Relaxed);
    if n < p.skip || n - p.skip >= p.times {
        return None;
    }
    match &p.action {
        Action::Panic => panic!("fault point {name}: injected panic"),
        Action::Abort => {
            eprintln_quiet(name);
            std::process::abort()
        }
        Action::Error => Some(std::io::Error::from_raw_os_error(28)), // ENOSPC
        Action::Sleep(d) => {
            std::thread::sleep(*d);
            None
        }
    }
}

/// A last word before an injected abort, ignoring a closed stderr.
fn eprintln_quiet(name: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "fault point {name}: injected abort");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unarmed_points_do_nothing() {
        let f = Faults::none();
        assert!(f.hit("journal.fdatasync").is_none());
        assert!(!f.any());
        assert!(!Faults::parse("  ").unwrap().any());
    }

    #[test]
    fn error_fires_after_skips_and_a_bounded_number_of_times() {
        let f = Faults::parse("journal.fdatasync=after(2)1*error; other=sleep(1)").unwrap();
        let fired: Vec<bool> = (0..5).map(|_| f.hit("journal.fdatasync").is_some()).collect();
        assert_eq!(fired, [false, false, true, false, false]);
        assert_eq!(f.check("other").ok(), Some(()));
        let e = Faults::parse("x=error").unwrap().check("x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
    }

    #[test]
    #[should_panic(expected = "fault point map: injected panic")]
    fn panic_names_the_point() {
        Faults::parse("map=panic").unwrap().hit("map");
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for bad in ["x", "x=explode", "x=sleep(a)", "x=after(1 error", "x=z*error"] {
            let e = Faults::parse(bad).unwrap_err().to_string();
            assert!(e.contains("RECORDHUB_FAULTS") && e.contains("cannot parse"), "{bad}: {e}");
        }
    }
}
