//! Langfuse's prompt routes: get a version by label or number, create a
//! version (and the prompt, if new), move labels to a version, and list
//! prompts. Each is the `/v1` operation it stands for, through the registry.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::wire::{self, LangfusePrompt, LATEST};
use super::{LangfuseAuth, LangfuseError, LangfuseErrorBody};
use crate::api::auth::scope;
use crate::api::extract::{prompt_name, Json, Path, PromptPath, Query, MAX_FILTER_LEN};
use crate::api::served;
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::content::{parse_content, ContentFields, PromptBody};
use crate::domain::{
    Engine, LabelName, ProjectId, PromptName, PromptSummary, PromptType, Version, VersionRef,
};
use crate::error::{ApiError, FieldError};
use crate::services::{labels, prompts, versions, ServiceError};
use crate::store::{NewVersion, PromptFilter};

const MAX_MESSAGE_LEN: usize = 4096;
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 100;
/// Langfuse's page is a 32-bit integer (documented as the schema's `maximum`).
const MAX_PAGE_NUMBER: u32 = i32::MAX as u32;

type Result<T> = std::result::Result<T, LangfuseError>;

/// `?version=` or `?label=`; neither means `production`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetPromptParams {
    /// The version number (`seq`). Excludes `label`.
    #[param(value_type = Option<i64>, example = 2)]
    version: Option<String>,
    /// A label, or `latest`. Excludes `version`.
    #[param(example = "production")]
    label: Option<String>,
    /// `true` or `false`; either way partials are inlined.
    #[param(value_type = Option<bool>)]
    resolve: Option<String>,
}

/// Get a prompt version by label (default `production`) or number.
#[utoipa::path(get, path = "/api/public/v2/prompts/{name}", tag = "langfuse", operation_id = "langfuse_get_prompt",
    security(("langfuse_basic" = ["read"])),
    params(PromptPath, GetPromptParams),
    responses(
        (status = 200, description = "The version; while an experiment splits the label, the variant chosen for the `x-promptreg-unit` header (at random without one), named by the `x-promptreg-experiment` and `x-promptreg-variant` headers", body = LangfusePrompt),
        (status = 400, description = "`InvalidRequestError`: both `version` and `label`, a version that is no integer, a `resolve` that is no boolean, a name or label promptreg refuses, partials that written out in place exceed `render.max_output_bytes`", body = LangfuseErrorBody),
        (status = 404, description = "`LangfuseNotFoundError`: no such prompt, version or label", body = LangfuseErrorBody),
    ))]
pub async fn get_prompt(
    State(state): State<AppState>,
    auth: LangfuseAuth<scope::Read>,
    path: std::result::Result<Path<String>, ApiError>,
    params: std::result::Result<Query<GetPromptParams>, ApiError>,
    unit: served::UnitHeader,
) -> Result<(HeaderMap, axum::Json<LangfusePrompt>)> {
    let Path(name) = path?;
    let Query(params) = params?;
    if let Some(raw) = params.resolve.as_deref() {
        if !matches!(raw, "true" | "false") {
            return Err(LangfuseError::invalid(format!(
                "resolve: {raw:?} is not `true` or `false`"
            )));
        }
    }
    let name = prompt_name(&name)?;
    let label = params
        .label
        .map(|raw| {
            LabelName::parse(&raw).map_err(|e| LangfuseError::invalid(format!("label: {}", e.0)))
        })
        .transpose()?;
    let mut split_headers = HeaderMap::new();
    let version = match (params.version, &label) {
        (Some(_), Some(_)) => {
            return Err(LangfuseError::invalid(
                "give `version` or `label`, not both",
            ))
        }
        (Some(raw), None) => {
            prompts::version_by_seq(&state.registry, auth.project, &name, parse_seq(&raw)?).await?
        }
        (None, label) => {
            let reference = match label {
                Some(label) => VersionRef::Label(label.clone()),
                None => state.renderer.default_ref(),
            };
            let unit = served::unit(None, &unit);
            let served = state
                .registry
                .serve_version(auth.project, &name, &reference, unit)
                .await
                .map_err(ApiError::from)?;
            split_headers = served::headers(&served);
            served.version
        }
    };
    Ok((
        split_headers,
        axum::Json(answer(&state, auth.project, &version, label.as_ref()).await?),
    ))
}

/// A version number: a positive integer.
fn parse_seq(raw: &str) -> Result<i64> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|seq| *seq >= 1)
        .ok_or_else(|| {
            LangfuseError::invalid(format!(
                "version: {raw:?} is not a version number (1, 2, 3…)"
            ))
        })
}

/// The version as Langfuse sends it, its registry partials inlined (taken at
/// `label` first when it was fetched through one).
async fn answer(
    state: &AppState,
    project: ProjectId,
    version: &Version,
    label: Option<&LabelName>,
) -> Result<LangfusePrompt> {
    let published =
        prompts::published(&state.registry, &state.renderer, project, version, label).await?;
    Ok(LangfusePrompt::new(
        version,
        &published.body,
        &published.summary,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "name": "support/greeting",
    "type": "text",
    "prompt": "Hello {{name}}!",
    "config": {"model": "gpt-4o-mini"},
    "labels": ["production"],
    "tags": ["support"],
    "commitMessage": "Warmer greeting"
}))]
pub struct CreatePromptBody {
    /// `[a-z0-9][a-z0-9._/-]{0,127}`; `/` makes folders.
    name: String,
    /// `text` or `chat`; inferred from `prompt` when absent.
    #[serde(rename = "type")]
    prompt_type: Option<PromptType>,
    /// A template (text) or an array of `{role, content}` messages and
    /// `{"type": "placeholder", "name": …}` entries (chat).
    #[schema(value_type = Object)]
    prompt: Value,
    /// Model settings, kept as the version's `model_config`.
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    /// Labels to point at the version (`latest` is ignored).
    labels: Option<Vec<String>>,
    /// Replaces the prompt's tags when given.
    tags: Option<Vec<String>>,
    /// Kept as the version's `message`.
    commit_message: Option<String>,
}

/// What a create request asks for, every field checked.
struct ParsedCreate {
    name: PromptName,
    new: NewVersion,
    tags: Option<Vec<String>>,
}

fn parse_create(body: CreatePromptBody) -> std::result::Result<ParsedCreate, ApiError> {
    let name = prompt_name(&body.name)?;
    let mut errors = Vec::new();
    let (prompt_type, template, messages) = match wire::parse_prompt(body.prompt_type, &body.prompt)
    {
        Ok(PromptBody::Text(text)) => (Some(PromptType::Text), Some(text), None),
        Ok(PromptBody::Chat(messages)) => (Some(PromptType::Chat), None, Some(messages)),
        Err(found) => {
            errors.extend(found);
            (None, None, None)
        }
    };
    let model_config = match body.config {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            errors.push(FieldError::new("config", "a JSON object"));
            Map::new()
        }
    };
    if body
        .commit_message
        .as_ref()
        .is_some_and(|m| m.chars().count() > MAX_MESSAGE_LEN)
    {
        errors.push(FieldError::new(
            "commitMessage",
            format!("at most {MAX_MESSAGE_LEN} characters"),
        ));
    }
    let mut content_errors = Vec::new();
    let content = prompt_type.and_then(|prompt_type| {
        parse_content(
            ContentFields {
                prompt_type: Some(prompt_type),
                template,
                messages,
                engine: Some(Engine::Handlebars),
                model_config: Some(model_config),
                input_schema: None,
                output_schema: None,
            },
            &mut content_errors,
        )
    });
    errors.extend(
        content_errors
            .into_iter()
            .map(|e| as_prompt_field(FieldError::from(e))),
    );
    let mut labels: Vec<LabelName> = Vec::new();
    for (i, raw) in body.labels.unwrap_or_default().iter().enumerate() {
        if raw == LATEST {
            continue;
        }
        let label = LabelName::parse_settable(raw)
            .map_err(|e| ApiError::invalid_label(&format!("labels[{i}]"), e))?;
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    let tags = crate::api::prompts::tags("tags", body.tags)?;
    match content {
        Some(content) if errors.is_empty() => Ok(ParsedCreate {
            name,
            new: NewVersion {
                content,
                variables: Vec::new(),
                message: body.commit_message,
                metadata: Map::new(),
                version: None,
                bump: None,
                parent: None,
                expected_latest: None,
                labels,
            },
            tags,
        }),
        _ => Err(ApiError::invalid(errors)),
    }
}

/// `template` and `messages[i]…` are both `prompt…` on this side.
fn as_prompt_field(error: FieldError) -> FieldError {
    let renamed = error
        .field
        .strip_prefix("template")
        .or_else(|| error.field.strip_prefix("messages"))
        .map(|rest| format!("prompt{rest}"));
    FieldError {
        field: renamed.unwrap_or(error.field),
        ..error
    }
}

/// Create a version of a prompt, and the prompt if it is new. Content equal
/// to the latest version's creates nothing (200) but still applies the labels.
#[utoipa::path(post, path = "/api/public/v2/prompts", tag = "langfuse", operation_id = "langfuse_create_prompt",
    security(("langfuse_basic" = ["write"])),
    request_body = CreatePromptBody,
    responses(
        (status = 201, description = "Created", body = LangfusePrompt),
        (status = 200, description = "Identical to the latest version: that version, labels applied", body = LangfusePrompt),
        (status = 400, description = "`InvalidRequestError`: a field at fault, a type unlike the earlier versions', an archived prompt, a gated label", body = LangfuseErrorBody),
    ))]
pub async fn create_prompt(
    State(state): State<AppState>,
    auth: LangfuseAuth<scope::Write>,
    body: std::result::Result<Json<CreatePromptBody>, ApiError>,
) -> Result<Response> {
    let Json(body) = body?;
    let ParsedCreate { name, new, tags } = parse_create(body)?;
    let project = auth.project;
    if !new.labels.is_empty() {
        auth.also_require(&state, Scope::Promote)?;
    }
    let result = versions::publish(
        &state.registry,
        &state.renderer,
        project,
        &auth.actor(),
        &name,
        new,
        tags,
        // Langfuse prompts keep their type, as in Langfuse.
        false,
    )
    .await
    .map_err(|e| match e {
        ServiceError::TemplateSyntax(error) => ServiceError::TemplateSyntax(as_prompt_field(error)),
        other => other,
    })?;
    let body = axum::Json(answer(&state, project, &result.version, None).await?);
    let status = if result.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, body).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"newLabels": ["production"]}))]
pub struct UpdatePromptVersionBody {
    /// Labels to move to this version; labels not named stay where they are.
    new_labels: Vec<String>,
}

/// Move labels to a version. Each move is recorded in the label's history.
#[utoipa::path(patch, path = "/api/public/v2/prompts/{name}/versions/{version}", tag = "langfuse", operation_id = "langfuse_update_prompt_version",
    security(("langfuse_basic" = ["promote"])),
    params(PromptPath, ("version" = i64, Path, description = "The version number (`seq`)")),
    request_body = UpdatePromptVersionBody,
    responses(
        (status = 200, description = "The version with its labels", body = LangfusePrompt),
        (status = 400, description = "`InvalidRequestError`: `latest`, a label promptreg refuses, a version that is no integer, a gated label without a passing evaluation", body = LangfuseErrorBody),
        (status = 404, description = "`LangfuseNotFoundError`: no such prompt or version", body = LangfuseErrorBody),
    ))]
pub async fn update_prompt_version(
    State(state): State<AppState>,
    auth: LangfuseAuth<scope::Promote>,
    path: std::result::Result<Path<(String, String)>, ApiError>,
    body: std::result::Result<Json<UpdatePromptVersionBody>, ApiError>,
) -> Result<axum::Json<LangfusePrompt>> {
    let Path((name, seq)) = path?;
    let name = prompt_name(&name)?;
    let seq = parse_seq(&seq)?;
    let Json(body) = body?;
    let mut labels: Vec<LabelName> = Vec::new();
    for (i, raw) in body.new_labels.iter().enumerate() {
        let label = LabelName::parse_settable(raw)
            .map_err(|e| ApiError::invalid_label(&format!("newLabels[{i}]"), e))?;
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    let project = auth.project;
    let version = prompts::version_by_seq(&state.registry, project, &name, seq).await?;
    labels::move_labels(
        &state.registry,
        project,
        &auth.actor(),
        &name,
        &labels,
        &version.version,
    )
    .await?;
    Ok(axum::Json(answer(&state, project, &version, None).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ListPromptsParams {
    /// Exactly this name.
    name: Option<String>,
    /// Only prompts with a version carrying this label (`latest`: any).
    label: Option<String>,
    /// Only prompts with this tag.
    #[param(max_length = 200)]
    tag: Option<String>,
    /// 1-based page number.
    #[param(value_type = Option<u32>, default = 1, minimum = 1, maximum = 2147483647)]
    page: Option<String>,
    /// Prompts per page, 1 to 100.
    #[param(value_type = Option<u32>, default = 50, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// A prompt in a list.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LangfusePromptMeta {
    name: String,
    #[serde(rename = "type")]
    prompt_type: PromptType,
    /// The version numbers that match the filter, oldest first.
    versions: Vec<i64>,
    /// The prompt's labels, and `latest`.
    labels: Vec<String>,
    tags: Vec<String>,
    /// When the newest matching version was created.
    last_updated_at: DateTime<Utc>,
    /// The newest matching version's `config`.
    last_config: Map<String, Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageMeta {
    page: u32,
    limit: u32,
    total_items: usize,
    total_pages: usize,
}

#[derive(Serialize, ToSchema)]
pub struct LangfusePromptList {
    data: Vec<LangfusePromptMeta>,
    meta: PageMeta,
}

fn page_number(field: &str, raw: Option<&str>, default: u32, max: u32) -> Result<u32> {
    match raw {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                LangfuseError::invalid(format!("{field}: {raw:?} is not a number from 1 to {max}"))
            }),
    }
}

/// List prompts with versions, newest first; archived prompts are hidden.
#[utoipa::path(get, path = "/api/public/v2/prompts", tag = "langfuse", operation_id = "langfuse_list_prompts",
    security(("langfuse_basic" = ["read"])),
    params(ListPromptsParams),
    responses(
        (status = 200, description = "A page of prompts", body = LangfusePromptList),
        (status = 400, description = "`InvalidRequestError`: a page, limit, name, label or tag at fault", body = LangfuseErrorBody),
    ))]
pub async fn list_prompts(
    State(state): State<AppState>,
    auth: LangfuseAuth<scope::Read>,
    params: std::result::Result<Query<ListPromptsParams>, ApiError>,
) -> Result<axum::Json<LangfusePromptList>> {
    let Query(params) = params?;
    let page = page_number("page", params.page.as_deref(), 1, MAX_PAGE_NUMBER)?;
    let limit = page_number("limit", params.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let name = params.name.as_deref().map(prompt_name).transpose()?;
    let label = params
        .label
        .as_deref()
        .map(|raw| {
            LabelName::parse(raw).map_err(|e| LangfuseError::invalid(format!("label: {}", e.0)))
        })
        .transpose()?;
    if let Some(tag) = params.tag.as_deref() {
        if tag.chars().count() > MAX_FILTER_LEN {
            return Err(LangfuseError::invalid(format!(
                "tag: at most {MAX_FILTER_LEN} characters"
            )));
        }
    }
    let filter = PromptFilter {
        name,
        tag: params.tag,
        query: None,
        include_archived: false,
    };
    let project = auth.project;
    let matching: Vec<PromptSummary> = prompts::all_prompts(&state.registry, project, &filter)
        .await?
        .into_iter()
        .filter(|s| {
            s.latest_version.is_some()
                && label
                    .as_ref()
                    .is_none_or(|l| l.is_reserved() || s.labels.contains_key(l.as_str()))
        })
        .collect();
    let total_items = matching.len();
    let start = usize::try_from(page.saturating_sub(1))
        .unwrap_or(usize::MAX)
        .saturating_mul(limit as usize);
    let mut data = Vec::new();
    for summary in matching.into_iter().skip(start).take(limit as usize) {
        if let Some(meta) = prompt_meta(&state, project, summary, label.as_ref()).await? {
            data.push(meta);
        }
    }
    Ok(axum::Json(LangfusePromptList {
        data,
        meta: PageMeta {
            page,
            limit,
            total_items,
            total_pages: total_items.div_ceil(limit as usize),
        },
    }))
}

/// A listed prompt: its versions (those carrying `label`, when one is given).
async fn prompt_meta(
    state: &AppState,
    project: ProjectId,
    summary: PromptSummary,
    label: Option<&LabelName>,
) -> Result<Option<LangfusePromptMeta>> {
    let name = prompt_name(&summary.prompt.name)?;
    let versions = prompts::all_versions(&state.registry, project, &name).await?;
    // Newest first, as the store lists them.
    let target = label
        .filter(|l| !l.is_reserved())
        .and_then(|l| summary.labels.get(l.as_str()));
    let matching: Vec<&Version> = versions
        .iter()
        .filter(|v| target.is_none_or(|t| *t == v.version))
        .collect();
    let Some(newest) = matching.first() else {
        return Ok(None);
    };
    let mut labels: Vec<String> = summary.labels.keys().cloned().collect();
    labels.push(LATEST.to_owned());
    Ok(Some(LangfusePromptMeta {
        name: summary.prompt.name.clone(),
        prompt_type: newest.content.prompt_type(),
        versions: matching.iter().rev().map(|v| v.seq).collect(),
        labels,
        tags: summary.prompt.tags.clone(),
        last_updated_at: newest.created_at,
        last_config: newest.content.model_config.clone(),
    }))
}
