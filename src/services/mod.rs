//! The use-cases, in the user's words: every front door (the JSON API, the
//! Langfuse routes, the HTML pages, the worker) calls these and nothing
//! below them. Each function takes the caller and typed inputs, enforces
//! every rule that must hold for all callers (gates, audit, cache
//! invalidation), and returns domain values or one [`ServiceError`].

pub mod admin;
pub mod datasets;
pub mod drafts;
pub mod error;
pub mod evaluations;
pub mod experiments;
pub mod feedback;
pub mod jobs;
pub mod labels;
pub mod monitors;
pub mod optimizations;
pub mod prompts;
pub mod registry;
pub mod render;
pub mod sessions;
pub mod users;
pub mod versions;
pub mod webhooks;

pub use error::{FieldError, ServiceError};
pub use registry::Registry;

pub type ServiceResult<T> = Result<T, ServiceError>;
