//! Gates: the rules an evaluation on a dataset must pass before a label of a
//! prompt may move to a version (the decision itself is the services' job).

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::auth::Actor;
use crate::domain::jobs::{Gate, GateRule};
use crate::domain::{LabelName, ProjectId, PromptName};

#[async_trait]
pub trait GateStore: Send + Sync {
    /// Creates or replaces the gate on `label` of a prompt.
    async fn put_gate(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        label: &LabelName,
        dataset: &str,
        rules: &[GateRule],
        actor: &Actor,
    ) -> StoreResult<Gate>;
    async fn find_gate(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        label: &str,
    ) -> StoreResult<Option<Gate>>;
    async fn list_gates(&self, project: ProjectId, prompt: &PromptName) -> StoreResult<Vec<Gate>>;
    /// False when there was no such gate.
    async fn delete_gate(
        &self,
        project: ProjectId,
        prompt: &PromptName,
        label: &LabelName,
        actor: &Actor,
    ) -> StoreResult<bool>;
}
