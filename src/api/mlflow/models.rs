//! MLflow's registered-model routes for prompts: create, get, search, tags,
//! delete, and aliases (promptreg's labels). Each is the `/v1` operation it
//! stands for, through the same services.

use axum::extract::State;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::search::{self, Clause};
use super::wire::{
    join_tag, split_tag, tag_map, MlflowTag, ModelVersion, RegisteredModel, EXPERIMENT_IDS,
    IS_PROMPT,
};
use super::{MlflowAuth, MlflowError, MlflowErrorBody};
use crate::api::auth::scope;
use crate::api::extract::{prompt_name, Json, Query};
use crate::api::AppState;
use crate::domain::{LabelName, ProjectId, PromptName, PromptSummary, Version, VersionRef};
use crate::error::ApiError;
use crate::services::labels::{self, Retreat};
use crate::services::prompts;
use crate::store::{NewPrompt, PromptFilter};

pub(super) type Result<T> = std::result::Result<T, MlflowError>;

const DEFAULT_MAX_RESULTS: usize = 100;
const MAX_MAX_RESULTS: usize = 1000;

/// A prompt name as MLflow sends it. MLflow's names have no folders, so a
/// `/` is refused rather than reaching a prompt in one.
pub(super) fn name_of(raw: &str) -> Result<PromptName> {
    if raw.contains('/') {
        return Err(MlflowError::invalid(format!(
            "name: {raw:?} holds a `/`: MLflow's names have no folders, so prompts in \
             folders are reached through /v1 only"
        )));
    }
    Ok(prompt_name(raw)?)
}

/// A prompt as a registered model, its labels resolved to version numbers.
async fn model(
    state: &AppState,
    project: ProjectId,
    summary: &PromptSummary,
) -> Result<RegisteredModel> {
    let aliases = prompts::label_seqs(&state.registry, project, summary).await?;
    Ok(RegisteredModel::new(&summary.prompt, aliases))
}

/// A version as a model version: its content with registry partials inlined
/// (taken at `label` first when it was fetched through one), its labels.
pub(super) async fn model_version(
    state: &AppState,
    project: ProjectId,
    version: &Version,
    label: Option<&LabelName>,
) -> Result<ModelVersion> {
    let published =
        prompts::published(&state.registry, &state.renderer, project, version, label).await?;
    let aliases = published
        .summary
        .labels
        .iter()
        .filter(|(_, target)| **target == version.version)
        .map(|(name, _)| name.clone())
        .collect();
    Ok(ModelVersion::new(version, &published.body, aliases))
}

#[derive(Serialize, ToSchema)]
pub struct RegisteredModelResponse {
    registered_model: RegisteredModel,
}

#[derive(Serialize, ToSchema)]
pub struct ModelVersionResponse {
    model_version: ModelVersion,
}

impl ModelVersionResponse {
    pub(super) fn new(model_version: ModelVersion) -> axum::Json<Self> {
        axum::Json(Self { model_version })
    }
}

/// An empty answer: `{}`.
#[derive(Serialize, ToSchema)]
pub struct Empty {}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({
    "name": "greeting",
    "description": "Greets a customer",
    "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}, {"key": "team", "value": "support"}]
}))]
pub struct CreateRegisteredModelBody {
    /// `[a-z0-9][a-z0-9._-]{0,127}`: promptreg's name rule, without folders.
    name: String,
    /// Must hold `mlflow.prompt.is_prompt` = `true`; the others become the
    /// prompt's tags, written `key=value` (at most 64 characters, no white space).
    #[serde(default)]
    tags: Vec<MlflowTag>,
    description: Option<String>,
}

/// Create a prompt (a registered model tagged `mlflow.prompt.is_prompt`).
#[utoipa::path(post, path = "/api/2.0/mlflow/registered-models/create", tag = "mlflow",
    operation_id = "mlflow_create_registered_model",
    security(("bearer" = ["write"]), ("mlflow_basic" = ["write"])),
    request_body = CreateRegisteredModelBody,
    responses(
        (status = 200, description = "Created", body = RegisteredModelResponse),
        (status = 400, description = "`INVALID_PARAMETER_VALUE`: not a prompt, a name or tag promptreg refuses; `RESOURCE_ALREADY_EXISTS`: the name is taken", body = MlflowErrorBody),
    ))]
pub async fn create_registered_model(
    State(state): State<AppState>,
    auth: MlflowAuth<scope::Write>,
    body: std::result::Result<Json<CreateRegisteredModelBody>, ApiError>,
) -> Result<axum::Json<RegisteredModelResponse>> {
    let Json(body) = body?;
    let name = name_of(&body.name)?;
    let mut is_prompt = false;
    let mut tags = Vec::new();
    for tag in &body.tags {
        if tag.key == IS_PROMPT {
            is_prompt = tag.value == "true";
        } else if tag.key != EXPERIMENT_IDS {
            tags.push(join_tag(&tag.key, &tag.value)?);
        }
    }
    if !is_prompt {
        return Err(MlflowError::not_a_prompt(
            "this registered model has no tag `mlflow.prompt.is_prompt` = \"true\"",
        ));
    }
    let tags = crate::api::prompts::tags("tags", Some(tags))?.unwrap_or_default();
    let new = NewPrompt {
        name,
        description: body.description.unwrap_or_default(),
        tags,
    };
    let project = auth.project;
    let summary = prompts::create_prompt(&state.registry, project, &auth.actor(), new).await?;
    Ok(axum::Json(RegisteredModelResponse {
        registered_model: model(&state, project, &summary).await?,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NameParams {
    /// The prompt's name.
    #[param(example = "greeting")]
    name: String,
}

/// Get a prompt as a registered model, with its aliases (labels).
#[utoipa::path(get, path = "/api/2.0/mlflow/registered-models/get", tag = "mlflow",
    operation_id = "mlflow_get_registered_model",
    security(("bearer" = ["read"]), ("mlflow_basic" = ["read"])),
    params(NameParams),
    responses(
        (status = 200, description = "The prompt", body = RegisteredModelResponse),
        (status = 400, description = "`INVALID_PARAMETER_VALUE`: no name, or one promptreg refuses", body = MlflowErrorBody),
        (status = 404, description = "`RESOURCE_DOES_NOT_EXIST`: no such prompt", body = MlflowErrorBody),
    ))]
pub async fn get_registered_model(
    State(state): State<AppState>,
    auth: MlflowAuth<scope::Read>,
    params: std::result::Result<Query<NameParams>, ApiError>,
) -> Result<axum::Json<RegisteredModelResponse>> {
    let Query(params) = params?;
    let name = name_of(&params.name)?;
    let summary = state.registry.get_prompt(auth.project, &name).await?;
    Ok(axum::Json(RegisteredModelResponse {
        registered_model: model(&state, auth.project, &summary).await?,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documents the query; the handler reads the pairs.
pub struct SearchParams {
    /// Clauses on `name` and `tags.KEY` with `=`, `LIKE` or `ILIKE`, joined by `AND`.
    #[param(example = "tags.`mlflow.prompt.is_prompt` = 'true' AND name LIKE 'greet%'")]
    filter: Option<String>,
    /// 1 to 1000.
    #[param(default = 100, minimum = 1, maximum = 1000)]
    max_results: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
    /// Only `name` or `name ASC`, the order of every answer.
    order_by: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResponse {
    registered_models: Vec<RegisteredModel>,
    /// Absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// Search prompts by name and tags, in name order. Prompts in folders and
/// archived prompts are not listed.
#[utoipa::path(get, path = "/api/2.0/mlflow/registered-models/search", tag = "mlflow",
    operation_id = "mlflow_search_registered_models",
    security(("bearer" = ["read"]), ("mlflow_basic" = ["read"])),
    params(SearchParams),
    responses(
        (status = 200, description = "A page of prompts", body = SearchResponse),
        (status = 400, description = "`INVALID_PARAMETER_VALUE`: a filter, order or page the search does not support", body = MlflowErrorBody),
    ))]
pub async fn search_registered_models(
    State(state): State<AppState>,
    auth: MlflowAuth<scope::Read>,
    params: std::result::Result<Query<Vec<(String, String)>>, ApiError>,
) -> Result<axum::Json<SearchResponse>> {
    let Query(pairs) = params?;
    let mut clauses: Vec<Clause> = Vec::new();
    let mut max_results = DEFAULT_MAX_RESULTS;
    let mut after: Option<String> = None;
    for (key, value) in &pairs {
        match key.as_str() {
            "filter" => clauses.extend(search::parse(value).map_err(MlflowError::invalid)?),
            "max_results" => {
                max_results = value
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_MAX_RESULTS).contains(n))
                    .ok_or_else(|| {
                        MlflowError::invalid(format!(
                            "max_results: {value:?} is not a number from 1 to {MAX_MAX_RESULTS}"
                        ))
                    })?;
            }
            "page_token" if value.is_empty() => {}
            "page_token" => {
                let name = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(value)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| {
                        MlflowError::invalid("page_token: not a token this server issued")
                    })?;
                after = Some(name);
            }
            "order_by" => {
                let order = value.split_whitespace().collect::<Vec<_>>();
                let by_name = match order.as_slice() {
                    ["name"] => true,
                    ["name", direction] => direction.eq_ignore_ascii_case("asc"),
                    _ => false,
                };
                if !by_name {
                    return Err(MlflowError::invalid(format!(
                        "order_by: {value:?} is not supported; prompts are listed by `name ASC`"
                    )));
                }
            }
            other => {
                return Err(MlflowError::invalid(format!(
                    "{other}: not a parameter of this search (filter, max_results, page_token, order_by)"
                )))
            }
        }
    }
    let project = auth.project;
    let mut matching: Vec<PromptSummary> =
        prompts::all_prompts(&state.registry, project, &PromptFilter::default())
            .await?
            .into_iter()
            .filter(|s| {
                let name = &s.prompt.name;
                let tags = tag_map(&s.prompt);
                !name.contains('/')
                    && after.as_ref().is_none_or(|after| name > after)
                    && clauses.iter().all(|c| c.matches(name, &tags))
            })
            .collect();
    matching.sort_by(|a, b| a.prompt.name.cmp(&b.prompt.name));
    let more = matching.len() > max_results;
    matching.truncate(max_results);
    let mut registered_models = Vec::with_capacity(matching.len());
    for summary in &matching {
        registered_models.push(model(&state, project, summary).await?);
    }
    let next_page_token = more
        .then(|| matching.last())
        .flatten()
        .map(|last| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&last.prompt.name));
    Ok(axum::Json(SearchResponse {
        registered_models,
        next_page_token,
    }))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "greeting", "key": "team", "value": "support"}))]
pub struct SetTagBody {
    name: String,
    key: String,
    #[serde(default)]
    value: String,
}

/// Set a prompt tag: the prompt's tag `key=…` is replaced by `key=value`.
/// `_mlflow_experiment_ids` (the client's links to MLflow experiments) is
/// accepted and not kept.
#[utoipa::path(post, path = "/api/2.0/mlflow/registered-models/set-tag", tag = "mlflow",
    operation_id = "mlflow_set_registered_model_tag",
    security(("bearer" = ["write"]), ("mlflow_basic" = ["write"])),
    request_body = SetTagBody,
    responses(
        (status = 200, description = "Set", body = Empty),
        (status = 400, description = "`INVALID_PARAMETER_VALUE`: a tag promptreg refuses", body = MlflowErrorBody),
        (status = 404, description = "`RESOURCE_DOES_NOT_EXIST`: no such prompt", body = MlflowErrorBody),
    ))]
pub async fn set_registered_model_tag(
    State(state): State<AppState>,
    auth: MlflowAuth<scope::Write>,
    body: std::result::Result<Json<SetTagBody>, ApiError>,
) -> Result<axum::Json<Empty>> {
    let Json(body) = body?;
    let name = name_of(&body.name)?;
    if body.key == IS_PROMPT {
        if body.value != "true" {
            return Err(MlflowError::not_a_prompt(&format!(
                "`{IS_PROMPT}` is always \"true\" here"
            )));
        }
        state.registry.get_prompt(auth.project, &name).await?;
        return Ok(axum::Json(Empty {}));
    }
    if body.key == EXPERIMENT_IDS {
        // Links to MLflow experiments, which promptreg does not have.
        state.registry.get_prompt(auth.project, &name).await?;
        return Ok(axum::Json(Empty {}));
    }
    let tag = join_tag(&body.key, &body.value)?;
    crate::api::prompts::tags("tags", Some(vec![tag.clone()]))?;
    prompts::edit_tags(
        &state.registry,
        auth.project,
        &auth.actor(),
        &name,
        |tags| {
            let mut kept: Vec<String> = tags
                .iter()
                .filter(|t| split_tag(t).0 != body.key)
                .cloned()
                .collect();
            kept.push(tag);
            kept
        },
    )
    .await?;
    Ok(axum::Json(Empty {}))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "greeting", "key": "team"}))]
pub struct DeleteTagBody {
    name: String,
    key: String,
}

/// Delete a prompt tag (the prompt's tag `key=…`).
#[utoipa::path(delete, path = "/api/2.0/mlflow/registered-models/delete-tag", tag = "mlflow",
    operation_id = "mlflow_delete_registered_model_tag",
    security(("bearer" = ["write"]), ("mlflow_basic" = ["write"])),
    request_body = DeleteTagBody,
    responses(
        (status = 200, description = "Deleted (or never set)", body = Empty),
        (status = 400, description = "`INVALID_PARAMETER_VALUE`: `mlflow.prompt.is_prompt`, which every prompt has", body = MlflowErrorBody),
        (status = 404, description = "`RESOURCE_DOES_NOT_EXIST`: no such prompt", body = MlflowErrorBody),
    ))]
pub async fn delete_registered_model_tag(
    State(state): State<AppState>,
    auth: MlflowAuth<scope::Write>,
    body: std::result::Result<Json<DeleteTagBody>, ApiError>,
) -> Result<axum::Json<Empty>> {
    let Json(body) = body?;
    let name = name_of(&body.name)?;
    if body.key == IS_PROMPT {
        return Err(MlflowError::not_a_prompt(&format!(
            "`{IS_PROMPT}` cannot be removed"
        )));
    }
    prompts::edit_tags(
        &state.registry,
        auth.project,
        &auth.actor(),
        &name,
        |tags| {
            tags.iter()
                .filter(|t| split_tag(t).0 != body.key)
                .cloned()
                .collect()
        },
    )
    .await?;
    Ok(axum::Json(Empty {}))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "greeting"}))]
pub struct DeleteModelBody {
    name: String,
}

/// Delete a prompt: only a prompt with no version, which is left in place
/// (the client deletes the prompt it just created when its first version is
/// refused). promptreg never deletes versions; archive through `/v1`.
#[utoipa::path(delete, path = "/api/2.0/mlflow/registered-models/delete", tag = "mlflow",
    operation_id = "mlflow_delete_registered_model",
    security(("bearer" = ["write"]), ("mlflow_basic" = ["write"])),
    request_body = DeleteModelBody,
    responses(
        (status = 200, description = "The prompt has no version: nothing to delete", body = Empty),
        (status = 400, description = "`INVALID_PARAMETER_VALUE`: the prompt has versions", body = MlflowErrorBody),
        (status = 404, description = "`RESOURCE_DOES_NOT_EXIST`: no such prompt", body = MlflowErrorBody),
    ))]
pub async fn delete_registered_model(
    State(state): State<AppState>,
    auth: MlflowAuth<scope::Write>,
    body: std::result::Result<Json<DeleteModelBody>, ApiError>,
) -> Result<axum::Json<Empty>> {
    let Json(body) = body?;
    let name = name_of(&body.name)?;
    let summary = state.registry.get_prompt(auth.project, &name).await?;
    if summary.latest_version.is_some() {
        return Err(MlflowError::invalid(format!(
            "promptreg never deletes a prompt's versions; archive {:?} with \
             PATCH /v1/prompts/{{name}} {{\"archived\": true}}",
            summary.prompt.name
        )));
    }
    Ok(axum::Json(Empty {}))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AliasParams {
    #[param(example = "greeting")]
    name: String,
    /// A label, or `latest` (the newest version).
    #[param(example = "production")]
    alias: String,
}

/// Get the version an alias (label) points at; `latest` is the newest.
#[utoipa::path(get, path = "/api/2.0/mlflow/registered-models/alias", tag = "mlflow",
    operation_id = "mlflow_get_model_version_by_alias",
    security(("bearer" = ["read"]), ("mlflow_basic" = ["read"])),
    params(AliasParams),
    responses(
        (status = 200, description = "The version", body = ModelVersionResponse),
        (status = 400, description = "`INVALID_PARAMETER_VALUE`: a name or alias promptreg refuses", body = MlflowErrorBody),
        (status = 404, description = "`RESOURCE_DOES_NOT_EXIST`: no such prompt, or the alias is not set", body = MlflowErrorBody),
    ))]
pub async fn get_model_version_by_alias(
    State(state): State<AppState>,
    auth: MlflowAuth<scope::Read>,
    params: std::result::Result<Query<AliasParams>, ApiError>,
    unit: crate::api::served::UnitHeader,
) -> Result<(axum::http::HeaderMap, axum::Json<ModelVersionResponse>)> {
    let Query(params) = params?;
    let name = name_of(&params.name)?;
    let label = LabelName::parse(&params.alias)
        .map_err(|e| MlflowError::invalid(format!("alias: {}", e.0)))?;
    let project = auth.project;
    let served = state
        .registry
        .serve_version(
            project,
            &name,
            &VersionRef::Label(label.clone()),
            crate::api::served::unit(None, &unit),
        )
        .await?;
    Ok((
        crate::api::served::headers(&served),
        ModelVersionResponse::new(
            model_version(&state, project, &served.version, Some(&label)).await?,
        ),
    ))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "greeting", "alias": "production", "version": "2"}))]
pub struct SetAliasBody {
    name: String,
    /// `[a-z][a-z0-9_-]*`, not `latest`.
    alias: String,
    /// The version number.
    #[schema(value_type = String)]
    version: Value,
}

/// Point an alias (label) at a version, once the label's gate passes. The
/// move is kept in the label's history.
#[utoipa::path(post, path = "/api/2.0/mlflow/registered-models/alias", tag = "mlflow",
    operation_id = "mlflow_set_registered_model_alias",
    security(("bearer" = ["promote"]), ("mlflow_basic" = ["promote"])),
    request_body = SetAliasBody,
    responses(
        (status = 200, description = "Moved", body = Empty),
        (status = 400, description = "`INVALID_PARAMETER_VALUE`: an alias promptreg refuses (or `latest`), a version that is no number, a gate that refuses the version (its reason given)", body = MlflowErrorBody),
        (status = 404, description = "`RESOURCE_DOES_NOT_EXIST`: no such prompt or version", body = MlflowErrorBody),
    ))]
pub async fn set_registered_model_alias(
    State(state): State<AppState>,
    auth: MlflowAuth<scope::Promote>,
    body: std::result::Result<Json<SetAliasBody>, ApiError>,
) -> Result<axum::Json<Empty>> {
    let Json(body) = body?;
    let name = name_of(&body.name)?;
    let label =
        LabelName::parse_settable(&body.alias).map_err(|e| ApiError::invalid_label("alias", e))?;
    let seq = match &body.version {
        Value::String(raw) => super::versions::parse_seq(raw)?,
        other => super::versions::parse_seq(&other.to_string())?,
    };
    let project = auth.project;
    let version = prompts::version_by_seq(&state.registry, project, &name, seq).await?;
    labels::move_label(
        &state.registry,
        project,
        &auth.actor(),
        &name,
        &label,
        &version.version,
    )
    .await?;
    Ok(axum::Json(Empty {}))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "greeting", "alias": "staging"}))]
pub struct DeleteAliasBody {
    name: String,
    alias: String,
}

/// Delete an alias (label); the deletion is kept in the label's history.
#[utoipa::path(delete, path = "/api/2.0/mlflow/registered-models/alias", tag = "mlflow",
    operation_id = "mlflow_delete_registered_model_alias",
    security(("bearer" = ["promote"]), ("mlflow_basic" = ["promote"])),
    request_body = DeleteAliasBody,
    responses(
        (status = 200, description = "Deleted", body = Empty),
        (status = 400, description = "`INVALID_PARAMETER_VALUE`: an alias promptreg refuses, or `latest`", body = MlflowErrorBody),
        (status = 404, description = "`RESOURCE_DOES_NOT_EXIST`: no such prompt, or the alias is not set", body = MlflowErrorBody),
    ))]
pub async fn delete_registered_model_alias(
    State(state): State<AppState>,
    auth: MlflowAuth<scope::Promote>,
    body: std::result::Result<Json<DeleteAliasBody>, ApiError>,
) -> Result<axum::Json<Empty>> {
    let Json(body) = body?;
    let name = name_of(&body.name)?;
    let label =
        LabelName::parse_settable(&body.alias).map_err(|e| ApiError::invalid_label("alias", e))?;
    labels::retreat_label(
        &state.registry,
        auth.project,
        &auth.actor(),
        &name,
        &label,
        Retreat::Delete,
    )
    .await?;
    Ok(axum::Json(Empty {}))
}
