//! The senders: plain blocking MLLP clients, one thread per connection, each
//! message with a unique control id, and a tally of what was acknowledged
//! (by the bytes of each ACK, not by trusting any library code).

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Valid NHS numbers (Modulus 11), outside the 999 test range; a message's
/// patient is chosen by its connection, so each record grows from several
/// connections' messages.
pub const NHS: [&str; 4] = ["9434765919", "9434765927", "9434765935", "9434765943"];

/// Reads and writes give up after this: a stalled engine fails the test.
const IO_LIMIT: Duration = Duration::from_secs(20);

/// The control id of message `n` of connection `conn` in round `round`:
/// short enough for MSH-10 (ST, 20), unique across the whole test.
pub fn control_id(round: usize, conn: usize, n: u64) -> String {
    format!("r{round}c{conn}n{n}")
}

/// The connection that sent a control id made by [`control_id`].
fn conn_of(control_id: &str) -> usize {
    control_id.split(['c', 'n']).nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The patient of a control id made by [`control_id`].
pub fn nhs_of(control_id: &str) -> &'static str {
    NHS[conn_of(control_id) % NHS.len()]
}

/// An ADT^A01 whose visit number (PV1-19, the encounter item's id) is its
/// control id, so every accepted message leaves its own item in the record.
/// Every fourth connection asks for an accept acknowledgment (MSH-15 AL,
/// MSH-16 NE), answered CA; the others get original-mode AA. The same id
/// always gives the same bytes, so a resend is a retransmission.
pub fn message(control_id: &str) -> Vec<u8> {
    let nhs = nhs_of(control_id);
    let modes = if conn_of(control_id) % 4 == 3 { "|||AL|NE" } else { "" };
    format!(
        "MSH|^~\\&|CRASH|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{control_id}|P|2.4{modes}\r\
         EVN|A01|20261121083000\r\
         PID|1||{nhs}^^^NHS^NH~RJ1-{nhs}^^^RJ1^MR||CRASH^TEST^^^MR||19700101|M\r\
         PV1|1|I|RJ1WARD1^BED1||||C123^JONES^ANN||||||||||||{control_id}\r"
    )
    .into_bytes()
}

/// A framed message: VT, the bytes, FS CR.
pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(msg.len() + 3);
    v.push(0x0b);
    v.extend_from_slice(msg);
    v.extend_from_slice(&[0x1c, 0x0d]);
    v
}

/// MSA-1 and MSA-2 of an ACK payload.
pub fn msa(ack: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(ack).ok()?;
    let sep = *ack.get(3)? as char;
    let seg = text.split('\r').find(|s| s.starts_with("MSA"))?;
    let mut f = seg.split(sep).skip(1);
    Some((f.next()?.to_string(), f.next().unwrap_or("").to_string()))
}

/// One MLLP connection with a read buffer.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, IO_LIMIT)?;
        stream.set_read_timeout(Some(IO_LIMIT))?;
        stream.set_write_timeout(Some(IO_LIMIT))?;
        Ok(Conn { stream, buf: Vec::new() })
    }

    pub fn send(&mut self, msg: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(&frame(msg))
    }

    /// The next ACK payload (between VT and FS CR); an error on EOF, reset
    /// or timeout.
    pub fn ack(&mut self) -> std::io::Result<Vec<u8>> {
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

    /// Sends `msg` and waits for its ACK.
    pub fn call(&mut self, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        self.send(msg)?;
        self.ack()
    }
}

/// What one sender saw.
#[derive(Default)]
pub struct Tally {
    /// Control id → the ACK payload that accepted it (AA or CA).
    pub acked: HashMap<String, Vec<u8>>,
    /// Sent, and no ACK came before the connection broke.
    pub unanswered: Vec<String>,
    /// Answered with anything but AA/CA: (control id, ACK payload).
    pub refused: Vec<(String, Vec<u8>)>,
    /// ACKs whose MSA-2 named no message in flight on that connection.
    pub stray: Vec<Vec<u8>>,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.acked.extend(other.acked);
        self.unanswered.extend(other.unanswered);
        self.refused.extend(other.refused);
        self.stray.extend(other.stray);
    }

    /// Files one ACK; true when it accepted a message in flight.
    fn answer(&mut self, in_flight: &mut VecDeque<String>, ack: Vec<u8>) -> bool {
        let Some((code, id)) = msa(&ack) else {
            self.stray.push(ack);
            return false;
        };
        let Some(pos) = in_flight.iter().position(|i| *i == id) else {
            self.stray.push(ack);
            return false;
        };
        in_flight.remove(pos);
        if code == "AA" || code == "CA" {
            self.acked.insert(id, ack);
            true
        } else {
            self.refused.push((id, ack));
            false
        }
    }
}

/// How one connection sends.
#[derive(Clone, Copy)]
pub struct Plan {
    pub round: usize,
    pub conn: usize,
    /// Messages outstanding at once: 1 is lockstep.
    pub depth: usize,
    /// Stop after this many messages (the kill usually comes first).
    pub limit: u64,
}

/// Shared by the senders of one load: the signal to stop sending, and how
/// many messages have been accepted so far (to kill under load, not before).
#[derive(Default)]
pub struct Control {
    pub stop: AtomicBool,
    pub accepted: AtomicU64,
}

/// Sends messages until `stop`, the limit, or a broken connection (the
/// kill); returns what was acknowledged and what was left unanswered.
pub fn send_until(addr: SocketAddr, plan: Plan, ctl: &Control) -> Tally {
    let mut tally = Tally::default();
    let Ok(mut conn) = Conn::open(addr) else { return tally };
    let mut in_flight: VecDeque<String> = VecDeque::new();
    let mut n = 0;
    loop {
        while in_flight.len() < plan.depth && n < plan.limit && !ctl.stop.load(Ordering::Relaxed) {
            let id = control_id(plan.round, plan.conn, n);
            n += 1;
            // A message written before the connection broke may have been
            // journaled; it counts as unanswered either way.
            let sent = conn.send(&message(&id));
            in_flight.push_back(id);
            if sent.is_err() {
                tally.unanswered.extend(in_flight.drain(..));
                return tally;
            }
        }
        if in_flight.is_empty() {
            return tally;
        }
        match conn.ack() {
            Ok(ack) => {
                if tally.answer(&mut in_flight, ack) {
                    ctl.accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                tally.unanswered.extend(in_flight.drain(..));
                return tally;
            }
        }
    }
}

/// Eight connections at once, half in lockstep and half pipelined (4, 8,
/// 16 and 32 outstanding), until `stop` or each has sent `limit`.
pub fn load(addr: SocketAddr, round: usize, limit: u64, ctl: &Arc<Control>) -> Vec<std::thread::JoinHandle<Tally>> {
    (0..8)
        .map(|conn| {
            let depth = if conn % 2 == 0 { 1 } else { 4 << (conn / 2) };
            let plan = Plan { round, conn, depth, limit };
            let ctl = ctl.clone();
            std::thread::spawn(move || send_until(addr, plan, &ctl))
        })
        .collect()
}

/// `messages` accepted messages (round 0) as fast as the engine takes
/// them: eight connections, 32 outstanding each.
pub fn fill(addr: SocketAddr, messages: u64) -> Tally {
    let ctl = Control::default();
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|conn| {
                let plan =
                    Plan { round: 0, conn, depth: 32, limit: messages / 8 + u64::from(conn < (messages % 8) as usize) };
                let ctl = &ctl;
                s.spawn(move || send_until(addr, plan, ctl))
            })
            .collect();
        let mut all = Tally::default();
        for t in threads {
            all.merge(t.join().expect("a sender thread panicked"));
        }
        all
    })
}

/// Joins the senders and merges their tallies.
pub fn join(threads: Vec<std::thread::JoinHandle<Tally>>) -> Tally {
    let mut all = Tally::default();
    for t in threads {
        all.merge(t.join().expect("a sender thread panicked"));
    }
    all
}
