//! Administration: projects, API keys and the audit log every write leaves.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PageRequest, StoreResult};
use crate::domain::auth::{Actor, Scope};
use crate::domain::{ApiKey, AuditEntry, Page, Project, ProjectId};

#[async_trait]
pub trait AdminStore: Send + Sync {
    /// The id of project `name`, created if missing.
    async fn ensure_project(&self, name: &str) -> StoreResult<ProjectId>;
    async fn insert_project(&self, name: &str, actor: &Actor) -> StoreResult<Project>;
    async fn list_projects(&self) -> StoreResult<Vec<Project>>;
    async fn get_project(&self, name: &str) -> StoreResult<Project>;

    async fn insert_key(
        &self,
        project: ProjectId,
        new: NewKey,
        actor: &Actor,
    ) -> StoreResult<ApiKey>;
    /// Every key (any project, revoked too) whose secret starts with `prefix`.
    async fn find_keys_by_prefix(&self, prefix: &str) -> StoreResult<Vec<StoredKey>>;
    async fn list_keys(&self, project: ProjectId) -> StoreResult<Vec<ApiKey>>;
    async fn revoke_key(&self, project: ProjectId, id: Uuid, actor: &Actor) -> StoreResult<ApiKey>;
    async fn count_keys(&self) -> StoreResult<i64>;

    async fn list_audit(
        &self,
        project: ProjectId,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEntry>>;
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub scopes: Vec<Scope>,
    /// The secret's display prefix and its hash; the secret itself is never stored.
    pub prefix: String,
    pub secret_hash: String,
}

/// A key with its hash, to check a presented secret against.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub key: ApiKey,
    pub secret_hash: String,
}
