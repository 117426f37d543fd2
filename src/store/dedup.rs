//! Duplicate detection (hl7-ack.md, "Duplicates"): key (MSH-3, MSH-4, MSH-10)
//! plus a content hash. Same key and hash: a retransmission after a lost ACK,
//! answered with the ACK sent the first time. Same key, other hash: the
//! sender's counter was reset; processed as new.
//!
//! The window is bounded ([`Store::prune_dedup`], run by the server at
//! start-up and hourly with retention): records of messages received more
//! than `[dedup] window_secs` ago are forgotten, and beyond
//! `[dedup] max_entries` the oldest are; a retransmission after that is
//! processed as a new message (journaled and filed again, which re-files
//! the same item versions: the record does not change).

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

impl super::Store {
    /// Forgets the dedup records of seqs below `below_seq`, then the oldest
    /// beyond `max_entries`; returns how many were forgotten. A record the
    /// index writer replaced meanwhile (a reused control id) is kept: each
    /// removal is a compare-and-swap against the value read.
    ///
    /// # Errors
    /// sled could not be read or written.
    pub fn prune_dedup(&self, below_seq: u64, max_entries: usize) -> Result<usize, super::StoreError> {
        let t = self.t()?;
        let mut kept = Vec::new();
        let mut removed = 0;
        let forget = |k: &[u8], v: &[u8]| -> Result<bool, super::StoreError> {
            Ok(t.dedup.compare_and_swap(k, Some(v), None::<&[u8]>)?.is_ok())
        };
        for kv in t.dedup.iter() {
            let (k, v) = kv?;
            let seq = DedupRecord::decode(&v).map_or(0, |r| r.seq);
            if seq < below_seq {
                removed += usize::from(forget(&k, &v)?);
            } else if max_entries > 0 {
                kept.push(seq);
            }
        }
        if max_entries > 0 && kept.len() > max_entries {
            // The seq of the oldest record that stays; `excess < kept.len()`
            // because `max_entries > 0`, so the index is in bounds.
            let excess = kept.len() - max_entries;
            let (_, &mut cutoff, _) = kept.select_nth_unstable(excess);
            drop(kept);
            for kv in t.dedup.iter() {
                let (k, v) = kv?;
                if DedupRecord::decode(&v).map_or(0, |r| r.seq) < cutoff {
                    removed += usize::from(forget(&k, &v)?);
                }
            }
        }
        Ok(removed)
    }

    /// Records in the dedup window now.
    pub fn dedup_len(&self) -> Result<usize, super::StoreError> {
        Ok(self.t()?.dedup.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_forgets_old_records_then_the_oldest_beyond_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::Store::open(dir.path()).unwrap();
        for seq in 1..=10u64 {
            let rec = DedupRecord { fingerprint: Fingerprint::of(b"x"), seq, ack: Vec::new() };
            store
                .t()
                .unwrap()
                .dedup
                .insert(DedupKey::new("PAS", "RJ1", &format!("C{seq}")).as_bytes(), rec.encode())
                .unwrap();
        }
        assert_eq!(store.prune_dedup(4, 0).unwrap(), 3, "seqs 1..=3 are outside the window");
        assert_eq!(store.prune_dedup(0, 5).unwrap(), 2, "seqs 4 and 5 are the oldest beyond five");
        assert_eq!(store.dedup_len().unwrap(), 5);
        assert!(store.dedup_get(&DedupKey::new("PAS", "RJ1", "C5")).unwrap().is_none());
        assert!(store.dedup_get(&DedupKey::new("PAS", "RJ1", "C6")).unwrap().is_some());
        assert_eq!(store.prune_dedup(0, 0).unwrap(), 0, "0 = no size bound");
    }

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
