//! The mapping set and the exclusion rules in force, shared between the
//! pipeline and whoever reloads them.

use std::sync::{Arc, RwLock};

use crate::govern::Rules;
use crate::mapping::MappingSet;

/// A reload swaps the whole set (and the rules) at once; a batch uses one
/// set throughout.
#[derive(Clone)]
pub struct Mappings(Arc<RwLock<(Arc<MappingSet>, Arc<Rules>)>>);

impl Mappings {
    /// Mappings without exclusion rules.
    pub fn new(set: MappingSet) -> Mappings {
        Mappings::with_rules(set, Rules::empty())
    }

    pub fn with_rules(set: MappingSet, rules: Rules) -> Mappings {
        Mappings(Arc::new(RwLock::new((Arc::new(set), Arc::new(rules)))))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, (Arc<MappingSet>, Arc<Rules>)> {
        // A poisoned lock only means a reloader panicked while swapping an
        // Arc, which cannot leave a half-written set: keep using it.
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn current(&self) -> Arc<MappingSet> {
        self.read().0.clone()
    }

    /// The mapping set and the exclusion rules, swapped together.
    pub fn both(&self) -> (Arc<MappingSet>, Arc<Rules>) {
        self.read().clone()
    }

    pub fn rules(&self) -> Arc<Rules> {
        self.read().1.clone()
    }

    pub fn replace(&self, set: MappingSet) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).0 = Arc::new(set);
    }

    /// Swaps mappings and rules in one step.
    pub fn replace_all(&self, set: MappingSet, rules: Rules) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = (Arc::new(set), Arc::new(rules));
    }
}

impl std::fmt::Debug for Mappings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (set, rules) = self.both();
        write!(f, "Mappings({} files, {} exclusion rules)", set.files(), rules.len())
    }
}
