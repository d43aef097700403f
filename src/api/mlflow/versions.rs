//! MLflow's model-version routes for prompts: create a version from its
//! tags, and get one by number.

use axum::extract::State;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::models::{model_version, name_of, ModelVersionResponse, Result};
use super::wire::{self, MlflowTag};
use super::{MlflowAuth, MlflowError, MlflowErrorBody};
use crate::api::auth::scope;
use crate::api::extract::{Json, Query};
use crate::api::AppState;
use crate::error::ApiError;
use crate::services::{prompts, versions};

/// A version number: a positive integer.
pub(super) fn parse_seq(raw: &str) -> Result<i64> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|seq| *seq >= 1)
        .ok_or_else(|| {
            MlflowError::invalid(format!(
                "version: {raw:?} is not a version number (1, 2, 3…)"
            ))
        })
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({
    "name": "greeting",
    "source": "dummy-source",
    "description": "Warmer greeting",
    "tags": [
        {"key": "mlflow.prompt.is_prompt", "value": "true"},
        {"key": "mlflow.prompt.text", "value": "Hello {{ name }}!"},
        {"key": "_mlflow_prompt_type", "value": "text"},
        {"key": "git_sha", "value": "4f2a9c1"}
    ]
}))]
pub struct CreateModelVersionBody {
    name: String,
    /// Not kept: prompts have no artifacts.
    #[allow(dead_code)]
    source: Option<String>,
    /// `mlflow.prompt.is_prompt` = `true` and `mlflow.prompt.text` (the
    /// template, or a chat prompt's messages as a JSON string) are required;
    /// `_mlflow_prompt_type`, `_mlflow_prompt_response_format` (kept as
    /// `output_schema`) and `_mlflow_prompt_model_config` (kept as
    /// `model_config`) are content; every other tag is kept in the version's
    /// `metadata`.
    #[serde(default)]
    tags: Vec<MlflowTag>,
    /// Kept as the version's `message`.
    description: Option<String>,
}

/// Create a version of a prompt from MLflow's version tags (and the prompt,
/// if new). Content equal to the latest version's creates nothing and
/// answers that version.
#[utoipa::path(post, path = "/api/2.0/mlflow/model-versions/create", tag = "mlflow",
    operation_id = "mlflow_create_model_version",
    security(("bearer" = ["write"]), ("mlflow_basic" = ["write"])),
    request_body = CreateModelVersionBody,
    responses(
        (status = 200, description = "Created, or the latest version when its content is identical", body = ModelVersionResponse),
        (status = 400, description = "`INVALID_PARAMETER_VALUE`: not a prompt, a tag or template promptreg refuses, an archived prompt", body = MlflowErrorBody),
    ))]
pub async fn create_model_version(
    State(state): State<AppState>,
    auth: MlflowAuth<scope::Write>,
    body: std::result::Result<Json<CreateModelVersionBody>, ApiError>,
) -> Result<axum::Json<ModelVersionResponse>> {
    let Json(body) = body?;
    let name = name_of(&body.name)?;
    let new = wire::new_version(body.tags, body.description)?;
    let project = auth.project;
    let created = versions::publish(
        &state.registry,
        &state.renderer,
        project,
        &auth.actor(),
        &name,
        new,
        None,
        // MLflow lets a prompt change between text and chat.
        true,
    )
    .await?;
    Ok(ModelVersionResponse::new(
        model_version(&state, project, &created.version, None).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetModelVersionParams {
    #[param(example = "greeting")]
    name: String,
    /// The version number (`seq`).
    #[param(example = "2")]
    version: String,
}

/// Get a prompt version by number.
#[utoipa::path(get, path = "/api/2.0/mlflow/model-versions/get", tag = "mlflow",
    operation_id = "mlflow_get_model_version",
    security(("bearer" = ["read"]), ("mlflow_basic" = ["read"])),
    params(GetModelVersionParams),
    responses(
        (status = 200, description = "The version", body = ModelVersionResponse),
        (status = 400, description = "`INVALID_PARAMETER_VALUE`: a name promptreg refuses, a version that is no number", body = MlflowErrorBody),
        (status = 404, description = "`RESOURCE_DOES_NOT_EXIST`: no such prompt or version", body = MlflowErrorBody),
    ))]
pub async fn get_model_version(
    State(state): State<AppState>,
    auth: MlflowAuth<scope::Read>,
    params: std::result::Result<Query<GetModelVersionParams>, ApiError>,
) -> Result<axum::Json<ModelVersionResponse>> {
    let Query(params) = params?;
    let name = name_of(&params.name)?;
    let seq = parse_seq(&params.version)?;
    let project = auth.project;
    let version = prompts::version_by_seq(&state.registry, project, &name, seq).await?;
    Ok(ModelVersionResponse::new(
        model_version(&state, project, &version, None).await?,
    ))
}
