//! The professional's web view over HTTP: what a browser gets without a
//! token (nothing about any patient), the search indexes behind the search
//! form (hospital number, family name + date of birth, a rename), and with a
//! token: search, the record page, roles, break glass, objections, audit.

use std::process::Command;

use recordhub::audit::AuditLog;
use recordhub::store::Store;

use crate::common::{code, config, Engine};

const NHS: &str = "9434765919";

/// An admission for O'Brien, born 14/03/1982, hospital number RJ1-123456.
const ADT: &str = include_str!("../../fixtures/adt-a01.hl7");

/// The same patient, renamed (A08) at `when`.
fn rename(id: &str, when: &str, family: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|{when}||ADT^A08^ADT_A01|{id}|P|2.4\r\
         EVN|A08|{when}\r\
         PID|1||{NHS}^^^NHS^NH~RJ1-123456^^^RJ1^MR||{family}^SIOBHAN^MARY^^MRS||19820314|F|||||||||||||||||||||||NSTS01\r\
         PV1|1|I|RJ1WARD7^BED12^RJ1||||C3456^SMITH^JANE^^^DR||||||||||||V000123456^^^RJ1^VN\r"
    )
}

pub struct Reply {
    pub status: u16,
    pub location: String,
    pub set_cookie: String,
    pub body: String,
}

/// One request, redirects not followed. `form` is url-encoded into the body.
pub async fn call(
    method: &'static str,
    url: String,
    token: Option<String>,
    form: Vec<(&'static str, String)>,
) -> Reply {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        let with = |mut r: ureq::RequestBuilder<ureq::typestate::WithBody>| {
            if let Some(t) = &token {
                r = r.header("Cookie", &format!("recordhub_token={t}"));
            }
            r
        };
        let mut resp = match method {
            "GET" => {
                let mut r = agent.get(&url);
                if let Some(t) = &token {
                    r = r.header("Cookie", &format!("recordhub_token={t}"));
                }
                r.call()
            }
            _ => {
                let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                with(agent.post(&url)).send_form(pairs)
            }
        }
        .expect("HTTP request");
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let (location, set_cookie) = (header("location"), header("set-cookie"));
        Reply { status: resp.status().as_u16(), location, set_cookie, body: resp.body_mut().read_to_string().unwrap() }
    })
    .await
    .unwrap()
}

fn title(html: &str) -> &str {
    let start = html.find("<title>").map_or(0, |i| i + 7);
    let end = html.find("</title>").unwrap_or(start);
    &html[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_every_page_sends_the_browser_to_sign_in_and_shows_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let base = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    assert_eq!(code(&e.connect().await.call(ADT).await), "CA", "the fixture asks for enhanced-mode ACKs");

    let record = format!("{base}/record/{NHS}");
    let name = vec![("by", "name".to_string()), ("family", "O'Brien".to_string()), ("dob", "14/03/1982".into())];
    let attempts = [
        call("GET", format!("{base}/"), None, vec![]).await,
        call("GET", record.clone(), None, vec![]).await,
        call("GET", record.clone(), Some("not-a-token".into()), vec![]).await,
        call("POST", record.clone(), None, vec![("reason", "emergency".into())]).await,
        call("POST", format!("{base}/search"), None, name).await,
    ];
    for r in &attempts {
        assert_eq!((r.status, r.location.as_str()), (303, "/signin"));
        for secret in ["BRIEN", "SIOBHAN", "Penicillin", NHS, "RJ1-123456"] {
            assert!(!r.body.contains(secret), "{secret} leaked: {}", r.body);
        }
    }
    let signin = call("GET", format!("{base}/signin"), None, vec![]).await;
    assert_eq!(signin.status, 200);
    assert_eq!(title(&signin.body), "Sign in · recordhub");
    assert!(signin.body.contains("name=\"token\""));

    // A pasted token that does not verify: refused, no cookie set.
    let bad = call("POST", format!("{base}/signin"), None, vec![("token", "eyJhbGciOiJub25lIn0.e30.".into())]).await;
    assert_eq!(bad.status, 401);
    assert!(bad.set_cookie.is_empty(), "no cookie for a refused token: {}", bad.set_cookie);
    assert!(bad.body.contains("The token was refused"), "{}", bad.body);

    // Signing out clears the cookie with the same attributes.
    let out = call("POST", format!("{base}/signout"), None, vec![]).await;
    assert_eq!((out.status, out.location.as_str()), (303, "/signin"));
    assert!(out.set_cookie.starts_with("recordhub_token=;") && out.set_cookie.contains("Max-Age=0"));

    // The record page attempts are audited as refused, and nothing was shown.
    e.stop().await;
    let events = AuditLog::open(dir.path()).unwrap().events().unwrap();
    let refused: Vec<_> = events.iter().filter(|ev| ev.via == "web" && ev.outcome == "unauthenticated").collect();
    assert_eq!(refused.len(), 3, "{events:?}");
    assert!(refused.iter().all(|ev| ev.nhs_number.as_deref() == Some(NHS) && ev.items.is_empty()));
}

/// Regression (issue 11 search): a patient renamed by an A08 is found under
/// the new family name, and no longer under the old one (the search finds
/// what the record page shows); `reindex` rebuilds the same index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_patient_is_found_under_the_new_name_and_not_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let mut c = e.connect().await;
    assert_eq!(code(&c.call(ADT).await), "CA");
    assert_eq!(code(&c.call(&rename("REN1", "20261123090000", "WALSH")).await), "AA");
    // An older A08 arriving late does not undo the newer name.
    assert_eq!(code(&c.call(&rename("REN0", "20261122090000", "KELLY")).await), "AA");
    e.stop().await;

    let check = |when: &str| {
        let store = Store::open(&dir.path().join("index")).unwrap();
        let new = store.find_by_name("walsh", "1982-03-14").unwrap();
        assert_eq!(new.len(), 1, "{when}: found under the new name");
        assert_eq!((new[0].nhs_number.as_str(), new[0].given_name.as_str()), (NHS, "SIOBHAN"));
        assert!(store.find_by_name("O'Brien", "1982-03-14").unwrap().is_empty(), "{when}: not under the old");
        assert!(store.find_by_name("Kelly", "1982-03-14").unwrap().is_empty(), "{when}: a late older name");
        assert!(store.find_by_name("Walsh", "1982-03-15").unwrap().is_empty(), "{when}: the date must match");
        let by_number = store.find_local("RJ1-123456", None).unwrap();
        assert_eq!(by_number, vec![("RJ1".to_string(), NHS.to_string())], "{when}");
        assert_eq!(store.find_local("RJ1-123456", Some("RJ1")).unwrap().len(), 1);
        assert!(store.find_local("RJ1-123456", Some("RAL")).unwrap().is_empty(), "{when}: another trust's number");
        assert!(store.find_local("RJ1-1234", None).unwrap().is_empty(), "{when}: no prefix match");
    };
    check("live");
    let out =
        Command::new(env!("CARGO_BIN_EXE_recordhub")).args(["reindex", "--data"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check("after reindex");
}
