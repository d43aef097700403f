//! Users: the people who sign in to the web UI, each with a role per
//! project. Admin scope only; passwords are never answered.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{scope, Auth};
use super::extract::{Json, Path};
use super::AppState;
use crate::domain::users::{Role, User};
use crate::error::{ApiError, Problem};
use crate::services::users;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "ada", "password": "correct horse battery", "roles": {"default": "releaser"}}))]
pub struct CreateUserRequest {
    /// `[a-z0-9][a-z0-9._-]{0,63}`
    name: String,
    /// 12 to 1024 characters; stored only as an argon2id hash.
    password: String,
    /// Project name → role. Each role includes the one before it: `viewer`
    /// reads, `editor` also writes, `releaser` also promotes, `evaluator`
    /// also evaluates, `admin` may do everything.
    #[serde(default)]
    roles: BTreeMap<String, Role>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"roles": {"default": "viewer"}}))]
pub struct UpdateUserRequest {
    /// A new password; the user's sessions end.
    password: Option<String>,
    /// Replaces every role.
    roles: Option<BTreeMap<String, Role>>,
}

#[derive(Serialize, ToSchema)]
pub struct UserResponse {
    id: Uuid,
    #[schema(example = "ada")]
    name: String,
    #[schema(example = json!({"default": "releaser"}))]
    roles: BTreeMap<String, Role>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<User> for UserResponse {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            name: u.name,
            roles: u.roles,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    items: Vec<UserResponse>,
}

/// Create a user who can sign in to the web UI.
#[utoipa::path(post, path = "/v1/users", tag = "admin",
    security(("bearer" = ["admin"])),
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Created", body = UserResponse),
        (status = 409, description = "`user_exists`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_user(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Json(body): Json<CreateUserRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let user = users::create_user(
        &state.registry,
        auth.project,
        &auth.actor(),
        &body.name,
        &body.password,
        body.roles,
    )
    .await?;
    let location = format!("/v1/users/{}", user.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(UserResponse::from(user)),
    ))
}

/// List every user (never their passwords).
#[utoipa::path(get, path = "/v1/users", tag = "admin",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The users, by name", body = UserList),
    ))]
pub async fn list_users(
    State(state): State<AppState>,
    _auth: Auth<scope::Admin>,
) -> Result<axum::Json<UserList>, ApiError> {
    let users = users::list_users(&state.registry).await?;
    Ok(axum::Json(UserList {
        items: users.into_iter().map(UserResponse::from).collect(),
    }))
}

/// Get a user.
#[utoipa::path(get, path = "/v1/users/{name}", tag = "admin",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "The user's name")),
    responses(
        (status = 200, description = "The user", body = UserResponse),
        (status = 404, description = "`user_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_user(
    State(state): State<AppState>,
    _auth: Auth<scope::Admin>,
    Path(name): Path<String>,
) -> Result<axum::Json<UserResponse>, ApiError> {
    let user = users::get_user(&state.registry, &name).await?;
    Ok(axum::Json(user.into()))
}

/// Change a user's password or roles; a new password ends its sessions.
#[utoipa::path(patch, path = "/v1/users/{name}", tag = "admin",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "The user's name")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "The user as changed", body = UserResponse),
        (status = 404, description = "`user_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_user(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Path(name): Path<String>,
    Json(body): Json<UpdateUserRequest>,
) -> Result<axum::Json<UserResponse>, ApiError> {
    let user = users::update_user(
        &state.registry,
        auth.project,
        &auth.actor(),
        &name,
        body.password.as_deref(),
        body.roles,
    )
    .await?;
    Ok(axum::Json(user.into()))
}

/// Delete a user: its sessions end at once.
#[utoipa::path(delete, path = "/v1/users/{name}", tag = "admin",
    security(("bearer" = ["admin"])),
    params(("name" = String, Path, description = "The user's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`user_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_user(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    users::delete_user(&state.registry, auth.project, &auth.actor(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
