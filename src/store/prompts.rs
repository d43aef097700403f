//! Prompts, their versions and their labels: the registry's core use-cases.
//! Creating a version may move labels in the same transaction; every label
//! move is recorded, so that a rollback can walk back through history.

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{PageRequest, StoreResult};
use crate::domain::auth::Actor;
use crate::domain::{
    Bump, Label, LabelMove, LabelName, Page, ProjectId, Prompt, PromptContent, PromptName,
    PromptSummary, Version, VersionRef,
};

#[async_trait]
pub trait PromptStore: Send + Sync {
    async fn insert_prompt(
        &self,
        project: ProjectId,
        new: NewPrompt,
        actor: &Actor,
    ) -> StoreResult<Prompt>;
    async fn get_prompt(&self, project: ProjectId, name: &PromptName)
        -> StoreResult<PromptSummary>;
    async fn list_prompts(
        &self,
        project: ProjectId,
        filter: &PromptFilter,
        page: PageRequest,
    ) -> StoreResult<Page<PromptSummary>>;
    async fn update_prompt(
        &self,
        project: ProjectId,
        name: &PromptName,
        patch: PromptPatch,
        actor: &Actor,
    ) -> StoreResult<PromptSummary>;

    async fn create_version(
        &self,
        project: ProjectId,
        name: &PromptName,
        new: NewVersion,
        actor: &Actor,
    ) -> StoreResult<CreatedVersion>;
    async fn get_version(
        &self,
        project: ProjectId,
        name: &PromptName,
        reference: &VersionRef,
    ) -> StoreResult<Version>;
    async fn list_versions(
        &self,
        project: ProjectId,
        name: &PromptName,
        page: PageRequest,
    ) -> StoreResult<Page<Version>>;

    async fn list_labels(&self, project: ProjectId, name: &PromptName) -> StoreResult<Vec<Label>>;
    async fn set_label(
        &self,
        project: ProjectId,
        name: &PromptName,
        label: &LabelName,
        version: &semver::Version,
        actor: &Actor,
    ) -> StoreResult<Label>;
    async fn delete_label(
        &self,
        project: ProjectId,
        name: &PromptName,
        label: &LabelName,
        actor: &Actor,
    ) -> StoreResult<Label>;
    async fn rollback_label(
        &self,
        project: ProjectId,
        name: &PromptName,
        label: &LabelName,
        actor: &Actor,
    ) -> StoreResult<Label>;
    async fn list_label_moves(
        &self,
        project: ProjectId,
        name: &PromptName,
        label: &LabelName,
        page: PageRequest,
    ) -> StoreResult<Page<LabelMove>>;
}

#[derive(Debug, Clone)]
pub struct NewPrompt {
    pub name: PromptName,
    pub description: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct PromptPatch {
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub archived: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct PromptFilter {
    /// Exactly this name (archived or not, when `include_archived`).
    pub name: Option<PromptName>,
    pub tag: Option<String>,
    pub query: Option<String>,
    pub include_archived: bool,
}

/// What a caller asks for when posting content. Numbering, parent and
/// idempotency are decided inside the store's transaction.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub content: PromptContent,
    pub variables: Vec<String>,
    pub message: Option<String>,
    pub metadata: Map<String, Value>,
    pub version: Option<semver::Version>,
    pub bump: Option<Bump>,
    pub parent: Option<semver::Version>,
    /// `Some(None)`: the caller expects the prompt to have no version yet.
    pub expected_latest: Option<Option<semver::Version>>,
    pub labels: Vec<LabelName>,
}

#[derive(Debug, Clone)]
pub struct CreatedVersion {
    pub version: Version,
    /// False when the content equalled the latest version's and nothing was created.
    pub created: bool,
}
