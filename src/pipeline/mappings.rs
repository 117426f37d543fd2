//! The mapping set in force, shared between the pipeline and whoever reloads it.

use std::sync::{Arc, RwLock};

use crate::mapping::MappingSet;

/// A reload swaps the whole set at once; a batch uses one set throughout.
#[derive(Clone)]
pub struct Mappings(Arc<RwLock<Arc<MappingSet>>>);

impl Mappings {
    pub fn new(set: MappingSet) -> Mappings {
        Mappings(Arc::new(RwLock::new(Arc::new(set))))
    }

    pub fn current(&self) -> Arc<MappingSet> {
        // A poisoned lock only means a reloader panicked while swapping an
        // Arc, which cannot leave a half-written set: keep using it.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, set: MappingSet) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }
}

impl std::fmt::Debug for Mappings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mappings({} files)", self.current().files())
    }
}
