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
use crate::domain::objective::{Constraint, Measure, Measures, Objective, Point, WeightedMetric};
use crate::domain::optimization::{
    Budget, Candidate, FrontKey, Iteration, ModelChoice, Optimization, OptimizationFilter,
    OptimizationSpec, OptimizationState, Promotion, Split, SplitScores, StopReason, StrategyName,
    DEFAULT_MAX_DROP,
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
    /// Give this or `objective`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<MetricRequest>,
    /// Several metrics with weights, and constraints on cost. Give this or `metric`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective: Option<ObjectiveRequest>,
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
    /// Default 0: any improvement. (`compress` promotes within `max_drop` instead.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_improvement: Option<f64>,
    /// `compress` only: how far below the baseline's validation score a
    /// shorter candidate may fall, 0 to 1 (default 0.01).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_drop: Option<f64>,
}

/// What to optimize: the weighted mean of `metrics`, among candidates that
/// meet every constraint on validation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "metrics": [
        {"name": "exact_match", "weight": 0.8},
        {"name": "length", "params": {"max": 3, "unit": "words"}, "weight": 0.2}
    ],
    "constraints": [{"measure": "input_tokens", "max_ratio": 0.7}]
}))]
pub struct ObjectiveRequest {
    /// Deterministic metrics, at least one.
    pub metrics: Vec<WeightedMetricRequest>,
    /// Bounds on `input_tokens`, `output_tokens`, `cost_usd`, `latency_ms`,
    /// `latency_p90_ms` (per item, on the target model) or `template_tokens`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightedMetricRequest {
    #[schema(example = "exact_match")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    /// Positive (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OptimizationUsage {
    /// Provider requests made, retries included, across both models.
    pub calls: u64,
    /// From the providers' configured prices; 0 when they have none.
    pub cost_usd: f64,
}

/// One measure's Pareto front.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FrontResponse {
    pub measure: Measure,
    /// Cheapest first.
    pub points: Vec<FrontPoint>,
}

/// A template on a front: the baseline (iteration 0) or a candidate.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FrontPoint {
    /// 0 for the baseline.
    pub iteration: u32,
    /// The candidate's position in its iteration's `candidates`.
    pub candidate: u32,
    pub val_score: f64,
    /// The measure's value on validation.
    pub value: f64,
    /// It breaks no constraint: it could be the result.
    pub feasible: bool,
}

impl FrontResponse {
    fn of(measure: Measure, points: Vec<Point<FrontKey>>, state: &OptimizationState) -> Self {
        Self {
            measure,
            points: points
                .into_iter()
                .map(|p| FrontPoint {
                    iteration: p.key.0,
                    candidate: p.key.1,
                    val_score: p.score,
                    value: p.value,
                    feasible: state.feasible_at(p.key),
                })
                .collect(),
        }
    }
}

/// The best candidate so far: its template and scores.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Best {
    pub template: PromptBody,
    pub train_score: Option<f64>,
    pub val_score: Option<f64>,
    /// The iteration that proposed it.
    pub iteration: u32,
    /// Its position in that iteration's `candidates`.
    pub candidate: u32,
    pub template_tokens: u32,
    pub val_measures: Option<Measures>,
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
    /// The result so far: the best validation score among candidates that
    /// break no constraint (`compress`: the shortest within `max_drop`).
    pub best: Option<Best>,
    /// For each measure, the templates scored on validation that no other
    /// beats on both score and that measure, cheapest first: the choices
    /// worth a person's look when a cheaper prompt is wanted.
    pub pareto_front: Vec<FrontResponse>,
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
        let pareto_front = state
            .pareto_fronts()
            .into_iter()
            .map(|(measure, points)| FrontResponse::of(measure, points, &state))
            .collect();
        let best = state.best(spec.strategy).map(|best: &Candidate| {
            let (iteration, candidate) = state
                .iterations
                .iter()
                .find_map(|i| {
                    let index = i.candidates.iter().position(|c| std::ptr::eq(c, best))?;
                    Some((i.number, index as u32))
                })
                .unwrap_or_default();
            Best {
                template: best.template.clone(),
                train_score: best.train_score,
                val_score: best.val_score,
                iteration,
                candidate,
                template_tokens: best.template_tokens,
                val_measures: best.measurements.val_measures,
            }
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
            pareto_front,
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
            best_val_score: o.state.best_val_score(),
            baseline: o.state.baseline,
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
    let objective = parse_objective(providers, body, &mut errors)?;
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
        if body.strategy == StrategyName::Compress {
            // The baseline's own score would meet it before anything is shortened.
            errors.push(FieldError::new(
                "target_score",
                "compress keeps the baseline's score rather than raising it; leave target_score out",
            ));
        } else if !(0.0..=1.0).contains(&target) {
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
        (None, strategy) if strategy.needs_optimizer() => errors.push(FieldError::new(
            "optimizer",
            format!("{} needs an optimizer model", body.strategy.as_str()),
        )),
        (Some(optimizer), _) => check_provider(
            providers,
            &mut errors,
            "optimizer.provider",
            &optimizer.provider,
        ),
        (None, _) => {}
    }
    let max_drop = body.max_drop.unwrap_or(DEFAULT_MAX_DROP);
    if body.max_drop.is_some() && body.strategy != StrategyName::Compress {
        errors.push(FieldError::new(
            "max_drop",
            "only the compress strategy uses it",
        ));
    } else if !(0.0..=1.0).contains(&max_drop) {
        errors.push(FieldError::new("max_drop", "0 to 1"));
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
    match objective {
        Some(objective) if errors.is_empty() => Ok(OptimizationSpec {
            split,
            metric: objective
                .metrics
                .first()
                .map(|m| m.metric.clone())
                .ok_or_else(|| {
                    ApiError::validation("objective.metrics", "give at least one metric")
                })?,
            objective,
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
            max_drop,
        }),
        _ => Err(ApiError::invalid(errors)),
    }
}

/// The objective from `metric` or `objective` (exactly one of them), its
/// metrics checked as evaluations check theirs; `None` with the problems
/// added to `errors`.
fn parse_objective(
    providers: &Providers,
    body: &CreateOptimizationRequest,
    errors: &mut Vec<FieldError>,
) -> Result<Option<Objective>, ApiError> {
    let (field, requests, weights, constraints) = match (&body.metric, &body.objective) {
        (Some(metric), None) => ("metric", vec![metric.clone()], vec![1.0], Vec::new()),
        (None, Some(objective)) => {
            let mut weights = Vec::new();
            for (i, m) in objective.metrics.iter().enumerate() {
                let weight = m.weight.unwrap_or(1.0);
                if !(weight > 0.0 && weight.is_finite()) {
                    errors.push(FieldError::new(
                        format!("objective.metrics[{i}].weight"),
                        "a positive number",
                    ));
                }
                weights.push(weight);
            }
            let requests = objective
                .metrics
                .iter()
                .map(|m| MetricRequest::Spec {
                    name: m.name.clone(),
                    params: m.params.clone(),
                })
                .collect();
            (
                "objective.metrics",
                requests,
                weights,
                objective.constraints.clone(),
            )
        }
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(
                "objective",
                "give metric or objective, not both",
            ));
            return Ok(None);
        }
        (None, None) => {
            errors.push(FieldError::new(
                "metric",
                "give a metric, or an objective with metrics",
            ));
            return Ok(None);
        }
    };
    for (i, constraint) in constraints.iter().enumerate() {
        if let Some(why) = constraint_problem(providers, body, constraint) {
            errors.push(FieldError::new(format!("objective.constraints[{i}]"), why));
        }
    }
    let specs = match parse_metrics(field, requests, false) {
        Ok((specs, _)) => specs,
        Err(ApiError::Service(ServiceError::Validation(found))) => {
            // A lone metric's problem is the field's; a list names the entry.
            errors.extend(found.into_iter().map(|e| match field {
                "metric" => FieldError {
                    field: "metric".to_owned(),
                    ..e
                },
                _ => e,
            }));
            return Ok(None);
        }
        Err(other) => return Err(other),
    };
    Ok(Some(Objective {
        metrics: specs
            .into_iter()
            .zip(weights)
            .map(|(metric, weight)| WeightedMetric { metric, weight })
            .collect(),
        constraints,
    }))
}

/// What is wrong with a constraint, if anything.
fn constraint_problem(
    providers: &Providers,
    body: &CreateOptimizationRequest,
    constraint: &Constraint,
) -> Option<String> {
    let bounds = [constraint.max, constraint.max_ratio, constraint.min];
    if bounds.iter().all(Option::is_none) {
        return Some("give max, max_ratio or min".to_owned());
    }
    if bounds
        .iter()
        .flatten()
        .any(|b| !(b.is_finite() && *b >= 0.0))
    {
        return Some("bounds are numbers of at least 0".to_owned());
    }
    if constraint.max_ratio == Some(0.0) {
        return Some("max_ratio must be above 0".to_owned());
    }
    if let (Some(min), Some(max)) = (constraint.min, constraint.max) {
        if min > max {
            return Some(format!("min {min} is above max {max}"));
        }
    }
    if constraint.measure == Measure::CostUsd {
        let target = &body.target.provider;
        let priced = providers
            .list()
            .iter()
            .find(|p| &p.name == target)
            .is_none_or(|p| !p.models.is_empty());
        if !priced {
            return Some(format!(
                "provider {target:?} has no prices configured, so cost_usd is not known; configure [providers.{target}.prices]"
            ));
        }
    }
    None
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

/// Which candidate to adopt, and the label to point at it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"iteration": 2, "candidate": 0, "label": "staging"}))]
pub struct AdoptCandidateRequest {
    /// The iteration's `number`.
    pub iteration: u32,
    /// The candidate's position in the iteration's `candidates` (as the
    /// `pareto_front` names it).
    pub candidate: u32,
    /// Point this label at the new version, once its gate passes (needs `promote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Adopt a candidate: write one scored on validation as a new version of
/// the prompt, with its lineage in the metadata: a cheaper point of the
/// Pareto front, say, instead of the job's result.
#[utoipa::path(post, path = "/v1/optimizations/{id}/adopt", tag = "optimizations",
    security(("bearer" = ["write"])),
    params(("id" = Uuid, Path, description = "The optimization's id")),
    request_body = AdoptCandidateRequest,
    responses(
        (status = 201, description = "The new version", body = crate::api::versions::VersionResponse,
            headers(("location" = String, description = "URL of the version"))),
        (status = 200, description = "Identical to the latest version: that version, nothing created", body = crate::api::versions::VersionResponse),
        (status = 403, description = "`insufficient_scope`: the key lacks `write`, or `label` is set and it lacks `promote`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`optimization_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`gate_failed`: the label is gated, and a new version has no evaluation", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (no such candidate, not scored on validation, or a label asked for a candidate that breaks the constraints) or `invalid_label`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn adopt_candidate(
    State(state): State<AppState>,
    auth: Auth<scope::Write>,
    Path(id): Path<Uuid>,
    Json(body): Json<AdoptCandidateRequest>,
) -> Result<axum::response::Response, ApiError> {
    let label = body
        .label
        .as_deref()
        .map(|l| label_name("label", l))
        .transpose()?;
    if label.is_some() {
        auth.also_require(&state, Scope::Promote)?;
    }
    let created = optimizations::adopt_candidate(
        &state.registry,
        &state.renderer,
        auth.project,
        &auth.actor(),
        id,
        body.iteration,
        body.candidate,
        label,
    )
    .await?;
    let name = prompt_name(&created.version.prompt_name)?;
    Ok(super::versions::created_version_response(&name, &created))
}
