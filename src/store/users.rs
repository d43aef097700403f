//! People who sign in to the web UI and their sessions. A user's writes are
//! audited (in the project the acting caller is in); sessions are stored by
//! the hash of their id and end on sign-out, expiry, the user's deletion or
//! password change, or the revocation of the key they were opened with.
//! `UserStore`, then `impl_sql!`, its SQL for both backends.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreResult;
use crate::domain::auth::Actor;
use crate::domain::users::{Role, Session, User};
use crate::domain::ProjectId;

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Audited in `audit_project`, the project the actor acts in.
    async fn insert_user(
        &self,
        new: NewUser,
        audit_project: ProjectId,
        actor: &Actor,
    ) -> StoreResult<User>;
    async fn get_user(&self, name: &str) -> StoreResult<User>;
    /// The user and its password hash, to check a sign-in against.
    async fn find_user_credentials(&self, name: &str) -> StoreResult<Option<(User, String)>>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    async fn count_users(&self) -> StoreResult<i64>;
    /// A new password also ends the user's sessions.
    async fn update_user(
        &self,
        name: &str,
        patch: UserPatch,
        audit_project: ProjectId,
        actor: &Actor,
    ) -> StoreResult<User>;
    /// Deletes the user and ends its sessions.
    async fn delete_user(
        &self,
        name: &str,
        audit_project: ProjectId,
        actor: &Actor,
    ) -> StoreResult<()>;

    /// Stores a session (and forgets expired ones).
    async fn insert_session(&self, new: NewSession) -> StoreResult<()>;
    /// The live session with this id hash: not expired, its user not
    /// deleted, its key not revoked.
    async fn find_session(&self, id_hash: &str) -> StoreResult<Option<Session>>;
    async fn update_session_project(&self, id_hash: &str, project: ProjectId) -> StoreResult<()>;
    async fn delete_session(&self, id_hash: &str) -> StoreResult<()>;
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub password_hash: String,
    pub roles: BTreeMap<String, Role>,
}

#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub password_hash: Option<String>,
    pub roles: Option<BTreeMap<String, Role>>,
}

/// Who a session acts for: exactly one of a user and a key.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id_hash: String,
    pub user_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub project_id: ProjectId,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// `UserStore` in portable SQL for backend `$store` on database `$db` (see
/// `sql::impl_store!`).
macro_rules! impl_sql {
    ($store:ident, $db:ty, $backend:literal) => {
        use serde_json::json;
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use crate::domain::users::{Session, SessionHolder, User};
        use crate::domain::ProjectId;
        use crate::store::rows::{SessionRow, UserRow, SESSION_SELECT, USER_SELECT};
        use crate::store::{
            is_unique_violation, now, NewSession, NewUser, StoreError, StoreResult, UserPatch,
            UserStore,
        };

        use super::$store;

        crate::store::sql::observed_impl! {
        impl UserStore for $store as $backend {
            async fn insert_user(&self, new: NewUser, audit_project: ProjectId, actor: &Actor) -> StoreResult<User> {
                let at = now();
                let user = User { id: Uuid::now_v7(), name: new.name.clone(), roles: new.roles.clone(), created_at: at, updated_at: at };
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "insert into app_user (id, name, password_hash, roles, created_at, updated_at) \
                     values ($1, $2, $3, $4, $5, $6)",
                )
                .bind(user.id)
                .bind(&user.name)
                .bind(&new.password_hash)
                .bind(Json(&user.roles))
                .bind(at)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| if is_unique_violation(&e) { StoreError::UserExists(new.name.clone()) } else { e.into() })?;
                let after = json!({"name": user.name, "roles": user.roles});
                Self::audit(&mut tx, audit_project, actor, "user.create", &format!("users/{}", user.name), None, Some(after)).await?;
                tx.commit().await?;
                Ok(user)
            }

            async fn get_user(&self, name: &str) -> StoreResult<User> {
                let row: Option<UserRow> = sqlx::query_as(&format!("{USER_SELECT} where u.name = $1"))
                    .bind(name.to_owned())
                    .fetch_optional(self.reader())
                    .await?;
                row.map(User::from).ok_or_else(|| StoreError::UserNotFound(name.to_owned()))
            }

            async fn find_user_credentials(&self, name: &str) -> StoreResult<Option<(User, String)>> {
                let row: Option<UserRow> = sqlx::query_as(&format!("{USER_SELECT} where u.name = $1"))
                    .bind(name.to_owned())
                    .fetch_optional(self.reader())
                    .await?;
                Ok(row.map(|row| {
                    let hash = row.password_hash.clone();
                    (User::from(row), hash)
                }))
            }

            async fn list_users(&self) -> StoreResult<Vec<User>> {
                let rows: Vec<UserRow> = sqlx::query_as(&format!("{USER_SELECT} order by u.name"))
                    .fetch_all(self.reader())
                    .await?;
                Ok(rows.into_iter().map(User::from).collect())
            }

            async fn count_users(&self) -> StoreResult<i64> {
                Ok(sqlx::query_scalar::<_, i64>("select count(*) from app_user").fetch_one(self.reader()).await?)
            }

            async fn update_user(&self, name: &str, patch: UserPatch, audit_project: ProjectId, actor: &Actor) -> StoreResult<User> {
                let mut tx = self.writer().begin().await?;
                let row: UserRow = sqlx::query_as(&format!("{USER_SELECT} where u.name = $1{}", Self::LOCK_ROW))
                    .bind(name.to_owned())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::UserNotFound(name.to_owned()))?;
                let before = json!({"name": row.name, "roles": row.roles.0});
                let mut user = User::from(row);
                user.updated_at = now();
                if let Some(roles) = patch.roles {
                    user.roles = roles;
                }
                sqlx::query("update app_user set roles = $1, updated_at = $2 where id = $3")
                    .bind(Json(&user.roles))
                    .bind(user.updated_at)
                    .bind(user.id)
                    .execute(&mut *tx)
                    .await?;
                let changed_password = patch.password_hash.is_some();
                if let Some(hash) = patch.password_hash {
                    sqlx::query("update app_user set password_hash = $1 where id = $2")
                        .bind(hash)
                        .bind(user.id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("delete from ui_session where user_id = $1")
                        .bind(user.id)
                        .execute(&mut *tx)
                        .await?;
                }
                let after = json!({"name": user.name, "roles": user.roles, "password_changed": changed_password});
                Self::audit(&mut tx, audit_project, actor, "user.update", &format!("users/{}", user.name), Some(before), Some(after)).await?;
                tx.commit().await?;
                Ok(user)
            }

            async fn delete_user(&self, name: &str, audit_project: ProjectId, actor: &Actor) -> StoreResult<()> {
                let mut tx = self.writer().begin().await?;
                let row: UserRow = sqlx::query_as(&format!("{USER_SELECT} where u.name = $1{}", Self::LOCK_ROW))
                    .bind(name.to_owned())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::UserNotFound(name.to_owned()))?;
                sqlx::query("delete from ui_session where user_id = $1")
                    .bind(row.id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("delete from app_user where id = $1")
                    .bind(row.id)
                    .execute(&mut *tx)
                    .await?;
                let before = json!({"name": row.name, "roles": row.roles.0});
                Self::audit(&mut tx, audit_project, actor, "user.delete", &format!("users/{name}"), Some(before), None).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn insert_session(&self, new: NewSession) -> StoreResult<()> {
                let at = now();
                let mut tx = self.writer().begin().await?;
                sqlx::query("delete from ui_session where expires_at <= $1")
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "insert into ui_session (id_hash, user_id, key_id, project_id, csrf_token, created_at, expires_at) \
                     values ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&new.id_hash)
                .bind(new.user_id)
                .bind(new.key_id)
                .bind(new.project_id)
                .bind(&new.csrf_token)
                .bind(at)
                .bind(new.expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn find_session(&self, id_hash: &str) -> StoreResult<Option<Session>> {
                let row: Option<SessionRow> = sqlx::query_as(&format!(
                    "{SESSION_SELECT} where s.id_hash = $1 and s.expires_at > $2 \
                     and (s.user_id is null or u.id is not null) \
                     and (s.key_id is null or (k.id is not null and k.revoked_at is null))"
                ))
                .bind(id_hash.to_owned())
                .bind(now())
                .fetch_optional(self.reader())
                .await?;
                let Some(row) = row else { return Ok(None) };
                let holder = match (row.user_id, row.user_name, row.user_roles, row.key_id, row.key_name, row.key_scopes) {
                    (Some(id), Some(name), Some(roles), _, _, _) => SessionHolder::User { id, name, roles: roles.0 },
                    (_, _, _, Some(id), Some(name), Some(scopes)) => SessionHolder::Key { id, name, scopes: scopes.0 },
                    _ => return Ok(None),
                };
                Ok(Some(Session {
                    project_id: row.project_id,
                    project: row.project,
                    csrf_token: row.csrf_token,
                    expires_at: row.expires_at,
                    holder,
                }))
            }

            async fn update_session_project(&self, id_hash: &str, project: ProjectId) -> StoreResult<()> {
                sqlx::query("update ui_session set project_id = $1 where id_hash = $2")
                    .bind(project)
                    .bind(id_hash.to_owned())
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
                sqlx::query("delete from ui_session where id_hash = $1")
                    .bind(id_hash.to_owned())
                    .execute(self.writer())
                    .await?;
                Ok(())
            }
        }
        }
    };
}

pub(crate) use impl_sql;
