//! Whether the index is free to open. sled holds an exclusive `flock` on
//! `index/db` until its last internal handle goes, which can be a moment
//! after we drop ours (it finishes writes on its own IO threads). An engine
//! that stops waits for that, so that "stopped" means a CLI command or a
//! new engine can open the index at once, instead of failing with "could
//! not acquire lock".

use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

/// Waits at most `limit` until nobody holds the lock of the index in `dir`:
/// true once it is free (or there is no index), false if still held.
pub fn wait_released(dir: &Path, limit: Duration) -> bool {
    let Ok(file) = File::open(dir.join("db")) else { return true };
    let deadline = Instant::now() + limit;
    loop {
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                return true;
            }
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_held_index_lock_and_gives_up_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        assert!(wait_released(dir.path(), Duration::ZERO), "no index: nothing to wait for");
        let holder = File::create(dir.path().join("db")).unwrap();
        holder.lock().unwrap();
        assert!(!wait_released(dir.path(), Duration::from_millis(30)), "held throughout: not released");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(holder);
        });
        let started = Instant::now();
        assert!(wait_released(dir.path(), Duration::from_secs(10)));
        assert!(started.elapsed() >= Duration::from_millis(90), "returned while the lock was still held");
        release.join().unwrap();
    }
}
