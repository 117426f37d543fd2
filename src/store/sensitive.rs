//! Exclusion in the index (the govern stage decides, `src/govern/`): what
//! makes filing skip an item, and how a visit or order that becomes
//! sensitive takes its items out of the record, whatever the arrival order.
//!
//! - `sensitive`: `scope` → rule id. A scope is `path|facility|value`
//!   (`PV1-19.1|RJ1|V123`): a visit or an order of one sender. Derived from
//!   the journal (cleared by `clear_derived`, rebuilt by replay).
//! - `scoped`: `scope \0 NHS number` → nothing: the patients with items
//!   filed in a scope (one key per visit and patient, not per item: every
//!   item of an ADT is in its visit). Items are stored with their scopes, so
//!   registering a scope scans those patients' items and deletes the ones in
//!   it.
//!
//! Keyed by scope, not by NHS number: a visit number names one patient
//! already, a parked message's scopes are registered before its patient is
//! known, and a merge (which moves version keys, `identity.rs`) is followed
//! by resolving the alias of the NHS number at the front of a version key.

use std::sync::atomic::Ordering;

use super::keys::{self, SEP};
use super::versions;
use super::{identity, StoreError, Trees};

/// Registers scopes a message makes sensitive and deletes every version
/// filed in them so far.
pub(super) fn register(t: &Trees, scopes: &[(String, String)]) -> Result<(), StoreError> {
    for (scope, rule) in scopes {
        if t.sensitive.get(scope.as_bytes())?.is_some() {
            continue;
        }
        t.sensitive.insert(scope.as_bytes(), rule.as_bytes())?;
        t.any_sensitive.store(true, Ordering::Relaxed);
        let mut patients = Vec::new();
        for kv in t.scoped.scan_prefix(prefix(scope)) {
            let (k, _) = kv?;
            let nhs = String::from_utf8_lossy(&k[scope.len() + 1..]).into_owned();
            // Moved by a merge since: the items are under the survivor now.
            let now = identity::resolve_alias(t, &nhs)?;
            if !patients.contains(&now) {
                patients.push(now);
            }
        }
        for nhs in patients {
            for kv in t.items.scan_prefix(keys::patient_prefix(&nhs)) {
                let (k, v) = kv?;
                // Identifier items (version keys) are in no scope.
                if let Some(keys::Stored::Message { .. }) = keys::parse(&k) {
                    drop_scope(t, &k, &v, scope)?;
                }
            }
        }
    }
    Ok(())
}

/// Rewrites one message key without its versions in `scope`.
fn drop_scope(t: &Trees, key: &[u8], bytes: &[u8], scope: &str) -> Result<(), StoreError> {
    let (provenance, items) = versions::decode_items(bytes)?;
    let kept: Vec<(u32, &crate::record::Item)> =
        items.iter().filter(|(_, i)| !i.scopes.iter().any(|s| &**s == scope)).map(|(n, i)| (*n, i)).collect();
    if kept.len() == items.len() {
        return Ok(());
    }
    if kept.is_empty() {
        t.items.remove(key)?;
    } else {
        t.items.insert(key, versions::encode(&provenance, &kept)?)?;
    }
    Ok(())
}

/// The rule that made one of `scopes` sensitive, if one did.
pub(super) fn sensitive(t: &Trees, scopes: &[std::sync::Arc<str>]) -> Result<Option<String>, StoreError> {
    if !t.any_sensitive.load(Ordering::Relaxed) {
        return Ok(None);
    }
    for s in scopes {
        if let Some(rule) = t.sensitive.get(s.as_bytes())? {
            return Ok(Some(String::from_utf8_lossy(&rule).into_owned()));
        }
    }
    Ok(None)
}

/// Remembers that patient `nhs` has items in `scopes` (once: the index
/// writer remembers what it noted).
pub(super) fn note(t: &Trees, scopes: &[std::sync::Arc<str>], nhs: &str) -> Result<(), StoreError> {
    for s in scopes {
        let mut k = prefix(s);
        k.extend_from_slice(nhs.as_bytes());
        if t.caches().scoped_noted.contains(&k) {
            continue;
        }
        t.scoped.insert(&k, &[])?;
        t.caches().remember_scoped(k);
    }
    Ok(())
}

/// Every sensitive scope (`recordhub` re-evaluation compares sets).
pub(super) fn all(t: &Trees) -> Result<Vec<String>, StoreError> {
    t.sensitive.iter().keys().map(|k| Ok(String::from_utf8_lossy(&k?).into_owned())).collect()
}

/// Forgets a scope no rule makes sensitive any more (its items come back
/// when their messages are filed again).
pub(super) fn forget(t: &Trees, scope: &str) -> Result<(), StoreError> {
    t.sensitive.remove(scope.as_bytes())?;
    Ok(())
}

fn prefix(scope: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(scope.len() + 64);
    k.extend_from_slice(scope.as_bytes());
    k.push(SEP);
    k
}

const RULES_MARK: &[u8] = b"governance_rules_mark";

impl super::Store {
    /// Which exclusion rule set the index was built with (0: none or unknown).
    pub fn rules_mark(&self) -> Result<u64, StoreError> {
        self.meta_u64(RULES_MARK)
    }

    pub fn set_rules_mark(&self, mark: u64) -> Result<(), StoreError> {
        self.t()?.meta.insert(RULES_MARK, &mark.to_be_bytes())?;
        Ok(())
    }

    /// Every scope a rule has made sensitive.
    pub fn sensitive_scopes(&self) -> Result<Vec<String>, StoreError> {
        all(&*self.t()?)
    }

    /// Forgets a scope no rule makes sensitive any more; its items come back
    /// when their messages are filed again ([`Self::refile_governed`]).
    pub fn forget_sensitive_scope(&self, scope: &str) -> Result<(), StoreError> {
        forget(&*self.t()?, scope)
    }

    /// Files a message again after the rules changed (re-evaluation on
    /// reload): into the record it went to, with no identity change; its
    /// excluded items' versions are deleted, the others written (the same
    /// keys as before). A message that is parked or was never filed only
    /// registers its sensitive scopes.
    ///
    /// # Errors
    /// sled could not read or write.
    pub fn refile_governed(&self, mapped: crate::record::Mapped) -> Result<(), StoreError> {
        let t = self.t()?;
        match identity::target_now(&t, &mapped)? {
            Some((target, verified)) => {
                let _serial = t.objection_lock.lock().unwrap_or_else(|e| e.into_inner());
                identity::write_for_restore(&t, &target, verified, mapped)
            }
            None => register(&t, &mapped.governed.sensitive_scopes),
        }
    }
}
