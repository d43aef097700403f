//! Plain types and rules of the registry: names, version numbers, prompt content
//! and its hash. Nothing here does I/O; everything is unit-tested in place.
//! A type the store reads back as its columns are (no conversion) derives
//! `sqlx::FromRow`, so that its fields are listed once; the others have
//! private row types in the store.

pub mod auth;
pub mod content;
pub mod experiments;
pub mod jobs;
pub mod monitors;
pub mod names;
pub mod objective;
pub mod optimization;
pub mod text;
pub mod users;
pub mod versioning;
pub mod webhooks;

pub use content::{ChatMessage, Engine, PromptContent, PromptType};
pub use names::{LabelName, NameError, NameKind, PromptName, VersionRef};
pub use versioning::{next_version, Bump, VersionRuleError};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

/// A tenant. Every other row belongs to one.
pub type ProjectId = Uuid;

/// The project every install starts with.
pub const DEFAULT_PROJECT: &str = "default";

#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub id: Uuid,
    pub project_id: ProjectId,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A prompt as lists show it: with where its labels point and its newest version.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSummary {
    pub prompt: Prompt,
    pub labels: std::collections::BTreeMap<String, semver::Version>,
    pub latest_version: Option<semver::Version>,
    /// The content hash of the latest version: lets clients such as `push`
    /// tell unchanged content without fetching it.
    pub latest_content_hash: Option<String>,
    /// Who created the latest version (an audit name: `user:ada`, a key's name).
    pub latest_created_by: Option<String>,
}

/// An immutable, numbered snapshot of a prompt's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub id: Uuid,
    pub prompt_id: Uuid,
    pub prompt_name: String,
    pub version: semver::Version,
    pub seq: i64,
    pub content: PromptContent,
    /// What the content reads from the caller's input (sorted names and dotted paths).
    pub variables: Vec<String>,
    pub message: Option<String>,
    pub metadata: Map<String, Value>,
    pub parent: Option<semver::Version>,
    pub content_hash: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
}

/// Where a label points now.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub prompt_id: Uuid,
    pub name: String,
    pub version: semver::Version,
    pub version_id: Uuid,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<String>,
}

/// One recorded move of a label. `to` is `None` when the label was deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMove {
    pub id: i64,
    pub label: String,
    pub from: Option<semver::Version>,
    pub to: Option<semver::Version>,
    pub rollback: bool,
    pub at: DateTime<Utc>,
    pub by: Option<String>,
    /// What an experiment did to the label, or why its monitor fired (such
    /// an entry moves nothing).
    pub note: Option<String>,
}

/// A JSON value's type as a message names it: `a string`, `an object`, …
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A page of a list, newest first, and the cursor of the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A named, append-only collection of items that evaluations run over.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Dataset {
    pub id: Uuid,
    pub project_id: ProjectId,
    pub name: String,
    pub description: String,
    pub item_count: i64,
    /// Hidden from the list and taking no new items, still readable.
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One row of a dataset, immutable once written so evaluations reproduce.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DatasetItem {
    pub id: Uuid,
    /// 1, 2, 3… in upload order.
    pub seq: i64,
    /// The variables a prompt is rendered with.
    #[sqlx(json)]
    pub input: Map<String, Value>,
    /// The reference output, when there is one.
    #[sqlx(json(nullable))]
    pub expected: Option<Value>,
    #[sqlx(json)]
    pub metadata: Map<String, Value>,
    pub created_at: DateTime<Utc>,
}

/// An item as an upload gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub input: Map<String, Value>,
    pub expected: Option<Value>,
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// An API key as lists show it: never its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: Uuid,
    pub project_id: ProjectId,
    pub project: String,
    pub name: String,
    pub scopes: Vec<auth::Scope>,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked: bool,
}

/// One write, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub key_id: Option<Uuid>,
    pub key_name: String,
    /// A dotted name: `prompt.create`, `label.set`, `key.revoke`, …
    pub action: String,
    /// The resource, as its path below `/v1`: `prompts/greet/labels/production`.
    pub target: String,
    #[sqlx(json(nullable))]
    pub before: Option<Value>,
    #[sqlx(json(nullable))]
    pub after: Option<Value>,
}

/// Which audit entries a list shows; every field left `None` matches all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Who acted, exactly as the log names them: a key's name or `user:NAME`.
    pub actor: Option<String>,
    /// A dotted action name, exactly: `key.create`.
    pub action: Option<String>,
    /// A target and everything below it: `prompts/support` matches
    /// `prompts/support/greeting/labels/production`, not `prompts/supporter`.
    pub target: Option<String>,
    /// Entries at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Entries before this time.
    pub to: Option<DateTime<Utc>>,
}
