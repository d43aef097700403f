//! The Langfuse-compatible API under `/api/public`: enough of Langfuse's
//! public prompt API for its SDKs to fetch, create and label prompts here
//! unchanged. It speaks Langfuse's wire format (camelCase JSON, Basic auth
//! with a key's id as the public key and the key itself as the secret,
//! `{message, error}` errors) and does every operation through the same
//! registry calls, scopes, gates, label history and audit as `/v1`. It holds
//! no storage of its own: traces sent here are accepted and dropped.

pub mod prompts;
pub mod service;
mod wire;

use std::marker::PhantomData;
use std::ops::Deref;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::{self, AUTHORIZATION};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::RequiredScope;
use super::AppState;
use crate::auth::{AuthError, Caller};
use crate::error::ApiError;

/// An error as Langfuse sends it. Nothing that cannot succeed when retried
/// is a 409 or a 5xx here: the SDKs retry those.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"message": "no prompt named \"greet\"", "error": "LangfuseNotFoundError"}))]
pub struct LangfuseErrorBody {
    /// What went wrong, naming the field or value at fault.
    message: String,
    /// `InvalidRequestError` (400), `UnauthorizedError` (401),
    /// `ForbiddenError` (403), `LangfuseNotFoundError` (404),
    /// `MethodNotAllowedError` (405), `TooManyRequestsError` (429), …
    error: &'static str,
}

#[derive(Debug)]
pub struct LangfuseError {
    status: StatusCode,
    body: LangfuseErrorBody,
    retry_after: Option<Duration>,
}

impl LangfuseError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequestError", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "LangfuseNotFoundError", message)
    }

    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: LangfuseErrorBody {
                message: message.into(),
                error,
            },
            retry_after: None,
        }
    }
}

impl From<ApiError> for LangfuseError {
    fn from(err: ApiError) -> Self {
        use StatusCode as S;
        if let ApiError::Service(crate::services::ServiceError::Internal(cause)) = &err {
            // Logged once, here, as `ApiError` does; the client gets a generic message.
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let problem = err.problem();
        let message = match problem.errors.as_slice() {
            [] => problem.detail.clone(),
            [one] => one.to_string(),
            many => many
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        };
        let status = S::from_u16(problem.status).unwrap_or(S::INTERNAL_SERVER_ERROR);
        let (status, error) = match status {
            S::UNAUTHORIZED => (status, "UnauthorizedError"),
            S::FORBIDDEN => (status, "ForbiddenError"),
            S::NOT_FOUND => (status, "LangfuseNotFoundError"),
            S::METHOD_NOT_ALLOWED => (status, "MethodNotAllowedError"),
            S::TOO_MANY_REQUESTS => (status, "TooManyRequestsError"),
            // Worth retrying: the server was slow or the database away.
            S::REQUEST_TIMEOUT => (status, "RequestTimeoutError"),
            S::SERVICE_UNAVAILABLE => (status, "ServiceUnavailableError"),
            S::INTERNAL_SERVER_ERROR => (status, "InternalServerError"),
            // Conflicts, failed gates, bad bodies: the same request fails again.
            _ => (S::BAD_REQUEST, "InvalidRequestError"),
        };
        let retry_after = match err {
            ApiError::RateLimited(wait) => Some(wait),
            ApiError::Service(crate::services::ServiceError::Unavailable) => {
                Some(Duration::from_secs(crate::error::UNAVAILABLE_RETRY_SECS))
            }
            _ => None,
        };
        Self {
            retry_after,
            ..Self::new(status, error, message)
        }
    }
}

impl From<crate::services::ServiceError> for LangfuseError {
    fn from(err: crate::services::ServiceError) -> Self {
        ApiError::from(err).into()
    }
}

impl From<crate::store::StoreError> for LangfuseError {
    fn from(err: crate::store::StoreError) -> Self {
        ApiError::from(err).into()
    }
}

impl From<AuthError> for LangfuseError {
    fn from(err: AuthError) -> Self {
        ApiError::from(err).into()
    }
}

impl IntoResponse for LangfuseError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(&self.body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"promptreg\""),
            );
        }
        if let Some(wait) = self.retry_after {
            headers.insert(header::RETRY_AFTER, wait.as_secs().max(1).into());
        }
        response
    }
}

/// Like [`super::auth::Auth`], from `Authorization: Basic base64(id:secret)`:
/// the secret is a promptreg key, the public key that key's id.
pub struct LangfuseAuth<S> {
    caller: Caller,
    scope: PhantomData<S>,
}

impl<S> Deref for LangfuseAuth<S> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl<S> LangfuseAuth<S> {
    /// Requires one more scope (creating a version that also moves labels).
    pub fn also_require(
        &self,
        state: &AppState,
        scope: crate::domain::auth::Scope,
    ) -> Result<(), LangfuseError> {
        Ok(state.auth.authorize(&self.caller, scope)?)
    }
}

impl<S: RequiredScope> FromRequestParts<AppState> for LangfuseAuth<S> {
    type Rejection = LangfuseError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, LangfuseError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let (public_key, secret) = basic_credentials(header)?;
        let caller = state.auth.authenticate_pair(&public_key, &secret).await?;
        state.auth.authorize(&caller, S::SCOPE)?;
        Ok(Self {
            caller,
            scope: PhantomData,
        })
    }
}

/// The (public key, secret) of a Basic `Authorization` header.
fn basic_credentials(header: Option<&str>) -> Result<(String, String), LangfuseError> {
    let unauthorized =
        |message: &str| LangfuseError::new(StatusCode::UNAUTHORIZED, "UnauthorizedError", message);
    let encoded = header
        .and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        })
        .ok_or_else(|| {
            unauthorized(
                "no credentials: send `Authorization: Basic base64(public key:secret key)`",
            )
        })?;
    let invalid = || unauthorized("the public and secret key do not match a valid key");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid())?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
    let (public_key, secret) = decoded.split_once(':').ok_or_else(invalid)?;
    Ok((public_key.to_owned(), secret.to_owned()))
}

/// Any other path under `/api/public` (scores, datasets, ingestion…): a 404
/// in Langfuse's shape, so a Langfuse client reports it as it would
/// Langfuse's own.
pub async fn unknown_route(uri: axum::http::Uri) -> LangfuseError {
    LangfuseError::not_found(format!(
        "{} is not part of promptreg's Langfuse-compatible API, which serves prompts, \
         projects and health only",
        uri.path()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let header = |raw: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        };
        assert_eq!(
            basic_credentials(Some(&header("id:pr_secret"))).ok(),
            Some(("id".to_owned(), "pr_secret".to_owned()))
        );
        for bad in [
            None,
            Some("Bearer pr_x".to_owned()),
            Some("Basic !!!".to_owned()),
            Some(header("no-colon")),
        ] {
            let err = basic_credentials(bad.as_deref()).expect_err("refused");
            assert_eq!(err.status, StatusCode::UNAUTHORIZED);
            assert_eq!(err.body.error, "UnauthorizedError");
        }
    }

    #[test]
    fn what_cannot_succeed_later_is_never_a_conflict_or_server_error() {
        use crate::services::ServiceError;
        use crate::store::StoreError;
        for (err, status, name) in [
            (
                ApiError::from(StoreError::PromptArchived("p".into())),
                400,
                "InvalidRequestError",
            ),
            (
                ApiError::from(StoreError::VersionConflict("x".into())),
                400,
                "InvalidRequestError",
            ),
            (
                ApiError::validation("labels[0]", "bad"),
                400,
                "InvalidRequestError",
            ),
            (
                ApiError::from(StoreError::PromptNotFound("p".into())),
                404,
                "LangfuseNotFoundError",
            ),
            (
                ApiError::from(ServiceError::Unavailable),
                503,
                "ServiceUnavailableError",
            ),
        ] {
            let mapped = LangfuseError::from(err);
            assert_eq!(mapped.status.as_u16(), status);
            assert_eq!(mapped.body.error, name);
        }
        let named = LangfuseError::from(ApiError::validation("labels[0]", "bad"));
        assert_eq!(named.body.message, "labels[0]: bad");
    }
}
