//! A sender as a real PAS interface behaves: it holds a list of addresses,
//! sends one message at a time on its connection and waits for the ACK; on
//! an error or a timeout it reconnects to the next address and resends the
//! unacknowledged message with the same bytes. It records every control id
//! that got AA (with when), and every AR it was answered.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Valid NHS numbers (Modulus 11); a message's patient is chosen by its
/// sender, so each record grows from several senders.
pub const NHS: [&str; 4] = ["9434765919", "9434765927", "9434765935", "9434765943"];

/// An ADT^A01 for `nhs` whose visit number (PV1-19, the encounter item's id)
/// is its control id, so every accepted message leaves its own item in the
/// record. The same id always gives the same bytes: a resend is a retransmission.
pub fn message(control_id: &str, nhs: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|CLUSTER|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{control_id}|P|2.4\r\
         EVN|A01|20261121083000\r\
         PID|1||{nhs}^^^NHS^NH~RJ1-{nhs}^^^RJ1^MR||CLUSTER^TEST^^^MR||19700101|M\r\
         PV1|1|I|RJ1WARD1^BED1||||C123^JONES^ANN||||||||||||{control_id}\r"
    )
    .into_bytes()
}

/// MSA-1 and MSA-2 of an ACK payload.
pub fn msa(ack: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(ack).ok()?;
    let sep = *ack.get(3)? as char;
    let seg = text.split('\r').find(|s| s.starts_with("MSA"))?;
    let mut f = seg.split(sep).skip(1);
    Some((f.next()?.to_string(), f.next().unwrap_or("").to_string()))
}

/// One MLLP connection, lockstep.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr, io_limit: Duration) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(io_limit))?;
        stream.set_write_timeout(Some(io_limit))?;
        Ok(Conn { stream, buf: Vec::new() })
    }

    /// Sends one framed message and reads its ACK payload (error on EOF,
    /// reset or timeout).
    pub fn call(&mut self, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut framed = vec![0x0b];
        framed.extend_from_slice(msg);
        framed.extend_from_slice(&[0x1c, 0x0d]);
        self.stream.write_all(&framed)?;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                let start = self.buf[..end].iter().position(|&b| b == 0x0b).map_or(0, |s| s + 1);
                let payload = self.buf[start..end].to_vec();
                self.buf.drain(..end + 2);
                return Ok(payload);
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk)? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// What every sender of a load saw, shared while it runs.
#[derive(Default)]
pub struct Tally {
    /// Control id → when its AA (or CA) came and from which address.
    pub acked: Mutex<Vec<(String, Instant, SocketAddr)>>,
    /// Control id → the ACK that refused it (anything but AA/CA).
    pub refused: Mutex<Vec<(String, Vec<u8>)>>,
    /// ACKs naming another control id than the one in flight.
    pub stray: Mutex<Vec<Vec<u8>>>,
    pub accepted: AtomicU64,
    /// Set to stop: each sender finishes the message in hand first.
    pub stop: AtomicBool,
}

impl Tally {
    pub fn acked_ids(&self) -> Vec<String> {
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(id, _, _)| id.clone()).collect()
    }

    /// The first AA from `addr` at or after `since`.
    pub fn first_ack_from(&self, addr: SocketAddr, since: Instant) -> Option<Instant> {
        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        acked.iter().filter(|(_, t, a)| *a == addr && *t >= since).map(|(_, t, _)| *t).min()
    }
}

/// How one sender sends.
#[derive(Clone)]
pub struct Plan {
    /// Control ids are `<prefix><n>`; unique across the test.
    pub prefix: String,
    pub nhs: &'static str,
    pub addrs: Vec<SocketAddr>,
    /// A read taking longer than this counts as a lost connection.
    pub io_limit: Duration,
    /// Give up on one message (the test fails) after this long.
    pub message_limit: Duration,
    /// An AR is resent (after a pause) instead of being final.
    pub resend_refused: bool,
}

/// Sends until `tally.stop`, one message at a time. A message is sent until
/// it gets an ACK (reconnecting through `addrs` in turn); an AR is filed in
/// `refused` and, with `resend_refused`, the same bytes are sent again.
/// Panics when one message finds no acceptance within `message_limit`.
pub fn run(plan: Plan, tally: Arc<Tally>) {
    let mut next_addr = 0;
    let mut conn: Option<(Conn, SocketAddr)> = None;
    let mut n = 0u64;
    while !tally.stop.load(Ordering::Relaxed) {
        let id = format!("{}{n}", plan.prefix);
        n += 1;
        let msg = message(&id, plan.nhs);
        let started = Instant::now();
        loop {
            assert!(started.elapsed() < plan.message_limit, "{id}: no ACK within {:?}", plan.message_limit);
            if conn.is_none() {
                let addr = plan.addrs[next_addr % plan.addrs.len()];
                next_addr += 1;
                match Conn::open(addr, plan.io_limit) {
                    Ok(c) => conn = Some((c, addr)),
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                }
            }
            let Some((c, addr)) = conn.as_mut() else { continue };
            let addr = *addr;
            let ack = match c.call(&msg) {
                Ok(ack) => ack,
                Err(_) => {
                    conn = None;
                    continue;
                }
            };
            match msa(&ack) {
                Some((code, ctl)) if ctl == id && (code == "AA" || code == "CA") => {
                    tally.acked.lock().unwrap_or_else(|e| e.into_inner()).push((id.clone(), Instant::now(), addr));
                    tally.accepted.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some((_, ctl)) if ctl == id => {
                    tally.refused.lock().unwrap_or_else(|e| e.into_inner()).push((id.clone(), ack));
                    if !plan.resend_refused {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                _ => {
                    tally.stray.lock().unwrap_or_else(|e| e.into_inner()).push(ack);
                    conn = None;
                }
            }
        }
    }
}

/// Starts `plans` on threads; returns their handles.
pub fn start(plans: Vec<Plan>, tally: &Arc<Tally>) -> Vec<std::thread::JoinHandle<()>> {
    plans
        .into_iter()
        .map(|p| {
            let t = tally.clone();
            std::thread::spawn(move || run(p, t))
        })
        .collect()
}

/// Stops the senders and joins them (a sender's panic fails the test here).
pub fn stop(tally: &Tally, handles: Vec<std::thread::JoinHandle<()>>) {
    tally.stop.store(true, Ordering::Relaxed);
    for h in handles {
        if let Err(e) = h.join() {
            std::panic::resume_unwind(e);
        }
    }
}

/// Polls `done` every 20 ms for at most `limit`.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}
