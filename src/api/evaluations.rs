//! Evaluations: a version run over a dataset with a provider and scored by
//! metrics, as a durable job; their results, aggregates and comparisons.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::{scope, Auth};
use super::extract::{
    filter_text, page_request, prompt_name, semver, version_ref, Json, PageParams, Path,
    PromptPath, Query,
};
use super::jobs::Progress;
use super::scores::{parse_metrics, MetricRequest};
use super::AppState;
use crate::domain::jobs::{Evaluation, EvaluationFilter, JobStatus, MetricSpec, ResultTotals};
use crate::domain::PromptName;
use crate::error::{ApiError, Problem};
use crate::eval::stats::{Comparison, Summary};
use crate::services::evaluations::{self, EvaluationSpec, EvaluationSummary};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "prompt": "support/greeting",
    "ref": "1.0.1",
    "dataset": "support/faq",
    "provider": "local",
    "model": "qwen2.5-0.5b-instruct",
    "params": {"temperature": 0},
    "metrics": ["exact_match", {"name": "rouge_l"}],
    "concurrency": 8
}))]
pub struct CreateEvaluationRequest {
    pub prompt: String,
    /// A semver or label (default: the server's default label, `production`).
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub dataset: String,
    /// A provider configured on the server (`GET /v1/providers`).
    pub provider: String,
    /// Default: the version's `model_config.model`, else the provider's default model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Merged over the version's `model_config` for every call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Map<String, Value>>,
    pub metrics: Vec<MetricRequest>,
    /// Provider calls in flight at most (1 to 256, default 8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// From the provider's configured prices; 0 when it has none.
    pub cost_usd: f64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EvaluationResponse {
    pub id: Uuid,
    pub job_id: Uuid,
    pub status: JobStatus,
    #[schema(example = "support/greeting")]
    pub prompt: String,
    #[schema(example = "1.0.1")]
    pub version: String,
    pub dataset: String,
    pub provider: String,
    pub model: Option<String>,
    pub params: Map<String, Value>,
    /// The metrics asked for.
    pub metric_specs: Vec<MetricSpec>,
    pub concurrency: i32,
    pub progress: Progress,
    /// Per metric over the scored items: mean, sample std, 95% CI of the mean, n.
    #[schema(value_type = BTreeMap<String, Object>, example = json!({"exact_match": {"mean": 0.8, "std": 0.4, "ci95": [0.6, 1.0], "n": 20}}))]
    pub metrics: BTreeMap<String, Summary>,
    /// Items whose result carries an error.
    pub errors: i64,
    pub usage: Usage,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl EvaluationResponse {
    fn new(e: Evaluation, metrics: BTreeMap<String, Summary>, totals: ResultTotals) -> Self {
        Self {
            id: e.id,
            job_id: e.job.id,
            status: e.job.status,
            prompt: e.prompt_name,
            version: e.version.to_string(),
            dataset: e.dataset_name,
            provider: e.provider,
            model: e.model,
            params: e.params,
            metric_specs: e.metrics,
            concurrency: e.concurrency,
            progress: Progress::of(&e.job),
            metrics,
            errors: totals.errors,
            usage: Usage {
                input_tokens: totals.input_tokens,
                output_tokens: totals.output_tokens,
                cost_usd: totals.cost_usd,
            },
            error: e.job.error,
            created_at: e.created_at,
            finished_at: e.job.finished_at,
        }
    }
}

/// Start an evaluation: answers 202 with it; a worker runs it.
#[utoipa::path(post, path = "/v1/evaluations", tag = "evaluations",
    security(("bearer" = ["evaluate"])),
    request_body = CreateEvaluationRequest,
    responses(
        (status = 202, description = "Queued", body = EvaluationResponse),
        (status = 404, description = "`prompt_not_found`, `version_not_found`, `label_not_found` or `dataset_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` or `provider_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_evaluation(
    State(state): State<AppState>,
    auth: Auth<scope::Evaluate>,
    Json(body): Json<CreateEvaluationRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let prompt = prompt_name(&body.prompt)?;
    let reference = match &body.reference {
        Some(r) => version_ref("ref", r)?,
        None => state.renderer.default_ref(),
    };
    let (metrics, _) = parse_metrics("metrics", body.metrics, true)?;
    let spec = EvaluationSpec {
        prompt,
        reference,
        dataset: body.dataset,
        provider: body.provider,
        model: body.model,
        params: body.params.unwrap_or_default(),
        metrics,
        concurrency: body.concurrency,
    };
    let evaluation = evaluations::start(
        &state.registry,
        &state.providers,
        auth.project,
        &auth.actor(),
        spec,
    )
    .await?;
    state.wake_workers();
    let location = format!("/v1/evaluations/{}", evaluation.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(EvaluationResponse::new(
            evaluation,
            BTreeMap::new(),
            ResultTotals::default(),
        )),
    ))
}

/// An evaluation: status, progress, per-metric aggregates, tokens and cost.
#[utoipa::path(get, path = "/v1/evaluations/{id}", tag = "evaluations",
    security(("bearer" = ["read"])),
    params(("id" = Uuid, Path, description = "The evaluation's id")),
    responses(
        (status = 200, description = "The evaluation", body = EvaluationResponse),
        (status = 404, description = "`evaluation_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_evaluation(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<EvaluationResponse>, ApiError> {
    let (evaluation, scores) = evaluations::get(&state.registry, auth.project, id).await?;
    Ok(axum::Json(EvaluationResponse::new(
        evaluation,
        scores.summaries(),
        scores.totals,
    )))
}

impl From<EvaluationSummary> for EvaluationResponse {
    fn from(s: EvaluationSummary) -> Self {
        Self::new(s.evaluation, s.metrics, s.totals)
    }
}

#[derive(Serialize, ToSchema)]
pub struct EvaluationPage {
    items: Vec<EvaluationResponse>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

page_from!(EvaluationPage of EvaluationResponse);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EvaluationListParams {
    /// Only evaluations of this prompt.
    #[param(example = "support/greeting")]
    prompt: Option<String>,
    /// Only evaluations of this version (a semver).
    #[param(example = "1.0.1")]
    version: Option<String>,
    /// Only evaluations on this dataset.
    #[param(max_length = 200)]
    dataset: Option<String>,
    /// Only evaluations whose job is in this state.
    status: Option<JobStatus>,
    /// Items per page, 1 to 100.
    #[param(default = 20, minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PromptEvaluationListParams {
    /// Only evaluations of this version (a semver).
    #[param(example = "1.0.1")]
    version: Option<String>,
    /// Only evaluations on this dataset.
    #[param(max_length = 200)]
    dataset: Option<String>,
    /// Only evaluations whose job is in this state.
    status: Option<JobStatus>,
    /// Items per page, 1 to 100.
    #[param(default = 20, minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The filters every evaluation list shares, checked.
fn evaluation_filter(
    version: Option<String>,
    dataset: Option<String>,
    status: Option<JobStatus>,
) -> Result<EvaluationFilter, ApiError> {
    Ok(EvaluationFilter {
        prompt: None,
        version: filter_text("version", version)?
            .map(|v| semver("version", &v))
            .transpose()?,
        dataset: filter_text("dataset", dataset)?,
        status,
    })
}

/// List evaluations, newest first, each with its status, progress, metric
/// aggregates, tokens and cost (as `GET /v1/evaluations/{id}` answers it).
#[utoipa::path(get, path = "/v1/evaluations", tag = "evaluations",
    security(("bearer" = ["read"])),
    params(EvaluationListParams),
    responses(
        (status = 200, description = "A page of evaluations", body = EvaluationPage),
        (status = 422, description = "`validation_failed` (version, dataset, status, limit or cursor) or `invalid_name` (prompt)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_evaluations(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Query(params): Query<EvaluationListParams>,
) -> Result<axum::Json<EvaluationPage>, ApiError> {
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let filter = EvaluationFilter {
        prompt: filter_text("prompt", params.prompt)?
            .map(|p| PromptName::parse(&p).map_err(|e| ApiError::invalid_name("prompt", e)))
            .transpose()?,
        ..evaluation_filter(params.version, params.dataset, params.status)?
    };
    let page = evaluations::list(&state.registry, auth.project, &filter, page).await?;
    Ok(axum::Json(page.into()))
}

/// List a prompt's evaluations, newest first: `GET /v1/evaluations?prompt=`
/// for a prompt that must exist.
#[utoipa::path(get, path = "/v1/prompts/{name}/evaluations", tag = "evaluations",
    security(("bearer" = ["read"])),
    params(PromptPath, PromptEvaluationListParams),
    responses(
        (status = 200, description = "A page of the prompt's evaluations", body = EvaluationPage),
        (status = 404, description = "`prompt_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (version, dataset, status, limit or cursor)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_prompt_evaluations(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(name): Path<String>,
    Query(params): Query<PromptEvaluationListParams>,
) -> Result<axum::Json<EvaluationPage>, ApiError> {
    let name = prompt_name(&name)?;
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let filter = evaluation_filter(params.version, params.dataset, params.status)?;
    let page =
        evaluations::list_of_prompt(&state.registry, auth.project, &name, filter, page).await?;
    Ok(axum::Json(page.into()))
}

#[derive(Serialize, ToSchema)]
pub struct ResultResponse {
    item_id: Uuid,
    /// The item's position in the dataset.
    item_seq: i64,
    output: Option<String>,
    #[schema(example = json!({"exact_match": 1.0}))]
    scores: Map<String, Value>,
    /// Per metric, what else it said: an LLM judge's `reason`.
    details: Map<String, Value>,
    error: Option<String>,
    latency_ms: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: Option<f64>,
    created_at: DateTime<Utc>,
}

impl From<crate::domain::jobs::StoredResult> for ResultResponse {
    fn from(s: crate::domain::jobs::StoredResult) -> Self {
        let r = s.result;
        Self {
            item_id: r.item_id,
            item_seq: r.item_seq,
            output: r.output,
            scores: r.scores,
            details: r.details,
            error: r.error,
            latency_ms: r.latency_ms,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cost_usd: r.cost_usd,
            created_at: s.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ResultPage {
    items: Vec<ResultResponse>,
    next_cursor: Option<String>,
}

page_from!(ResultPage of ResultResponse);

/// Per-item results, in the order they completed.
#[utoipa::path(get, path = "/v1/evaluations/{id}/results", tag = "evaluations",
    security(("bearer" = ["read"])),
    params(("id" = Uuid, Path, description = "The evaluation's id"), PageParams),
    responses(
        (status = 200, description = "A page of results", body = ResultPage),
        (status = 404, description = "`evaluation_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_results(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(id): Path<Uuid>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<ResultPage>, ApiError> {
    let page = evaluations::results(&state.registry, auth.project, id, page.to_request()?).await?;
    Ok(axum::Json(page.into()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompareParams {
    /// The baseline evaluation.
    a: Uuid,
    /// The evaluation compared against it (same dataset).
    b: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct CompareResponse {
    a: Uuid,
    b: Uuid,
    dataset: String,
    /// Per metric both scored: the paired mean difference b − a with a 95%
    /// bootstrap CI, a paired permutation-test p-value, and b's wins, ties
    /// and losses against a.
    #[schema(value_type = BTreeMap<String, Object>, example = json!({"exact_match": {"mean_diff": 0.1, "ci95": [0.02, 0.18], "p_value": 0.012, "wins": 14, "ties": 80, "losses": 6, "n": 100}}))]
    metrics: BTreeMap<String, Comparison>,
}

/// Compare two evaluations of the same dataset, item by item.
#[utoipa::path(get, path = "/v1/evaluations/compare", tag = "evaluations",
    security(("bearer" = ["read"])),
    params(CompareParams),
    responses(
        (status = 200, description = "The comparison", body = CompareResponse),
        (status = 404, description = "`evaluation_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: not the same dataset", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn compare_evaluations(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Query(params): Query<CompareParams>,
) -> Result<axum::Json<CompareResponse>, ApiError> {
    let (a, b, metrics) =
        evaluations::compare(&state.registry, auth.project, params.a, params.b).await?;
    Ok(axum::Json(CompareResponse {
        a: a.id,
        b: b.id,
        dataset: a.dataset_name,
        metrics,
    }))
}
