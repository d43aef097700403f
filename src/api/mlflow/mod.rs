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

use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{Auth, Credentials};
use super::compat::{basic_pair, basic_payload, CompatError, ErrorBody};
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

pub type MlflowError = CompatError<MlflowErrorBody>;

pub const INVALID_PARAMETER_VALUE: &str = "INVALID_PARAMETER_VALUE";

impl ErrorBody for MlflowErrorBody {
    const CHALLENGES: &'static [&'static str] =
        &["Bearer realm=\"promptreg\"", "Basic realm=\"promptreg\""];

    fn new(error_code: &'static str, message: String) -> Self {
        Self {
            error_code,
            message,
        }
    }

    fn code_for(status: StatusCode, err: &ApiError) -> (StatusCode, &'static str) {
        use StatusCode as S;
        let exists = matches!(
            err,
            ApiError::Service(ServiceError::Store(StoreError::PromptExists(_)))
        );
        match status {
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
        }
    }
}

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
}

/// Like `/v1`'s `Auth`, from what MLflow's client sends:
/// `Authorization: Bearer <key>` (`MLFLOW_TRACKING_TOKEN`), or Basic with
/// the key's id as the user name and the key as the password
/// (`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`).
pub type MlflowAuth<S> = Auth<S, MlflowCredentials>;

pub struct MlflowCredentials;

impl Credentials for MlflowCredentials {
    type Rejection = MlflowError;

    async fn caller(state: &AppState, header: Option<&str>) -> Result<Caller, MlflowError> {
        if let Some(encoded) = header.and_then(basic_payload) {
            let (id, secret) = basic_pair(encoded).ok_or_else(|| {
                MlflowError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "the user name and password do not match a valid key (user name: the \
                     key's id, password: the key)",
                )
            })?;
            return Ok(state.auth.authenticate_pair(&id, &secret).await?);
        }
        state.auth.authenticate(header).await.map_err(|e| match e {
            AuthError::Missing => MlflowError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "no credentials: set MLFLOW_TRACKING_TOKEN to a promptreg key, or \
                 MLFLOW_TRACKING_USERNAME to its id and MLFLOW_TRACKING_PASSWORD to the key",
            ),
            other => other.into(),
        })
    }
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
}
