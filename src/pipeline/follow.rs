//! Following another node's journal (a cluster follower, `cluster/follow.rs`):
//! entries the active node journaled and published arrive here in stream
//! order and are appended with their own seqs, committed with one fdatasync
//! per batch, and handed to the index writer exactly as a committed batch of
//! [`Pipeline::process`] is: accepted entries mapped again with the mappings
//! in force here (as replay does) and their dedup records, which are also
//! remembered until filed. So after a takeover a retransmission of a message
//! the old active acknowledged is answered as a duplicate with the original
//! ACK, never filed twice.
//!
//! What it deliberately does not do: judge the entries again (the verdict and
//! the ACK are the active node's, journaled), or talk to NATS.

use crate::journal::{Entry, JournalError, JournalReader};

use super::replay::{accepted, map_error_text, Unmapped};
use super::*;

/// Why a followed batch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The journal refused an entry (larger than the format allows, which an
    /// entry another journal held cannot be). The entries before it were
    /// committed; raise `mllp.max_frame_bytes` limits to match the active node.
    #[error("cannot append the followed entry {seq} to the journal")]
    Append {
        seq: u64,
        #[source]
        source: JournalError,
    },
    /// The batch's commit failed (a full disk): none of it is durable and the
    /// same seqs can be appended again; free space under the data directory,
    /// the follower retries the batch.
    #[error("cannot commit the followed entries up to seq {last}: {why}")]
    Commit { last: u64, why: String },
}

impl Pipeline {
    /// Appends each entry at its own seq (skipping those already held),
    /// commits once, and hands the committed batch to the index writer.
    /// Returns the last seq the journal holds (burned seqs included).
    ///
    /// # Errors
    /// [`FollowError::Commit`]: nothing of the batch is durable; retry it.
    /// [`FollowError::Append`]: the entries before the refused one are durable.
    pub fn follow(&mut self, entries: &[Entry]) -> Result<u64, FollowError> {
        self.recent.forget_applied(self.indexer.progress().applied());
        let before = self.journal.next_seq();
        let mut appended: Vec<&Entry> = Vec::with_capacity(entries.len());
        let mut refused = None;
        for e in entries {
            match self.journal.append_at(e.seq, &e.as_ref()) {
                Ok(_) => appended.push(e),
                // A redelivery of an entry applied before: the journal is the truth.
                Err(JournalError::AlreadyHeld { .. }) => {}
                Err(source) => {
                    refused = Some(FollowError::Append { seq: e.seq, source });
                    break;
                }
            }
        }
        if let Err(why) = self.commit(appended.len() as u64) {
            self.journal.rewind_after_failed_commit(before);
            let last = appended.last().map_or(0, |e| e.seq);
            return Err(FollowError::Commit { last, why });
        }
        if let Some(last) = appended.last() {
            let work = self.followed_work(&appended, last.seq);
            self.indexer.submit(work);
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(self.position()),
        }
    }

    /// What the index writer files for committed followed entries: as
    /// `settle.rs` hands it for ingested ones, derived as replay derives it.
    fn followed_work(&mut self, appended: &[&Entry], last_seq: u64) -> Work {
        let mut work = Work { last_seq, dedup: Vec::new(), filings: Vec::new() };
        for e in appended {
            if !accepted(e, &self.opts.policy) {
                continue;
            }
            match self.replayer.remap(&e.raw, e.seq) {
                // Acknowledged but ignored by the mappings: never filed, as on ingest.
                Ok(mapped) if mapped.ignored => {}
                Ok(mapped) => work.filings.push(Filing { seq: e.seq, mapped }),
                // Mapped on the active node, not with this node's mappings:
                // the entry is journaled here; a reindex after the mappings
                // agree files it. The reason names rules, never values.
                Err(Unmapped::Map(err)) => tracing::warn!(seq = e.seq, error = %map_error_text(&err),
                    "a followed message does not map with this node's mappings; not filed (do the nodes share mappings/?)"),
                Err(Unmapped::Parse) => tracing::warn!(
                    seq = e.seq,
                    "a followed message does not parse with this node's settings; not filed"
                ),
            }
            let key = DedupKey::new(&e.sending_app, &e.sending_facility, &e.control_id);
            let rec = DedupRecord { fingerprint: Fingerprint::of(&e.raw), seq: e.seq, ack: e.ack.clone() };
            self.recent.insert(key.clone(), rec.clone());
            work.dedup.push((key, rec));
        }
        work
    }

    /// Passes seqs the stream holds only as gap fillers (burned on the
    /// active node) at the end of what it holds, so that a takeover
    /// continues after them.
    pub fn skip_through(&mut self, seq: u64) {
        self.journal.burn_through(seq);
    }

    /// The last seq the journal holds or has passed: the next one appended
    /// (by `process` or `follow`) is this + 1.
    pub fn position(&self) -> u64 {
        self.journal.next_seq() - 1
    }

    /// The data directory (journal and index beneath it).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.opts.data_dir
    }

    /// The committed journal entry at `seq`, if the journal holds one.
    ///
    /// # Errors
    /// The journal cannot be read.
    pub fn journal_entry(&self, seq: u64) -> Result<Option<Entry>, JournalError> {
        let reader = JournalReader::open(&self.replayer.journal_dir)?;
        let mut entries = reader.iter_from(seq);
        match entries.next() {
            Some(Ok(e)) if e.seq == seq => Ok(Some(e)),
            Some(Ok(_)) | None => Ok(None),
            Some(Err(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{adt, open, open_with};
    use super::*;

    fn committed(dir: &std::path::Path) -> Vec<Entry> {
        let reader = JournalReader::open(&journal_dir(dir)).unwrap();
        reader.iter_from(0).collect::<Result<_, _>>().unwrap()
    }

    /// A follower's journal holds the active node's entries at the same
    /// seqs, its index serves the same record, and a redelivered batch
    /// changes nothing.
    #[test]
    fn followed_entries_keep_their_seqs_and_file_the_same_items_once() {
        let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut src = open(src_dir.path());
        let out = src.process(&[Inbound::message(&adt("F1", "V1"), "test", 0)]);
        assert!(out[0].code.is_accept());
        src.process(&[Inbound::message(b"MSH|^~\\&|bad", "test", 0)]);
        src.sync_index();
        let entries = committed(src_dir.path());
        assert_eq!(entries.len(), 2);

        let mut dst = open(dst_dir.path());
        assert_eq!(dst.follow(&entries).unwrap(), 2);
        assert_eq!(dst.follow(&entries).unwrap(), 2, "a redelivery is skipped");
        dst.sync_index();
        assert_eq!(committed(dst_dir.path()), entries, "the same entries at the same seqs");
        let nhs = crate::hl7::NhsNumber::parse("9434765919").unwrap();
        let (want, got) = (src.store().record(&nhs).unwrap(), dst.store().record(&nhs).unwrap());
        assert!(!got.is_empty());
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "the same items");
        let versions = dst.store().history(&nhs).unwrap().iter().map(|h| h.versions.len()).sum::<usize>();
        assert_eq!(versions, got.len(), "filed once");
        src.shutdown().unwrap();
        dst.shutdown().unwrap();
    }

    /// A failed commit of a followed batch (a full disk) leaves nothing
    /// behind, and the retried batch is appended at the same seqs, not
    /// skipped as already held.
    #[test]
    fn a_followed_batch_whose_commit_failed_is_appended_again_when_retried() {
        let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut src = open(src_dir.path());
        src.process(&[Inbound::message(&adt("R1", "V1"), "test", 0)]);
        let entries = committed(src_dir.path());
        let faults = crate::fault::Faults::parse("journal.fdatasync=1*error").unwrap();
        let mut dst = open_with(dst_dir.path(), faults);
        let err = dst.follow(&entries).unwrap_err();
        assert!(matches!(err, FollowError::Commit { last: 1, .. }), "{err}");
        assert_eq!(dst.position(), 0);
        assert_eq!(dst.follow(&entries).unwrap(), 1);
        assert_eq!(committed(dst_dir.path()), entries);
        src.shutdown().unwrap();
        dst.shutdown().unwrap();
    }

    /// After following, the node takes over: the next ingested message gets
    /// the next seq, and a retransmission of a followed message is answered
    /// as a duplicate with the original ACK, not filed again.
    #[test]
    fn after_following_a_retransmission_is_a_duplicate_with_the_original_ack() {
        let (src_dir, dst_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut src = open(src_dir.path());
        let msg = adt("D1", "V1");
        let first = src.process(&[Inbound::message(&msg, "test", 0)]).remove(0);
        let mut dst = open(dst_dir.path());
        dst.follow(&committed(src_dir.path())).unwrap();
        dst.skip_through(3);
        let again = dst.process(&[Inbound::message(&msg, "test", 0)]).remove(0);
        assert!(again.duplicate, "answered from the followed dedup record, before it is filed");
        assert_eq!((again.ack, again.seq), (first.ack.clone(), first.seq));
        dst.sync_index();
        let third = dst.process(&[Inbound::message(&msg, "test", 0)]).remove(0);
        assert!(third.duplicate && third.ack == first.ack, "and after, from the index");
        let new = dst.process(&[Inbound::message(&adt("D2", "V2"), "test", 0)]).remove(0);
        assert_eq!(new.seq, Some(4), "the sequence continues after the passed gap");
        src.shutdown().unwrap();
        dst.shutdown().unwrap();
    }
}

/// A pipeline in a temporary directory with the shipped mappings, and HL7
/// messages, for tests of following here and in `cluster/follow.rs`.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    use super::*;
    use crate::fault::Faults;
    use crate::mapping::MappingSet;

    pub(crate) fn options(dir: &Path, faults: Faults) -> Options {
        let set = MappingSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")).unwrap();
        Options {
            data_dir: dir.to_path_buf(),
            journal_segment_bytes: 1 << 20,
            index_cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
            journal_damage: Default::default(),
            application: "RECORDHUB".into(),
            facility: "LCR".into(),
            policy: crate::intake::Policy::default(),
            mappings: Mappings::new(set),
            health: crate::health::Health::default(),
            faults,
        }
    }

    pub(crate) fn open_with(dir: &Path, faults: Faults) -> Pipeline {
        Pipeline::open(options(dir, faults)).unwrap().0
    }

    pub(crate) fn open(dir: &Path) -> Pipeline {
        open_with(dir, Faults::none())
    }

    /// An ADT^A01 for NHS number 943 476 5919 filing encounter `visit`.
    pub(crate) fn adt(control_id: &str, visit: &str) -> Vec<u8> {
        format!(
            "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|{control_id}|P|2.4\r\
             EVN|A01|20261121083000\r\
             PID|1||9434765919^^^NHS^NH||SMITH^JOHN||19700101|M\r\
             PV1|1|I|RJ1WARD1^BED1||||C123^JONES^ANN||||||||||||{visit}\r"
        )
        .into_bytes()
    }
}
