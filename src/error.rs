//! `ApiError`: the one error type handlers return, written as RFC 9457
//! `application/problem+json` with a stable `code`. Every conversion from the
//! layers below lives here, not in handlers.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use std::time::Duration;

use crate::auth::AuthError;
use crate::domain::auth::Scope;
use crate::domain::names::LabelError;
use crate::domain::NameError;
pub use crate::services::error::{FieldError, ServiceError};
use crate::services::render::RenderError;
use crate::store::StoreError;
use crate::template::TemplateError;

/// Lower errors reach a handler's `?` through the use-case error.
macro_rules! through_service_error {
    ($($source:ty),*) => {$(
        impl From<$source> for ApiError {
            fn from(err: $source) -> Self {
                Self::Service(err.into())
            }
        }
    )*};
}

through_service_error!(StoreError, RenderError, TemplateError);

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            e @ (AuthError::Missing | AuthError::Invalid) => Self::Unauthorized(e.to_string()),
            AuthError::InsufficientScope(scope) => Self::InsufficientScope(scope),
            AuthError::RateLimited(wait) => Self::RateLimited(wait),
            AuthError::Store(e) => Self::from(e),
        }
    }
}

/// RFC 9457 problem details.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Stable, snake_case: what clients branch on.
    pub code: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// What a use-case refused, or why it failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body is larger than this server's limit (http.body_limit_bytes)")]
    PayloadTooLarge,
    #[error("expected a JSON body (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("{0}")]
    UnsupportedUpload(String),
    #[error("the upload is larger than this server's limit of {0} bytes (http.upload_limit_bytes); nothing of it was kept")]
    UploadTooLarge(usize),
    #[error("no route for this path")]
    RouteNotFound,
    #[error("this method is not allowed here")]
    MethodNotAllowed,
    #[error("the request took longer than this server's limit (http.request_timeout_secs)")]
    Timeout,
    #[error("{0}")]
    Unauthorized(String),
    #[error("this key lacks the `{0}` scope")]
    InsufficientScope(Scope),
    #[error("too many requests for this key; retry in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::validation(field, message).into()
    }

    pub fn invalid_name(field: &str, err: NameError) -> Self {
        ServiceError::invalid_name(field, err).into()
    }

    pub fn invalid_label(field: &str, err: LabelError) -> Self {
        ServiceError::invalid_label(field, err).into()
    }

    /// Several fields at fault (422 `validation_failed`).
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        ServiceError::Validation(errors).into()
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::Service(err) => service_parts(err),
            Self::MalformedJson(_) => (S::BAD_REQUEST, "malformed_json", "Malformed JSON"),
            Self::UploadTooLarge(_) => (
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            Self::UnsupportedUpload(_) => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            Self::PayloadTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            Self::RouteNotFound => (S::NOT_FOUND, "route_not_found", "Not found"),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            Self::Timeout => (S::REQUEST_TIMEOUT, "request_timeout", "Request timeout"),
            Self::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::InsufficientScope(_) => {
                (S::FORBIDDEN, "insufficient_scope", "Insufficient scope")
            }
            Self::RateLimited(_) => (S::TOO_MANY_REQUESTS, "rate_limited", "Too many requests"),
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.parts();
        let detail = match self {
            Self::Service(ServiceError::Validation(errors)) if errors.len() == 1 => {
                format!("{}: {}", errors[0].field, errors[0].message)
            }
            Self::Service(ServiceError::Validation(errors)) => {
                format!("{} fields are not valid", errors.len())
            }
            Self::Service(mismatch @ ServiceError::TypeMismatch { .. }) => {
                format!("{mismatch}; send \"allow_type_change\": true to change the prompt's type")
            }
            other => other.to_string(),
        };
        Problem {
            type_uri: format!("urn:promptreg:problem:{code}"),
            title,
            status: status.as_u16(),
            detail,
            code,
            errors: match self {
                Self::Service(err) => err.field_errors(),
                _ => Vec::new(),
            },
        }
    }
}

/// The status, code and title a use-case's error is answered with.
fn service_parts(err: &ServiceError) -> (StatusCode, &'static str, &'static str) {
    use ServiceError as E;
    use StatusCode as S;
    match err {
        E::Store(err) => store_parts(err),
        E::InvalidName { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_name", "Invalid name"),
        E::InvalidLabel { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_label", "Invalid label"),
        E::ReservedLabel { .. } => (S::UNPROCESSABLE_ENTITY, "reserved_label", "Reserved label"),
        E::Validation(_) => (
            S::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "Validation failed",
        ),
        E::TypeMismatch { .. } => (S::UNPROCESSABLE_ENTITY, "type_mismatch", "Type mismatch"),
        E::TemplateSyntax(_) => (
            S::UNPROCESSABLE_ENTITY,
            "template_syntax",
            "Template syntax error",
        ),
        E::MissingVariables(_) => (
            S::UNPROCESSABLE_ENTITY,
            "missing_variables",
            "Missing variables",
        ),
        E::InvalidVariables(_) => (
            S::UNPROCESSABLE_ENTITY,
            "invalid_variables",
            "Invalid variables",
        ),
        E::IncludeCycle(_) => (S::UNPROCESSABLE_ENTITY, "include_cycle", "Include cycle"),
        E::IncludeDepth(_) => (
            S::UNPROCESSABLE_ENTITY,
            "include_depth",
            "Includes nested too deep",
        ),
        E::IncludeNotFound(_) => (
            S::UNPROCESSABLE_ENTITY,
            "include_not_found",
            "Included prompt not found",
        ),
        E::IncludeInvalid(_) => (
            S::UNPROCESSABLE_ENTITY,
            "include_invalid",
            "Included prompt unusable",
        ),
        E::OutputTooLarge(_) => (
            S::UNPROCESSABLE_ENTITY,
            "output_too_large",
            "Output too large",
        ),
        E::RenderFailed(_) => (S::UNPROCESSABLE_ENTITY, "render_failed", "Render failed"),
        E::RenderLimit { .. } => (
            S::UNPROCESSABLE_ENTITY,
            "render_limit",
            "Render limit reached",
        ),
        E::GateNotFound(_) => (S::NOT_FOUND, "gate_not_found", "Gate not found"),
        E::MonitorNotFound(_) => (S::NOT_FOUND, "monitor_not_found", "Monitor not found"),
        E::ProviderNotFound(_) => (
            S::UNPROCESSABLE_ENTITY,
            "provider_not_found",
            "Provider not found",
        ),
        E::GateFailed { .. } => (S::PRECONDITION_FAILED, "gate_failed", "Gate failed"),
        E::InvalidItem(_) => (S::UNPROCESSABLE_ENTITY, "invalid_item", "Invalid item"),
        E::SignInRefused => (S::UNAUTHORIZED, "sign_in_refused", "Sign-in refused"),
        E::TooManySignIns(_) => (
            S::TOO_MANY_REQUESTS,
            "too_many_sign_ins",
            "Too many sign-ins",
        ),
        E::Unavailable => (S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
        E::WebhooksNotConfigured => (
            S::CONFLICT,
            "webhooks_not_configured",
            "Webhooks not configured",
        ),
        E::Internal(_) => (
            S::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        ),
    }
}

/// The status, code and title of what the store refused.
fn store_parts(err: &StoreError) -> (StatusCode, &'static str, &'static str) {
    use StatusCode as S;
    use StoreError as E;
    match err {
        E::PromptNotFound(_) => (S::NOT_FOUND, "prompt_not_found", "Prompt not found"),
        E::VersionNotFound { .. } => (S::NOT_FOUND, "version_not_found", "Version not found"),
        E::LabelNotFound { .. } => (S::NOT_FOUND, "label_not_found", "Label not found"),
        E::PromptExists(_) => (S::CONFLICT, "prompt_exists", "Prompt exists"),
        E::PromptArchived(_) => (S::CONFLICT, "prompt_archived", "Prompt archived"),
        E::VersionConflict(_) => (S::CONFLICT, "version_conflict", "Version conflict"),
        E::NoPreviousTarget { .. } => (S::CONFLICT, "no_previous_target", "No previous target"),
        E::ProjectNotFound(_) => (S::NOT_FOUND, "project_not_found", "Project not found"),
        E::ProjectExists(_) => (S::CONFLICT, "project_exists", "Project exists"),
        E::KeyNotFound => (S::NOT_FOUND, "key_not_found", "Key not found"),
        E::UserNotFound(_) => (S::NOT_FOUND, "user_not_found", "User not found"),
        E::UserExists(_) => (S::CONFLICT, "user_exists", "User exists"),
        E::DatasetNotFound(_) => (S::NOT_FOUND, "dataset_not_found", "Dataset not found"),
        E::JobNotFound => (S::NOT_FOUND, "job_not_found", "Job not found"),
        E::EvaluationNotFound => (S::NOT_FOUND, "evaluation_not_found", "Evaluation not found"),
        E::OptimizationNotFound => (
            S::NOT_FOUND,
            "optimization_not_found",
            "Optimization not found",
        ),
        E::ExperimentNotFound => (S::NOT_FOUND, "experiment_not_found", "Experiment not found"),
        E::ExperimentRunning(_) => (S::CONFLICT, "experiment_running", "Experiment running"),
        E::ExperimentEnded(_) => (S::CONFLICT, "experiment_ended", "Experiment ended"),
        E::ControlNotCurrent { .. } => (S::CONFLICT, "control_not_current", "Control not current"),
        E::WebhookNotFound => (S::NOT_FOUND, "webhook_not_found", "Webhook not found"),
        E::DeliveryNotFound => (S::NOT_FOUND, "delivery_not_found", "Delivery not found"),
        E::JobFinished(_) => (S::CONFLICT, "job_finished", "Job finished"),
        E::DatasetExists(_) => (S::CONFLICT, "dataset_exists", "Dataset exists"),
        E::DatasetArchived(_) => (S::CONFLICT, "dataset_archived", "Dataset archived"),
        E::DatasetInUse(_) => (S::CONFLICT, "dataset_in_use", "Dataset in use"),
        E::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
        // Turned into other service errors before they get here.
        E::ParentNotFound { .. }
        | E::InvalidItem(_)
        | E::JobNotHeld
        | E::Corrupt(_)
        | E::Database(_) => (
            S::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        ),
    }
}

/// What a `503 unavailable` asks a client to wait before trying again.
pub const UNAVAILABLE_RETRY_SECS: u64 = 2;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Service(ServiceError::Internal(cause)) = &self {
            // The cause is logged once, here; the client gets a generic detail.
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        // RFC 6750 challenges, and when to come back after a 429.
        let extra = match &self {
            Self::Unauthorized(_) => Some((
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"promptreg\"".to_owned(),
            )),
            Self::InsufficientScope(scope) => Some((
                header::WWW_AUTHENTICATE,
                format!(
                    "Bearer realm=\"promptreg\", error=\"insufficient_scope\", scope=\"{scope}\""
                ),
            )),
            Self::RateLimited(wait) => {
                Some((header::RETRY_AFTER, wait.as_secs().max(1).to_string()))
            }
            Self::Service(ServiceError::Unavailable) => {
                Some((header::RETRY_AFTER, UNAVAILABLE_RETRY_SECS.to_string()))
            }
            _ => None,
        };
        if let Some((name, value)) = extra {
            if let Ok(value) = header::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_carry_code_type_and_fields() {
        let err = ApiError::invalid_label("labels[1]", LabelError::Reserved("latest".into()));
        let problem = err.problem();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.code, "reserved_label");
        assert_eq!(problem.type_uri, "urn:promptreg:problem:reserved_label");
        assert_eq!(
            problem.errors,
            vec![FieldError::new(
                "labels[1]",
                "label \"latest\" is reserved: it always points at the newest version"
            )]
        );
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let problem = ApiError::from(ServiceError::Internal(anyhow::anyhow!(
            "syntax error at or near select"
        )))
        .problem();
        assert_eq!(problem.detail, "internal error");
    }
}
