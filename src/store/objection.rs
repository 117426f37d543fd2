//! The objection register: patients who have said their record must not be
//! shared (issue 10; domain.md §5), and the audited log of every change to it.
//!
//! Trees (neither is derived from the journal, so `clear_derived` and
//! `reindex` keep both, like `audit`):
//! - `objections`: NHS number → the [`Objection`] standing for it;
//! - `objection_log`: `at_ms · id` → [`ObjectionChange`], append-only: who
//!   added or removed an objection, when, why and from what source.
//!
//! While an objection stands, nothing is filed under that NHS number: the
//! filing hooks in `identity.rs` ([`stands`]) drop the items (the message is
//! still journaled and acknowledged as usual, so the sender sees no
//! difference), and adding one deletes the item versions already filed.
//! Removing one restores the record from the journal without a re-send
//! ([`Store::refile_for`], driven by `Replayer::restore`).
//!
//! What this module does not do: decide *whether* a read may show a record
//! (the read paths ask [`Store::objection`]) or parse the CSV import
//! (`cli/objection.rs`).

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::{identity, keys, Store, StoreError, Trees};
use crate::hl7::nhs::NhsNumber;
use crate::record::Mapped;

/// One standing objection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objection {
    /// Why it was recorded (free text; may be empty for an imported row).
    pub reason: String,
    /// The records officer (or import) that recorded it.
    pub recorded_by: String,
    /// Where it came from: `connect-care`, `gp`, `patient`, `import`, …
    pub source: String,
    /// When the patient objected (Unix ms; the import's `recorded_at`, or now).
    pub recorded_at_ms: i64,
}

/// One entry of the register, as `objection list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub nhs_number: String,
    #[serde(flatten)]
    pub objection: Objection,
}

/// One change to the register (the `objection_log` tree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectionChange {
    /// When the change was made in recordhub (Unix ms).
    pub at_ms: u64,
    /// `add` or `remove`.
    pub action: String,
    pub nhs_number: String,
    /// Who made the change.
    pub recorded_by: String,
    /// Why (the objection's reason on `add`, the withdrawal's on `remove`).
    pub reason: String,
    /// The objection's source (on `remove`, that of the objection removed).
    pub source: String,
    /// When the patient objected (the objection's `recorded_at_ms`).
    pub recorded_at_ms: i64,
}

/// Whether an objection stands for `nhs` (a filing target, already
/// alias-resolved). One atomic load while the register is empty.
pub(super) fn stands(t: &Trees, nhs: &str) -> Result<bool, StoreError> {
    if !t.any_objection.load(Ordering::Relaxed) {
        return Ok(false);
    }
    Ok(t.objections.contains_key(nhs.as_bytes())?)
}

/// After `prior` was merged into `target` (`alias`): an objection for
/// `prior` now covers `target`'s record too, so it is registered for
/// `target` as well (logged, `recorded_by` `recordhub (merge)`). Idempotent,
/// so a replay of the merge changes nothing more.
pub(super) fn follow_merge(t: &Trees, prior: &str, target: &str) -> Result<(), StoreError> {
    if !t.any_objection.load(Ordering::Relaxed) || t.objections.contains_key(target.as_bytes())? {
        return Ok(());
    }
    let Some(v) = t.objections.get(prior.as_bytes())? else { return Ok(()) };
    let old = decode(&v)?;
    let carried = Objection {
        reason: format!("carried over from merged NHS number {prior}: {}", old.reason),
        recorded_by: MERGE.into(),
        ..old
    };
    register(t, target, carried)
}

/// Who the log names for an objection carried over by a merge.
const MERGE: &str = "recordhub (merge)";

/// Inserts `objection` for `nhs` and logs the `add`.
fn register(t: &Trees, nhs: &str, objection: Objection) -> Result<(), StoreError> {
    let v = serde_json::to_vec(&objection).map_err(|_| StoreError::Damaged { tree: "objections" })?;
    t.any_objection.store(true, Ordering::Relaxed);
    t.objections.insert(nhs.as_bytes(), v)?;
    let change = ObjectionChange {
        at_ms: now_ms(),
        action: "add".into(),
        nhs_number: nhs.to_string(),
        recorded_by: objection.recorded_by,
        reason: objection.reason,
        source: objection.source,
        recorded_at_ms: objection.recorded_at_ms,
    };
    log(t, &change)
}

fn now_ms() -> u64 {
    crate::pipeline::now_ms()
}

fn decode(v: &[u8]) -> Result<Objection, StoreError> {
    serde_json::from_slice(v).map_err(|_| StoreError::Damaged { tree: "objections" })
}

fn log(t: &Trees, change: &ObjectionChange) -> Result<(), StoreError> {
    let mut k = change.at_ms.to_be_bytes().to_vec();
    k.extend_from_slice(&t.db.generate_id()?.to_be_bytes());
    let v = serde_json::to_vec(change).map_err(|_| StoreError::Damaged { tree: "objection_log" })?;
    t.objection_log.insert(k, v)?;
    Ok(())
}

/// Deletes every item version filed under `nhs`; returns how many.
fn purge(t: &Trees, nhs: &str) -> Result<usize, StoreError> {
    let mut n = 0;
    for kv in t.items.scan_prefix(keys::patient_prefix(nhs)) {
        let (k, v) = kv?;
        n += match keys::parse(&k) {
            Some(keys::Stored::Message { .. }) => super::versions::count(&v).unwrap_or(1),
            _ => 1,
        };
        t.items.remove(k)?;
    }
    // The identifier items went too: a restore must write them again.
    t.caches().clear();
    Ok(n)
}

impl Store {
    /// Registers an objection for `nhs` (replacing one already standing),
    /// logs the change and deletes the patient's filed items at once.
    /// Returns how many item versions were deleted. Durable on return.
    ///
    /// # Errors
    /// sled could not write.
    pub fn add_objection(&self, nhs: &NhsNumber, objection: Objection) -> Result<usize, StoreError> {
        self.add_objections(vec![(*nhs, objection)])
    }

    /// [`Store::add_objection`] for many (an import), flushed once at the end.
    ///
    /// # Errors
    /// sled could not write; the rows before the failure may be registered.
    pub fn add_objections(&self, rows: Vec<(NhsNumber, Objection)>) -> Result<usize, StoreError> {
        let t = self.t()?;
        // Nothing under this lock can leave the unit value half-written.
        let _serial = t.objection_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for (nhs, objection) in rows {
            // Register first: a message filed from now on is dropped, so the
            // purge below cannot be undone by the index writer (see `purge_patient`).
            register(&t, nhs.as_str(), objection)?;
            // A number merged into another: the survivor's record is this patient's.
            let survivor = identity::resolve_alias(&t, nhs.as_str())?;
            if survivor != nhs.as_str() {
                follow_merge(&t, nhs.as_str(), &survivor)?;
            }
            n += purge(&t, &survivor)?;
        }
        t.db.flush()?;
        tracing::info!(action = "add", items_removed = n, "objection register changed");
        Ok(n)
    }

    /// Deletes whatever is filed under `nhs` again. The server calls it once
    /// the index writer has caught up after [`Store::add_objection`]: a batch
    /// that checked the register just before the objection was added may
    /// have filed an item after the first purge.
    ///
    /// # Errors
    /// sled could not write.
    pub fn purge_patient(&self, nhs: &NhsNumber) -> Result<usize, StoreError> {
        let t = self.t()?;
        purge(&t, &identity::resolve_alias(&t, nhs.as_str())?)
    }

    /// Withdraws the objection for `nhs` (and for every number merged with
    /// it: one patient) and logs who and why, once per number. `None` when
    /// none stood (nothing is logged then). The record comes back only when
    /// the journal is replayed for it (`Replayer::restore`).
    ///
    /// # Errors
    /// sled could not write.
    pub fn remove_objection(
        &self,
        nhs: &NhsNumber,
        recorded_by: &str,
        reason: &str,
    ) -> Result<Option<Objection>, StoreError> {
        let t = self.t()?;
        let survivor = identity::resolve_alias(&t, nhs.as_str())?;
        let mut same_patient = Vec::new();
        for kv in t.objections.iter() {
            let (k, v) = kv?;
            let number = String::from_utf8_lossy(&k).into_owned();
            if number == nhs.as_str() || identity::resolve_alias(&t, &number)? == survivor {
                same_patient.push((number, decode(&v)?));
            }
        }
        // The objection for the number asked about, else any of the patient's.
        let pos = same_patient.iter().position(|(n, _)| n == nhs.as_str()).unwrap_or(0);
        let Some(removed) = same_patient.get(pos).map(|(_, o)| o.clone()) else { return Ok(None) };
        for (number, old) in same_patient {
            t.objections.remove(number.as_bytes())?;
            let change = ObjectionChange {
                at_ms: now_ms(),
                action: "remove".into(),
                nhs_number: number,
                recorded_by: recorded_by.to_string(),
                reason: reason.to_string(),
                source: old.source,
                recorded_at_ms: old.recorded_at_ms,
            };
            log(&t, &change)?;
        }
        t.db.flush()?;
        tracing::info!(action = "remove", "objection register changed");
        Ok(Some(removed))
    }

    /// The objection standing for `nhs`, or for the record it was merged into.
    ///
    /// # Errors
    /// sled could not read, or the entry is damaged.
    pub fn objection(&self, nhs: &NhsNumber) -> Result<Option<Objection>, StoreError> {
        let t = self.t()?;
        if let Some(v) = t.objections.get(nhs.as_str().as_bytes())? {
            return decode(&v).map(Some);
        }
        let survivor = identity::resolve_alias(&t, nhs.as_str())?;
        match t.objections.get(survivor.as_bytes())? {
            Some(v) => decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// The whole register, by NHS number.
    ///
    /// # Errors
    /// sled could not read, or an entry is damaged.
    pub fn objections(&self) -> Result<Vec<Registered>, StoreError> {
        let mut out = Vec::new();
        for kv in self.t()?.objections.iter() {
            let (k, v) = kv?;
            out.push(Registered { nhs_number: String::from_utf8_lossy(&k).into_owned(), objection: decode(&v)? });
        }
        Ok(out)
    }

    /// Every change ever made to the register, oldest first.
    ///
    /// # Errors
    /// sled could not read, or an entry is damaged.
    pub fn objection_log(&self) -> Result<Vec<ObjectionChange>, StoreError> {
        let mut out = Vec::new();
        for kv in self.t()?.objection_log.iter() {
            let (_, v) = kv?;
            out.push(serde_json::from_slice(&v).map_err(|_| StoreError::Damaged { tree: "objection_log" })?);
        }
        Ok(out)
    }

    /// Restoring a record after an objection is withdrawn: files a journaled
    /// message again (mapped anew from the journal), but only if it goes into `nhs`'s record. Whose
    /// record it goes into is read from the identity state as it is now
    /// (`xref`, `alias`) and nothing of that state is changed: the message
    /// already linked its identifiers when it was first filed. Returns
    /// whether anything was written.
    ///
    /// # Errors
    /// sled could not read or write.
    pub fn refile_for(&self, nhs: &NhsNumber, mapped: Mapped) -> Result<bool, StoreError> {
        let t = self.t()?;
        let Some((target, verified)) = identity::target_now(&t, &mapped)? else { return Ok(false) };
        let _serial = t.objection_lock.lock().unwrap_or_else(|e| e.into_inner());
        if target != identity::resolve_alias(&t, nhs.as_str())? || stands(&t, &target)? {
            return Ok(false);
        }
        identity::write_for_restore(&t, &target, verified, mapped)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
