//! Quality gates: a label (say `production`) may only move to a version with
//! a succeeded evaluation on the gate's dataset that meets every rule.
//! Rollbacks are exempt: they return to a version the label held before.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{scope, Auth};
use super::extract::{label_name, prompt_name, Json, Path};
use super::AppState;
use crate::domain::jobs::{Gate, GateRule};
use crate::domain::{LabelName, ProjectId, PromptName, Version};
use crate::error::{ApiError, FieldError, Problem};
use crate::eval::judge::is_judge_score;
use crate::eval::report::{check_gate, GateVerdict};
use crate::eval::METRIC_NAMES;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"dataset": "support/faq", "rules": [{"metric": "exact_match", "min": 0.8}]}))]
pub struct PutGateRequest {
    dataset: String,
    rules: Vec<GateRule>,
}

#[derive(Serialize, ToSchema)]
pub struct GateResponse {
    #[schema(example = "production")]
    label: String,
    dataset: String,
    rules: Vec<GateRule>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
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

#[derive(Serialize, ToSchema)]
pub struct GateList {
    items: Vec<GateResponse>,
}

fn check_rules(rules: &[GateRule]) -> Result<(), ApiError> {
    if rules.is_empty() {
        return Err(ApiError::validation("rules", "give at least one rule"));
    }
    let mut errors = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let field = format!("rules[{i}]");
        if !(METRIC_NAMES.contains(&rule.metric.as_str()) || is_judge_score(&rule.metric)) {
            errors.push(FieldError::new(
                &field,
                format!(
                    "unknown metric {:?}; known: {} and llm_judge_<rubric>",
                    rule.metric,
                    METRIC_NAMES.join(", ")
                ),
            ));
        }
        if rule.min.is_none() && rule.max.is_none() {
            errors.push(FieldError::new(&field, "give `min`, `max` or both"));
        }
        if [rule.min, rule.max]
            .into_iter()
            .flatten()
            .any(|b| !b.is_finite())
        {
            errors.push(FieldError::new(&field, "bounds are finite numbers"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Set the gate on a label: which dataset, which rules.
#[utoipa::path(put, path = "/v1/prompts/{name}/gates/{label}", tag = "gates",
    security(("bearer" = ["promote"])),
    params(
        ("name" = String, Path, description = "Prompt name; folder slashes as %2F"),
        ("label" = String, Path, description = "The gated label"),
    ),
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
    check_rules(&body.rules)?;
    let gate = state
        .registry
        .store()
        .put_gate(
            auth.project,
            &name,
            &label,
            &body.dataset,
            &body.rules,
            &auth.actor(),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::DatasetNotFound => {
                ApiError::DatasetNotFound(body.dataset.clone())
            }
            other => ApiError::from_store(other, name.as_str()),
        })?;
    Ok(axum::Json(gate.into()))
}

/// The gates of a prompt's labels.
#[utoipa::path(get, path = "/v1/prompts/{name}/gates", tag = "gates",
    security(("bearer" = ["read"])),
    params(("name" = String, Path, description = "Prompt name; folder slashes as %2F")),
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
    let gates = state
        .registry
        .store()
        .list_gates(auth.project, &name)
        .await
        .map_err(|e| ApiError::from_store(e, name.as_str()))?;
    Ok(axum::Json(GateList {
        items: gates.into_iter().map(GateResponse::from).collect(),
    }))
}

/// Remove a label's gate.
#[utoipa::path(delete, path = "/v1/prompts/{name}/gates/{label}", tag = "gates",
    security(("bearer" = ["promote"])),
    params(
        ("name" = String, Path, description = "Prompt name; folder slashes as %2F"),
        ("label" = String, Path, description = "The gated label"),
    ),
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
    let deleted = state
        .registry
        .store()
        .delete_gate(auth.project, &name, &label, &auth.actor())
        .await
        .map_err(|e| ApiError::from_store(e, name.as_str()))?;
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::GateNotFound(label.to_string()))
    }
}

/// A version post cannot move a gated label: the new version has no
/// evaluation yet. Post it without the label, evaluate it, then move it.
pub async fn refuse_gated_label(
    state: &AppState,
    project: ProjectId,
    name: &PromptName,
    label: &LabelName,
) -> Result<(), ApiError> {
    let gate = state
        .registry
        .store()
        .find_gate(project, name, label.as_str())
        .await
        .map_err(|e| ApiError::from_store(e, name.as_str()))?;
    match gate {
        None => Ok(()),
        Some(gate) => Err(ApiError::GateFailed {
            label: label.to_string(),
            reason: format!(
                "a new version has no evaluation on {:?} yet; post it without this label, evaluate it, then move the label",
                gate.dataset_name
            ),
            failed: vec![FieldError::new(
                "labels",
                format!("label {label:?} is gated"),
            )],
        }),
    }
}

/// Refuses (412 `gate_failed`) to point `label` at `version` unless the
/// label has no gate, or a succeeded evaluation of that version on the
/// gate's dataset meets every rule.
pub async fn enforce(
    state: &AppState,
    project: ProjectId,
    name: &PromptName,
    label: &LabelName,
    version: &Version,
) -> Result<(), ApiError> {
    let store = state.registry.store();
    let gate = store
        .find_gate(project, name, label.as_str())
        .await
        .map_err(|e| ApiError::from_store(e, name.as_str()))?;
    let Some(gate) = gate else {
        return Ok(());
    };
    let failed = |reason: String, failed: Vec<FieldError>| ApiError::GateFailed {
        label: label.to_string(),
        reason,
        failed,
    };
    let verdict = check_gate(store, &gate, version)
        .await
        .map_err(|e| ApiError::from_store(e, name.as_str()))?;
    let (evaluation, violations) = match verdict {
        GateVerdict::Passed => return Ok(()),
        GateVerdict::Broken {
            evaluation,
            violations,
        } => (evaluation, violations),
        GateVerdict::NotEvaluated => {
            let why = format!(
                "version {} has no succeeded evaluation on dataset {:?}",
                version.version, gate.dataset_name
            );
            let errors = gate
                .rules
                .iter()
                .enumerate()
                .map(|(i, _)| FieldError::new(format!("rules[{i}]"), why.clone()))
                .collect();
            return Err(failed(why, errors));
        }
    };
    let reason = format!(
        "evaluation {} of version {} breaks {} of {} rules",
        evaluation,
        version.version,
        violations.len(),
        gate.rules.len()
    );
    Err(failed(
        reason,
        violations
            .into_iter()
            .map(|(i, why)| FieldError::new(format!("rules[{i}]"), why))
            .collect(),
    ))
}
