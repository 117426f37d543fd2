//! Who is reading, and why.
//!
//! Skeleton (issue 11): the types every read carries. JWT verification,
//! token minting and the HTTP guards live beside them.

/// An authenticated user, from a verified token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    /// The role named in the access file (`mappings/access.toml`).
    pub role: String,
    /// The user's organisation (ODS code).
    pub org: String,
}

/// Why a record is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Direct care, with the user's declared relationship to the patient.
    DirectCare { relationship: String },
    /// An emergency read outside the user's declared relationships: flagged
    /// for review in the audit.
    BreakGlass { reason: String },
}

impl Default for Purpose {
    fn default() -> Self {
        Purpose::DirectCare { relationship: "declared by the professional".into() }
    }
}

impl Purpose {
    /// The audit's `purpose` field.
    pub fn name(&self) -> &'static str {
        match self {
            Purpose::DirectCare { .. } => "direct_care",
            Purpose::BreakGlass { .. } => "break_glass",
        }
    }

    /// The relationship or the break-glass reason.
    pub fn reason(&self) -> &str {
        match self {
            Purpose::DirectCare { relationship } => relationship,
            Purpose::BreakGlass { reason } => reason,
        }
    }

    pub fn is_break_glass(&self) -> bool {
        matches!(self, Purpose::BreakGlass { .. })
    }
}
