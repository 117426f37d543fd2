//! Role-based views: which roles may read, and which record categories
//! (item kinds) each role sees.
//!
//! Skeleton (issue 11): every role sees everything. The access file
//! (`mappings/access.toml`) replaces the internals; the interface stays.

use crate::record::Kind;

/// The roles and what each sees.
#[derive(Debug, Clone)]
pub struct Access {
    everything: bool,
}

/// What one role sees of a record.
#[derive(Debug, Clone, Copy)]
pub struct RoleView<'a> {
    access: &'a Access,
}

impl Access {
    /// Every role sees every category (tests, and the skeleton).
    pub fn allow_all() -> Access {
        Access { everything: true }
    }

    /// What `role` sees, or `None` when the role may not read records.
    pub fn view(&self, _role: &str) -> Option<RoleView<'_>> {
        self.everything.then_some(RoleView { access: self })
    }

    /// Whether `role` may use the admin API.
    pub fn is_admin(&self, _role: &str) -> bool {
        self.everything
    }
}

impl RoleView<'_> {
    /// Whether the role sees items of this kind.
    pub fn shows(&self, _kind: Kind) -> bool {
        self.access.everything
    }
}
