//! Tokens for small sites and tests: an Ed25519 key held in the data
//! directory (`<data>/auth/signing-key.pem`, 0600 in a 0700 directory,
//! created on first use) signs them; the engine trusts that key unless
//! `[auth] trust_local_key = false`.
//!
//! Whoever can read the key can mint any role: it is as sensitive as the
//! data directory itself, and no more.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::json;

use super::jwks::Key;
use super::AuthSetupError;
use crate::config::Config;

/// The key file's name under `<data>/auth/`.
pub const KEY_FILE: &str = "signing-key.pem";
const PEM_TAG: &str = "PRIVATE KEY";

/// Where the local signing key lives.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("auth").join(KEY_FILE)
}

/// The data directory's signing key.
pub struct LocalKey {
    pkcs8: Vec<u8>,
    public: Vec<u8>,
    /// `local-` and the first 8 bytes of the public key's SHA-256, in hex.
    pub kid: String,
}

fn setup_err(path: &Path, e: impl std::fmt::Display) -> AuthSetupError {
    AuthSetupError::LocalKey { path: path.to_path_buf(), reason: e.to_string() }
}

impl LocalKey {
    /// Reads the key, creating it (0600) when missing.
    ///
    /// # Errors
    /// The directory or file cannot be created or read, or the file is not
    /// an Ed25519 PKCS#8 key.
    pub fn load_or_create(data_dir: &Path) -> Result<LocalKey, AuthSetupError> {
        let path = key_path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => return LocalKey::parse(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(setup_err(&path, e)),
        }
        create(&path)?;
        let bytes = std::fs::read(&path).map_err(|e| setup_err(&path, e))?;
        LocalKey::parse(&path, &bytes)
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<LocalKey, AuthSetupError> {
        let pem = pem::parse(bytes).map_err(|e| setup_err(path, format!("not a PEM file: {e}")))?;
        let pair = Ed25519KeyPair::from_pkcs8(pem.contents())
            .map_err(|e| setup_err(path, format!("not an Ed25519 PKCS#8 key: {e}")))?;
        let public = pair.public_key().as_ref().to_vec();
        let digest = ring::digest::digest(&ring::digest::SHA256, &public);
        let kid = format!("local-{}", digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect::<String>());
        Ok(LocalKey { pkcs8: pem.contents().to_vec(), public, kid })
    }

    /// The raw Ed25519 public key (32 bytes).
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The verifying half, for the engine's key set.
    pub(crate) fn verifier(&self) -> Key {
        Key { kid: Some(self.kid.clone()), algs: vec![Algorithm::EdDSA], key: DecodingKey::from_ed_der(&self.public) }
    }

    /// Signs `claims` (any JSON object) with this key.
    ///
    /// # Errors
    /// The claims cannot be serialized or signed.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, AuthSetupError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&self.pkcs8))
            .map_err(|e| AuthSetupError::Sign(e.to_string()))
    }
}

/// Writes a new key without ever replacing one (two processes starting at
/// once both end up with the first one written).
fn create(path: &Path) -> Result<(), AuthSetupError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| setup_err(dir, e))?;
    restrict(dir, 0o700).map_err(|e| setup_err(dir, e))?;
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| setup_err(path, e))?;
    let text = pem::encode(&pem::Pem::new(PEM_TAG, doc.as_ref().to_vec()));
    let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts.open(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created the local token signing key");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(setup_err(path, e)),
    }
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// What `recordhub token mint` signs.
#[derive(Debug, Clone)]
pub struct MintRequest {
    pub user: String,
    pub role: String,
    /// ODS code.
    pub org: String,
    pub lifetime: Duration,
}

/// Mints a token with the data directory's key, carrying the configured
/// issuer, audience and claim names.
///
/// # Errors
/// The key cannot be read or created.
pub fn mint(cfg: &Config, req: &MintRequest) -> Result<String, AuthSetupError> {
    let key = LocalKey::load_or_create(&cfg.store.data_dir)?;
    key.sign(&claims(cfg, req, now_secs()))
}

/// The claims of a minted token, issued at `now` (Unix seconds).
pub fn claims(cfg: &Config, req: &MintRequest, now: i64) -> serde_json::Value {
    let a = &cfg.auth;
    let mut c = json!({
        "iss": a.issuer,
        "aud": a.audience,
        "iat": now,
        "exp": now + req.lifetime.as_secs() as i64,
    });
    // Set last: a claim named `sub` (the default user claim) goes in as is.
    c[&a.user_claim] = json!(req.user);
    c[&a.role_claim] = json!(req.role);
    c[&a.org_claim] = json!(req.org);
    c
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
