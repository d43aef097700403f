//! Labels: named pointers to versions (`production`, `staging`, …), every move
//! kept in history, and rollback to the previous target.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{scope, Auth};
use super::extract::{prompt_name, semver, Json, PageParams, Path, PromptPath, Query};
use super::AppState;
use crate::domain::{Label, LabelMove, LabelName, PromptName};
use crate::error::{ApiError, Problem};
use crate::services::labels::{self, Retreat};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LabelResponse {
    #[schema(example = "production")]
    pub name: String,
    #[schema(example = "1.0.1")]
    pub version: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<String>,
}

impl From<Label> for LabelResponse {
    fn from(l: Label) -> Self {
        Self {
            name: l.name,
            version: l.version.to_string(),
            updated_at: l.updated_at,
            updated_by: l.updated_by,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct LabelList {
    items: Vec<LabelResponse>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLabelRequest {
    /// The semver to point the label at.
    #[schema(example = "1.0.1")]
    pub version: String,
}

/// One move of a label; `from` is `null` for the first assignment, `to` is
/// `null` when the label was deleted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LabelMoveResponse {
    #[schema(example = "1.0.0")]
    pub from: Option<String>,
    #[schema(example = "1.0.1")]
    pub to: Option<String>,
    pub at: DateTime<Utc>,
    pub by: Option<String>,
    /// Whether this move was a rollback.
    pub rollback: bool,
    /// What an online experiment did to the label (started, changed its
    /// split, ended), or what its monitor saw when it fired: such an entry
    /// moves nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl From<LabelMove> for LabelMoveResponse {
    fn from(m: LabelMove) -> Self {
        Self {
            from: m.from.map(|v| v.to_string()),
            to: m.to.map(|v| v.to_string()),
            at: m.at,
            by: m.by,
            rollback: m.rollback,
            note: m.note,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LabelMovePage {
    pub items: Vec<LabelMoveResponse>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

page_from!(LabelMovePage of LabelMoveResponse);

fn names(name: &str, label: &str) -> Result<(PromptName, LabelName), ApiError> {
    Ok((
        prompt_name(name)?,
        LabelName::parse_settable(label).map_err(|e| ApiError::invalid_label("label", e))?,
    ))
}

/// List a prompt's labels (the implicit `latest` is not listed).
#[utoipa::path(get, path = "/v1/prompts/{name}/labels", tag = "labels",
    security(("bearer" = ["read"])),
    params(PromptPath),
    responses(
        (status = 200, description = "The labels, by name", body = LabelList),
        (status = 404, description = "`prompt_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_labels(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(name): Path<String>,
) -> Result<axum::Json<LabelList>, ApiError> {
    let name = prompt_name(&name)?;
    let labels = labels::list_labels(&state.registry, auth.project, &name).await?;
    Ok(axum::Json(LabelList {
        items: labels.into_iter().map(LabelResponse::from).collect(),
    }))
}

/// Point a label at a version (creating the label if needed).
#[utoipa::path(put, path = "/v1/prompts/{name}/labels/{label}", tag = "labels",
    security(("bearer" = ["promote"])),
    params(PromptPath, ("label" = String, Path, description = "`[a-z][a-z0-9_-]{0,63}`, not `latest`", example = "production")),
    request_body = SetLabelRequest,
    responses(
        (status = 200, description = "The label", body = LabelResponse),
        (status = 404, description = "`prompt_not_found` or `version_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`gate_failed`: the label's gate does not pass for that version; `errors` says why", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_label`, `reserved_label` or `validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_label(
    State(state): State<AppState>,
    auth: Auth<scope::Promote>,
    Path((name, label)): Path<(String, String)>,
    Json(body): Json<SetLabelRequest>,
) -> Result<axum::Json<LabelResponse>, ApiError> {
    let (name, label) = names(&name, &label)?;
    let version = semver("version", &body.version)?;
    let moved = labels::move_label(
        &state.registry,
        auth.project,
        &auth.actor(),
        &name,
        &label,
        &version,
    )
    .await?;
    Ok(axum::Json(moved.into()))
}

/// Delete a label. The deletion is recorded in its history.
#[utoipa::path(delete, path = "/v1/prompts/{name}/labels/{label}", tag = "labels",
    security(("bearer" = ["promote"])),
    params(PromptPath, ("label" = String, Path, description = "The label")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`prompt_not_found` or `label_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_label` or `reserved_label`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_label(
    State(state): State<AppState>,
    auth: Auth<scope::Promote>,
    Path((name, label)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (name, label) = names(&name, &label)?;
    labels::retreat_label(
        &state.registry,
        auth.project,
        &auth.actor(),
        &name,
        &label,
        Retreat::Delete,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every move of a label, newest first, the first assignment included.
#[utoipa::path(get, path = "/v1/prompts/{name}/labels/{label}/history", tag = "labels",
    security(("bearer" = ["read"])),
    params(PromptPath, ("label" = String, Path, description = "The label"), PageParams),
    responses(
        (status = 200, description = "A page of moves", body = LabelMovePage),
        (status = 404, description = "`prompt_not_found` or `label_not_found` (never set)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn label_history(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path((name, label)): Path<(String, String)>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<LabelMovePage>, ApiError> {
    let (name, label) = names(&name, &label)?;
    let page = labels::label_history(
        &state.registry,
        auth.project,
        &name,
        &label,
        page.to_request()?,
    )
    .await?;
    Ok(axum::Json(page.into()))
}

/// Move a label back to its previous target. Repeated rollbacks walk further
/// back through history; a rollback is itself a recorded move.
#[utoipa::path(post, path = "/v1/prompts/{name}/labels/{label}/rollback", tag = "labels",
    security(("bearer" = ["promote"])),
    params(PromptPath, ("label" = String, Path, description = "The label")),
    responses(
        (status = 200, description = "The label at its previous target", body = LabelResponse),
        (status = 404, description = "`prompt_not_found` or `label_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no_previous_target`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rollback_label(
    State(state): State<AppState>,
    auth: Auth<scope::Promote>,
    Path((name, label)): Path<(String, String)>,
) -> Result<axum::Json<LabelResponse>, ApiError> {
    let (name, label) = names(&name, &label)?;
    let moved = labels::retreat_label(
        &state.registry,
        auth.project,
        &auth.actor(),
        &name,
        &label,
        Retreat::Rollback,
    )
    .await?;
    Ok(axum::Json(moved.into()))
}
