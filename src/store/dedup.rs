//! Duplicate detection (hl7-ack.md, "Duplicates"): key (MSH-3, MSH-4, MSH-10)
//! plus a content hash. Same key and hash: a retransmission after a lost ACK,
//! answered with the ACK sent the first time. Same key, other hash: the
//! sender's counter was reset; processed as new.

/// (sending application, sending facility, control id), joined by a unit
/// separator (0x1F), which cannot appear in HL7 text fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey(Vec<u8>);

impl DedupKey {
    pub fn new(sending_app: &str, sending_facility: &str, control_id: &str) -> DedupKey {
        let mut k = Vec::with_capacity(sending_app.len() + sending_facility.len() + control_id.len() + 2);
        k.extend_from_slice(sending_app.as_bytes());
        k.push(0x1f);
        k.extend_from_slice(sending_facility.as_bytes());
        k.push(0x1f);
        k.extend_from_slice(control_id.as_bytes());
        DedupKey(k)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Content fingerprint: CRC32C and length. Together with the key this makes an
/// accidental match (a reset counter reusing an id *and* colliding) about 2^-32;
/// the cost of such a match is one message answered with its twin's ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub crc: u32,
    pub len: u32,
}

impl Fingerprint {
    pub fn of(raw: &[u8]) -> Fingerprint {
        Fingerprint { crc: crc32c::crc32c(raw), len: raw.len() as u32 }
    }
}

/// What the dedup tree remembers about an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupRecord {
    pub fingerprint: Fingerprint,
    pub seq: u64,
    /// The ACK bytes sent the first time (empty when MSH-15 asked for none).
    pub ack: Vec<u8>,
}

impl DedupRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + self.ack.len());
        v.extend_from_slice(&self.fingerprint.crc.to_be_bytes());
        v.extend_from_slice(&self.fingerprint.len.to_be_bytes());
        v.extend_from_slice(&self.seq.to_be_bytes());
        v.extend_from_slice(&self.ack);
        v
    }

    pub fn decode(b: &[u8]) -> Option<DedupRecord> {
        if b.len() < 16 {
            return None;
        }
        let crc = u32::from_be_bytes(b[0..4].try_into().ok()?);
        let len = u32::from_be_bytes(b[4..8].try_into().ok()?);
        let seq = u64::from_be_bytes(b[8..16].try_into().ok()?);
        Some(DedupRecord { fingerprint: Fingerprint { crc, len }, seq, ack: b[16..].to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_roundtrip_and_damage() {
        let r = DedupRecord { fingerprint: Fingerprint::of(b"MSH|x"), seq: 7, ack: b"MSH|ack\r".to_vec() };
        assert_eq!(DedupRecord::decode(&r.encode()), Some(r));
        assert_eq!(DedupRecord::decode(b"short"), None);
    }

    #[test]
    fn keys_do_not_collide_across_fields() {
        assert_ne!(DedupKey::new("AB", "C", "1"), DedupKey::new("A", "BC", "1"));
    }
}
