//! Quality gates: a label (say `production`) may only move to a version with
//! a succeeded evaluation on the gate's dataset that meets every rule.
//! Rollbacks are exempt: they return to a version the label held before.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{scope, Auth};
use super::extract::{label_name, prompt_name, Json, Path, PromptPath};
use super::AppState;
use crate::domain::jobs::{Gate, GateRule};
use crate::error::{ApiError, Problem};
use crate::services::labels;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"dataset": "support/faq", "rules": [{"metric": "exact_match", "min": 0.8}]}))]
pub struct PutGateRequest {
    dataset: String,
    rules: Vec<GateRule>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GateResponse {
    #[schema(example = "production")]
    pub label: String,
    pub dataset: String,
    pub rules: Vec<GateRule>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Gate> for GateResponse {
    fn from(g: Gate) -> Self {
        Self {
            label: g.label,
            dataset: g.dataset_name,
            rules: g.rules,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GateList {
    pub items: Vec<GateResponse>,
}

/// Set the gate on a label: which dataset, which rules.
#[utoipa::path(put, path = "/v1/prompts/{name}/gates/{label}", tag = "gates",
    security(("bearer" = ["promote"])),
    params(PromptPath, ("label" = String, Path, description = "The gated label")),
    request_body = PutGateRequest,
    responses(
        (status = 200, description = "The gate", body = GateResponse),
        (status = 404, description = "`prompt_not_found` or `dataset_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `invalid_label` or `reserved_label`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_gate(
    State(state): State<AppState>,
    auth: Auth<scope::Promote>,
    Path((name, label)): Path<(String, String)>,
    Json(body): Json<PutGateRequest>,
) -> Result<axum::Json<GateResponse>, ApiError> {
    let name = prompt_name(&name)?;
    let label = label_name("label", &label)?;
    let gate = labels::put_gate(
        &state.registry,
        auth.project,
        &auth.actor(),
        &name,
        &label,
        &body.dataset,
        &body.rules,
    )
    .await?;
    Ok(axum::Json(gate.into()))
}

/// The gates of a prompt's labels.
#[utoipa::path(get, path = "/v1/prompts/{name}/gates", tag = "gates",
    security(("bearer" = ["read"])),
    params(PromptPath),
    responses(
        (status = 200, description = "The gates", body = GateList),
        (status = 404, description = "`prompt_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_gates(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(name): Path<String>,
) -> Result<axum::Json<GateList>, ApiError> {
    let name = prompt_name(&name)?;
    let gates = labels::list_gates(&state.registry, auth.project, &name).await?;
    Ok(axum::Json(GateList {
        items: gates.into_iter().map(GateResponse::from).collect(),
    }))
}

/// Remove a label's gate.
#[utoipa::path(delete, path = "/v1/prompts/{name}/gates/{label}", tag = "gates",
    security(("bearer" = ["promote"])),
    params(PromptPath, ("label" = String, Path, description = "The gated label")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "`prompt_not_found` or `gate_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_gate(
    State(state): State<AppState>,
    auth: Auth<scope::Promote>,
    Path((name, label)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let name = prompt_name(&name)?;
    let label = label_name("label", &label)?;
    labels::delete_gate(&state.registry, auth.project, &auth.actor(), &name, &label).await?;
    Ok(StatusCode::NO_CONTENT)
}
