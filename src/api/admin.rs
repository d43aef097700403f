//! Administration: API keys, projects and the audit log. Admin scope only.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::{scope, Auth};
use super::extract::{filter_text, page_request, Json, Path, Query};
use super::AppState;
use crate::domain::auth::Scope;
use crate::domain::{ApiKey, AuditEntry, AuditFilter, Project};
use crate::error::{ApiError, Problem};
use crate::services::{admin, ServiceError};
use crate::store::StoreError;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "ci", "scopes": ["read", "write", "promote"]}))]
pub struct CreateKeyRequest {
    /// What the key is for, 1 to 64 characters.
    name: String,
    scopes: Vec<Scope>,
    /// Another project to create the key in (default: the caller's).
    project: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyResponse {
    id: Uuid,
    #[schema(example = "ci")]
    name: String,
    scopes: Vec<Scope>,
    #[schema(example = "default")]
    project: String,
    /// The start of the secret, to tell keys apart.
    #[schema(example = "pr_AbCd1234")]
    prefix: String,
    created_at: DateTime<Utc>,
    revoked: bool,
}

impl From<ApiKey> for KeyResponse {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            scopes: k.scopes,
            project: k.project,
            prefix: k.prefix,
            created_at: k.created_at,
            revoked: k.revoked,
        }
    }
}

/// A new key with its secret: the only answer that ever shows it.
#[derive(Serialize, ToSchema)]
pub struct CreatedKeyResponse {
    #[serde(flatten)]
    key: KeyResponse,
    /// The secret. Store it now: it is kept only as a hash.
    #[serde(rename = "key")]
    #[schema(example = "pr_…")]
    secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    items: Vec<KeyResponse>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProjectRequest {
    /// `[a-z0-9][a-z0-9_-]{0,63}`
    #[schema(example = "team-search")]
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectResponse {
    id: Uuid,
    #[schema(example = "team-search")]
    name: String,
    created_at: DateTime<Utc>,
}

impl From<Project> for ProjectResponse {
    fn from(p: Project) -> Self {
        Self {
            id: p.id,
            name: p.name,
            created_at: p.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProjectList {
    items: Vec<ProjectResponse>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEntryResponse {
    at: DateTime<Utc>,
    /// `null` for operators acting on the database (`promptreg keys`, bootstrap).
    key_id: Option<Uuid>,
    #[schema(example = "ci")]
    key_name: String,
    #[schema(example = "label.set")]
    action: String,
    #[schema(example = "prompts/support/greeting/labels/production")]
    target: String,
    #[schema(example = json!({"version": "1.0.0"}))]
    before: Option<Value>,
    #[schema(example = json!({"version": "1.0.1"}))]
    after: Option<Value>,
}

impl From<AuditEntry> for AuditEntryResponse {
    fn from(e: AuditEntry) -> Self {
        Self {
            at: e.at,
            key_id: e.key_id,
            key_name: e.key_name,
            action: e.action,
            target: e.target,
            before: e.before,
            after: e.after,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    items: Vec<AuditEntryResponse>,
    next_cursor: Option<String>,
}

page_from!(AuditPage of AuditEntryResponse);

/// Create an API key (in the caller's project, or the one named).
#[utoipa::path(post, path = "/v1/keys", tag = "admin",
    security(("bearer" = ["admin"])),
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created; `key` (the secret) is shown this once", body = CreatedKeyResponse),
        (status = 404, description = "`project_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_key(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Json(body): Json<CreateKeyRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (key, secret) = admin::create_key(
        &state.registry,
        &state.auth,
        auth.project,
        &auth.actor(),
        &body.name,
        body.scopes,
        body.project.as_deref(),
    )
    .await?;
    let location = format!("/v1/keys/{}", key.id);
    let body = CreatedKeyResponse {
        key: key.into(),
        secret: secret.expose().to_owned(),
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(body),
    ))
}

/// List the keys of the caller's project (never their secrets).
#[utoipa::path(get, path = "/v1/keys", tag = "admin",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The keys", body = KeyList),
    ))]
pub async fn list_keys(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
) -> Result<axum::Json<KeyList>, ApiError> {
    let keys = admin::list_keys(&state.registry, auth.project).await?;
    Ok(axum::Json(KeyList {
        items: keys.into_iter().map(KeyResponse::from).collect(),
    }))
}

/// Revoke a key: the next request made with it answers 401.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "admin",
    security(("bearer" = ["admin"])),
    params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`key_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_key(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ServiceError::Store(StoreError::KeyNotFound))?;
    admin::revoke_key(&state.auth, auth.project, &auth.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a project.
#[utoipa::path(post, path = "/v1/projects", tag = "admin",
    security(("bearer" = ["admin"])),
    request_body = CreateProjectRequest,
    responses(
        (status = 201, description = "Created", body = ProjectResponse),
        (status = 409, description = "`project_exists`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_name`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_project(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Json(body): Json<CreateProjectRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let project = admin::create_project(&state.registry, &auth.actor(), &body.name).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(ProjectResponse::from(project)),
    ))
}

/// List every project.
#[utoipa::path(get, path = "/v1/projects", tag = "admin",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The projects", body = ProjectList),
    ))]
pub async fn list_projects(
    State(state): State<AppState>,
    _auth: Auth<scope::Admin>,
) -> Result<axum::Json<ProjectList>, ApiError> {
    let projects = admin::list_projects(&state.registry).await?;
    Ok(axum::Json(ProjectList {
        items: projects.into_iter().map(ProjectResponse::from).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditListParams {
    /// Only writes by this actor, exactly as entries name it: a key's name
    /// or `user:NAME`.
    #[param(example = "ci", max_length = 200)]
    actor: Option<String>,
    /// Only this action.
    #[param(example = "label.set", max_length = 200)]
    action: Option<String>,
    /// Only this target and what lies below it (`prompts/support` matches
    /// `prompts/support/greeting/labels/production`).
    #[param(example = "prompts/support/greeting", max_length = 200)]
    target: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Only entries before this time (RFC 3339).
    to: Option<DateTime<Utc>>,
    /// Items per page, 1 to 100.
    #[param(default = 20, minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Every write in the caller's project, newest first, optionally filtered.
#[utoipa::path(get, path = "/v1/audit", tag = "admin",
    security(("bearer" = ["admin"])),
    params(AuditListParams),
    responses(
        (status = 200, description = "A page of audit entries", body = AuditPage),
        (status = 422, description = "`validation_failed` (a filter, limit or cursor)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_audit(
    State(state): State<AppState>,
    auth: Auth<scope::Admin>,
    Query(params): Query<AuditListParams>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let filter = AuditFilter {
        actor: filter_text("actor", params.actor)?,
        action: filter_text("action", params.action)?,
        target: filter_text("target", params.target)?
            .map(|t| t.trim_end_matches('/').to_owned())
            .filter(|t| !t.is_empty()),
        from: params.from,
        to: params.to,
    };
    let page = admin::list_audit(&state.registry, auth.project, &filter, page).await?;
    Ok(axum::Json(page.into()))
}
