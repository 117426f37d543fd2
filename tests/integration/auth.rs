//! Issue 11: who may read. Bearer tokens on every record read and every
//! admin endpoint; refused attempts audited; each role of the shipped access
//! file sees exactly its categories; break-glass recorded as such; an
//! external identity provider's JWKS trusted instead of the local key.

use std::collections::BTreeSet;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use recordhub::audit::{AuditEvent, AuditLog};
use recordhub::auth::mint::{self, LocalKey, MintRequest};
use serde_json::{json, Value};

use crate::common::{code, config, http_as, token, Engine};

const NHS: &str = "9434765919";
const UNKNOWN: &str = "9449305552";

// The same patient's admission (with an allergy) and lab result as the
// records tests.
use crate::records::{lab_result as result, pas_admit as admit};

/// An engine holding one patient with an allergy, a result and a document.
async fn engine_with_record(data: &Path) -> (Engine, String) {
    let e = Engine::start(config(data)).await;
    let base = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&admit("ADT1")).await), "AA");
    assert_eq!(code(&c.call(&result("LAB1")).await), "AA");
    let mdm = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/mdm-t02.hl7")).unwrap();
    assert_eq!(code(&c.call(&mdm).await), "CA");
    (e, base)
}

async fn get_with(url: String, headers: Vec<(&'static str, String)>) -> (u16, Option<String>, String) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut req = agent.get(&url);
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let mut r = req.call().expect("HTTP answers");
        let challenge = r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_string);
        (r.status().as_u16(), challenge, r.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .unwrap()
}

fn events(data: &Path) -> Vec<AuditEvent> {
    AuditLog::open(data).expect("audit log opens").events().expect("audit log reads")
}

fn kinds(body: &str) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(body).expect("JSON record");
    v["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap().to_string()).collect()
}

/// Tokens that must all be refused, each with the reason it is wrong.
fn bad_tokens(data: &Path) -> Vec<(&'static str, String)> {
    let cfg = config(data);
    let key = LocalKey::load_or_create(data).unwrap();
    let req = MintRequest {
        user: "mallory".into(),
        role: "clinician".into(),
        org: "RJ1".into(),
        lifetime: std::time::Duration::from_secs(600),
    };
    let now = mint::now_secs();
    let good = mint::claims(&cfg, &req, now);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        key.sign(&c).unwrap()
    };
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&good));
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(key.kid.clone());
    let hs256 = jsonwebtoken::encode(&hs, &good, &EncodingKey::from_secret(key.public_key())).unwrap();
    let signed = key.sign(&good).unwrap();
    let parts: Vec<&str> = signed.split('.').collect();
    let mut forged = good.clone();
    forged["sub"] = json!("dr.someone.else");
    let tampered = format!("{}.{}.{}", parts[0], b64(&forged), parts[2]);
    vec![
        ("expired", with("exp", json!(now - 3600))),
        ("wrong issuer", with("iss", json!("https://evil.example"))),
        ("wrong audience", with("aud", json!("another-service"))),
        ("alg none", none),
        ("HS256 keyed with the public key", hs256),
        ("tampered", tampered),
        ("not a JWT", "hello".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_get_401_with_nothing_about_the_patient_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (e, base) = engine_with_record(dir.path()).await;
    let (status, challenge, known) = get_with(format!("{base}/patients/{NHS}"), vec![]).await;
    assert_eq!((status, challenge.as_deref()), (401, Some("Bearer")), "{known}");
    let (status, _, unknown) = get_with(format!("{base}/patients/{UNKNOWN}"), vec![]).await;
    assert_eq!(status, 401);
    assert_eq!(known, unknown, "the same answer for a known and an unknown patient");
    assert!(known.contains("authentication required"), "{known}");
    let cases = bad_tokens(dir.path());
    for (why, t) in &cases {
        let (status, challenge, body) =
            get_with(format!("{base}/patients/{NHS}"), vec![("Authorization", format!("Bearer {t}"))]).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert!(challenge.unwrap_or_default().starts_with("Bearer"), "{why}");
        assert!(body.contains("token rejected"), "{why}: {body}");
        assert!(!body.contains("SMITH") && !body.contains("items"), "{why}: nothing about the patient: {body}");
    }
    // The history too.
    assert_eq!(get_with(format!("{base}/patients/{NHS}/history"), vec![]).await.0, 401);
    e.stop().await;

    let refused: Vec<AuditEvent> =
        events(dir.path()).into_iter().filter(|ev| ev.outcome == "unauthenticated").collect();
    assert_eq!(refused.len(), 2 + cases.len() + 1, "every refusal is a line: {refused:#?}");
    for ev in &refused {
        assert!(ev.client.starts_with("127.0.0.1:"), "the client address: {ev:?}");
        assert!(ev.role.is_empty() && ev.categories.is_empty() && ev.items.is_empty(), "{ev:?}");
        assert!(!ev.reason.is_empty(), "says why: {ev:?}");
        assert!(
            ev.user.is_empty() || ev.user.starts_with("unverified:"),
            "never an unverified name as the user: {ev:?}"
        );
    }
    assert_eq!(refused[0].nhs_number.as_deref(), Some(NHS));
    assert_eq!(refused[0].action, "read");
    assert!(refused.iter().any(|ev| ev.user == "unverified:mallory"));
    assert!(refused.iter().any(|ev| ev.reason.contains("expired")));
    assert!(refused.iter().any(|ev| ev.reason.contains("'none'")));
    assert!(refused.iter().any(|ev| ev.reason.contains("'HS256'")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_in_the_shipped_access_file_sees_exactly_its_categories() {
    let dir = tempfile::tempdir().unwrap();
    let (e, base) = engine_with_record(dir.path()).await;
    let url = format!("{base}/patients/{NHS}");
    let as_role = |role: &str| http_as("GET", url.clone(), token(dir.path(), "u1", role));
    let (status, all) = as_role("clinician").await;
    assert_eq!(status, 200, "{all}");
    let all = kinds(&all);
    for k in ["patient", "encounter", "allergy", "result", "document"] {
        assert!(all.contains(k), "the clinician sees {k}: {all:?}");
    }
    assert_eq!(kinds(&as_role("nurse").await.1), all);
    let social: BTreeSet<String> =
        ["patient", "identifier", "gp_registration", "contact", "encounter", "document"].map(String::from).into();
    let (status, body) = as_role("social_care").await;
    assert_eq!(status, 200);
    assert_eq!(kinds(&body), all.intersection(&social).cloned().collect(), "{body}");
    assert!(!body.contains("Haemoglobin") && !body.contains("PENICILLIN"), "no result, no allergy: {body}");
    for role in ["admin", "ig_officer", "porter"] {
        let (status, body) = as_role(role).await;
        assert_eq!(status, 403, "{role}: {body}");
        assert!(!body.contains("SMITH"), "{body}");
    }
    e.stop().await;
    let ev = events(dir.path());
    let social_read = ev.iter().find(|e| e.role == "social_care").unwrap();
    assert!(!social_read.categories.contains(&"result".to_string()), "{social_read:?}");
    assert_eq!((social_read.user.as_str(), social_read.org.as_str()), ("u1", "RJ1"));
    let porter = ev.iter().find(|e| e.role == "porter").unwrap();
    assert_eq!(porter.outcome, "forbidden", "a role not listed: refused and audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_glass_read_is_recorded_with_its_reason_and_needs_one() {
    let dir = tempfile::tempdir().unwrap();
    let (e, base) = engine_with_record(dir.path()).await;
    let t = token(dir.path(), "dr.ed", "clinician");
    let (status, body) =
        http_as("GET", format!("{base}/patients/{NHS}?purpose=break_glass&reason=unconscious%20in%20ED"), t.clone())
            .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_as("GET", format!("{base}/patients/{NHS}?purpose=break_glass"), t.clone()).await;
    assert_eq!(status, 400, "no reason: {body}");
    assert!(body.contains("reason"), "{body}");
    let (status, _) = http_as("GET", format!("{base}/patients/{NHS}"), t).await;
    assert_eq!(status, 200);
    e.stop().await;
    let reads: Vec<AuditEvent> = events(dir.path()).into_iter().filter(|e| e.user == "dr.ed").collect();
    assert_eq!(reads.len(), 2, "the refused request showed nothing and read nothing: {reads:#?}");
    assert!(reads[0].break_glass && reads[0].purpose == "break_glass", "{:?}", reads[0]);
    assert_eq!(reads[0].reason, "unconscious in ED");
    assert!(!reads[1].break_glass && reads[1].purpose == "direct_care", "{:?}", reads[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_refuse_no_token_with_401_and_a_non_admin_with_403() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let base = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    let clinician = token(dir.path(), "dr.jones", "clinician");
    let admin = token(dir.path(), "ops", "admin");
    let endpoints = [
        ("POST", "/admin/reload"),
        ("GET", "/admin/parked"),
        ("GET", "/admin/conflicts"),
        ("GET", "/admin/objections"),
        ("GET", "/admin/objections/log"),
    ];
    for (method, path) in endpoints {
        let url = format!("{base}{path}");
        assert_eq!(http_as(method, url.clone(), String::new()).await.0, 401, "{method} {path} without a token");
        assert_eq!(http_as(method, url.clone(), clinician.clone()).await.0, 403, "{method} {path} as a clinician");
        let (status, body) = http_as(method, url, admin.clone()).await;
        assert_eq!(status, 200, "{method} {path} as admin: {body}");
    }
    // The CLI against the server: refused without a token, with a hint.
    let out = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_recordhub"))
                .args(["objection", "list", "--server", &base])
                .env_remove("RECORDHUB_TOKEN")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RECORDHUB_TOKEN"), "{out:?}");
    e.stop().await;
    let refused = events(dir.path()).into_iter().filter(|e| e.action == "admin").count();
    assert_eq!(refused, 2 * endpoints.len() + 1, "each refusal audited (the CLI's too)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_providers_jwks_file_is_trusted_and_the_local_key_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The IdP's key pair (P-256), published as a JWKS.
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw();
    assert_eq!((point.len(), point[0]), (65, 4), "an uncompressed P-256 point");
    let jwks = json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "idp-1",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    }]});
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let mut cfg = config(&data);
    cfg.auth.jwks = Some(recordhub::config::JwksSource::File(jwks_file));
    cfg.auth.trust_local_key = false;
    cfg.auth.issuer = "https://idp.example.nhs.uk".into();
    cfg.auth.audience = "recordhub-rj1".into();
    cfg.auth.user_claim = "uid".into();
    cfg.auth.role_claim = "roles".into();
    let e = Engine::start(cfg).await;
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(&admit("ADT1")).await), "AA");
    let url = format!("http://{}/patients/{NHS}", e.running.as_ref().unwrap().http_addr);

    let now = mint::now_secs();
    let claims = json!({
        "iss": "https://idp.example.nhs.uk", "aud": ["recordhub-rj1", "other"], "exp": now + 300, "iat": now,
        "sub": "opaque-123", "uid": "555123456789", "roles": ["social_care", "clinician"], "org": "RJ1",
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("idp-1".into());
    let idp_token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&pair.serialize_der())).unwrap();
    let (status, body) = http_as("GET", url.clone(), idp_token).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("PENICILLIN"), "the first role listed (social care) is the one in use: {body}");

    // `token mint` still makes tokens, but this engine does not trust them.
    let local = token(&data, "dr.jones", "clinician");
    let (status, body) = http_as("GET", url, local).await;
    assert_eq!(status, 401, "{body}");
    e.stop().await;
    let ev = events(&data);
    assert!(ev.iter().any(|e| e.user == "555123456789" && e.role == "social_care" && e.outcome == "shown"), "{ev:#?}");
    assert!(ev.iter().any(|e| e.outcome == "unauthenticated"), "{ev:#?}");
}
