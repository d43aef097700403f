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

use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{Auth, Credentials};
use super::compat::{basic_pair, basic_payload, CompatError, ErrorBody};
use super::AppState;
use crate::auth::Caller;
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

pub type LangfuseError = CompatError<LangfuseErrorBody>;

impl ErrorBody for LangfuseErrorBody {
    const CHALLENGES: &'static [&'static str] = &["Basic realm=\"promptreg\""];

    fn new(error: &'static str, message: String) -> Self {
        Self { message, error }
    }

    fn code_for(status: StatusCode, _: &ApiError) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match status {
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
        }
    }
}

impl LangfuseError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequestError", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "LangfuseNotFoundError", message)
    }
}

/// Like `/v1`'s `Auth`, from `Authorization: Basic base64(id:secret)`: the
/// secret is a promptreg key, the public key that key's id.
pub type LangfuseAuth<S> = Auth<S, LangfuseCredentials>;

pub struct LangfuseCredentials;

impl Credentials for LangfuseCredentials {
    type Rejection = LangfuseError;

    async fn caller(state: &AppState, header: Option<&str>) -> Result<Caller, LangfuseError> {
        let (public_key, secret) = basic_credentials(header)?;
        Ok(state.auth.authenticate_pair(&public_key, &secret).await?)
    }
}

/// The (public key, secret) of a Basic `Authorization` header.
fn basic_credentials(header: Option<&str>) -> Result<(String, String), LangfuseError> {
    let unauthorized =
        |message: &str| LangfuseError::new(StatusCode::UNAUTHORIZED, "UnauthorizedError", message);
    let encoded = header.and_then(basic_payload).ok_or_else(|| {
        unauthorized("no credentials: send `Authorization: Basic base64(public key:secret key)`")
    })?;
    basic_pair(encoded)
        .ok_or_else(|| unauthorized("the public and secret key do not match a valid key"))
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
    use base64::Engine as _;

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
