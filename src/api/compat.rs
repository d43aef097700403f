//! What the compatible APIs (Langfuse under `/api/public`, MLflow under
//! `/api/2.0/mlflow`) share: an error in another product's wire format,
//! made from promptreg's own [`ApiError`], and the Basic credentials both
//! clients can send. Each API supplies only its error body and its names for
//! the statuses.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;

use crate::auth::AuthError;
use crate::error::{ApiError, UNAVAILABLE_RETRY_SECS};
use crate::services::ServiceError;
use crate::store::StoreError;

/// One compatible API's error body.
pub trait ErrorBody: Serialize + Sized {
    /// `WWW-Authenticate` challenges sent with a 401.
    const CHALLENGES: &'static [&'static str];

    fn new(code: &'static str, message: String) -> Self;

    /// The status and error code this API answers for promptreg's `err`,
    /// which would have had `status` on `/v1`.
    fn code_for(status: StatusCode, err: &ApiError) -> (StatusCode, &'static str);
}

/// An error in a compatible API's format, with `Retry-After` where waiting helps.
#[derive(Debug)]
pub struct CompatError<B> {
    pub(super) status: StatusCode,
    pub(super) body: B,
    retry_after: Option<Duration>,
}

impl<B: ErrorBody> CompatError<B> {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: B::new(code, message.into()),
            retry_after: None,
        }
    }
}

impl<B: ErrorBody> From<ApiError> for CompatError<B> {
    fn from(err: ApiError) -> Self {
        if let ApiError::Service(ServiceError::Internal(cause)) = &err {
            // Logged once, here, as `ApiError` does; the client gets a generic message.
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let retry_after = match err {
            ApiError::RateLimited(wait) => Some(wait),
            ApiError::Service(ServiceError::Unavailable) => {
                Some(Duration::from_secs(UNAVAILABLE_RETRY_SECS))
            }
            _ => None,
        };
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
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (status, code) = B::code_for(status, &err);
        Self {
            retry_after,
            ..Self::new(status, code, message)
        }
    }
}

impl<B: ErrorBody> From<ServiceError> for CompatError<B> {
    fn from(err: ServiceError) -> Self {
        ApiError::from(err).into()
    }
}

impl<B: ErrorBody> From<StoreError> for CompatError<B> {
    fn from(err: StoreError) -> Self {
        ApiError::from(err).into()
    }
}

impl<B: ErrorBody> From<AuthError> for CompatError<B> {
    fn from(err: AuthError) -> Self {
        ApiError::from(err).into()
    }
}

impl<B: ErrorBody> IntoResponse for CompatError<B> {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(&self.body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            for challenge in B::CHALLENGES {
                headers.append(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
        }
        if let Some(wait) = self.retry_after {
            headers.insert(header::RETRY_AFTER, wait.as_secs().max(1).into());
        }
        response
    }
}

/// The payload of a Basic `Authorization` header, if it is one.
pub fn basic_payload(header: &str) -> Option<&str> {
    header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))
}

/// The (user name, password) pair of a Basic payload: for both clients the
/// key's id and the key itself. `None` when it does not decode to `a:b`.
pub fn basic_pair(encoded: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn basic_pairs_split_at_the_first_colon() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("id:pr_se:cret");
        assert_eq!(
            basic_pair(&encoded),
            Some(("id".to_owned(), "pr_se:cret".to_owned()))
        );
        // Not base64; base64 of "no-colon".
        for bad in ["!!!", "bm8tY29sb24="] {
            assert_eq!(basic_pair(bad), None, "{bad}");
        }
    }
}
