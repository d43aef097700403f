//! People who sign in to the web UI: created, changed and deleted by an
//! admin (every change audited in the admin's project), each with a role per
//! project, and the first admin user made on first start. Passwords are
//! hashed with argon2id off the async threads; only the hash is stored.

use std::collections::BTreeMap;

use crate::domain::auth::Actor;
use crate::domain::users::{
    hash_password, parse_user_name, password_problem, random_token, Role, User, INIT_ADMIN,
};
use crate::domain::{ProjectId, DEFAULT_PROJECT};
use crate::store::{NewUser, UserPatch};

use super::{FieldError, Registry, ServiceError, ServiceResult};

/// Creates user `name` with `password` and `roles` (project name → role).
pub async fn create_user(
    registry: &Registry,
    audit_project: ProjectId,
    actor: &Actor,
    name: &str,
    password: &str,
    roles: BTreeMap<String, Role>,
) -> ServiceResult<User> {
    let name = parse_user_name(name).map_err(|e| ServiceError::invalid_name("name", e))?;
    check_password(password)?;
    check_roles(registry, &roles).await?;
    let password_hash = hash(password).await?;
    Ok(registry
        .store
        .insert_user(
            NewUser {
                name,
                password_hash,
                roles,
            },
            audit_project,
            actor,
        )
        .await?)
}

pub async fn list_users(registry: &Registry) -> ServiceResult<Vec<User>> {
    Ok(registry.store.list_users().await?)
}

pub async fn get_user(registry: &Registry, name: &str) -> ServiceResult<User> {
    Ok(registry.store.get_user(name).await?)
}

/// Replaces the password, the roles, or both; a new password ends the
/// user's sessions.
pub async fn update_user(
    registry: &Registry,
    audit_project: ProjectId,
    actor: &Actor,
    name: &str,
    password: Option<&str>,
    roles: Option<BTreeMap<String, Role>>,
) -> ServiceResult<User> {
    if let Some(password) = password {
        check_password(password)?;
    }
    if let Some(roles) = &roles {
        check_roles(registry, roles).await?;
    }
    let password_hash = match password {
        Some(password) => Some(hash(password).await?),
        None => None,
    };
    Ok(registry
        .store
        .update_user(
            name,
            UserPatch {
                password_hash,
                roles,
            },
            audit_project,
            actor,
        )
        .await?)
}

/// Deletes the user; its sessions end at once.
pub async fn delete_user(
    registry: &Registry,
    audit_project: ProjectId,
    actor: &Actor,
    name: &str,
) -> ServiceResult<()> {
    Ok(registry
        .store
        .delete_user(name, audit_project, actor)
        .await?)
}

/// At start: with `init_password`, creates user `admin` (admin of project
/// `default`) with it unless that user exists; without one, and with no
/// user at all, creates `admin` with a random password and returns it (to
/// be shown once).
pub async fn bootstrap_admin(
    registry: &Registry,
    init_password: Option<&str>,
) -> ServiceResult<Option<String>> {
    let store = &registry.store;
    let project = store.ensure_project(DEFAULT_PROJECT).await?;
    let (password, generated) = match init_password {
        Some(password) => {
            if store.find_user_credentials(INIT_ADMIN).await?.is_some() {
                return Ok(None);
            }
            (password.to_owned(), false)
        }
        None => {
            if store.count_users().await? > 0 {
                return Ok(None);
            }
            (random_token(24), true)
        }
    };
    let roles = BTreeMap::from([(DEFAULT_PROJECT.to_owned(), Role::Admin)]);
    create_user(
        registry,
        project,
        &Actor::system(),
        INIT_ADMIN,
        &password,
        roles,
    )
    .await?;
    Ok(generated.then_some(password))
}

fn check_password(password: &str) -> ServiceResult<()> {
    match password_problem(password) {
        Some(problem) => Err(ServiceError::validation("password", problem)),
        None => Ok(()),
    }
}

/// Every project a role names must exist.
async fn check_roles(registry: &Registry, roles: &BTreeMap<String, Role>) -> ServiceResult<()> {
    if roles.is_empty() {
        return Ok(());
    }
    let projects = registry.store.list_projects().await?;
    let errors: Vec<FieldError> = roles
        .keys()
        .filter(|name| !projects.iter().any(|p| &p.name == *name))
        .map(|name| {
            FieldError::new(
                format!("roles.{name}"),
                format!("no project named {name:?}"),
            )
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Validation(errors))
    }
}

async fn hash(password: &str) -> ServiceResult<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("password hashing task: {e}")))?
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("password hashing: {e}")))
}
