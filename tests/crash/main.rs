//! The crash test: the real `recordhub` binary killed with SIGKILL under
//! load and during start-up replay, restarted on the same data directory,
//! and checked from the outside (`recordhub journal`, `recordhub record`,
//! ACK bytes): nothing acknowledged as accepted is ever lost, duplicated or
//! given another seq, and the index agrees with the journal.
//!
//! `CRASH_ROUNDS` (default 2) sets the kill rounds; `.ci/run` runs ten.
//! `CRASH_REPLAY_MESSAGES` (default 4,000; `.ci/run` 20,000) sizes the journal that start-up
//! replays while it is killed. `CRASH_SEED` repeats a run's random delays
//! (each run prints its seed).

mod check;
mod engine;
mod sender;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::Server;
use sender::{msa, Conn};

/// A small xorshift generator: the test needs varied delays, not quality.
struct Rng(u64);

impl Rng {
    fn from_env(test: &str) -> Rng {
        let seed = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        eprintln!("{test}: CRASH_SEED={seed}");
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Eight connections send unique control ids until a SIGKILL at a random
/// moment; after each restart every acknowledged id is in the journal
/// exactly once, no seq is reused, the index matches the journal, and a
/// retransmission gets the original ACK byte for byte. The rounds share one
/// data directory, so the journal grows across kills.
#[test]
fn kill_9_under_load_from_8_connections_loses_no_acknowledged_message() {
    let rounds = env_number("CRASH_ROUNDS", 2) as usize;
    let mut rng = Rng::from_env("kill_9_under_load");
    let dir = tempfile::tempdir().unwrap();
    let mut acked: HashMap<String, Vec<u8>> = HashMap::new();
    let mut seen = BTreeMap::new();
    let mut server = Server::start(dir.path());
    for round in 0..rounds {
        let ctl = Arc::new(sender::Control::default());
        let senders = sender::load(server.mllp(), round, u64::MAX, &ctl);
        // Under load: once ACKs flow, at a random moment of the next 1.5 s.
        let flowing = wait_until(Duration::from_secs(60), || ctl.accepted.load(Ordering::Relaxed) >= 20);
        assert!(flowing, "round {round}: fewer than 20 ACKs in 60 s\n{}", server.with_log(engine::Log::dump));
        let delay = rng.range(0, 1500);
        std::thread::sleep(Duration::from_millis(delay));
        let log = server.kill();
        ctl.stop.store(true, Ordering::Relaxed);
        let tally = sender::join(senders);
        assert!(tally.refused.is_empty(), "refused under load: {:?}\n{}", first(&tally.refused), log.dump());
        assert!(tally.stray.is_empty(), "ACKs for no message in flight: {:?}", first(&tally.stray));
        eprintln!(
            "round {round}: killed {delay} ms after ACKs began; {} acknowledged, {} unanswered",
            tally.acked.len(),
            tally.unanswered.len()
        );
        acked.extend(tally.acked);

        server = Server::start(dir.path());
        let entries = check::entries(dir.path());
        check::journal(&entries, &acked, &mut seen);
        check::index(&entries, &["--server", &server.http_url()]);
        retransmit(&server, &mut acked, &tally.unanswered, &mut rng);
    }
    // The retransmissions were answered from the dedup table, not journaled again.
    let entries = check::entries(dir.path());
    check::journal(&entries, &acked, &mut seen);
    let (status, log) = server.stop();
    assert!(status.success(), "SIGTERM after the rounds: exit {status}\n{}", log.dump());
    check::index(&entries, &["--data", dir.path().to_str().unwrap()]);
    eprintln!("{rounds} rounds: {} acknowledged, {} journal entries", acked.len(), entries.len());
}

/// Polls `done` every 5 ms for at most `limit`.
fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn first<T>(v: &[T]) -> &[T] {
    &v[..v.len().min(5)]
}

/// After a restart: a sample of acknowledged messages (from every round so
/// far) sent again must get their original ACK, byte for byte; the messages
/// the kill left unanswered, sent again as a sender would, must be accepted
/// (with the original ACK if they were journaled before the kill).
fn retransmit(server: &Server, acked: &mut HashMap<String, Vec<u8>>, unanswered: &[String], rng: &mut Rng) {
    let mut conn = Conn::open(server.mllp()).expect("connect after restart");
    let mut ids: Vec<&String> = acked.keys().collect();
    ids.sort();
    for _ in 0..40 {
        let id = ids[rng.range(0, ids.len() as u64) as usize];
        let ack = conn.call(&sender::message(id)).unwrap_or_else(|e| panic!("no ACK for retransmitted {id}: {e}"));
        assert_eq!(
            String::from_utf8_lossy(&ack),
            String::from_utf8_lossy(&acked[id]),
            "a retransmission of {id} after the restart must get the original ACK"
        );
    }
    for id in unanswered {
        let ack = conn.call(&sender::message(id)).unwrap_or_else(|e| panic!("no ACK for resent {id}: {e}"));
        let (code, msa2) = msa(&ack).unwrap_or_default();
        assert!(
            (code == "AA" || code == "CA") && msa2 == *id,
            "{id}, unanswered at the kill and sent again, must be accepted: {}",
            String::from_utf8_lossy(&ack)
        );
        acked.insert(id.clone(), ack);
    }
}

/// The engine is killed (twice) while start-up replays a long journal into
/// an empty index; after a restart the journal is unchanged and the index
/// is what a clean replay of the same journal gives.
#[test]
fn kill_9_during_start_up_replay_keeps_the_journal_and_completes_the_index() {
    let messages = env_number("CRASH_REPLAY_MESSAGES", 4_000);
    let mut rng = Rng::from_env("kill_9_during_replay");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = Server::start(data);
    let started = Instant::now();
    let tally = sender::fill(server.mllp(), messages);
    assert_eq!(tally.acked.len() as u64, messages, "every message of the fill was accepted");
    let (status, log) = server.stop();
    assert!(status.success(), "SIGTERM after the fill: exit {status}\n{}", log.dump());
    eprintln!("journal of {} messages written in {:?}", tally.acked.len(), started.elapsed());
    let before = engine::journal(data);

    // A clean replay of the whole journal: how long it takes, and the
    // records it gives (the reference).
    remove_index(data);
    let started = Instant::now();
    let clean = Server::start(data);
    let replay = started.elapsed();
    let reference: Vec<_> = sender::NHS.iter().map(|n| engine::record(n, &["--server", &clean.http_url()])).collect();
    let (status, log) = clean.stop();
    assert!(status.success(), "SIGTERM after the clean replay: exit {status}\n{}", log.dump());
    eprintln!("clean start-up with a full replay: {replay:?}");

    remove_index(data);
    // The first kill lands in a full replay; the second in what is left of
    // it (the index keeps what was filed before the kill).
    let first = kill_during_replay(data, replay, &mut rng);
    kill_during_replay(data, replay.saturating_sub(first).max(Duration::from_millis(100)), &mut rng);

    let server = Server::start(data);
    assert!(engine::journal(data) == before, "killed replays must leave the journal as it was");
    let entries = check::entries(data);
    check::journal(&entries, &tally.acked, &mut BTreeMap::new());
    check::index(&entries, &["--server", &server.http_url()]);
    for (nhs, want) in sender::NHS.iter().zip(&reference) {
        let got = engine::record(nhs, &["--server", &server.http_url()]);
        assert!(&got == want, "{nhs}'s record after killed replays differs from a clean replay's");
    }
    let (status, log) = server.stop();
    assert!(status.success(), "SIGTERM at the end: exit {status}\n{}", log.dump());
}

fn remove_index(data: &Path) {
    std::fs::remove_dir_all(data.join("index")).expect("the index directory exists");
}

/// Starts the engine and SIGKILLs it at a random point of its start-up
/// replay, which should take about `replay`, retrying earlier when the
/// replay had already finished. Fails if the engine dies by itself. Returns
/// how far into start-up the kill came.
fn kill_during_replay(data: &Path, replay: Duration, rng: &mut Rng) -> Duration {
    let full = replay.as_millis() as u64;
    let mut hi = full * 8 / 10;
    for _ in 0..6 {
        let at = rng.range(hi / 4, hi.max(4));
        let mut server = Server::spawn(data);
        std::thread::sleep(Duration::from_millis(at));
        assert!(server.is_running(), "the engine exited during start-up:\n{}", server.with_log(engine::Log::dump));
        let log = server.kill();
        if !log.opened {
            eprintln!("killed {at} ms into a start-up whose replay takes about {full} ms");
            return Duration::from_millis(at);
        }
        hi /= 2;
    }
    panic!("start-up always finished before the kill (replay about {full} ms): raise CRASH_REPLAY_MESSAGES");
}
