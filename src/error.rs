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
use crate::render::RenderError;
use crate::store::StoreError;
use crate::template::TemplateError;

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            e @ (AuthError::Missing | AuthError::Invalid) => Self::Unauthorized(e.to_string()),
            AuthError::InsufficientScope(scope) => Self::InsufficientScope(scope),
            AuthError::RateLimited(wait) => Self::RateLimited(wait),
            AuthError::Store(e) => Self::from_store(e, ""),
        }
    }
}

impl From<TemplateError> for ApiError {
    fn from(err: TemplateError) -> Self {
        match err {
            TemplateError::Syntax {
                message_index,
                line,
                column,
                message,
            } => {
                let field = match message_index {
                    Some(i) => format!("messages[{i}].content"),
                    None => "template".to_owned(),
                };
                Self::TemplateSyntax(FieldError {
                    field,
                    message,
                    line,
                    column,
                })
            }
            TemplateError::MissingVariables(names) => Self::MissingVariables(names),
            TemplateError::InvalidPlaceholder { field, message } => {
                Self::InvalidVariables(vec![FieldError::new(format!("/{field}"), message)])
            }
            TemplateError::OutputTooLarge { limit } => Self::OutputTooLarge(limit),
            TemplateError::Render {
                message_index: Some(i),
                message,
            } => Self::RenderFailed(format!("messages[{i}]: {message}")),
            TemplateError::Render {
                message_index: None,
                message,
            } => Self::RenderFailed(message),
        }
    }
}

/// A field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// A JSON path into the body (`labels[0]`), a parameter, a variable name
    /// or a JSON pointer into the variables (`/customer/age`).
    #[schema(example = "labels[0]")]
    pub field: String,
    #[schema(example = "label \"Prod\" must match [a-z][a-z0-9_-]{0,63}")]
    pub message: String,
    /// For template syntax errors: 1-based line and column in that template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl From<crate::domain::content::ContentError> for FieldError {
    fn from(e: crate::domain::content::ContentError) -> Self {
        Self::new(e.field, e.message)
    }
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.field)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, " (line {line}, column {column})")?;
        } else if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        write!(f, ": {}", self.message)
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
    #[error("{0}")]
    TemplateSyntax(FieldError),
    #[error("missing variables: {}", .0.join(", "))]
    MissingVariables(Vec<String>),
    #[error("the variables do not match the input schema")]
    InvalidVariables(Vec<FieldError>),
    #[error("{0}")]
    IncludeCycle(String),
    #[error("{0}")]
    IncludeDepth(String),
    #[error("{0}")]
    IncludeNotFound(String),
    #[error("{0}")]
    IncludeInvalid(String),
    #[error("the rendered output is larger than {0} bytes")]
    OutputTooLarge(usize),
    #[error("{0}")]
    RenderFailed(String),
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
    #[error("no project named {0:?}")]
    ProjectNotFound(String),
    #[error("a project named {0:?} already exists")]
    ProjectExists(String),
    #[error("no key with this id in your project")]
    KeyNotFound,
    #[error("no dataset named {0:?}")]
    DatasetNotFound(String),
    #[error("no job with this id in your project")]
    JobNotFound,
    #[error("label {0:?} has no gate")]
    GateNotFound(String),
    #[error("no evaluation with this id in your project")]
    EvaluationNotFound,
    #[error("no optimization with this id in your project")]
    OptimizationNotFound,
    #[error("the job already {0}; there is nothing to cancel")]
    JobFinished(&'static str),
    #[error("{0}")]
    ProviderNotFound(String),
    #[error("moving label {label:?} needs a succeeded evaluation meeting its gate: {reason}")]
    GateFailed {
        label: String,
        reason: String,
        failed: Vec<FieldError>,
    },
    #[error("a dataset named {0:?} already exists")]
    DatasetExists(String),
    /// An uploaded item was refused; nothing of the upload was kept.
    #[error("{}; nothing of this upload was kept", .0.message)]
    InvalidItem(FieldError),
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
            Self::TemplateSyntax(_) => (
                S::UNPROCESSABLE_ENTITY,
                "template_syntax",
                "Template syntax error",
            ),
            Self::MissingVariables(_) => (
                S::UNPROCESSABLE_ENTITY,
                "missing_variables",
                "Missing variables",
            ),
            Self::InvalidVariables(_) => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_variables",
                "Invalid variables",
            ),
            Self::IncludeCycle(_) => (S::UNPROCESSABLE_ENTITY, "include_cycle", "Include cycle"),
            Self::IncludeDepth(_) => (
                S::UNPROCESSABLE_ENTITY,
                "include_depth",
                "Includes nested too deep",
            ),
            Self::IncludeNotFound(_) => (
                S::UNPROCESSABLE_ENTITY,
                "include_not_found",
                "Included prompt not found",
            ),
            Self::IncludeInvalid(_) => (
                S::UNPROCESSABLE_ENTITY,
                "include_invalid",
                "Included prompt unusable",
            ),
            Self::OutputTooLarge(_) => (
                S::UNPROCESSABLE_ENTITY,
                "output_too_large",
                "Output too large",
            ),
            Self::RenderFailed(_) => (S::UNPROCESSABLE_ENTITY, "render_failed", "Render failed"),
            Self::Timeout => (S::REQUEST_TIMEOUT, "request_timeout", "Request timeout"),
            Self::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::InsufficientScope(_) => {
                (S::FORBIDDEN, "insufficient_scope", "Insufficient scope")
            }
            Self::RateLimited(_) => (S::TOO_MANY_REQUESTS, "rate_limited", "Too many requests"),
            Self::ProjectNotFound(_) => (S::NOT_FOUND, "project_not_found", "Project not found"),
            Self::ProjectExists(_) => (S::CONFLICT, "project_exists", "Project exists"),
            Self::KeyNotFound => (S::NOT_FOUND, "key_not_found", "Key not found"),
            Self::DatasetNotFound(_) => (S::NOT_FOUND, "dataset_not_found", "Dataset not found"),
            Self::JobNotFound => (S::NOT_FOUND, "job_not_found", "Job not found"),
            Self::GateNotFound(_) => (S::NOT_FOUND, "gate_not_found", "Gate not found"),
            Self::EvaluationNotFound => {
                (S::NOT_FOUND, "evaluation_not_found", "Evaluation not found")
            }
            Self::OptimizationNotFound => (
                S::NOT_FOUND,
                "optimization_not_found",
                "Optimization not found",
            ),
            Self::JobFinished(_) => (S::CONFLICT, "job_finished", "Job finished"),
            Self::ProviderNotFound(_) => (
                S::UNPROCESSABLE_ENTITY,
                "provider_not_found",
                "Provider not found",
            ),
            Self::GateFailed { .. } => (S::PRECONDITION_FAILED, "gate_failed", "Gate failed"),
            Self::DatasetExists(_) => (S::CONFLICT, "dataset_exists", "Dataset exists"),
            Self::InvalidItem(_) => (S::UNPROCESSABLE_ENTITY, "invalid_item", "Invalid item"),
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
            Self::Validation(errors) | Self::InvalidVariables(errors) => errors.clone(),
            Self::TemplateSyntax(error) | Self::InvalidItem(error) => vec![error.clone()],
            Self::GateFailed { failed, .. } => failed.clone(),
            Self::MissingVariables(names) => names
                .iter()
                .map(|n| FieldError::new(n, "required by the template but not given"))
                .collect(),
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

/// Store and render errors carry no prompt name; handlers add it.
impl ApiError {
    pub fn from_render(err: RenderError, prompt: &str) -> Self {
        match err {
            RenderError::Template(t) => Self::from(t),
            RenderError::InvalidSchema { field, message } => Self::validation(field, message),
            RenderError::InvalidVariables(errors) => Self::InvalidVariables(
                errors
                    .into_iter()
                    .map(|(pointer, message)| FieldError::new(pointer, message))
                    .collect(),
            ),
            e @ RenderError::IncludeCycle(_) => Self::IncludeCycle(e.to_string()),
            e @ RenderError::IncludeDepth(_) => Self::IncludeDepth(e.to_string()),
            e @ RenderError::IncludeInvalid { .. } => Self::IncludeInvalid(e.to_string()),
            RenderError::IncludeNotFound {
                source: StoreError::Database(db),
                ..
            } => Self::from_store(StoreError::Database(db), prompt),
            e @ RenderError::IncludeNotFound { .. } => Self::IncludeNotFound(e.to_string()),
            RenderError::Store(e) => Self::from_store(e, prompt),
        }
    }

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
            StoreError::ProjectNotFound => Self::ProjectNotFound(prompt.into()),
            StoreError::ProjectExists => Self::ProjectExists(prompt.into()),
            StoreError::KeyNotFound => Self::KeyNotFound,
            StoreError::DatasetNotFound => Self::DatasetNotFound(prompt.into()),
            StoreError::JobNotFound => Self::JobNotFound,
            StoreError::EvaluationNotFound => Self::EvaluationNotFound,
            StoreError::OptimizationNotFound => Self::OptimizationNotFound,
            StoreError::JobFinished(status) => Self::JobFinished(status.as_str()),
            StoreError::DatasetExists => Self::DatasetExists(prompt.into()),
            StoreError::InvalidItem(e) => Self::InvalidItem(FieldError {
                field: format!("items[{}]", e.item.saturating_sub(1)),
                message: e.to_string(),
                line: e.line.and_then(|l| usize::try_from(l).ok()),
                column: None,
            }),
            StoreError::Corrupt(message) => Self::Internal(anyhow::anyhow!(message)),
            StoreError::JobNotHeld => Self::Internal(anyhow::anyhow!("job not held")),
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
