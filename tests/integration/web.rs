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
    // A browser sends its page's origin with every form post; the guard
    // refuses a form post without it.
    let origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        let with = |mut r: ureq::RequestBuilder<ureq::typestate::WithBody>| {
            r = r.header("Origin", &origin);
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
        // Released before `reindex` opens it in its own process.
        assert!(store.close(std::time::Duration::from_secs(10)), "{when}: the index is released");
    };
    check("live");
    let out =
        Command::new(env!("CARGO_BIN_EXE_recordhub")).args(["reindex", "--data"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check("after reindex");
}

/// A token for `role`, signed with the data directory's key (what
/// `recordhub token mint` prints).
fn token(cfg: &recordhub::config::Config, role: &str) -> String {
    use recordhub::auth::mint::{mint, MintRequest};
    let req = MintRequest {
        user: format!("{role}.user"),
        role: role.into(),
        org: "RJ1".into(),
        lifetime: std::time::Duration::from_secs(600),
    };
    mint(cfg, &req).expect("token minted")
}

/// fixtures/browser/*.hl7: one patient's admission, transfer, U&E, discharge
/// summary, and an attendance at another trust.
async fn send_fixtures(e: &Engine) {
    let mut c = e.connect().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/browser");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|f| f.unwrap().path()).collect();
    files.sort();
    for f in files {
        let msg = std::fs::read_to_string(&f).unwrap();
        assert!(["AA", "CA"].contains(&code(&c.call(&msg).await).as_str()), "{f:?} accepted");
    }
}

/// Another patient with the same family name and date of birth, at RAL.
const NAMESAKE: &str = "MSH|^~\\&|CAREFLOW|RAL|RECORDHUB|LCR|20261112091500||ADT^A04^ADT_A01|SAKE1|P|2.4\r\
    EVN|A04|20261112091500\r\
    PID|1||9449305552^^^NHS^NH~RAL-100200^^^RAL^MR||OBRIEN^SINEAD^^^MS||19820314|F|||||||||||||||||||||||NSTS01\r";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_clinician_searches_three_ways_reads_and_breaks_glass_and_each_step_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let base = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    send_fixtures(&e).await;
    assert_eq!(code(&e.connect().await.call(NAMESAKE).await), "AA");
    let t = token(&e.cfg, "clinician");
    let form = |pairs: &[(&'static str, &str)]| pairs.iter().map(|(k, v)| (*k, v.to_string())).collect::<Vec<_>>();

    let signin = call("POST", format!("{base}/signin"), None, form(&[("token", &t)])).await;
    assert_eq!((signin.status, signin.location.as_str()), (303, "/"));
    assert_eq!(signin.set_cookie, format!("recordhub_token={t}; HttpOnly; Secure; SameSite=Strict; Path=/"));
    let home = call("GET", format!("{base}/"), Some(t.clone()), vec![]).await;
    assert_eq!((home.status, title(&home.body)), (200, "Find a patient · recordhub"));
    assert!(home.body.contains("clinician.user"), "says who is signed in");

    let search = |pairs: Vec<(&'static str, String)>| call("POST", format!("{base}/search"), Some(t.clone()), pairs);
    let by_nhs = search(form(&[("by", "nhs"), ("nhs", "943 476 5919")])).await;
    assert_eq!((by_nhs.status, by_nhs.location.as_str()), (303, "/record/9434765919"));
    let bad_nhs = search(form(&[("by", "nhs"), ("nhs", "9434765918")])).await;
    assert_eq!(bad_nhs.status, 400);
    assert!(bad_nhs.body.contains("not a valid NHS number"), "{}", bad_nhs.body);
    let by_local = search(form(&[("by", "local"), ("local_id", "RJ1-123456")])).await;
    assert_eq!((by_local.status, by_local.location.as_str()), (303, "/record/9434765919"));
    let other_org = search(form(&[("by", "local"), ("local_id", "RJ1-123456"), ("organisation", "RAL")])).await;
    assert_eq!(other_org.status, 404);
    assert!(other_org.body.contains("No patient found"));
    let by_name = search(form(&[("by", "name"), ("family", "O'Brien"), ("dob", "14/03/1982")])).await;
    assert_eq!((by_name.status, title(&by_name.body)), (200, "Patients found · recordhub"), "two match: a list");
    for shown in ["9434765919", "9449305552", "SIOBHAN O&#39;BRIEN", "SINEAD OBRIEN", "14 Mar 1982", "RAL, RJ1"] {
        assert!(by_name.body.contains(shown), "{shown} in the list: {}", by_name.body);
    }
    let bad_dob = search(form(&[("by", "name"), ("family", "O'Brien"), ("dob", "14/13/1982")])).await;
    assert_eq!(bad_dob.status, 400);
    assert!(bad_dob.body.contains("day/month/year"));

    let page = call("GET", format!("{base}/record/{NHS}"), Some(t.clone()), vec![]).await;
    assert_eq!((page.status, title(&page.body)), (200, "Patient record · recordhub"));
    for shown in [
        "943 476 5919",
        "RAL-778899",
        "HH <span class=\"flag-text\">Critically high</span>",
        "Repeat &#60;U&#38;E&#62; in 1 week",
        "Sent by RJ1LAB (WINPATH, ORU^R01) on 22 Nov 2026 15:10",
        "Viewing for direct care",
    ] {
        assert!(page.body.contains(shown), "{shown} on the page");
    }
    let no_reason = call("POST", format!("{base}/record/{NHS}"), Some(t.clone()), form(&[("reason", "  ")])).await;
    assert_eq!(no_reason.status, 400);
    assert!(!no_reason.body.contains("Penicillin"), "nothing shown without a reason");
    let glass =
        call("POST", format!("{base}/record/{NHS}"), Some(t.clone()), form(&[("reason", "Collapsed in ED")])).await;
    assert_eq!(glass.status, 200);
    assert!(glass.body.contains("Break-glass view.</strong> Reason given: Collapsed in ED"));
    e.stop().await;

    let events = AuditLog::open(dir.path()).unwrap().events().unwrap();
    let searches: Vec<_> = events.iter().filter(|ev| ev.action == "search").collect();
    let summary: Vec<(&str, Vec<&str>)> =
        searches.iter().map(|ev| (ev.outcome.as_str(), ev.items.iter().map(String::as_str).collect())).collect();
    assert_eq!(
        summary,
        [
            ("found", vec!["patient/9434765919"]),
            ("not_found", vec![]),
            ("found", vec!["patient/9434765919", "patient/9449305552"]),
        ],
        "searches by hospital number and name are audited; by NHS number the read is"
    );
    assert!(searches.iter().all(|ev| ev.user == "clinician.user" && ev.role == "clinician" && ev.via == "web"));
    let reads: Vec<_> = events.iter().filter(|ev| ev.action == "read" && ev.via == "web").collect();
    assert_eq!(reads.len(), 2, "the page and the break-glass page");
    assert!(
        reads[0].categories.contains(&"result".to_string()) && reads[0].categories.contains(&"document".to_string())
    );
    assert!(!reads[0].break_glass && reads[0].purpose == "direct_care");
    assert!(reads[1].break_glass && reads[1].reason == "Collapsed in ED" && reads[1].outcome == "shown");
    assert!(reads.iter().chain(&searches).all(|ev| ev.client.starts_with("127.0.0.1:")), "the client address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn social_care_sees_no_results_and_an_objection_leaves_only_the_banner() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::start(config(dir.path())).await;
    let base = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    send_fixtures(&e).await;
    let social = token(&e.cfg, "social_care");
    let page = call("GET", format!("{base}/record/{NHS}"), Some(social), vec![]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("O&#39;BRIEN") && page.body.contains("Discharge summary"), "demographics, documents");
    assert!(page.body.contains("Not shown to your role"));
    for hidden in ["Potassium", "Critically high", "Penicillin", "Pneumonia"] {
        assert!(!page.body.contains(hidden), "{hidden} shown to social care");
    }
    let cfg = e.stop().await;

    let out = Command::new(env!("CARGO_BIN_EXE_recordhub"))
        .args(["objection", "add", NHS, "--reason", "IRR form", "--recorded-by", "officer.a", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let e = Engine::start(cfg).await;
    let base = format!("http://{}", e.running.as_ref().unwrap().http_addr);
    let t = token(&e.cfg, "clinician");
    let page = call("GET", format!("{base}/record/{NHS}"), Some(t.clone()), vec![]).await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("This patient has objected to sharing"));
    for hidden in ["BRIEN", "SIOBHAN", "Penicillin", "RJ1-123456", "Break glass"] {
        assert!(!page.body.contains(hidden), "{hidden} shown despite the objection");
    }
    let pairs = vec![("by", "name".to_string()), ("family", "O'Brien".into()), ("dob", "14/03/1982".into())];
    let search = call("POST", format!("{base}/search"), Some(t), pairs).await;
    assert_eq!(search.status, 404, "a search does not link the name to the NHS number");
    e.stop().await;
}
