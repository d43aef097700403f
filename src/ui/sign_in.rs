//! Signing in (with a user's password, or with an API key), signing out,
//! and switching the session's project.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::session::{
    client_address, session_clear_cookie, session_set_cookie, Posted, SameOrigin,
};
use super::{render, UiError};
use crate::api::AppState;
use crate::services::sessions::{self, Credentials};
use crate::services::ServiceError;

#[derive(Serialize, Default)]
struct SignInPage<'a> {
    error: Option<String>,
    /// Which form the error belongs to: `password` or `key`.
    form: &'a str,
    name: &'a str,
}

pub async fn sign_in_page() -> Response {
    render(StatusCode::OK, "sign_in.html", SignInPage::default())
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    key: String,
}

/// The client's address, for counting failed sign-ins.
pub struct Address(Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for Address {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(client_address(parts)))
    }
}

pub async fn sign_in(
    State(state): State<AppState>,
    _: SameOrigin,
    Address(address): Address,
    axum::Form(form): axum::Form<PasswordForm>,
) -> Response {
    let credentials = Credentials::Password {
        name: form.name.trim(),
        password: &form.password,
    };
    let opened = sessions::sign_in(
        &state.registry,
        &state.auth,
        &state.sessions,
        credentials,
        address,
    )
    .await;
    finish(&state, opened, "password", form.name.trim())
}

pub async fn sign_in_with_key(
    State(state): State<AppState>,
    _: SameOrigin,
    Address(address): Address,
    axum::Form(form): axum::Form<KeyForm>,
) -> Response {
    let credentials = Credentials::Key { secret: &form.key };
    let opened = sessions::sign_in(
        &state.registry,
        &state.auth,
        &state.sessions,
        credentials,
        address,
    )
    .await;
    finish(&state, opened, "key", "")
}

/// To the prompts with the new cookie, or the sign-in page again with what
/// went wrong beside the form that was used.
fn finish(
    state: &AppState,
    opened: Result<sessions::Opened, ServiceError>,
    form: &str,
    name: &str,
) -> Response {
    let err = match opened {
        Ok(opened) => {
            let cookie = session_set_cookie(
                opened.secret.expose(),
                opened.max_age,
                state.config.ui.secure_cookies,
            );
            return ([(header::SET_COOKIE, cookie)], Redirect::to("/ui/prompts")).into_response();
        }
        Err(err) => err,
    };
    let status = match &err {
        ServiceError::SignInRefused => StatusCode::UNAUTHORIZED,
        ServiceError::TooManySignIns(_) => StatusCode::TOO_MANY_REQUESTS,
        ServiceError::Validation(_) => StatusCode::FORBIDDEN,
        _ => return UiError::from(err).into_response(),
    };
    let error = match &err {
        ServiceError::SignInRefused if form == "key" => {
            "That key is not valid or was revoked.".to_owned()
        }
        ServiceError::SignInRefused => "The name or the password is wrong.".to_owned(),
        ServiceError::Validation(errors) => errors
            .first()
            .map_or_else(|| err.to_string(), |e| e.message.clone()),
        other => format!("{}.", capitalize(&other.to_string())),
    };
    render(
        status,
        "sign_in.html",
        SignInPage {
            error: Some(error),
            form,
            name,
        },
    )
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn sign_out(
    State(state): State<AppState>,
    posted: Posted<Empty>,
) -> Result<Response, UiError> {
    sessions::sign_out(&state.registry, &posted.session).await?;
    let cookie = session_clear_cookie(state.config.ui.secure_cookies);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/ui/signin")).into_response())
}

#[derive(Deserialize)]
pub struct ProjectForm {
    project: String,
}

pub async fn switch_project(
    State(state): State<AppState>,
    posted: Posted<ProjectForm>,
) -> Result<Redirect, UiError> {
    sessions::switch_project(&state.registry, &posted.session, &posted.form.project).await?;
    Ok(Redirect::to("/ui/prompts"))
}
