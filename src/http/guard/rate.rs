//! Patient-read rate limits (a token bucket per user and per client IP)
//! and the enumeration watch (distinct patients per user and per client
//! in a fixed window).
//!
//! A small bucket rather than `governor`: we need two keyed limits taken
//! together (neither spent when the other refuses), the wait for
//! `Retry-After`, a bound on remembered keys, and the distinct-patient
//! count beside them, under one lock; that is less code here than around
//! governor's keyed limiter. Time is passed in, so tests need no clock.
//!
//! Keys are keyed hashes (SipHash with a per-process random key): no token,
//! user name or NHS number is kept, only 64-bit hashes.

use std::collections::hash_map::{Entry, HashMap};
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};

use crate::config::guard::GuardConfig;

/// Users (or clients) remembered at once; past it, idle ones are
/// forgotten, and if none is idle a new one is refused (fail closed: so
/// many active readers in a minute is an attack, not a ward).
const MAX_KEYS: usize = 50_000;

fn hash(part: &str, value: &[u8]) -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new).hash_one((part, value))
}

/// Who reads: the user (by credential) and the client address, as hashes.
pub(crate) struct Reader {
    user: Option<u64>,
    client: Option<u64>,
    /// For the log: `X-User`'s name, `token:<hash>` or `cookie:<hash>`; never a credential.
    label: String,
}

impl Reader {
    pub(crate) fn of(headers: &HeaderMap, client: Option<IpAddr>) -> Reader {
        let value = |name| headers.get(name).map(|v: &header::HeaderValue| v.as_bytes()).filter(|v| !v.is_empty());
        let (user, label) = if let Some(token) = value(header::AUTHORIZATION.as_str()) {
            let h = hash("authorization", token);
            (Some(h), format!("token:{:08x}", h >> 32))
        } else if let Some(name) = value("x-user") {
            (Some(hash("x-user", name)), String::from_utf8_lossy(name).into_owned())
        } else if let Some(cookie) = value(header::COOKIE.as_str()) {
            // The web page's session cookie carries its token.
            let h = hash("cookie", cookie);
            (Some(h), format!("cookie:{:08x}", h >> 32))
        } else {
            (None, String::new())
        };
        let client = client.map(|ip| hash("client", ip.to_string().as_bytes()));
        Reader { user, client, label }
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }
}

/// What one read found.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Seen {
    /// Enumeration alerts raised by this read: scope and distinct patients.
    pub(crate) alerts: Vec<(&'static str, usize)>,
    /// Refused: the limit reached (`user` or `client`) and when to retry.
    pub(crate) limited: Option<(&'static str, Duration)>,
}

pub(crate) struct Reads {
    user: Limit,
    client: Limit,
    patients: usize,
    window: Duration,
    state: Mutex<State>,
}

/// A rate: tokens per second, and the burst (a minute's worth).
#[derive(Clone, Copy)]
struct Limit {
    per_sec: f64,
    burst: f64,
}

#[derive(Default)]
struct State {
    users: Table,
    clients: Table,
}

#[derive(Default)]
struct Table {
    buckets: HashMap<u64, Bucket>,
    windows: HashMap<u64, Window>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Window {
    started: Instant,
    /// Capped at the threshold + 1: past it only "more than N" matters.
    patients: HashSet<u64>,
    alerted: bool,
}

impl Reads {
    pub(crate) fn new(cfg: &GuardConfig) -> Reads {
        let limit = |per_minute: u32| Limit { per_sec: f64::from(per_minute) / 60.0, burst: f64::from(per_minute) };
        Reads {
            user: limit(cfg.reads_per_minute),
            client: limit(cfg.client_reads_per_minute),
            patients: cfg.enumeration_patients,
            window: cfg.enumeration_window,
            state: Mutex::new(State::default()),
        }
    }

    /// One read attempt of `patient` (`None`: a search) at `now`. Every attempt counts toward
    /// the enumeration watch (probing is the signal, served or not); a
    /// token is spent from both buckets only when both have one.
    pub(crate) fn read(&self, reader: &Reader, patient: Option<&str>, now: Instant) -> Seen {
        let patient = patient.map(|p| hash("patient", p.as_bytes()));
        // Only plain numbers and maps behind the lock: a poisoned one is still consistent.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State { users, clients } = &mut *state;
        let mut seen = Seen::default();
        for (scope, key, table) in [("user", reader.user, &mut *users), ("client", reader.client, &mut *clients)] {
            if let Some(n) = key.zip(patient).and_then(|(k, p)| self.watch(table, k, p, now)) {
                seen.alerts.push((scope, n));
            }
        }
        let user = reader.user.map(|k| wait(users, k, self.user, now));
        let client = reader.client.map(|k| wait(clients, k, self.client, now));
        seen.limited = match (user, client) {
            (Some(Some(w)), _) => Some(("user", w)),
            (_, Some(Some(w))) => Some(("client", w)),
            _ => None,
        };
        if seen.limited.is_none() {
            for (key, table) in [(reader.user, users), (reader.client, clients)] {
                if let Some(b) = key.and_then(|k| table.buckets.get_mut(&k)) {
                    b.tokens -= 1.0;
                }
            }
        }
        seen
    }

    /// Notes `patient` for `key`; the distinct count when this read crosses
    /// the threshold (once per window).
    fn watch(&self, table: &mut Table, key: u64, patient: u64, now: Instant) -> Option<usize> {
        if !table.windows.contains_key(&key) && table.windows.len() >= MAX_KEYS {
            let window = self.window;
            table.windows.retain(|_, w| now.saturating_duration_since(w.started) < window);
            if table.windows.len() >= MAX_KEYS {
                return None;
            }
        }
        let w = table.windows.entry(key).or_insert_with(|| Window {
            started: now,
            patients: HashSet::new(),
            alerted: false,
        });
        if now.saturating_duration_since(w.started) >= self.window {
            *w = Window { started: now, patients: HashSet::new(), alerted: false };
        }
        if w.patients.len() <= self.patients {
            w.patients.insert(patient);
        }
        if w.patients.len() > self.patients && !w.alerted {
            w.alerted = true;
            return Some(w.patients.len());
        }
        None
    }
}

/// Refills `key`'s bucket to `now`; how long until a token when it has none.
fn wait(table: &mut Table, key: u64, limit: Limit, now: Instant) -> Option<Duration> {
    if !table.buckets.contains_key(&key) && table.buckets.len() >= MAX_KEYS {
        // A bucket that has refilled is the same as none.
        table.buckets.retain(|_, b| refilled(b, limit, now) < limit.burst);
        if table.buckets.len() >= MAX_KEYS {
            return Some(Duration::from_secs(60));
        }
    }
    let b = match table.buckets.entry(key) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => e.insert(Bucket { tokens: limit.burst, at: now }),
    };
    b.tokens = refilled(b, limit, now);
    b.at = now;
    (b.tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - b.tokens) / limit.per_sec))
}

fn refilled(b: &Bucket, limit: Limit, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + elapsed * limit.per_sec).min(limit.burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(user: u32, client: u32, patients: usize) -> Reads {
        let mut cfg = crate::config::Config::default().http.guard;
        cfg.reads_per_minute = user;
        cfg.client_reads_per_minute = client;
        cfg.enumeration_patients = patients;
        cfg.enumeration_window = Duration::from_secs(600);
        Reads::new(&cfg)
    }

    fn reader(user: &str, ip: [u8; 4]) -> Reader {
        let mut h = HeaderMap::new();
        h.insert("x-user", user.parse().unwrap());
        Reader::of(&h, Some(IpAddr::from(ip)))
    }

    #[test]
    fn a_burst_past_the_user_limit_is_refused_with_a_wait_and_refills_with_time() {
        let r = reads(60, 1000, 1000);
        let (who, t0) = (reader("dr.a", [10, 0, 0, 1]), Instant::now());
        for _ in 0..60 {
            assert_eq!(r.read(&who, Some("9434765919"), t0).limited, None);
        }
        let (scope, wait) = r.read(&who, Some("9434765919"), t0).limited.expect("61st refused");
        assert_eq!(scope, "user");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        // One token a second at 60/min.
        assert_eq!(r.read(&who, Some("9434765919"), t0 + Duration::from_secs(1)).limited, None);
        assert!(r.read(&who, Some("9434765919"), t0 + Duration::from_secs(1)).limited.is_some());
    }

    #[test]
    fn the_client_limit_covers_all_users_of_one_address_and_spares_others() {
        let r = reads(1000, 10, 1000);
        let t0 = Instant::now();
        for i in 0..10 {
            assert_eq!(r.read(&reader(&format!("u{i}"), [10, 0, 0, 1]), Some("1"), t0).limited, None);
        }
        assert_eq!(r.read(&reader("u99", [10, 0, 0, 1]), Some("1"), t0).limited.map(|l| l.0), Some("client"));
        assert_eq!(r.read(&reader("u99", [10, 0, 0, 2]), Some("1"), t0).limited, None);
    }

    #[test]
    fn a_refused_read_spends_no_token_of_the_other_limit() {
        let r = reads(1, 2, 1000);
        let t0 = Instant::now();
        let a = reader("a", [10, 0, 0, 1]);
        assert_eq!(r.read(&a, Some("1"), t0).limited, None);
        for _ in 0..5 {
            assert_eq!(r.read(&a, Some("1"), t0).limited.map(|l| l.0), Some("user"));
        }
        // The address's second token is still there for another user.
        let b = reader("b", [10, 0, 0, 1]);
        assert_eq!(r.read(&b, Some("1"), t0).limited, None);
        assert_eq!(r.read(&b, Some("1"), t0).limited.map(|l| l.0), Some("user"));
        assert_eq!(r.read(&reader("c", [10, 0, 0, 1]), Some("1"), t0).limited.map(|l| l.0), Some("client"));
    }

    #[test]
    fn enumeration_alerts_once_per_window_past_the_distinct_threshold() {
        let r = reads(100_000, 100_000, 5);
        let (who, t0) = (reader("dr.a", [10, 0, 0, 1]), Instant::now());
        let mut alerts = Vec::new();
        for i in 0..20 {
            alerts.extend(r.read(&who, Some(&format!("p{i}")), t0).alerts);
        }
        assert_eq!(alerts, [("user", 6), ("client", 6)]);
        // The same patient again and again is no enumeration.
        let other = reader("dr.b", [10, 0, 0, 2]);
        assert!((0..50).all(|_| r.read(&other, Some("p1"), t0).alerts.is_empty()));
        // A new window alerts again.
        let later = t0 + Duration::from_secs(601);
        let again: Vec<_> = (0..6).flat_map(|i| r.read(&who, Some(&format!("q{i}")), later).alerts).collect();
        assert_eq!(again, [("user", 6), ("client", 6)]);
    }

    #[test]
    fn a_search_spends_tokens_but_names_no_patient_to_watch() {
        let r = reads(2, 1000, 1);
        let (who, t0) = (reader("dr.a", [10, 0, 0, 1]), Instant::now());
        assert_eq!(r.read(&who, None, t0), Seen::default());
        assert_eq!(r.read(&who, None, t0), Seen::default());
        assert_eq!(r.read(&who, None, t0).limited.map(|l| l.0), Some("user"));
    }

    #[test]
    fn a_bearer_token_is_the_user_key_and_never_its_label() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer secret.jwt.value".parse().unwrap());
        h.insert("x-user", "someone".parse().unwrap());
        let r = Reader::of(&h, None);
        assert!(r.label().starts_with("token:") && !r.label().contains("secret"), "{}", r.label());
        assert!(r.user.is_some() && r.client.is_none());
        let mut h = HeaderMap::new();
        h.insert("cookie", "session=secret".parse().unwrap());
        let r = Reader::of(&h, None);
        assert!(r.label().starts_with("cookie:") && !r.label().contains("secret"), "{}", r.label());
        assert!(r.user.is_some());
    }
}
