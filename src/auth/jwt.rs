//! Verifying one bearer token: its header first (the algorithm must be on
//! the allow-list and fit the key named by `kid`), then signature, issuer,
//! audience, expiry and not-before (with a small leeway), then the claims
//! that name the user, role and organisation.
//!
//! The header is read before `jsonwebtoken` sees the token so that `none`
//! and every HS* algorithm are refused by name: an HMAC keyed with a public
//! key proves nothing, and is never attempted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::jwks::Key;
use super::{AuthError, Principal};
use crate::config::AuthConfig;

/// Longer tokens are refused unread (a real ID token is 1–3 kB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// An unverified user name copied into the audit of a refusal is cut here.
const MAX_UNVERIFIED_CHARS: usize = 64;

/// Checks tokens against the configured issuer, audience and algorithms.
pub(crate) struct Verifier {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    user_claim: String,
    role_claim: String,
    org_claim: String,
    leeway_secs: u64,
}

/// What the header says, once its algorithm is allowed.
pub(crate) struct Head {
    pub(crate) kid: Option<String>,
    pub(crate) alg: Algorithm,
}

impl Verifier {
    pub(crate) fn new(cfg: &AuthConfig) -> Verifier {
        let algorithms = cfg.algorithms.iter().filter_map(|a| a.parse().ok()).filter(|a| !is_hmac(*a)).collect();
        Verifier {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            algorithms,
            user_claim: cfg.user_claim.clone(),
            role_claim: cfg.role_claim.clone(),
            org_claim: cfg.org_claim.clone(),
            leeway_secs: cfg.leeway.as_secs(),
        }
    }

    /// Reads the header and refuses an algorithm not on the allow-list.
    pub(crate) fn head(&self, token: &str) -> Result<Head, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed("token too long".into()));
        }
        let header =
            part(token, 0).ok_or_else(|| AuthError::Malformed("not a JWT (header.payload.signature)".into()))?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let parsed: Option<Algorithm> = alg.parse().ok();
        match parsed {
            Some(a) if self.algorithms.contains(&a) && !is_hmac(a) => {}
            _ => return Err(AuthError::Algorithm(alg.chars().take(16).collect())),
        }
        let kid = header.get("kid").and_then(Value::as_str).map(str::to_string);
        // Checked just above: `parsed` is `Some` on this path.
        Ok(Head { kid, alg: parsed.unwrap_or(Algorithm::EdDSA) })
    }

    /// Verifies signature and registered claims with `key`, then reads the
    /// user, role and organisation.
    pub(crate) fn verify(&self, token: &str, head: &Head, key: &Key) -> Result<Principal, AuthError> {
        if !key.algs.contains(&head.alg) {
            return Err(AuthError::Algorithm(format!("{:?}", head.alg)));
        }
        let mut v = Validation::new(head.alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = self.leeway_secs;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
            ErrorKind::InvalidAlgorithm => AuthError::Algorithm(format!("{:?}", head.alg)),
            _ => AuthError::Malformed("the token could not be decoded".into()),
        })?;
        let claims = data.claims;
        let text = |name: &str| -> Result<String, AuthError> {
            let value = match claims.get(name) {
                // CIS2-style role claims are lists: the first is the role in use.
                Some(Value::Array(list)) => list.first().and_then(Value::as_str),
                Some(v) => v.as_str(),
                None => None,
            };
            value
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or(AuthError::MissingClaim(name.into()))
        };
        Ok(Principal { user: text(&self.user_claim)?, role: text(&self.role_claim)?, org: text(&self.org_claim)? })
    }

    /// The user claim of a token that was refused, marked as unverified, for
    /// the audit of the refusal; empty when there is none.
    pub(crate) fn unverified_user(&self, token: &str) -> String {
        let Some(claims) = part(token, 1) else { return String::new() };
        match claims.get(&self.user_claim).and_then(Value::as_str) {
            Some(user) => {
                let clean: String = user.chars().filter(|c| !c.is_control()).take(MAX_UNVERIFIED_CHARS).collect();
                format!("unverified:{clean}")
            }
            None => String::new(),
        }
    }
}

fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The `i`th dot-separated part of a JWT, base64url-decoded as a JSON object.
fn part(token: &str, i: usize) -> Option<Map<String, Value>> {
    let text = token.split('.').nth(i)?;
    let bytes = URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}
