//! Optimizations: a durable job that proposes better templates for a
//! version, scores them on a dataset and keeps the best as a new version.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::{scope, Auth};
use super::extract::{
    filter_text, label_name, page_request, prompt_name, version_ref, Json, Path, Query,
};
use super::jobs::Progress;
use super::scores::{parse_metrics, MetricRequest};
use super::AppState;
use crate::domain::auth::Scope;
use crate::domain::content::PromptBody;
use crate::domain::jobs::{JobStatus, MetricSpec};
use crate::domain::optimization::{
    Budget, Candidate, Iteration, ModelChoice, Optimization, OptimizationFilter, OptimizationSpec,
    Promotion, Split, SplitScores, StopReason, StrategyName,
};
use crate::domain::PromptName;
use crate::error::{ApiError, FieldError, Problem};
use crate::optimize::runner::split_sizes;
use crate::providers::Providers;
use crate::services::evaluations::unknown_provider;
use crate::services::{optimizations, ServiceError};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "prompt": "support/triage",
    "ref": "production",
    "dataset": "support/tickets",
    "split": {"train": 0.6, "seed": 7},
    "metric": {"name": "exact_match", "params": {"ignore_case": true}},
    "target": {"provider": "local", "model": "qwen2.5-0.5b-instruct", "params": {"temperature": 0}},
    "optimizer": {"provider": "local", "model": "qwen2.5-0.5b-instruct"},
    "strategy": "opro",
    "max_iterations": 5,
    "candidates_per_iteration": 4,
    "patience": 2,
    "target_score": 0.95,
    "budget": {"max_calls": 2000},
    "promote_to": "staging",
    "min_improvement": 0.05
}))]
pub struct CreateOptimizationRequest {
    pub prompt: String,
    /// A semver or label (default: the server's default label, `production`).
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub dataset: String,
    /// Default: 60% training, seed 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// A deterministic metric (see `GET /v1/metrics`), not `llm_judge`.
    pub metric: MetricRequest,
    /// The model the prompt is for: it answers every scored item.
    pub target: ModelChoice,
    /// The model that proposes candidates (`opro`, `critique`); `fewshot` needs none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<ModelChoice>,
    pub strategy: StrategyName,
    /// 1 to 100 (default 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    /// 1 to 16 (default 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidates_per_iteration: Option<u32>,
    /// Iterations without a better validation score before stopping: 1 to 100 (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patience: Option<u32>,
    /// Stop once the validation score reaches this (0 to 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Provider calls in flight at most (1 to 256, default 8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Demonstrations per candidate (`fewshot`): 1 to 16 (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_demos: Option<u32>,
    /// Point this label at the result when it beats the base by `min_improvement`
    /// on validation and the label's gate passes. Needs the `promote` scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promote_to: Option<String>,
    /// Default 0: any improvement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_improvement: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OptimizationUsage {
    /// Provider requests made, retries included, across both models.
    pub calls: u64,
    /// From the providers' configured prices; 0 when they have none.
    pub cost_usd: f64,
}

/// The best candidate so far: its template and scores.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Best {
    pub template: PromptBody,
    pub train_score: Option<f64>,
    pub val_score: Option<f64>,
    /// The iteration that proposed it.
    pub iteration: u32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OptimizationResponse {
    pub id: Uuid,
    pub job_id: Uuid,
    pub status: JobStatus,
    #[schema(example = "support/triage")]
    pub prompt: String,
    /// The base version.
    #[schema(example = "1.0.0")]
    pub version: String,
    pub dataset: String,
    /// What was asked for, as checked at creation.
    #[serde(flatten)]
    pub spec: OptimizationSpec,
    /// Training and validation items.
    pub train_items: i64,
    pub val_items: i64,
    /// Iterations completed of `max_iterations`.
    pub progress: Progress,
    /// The base version, scored like every candidate.
    pub baseline: SplitScores,
    pub iterations: Vec<Iteration>,
    /// The candidate with the best validation score, if any was scored.
    pub best: Option<Best>,
    /// The version created from the best candidate; `null` while running,
    /// when cancelled, or when no candidate beat the baseline.
    pub result_version: Option<String>,
    pub stop_reason: Option<StopReason>,
    pub promotion: Option<Promotion>,
    pub usage: OptimizationUsage,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<Optimization> for OptimizationResponse {
    fn from(o: Optimization) -> Self {
        let spec = o.spec;
        let state = o.state;
        let best = state.best().map(|best: &Candidate| Best {
            template: best.template.clone(),
            train_score: best.train_score,
            val_score: best.val_score,
            iteration: state
                .iterations
                .iter()
                .find(|i| i.candidates.iter().any(|c| std::ptr::eq(c, best)))
                .map_or(0, |i| i.number),
        });
        let (train, val) =
            split_sizes(usize::try_from(o.item_count).unwrap_or(0), spec.split.train);
        Self {
            id: o.id,
            job_id: o.job.id,
            status: o.job.status,
            prompt: o.prompt_name,
            version: o.version.to_string(),
            dataset: o.dataset_name,
            spec,
            train_items: train as i64,
            val_items: val as i64,
            progress: Progress::of(&o.job),
            baseline: state.baseline,
            best,
            result_version: o.result_version.map(|v| v.to_string()),
            stop_reason: state.stop_reason,
            promotion: state.promotion.clone(),
            usage: OptimizationUsage {
                calls: state.calls,
                cost_usd: state.cost_usd,
            },
            iterations: state.iterations,
            error: o.job.error,
            created_at: o.created_at,
            finished_at: o.job.finished_at,
        }
    }
}

/// An optimization as a list shows it: what it ran and how it did, without
/// its iterations and templates (`GET /v1/optimizations/{id}` has those).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OptimizationSummaryResponse {
    pub id: Uuid,
    pub job_id: Uuid,
    pub status: JobStatus,
    #[schema(example = "support/triage")]
    pub prompt: String,
    /// The base version.
    #[schema(example = "1.0.0")]
    pub version: String,
    pub dataset: String,
    pub strategy: StrategyName,
    pub metric: MetricSpec,
    /// Iterations completed of `max_iterations`.
    pub progress: Progress,
    /// The base version's scores.
    pub baseline: SplitScores,
    /// The best validation score so far, the baseline's included.
    #[schema(example = 0.875)]
    pub best_val_score: Option<f64>,
    /// The version created from the best candidate, once there is one.
    pub result_version: Option<String>,
    pub stop_reason: Option<StopReason>,
    pub usage: OptimizationUsage,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<Optimization> for OptimizationSummaryResponse {
    fn from(o: Optimization) -> Self {
        Self {
            id: o.id,
            job_id: o.job.id,
            status: o.job.status,
            prompt: o.prompt_name,
            version: o.version.to_string(),
            dataset: o.dataset_name,
            strategy: o.spec.strategy,
            metric: o.spec.metric,
            progress: Progress::of(&o.job),
            baseline: o.state.baseline,
            best_val_score: o.state.best_val_score(),
            result_version: o.result_version.map(|v| v.to_string()),
            stop_reason: o.state.stop_reason,
            usage: OptimizationUsage {
                calls: o.state.calls,
                cost_usd: o.state.cost_usd,
            },
            error: o.job.error,
            created_at: o.created_at,
            finished_at: o.job.finished_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct OptimizationPage {
    items: Vec<OptimizationSummaryResponse>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

page_from!(OptimizationPage of OptimizationSummaryResponse);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OptimizationListParams {
    /// Only optimizations of this prompt.
    #[param(example = "support/triage")]
    prompt: Option<String>,
    /// Only optimizations whose job is in this state.
    status: Option<JobStatus>,
    /// Items per page, 1 to 100.
    #[param(default = 20, minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn bounded(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<u32>,
    default: u32,
    max: u32,
) -> u32 {
    let value = value.unwrap_or(default);
    if !(1..=max).contains(&value) {
        errors.push(FieldError::new(field, format!("1 to {max}")));
    }
    value
}

/// Checks every field and names each one that is wrong.
pub(crate) fn parse_spec(
    providers: &Providers,
    body: &CreateOptimizationRequest,
) -> Result<OptimizationSpec, ApiError> {
    let mut errors = Vec::new();
    let split = body.split.unwrap_or_default();
    if !(split.train > 0.0 && split.train < 1.0) {
        errors.push(FieldError::new(
            "split.train",
            "a share strictly between 0 and 1",
        ));
    }
    let metric = match parse_metrics("metric", vec![body.metric.clone()], false) {
        Ok((mut specs, _)) => specs.pop(),
        Err(ApiError::Service(ServiceError::Validation(found))) => {
            errors.extend(found.into_iter().map(|e| FieldError {
                field: "metric".to_owned(),
                ..e
            }));
            None
        }
        Err(other) => return Err(other),
    };
    let max_iterations = bounded(&mut errors, "max_iterations", body.max_iterations, 5, 100);
    let candidates_per_iteration = bounded(
        &mut errors,
        "candidates_per_iteration",
        body.candidates_per_iteration,
        4,
        16,
    );
    let patience = bounded(&mut errors, "patience", body.patience, 3, 100);
    let concurrency = bounded(&mut errors, "concurrency", body.concurrency, 8, 256);
    let num_demos = bounded(&mut errors, "num_demos", body.num_demos, 3, 16);
    if let Some(target) = body.target_score {
        if !(0.0..=1.0).contains(&target) {
            errors.push(FieldError::new("target_score", "0 to 1"));
        }
    }
    let budget = body.budget.unwrap_or_default();
    if budget.max_calls == Some(0) {
        errors.push(FieldError::new("budget.max_calls", "at least 1"));
    }
    if budget
        .max_cost_usd
        .is_some_and(|c| !(c > 0.0 && c.is_finite()))
    {
        errors.push(FieldError::new("budget.max_cost_usd", "a positive amount"));
    }
    let min_improvement = body.min_improvement.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&min_improvement) {
        errors.push(FieldError::new("min_improvement", "0 to 1"));
    }
    if let Some(label) = &body.promote_to {
        if let Err(e) = label_name("promote_to", label) {
            errors.push(FieldError::new("promote_to", e.to_string()));
        }
    }
    match (&body.optimizer, body.strategy) {
        (None, StrategyName::Opro | StrategyName::Critique) => errors.push(FieldError::new(
            "optimizer",
            format!("{} needs an optimizer model", body.strategy.as_str()),
        )),
        (Some(optimizer), _) => check_provider(
            providers,
            &mut errors,
            "optimizer.provider",
            &optimizer.provider,
        ),
        (None, StrategyName::Fewshot) => {}
    }
    check_provider(
        providers,
        &mut errors,
        "target.provider",
        &body.target.provider,
    );
    if budget.max_cost_usd.is_some() {
        // A provider without prices makes every call free: the limit would never bite.
        let providers = providers.list();
        let called = std::iter::once(&body.target.provider)
            .chain(body.optimizer.as_ref().map(|o| &o.provider));
        for name in called {
            if let Some(info) = providers.iter().find(|p| &p.name == name) {
                if info.models.is_empty() {
                    errors.push(FieldError::new(
                        "budget.max_cost_usd",
                        format!("provider {name:?} has no prices configured, so its calls cost nothing; configure [providers.{name}.prices] or use max_calls"),
                    ));
                }
            }
        }
    }
    match metric {
        Some(metric) if errors.is_empty() => Ok(OptimizationSpec {
            split,
            metric,
            target: body.target.clone(),
            optimizer: body.optimizer.clone(),
            strategy: body.strategy,
            max_iterations,
            candidates_per_iteration,
            patience,
            target_score: body.target_score,
            budget,
            concurrency,
            num_demos,
            promote_to: body.promote_to.clone(),
            min_improvement,
        }),
        _ => Err(ApiError::invalid(errors)),
    }
}

fn check_provider(providers: &Providers, errors: &mut Vec<FieldError>, field: &str, name: &str) {
    if let Some(why) = unknown_provider(providers, name) {
        errors.push(FieldError::new(field, why));
    }
}

/// Start an optimization: answers 202 with it; a worker runs it.
#[utoipa::path(post, path = "/v1/optimizations", tag = "optimizations",
    security(("bearer" = ["evaluate"])),
    request_body = CreateOptimizationRequest,
    responses(
        (status = 202, description = "Queued", body = OptimizationResponse),
        (status = 403, description = "`insufficient_scope`: the key lacks `evaluate`, or `promote_to` is set and the key lacks `promote`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`prompt_not_found`, `version_not_found`, `label_not_found` or `dataset_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_optimization(
    State(state): State<AppState>,
    auth: Auth<scope::Evaluate>,
    Json(body): Json<CreateOptimizationRequest>,
) -> Result<impl IntoResponse, ApiError> {
    // The `evaluate` scope covers the result version the job writes (it
    // moves no label by itself); moving a label is `promote`'s.
    if body.promote_to.is_some() {
        auth.also_require(&state, Scope::Promote)?;
    }
    let name = prompt_name(&body.prompt)?;
    let reference = match &body.reference {
        Some(r) => version_ref("ref", r)?,
        None => state.renderer.default_ref(),
    };
    let spec = parse_spec(&state.providers, &body)?;
    let optimization = optimizations::start(
        &state.registry,
        auth.project,
        &auth.actor(),
        &name,
        &reference,
        &body.dataset,
        spec,
    )
    .await?;
    state.wake_workers();
    let location = format!("/v1/optimizations/{}", optimization.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(OptimizationResponse::from(optimization)),
    ))
}

/// List optimizations, newest first, each as a summary: status, progress,
/// baseline and best validation score, result version, calls and cost.
#[utoipa::path(get, path = "/v1/optimizations", tag = "optimizations",
    security(("bearer" = ["read"])),
    params(OptimizationListParams),
    responses(
        (status = 200, description = "A page of optimizations", body = OptimizationPage),
        (status = 422, description = "`validation_failed` (status, limit or cursor) or `invalid_name` (prompt)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_optimizations(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Query(params): Query<OptimizationListParams>,
) -> Result<axum::Json<OptimizationPage>, ApiError> {
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let filter = OptimizationFilter {
        prompt: filter_text("prompt", params.prompt)?
            .map(|p| PromptName::parse(&p).map_err(|e| ApiError::invalid_name("prompt", e)))
            .transpose()?,
        status: params.status,
    };
    let page = optimizations::list(&state.registry, auth.project, &filter, page).await?;
    Ok(axum::Json(page.into()))
}

/// An optimization: status, every iteration's candidates and scores, the
/// baseline, the best, the result version, why it stopped, calls and cost.
#[utoipa::path(get, path = "/v1/optimizations/{id}", tag = "optimizations",
    security(("bearer" = ["read"])),
    params(("id" = Uuid, Path, description = "The optimization's id")),
    responses(
        (status = 200, description = "The optimization", body = OptimizationResponse),
        (status = 404, description = "`optimization_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_optimization(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<OptimizationResponse>, ApiError> {
    let optimization = optimizations::get(&state.registry, auth.project, id).await?;
    Ok(axum::Json(optimization.into()))
}
