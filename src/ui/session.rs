//! The session cookie and the checks every page makes: [`Signed`] finds the
//! session a cookie names (or sends the browser to sign in); [`Posted`]
//! also requires a same-origin `Origin` and the session's CSRF token in the
//! form; [`SameOrigin`] is the `Origin` check alone, for the sign-in forms.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::UiError;
use crate::api::AppState;
use crate::services::sessions::{self, SignedIn};

pub const SESSION_COOKIE: &str = "promptreg_session";

/// The session id the request's cookie carries.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// `Set-Cookie` for a new session.
pub fn session_set_cookie(secret: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={secret}; Max-Age={}; Path=/; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that makes the browser forget the session.
pub fn session_clear_cookie(secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether the request's `Origin` is this server (the `Host` it was sent
/// to). Browsers send `Origin` on every POST; a missing one is refused.
fn same_origin(headers: &HeaderMap) -> bool {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    match (header(ORIGIN), header(HOST)) {
        (Some(origin), Some(host)) => {
            origin.split_once("://").is_some_and(|(scheme, authority)| {
                matches!(scheme, "http" | "https") && authority.eq_ignore_ascii_case(host)
            })
        }
        _ => false,
    }
}

/// The client's address, when the server knows it.
pub fn client_address(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

/// A signed-in browser.
pub struct Signed(pub SignedIn);

impl FromRequestParts<AppState> for Signed {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, UiError> {
        if parts.method != Method::GET
            && parts.method != Method::HEAD
            && !same_origin(&parts.headers)
        {
            return Err(UiError::Forged);
        }
        let Some(cookie) = session_cookie(&parts.headers) else {
            return Err(UiError::SignedOut);
        };
        match sessions::find(&state.registry, cookie).await? {
            Some(session) => Ok(Self(session)),
            None => Err(UiError::SignedOut),
        }
    }
}

/// A POST from one of our pages: a same-origin `Origin`, a live session,
/// and its CSRF token in the form's `csrf_token` field; then the form.
pub struct Posted<T> {
    pub session: SignedIn,
    pub form: T,
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf_token: String,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Posted<T> {
    type Rejection = UiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, UiError> {
        let (mut parts, body) = request.into_parts();
        if !same_origin(&parts.headers) {
            return Err(UiError::Forged);
        }
        let Signed(session) = Signed::from_request_parts(&mut parts, state)
            .await
            .map_err(|err| match err {
                // A form posted after the session ended cannot be trusted either.
                UiError::SignedOut => UiError::Forged,
                other => other,
            })?;
        let request = Request::from_parts(parts, body);
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|_| UiError::Api(crate::error::ApiError::PayloadTooLarge))?;
        let token: CsrfField = form_from(&bytes)?;
        if !session.csrf_matches(&token.csrf_token) {
            return Err(UiError::Forged);
        }
        Ok(Self {
            session,
            form: form_from(&bytes)?,
        })
    }
}

/// A form body (`application/x-www-form-urlencoded`) as `T`.
fn form_from<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, UiError> {
    serde_urlencoded::from_bytes(bytes)
        .map_err(|e| UiError::Api(crate::error::ApiError::validation("form", e.to_string())))
}

/// A POST whose `Origin` is this server (the sign-in forms, before any session).
pub struct SameOrigin;

impl FromRequestParts<AppState> for SameOrigin {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, UiError> {
        if same_origin(&parts.headers) {
            Ok(Self)
        } else {
            Err(UiError::Forged)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn only_this_servers_origin_passes() {
        let host = ("host", "127.0.0.1:8080");
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("origin", "https://127.0.0.1:8080")
        ])));
        for origin in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:8081",
            "ftp://127.0.0.1:8080",
        ] {
            assert!(
                !same_origin(&headers(&[host, ("origin", origin)])),
                "{origin}"
            );
        }
        assert!(!same_origin(&headers(&[host])), "no Origin");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; promptreg_session=abc; b=2")]);
        assert_eq!(session_cookie(&h), Some("abc"));
        assert_eq!(session_cookie(&headers(&[("cookie", "a=1")])), None);
    }
}
