//! Prompts: the mutable, named entities that versions belong to.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{scope, Auth};
use super::extract::{filter_text, page_request, prompt_name, Json, Path, PromptPath, Query};
use super::{prompt_path, AppState};
use crate::auth::Caller;
use crate::domain::{PromptName, PromptSummary};
use crate::error::{ApiError, Problem};
use crate::store::{NewPrompt, PromptFilter, PromptPatch};

const MAX_TAGS: usize = 32;
const MAX_TAG_LEN: usize = 64;
const MAX_DESCRIPTION_LEN: usize = 4096;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePromptRequest {
    /// `[a-z0-9][a-z0-9._/-]{0,127}`; `/` makes folders.
    #[schema(example = "support/greeting")]
    pub name: String,
    #[schema(example = "Greets a customer by name")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[schema(example = json!(["support", "email"]))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePromptRequest {
    #[schema(example = "Greets a customer by name and place")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Replaces the tags.
    #[schema(example = json!(["support"]))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// `false` restores an archived prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived: Option<bool>,
}

/// A prompt, with where its labels point and its newest version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PromptResponse {
    #[schema(example = "support/greeting")]
    pub name: String,
    #[schema(example = "Greets a customer by name")]
    pub description: String,
    #[schema(example = json!(["support"]))]
    pub tags: Vec<String>,
    pub archived: bool,
    /// Label → the semver it points at.
    #[schema(example = json!({"production": "1.0.1"}))]
    pub labels: BTreeMap<String, String>,
    #[schema(example = "1.0.2")]
    pub latest_version: Option<String>,
    /// sha256 of the latest version's canonical content.
    pub latest_content_hash: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<PromptSummary> for PromptResponse {
    fn from(s: PromptSummary) -> Self {
        Self {
            name: s.prompt.name,
            description: s.prompt.description,
            tags: s.prompt.tags,
            archived: s.prompt.archived,
            labels: s
                .labels
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
            latest_version: s.latest_version.map(|v| v.to_string()),
            latest_content_hash: s.latest_content_hash,
            created_at: s.prompt.created_at,
            updated_at: s.prompt.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PromptPage {
    pub items: Vec<PromptResponse>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

page_from!(PromptPage of PromptResponse);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PromptListParams {
    /// Only prompts carrying this tag.
    #[param(max_length = 200)]
    tag: Option<String>,
    /// Case-insensitive substring of the name or description.
    #[param(max_length = 200)]
    q: Option<String>,
    /// Items per page, 1 to 100.
    #[param(default = 20, minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

pub(crate) fn tags(field: &str, raw: Option<Vec<String>>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.len() > MAX_TAGS {
        return Err(ApiError::validation(
            field,
            format!("at most {MAX_TAGS} tags are allowed"),
        ));
    }
    let mut tags: Vec<String> = Vec::with_capacity(raw.len());
    for (i, tag) in raw.into_iter().enumerate() {
        let ok = !tag.is_empty()
            && tag.chars().count() <= MAX_TAG_LEN
            && !tag.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(ApiError::validation(
                format!("{field}[{i}]"),
                format!("a tag is 1 to {MAX_TAG_LEN} characters without white space"),
            ));
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(Some(tags))
}

pub(crate) fn description(raw: Option<String>) -> Result<Option<String>, ApiError> {
    match raw {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_LEN => Err(ApiError::validation(
            "description",
            format!("at most {MAX_DESCRIPTION_LEN} characters"),
        )),
        other => Ok(other),
    }
}

/// Create a prompt.
#[utoipa::path(post, path = "/v1/prompts", tag = "prompts",
    security(("bearer" = ["write"])),
    request_body = CreatePromptRequest,
    responses(
        (status = 201, description = "Created", body = PromptResponse,
            headers(("location" = String, description = "URL of the prompt"))),
        (status = 409, description = "`prompt_exists`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_name` or `validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_prompt(
    State(state): State<AppState>,
    auth: Auth<scope::Write>,
    Json(body): Json<CreatePromptRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let name = prompt_name(&body.name)?;
    let new = NewPrompt {
        name: name.clone(),
        description: description(body.description)?.unwrap_or_default(),
        tags: tags("tags", body.tags)?.unwrap_or_default(),
    };
    let created = state
        .registry
        .create_prompt(auth.project, new, &auth.actor())
        .await?;
    let location = prompt_path(name.as_str());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(PromptResponse::from(created)),
    ))
}

/// List prompts, newest first. Archived prompts are hidden.
#[utoipa::path(get, path = "/v1/prompts", tag = "prompts",
    security(("bearer" = ["read"])),
    params(PromptListParams),
    responses(
        (status = 200, description = "A page of prompts", body = PromptPage),
        (status = 422, description = "`validation_failed` (limit, cursor, a filter too long or holding NUL)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_prompts(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Query(params): Query<PromptListParams>,
) -> Result<axum::Json<PromptPage>, ApiError> {
    let filter = PromptFilter {
        name: None,
        tag: filter_text("tag", params.tag)?,
        query: filter_text("q", params.q)?,
        include_archived: false,
    };
    let page = state
        .registry
        .list_prompts(
            auth.project,
            &filter,
            page_request(params.limit, params.cursor.as_deref())?,
        )
        .await?;
    Ok(axum::Json(page.into()))
}

/// Get a prompt (archived ones too).
#[utoipa::path(get, path = "/v1/prompts/{name}", tag = "prompts",
    security(("bearer" = ["read"])),
    params(PromptPath),
    responses(
        (status = 200, description = "The prompt", body = PromptResponse),
        (status = 404, description = "`prompt_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_prompt(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(name): Path<String>,
) -> Result<axum::Json<PromptResponse>, ApiError> {
    let name = prompt_name(&name)?;
    let prompt = state.registry.get_prompt(auth.project, &name).await?;
    Ok(axum::Json(prompt.into()))
}

/// Change a prompt's description, tags or archived state.
#[utoipa::path(patch, path = "/v1/prompts/{name}", tag = "prompts",
    security(("bearer" = ["write"])),
    params(PromptPath),
    request_body = UpdatePromptRequest,
    responses(
        (status = 200, description = "The updated prompt", body = PromptResponse),
        (status = 404, description = "`prompt_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_prompt(
    State(state): State<AppState>,
    auth: Auth<scope::Write>,
    Path(name): Path<String>,
    Json(body): Json<UpdatePromptRequest>,
) -> Result<axum::Json<PromptResponse>, ApiError> {
    let name = prompt_name(&name)?;
    let patch = PromptPatch {
        description: description(body.description)?,
        tags: tags("tags", body.tags)?,
        archived: body.archived,
    };
    update(&state, &auth, &name, patch).await.map(axum::Json)
}

/// Archive a prompt: hidden from lists, still resolvable, refuses new versions.
#[utoipa::path(delete, path = "/v1/prompts/{name}", tag = "prompts",
    security(("bearer" = ["write"])),
    params(PromptPath),
    responses(
        (status = 204, description = "Archived"),
        (status = 404, description = "`prompt_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn archive_prompt(
    State(state): State<AppState>,
    auth: Auth<scope::Write>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = prompt_name(&name)?;
    let patch = PromptPatch {
        archived: Some(true),
        ..PromptPatch::default()
    };
    update(&state, &auth, &name, patch).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn update(
    state: &AppState,
    caller: &Caller,
    name: &PromptName,
    patch: PromptPatch,
) -> Result<PromptResponse, ApiError> {
    state
        .registry
        .update_prompt(caller.project, name, patch, &caller.actor())
        .await
        .map(PromptResponse::from)
        .map_err(ApiError::from)
}
