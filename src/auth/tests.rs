use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::mint::{self, LocalKey, MintRequest};
use super::*;

fn setup() -> (tempfile::TempDir, Config, Auth) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.store.data_dir = dir.path().to_path_buf();
    let auth = Auth::open(&cfg).expect("auth opens with the local key");
    (dir, cfg, auth)
}

fn req(role: &str) -> MintRequest {
    MintRequest { user: "dr.jones".into(), role: role.into(), org: "RJ1".into(), lifetime: Duration::from_secs(600) }
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    h
}

#[test]
fn a_minted_token_names_its_user_role_and_organisation() {
    let (_dir, cfg, auth) = setup();
    let token = mint::mint(&cfg, &req("nurse")).unwrap();
    let who = auth.authenticate(&bearer(&token)).unwrap();
    assert_eq!(who, Principal { user: "dr.jones".into(), role: "nurse".into(), org: "RJ1".into() });
}

#[test]
fn the_cookie_is_read_when_there_is_no_authorization_header() {
    let (_dir, cfg, auth) = setup();
    let token = mint::mint(&cfg, &req("nurse")).unwrap();
    let mut h = HeaderMap::new();
    h.insert(header::COOKIE, HeaderValue::from_str(&format!("theme=dark; {COOKIE}={token}")).unwrap());
    assert_eq!(auth.authenticate(&h).unwrap().role, "nurse");
    assert_eq!(auth.authenticate(&HeaderMap::new()), Err(AuthError::Missing));
}

#[test]
fn expired_wrong_issuer_wrong_audience_and_missing_role_are_refused() {
    let (dir, cfg, auth) = setup();
    let key = LocalKey::load_or_create(dir.path()).unwrap();
    let now = mint::now_secs();
    let base = mint::claims(&cfg, &req("nurse"), now);
    let with = |k: &str, v: serde_json::Value| {
        let mut c = base.clone();
        c[k] = v;
        key.sign(&c).unwrap()
    };
    assert_eq!(auth.verify(&with("exp", json!(now - 3600))), Err(AuthError::Expired));
    assert_eq!(auth.verify(&with("iss", json!("evil"))), Err(AuthError::WrongIssuer));
    assert_eq!(auth.verify(&with("aud", json!("other"))), Err(AuthError::WrongAudience));
    assert_eq!(auth.verify(&with("role", json!(""))), Err(AuthError::MissingClaim("role".into())));
    // Within the leeway an expiry a few seconds past still passes (clock skew).
    assert!(auth.verify(&with("exp", json!(now - 5))).is_ok());
}

#[test]
fn alg_none_and_hs256_keyed_with_the_public_key_are_refused_by_name() {
    let (dir, cfg, auth) = setup();
    let key = LocalKey::load_or_create(dir.path()).unwrap();
    let claims = mint::claims(&cfg, &req("clinician"), mint::now_secs());
    let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some(key.kid.clone());
    let hs = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(key.public_key())).unwrap();
    assert_eq!(auth.verify(&hs), Err(AuthError::Algorithm("HS256".into())));
    use base64::Engine;
    let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims));
    assert_eq!(auth.verify(&none), Err(AuthError::Algorithm("none".into())));
}

#[test]
fn a_tampered_payload_fails_the_signature() {
    let (_dir, cfg, auth) = setup();
    let token = mint::mint(&cfg, &req("social_care")).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = json!("clinician");
    let forged = format!("{}.{}.{}", parts[0], engine.encode(claims.to_string()), parts[2]);
    assert_eq!(auth.verify(&forged), Err(AuthError::BadSignature));
    assert_eq!(auth.unverified_user(&bearer(&forged)), "unverified:dr.jones");
}

#[test]
fn a_key_from_another_data_directory_is_not_trusted() {
    let (_dir, _cfg, auth) = setup();
    let (_other, other_cfg, _) = setup();
    let token = mint::mint(&other_cfg, &req("nurse")).unwrap();
    assert_eq!(auth.verify(&token), Err(AuthError::UnknownKey));
}

#[cfg(unix)]
#[test]
fn the_signing_key_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _cfg, _auth) = setup();
    let file = std::fs::metadata(mint::key_path(dir.path())).unwrap().permissions().mode();
    let parent = std::fs::metadata(dir.path().join("auth")).unwrap().permissions().mode();
    assert_eq!((file & 0o777, parent & 0o777), (0o600, 0o700));
}

/// A one-route HTTP server on loopback serving `body` (swappable) and
/// counting requests; it stops after 20 connections.
fn jwks_server(
    body: std::sync::Arc<std::sync::Mutex<String>>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let served = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut s) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = body.lock().unwrap().clone();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).and_then(|()| s.write_all(body.as_bytes()));
        }
    });
    (url, count)
}

/// A P-256 key pair: (PKCS#8 for signing, the JWKS entry).
fn p256(kid: &str) -> (Vec<u8>, serde_json::Value) {
    use base64::Engine;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap().as_ref().to_vec();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
    let point = pair.public_key().as_ref();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwk =
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..])});
    (pkcs8, jwk)
}

#[test]
fn a_jwks_url_is_fetched_at_start_and_on_an_unknown_key_id_at_most_once_a_minute() {
    use std::sync::atomic::Ordering::SeqCst;
    let (old_key, old_jwk) = p256("2026-a");
    let (new_key, new_jwk) = p256("2026-b");
    let body = std::sync::Arc::new(std::sync::Mutex::new(json!({"keys": [old_jwk]}).to_string()));
    let (url, fetches) = jwks_server(body.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.store.data_dir = dir.path().to_path_buf();
    cfg.auth.jwks = Some(crate::config::JwksSource::Url(url));
    cfg.auth.trust_local_key = false;
    let auth = Auth::open(&cfg).unwrap();
    assert_eq!(fetches.load(SeqCst), 1, "fetched at start-up");
    let sign = |pkcs8: &[u8], kid: &str| {
        let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some(kid.into());
        let claims = mint::claims(&cfg, &req("nurse"), mint::now_secs());
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(pkcs8)).unwrap()
    };
    assert!(auth.verify(&sign(&old_key, "2026-a")).is_ok());
    // The IdP rotates its key. Within a minute of the last fetch, no refetch.
    *body.lock().unwrap() = json!({"keys": [new_jwk]}).to_string();
    let rotated = sign(&new_key, "2026-b");
    assert_eq!(auth.verify(&rotated), Err(AuthError::UnknownKey));
    assert_eq!(fetches.load(SeqCst), 1, "rate-limited");
    // A minute on, the unknown key id fetches the keys again.
    auth.remote.as_ref().unwrap().age(Duration::from_secs(61));
    assert!(auth.verify(&rotated).is_ok());
    assert_eq!(fetches.load(SeqCst), 2);
    // Made-up key ids straight after: refused without asking the IdP again.
    for i in 0..5 {
        assert_eq!(auth.verify(&sign(&new_key, &format!("made-up-{i}"))), Err(AuthError::UnknownKey));
    }
    assert_eq!(fetches.load(SeqCst), 2, "a client cannot make us hammer the IdP");
}
