//! The public keys tokens are verified with: the local signing key, a JWKS
//! file, or an identity provider's JWKS URL (fetched at start-up and again
//! when a token names a key id we do not hold, at most once a minute).
//!
//! Each key carries the algorithms it may verify, decided by its type (RSA,
//! EC curve, Ed25519) and its `alg` member: a token's `alg` must fit its key.
//! Symmetric (`oct`) keys are never loaded.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::AuthSetupError;

/// A JWKS URL is fetched again on a key-id miss at most this often.
const REFETCH_EVERY: Duration = Duration::from_secs(60);
/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One public key and the algorithms it may verify.
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    pub(crate) algs: Vec<Algorithm>,
    pub(crate) key: DecodingKey,
}

/// A set of keys.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    pub(crate) fn push(&mut self, key: Key) {
        self.keys.push(key);
    }

    pub(crate) fn into_keys(self) -> Vec<Key> {
        self.keys
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Parses a JWKS document; keys that cannot verify a signature
    /// (symmetric, unknown curve) are skipped with a warning.
    pub(crate) fn from_jwks(text: &str, origin: &str) -> Result<KeySet, AuthSetupError> {
        let set: JwkSet = serde_json::from_str(text)
            .map_err(|e| AuthSetupError::Jwks { origin: origin.into(), reason: format!("not a JWKS document: {e}") })?;
        let mut keys = KeySet::default();
        for jwk in &set.keys {
            match key_of(jwk) {
                Ok(k) => keys.push(k),
                Err(why) => tracing::warn!(origin, kid = ?jwk.common.key_id, why, "JWKS key skipped"),
            }
        }
        if keys.keys.is_empty() {
            return Err(AuthSetupError::Jwks { origin: origin.into(), reason: "holds no usable public key".into() });
        }
        Ok(keys)
    }

    /// The key for a token's `kid` and `alg`: by key id when the token names
    /// one, else the only key that fits the algorithm.
    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Key> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid) && k.algs.contains(&alg)),
            None => {
                let mut fits = self.keys.iter().filter(|k| k.algs.contains(&alg));
                let first = fits.next();
                if fits.next().is_some() {
                    None
                } else {
                    first
                }
            }
        }
    }
}

fn key_of(jwk: &Jwk) -> Result<Key, &'static str> {
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return Err("unsupported elliptic curve"),
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
        AlgorithmParameters::OctetKeyPair(_) => return Err("unsupported OKP curve"),
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are never trusted"),
    };
    let algs = match jwk.common.key_algorithm {
        None => family,
        Some(ka) => {
            let alg = algorithm_of(ka).ok_or("its alg is not an asymmetric signature algorithm")?;
            if !family.contains(&alg) {
                return Err("its alg does not fit its key type");
            }
            vec![alg]
        }
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "malformed key parameters")?;
    Ok(Key { kid: jwk.common.key_id.clone(), algs, key })
}

fn algorithm_of(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Reads a JWKS file.
pub(crate) fn load_file(path: &Path) -> Result<KeySet, AuthSetupError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| AuthSetupError::Jwks { origin: origin.clone(), reason: format!("cannot read: {e}") })?;
    KeySet::from_jwks(&text, &origin)
}

/// Fetches a JWKS URL.
fn fetch(url: &str) -> Result<KeySet, AuthSetupError> {
    let err = |reason: String| AuthSetupError::Jwks { origin: url.into(), reason };
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(FETCH_TIMEOUT)).build().into();
    let text = agent
        .get(url)
        .call()
        .and_then(|mut r| r.body_mut().with_config().limit(1 << 20).read_to_string())
        .map_err(|e| err(format!("cannot fetch: {e}")))?;
    KeySet::from_jwks(&text, url)
}

/// Keys behind a JWKS URL, refreshed on a key-id miss.
pub(crate) struct Remote {
    url: String,
    keys: RwLock<Arc<KeySet>>,
    last_fetch: Mutex<Instant>,
}

impl Remote {
    /// Fetches the keys once; start-up fails when the IdP cannot be reached.
    pub(crate) fn open(url: &str) -> Result<Remote, AuthSetupError> {
        let keys = fetch(url)?;
        tracing::info!(url, keys = keys.len(), "identity provider keys fetched");
        Ok(Remote { url: url.into(), keys: RwLock::new(Arc::new(keys)), last_fetch: Mutex::new(Instant::now()) })
    }

    /// Pretends the last fetch was `by` earlier (tests of the rate limit).
    #[cfg(test)]
    pub(crate) fn age(&self, by: Duration) {
        let mut last = self.last_fetch.lock().unwrap_or_else(|e| e.into_inner());
        *last = last.checked_sub(by).unwrap_or(*last);
    }

    pub(crate) fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetches again unless fetched within the last minute (a client sending
    /// made-up key ids cannot make us hammer the IdP). True when new keys
    /// were loaded.
    pub(crate) fn refresh(&self) -> bool {
        {
            let mut last = self.last_fetch.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < REFETCH_EVERY {
                return false;
            }
            *last = Instant::now();
        }
        match fetch(&self.url) {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "identity provider keys refreshed");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "identity provider keys could not be refreshed; the old keys stay");
                false
            }
        }
    }
}
