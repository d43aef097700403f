//! `ServiceError`: the one error type the use-cases return. It names what
//! was refused and the field or subject at fault, and knows nothing of HTTP:
//! each front door (problem+json on `/v1`, Langfuse's `{message, error}`,
//! the HTML pages) decides how to show it.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::names::LabelError;
use crate::domain::{NameError, PromptType};
use crate::services::render::RenderError;
use crate::store::StoreError;
use crate::template::TemplateError;

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

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Something missing, existing already, or in the wrong state, as the
    /// store found it; it names its subject.
    #[error(transparent)]
    Store(StoreError),
    #[error("{message}")]
    InvalidName { field: String, message: String },
    #[error("{message}")]
    InvalidLabel { field: String, message: String },
    #[error("{message}")]
    ReservedLabel { field: String, message: String },
    #[error("the request is not valid")]
    Validation(Vec<FieldError>),
    /// A version of another type than the prompt's latest, not asked for.
    #[error("prompt {prompt:?} is a {} prompt; this version is {}", .was.as_str(), .is.as_str())]
    TypeMismatch {
        prompt: String,
        was: PromptType,
        is: PromptType,
    },
    #[error("{0}")]
    TemplateSyntax(FieldError),
    #[error("missing variables: {}", .0.join(", "))]
    MissingVariables(Vec<String>),
    /// Against the input schema, or a chat history that is not messages.
    #[error("the variables are not valid: {}", first_of(.0))]
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
    /// The render took more steps or time than allowed; `limit` is `steps`
    /// or `time`.
    #[error("{message}")]
    RenderLimit {
        limit: &'static str,
        message: String,
    },
    #[error("label {0:?} has no gate")]
    GateNotFound(String),
    #[error("label {0:?} has no monitor")]
    MonitorNotFound(String),
    #[error("{0}")]
    ProviderNotFound(String),
    #[error("label {label:?} is gated: {reason}")]
    GateFailed {
        label: String,
        reason: String,
        failed: Vec<FieldError>,
    },
    /// An uploaded item was refused; nothing of the upload was kept.
    #[error("{}; nothing of this upload was kept", .0.message)]
    InvalidItem(FieldError),
    /// A sign-in with an unknown name, a wrong password or an unknown key;
    /// which of them is not said.
    #[error("the name and password, or the key, are not valid")]
    SignInRefused,
    #[error("too many failed sign-ins; retry in {} minutes", .0.as_secs().div_ceil(60).max(1))]
    TooManySignIns(std::time::Duration),
    #[error("the database is not reachable")]
    Unavailable,
    /// No `webhooks.secret_key`: signing secrets could not be kept safely.
    #[error("webhooks are not configured on this server: set webhooks.secret_key")]
    WebhooksNotConfigured,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The first error, and how many more there are.
fn first_of(errors: &[FieldError]) -> String {
    match errors {
        [] => "no detail".to_owned(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

impl ServiceError {
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

    /// The fields at fault, for the `errors` of a problem document.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Validation(errors) | Self::InvalidVariables(errors) => errors.clone(),
            Self::TemplateSyntax(error) | Self::InvalidItem(error) => vec![error.clone()],
            Self::GateFailed { failed, .. } => failed.clone(),
            Self::TypeMismatch { .. } => vec![FieldError::new("type", self.to_string())],
            Self::MissingVariables(names) => names
                .iter()
                .map(|n| FieldError::new(n, "required by the template but not given"))
                .collect(),
            Self::RenderLimit { limit, message } => vec![FieldError::new(*limit, message)],
            Self::InvalidName { field, message }
            | Self::InvalidLabel { field, message }
            | Self::ReservedLabel { field, message } => vec![FieldError::new(field, message)],
            _ => Vec::new(),
        }
    }
}

impl From<TemplateError> for ServiceError {
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
            // A placeholder's variable is a field of the request's `variables`.
            TemplateError::InvalidPlaceholder { field, message } => {
                Self::InvalidVariables(vec![FieldError::new(format!("variables.{field}"), message)])
            }
            TemplateError::OutputTooLarge { limit } => Self::OutputTooLarge(limit),
            TemplateError::RenderLimit { limit, message } => Self::RenderLimit { limit, message },
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

impl From<RenderError> for ServiceError {
    fn from(err: RenderError) -> Self {
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
                source: source @ (StoreError::Unavailable(_) | StoreError::Database(_)),
                ..
            } => Self::from(source),
            e @ (RenderError::IncludeNotFound { .. } | RenderError::IncludeUnlabelled { .. }) => {
                Self::IncludeNotFound(e.to_string())
            }
            RenderError::Store(e) => Self::from(e),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            e @ StoreError::ParentNotFound { .. } => Self::validation("parent", e.to_string()),
            StoreError::InvalidItem(e) => Self::InvalidItem(FieldError {
                field: format!("items[{}]", e.item.saturating_sub(1)),
                message: e.to_string(),
                line: e.line.and_then(|l| usize::try_from(l).ok()),
                column: None,
            }),
            StoreError::Unavailable(cause) => {
                tracing::error!(error = %cause, "database unavailable");
                Self::Unavailable
            }
            e @ (StoreError::Corrupt(_) | StoreError::JobNotHeld | StoreError::Database(_)) => {
                Self::Internal(e.into())
            }
            other => Self::Store(other),
        }
    }
}
