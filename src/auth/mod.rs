//! Who is reading, and why.
//!
//! Every request carries a bearer token (a JWT, in the `Authorization`
//! header or the web page's cookie); [`Auth`] verifies it against trusted
//! public keys (`jwks.rs`, `jwt.rs`) and names the [`Principal`]. `mint.rs`
//! signs tokens with the data directory's own key for small sites and tests.
//! What a principal may see is `access`; the audit of each read is `read`.

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

mod jwks;
mod jwt;
pub mod mint;

use std::path::PathBuf;

use axum::http::{header, HeaderMap};

use crate::config::{Config, JwksSource};

/// The cookie the web page's sign-in form sets (HttpOnly, Secure,
/// SameSite=Strict) and [`Auth::authenticate`] reads when there is no
/// `Authorization` header.
pub const COOKIE: &str = "recordhub_token";

/// Why a request carries no acceptable token (HTTP 401). The text says what
/// was wrong with the token, never anything about a patient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header and no sign-in cookie.
    #[error("no bearer token: send Authorization: Bearer <token> (`recordhub token mint` makes one)")]
    Missing,
    /// Not a JWT, or claims of the wrong type.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `none`, any HS*, an algorithm not in `[auth] algorithms`, or one that does not fit the key.
    #[error("signature algorithm '{0}' is not accepted")]
    Algorithm(String),
    /// No trusted key has the token's key id (or fits its algorithm).
    #[error("signed by a key this server does not trust")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token has expired: sign in again")]
    Expired,
    #[error("the token is not valid yet (check the clocks)")]
    NotYetValid,
    #[error("the token's issuer is not the one configured ([auth] issuer)")]
    WrongIssuer,
    #[error("the token is for another audience ([auth] audience)")]
    WrongAudience,
    /// A registered claim (`exp`, `iss`, `aud`) or a configured user, role
    /// or organisation claim is missing or empty.
    #[error("the token has no '{0}' claim")]
    MissingClaim(String),
}

impl AuthError {
    /// `missing` or `rejected`: the audit's and the HTTP body's first word.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            _ => "rejected",
        }
    }
}

/// Why tokens cannot be checked at all (start-up stops).
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The local signing key cannot be created or read.
    #[error("{}: the local token signing key: {reason} (fix or remove the file; a new one is created when missing)", path.display())]
    LocalKey { path: PathBuf, reason: String },
    /// A JWKS file or URL is unusable.
    #[error("JWKS {origin}: {reason} (check [auth] jwks_file / jwks_url)")]
    Jwks { origin: String, reason: String },
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

/// Verifies bearer tokens against the trusted keys (see `config::AuthConfig`).
pub struct Auth {
    verifier: jwt::Verifier,
    /// The local key and the JWKS file: fixed until restart.
    fixed: jwks::KeySet,
    remote: Option<jwks::Remote>,
}

impl Auth {
    /// Loads the trusted keys: the data directory's own key (created when
    /// missing) unless `trust_local_key = false`, and the JWKS file or URL.
    ///
    /// # Errors
    /// The local key cannot be created or read, or the JWKS cannot be read,
    /// fetched or holds no usable key.
    pub fn open(cfg: &Config) -> Result<Auth, AuthSetupError> {
        let a = &cfg.auth;
        let mut fixed = jwks::KeySet::default();
        if a.trust_local_key {
            fixed.push(mint::LocalKey::load_or_create(&cfg.store.data_dir)?.verifier());
        }
        let mut remote = None;
        match &a.jwks {
            Some(JwksSource::File(path)) => {
                for key in jwks::load_file(path)?.into_keys() {
                    fixed.push(key);
                }
            }
            Some(JwksSource::Url(url)) => remote = Some(jwks::Remote::open(url)?),
            None => {}
        }
        tracing::info!(
            local_key = a.trust_local_key,
            keys = fixed.len(),
            jwks_url = remote.is_some(),
            "token verification ready"
        );
        Ok(Auth { verifier: jwt::Verifier::new(a), fixed, remote })
    }

    /// The principal of a request: `Authorization: Bearer …` first, else
    /// the [`COOKIE`]. With a JWKS URL, a token naming an unknown key id may
    /// block (up to 5 s, at most once a minute) while the keys are fetched
    /// again; call it from a blocking context or accept that pause.
    ///
    /// # Errors
    /// No token, or one that fails any check; the error says which.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        self.verify(token(headers).ok_or(AuthError::Missing)?)
    }

    /// Verifies one token.
    ///
    /// # Errors
    /// As [`Auth::authenticate`].
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let head = self.verifier.head(token)?;
        if let Some(key) = self.fixed.find(head.kid.as_deref(), head.alg) {
            return self.verifier.verify(token, &head, key);
        }
        let Some(remote) = &self.remote else { return Err(AuthError::UnknownKey) };
        let keys = remote.keys();
        if let Some(key) = keys.find(head.kid.as_deref(), head.alg) {
            return self.verifier.verify(token, &head, key);
        }
        // A key id we have not seen: the IdP may have rotated its keys.
        if head.kid.is_some() && remote.refresh() {
            if let Some(key) = remote.keys().find(head.kid.as_deref(), head.alg) {
                return self.verifier.verify(token, &head, key);
            }
        }
        Err(AuthError::UnknownKey)
    }

    /// Whether [`Auth::authenticate`] may block on a JWKS fetch (a JWKS URL
    /// is configured): async callers then run it on the blocking pool.
    pub fn may_fetch(&self) -> bool {
        self.remote.is_some()
    }

    /// For the audit of a refused request: the token's user claim marked
    /// `unverified:`, or empty.
    pub fn unverified_user(&self, headers: &HeaderMap) -> String {
        token(headers).map(|t| self.verifier.unverified_user(t)).unwrap_or_default()
    }
}

/// The bearer token of a request: the `Authorization` header, else the cookie.
pub fn token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, rest) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
    });
    if let Some(t) = bearer.filter(|t| !t.is_empty()) {
        return Some(t);
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests;
