//! Evaluation pages: the list (filtered by prompt, dataset and status, as a
//! GET form) with a form that starts one (the same service and scope as
//! `POST /v1/evaluations`), and an evaluation (status and progress, live
//! while it runs through our script following the job's events; per metric
//! the mean, the 95% interval and a histogram drawn as SVG; tokens, cost,
//! latency; its results with their items, filterable to failures and
//! sortable by any score; a Cancel button while it runs).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::datasets::{dataset_url, shown};
use super::editor::Problems;
use super::prompts::authorize;
use super::session::{Posted, Signed};
use super::{page_request, prompt_url, render, time, with_query, Me, UiError};
use crate::api::extract::{prompt_name, version_ref, Path, Query};
use crate::api::scores::{parse_metrics, MetricRequest};
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::jobs::{EvaluationFilter, Job, JobStatus};
use crate::domain::PromptName;
use crate::error::ApiError;
use crate::eval::judge::{Rubric, LLM_JUDGE};
use crate::eval::metrics::METRIC_NAMES;
use crate::eval::stats::Summary;
use crate::services::evaluations::{
    self, EvaluationSpec, EvaluationSummary, ResultOrder, ResultWithItem, FAILING_BELOW,
};
use crate::services::{FieldError, ServiceError};
use crate::store::StoreError;

/// Evaluations per list page.
const EVALUATIONS_PER_PAGE: u32 = 20;
/// Results per evaluation page.
const RESULTS_PER_PAGE: u32 = 25;
/// Histogram bins over [0, 1].
const BINS: usize = 10;

pub fn evaluation_url(id: Uuid) -> String {
    format!("/ui/evaluations/{id}")
}

/// An evaluation as a list row.
#[derive(Serialize)]
pub(super) struct EvaluationRow {
    id: String,
    url: String,
    prompt: String,
    prompt_url: String,
    version: String,
    dataset: String,
    dataset_url: String,
    model: String,
    status: &'static str,
    /// `3/8` while not finished.
    progress: Option<String>,
    /// `metric 0.750` for each metric.
    means: Vec<(String, String)>,
    cost: String,
    created_at: String,
}

fn model_of(provider: &str, model: Option<&str>) -> String {
    match model {
        Some(model) => format!("{provider} / {model}"),
        None => provider.to_owned(),
    }
}

fn cost(usd: f64) -> String {
    format!("${usd:.4}")
}

fn progress_text(job: &Job) -> Option<String> {
    (!job.status.is_final()).then(|| format!("{}/{}", job.progress_done, job.progress_total))
}

pub(super) fn evaluation_row(summary: EvaluationSummary) -> EvaluationRow {
    let e = summary.evaluation;
    EvaluationRow {
        id: e.id.to_string(),
        url: evaluation_url(e.id),
        prompt_url: prompt_url(&e.prompt_name),
        dataset_url: dataset_url(&e.dataset_name),
        model: model_of(&e.provider, e.model.as_deref()),
        status: e.job.status.as_str(),
        progress: progress_text(&e.job),
        means: summary
            .metrics
            .iter()
            .map(|(metric, s)| (metric.clone(), format!("{:.3}", s.mean)))
            .collect(),
        cost: cost(summary.totals.cost_usd),
        created_at: time(e.created_at),
        prompt: e.prompt_name,
        version: e.version.to_string(),
        dataset: e.dataset_name,
    }
}

#[derive(Deserialize, Serialize, Default, Clone)]
pub struct ListParams {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    prompt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    dataset: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    status: String,
    /// The evaluation picked as A for a comparison.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    a: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    cursor: String,
}

#[derive(Serialize)]
struct ListPage<'a> {
    me: Me<'a>,
    section: &'static str,
    prompt: &'a str,
    dataset: &'a str,
    status: &'a str,
    statuses: [&'static str; 5],
    evaluations: Vec<EvaluationRow>,
    /// The evaluation preselected as A ("" for none).
    picked: &'a str,
    /// The chosen prompt's page, to go back to.
    prompt_link: Option<String>,
    next: Option<String>,
    start: StartView,
}

const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

pub async fn list_evaluations(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(params): Query<ListParams>,
) -> Result<Response, UiError> {
    authorize(&state, &session, Scope::Read)?;
    let prompt = params.prompt.trim();
    let dataset = params.dataset.trim();
    let filter = EvaluationFilter {
        prompt: Some(prompt)
            .filter(|p| !p.is_empty())
            .map(|p| PromptName::parse(p).map_err(|e| ApiError::invalid_name("prompt", e)))
            .transpose()?,
        version: None,
        dataset: Some(dataset.to_owned()).filter(|d| !d.is_empty()),
        status: match params.status.as_str() {
            "" => None,
            raw => Some(JobStatus::parse(raw).ok_or_else(|| {
                ApiError::validation("status", format!("one of {}", STATUSES.join(", ")))
            })?),
        },
    };
    let page = evaluations::list(
        &state.registry,
        session.caller.project,
        &filter,
        page_request(EVALUATIONS_PER_PAGE, &params.cursor)?,
    )
    .await?;
    let next = page.next_cursor.map(|cursor| {
        with_query(
            "/ui/evaluations",
            &ListParams {
                cursor,
                ..params.clone()
            },
        )
    });
    let context = ListPage {
        me: Me::of(&session),
        section: "evaluations",
        prompt_link: filter.prompt.as_ref().map(|p| prompt_url(p.as_str())),
        prompt,
        dataset,
        status: &params.status,
        statuses: STATUSES,
        evaluations: page.items.into_iter().map(evaluation_row).collect(),
        picked: params.a.trim(),
        next,
        start: start_view(
            &state,
            StartForm {
                prompt: prompt.to_owned(),
                dataset: dataset.to_owned(),
                ..StartForm::default()
            },
        ),
    };
    Ok(render(StatusCode::OK, "evaluations.html", context))
}

#[derive(Deserialize, Serialize, Default, Clone)]
pub struct DetailParams {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    failures: String,
    /// A metric to order the results by, and `asc` or `desc`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sort: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    dir: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    cursor: String,
}

impl DetailParams {
    fn order(&self) -> Result<ResultOrder, ApiError> {
        if self.sort.is_empty() {
            return Ok(ResultOrder::Stored);
        }
        let descending = match self.dir.as_str() {
            "" | "asc" => false,
            "desc" => true,
            _ => return Err(ApiError::validation("dir", "asc or desc")),
        };
        Ok(ResultOrder::ByScore {
            metric: self.sort.clone(),
            descending,
        })
    }
}

/// A column of the results table: its metric, how the table is sorted by
/// it now (`ascending`, `descending` or `none`, as `aria-sort` says), and
/// the link that sorts by it (the other way round when it is sorted).
#[derive(Serialize)]
struct Column {
    name: String,
    sorted: &'static str,
    link: String,
}

#[derive(Serialize)]
struct DetailPage<'a> {
    me: Me<'a>,
    section: &'static str,
    id: String,
    job_id: String,
    url: String,
    prompt: String,
    prompt_url: String,
    version: String,
    version_url: String,
    dataset: String,
    dataset_url: String,
    /// The list of this dataset's evaluations, this one picked as A.
    compare_url: String,
    model: String,
    status: &'static str,
    running: bool,
    /// A cancel was asked for; a running job stops at its next step.
    cancel_requested: bool,
    done: i64,
    total: i64,
    percent: i64,
    /// Where the job's events stream from, while it runs.
    events_url: String,
    error: Option<String>,
    created_at: String,
    created_by: Option<String>,
    finished_at: Option<String>,
    metrics: Vec<MetricView>,
    results_count: i64,
    errors: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost: String,
    mean_latency_ms: Option<i64>,
    failing_below: f64,
    only_failures: bool,
    sort: String,
    dir: String,
    /// Metrics the results table has a column for.
    columns: Vec<Column>,
    results: Vec<ResultRow>,
    paged: bool,
    first: String,
    next: Option<String>,
}

#[derive(Serialize)]
struct MetricView {
    name: String,
    mean: String,
    low: String,
    high: String,
    n: usize,
    bars: Vec<Bar>,
    /// Words for the chart as one image.
    description: String,
}

/// One histogram bin as SVG geometry, its label and count.
#[derive(Serialize)]
struct Bar {
    x: f64,
    y: f64,
    height: f64,
    label: String,
    count: usize,
    label_x: f64,
}

/// The chart's plotting area in SVG user units.
const CHART_WIDTH: f64 = 300.0;
const CHART_HEIGHT: f64 = 100.0;
const CHART_TOP: f64 = 14.0;
const BAR_WIDTH: f64 = CHART_WIDTH / BINS as f64;

fn histogram(scores: &[f64]) -> Vec<Bar> {
    let mut counts = [0usize; BINS];
    for score in scores {
        // Score 1.0 falls in the last bin rather than past it.
        let bin = ((score.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1);
        counts[bin] += 1;
    }
    let most = counts.iter().copied().max().unwrap_or(0).max(1);
    counts
        .iter()
        .enumerate()
        .map(|(bin, &count)| {
            let height = CHART_HEIGHT * count as f64 / most as f64;
            let x = bin as f64 * BAR_WIDTH;
            Bar {
                x: x + 1.0,
                y: CHART_TOP + CHART_HEIGHT - height,
                height,
                label: format!(
                    "{:.1}–{:.1}",
                    bin as f64 / BINS as f64,
                    (bin + 1) as f64 / BINS as f64
                ),
                count,
                label_x: x + BAR_WIDTH / 2.0,
            }
        })
        .collect()
}

fn metric_view(name: &str, summary: &Summary, scores: &[f64]) -> MetricView {
    let bars = histogram(scores);
    let description = format!(
        "Histogram of {name} over {} items: {}",
        summary.n,
        bars.iter()
            .map(|b| format!("{} {}", b.label, b.count))
            .collect::<Vec<_>>()
            .join(", ")
    );
    MetricView {
        name: name.to_owned(),
        mean: format!("{:.3}", summary.mean),
        low: format!("{:.3}", summary.ci95[0]),
        high: format!("{:.3}", summary.ci95[1]),
        n: summary.n,
        bars,
        description,
    }
}

#[derive(Serialize)]
struct ResultRow {
    seq: i64,
    input: Vec<(String, String)>,
    expected: Option<String>,
    output: Option<String>,
    /// One per column: the score, or none.
    scores: Vec<Option<String>>,
    /// Per metric that said more (an LLM judge): its reason.
    reasons: Vec<(String, String)>,
    error: Option<String>,
    failed: bool,
    latency_ms: i64,
}

fn result_row(row: ResultWithItem, columns: &[String]) -> ResultRow {
    let result = row.stored.result;
    let failed = evaluations::is_failure(&result);
    ResultRow {
        seq: result.item_seq,
        input: row
            .item
            .as_ref()
            .map(|item| {
                item.input
                    .iter()
                    .map(|(k, v)| (k.clone(), shown(v)))
                    .collect()
            })
            .unwrap_or_default(),
        expected: row
            .item
            .as_ref()
            .and_then(|i| i.expected.as_ref())
            .map(shown),
        output: result.output,
        scores: columns
            .iter()
            .map(|metric| {
                result
                    .scores
                    .get(metric)
                    .and_then(Value::as_f64)
                    .map(|s| format!("{s:.3}"))
            })
            .collect(),
        reasons: result
            .details
            .iter()
            .filter_map(|(metric, detail)| {
                let reason = detail.get("reason").map_or_else(|| shown(detail), shown);
                (!reason.is_empty()).then(|| (metric.clone(), reason))
            })
            .collect(),
        error: result.error,
        failed,
        latency_ms: result.latency_ms,
    }
}

pub async fn show_evaluation(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    Query(params): Query<DetailParams>,
) -> Result<Response, UiError> {
    authorize(&state, &session, Scope::Read)?;
    let id =
        Uuid::parse_str(&id).map_err(|_| ApiError::validation("id", "not an evaluation id"))?;
    let only_failures = matches!(params.failures.as_str(), "true" | "1" | "on");
    let order = params.order()?;
    let detail = evaluations::detail(
        &state.registry,
        session.caller.project,
        id,
        page_request(RESULTS_PER_PAGE, &params.cursor)?,
        only_failures,
        &order,
    )
    .await?;
    let e = detail.evaluation;
    let summaries = detail.scores.summaries();
    let metrics = summaries
        .iter()
        .map(|(name, summary)| {
            let scores: Vec<f64> = detail
                .scores
                .by_metric
                .get(name)
                .map(|by_item| by_item.values().copied().collect())
                .unwrap_or_default();
            metric_view(name, summary, &scores)
        })
        .collect();
    let mut columns: Vec<String> = e.metrics.iter().map(|m| m.name.clone()).collect();
    for name in summaries.keys() {
        if !columns.contains(name) {
            columns.push(name.clone());
        }
    }
    let latency_total: i64 = detail
        .results
        .items
        .iter()
        .map(|r| r.stored.result.latency_ms)
        .sum();
    let shown_results = detail.results.items.len();
    let url = evaluation_url(e.id);
    let first = with_query(
        &url,
        &DetailParams {
            cursor: String::new(),
            ..params.clone()
        },
    );
    let column_views = columns
        .iter()
        .map(|name| {
            let sorted = match &order {
                ResultOrder::ByScore { metric, descending } if metric == name => {
                    if *descending {
                        "descending"
                    } else {
                        "ascending"
                    }
                }
                _ => "none",
            };
            let link = with_query(
                &url,
                &DetailParams {
                    failures: params.failures.clone(),
                    sort: name.clone(),
                    dir: if sorted == "descending" {
                        "asc"
                    } else {
                        "desc"
                    }
                    .to_owned(),
                    cursor: String::new(),
                },
            );
            Column {
                name: name.clone(),
                sorted,
                link: format!("{link}#results"),
            }
        })
        .collect();
    let next = detail.results.next_cursor.map(|cursor| {
        with_query(
            &url,
            &DetailParams {
                cursor,
                ..params.clone()
            },
        )
    });
    let totals = detail.scores.totals;
    let job = &e.job;
    let context = DetailPage {
        me: Me::of(&session),
        section: "evaluations",
        id: e.id.to_string(),
        job_id: job.id.to_string(),
        prompt_url: prompt_url(&e.prompt_name),
        version_url: format!("{}/versions/{}", prompt_url(&e.prompt_name), e.version),
        dataset_url: dataset_url(&e.dataset_name),
        compare_url: with_query(
            "/ui/evaluations",
            &[("dataset", e.dataset_name.clone()), ("a", e.id.to_string())],
        ),
        model: model_of(&e.provider, e.model.as_deref()),
        status: job.status.as_str(),
        running: !job.status.is_final(),
        cancel_requested: job.cancel_requested && !job.status.is_final(),
        events_url: format!("/ui/jobs/{}/events", job.id),
        done: job.progress_done,
        total: job.progress_total,
        percent: if job.progress_total > 0 {
            job.progress_done * 100 / job.progress_total
        } else {
            0
        },
        error: job.error.clone(),
        created_at: time(e.created_at),
        created_by: e.created_by.clone(),
        finished_at: job.finished_at.map(time),
        metrics,
        results_count: totals.items,
        errors: totals.errors,
        input_tokens: totals.input_tokens,
        output_tokens: totals.output_tokens,
        cost: cost(totals.cost_usd),
        mean_latency_ms: i64::try_from(shown_results)
            .ok()
            .filter(|n| *n > 0)
            .map(|n| latency_total / n),
        failing_below: FAILING_BELOW,
        only_failures,
        sort: params.sort.clone(),
        dir: params.dir.clone(),
        results: detail
            .results
            .items
            .into_iter()
            .map(|r| result_row(r, &columns))
            .collect(),
        columns: column_views,
        paged: !params.cursor.is_empty(),
        first,
        next,
        url,
        prompt: e.prompt_name,
        version: e.version.to_string(),
        dataset: e.dataset_name,
    };
    Ok(render(StatusCode::OK, "evaluation.html", context))
}

/// The start form as posted. Ticked metrics come as `metric.NAME` fields.
#[derive(Deserialize, Serialize, Default)]
pub struct StartForm {
    #[serde(default)]
    prompt: String,
    #[serde(default, rename = "ref")]
    reference: String,
    #[serde(default)]
    dataset: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    model: String,
    /// A JSON object: metric name → its parameters.
    #[serde(default)]
    params: String,
    /// A JSON array of LLM judges' parameters.
    #[serde(default)]
    judges: String,
    #[serde(default)]
    concurrency: String,
    #[serde(flatten, skip_serializing)]
    rest: BTreeMap<String, String>,
}

/// The metric boxes ticked first, when the form has not been sent yet.
const DEFAULT_METRICS: [&str; 1] = ["exact_match"];

impl StartForm {
    fn ticked(&self) -> Vec<String> {
        let ticked: Vec<String> = self
            .rest
            .keys()
            .filter_map(|key| key.strip_prefix("metric."))
            .map(str::to_owned)
            .collect();
        ticked
    }

    /// The spec to start, or every field at fault (keyed by form field).
    fn parse(&self, state: &AppState) -> Result<EvaluationSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let prompt = prompt_name(self.prompt.trim())
            .map_err(|_| FieldError::new("prompt", "a prompt name, e.g. support/greeting"));
        let reference = match self.reference.trim() {
            "" => Ok(state.renderer.default_ref()),
            raw => version_ref("ref", raw).map_err(|e| FieldError::new("ref", field_message(e))),
        };
        if self.dataset.trim().is_empty() {
            errors.push(FieldError::new("dataset", "name the dataset to run over"));
        }
        if self.provider.trim().is_empty() {
            errors.push(FieldError::new("provider", "choose a provider"));
        }
        let concurrency = match self.concurrency.trim() {
            "" => None,
            raw => match raw.parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) => {
                    errors.push(FieldError::new("concurrency", "a whole number, 1 to 256"));
                    None
                }
            },
        };
        let mut params = match self.params.trim() {
            "" => serde_json::Map::new(),
            raw => match serde_json::from_str::<Value>(raw) {
                Ok(Value::Object(map)) => map,
                _ => {
                    errors.push(FieldError::new(
                        "params",
                        "a JSON object of metric name → parameters, e.g. {\"regex\": {\"pattern\": \"^\\\\d+$\"}}",
                    ));
                    serde_json::Map::new()
                }
            },
        };
        let ticked = self.ticked();
        let mut requests: Vec<MetricRequest> = Vec::new();
        for name in &ticked {
            requests.push(match params.remove(name) {
                Some(p) => MetricRequest::Spec {
                    name: name.clone(),
                    params: Some(p),
                },
                None => MetricRequest::Name(name.clone()),
            });
        }
        if let Some(unticked) = params.keys().next() {
            errors.push(FieldError::new(
                "params",
                format!("{unticked:?} has parameters but is not ticked"),
            ));
        }
        let metric_count = requests.len();
        match self.judges.trim() {
            "" => {}
            raw => match serde_json::from_str::<Value>(raw) {
                Ok(Value::Array(judges)) => {
                    requests.extend(judges.into_iter().map(|judge| MetricRequest::Spec {
                        name: LLM_JUDGE.to_owned(),
                        params: Some(judge),
                    }));
                }
                _ => errors.push(FieldError::new(
                    "judges",
                    "a JSON array of judges, e.g. [{\"rubric\": \"correctness\", \"provider\": \"openai\"}]",
                )),
            },
        }
        let metrics = match parse_metrics("metrics", requests, true) {
            Ok((specs, _)) => specs,
            Err(err) => {
                let problem = err.problem();
                errors.extend(problem.errors.into_iter().map(|e| {
                    // `metrics[i]` counts ticked metrics first, then judges.
                    let index = e
                        .field
                        .strip_prefix("metrics[")
                        .and_then(|rest| rest.split(']').next())
                        .and_then(|i| i.parse::<usize>().ok());
                    let field = match index {
                        Some(i) if i >= metric_count => "judges",
                        _ => "metrics",
                    };
                    FieldError::new(field, e.message)
                }));
                Vec::new()
            }
        };
        let (prompt, reference) = match (prompt, reference) {
            (Ok(prompt), Ok(reference)) if errors.is_empty() => (prompt, reference),
            (prompt, reference) => {
                errors.extend(prompt.err());
                errors.extend(reference.err());
                return Err(errors);
            }
        };
        Ok(EvaluationSpec {
            prompt,
            reference,
            dataset: self.dataset.trim().to_owned(),
            provider: self.provider.trim().to_owned(),
            model: Some(self.model.trim().to_owned()).filter(|m| !m.is_empty()),
            params: serde_json::Map::new(),
            metrics,
            concurrency,
        })
    }
}

/// The message of a refusal that names one field.
fn field_message(err: ApiError) -> String {
    match err {
        ApiError::Service(err) => err
            .field_errors()
            .into_iter()
            .next()
            .map_or_else(|| err.to_string(), |e| e.message),
        other => other.to_string(),
    }
}

/// The start form as a page shows it.
#[derive(Serialize)]
struct StartView {
    form: StartForm,
    ticked: Vec<String>,
    providers: Vec<String>,
    metric_names: &'static [&'static str],
    rubrics: Vec<&'static str>,
    problems: Problems,
}

fn start_view(state: &AppState, form: StartForm) -> StartView {
    let mut ticked = form.ticked();
    if form.rest.is_empty() && form.provider.is_empty() {
        ticked = DEFAULT_METRICS.iter().map(|m| (*m).to_owned()).collect();
    }
    StartView {
        ticked,
        form,
        providers: state.providers.list().into_iter().map(|p| p.name).collect(),
        metric_names: METRIC_NAMES,
        rubrics: Rubric::ALL.iter().map(|r| r.as_str()).collect(),
        problems: Problems::default(),
    }
}

/// Where a refusal of the service is shown on the form.
fn start_problem(err: ServiceError) -> Result<FieldError, UiError> {
    let field = match &err {
        ServiceError::Store(StoreError::PromptNotFound(_)) => "prompt",
        ServiceError::Store(
            StoreError::VersionNotFound { .. } | StoreError::LabelNotFound { .. },
        ) => "ref",
        ServiceError::Store(StoreError::DatasetNotFound(_)) => "dataset",
        ServiceError::ProviderNotFound(why) if why.starts_with("metrics[") => "judges",
        ServiceError::ProviderNotFound(_) => "provider",
        ServiceError::Validation(errors) => match errors.first().map(|e| e.field.as_str()) {
            Some("concurrency") => "concurrency",
            Some(f) if f.starts_with("metrics[") => "judges",
            _ => "",
        },
        _ => "",
    };
    let api = ApiError::from(err);
    let problem = api.problem();
    if problem.status >= 500 || problem.status == 403 {
        return Err(api.into());
    }
    let message = match problem.errors.first() {
        Some(e) if !field.is_empty() => e.message.clone(),
        _ => problem.detail,
    };
    Ok(FieldError::new(field, message))
}

#[derive(Serialize)]
struct NewEvaluationPage<'a> {
    me: Me<'a>,
    section: &'static str,
    start: StartView,
}

/// `POST /ui/evaluations`: starts an evaluation and opens its page; a
/// refusal shows the form again with each reason beside its field.
pub async fn start_evaluation(
    State(state): State<AppState>,
    posted: Posted<StartForm>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Evaluate)?;
    let form = posted.form;
    let errors = match form.parse(&state) {
        Err(errors) => errors,
        Ok(spec) => {
            let started = evaluations::start(
                &state.registry,
                &state.providers,
                session.caller.project,
                &session.caller.actor(),
                spec,
            )
            .await;
            match started {
                Ok(evaluation) => {
                    state.wake_workers();
                    return Ok(Redirect::to(&evaluation_url(evaluation.id)).into_response());
                }
                Err(err) => vec![start_problem(err)?],
            }
        }
    };
    let shown = |field: &str| {
        matches!(
            field,
            "prompt"
                | "ref"
                | "dataset"
                | "provider"
                | "model"
                | "metrics"
                | "params"
                | "judges"
                | "concurrency"
        )
        .then(|| field.to_owned())
    };
    let mut start = start_view(&state, form);
    start.problems = Problems::of(errors, shown);
    let page = NewEvaluationPage {
        me: Me::of(session),
        section: "evaluations",
        start,
    };
    Ok(render(
        StatusCode::UNPROCESSABLE_ENTITY,
        "new_evaluation.html",
        page,
    ))
}

#[derive(Deserialize)]
pub struct CancelForm {}

/// `POST /ui/evaluations/{id}/cancel`: cancels its job (as
/// `POST /v1/jobs/{id}/cancel`) and goes back to the evaluation. One that
/// ended meanwhile has nothing to cancel: its page shows how it ended.
pub async fn cancel_evaluation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<CancelForm>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Evaluate)?;
    let id =
        Uuid::parse_str(&id).map_err(|_| ApiError::validation("id", "not an evaluation id"))?;
    match evaluations::cancel(
        &state.registry,
        session.caller.project,
        &session.caller.actor(),
        id,
    )
    .await
    {
        Ok(_) | Err(ServiceError::Store(StoreError::JobFinished(_))) => {
            Ok(Redirect::to(&evaluation_url(id)).into_response())
        }
        Err(err) => Err(err.into()),
    }
}
