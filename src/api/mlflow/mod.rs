//! The MLflow-compatible prompt registry under `/api/2.0/mlflow`: enough of
//! MLflow's model-registry REST API for MLflow's client
//! (`mlflow.genai.register_prompt`, `load_prompt`, `set_prompt_alias`,
//! `search_prompts`…) to work against promptreg by setting
//! `MLFLOW_TRACKING_URI`. MLflow keeps prompts as registered models whose
//! versions carry the template in tags; this module maps those shapes onto
//! promptreg's prompts, versions and labels and does every operation through
//! the same services, scopes, gates, label history and audit as `/v1`. It
//! speaks MLflow's wire format (snake_case JSON, `{error_code, message}`
//! errors, Bearer or Basic auth) and holds no storage of its own.

pub mod models;
pub mod search;
pub mod versions;
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
use crate::services::ServiceError;
use crate::store::StoreError;

/// An error as MLflow's server sends it; the client raises it with both fields.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no prompt named \"greet\""}))]
pub struct MlflowErrorBody {
    /// `INVALID_PARAMETER_VALUE` (400), `RESOURCE_ALREADY_EXISTS` (400),
    /// `UNAUTHENTICATED` (401), `PERMISSION_DENIED` (403),
    /// `RESOURCE_DOES_NOT_EXIST` (404), `ENDPOINT_NOT_FOUND` (404),
    /// `REQUEST_LIMIT_EXCEEDED` (429), `TEMPORARILY_UNAVAILABLE` (503), …
    error_code: &'static str,
    /// What went wrong, naming the field or value at fault.
    message: String,
}

#[derive(Debug)]
pub struct MlflowError {
    status: StatusCode,
    body: MlflowErrorBody,
    retry_after: Option<Duration>,
}

pub const INVALID_PARAMETER_VALUE: &str = "INVALID_PARAMETER_VALUE";

impl MlflowError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, INVALID_PARAMETER_VALUE, message)
    }

    /// A registered model or version that is not a prompt.
    pub fn not_a_prompt(what: &str) -> Self {
        Self::invalid(format!(
            "promptreg stores prompts only: {what} (MLflow marks a prompt with the tag \
             `mlflow.prompt.is_prompt` = \"true\" and keeps its template in `mlflow.prompt.text`)"
        ))
    }

    fn new(status: StatusCode, error_code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: MlflowErrorBody {
                error_code,
                message: message.into(),
            },
            retry_after: None,
        }
    }
}

impl From<ApiError> for MlflowError {
    fn from(err: ApiError) -> Self {
        use StatusCode as S;
        if let ApiError::Service(ServiceError::Internal(cause)) = &err {
            // Logged once, here, as `ApiError` does; the client gets a generic message.
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let exists = matches!(
            err,
            ApiError::Service(ServiceError::Store(StoreError::PromptExists(_)))
        );
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
        let (status, code) = match status {
            _ if exists => (S::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS"),
            S::UNAUTHORIZED => (status, "UNAUTHENTICATED"),
            S::FORBIDDEN => (status, "PERMISSION_DENIED"),
            S::NOT_FOUND => (status, "RESOURCE_DOES_NOT_EXIST"),
            S::TOO_MANY_REQUESTS => (status, "REQUEST_LIMIT_EXCEEDED"),
            S::REQUEST_TIMEOUT => (status, "DEADLINE_EXCEEDED"),
            S::SERVICE_UNAVAILABLE => (status, "TEMPORARILY_UNAVAILABLE"),
            S::INTERNAL_SERVER_ERROR => (status, "INTERNAL_ERROR"),
            // Bad bodies, conflicts, failed gates: the same request fails again.
            _ => (S::BAD_REQUEST, INVALID_PARAMETER_VALUE),
        };
        let retry_after = match err {
            ApiError::RateLimited(wait) => Some(wait),
            ApiError::Service(ServiceError::Unavailable) => {
                Some(Duration::from_secs(crate::error::UNAVAILABLE_RETRY_SECS))
            }
            _ => None,
        };
        Self {
            retry_after,
            ..Self::new(status, code, message)
        }
    }
}

impl From<ServiceError> for MlflowError {
    fn from(err: ServiceError) -> Self {
        ApiError::from(err).into()
    }
}

impl From<StoreError> for MlflowError {
    fn from(err: StoreError) -> Self {
        ApiError::from(err).into()
    }
}

impl From<AuthError> for MlflowError {
    fn from(err: AuthError) -> Self {
        ApiError::from(err).into()
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(&self.body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            for challenge in ["Bearer realm=\"promptreg\"", "Basic realm=\"promptreg\""] {
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

/// Like [`super::auth::Auth`], from what MLflow's client sends:
/// `Authorization: Bearer <key>` (`MLFLOW_TRACKING_TOKEN`), or Basic with
/// the key's id as the user name and the key as the password
/// (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`).
pub struct MlflowAuth<S> {
    caller: Caller,
    scope: PhantomData<S>,
}

impl<S> Deref for MlflowAuth<S> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl<S: RequiredScope> FromRequestParts<AppState> for MlflowAuth<S> {
    type Rejection = MlflowError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, MlflowError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = match header.and_then(basic_payload) {
            Some(encoded) => {
                let (id, secret) = basic_credentials(encoded)?;
                state.auth.authenticate_pair(&id, &secret).await?
            }
            None => state.auth.authenticate(header).await.map_err(|e| match e {
                AuthError::Missing => MlflowError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "no credentials: set MLFLOW_TRACKING_TOKEN to a promptreg key, or \
                     MLFLOW_TRACKING_USERNAME to its id and MLFLOW_TRACKING_PASSWORD to the key",
                ),
                other => other.into(),
            })?,
        };
        state.auth.authorize(&caller, S::SCOPE)?;
        Ok(Self {
            caller,
            scope: PhantomData,
        })
    }
}

fn basic_payload(header: &str) -> Option<&str> {
    header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))
}

/// The (key id, key) of a Basic payload.
fn basic_credentials(encoded: &str) -> Result<(String, String), MlflowError> {
    let invalid = || {
        MlflowError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "the user name and password do not match a valid key (user name: the key's id, \
             password: the key)",
        )
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid())?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(invalid)?;
    Ok((id.to_owned(), secret.to_owned()))
}

/// Any other path under `/api/2.0/mlflow` or `/api/3.0/mlflow` (runs,
/// experiments, traces…): a 404 in MLflow's shape, so the client reports it
/// as it would MLflow's own.
pub async fn unknown_route(uri: axum::http::Uri) -> MlflowError {
    MlflowError::new(
        StatusCode::NOT_FOUND,
        "ENDPOINT_NOT_FOUND",
        format!(
            "{} is not part of promptreg's MLflow-compatible API, which serves the prompt \
             registry only (registered models and model versions that are prompts)",
            uri.path()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_mlflow_codes_and_statuses() {
        for (err, status, code) in [
            (
                ApiError::from(StoreError::PromptExists("p".into())),
                400,
                "RESOURCE_ALREADY_EXISTS",
            ),
            (
                ApiError::from(StoreError::PromptNotFound("p".into())),
                404,
                "RESOURCE_DOES_NOT_EXIST",
            ),
            (
                ApiError::validation("name", "bad"),
                400,
                INVALID_PARAMETER_VALUE,
            ),
            (
                ApiError::from(StoreError::PromptArchived("p".into())),
                400,
                INVALID_PARAMETER_VALUE,
            ),
            (
                ApiError::from(ServiceError::Unavailable),
                503,
                "TEMPORARILY_UNAVAILABLE",
            ),
            (ApiError::Unauthorized("x".into()), 401, "UNAUTHENTICATED"),
        ] {
            let mapped = MlflowError::from(err);
            assert_eq!(mapped.status.as_u16(), status);
            assert_eq!(mapped.body.error_code, code);
        }
        let named = MlflowError::from(ApiError::validation("name", "bad"));
        assert_eq!(named.body.message, "name: bad");
    }

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("id:pr_se:cret");
        assert_eq!(
            basic_credentials(&encoded).ok(),
            Some(("id".to_owned(), "pr_se:cret".to_owned()))
        );
        for bad in ["!!!", "bm8tY29sb24="] {
            let err = basic_credentials(bad).expect_err("refused");
            assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        }
    }
}
