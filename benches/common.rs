//! Inputs shared by the benches: the fixtures, and a 1 MB-document MDM.

#![allow(dead_code)]

pub const ADT: &[u8] = include_bytes!("../fixtures/adt-a01.hl7");
pub const ORU: &[u8] = include_bytes!("../fixtures/oru-r01.hl7");
pub const MDM: &[u8] = include_bytes!("../fixtures/mdm-t02.hl7");

/// The MDM fixture with a 1 MB base64 document in an ED OBX.
pub fn mdm_1mb() -> Vec<u8> {
    let mut m = MDM.to_vec();
    if !m.ends_with(b"\r") {
        m.push(b'\r');
    }
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let body: Vec<u8> = (0..1_048_576).map(|i| alphabet[(i * 7 + i / 64) % 64]).collect();
    m.extend_from_slice(b"OBX|99|ED|PDF^Document^L||^application^pdf^Base64^");
    m.extend_from_slice(&body);
    m.extend_from_slice(b"||||||F\r");
    m
}

/// Rewrites MSH-10 so that each message is new to the dedup table.
pub fn with_control_id(msg: &[u8], id: u64) -> Vec<u8> {
    let sep = msg[3];
    let mut seen = 0;
    let mut out = Vec::with_capacity(msg.len() + 20);
    let mut i = 0;
    while i < msg.len() {
        let b = msg[i];
        out.push(b);
        if b == sep {
            seen += 1;
            if seen == 9 {
                out.extend_from_slice(format!("B{id}").as_bytes());
                while i + 1 < msg.len() && msg[i + 1] != sep {
                    i += 1;
                }
            }
        }
        i += 1;
    }
    out
}

/// `count` valid NHS numbers (Modulus 11), the same every run.
pub fn nhs_numbers(count: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(count);
    let mut stem = 400_000_000u64;
    while out.len() < count {
        let digits: Vec<u64> = format!("{stem:09}").bytes().map(|b| u64::from(b - b'0')).collect();
        let sum: u64 = digits.iter().enumerate().map(|(i, d)| d * (10 - i as u64)).sum();
        let check = 11 - sum % 11;
        if check != 10 {
            out.push(format!("{stem:09}{}", check % 11));
        }
        stem += 1;
    }
    out
}

/// `msg` as patient `to` would send it: every occurrence of `from` (the
/// fixture's NHS number) replaced by `to`, and the fixture's hospital number
/// (`~RJ1-` and digits, in PID-3) by `RJ1-` and `to`. 100,000 patients are
/// then 100,000 hospital numbers, as in a feed: one hospital number on many
/// NHS numbers would be a conflict on every message, which the engine flags.
pub fn for_patient(msg: &[u8], from: &str, to: &str) -> Vec<u8> {
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut out = Vec::with_capacity(msg.len() + 8);
    let mut i = 0;
    while i < msg.len() {
        if msg[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else if msg[i..].starts_with(b"~RJ1-") {
            out.extend_from_slice(b"~RJ1-");
            out.extend_from_slice(to);
            i += 5;
            while msg.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        } else {
            out.push(msg[i]);
            i += 1;
        }
    }
    out
}
