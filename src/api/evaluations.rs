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
use super::extract::{prompt_name, version_ref, Json, PageParams, Path, Query};
use super::jobs::Progress;
use super::scores::{parse_metrics, MetricRequest};
use super::AppState;
use crate::domain::jobs::{Evaluation, JobStatus, MetricSpec, NewEvaluation};
use crate::error::{ApiError, Problem};
use crate::eval::judge::{default_template, JudgeSpec, Rubric, LLM_JUDGE};
use crate::eval::report::Scores;
use crate::eval::stats::{Comparison, Summary};
use crate::store::{cursor, PageKey};

const DEFAULT_CONCURRENCY: u32 = 8;
const MAX_CONCURRENCY: u32 = 256;
/// Tries per evaluation job before it counts as failed.
const MAX_ATTEMPTS: i32 = 3;

#[derive(Deserialize, ToSchema)]
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
    prompt: String,
    /// A semver or label (default: the server's default label, `production`).
    #[serde(rename = "ref")]
    reference: Option<String>,
    dataset: String,
    /// A provider configured on the server (`GET /v1/providers`).
    provider: String,
    /// Default: the version's `model_config.model`, else the provider's default model.
    model: Option<String>,
    /// Merged over the version's `model_config` for every call.
    params: Option<Map<String, Value>>,
    metrics: Vec<MetricRequest>,
    /// Provider calls in flight at most (1 to 256, default 8).
    concurrency: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct Usage {
    input_tokens: i64,
    output_tokens: i64,
    /// From the provider's configured prices; 0 when it has none.
    cost_usd: f64,
}

#[derive(Serialize, ToSchema)]
pub struct EvaluationResponse {
    id: Uuid,
    job_id: Uuid,
    status: JobStatus,
    #[schema(example = "support/greeting")]
    prompt: String,
    #[schema(example = "1.0.1")]
    version: String,
    dataset: String,
    provider: String,
    model: Option<String>,
    params: Map<String, Value>,
    /// The metrics asked for.
    metric_specs: Vec<MetricSpec>,
    concurrency: i32,
    progress: Progress,
    /// Per metric over the scored items: mean, sample std, 95% CI of the mean, n.
    #[schema(value_type = BTreeMap<String, Object>, example = json!({"exact_match": {"mean": 0.8, "std": 0.4, "ci95": [0.6, 1.0], "n": 20}}))]
    metrics: BTreeMap<String, Summary>,
    /// Items whose result carries an error.
    errors: i64,
    usage: Usage,
    error: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl EvaluationResponse {
    fn new(e: Evaluation, scores: &Scores) -> Self {
        let totals = scores.totals;
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
            metrics: scores.summaries(),
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

/// Checks each LLM judge's provider, makes sure its judge prompt exists in
/// the registry (created from the rubric's default template the first time,
/// then the team's to edit), and pins the prompt's latest version.
async fn pin_judges(
    state: &AppState,
    auth: &Auth<scope::Evaluate>,
    specs: &mut [MetricSpec],
) -> Result<(), ApiError> {
    for (i, spec) in specs.iter_mut().enumerate() {
        if spec.name != LLM_JUDGE {
            continue;
        }
        let mut judge = JudgeSpec::parse(&spec.params)
            .map_err(|e| ApiError::validation(format!("metrics[{i}]"), e))?;
        if state.providers.get(&judge.provider).is_none() {
            return Err(ApiError::ProviderNotFound(format!(
                "metrics[{i}]: no provider named {:?} is configured",
                judge.provider
            )));
        }
        let name = prompt_name(&judge.prompt_name())?;
        let latest = version_ref("ref", crate::domain::names::LATEST)?;
        let version = match state
            .registry
            .get_version(auth.project, &name, &latest)
            .await
        {
            Ok(version) => version,
            Err(crate::store::StoreError::PromptNotFound) => {
                create_judge_prompt(state, auth, &name, judge.rubric).await?
            }
            Err(e) => return Err(ApiError::from_store(e, name.as_str())),
        };
        judge.prompt_version = Some(version.version.to_string());
        spec.params = serde_json::to_value(&judge).unwrap_or(Value::Null);
    }
    Ok(())
}

async fn create_judge_prompt(
    state: &AppState,
    auth: &Auth<scope::Evaluate>,
    name: &crate::domain::PromptName,
    rubric: Rubric,
) -> Result<std::sync::Arc<crate::domain::Version>, ApiError> {
    let store = |e| ApiError::from_store(e, name.as_str());
    let created = state
        .registry
        .create_prompt(
            auth.project,
            crate::store::NewPrompt {
                name: name.clone(),
                description: format!("LLM judge: {}", rubric.as_str()),
                tags: vec!["judge".to_owned()],
            },
            &auth.actor(),
        )
        .await;
    match created {
        Ok(_) | Err(crate::store::StoreError::PromptExists) => {}
        Err(e) => return Err(store(e)),
    }
    let content = crate::domain::PromptContent {
        body: crate::domain::content::PromptBody::Text(default_template(rubric)),
        engine: crate::domain::Engine::Handlebars,
        model_config: Map::new(),
        input_schema: None,
        output_schema: None,
    };
    let variables =
        crate::template::variables(content.engine, &content.body).map_err(ApiError::from)?;
    let new = crate::store::NewVersion {
        content,
        variables,
        message: Some("The default judge prompt; edit it like any other prompt".to_owned()),
        metadata: Map::new(),
        version: None,
        bump: None,
        parent: None,
        expected_latest: None,
        labels: Vec::new(),
    };
    let created = state
        .registry
        .create_version(auth.project, name, new, &auth.actor())
        .await
        .map_err(store)?;
    Ok(std::sync::Arc::new(created.version))
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
    let name = prompt_name(&body.prompt)?;
    let reference = match &body.reference {
        Some(r) => version_ref("ref", r)?,
        None => state.renderer.default_ref(),
    };
    let (mut metric_specs, _) = parse_metrics("metrics", body.metrics, true)?;
    pin_judges(&state, &auth, &mut metric_specs).await?;
    let concurrency = body.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(ApiError::validation(
            "concurrency",
            format!("1 to {MAX_CONCURRENCY}"),
        ));
    }
    if let Some(why) = super::providers::unknown(&state, &body.provider) {
        return Err(ApiError::ProviderNotFound(why));
    }
    let version = state
        .registry
        .get_version(auth.project, &name, &reference)
        .await
        .map_err(|e| ApiError::from_store(e, name.as_str()))?;
    let store = state.registry.store();
    let dataset = store
        .get_dataset(auth.project, &body.dataset)
        .await
        .map_err(|e| ApiError::from_store(e, &body.dataset))?;
    let evaluation = store
        .insert_evaluation(
            auth.project,
            NewEvaluation {
                prompt_id: version.prompt_id,
                version_id: version.id,
                dataset_id: dataset.id,
                item_count: dataset.item_count,
                provider: body.provider,
                model: body.model,
                params: body.params.unwrap_or_default(),
                metrics: metric_specs,
                concurrency: concurrency as i32,
                max_attempts: MAX_ATTEMPTS,
                trace_parent: crate::telemetry::trace::current_traceparent(),
            },
            &auth.actor(),
        )
        .await
        .map_err(|e| ApiError::from_store(e, name.as_str()))?;
    state.wake_workers();
    let location = format!("/v1/evaluations/{}", evaluation.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(EvaluationResponse::new(evaluation, &Scores::default())),
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
    let store = state.registry.store();
    let evaluation = store
        .get_evaluation(auth.project, id)
        .await
        .map_err(|e| ApiError::from_store(e, ""))?;
    let scores = Scores::load(store, &evaluation)
        .await
        .map_err(|e| ApiError::from_store(e, ""))?;
    Ok(axum::Json(EvaluationResponse::new(evaluation, &scores)))
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
    let page = page.to_request()?;
    let store = state.registry.store();
    let evaluation = store
        .get_evaluation(auth.project, id)
        .await
        .map_err(|e| ApiError::from_store(e, ""))?;
    let after = match page.after {
        Some(PageKey::Int(id)) => id,
        _ => 0,
    };
    let mut results = store
        .list_results(evaluation.id, after, page.limit + 1)
        .await
        .map_err(|e| ApiError::from_store(e, ""))?;
    let next_cursor = (results.len() > page.limit as usize)
        .then(|| {
            results.truncate(page.limit as usize);
            results.last().map(|r| cursor::encode(PageKey::Int(r.id)))
        })
        .flatten();
    Ok(axum::Json(ResultPage {
        items: results.into_iter().map(ResultResponse::from).collect(),
        next_cursor,
    }))
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
    let store = state.registry.store();
    let project = auth.project;
    let load = |id| async move {
        let evaluation = store
            .get_evaluation(project, id)
            .await
            .map_err(|e| ApiError::from_store(e, ""))?;
        let scores = Scores::load(store, &evaluation)
            .await
            .map_err(|e| ApiError::from_store(e, ""))?;
        Ok::<_, ApiError>((evaluation, scores))
    };
    let (a, a_scores) = load(params.a).await?;
    let (b, b_scores) = load(params.b).await?;
    if a.dataset_id != b.dataset_id {
        return Err(ApiError::validation(
            "b",
            format!(
                "evaluation a ran on dataset {:?} and b on {:?}; compare evaluations of one dataset",
                a.dataset_name, b.dataset_name
            ),
        ));
    }
    Ok(axum::Json(CompareResponse {
        a: a.id,
        b: b.id,
        dataset: a.dataset_name,
        metrics: a_scores.compare(&b_scores),
    }))
}
