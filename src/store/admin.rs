//! Administration: projects, API keys and the audit log every write leaves.
//! `AdminStore`, then `impl_sql!`, its SQL for both backends.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PageRequest, StoreResult};
use crate::domain::auth::{Actor, Scope};
use crate::domain::{ApiKey, AuditEntry, AuditFilter, Page, Project, ProjectId};

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

    /// The entries of `project` that `filter` matches, newest first.
    async fn list_audit(
        &self,
        project: ProjectId,
        filter: &AuditFilter,
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

/// `AdminStore` in portable SQL for backend `$store` on database `$db` (see
/// `sql::impl_store!`).
macro_rules! impl_sql {
    ($store:ident, $db:ty, $backend:literal) => {
        use serde_json::json;
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use crate::domain::{ApiKey, AuditEntry, AuditFilter, Page, Project, ProjectId};
        use crate::store::rows::{KeyRow, AUDIT_SELECT, KEY_SELECT, PROJECT_SELECT};
        use crate::store::{
            is_unique_violation, now, page_from_overfetch, AdminStore, Invalidation, NewKey,
            PageKey, PageRequest, StoreError, StoreResult, StoredKey,
        };

        use super::$store;

        crate::store::sql::observed_impl! {
        impl AdminStore for $store as $backend {
            async fn ensure_project(&self, name: &str) -> StoreResult<ProjectId> {
                sqlx::query(
                    "insert into project (id, name, created_at) values ($1, $2, $3) \
                     on conflict (name) do nothing",
                )
                .bind(Uuid::now_v7())
                .bind(name)
                .bind(now())
                .execute(self.writer())
                .await?;
                Ok(sqlx::query_scalar::<_, Uuid>("select id from project where name = $1")
                    .bind(name)
                    .fetch_one(self.writer())
                    .await?)
            }

            async fn insert_project(&self, name: &str, actor: &Actor) -> StoreResult<Project> {
                let project = Project { id: Uuid::now_v7(), name: name.to_owned(), created_at: now() };
                let mut tx = self.writer().begin().await?;
                sqlx::query("insert into project (id, name, created_at) values ($1, $2, $3)")
                    .bind(project.id)
                    .bind(&project.name)
                    .bind(project.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| if is_unique_violation(&e) { StoreError::ProjectExists(name.to_owned()) } else { e.into() })?;
                Self::audit(&mut tx, project.id, actor, "project.create", &format!("projects/{name}"), None, Some(json!({"name": name}))).await?;
                tx.commit().await?;
                Ok(project)
            }

            async fn list_projects(&self) -> StoreResult<Vec<Project>> {
                Ok(sqlx::query_as(&format!("{PROJECT_SELECT} order by name"))
                    .fetch_all(self.reader())
                    .await?)
            }

            async fn get_project(&self, name: &str) -> StoreResult<Project> {
                sqlx::query_as(&format!("{PROJECT_SELECT} where name = $1"))
                    .bind(name)
                    .fetch_optional(self.reader())
                    .await?
                    .ok_or_else(|| StoreError::ProjectNotFound(name.to_owned()))
            }

            async fn insert_key(&self, project: ProjectId, new: NewKey, actor: &Actor) -> StoreResult<ApiKey> {
                let id = Uuid::now_v7();
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "insert into api_key (id, project_id, name, scopes, prefix, secret_hash, created_at) \
                     values ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(id)
                .bind(project)
                .bind(&new.name)
                .bind(Json(&new.scopes))
                .bind(&new.prefix)
                .bind(&new.secret_hash)
                .bind(now())
                .execute(&mut *tx)
                .await?;
                let key: ApiKey = sqlx::query_as::<_, KeyRow>(&format!("{KEY_SELECT} where k.id = $1"))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?
                    .into();
                let after = json!({"name": key.name, "scopes": key.scopes, "project": key.project, "prefix": key.prefix});
                Self::audit(&mut tx, project, actor, "key.create", &format!("keys/{id}"), None, Some(after)).await?;
                tx.commit().await?;
                Ok(key)
            }

            async fn find_keys_by_prefix(&self, prefix: &str) -> StoreResult<Vec<StoredKey>> {
                let rows: Vec<KeyRow> = sqlx::query_as(&format!("{KEY_SELECT} where k.prefix = $1"))
                    .bind(prefix)
                    .fetch_all(self.reader())
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|row| {
                        let secret_hash = row.secret_hash.clone();
                        StoredKey { key: row.into(), secret_hash }
                    })
                    .collect())
            }

            async fn list_keys(&self, project: ProjectId) -> StoreResult<Vec<ApiKey>> {
                let rows: Vec<KeyRow> = sqlx::query_as(&format!("{KEY_SELECT} where k.project_id = $1 order by k.id desc"))
                    .bind(project)
                    .fetch_all(self.reader())
                    .await?;
                Ok(rows.into_iter().map(ApiKey::from).collect())
            }

            async fn revoke_key(&self, project: ProjectId, id: Uuid, actor: &Actor) -> StoreResult<ApiKey> {
                let mut tx = self.writer().begin().await?;
                let row: KeyRow = sqlx::query_as(&format!("{KEY_SELECT} where k.id = $1 and k.project_id = $2"))
                    .bind(id)
                    .bind(project)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::KeyNotFound)?;
                if row.revoked_at.is_none() {
                    sqlx::query("update api_key set revoked_at = $1 where id = $2")
                        .bind(now())
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    let before = json!({"name": row.name, "revoked": false});
                    let after = json!({"name": row.name, "revoked": true});
                    Self::audit(&mut tx, project, actor, "key.revoke", &format!("keys/{id}"), Some(before), Some(after)).await?;
                    Self::notify(&mut tx, Invalidation::Key(id)).await?;
                }
                tx.commit().await?;
                let mut key = ApiKey::from(row);
                key.revoked = true;
                Ok(key)
            }

            async fn count_keys(&self) -> StoreResult<i64> {
                Ok(sqlx::query_scalar::<_, i64>("select count(*) from api_key").fetch_one(self.reader()).await?)
            }

            async fn list_audit(&self, project: ProjectId, filter: &AuditFilter, page: PageRequest) -> StoreResult<Page<AuditEntry>> {
                let mut query = sqlx::QueryBuilder::<$db>::new(format!("{AUDIT_SELECT} where project_id = "));
                query.push_bind(project);
                query.push(" and id < ").push_bind(page.after_int().unwrap_or(i64::MAX));
                if let Some(actor) = &filter.actor {
                    query.push(" and key_name = ").push_bind(actor.clone());
                }
                if let Some(action) = &filter.action {
                    query.push(" and action = ").push_bind(action.clone());
                }
                if let Some(target) = &filter.target {
                    // A plain prefix comparison (no `like`): both backends agree
                    // on case and on `_` and `%` in names.
                    let below = format!("{target}/");
                    query.push(" and (target = ").push_bind(target.clone());
                    query.push(" or substr(target, 1, length(").push_bind(below.clone());
                    query.push(")) = ").push_bind(below).push(")");
                }
                if let Some(from) = filter.from {
                    query.push(" and at >= ").push_bind(from);
                }
                if let Some(to) = filter.to {
                    query.push(" and at < ").push_bind(to);
                }
                query.push(" order by id desc limit ").push_bind(page.overfetch());
                let items: Vec<AuditEntry> = query.build_query_as().fetch_all(self.reader()).await?;
                Ok(page_from_overfetch(items, page.limit, |e| PageKey::Int(e.id)))
            }
        }
        }
    };
}

pub(crate) use impl_sql;
