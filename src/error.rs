//! `ApiError`: the one error type handlers return, written as RFC 9457
//! `application/problem+json` with a stable `code`. Every conversion from the
//! layers below lives here, not in handlers.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::names::LabelError;
use crate::domain::NameError;
use crate::store::StoreError;

/// A field at fault: a JSON path into the request body, or a parameter name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    #[schema(example = "labels[0]")]
    pub field: String,
    #[schema(example = "label \"Prod\" must match [a-z][a-z0-9_-]{0,63}")]
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// RFC 9457 problem details.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:promptreg:problem:prompt_not_found",
    "title": "Prompt not found",
    "status": 404,
    "detail": "no prompt named \"greet\"",
    "code": "prompt_not_found"
}))]
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
    #[error("no prompt named {0:?}")]
    PromptNotFound(String),
    #[error("prompt {prompt:?} has no version {reference}")]
    VersionNotFound { prompt: String, reference: String },
    #[error("prompt {prompt:?} has no label {label:?}")]
    LabelNotFound { prompt: String, label: String },
    #[error("a prompt named {0:?} already exists")]
    PromptExists(String),
    #[error("prompt {0:?} is archived: it takes no new versions")]
    PromptArchived(String),
    #[error("{message}")]
    InvalidName { field: String, message: String },
    #[error("{message}")]
    InvalidLabel { field: String, message: String },
    #[error("{message}")]
    ReservedLabel { field: String, message: String },
    #[error("{0}")]
    VersionConflict(String),
    #[error("label {0:?} has no previous target to roll back to")]
    NoPreviousTarget(String),
    #[error("the request is not valid")]
    Validation(Vec<FieldError>),
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body is larger than this server's limit (http.body_limit_bytes)")]
    PayloadTooLarge,
    #[error("expected a JSON body (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("no route for this path")]
    RouteNotFound,
    #[error("this method is not allowed here")]
    MethodNotAllowed,
    #[error("the request took longer than this server's limit (http.request_timeout_secs)")]
    Timeout,
    #[error("the database is not reachable")]
    Unavailable,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn invalid_name(field: &str, err: NameError) -> Self {
        Self::InvalidName {
            field: field.into(),
            message: err.0,
        }
    }

    pub fn invalid_label(field: &str, err: LabelError) -> Self {
        match err {
            LabelError::Invalid(e) => Self::InvalidLabel {
                field: field.into(),
                message: e.0,
            },
            reserved @ LabelError::Reserved(_) => Self::ReservedLabel {
                field: field.into(),
                message: reserved.to_string(),
            },
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::PromptNotFound(_) => (S::NOT_FOUND, "prompt_not_found", "Prompt not found"),
            Self::VersionNotFound { .. } => {
                (S::NOT_FOUND, "version_not_found", "Version not found")
            }
            Self::LabelNotFound { .. } => (S::NOT_FOUND, "label_not_found", "Label not found"),
            Self::PromptExists(_) => (S::CONFLICT, "prompt_exists", "Prompt exists"),
            Self::PromptArchived(_) => (S::CONFLICT, "prompt_archived", "Prompt archived"),
            Self::InvalidName { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_name", "Invalid name"),
            Self::InvalidLabel { .. } => {
                (S::UNPROCESSABLE_ENTITY, "invalid_label", "Invalid label")
            }
            Self::ReservedLabel { .. } => {
                (S::UNPROCESSABLE_ENTITY, "reserved_label", "Reserved label")
            }
            Self::VersionConflict(_) => (S::CONFLICT, "version_conflict", "Version conflict"),
            Self::NoPreviousTarget(_) => (S::CONFLICT, "no_previous_target", "No previous target"),
            Self::Validation(_) => (
                S::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation failed",
            ),
            Self::MalformedJson(_) => (S::BAD_REQUEST, "malformed_json", "Malformed JSON"),
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
            Self::Unavailable => (S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
            Self::Internal(_) => (
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Validation(errors) => errors.clone(),
            Self::InvalidName { field, message }
            | Self::InvalidLabel { field, message }
            | Self::ReservedLabel { field, message } => vec![FieldError::new(field, message)],
            _ => Vec::new(),
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.parts();
        let detail = match self {
            Self::Validation(errors) if errors.len() == 1 => {
                format!("{}: {}", errors[0].field, errors[0].message)
            }
            Self::Validation(errors) => format!("{} fields are not valid", errors.len()),
            other => other.to_string(),
        };
        Problem {
            type_uri: format!("urn:promptreg:problem:{code}"),
            title,
            status: status.as_u16(),
            detail,
            code,
            errors: self.field_errors(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            // The cause is logged once, here; the client gets a generic detail.
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

/// Store errors carry no prompt name; handlers add it with [`ApiError::from_store`].
impl ApiError {
    pub fn from_store(err: StoreError, prompt: &str) -> Self {
        match err {
            StoreError::PromptNotFound => Self::PromptNotFound(prompt.into()),
            StoreError::VersionNotFound(reference) => Self::VersionNotFound {
                prompt: prompt.into(),
                reference,
            },
            StoreError::LabelNotFound(label) => Self::LabelNotFound {
                prompt: prompt.into(),
                label,
            },
            StoreError::PromptExists => Self::PromptExists(prompt.into()),
            StoreError::PromptArchived => Self::PromptArchived(prompt.into()),
            StoreError::VersionConflict(message) => Self::VersionConflict(message),
            StoreError::NoPreviousTarget(label) => Self::NoPreviousTarget(label),
            StoreError::ParentNotFound(parent) => Self::validation(
                "parent",
                format!("prompt {prompt:?} has no version {parent}"),
            ),
            StoreError::Corrupt(message) => Self::Internal(anyhow::anyhow!(message)),
            StoreError::Database(err) => match err {
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                    tracing::error!(error = %err, "database unavailable");
                    Self::Unavailable
                }
                other => Self::Internal(other.into()),
            },
        }
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
        let problem =
            ApiError::Internal(anyhow::anyhow!("syntax error at or near select")).problem();
        assert_eq!(problem.detail, "internal error");
    }
}
