//! Administration: API keys, projects and the audit log. Keys are made and
//! revoked through the [`Authenticator`], which caches verified keys and
//! must forget a revoked one at once.

use uuid::Uuid;

use crate::auth::Authenticator;
use crate::domain::auth::{Actor, KeySecret, Scope};
use crate::domain::names::parse_project_name;
use crate::domain::users::User;
use crate::domain::{ApiKey, AuditEntry, AuditFilter, Page, Project, ProjectId};
use crate::store::PageRequest;

use super::{Registry, ServiceError, ServiceResult};

const MAX_KEY_NAME: usize = 64;

/// Creates a key in `project` (by name; the caller's own when `None`) and
/// answers it with its secret, which is never stored and never shown again.
pub async fn create_key(
    registry: &Registry,
    auth: &Authenticator,
    own_project: ProjectId,
    actor: &Actor,
    name: &str,
    mut scopes: Vec<Scope>,
    project: Option<&str>,
) -> ServiceResult<(ApiKey, KeySecret)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_KEY_NAME || name.chars().any(char::is_control)
    {
        return Err(ServiceError::validation(
            "name",
            format!("1 to {MAX_KEY_NAME} printable characters"),
        ));
    }
    if scopes.is_empty() {
        return Err(ServiceError::validation(
            "scopes",
            "give at least one scope",
        ));
    }
    let project = match project {
        None => own_project,
        Some(project) => registry.store.get_project(project).await?.id,
    };
    scopes.sort();
    scopes.dedup();
    Ok(auth.create_key(project, name, scopes, actor).await?)
}

/// What an administrator looks after: the project's keys (newest first),
/// every user (by name) and every project (by name).
#[derive(Debug, Clone)]
pub struct Overview {
    pub keys: Vec<ApiKey>,
    pub users: Vec<User>,
    pub projects: Vec<Project>,
}

pub async fn overview(registry: &Registry, project: ProjectId) -> ServiceResult<Overview> {
    Ok(Overview {
        keys: registry.store.list_keys(project).await?,
        users: registry.store.list_users().await?,
        projects: registry.store.list_projects().await?,
    })
}

pub async fn list_keys(registry: &Registry, project: ProjectId) -> ServiceResult<Vec<ApiKey>> {
    Ok(registry.store.list_keys(project).await?)
}

pub async fn revoke_key(
    auth: &Authenticator,
    project: ProjectId,
    actor: &Actor,
    id: Uuid,
) -> ServiceResult<ApiKey> {
    Ok(auth.revoke_key(project, id, actor).await?)
}

pub async fn create_project(
    registry: &Registry,
    actor: &Actor,
    name: &str,
) -> ServiceResult<Project> {
    let name = parse_project_name(name).map_err(|e| ServiceError::invalid_name("name", e))?;
    Ok(registry.store.insert_project(&name, actor).await?)
}

pub async fn list_projects(registry: &Registry) -> ServiceResult<Vec<Project>> {
    Ok(registry.store.list_projects().await?)
}

/// The audit entries of `project` that `filter` matches, newest first.
pub async fn list_audit(
    registry: &Registry,
    project: ProjectId,
    filter: &AuditFilter,
    page: PageRequest,
) -> ServiceResult<Page<AuditEntry>> {
    if let (Some(from), Some(to)) = (filter.from, filter.to) {
        if from >= to {
            return Err(ServiceError::validation("to", "must be after `from`"));
        }
    }
    Ok(registry.store.list_audit(project, filter, page).await?)
}
