//! Signing in and out of the web view: the professional pastes a token
//! (from `recordhub token mint` or the organisation's identity provider);
//! it is checked, then kept in the cookie [`COOKIE`] (HttpOnly: no script
//! can read it; Secure; SameSite=Strict: a page on another site cannot make
//! the browser send it, which is what stops cross-site form posts; Path=/).
//! Behind an OIDC reverse proxy the `Authorization` header does the same
//! and no sign-in is needed.

use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{page, see_other, Who};
use crate::auth::Principal;
use crate::http::Api;

pub use crate::auth::COOKIE;

/// A token longer than this is refused before it is looked at.
const MAX_TOKEN: usize = 8 * 1024;

#[derive(askama::Template)]
#[template(path = "signin.html")]
struct SignIn<'a> {
    who: Option<Who>,
    error: &'a str,
}

/// The sign-in form.
pub(super) async fn form() -> Response {
    page(StatusCode::OK, &SignIn { who: None, error: "" })
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    #[serde(default)]
    token: String,
}

/// Checks the pasted token and keeps it in the cookie.
pub(super) async fn sign_in(State(api): State<Api>, Form(f): Form<TokenForm>) -> Response {
    let token = f.token.trim();
    let well_formed = !token.is_empty()
        && token.len() <= MAX_TOKEN
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='));
    if !well_formed {
        return page(
            StatusCode::UNAUTHORIZED,
            &SignIn { who: None, error: "That is not a token: paste the whole token, with no spaces." },
        );
    }
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.insert(header::AUTHORIZATION, v);
    }
    if let Err(why) = principal(&api, &headers).await {
        let error = format!("The token was refused: {why}.");
        return page(StatusCode::UNAUTHORIZED, &SignIn { who: None, error: &error });
    }
    let mut r = see_other("/");
    if let Ok(v) = HeaderValue::from_str(&format!("{COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/")) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Forgets the token.
pub(super) async fn sign_out() -> Response {
    let mut r = see_other("/signin");
    let gone = format!("{COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&gone) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Who the request's token names (`Authorization: Bearer …`, else the
/// [`COOKIE`]), or why it names nobody: [`crate::auth::Auth::authenticate`].
/// Off the async threads when verification may fetch a JWKS
/// ([`crate::http::authenticate`]).
pub(super) async fn principal(api: &Api, headers: &HeaderMap) -> Result<Principal, String> {
    crate::http::authenticate(api, headers).await.map_err(|e| e.to_string())
}
