//! `[auth]`: who may read. Bearer tokens (JWTs) verified against a JWKS
//! file or URL, the local signing key `recordhub token mint` uses, the
//! claims that name user, role and organisation, and the access file.
//!
//! With no `[auth]` keys at all the engine trusts exactly its own local key
//! (`<data>/auth/signing-key.pem`), so a fresh install is secure by default
//! and tokens from `recordhub token mint` work.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::{resolve_path, Validator};

/// Algorithms accepted when `[auth] algorithms` is not set.
pub const DEFAULT_ALGORITHMS: &[&str] = &["RS256", "ES256", "EdDSA"];

/// Asymmetric algorithms a token may be signed with. `none` and HS* are never
/// accepted: an HMAC "signed" with a public key proves nothing.
pub const KNOWN_ALGORITHMS: &[&str] =
    &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// `[auth]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAuth {
    /// A JWKS file (the identity provider's public keys); relative to the config file's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// The identity provider's JWKS URL, fetched at start-up and again (at most once a
    /// minute) when a token names a key id it does not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (one of, when the token lists several).
    pub audience: String,
    /// Signature algorithms accepted; `none` and HS* are always refused.
    pub algorithms: Vec<String>,
    /// The claim naming the user.
    pub user_claim: String,
    /// The claim naming the role (a role in the access file).
    pub role_claim: String,
    /// The claim naming the user's organisation (ODS code).
    pub org_claim: String,
    /// Trust tokens signed with the data directory's own key (`recordhub token mint`).
    /// Unset: trusted when no JWKS is configured, not trusted when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_local_key: Option<bool>,
    /// Roles and what each sees; default `<mapping dir>/access.toml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_file: Option<PathBuf>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            jwks_file: None,
            jwks_url: None,
            issuer: "recordhub".into(),
            audience: "recordhub".into(),
            algorithms: DEFAULT_ALGORITHMS.iter().map(|a| a.to_string()).collect(),
            user_claim: "sub".into(),
            role_claim: "role".into(),
            org_claim: "org".into(),
            trust_local_key: None,
            access_file: None,
            leeway_secs: 30,
        }
    }
}

/// Where the identity provider's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Resolved path.
    File(PathBuf),
    Url(String),
}

/// Validated `[auth]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    pub jwks: Option<JwksSource>,
    pub issuer: String,
    pub audience: String,
    /// Names from [`KNOWN_ALGORITHMS`].
    pub algorithms: Vec<String>,
    pub user_claim: String,
    pub role_claim: String,
    pub org_claim: String,
    pub trust_local_key: bool,
    /// Resolved; `None` means `<mapping dir>/access.toml` (see [`super::Config::access_file`]).
    pub access_file: Option<PathBuf>,
    pub leeway: Duration,
}

pub(super) fn validate(raw: RawAuth, v: &mut Validator<'_>) -> AuthConfig {
    let jwks = match (raw.jwks_file, raw.jwks_url) {
        (Some(_), Some(url)) => {
            v.report("auth.jwks_url", format!("{url:?}"), "set jwks_file or jwks_url, not both");
            None
        }
        (Some(file), None) => Some(JwksSource::File(resolve_path(&file, v.origins.base_for("auth.jwks_file")))),
        (None, Some(url)) => {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                v.report("auth.jwks_url", format!("{url:?}"), "must be an http:// or https:// URL");
            }
            Some(JwksSource::Url(url))
        }
        (None, None) => None,
    };
    for alg in &raw.algorithms {
        if !KNOWN_ALGORITHMS.contains(&alg.as_str()) {
            let why = if alg.eq_ignore_ascii_case("none") || alg.to_ascii_uppercase().starts_with("HS") {
                "is never accepted (unsigned, or an HMAC anyone holding the public key could forge)".to_string()
            } else {
                format!("unknown algorithm; expected some of {}", KNOWN_ALGORITHMS.join(", "))
            };
            v.report("auth.algorithms", format!("{alg:?}"), why);
        }
    }
    if raw.algorithms.is_empty() {
        v.report("auth.algorithms", "[]".into(), "list at least one algorithm, e.g. [\"RS256\"]");
    }
    for (key, value) in [
        ("auth.issuer", &raw.issuer),
        ("auth.audience", &raw.audience),
        ("auth.user_claim", &raw.user_claim),
        ("auth.role_claim", &raw.role_claim),
        ("auth.org_claim", &raw.org_claim),
    ] {
        if value.trim().is_empty() {
            v.report(key, "\"\"".into(), "must not be empty");
        }
    }
    let trust_local_key = raw.trust_local_key.unwrap_or(jwks.is_none());
    if !trust_local_key && jwks.is_none() {
        v.report(
            "auth.trust_local_key",
            "false".into(),
            "no key would be trusted: set jwks_file or jwks_url, or trust the local key",
        );
    }
    let access_file = raw.access_file.map(|f| resolve_path(&f, v.origins.base_for("auth.access_file")));
    AuthConfig {
        jwks,
        issuer: raw.issuer,
        audience: raw.audience,
        algorithms: raw.algorithms,
        user_claim: raw.user_claim,
        role_claim: raw.role_claim,
        org_claim: raw.org_claim,
        trust_local_key,
        access_file,
        leeway: Duration::from_secs(raw.leeway_secs),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn load(text: &str) -> Result<crate::config::Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("engine.toml");
        std::fs::write(&file, text).unwrap();
        crate::config::load(Some(&file), &Default::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn hs256_and_none_are_refused_naming_the_line() {
        let err = load("[auth]\nalgorithms = [\"RS256\", \"HS256\", \"none\"]\n").unwrap_err();
        assert!(err.contains("engine.toml:2:1: auth.algorithms = \"HS256\": is never accepted"), "{err}");
        assert!(err.contains("auth.algorithms = \"none\""), "{err}");
    }

    #[test]
    fn a_jwks_file_turns_the_local_key_off_unless_asked_and_resolves_beside_the_config() {
        let cfg = load("[auth]\njwks_file = \"idp.json\"\n").unwrap();
        assert!(!cfg.auth.trust_local_key);
        match cfg.auth.jwks {
            Some(super::JwksSource::File(p)) => assert!(p.is_absolute() && p.ends_with(Path::new("idp.json"))),
            other => panic!("{other:?}"),
        }
        assert!(load("[auth]\njwks_file = \"a.json\"\ntrust_local_key = true\n").unwrap().auth.trust_local_key);
        let err = load("[auth]\ntrust_local_key = false\n").unwrap_err();
        assert!(err.contains("engine.toml:2:1: auth.trust_local_key = false: no key would be trusted"), "{err}");
    }

    #[test]
    fn a_misspelt_auth_key_names_its_position() {
        let err = load("[auth]\nissuer = \"x\"\naudiance = \"y\"\n").unwrap_err();
        assert!(err.contains("engine.toml:3:1") && err.contains("audiance"), "{err}");
    }
}
