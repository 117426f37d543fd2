//! The professional's web view: server-rendered pages on the engine's HTTP
//! listener (issue 11). Find a patient by NHS number, hospital number, or
//! family name and date of birth; read one page with the leaflet categories.
//!
//! - `GET /` search form; `POST /search` (never a GET: a name or a date of
//!   birth must not end up in a URL, a proxy log or the browser history);
//! - `GET /record/{nhs}` the record for direct care; `POST /record/{nhs}` a
//!   break-glass read (the reason in the body);
//! - `GET|POST /signin` (paste a token, kept in an HttpOnly, Secure,
//!   SameSite=Strict cookie), `POST /signout`;
//! - `GET /static/recordhub.css`: the one stylesheet (no external assets).
//!
//! Every record read goes through [`crate::read::read_audited`] (via `web`):
//! one read path, role-filtered, audited before anything is shown. Searches
//! are audited too (`search.rs`). Without a valid token every page sends
//! the browser to `/signin` and shows nothing about any patient. Page titles
//! never hold patient data, and URLs hold at most the NHS number.
//!
//! What this module does not do: verify tokens (`crate::auth`), decide what a
//! role sees (`crate::access`), or run JavaScript: every page is plain HTML
//! forms.

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::auth::Principal;
use crate::http::Api;

pub mod body;
pub mod dates;
mod record;
mod search;
mod session;
pub mod view;

pub use record::{record_page, RecordPage, Rendered};
pub use session::COOKIE;

/// The web view's routes, merged into the read API's router.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/", get(search::form))
        .route("/search", post(search::submit))
        .route("/record/{nhs}", get(record::show).post(record::break_glass))
        .route("/signin", get(session::form).post(session::sign_in))
        .route("/signout", post(session::sign_out))
        .route("/static/recordhub.css", get(css))
}

/// The stylesheet: one file, served from the binary.
const CSS: &str = include_str!("../../templates/recordhub.css");

async fn css() -> Response {
    let mut r = CSS.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    r
}

/// The client's address (`ip:port`), or empty when the listener does not
/// record it.
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts.extensions.get::<ConnectInfo<crate::http::Client>>().map(|c| c.0 .0.clone());
        Ok(ClientAddr(addr.unwrap_or_default()))
    }
}

/// Who is signed in, or why nobody is.
pub(crate) async fn principal(api: &Api, headers: &HeaderMap) -> Result<Principal, String> {
    session::principal(api, headers).await
}

/// Who is signed in, for the page header.
pub struct Who {
    pub user: String,
    pub role: String,
    pub org: String,
}

impl From<&Principal> for Who {
    fn from(p: &Principal) -> Who {
        Who { user: p.user.clone(), role: p.role.clone(), org: p.org.clone() }
    }
}

/// A page of text: an error or a notice, no patient data.
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub who: Option<Who>,
    pub heading: &'a str,
    pub text: &'a str,
}

/// Renders a page with the headers every page carries: no caching (a shared
/// ward PC must not show the last user's patient from the cache), no
/// framing, no referrer (the NHS number in a URL stays here), and a content
/// security policy that allows nothing but this server's stylesheet and forms.
pub fn page(status: StatusCode, t: &impl Template) -> Response {
    let html = match t.render() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "page could not be rendered");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered");
        }
    };
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure(h);
    r
}

fn secure(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // `same-origin`, not `no-referrer`: the NHS number in a record URL never
    // leaves for another site, and a form post still carries its Origin,
    // which the guard requires (under `no-referrer` Chromium sends
    // `Origin: null` and every sign-in and search is refused).
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut r = (status, text).into_response();
    secure(r.headers_mut());
    r
}

/// A message page.
pub fn message(status: StatusCode, who: Option<Who>, heading: &str, text: &str) -> Response {
    page(status, &MessagePage { who, heading, text })
}

/// 303 to `to` (a path of this server).
pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure(r.headers_mut());
    r
}

/// An NHS number as it is printed on letters and wristbands: `943 476 5919`.
pub fn spaced(nhs: &str) -> String {
    match (nhs.get(..3), nhs.get(3..6), nhs.get(6..)) {
        (Some(a), Some(b), Some(c)) => format!("{a} {b} {c}"),
        _ => nhs.to_string(),
    }
}

/// Where a request without a valid token goes.
pub fn to_sign_in() -> Response {
    see_other("/signin")
}
