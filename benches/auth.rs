//! Issue 11: what verifying a bearer token costs per request, to set beside a
//! record lookup (`benches/lookup.rs`): `Auth::authenticate` on a token
//! signed with the local Ed25519 key, and on an ES256 token from a JWKS-file
//! identity provider. Correctness is asserted once before timing.
//!
//! ```text
//! cargo bench --bench auth
//! ```

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use recordhub::auth::mint::{self, MintRequest};
use recordhub::auth::Auth;
use recordhub::config::{Config, JwksSource};
use serde_json::json;

fn headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).expect("ASCII token"));
    h
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = Config::default();
    cfg.store.data_dir = dir.path().join("data");
    let req = MintRequest {
        user: "dr.jones".into(),
        role: "clinician".into(),
        org: "RJ1".into(),
        lifetime: Duration::from_secs(3600),
    };

    // The local key (the default set-up).
    let local = Auth::open(&cfg).expect("auth opens");
    let eddsa = headers(&mint::mint(&cfg, &req).expect("minted"));
    assert_eq!(local.authenticate(&eddsa).expect("verifies").user, "dr.jones");

    // An identity provider's P-256 key, from a JWKS file.
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key pair");
    let point = pair.public_key_raw();
    let jwks = json!({ "keys": [{ "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "idp-1",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]) }]});
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks.to_string()).expect("JWKS written");
    let mut idp_cfg = cfg.clone();
    idp_cfg.auth.jwks = Some(JwksSource::File(file));
    idp_cfg.auth.trust_local_key = false;
    let idp = Auth::open(&idp_cfg).expect("auth opens");
    let mut head = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    head.kid = Some("idp-1".into());
    let claims = mint::claims(&idp_cfg, &req, mint::now_secs());
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der());
    let es256 = headers(&jsonwebtoken::encode(&head, &claims, &key).expect("signed"));
    assert_eq!(idp.authenticate(&es256).expect("verifies").role, "clinician");

    let mut g = c.benchmark_group("authenticate");
    g.throughput(Throughput::Elements(1));
    g.bench_function("eddsa_local_key", |b| b.iter(|| local.authenticate(&eddsa)));
    g.bench_function("es256_jwks_file", |b| b.iter(|| idp.authenticate(&es256)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
