//! Evaluation pages: the list (filtered by prompt, dataset and status, as a
//! GET form) and an evaluation (status and progress; per metric the mean,
//! the 95% interval and a histogram drawn as SVG; tokens, cost, latency;
//! its results with their items, filterable to failures).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::datasets::{dataset_url, shown};
use super::prompts::authorize;
use super::session::Signed;
use super::{page_request, prompt_url, render, time, with_query, Me, UiError};
use crate::api::extract::{Path, Query};
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::jobs::{EvaluationFilter, Job, JobStatus};
use crate::domain::PromptName;
use crate::error::ApiError;
use crate::eval::stats::Summary;
use crate::services::evaluations::{self, EvaluationSummary, ResultWithItem, FAILING_BELOW};

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
    };
    Ok(render(StatusCode::OK, "evaluations.html", context))
}

#[derive(Deserialize, Serialize, Default, Clone)]
pub struct DetailParams {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    failures: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    cursor: String,
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
    done: i64,
    total: i64,
    percent: i64,
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
    /// Metrics the results table has a column for.
    columns: Vec<String>,
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
    let detail = evaluations::detail(
        &state.registry,
        session.caller.project,
        id,
        page_request(RESULTS_PER_PAGE, &params.cursor)?,
        only_failures,
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
    let first = if only_failures {
        with_query(&url, &[("failures", "true")])
    } else {
        url.clone()
    };
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
        results: detail
            .results
            .items
            .into_iter()
            .map(|r| result_row(r, &columns))
            .collect(),
        columns,
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
