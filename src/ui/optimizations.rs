//! Optimization pages: the list (filtered by prompt and status, as a GET
//! form), the start form (the fields `POST /v1/optimizations` takes, checked
//! by the same rules), and an optimization: its scores per iteration as an
//! SVG line chart with the numbers in a table beside it, calls and cost
//! against the budget, every iteration's candidates, and the result version
//! with its diff and the buttons to evaluate or promote it. While the job
//! runs, htmx polls the `live` fragment once a second and swaps it in; the
//! fragment it gets once the job is finished no longer polls.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::datasets::dataset_url;
use super::diff::{diff_view, DiffView, Layout};
use super::evaluations::evaluation_url;
use super::prompts::authorize;
use super::session::{Posted, Signed};
use super::{page_request, prompt_url, render, time, with_query, Me, UiError};
use crate::api::extract::{version_ref, Path, Query};
use crate::api::optimizations::{
    parse_spec, CreateOptimizationRequest, ObjectiveRequest, WeightedMetricRequest,
};
use crate::api::scores::MetricRequest;
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::content::{ChatMessage, PromptBody};
use crate::domain::jobs::JobStatus;
use crate::domain::objective::Constraint;
use crate::domain::optimization::{
    Budget, Candidate, ModelChoice, Optimization, OptimizationFilter, Split, StopReason,
    StrategyName,
};
use crate::domain::PromptName;
use crate::error::{ApiError, FieldError};
use crate::services::optimizations::{self, OptimizationDetail};
use crate::services::sessions::SignedIn;

/// Optimizations per list page.
const OPTIMIZATIONS_PER_PAGE: u32 = 20;
const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];
const STRATEGIES: [&str; 5] = ["opro", "critique", "fewshot", "compress", "joint"];
/// Templates and critiques longer than this (in characters) are folded.
const FOLD_ABOVE: usize = 240;

pub fn optimization_url(id: Uuid) -> String {
    format!("/ui/optimizations/{id}")
}

fn score(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |s| format!("{s:.3}"))
}

fn cost(usd: f64) -> String {
    format!("${usd:.4}")
}

fn model_of(choice: &ModelChoice) -> String {
    match &choice.model {
        Some(model) => format!("{} / {model}", choice.provider),
        None => choice.provider.clone(),
    }
}

fn completed(optimization: &Optimization) -> usize {
    optimization
        .state
        .iterations
        .iter()
        .filter(|i| i.complete)
        .count()
}

// ---------------------------------------------------------------- the list

#[derive(Deserialize, Serialize, Default, Clone)]
pub struct ListParams {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    prompt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    cursor: String,
}

#[derive(Serialize)]
struct OptimizationRow {
    url: String,
    prompt: String,
    prompt_url: String,
    version: String,
    dataset: String,
    strategy: &'static str,
    status: &'static str,
    /// `2/5 iterations`.
    progress: String,
    baseline: String,
    best: String,
    result_version: Option<String>,
    result_url: Option<String>,
    calls: u64,
    cost: String,
    created_at: String,
}

fn optimization_row(o: Optimization) -> OptimizationRow {
    let done = completed(&o);
    OptimizationRow {
        url: optimization_url(o.id),
        prompt_url: prompt_url(&o.prompt_name),
        strategy: o.spec.strategy.as_str(),
        status: o.job.status.as_str(),
        progress: format!("{done}/{} iterations", o.spec.max_iterations),
        baseline: score(o.state.baseline.val_score),
        best: score(o.state.best_val_score()),
        result_url: o
            .result_version
            .as_ref()
            .map(|v| format!("{}/versions/{v}", prompt_url(&o.prompt_name))),
        result_version: o.result_version.as_ref().map(ToString::to_string),
        calls: o.state.calls,
        cost: cost(o.state.cost_usd),
        created_at: time(o.created_at),
        version: o.version.to_string(),
        dataset: o.dataset_name,
        prompt: o.prompt_name,
    }
}

#[derive(Serialize)]
struct ListPage<'a> {
    me: Me<'a>,
    section: &'static str,
    prompt: &'a str,
    status: &'a str,
    statuses: [&'static str; 5],
    optimizations: Vec<OptimizationRow>,
    prompt_link: Option<String>,
    /// The start form, for those who may start one.
    start_url: Option<String>,
    next: Option<String>,
}

pub async fn list_optimizations(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(params): Query<ListParams>,
) -> Result<Response, UiError> {
    authorize(&state, &session, Scope::Read)?;
    let prompt = params.prompt.trim();
    let filter = OptimizationFilter {
        prompt: Some(prompt)
            .filter(|p| !p.is_empty())
            .map(|p| PromptName::parse(p).map_err(|e| ApiError::invalid_name("prompt", e)))
            .transpose()?,
        status: match params.status.as_str() {
            "" => None,
            raw => Some(JobStatus::parse(raw).ok_or_else(|| {
                ApiError::validation("status", format!("one of {}", STATUSES.join(", ")))
            })?),
        },
    };
    let page = optimizations::list(
        &state.registry,
        session.caller.project,
        &filter,
        page_request(OPTIMIZATIONS_PER_PAGE, &params.cursor)?,
    )
    .await?;
    let next = page.next_cursor.map(|cursor| {
        with_query(
            "/ui/optimizations",
            &ListParams {
                cursor,
                ..params.clone()
            },
        )
    });
    let start_url = session
        .caller
        .has(Scope::Evaluate)
        .then(|| match &filter.prompt {
            Some(p) => with_query("/ui/optimizations/new", &[("prompt", p.as_str())]),
            None => "/ui/optimizations/new".to_owned(),
        });
    let context = ListPage {
        me: Me::of(&session),
        section: "optimizations",
        prompt_link: filter.prompt.as_ref().map(|p| prompt_url(p.as_str())),
        prompt,
        status: &params.status,
        statuses: STATUSES,
        optimizations: page.items.into_iter().map(optimization_row).collect(),
        start_url,
        next,
    };
    Ok(render(StatusCode::OK, "optimizations.html", context))
}

// ---------------------------------------------------------- the start form

/// The start form's fields, as typed.
#[derive(Deserialize, Serialize, Clone)]
#[serde(default)]
pub struct StartForm {
    prompt: String,
    #[serde(rename = "ref")]
    reference: String,
    dataset: String,
    train_share: String,
    seed: String,
    strategy: String,
    metric: String,
    metric_params: String,
    target_provider: String,
    target_model: String,
    optimizer_provider: String,
    optimizer_model: String,
    max_iterations: String,
    candidates_per_iteration: String,
    patience: String,
    target_score: String,
    max_calls: String,
    max_cost_usd: String,
    concurrency: String,
    num_demos: String,
    promote_to: String,
    min_improvement: String,
    /// One `MEASURE:BOUND=VALUE` per line.
    constraints: String,
    max_drop: String,
}

impl Default for StartForm {
    /// The API's defaults, written out.
    fn default() -> Self {
        Self {
            prompt: String::new(),
            reference: String::new(),
            dataset: String::new(),
            train_share: "0.6".into(),
            seed: "0".into(),
            strategy: "opro".into(),
            metric: "exact_match".into(),
            metric_params: String::new(),
            target_provider: String::new(),
            target_model: String::new(),
            optimizer_provider: String::new(),
            optimizer_model: String::new(),
            max_iterations: "5".into(),
            candidates_per_iteration: "4".into(),
            patience: "3".into(),
            target_score: String::new(),
            max_calls: String::new(),
            max_cost_usd: String::new(),
            concurrency: "8".into(),
            num_demos: "3".into(),
            promote_to: String::new(),
            min_improvement: String::new(),
            constraints: String::new(),
            max_drop: String::new(),
        }
    }
}

#[derive(Deserialize, Default)]
pub struct NewParams {
    #[serde(default)]
    prompt: String,
}

#[derive(Serialize)]
struct StartPage<'a> {
    me: Me<'a>,
    section: &'static str,
    form: StartForm,
    providers: Vec<String>,
    strategies: [&'static str; 5],
    /// API field name → what is wrong with it.
    problems: BTreeMap<String, Vec<String>>,
    /// Problems no field of the form names.
    general: Vec<String>,
    can_promote: bool,
}

fn start_page<'a>(
    state: &AppState,
    session: &'a SignedIn,
    form: StartForm,
    errors: Vec<FieldError>,
    general: Vec<String>,
) -> StartPage<'a> {
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut general = general;
    for error in errors {
        // "optimizer" (missing) and "optimizer.provider" (unknown) are one select.
        let field = match error.field.as_str() {
            "optimizer" => "optimizer.provider".to_owned(),
            // The objective's metric is the form's one metric.
            "objective.metrics" | "objective.metrics[0]" => "metric".to_owned(),
            f if f.starts_with("objective.constraints") => "constraints".to_owned(),
            _ => error.field,
        };
        if FORM_FIELDS.contains(&field.as_str()) {
            problems.entry(field).or_default().push(error.message);
        } else {
            general.push(format!("{field}: {}", error.message));
        }
    }
    StartPage {
        me: Me::of(session),
        section: "optimizations",
        form,
        providers: state.providers.list().into_iter().map(|p| p.name).collect(),
        strategies: STRATEGIES,
        problems,
        general,
        can_promote: session.caller.has(Scope::Promote),
    }
}

/// The API's field names the form has an input for (problems go beside it).
const FORM_FIELDS: [&str; 23] = [
    "prompt",
    "ref",
    "dataset",
    "split.train",
    "split.seed",
    "strategy",
    "metric",
    "target.provider",
    "optimizer",
    "optimizer.provider",
    "max_iterations",
    "candidates_per_iteration",
    "patience",
    "target_score",
    "budget.max_calls",
    "budget.max_cost_usd",
    "concurrency",
    "num_demos",
    "promote_to",
    "min_improvement",
    "target.model",
    "constraints",
    "max_drop",
];

pub async fn new_optimization_page(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(params): Query<NewParams>,
) -> Result<Response, UiError> {
    authorize(&state, &session, Scope::Evaluate)?;
    let providers = state.providers.list();
    let first = providers
        .first()
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let form = StartForm {
        prompt: params.prompt.trim().to_owned(),
        target_provider: first.clone(),
        optimizer_provider: first,
        ..StartForm::default()
    };
    Ok(render(
        StatusCode::OK,
        "optimization_new.html",
        start_page(&state, &session, form, Vec::new(), Vec::new()),
    ))
}

/// `raw` as a `T`, or `None` when left empty; a problem for `field` when
/// it is not one.
fn optional<T: std::str::FromStr>(
    errors: &mut Vec<FieldError>,
    field: &str,
    raw: &str,
    what: &str,
) -> Option<T> {
    match raw.trim() {
        "" => None,
        text => text.parse().map_or_else(
            |_| {
                errors.push(FieldError::new(field, what));
                None
            },
            Some,
        ),
    }
}

fn text(raw: &str) -> Option<String> {
    Some(raw.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The form as the API's request body, and the fields it could not read
/// (left out of the body, so the API's defaults stand in for them).
fn request_of(form: &StartForm) -> (CreateOptimizationRequest, Vec<FieldError>) {
    let mut errors = Vec::new();
    let train: Option<f64> = optional(&mut errors, "split.train", &form.train_share, "a number");
    let seed: Option<u64> = optional(&mut errors, "split.seed", &form.seed, "a whole number");
    let strategy = StrategyName::parse(&form.strategy);
    if strategy.is_none() {
        errors.push(FieldError::new("strategy", STRATEGIES.join(", ")));
    }
    let params = match form.metric_params.trim() {
        "" => None,
        raw => match serde_json::from_str::<Value>(raw) {
            Ok(value @ Value::Object(_)) => Some(value),
            _ => {
                errors.push(FieldError::new(
                    "metric",
                    "its parameters must be a JSON object",
                ));
                None
            }
        },
    };
    let mut constraints = Vec::new();
    for line in form
        .constraints
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        match line.parse::<Constraint>() {
            Ok(constraint) => constraints.push(constraint),
            Err(why) => errors.push(FieldError::new("constraints", why)),
        }
    }
    let whole = "a whole number";
    let request = CreateOptimizationRequest {
        prompt: form.prompt.trim().to_owned(),
        reference: text(&form.reference),
        dataset: form.dataset.trim().to_owned(),
        split: Some(Split {
            train: train.unwrap_or(Split::default().train),
            seed: seed.unwrap_or(0),
        }),
        metric: constraints.is_empty().then(|| MetricRequest::Spec {
            name: form.metric.trim().to_owned(),
            params: params.clone(),
        }),
        objective: (!constraints.is_empty()).then(|| ObjectiveRequest {
            metrics: vec![WeightedMetricRequest {
                name: form.metric.trim().to_owned(),
                params,
                weight: None,
            }],
            constraints,
        }),
        target: ModelChoice {
            provider: form.target_provider.trim().to_owned(),
            model: text(&form.target_model),
            params: Map::new(),
        },
        optimizer: text(&form.optimizer_provider).map(|provider| ModelChoice {
            provider,
            model: text(&form.optimizer_model),
            params: Map::new(),
        }),
        strategy: strategy.unwrap_or(StrategyName::Opro),
        max_iterations: optional(&mut errors, "max_iterations", &form.max_iterations, whole),
        candidates_per_iteration: optional(
            &mut errors,
            "candidates_per_iteration",
            &form.candidates_per_iteration,
            whole,
        ),
        patience: optional(&mut errors, "patience", &form.patience, whole),
        target_score: optional(&mut errors, "target_score", &form.target_score, "a number"),
        budget: Some(Budget {
            max_calls: optional(&mut errors, "budget.max_calls", &form.max_calls, whole),
            max_cost_usd: optional(
                &mut errors,
                "budget.max_cost_usd",
                &form.max_cost_usd,
                "an amount in US dollars",
            ),
        }),
        concurrency: optional(&mut errors, "concurrency", &form.concurrency, whole),
        num_demos: optional(&mut errors, "num_demos", &form.num_demos, whole),
        promote_to: text(&form.promote_to),
        min_improvement: optional(
            &mut errors,
            "min_improvement",
            &form.min_improvement,
            "a number",
        ),
        max_drop: optional(&mut errors, "max_drop", &form.max_drop, "a number"),
    };
    (request, errors)
}

/// Which form field a refusal with problem `code` is about.
fn field_of(code: &str) -> Option<&'static str> {
    match code {
        "prompt_not_found" => Some("prompt"),
        "version_not_found" | "label_not_found" => Some("ref"),
        "dataset_not_found" => Some("dataset"),
        "provider_not_found" => Some("target.provider"),
        _ => None,
    }
}

pub async fn start_optimization(
    State(state): State<AppState>,
    posted: Posted<StartForm>,
) -> Result<Response, UiError> {
    let Posted { session, form } = posted;
    authorize(&state, &session, Scope::Evaluate)?;
    let refused = |errors: Vec<FieldError>, general: Vec<String>, status: StatusCode| {
        render(
            status,
            "optimization_new.html",
            start_page(&state, &session, form.clone(), errors, general),
        )
    };
    let (request, mut errors) = request_of(&form);
    if request.promote_to.is_some() {
        authorize(&state, &session, Scope::Promote)?;
    }
    let name = PromptName::parse(&request.prompt)
        .map_err(|e| errors.push(FieldError::new("prompt", e.to_string())))
        .ok();
    let reference = match &request.reference {
        Some(raw) => version_ref("ref", raw)
            .map_err(|e| errors.push(FieldError::new("ref", problem_detail(&e))))
            .ok(),
        None => Some(state.renderer.default_ref()),
    };
    if request.dataset.is_empty() {
        errors.push(FieldError::new("dataset", "required"));
    }
    let spec = match parse_spec(&state.providers, &request) {
        Ok(spec) => Some(spec),
        Err(ApiError::Service(err)) => {
            errors.extend(err.field_errors());
            None
        }
        Err(other) => return Err(other.into()),
    };
    let (Some(name), Some(reference), Some(spec), true) =
        (name, reference, spec, errors.is_empty())
    else {
        return Ok(refused(
            errors,
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    };
    let started = optimizations::start(
        &state.registry,
        session.caller.project,
        &session.caller.actor(),
        &name,
        &reference,
        &request.dataset,
        spec,
    )
    .await;
    match started {
        Ok(optimization) => {
            state.wake_workers();
            Ok(Redirect::to(&optimization_url(optimization.id)).into_response())
        }
        Err(err) => {
            let api = ApiError::from(err);
            let problem = api.problem();
            if problem.status >= 500 || problem.status == 403 {
                return Err(api.into());
            }
            let status =
                StatusCode::from_u16(problem.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            let ApiError::Service(err) = api else {
                return Ok(refused(Vec::new(), vec![problem.detail], status));
            };
            let mut errors = err.field_errors();
            let mut general = Vec::new();
            if errors.is_empty() {
                match field_of(problem.code) {
                    Some(field) => errors.push(FieldError::new(field, problem.detail)),
                    None => general.push(problem.detail),
                }
            }
            Ok(refused(errors, general, status))
        }
    }
}

fn problem_detail(err: &ApiError) -> String {
    err.problem().detail
}

// ------------------------------------------------------- an optimization

/// The chart's size and plotting area, in SVG user units.
const CHART_WIDTH: f64 = 560.0;
const CHART_HEIGHT: f64 = 280.0;
const PLOT_LEFT: f64 = 56.0;
const PLOT_RIGHT: f64 = 540.0;
const PLOT_TOP: f64 = 14.0;
const PLOT_BOTTOM: f64 = 196.0;
/// Room between the axes and the first and last iteration.
const PLOT_INSET: f64 = 14.0;

#[derive(Serialize)]
struct Point {
    x: f64,
    y: f64,
    /// What a pointer over it shows.
    title: String,
}

#[derive(Serialize)]
struct Series {
    /// `x,y x,y …` for a polyline.
    line: String,
    points: Vec<Point>,
}

impl Series {
    fn of(points: Vec<Point>) -> Self {
        Self {
            line: points
                .iter()
                .map(|p| format!("{:.1},{:.1}", p.x, p.y))
                .collect::<Vec<_>>()
                .join(" "),
            points,
        }
    }
}

#[derive(Serialize)]
struct Tick {
    at: f64,
    label: String,
}

#[derive(Serialize)]
struct Chart {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    metric: String,
    x_ticks: Vec<Tick>,
    y_ticks: Vec<Tick>,
    /// The baseline's validation score, as a height.
    baseline: Option<Point>,
    best: Series,
    training: Series,
    /// The chart in words, for those who cannot see it.
    description: String,
}

/// One row of the table beside the chart.
#[derive(Serialize)]
struct ScoreRow {
    iteration: String,
    best_val: String,
    training: String,
    calls: String,
    cost: String,
}

fn y_of(score: f64) -> f64 {
    PLOT_BOTTOM - score.clamp(0.0, 1.0) * (PLOT_BOTTOM - PLOT_TOP)
}

fn x_of(number: u32, axis_end: u32) -> f64 {
    let (from, to) = (PLOT_LEFT + PLOT_INSET, PLOT_RIGHT - PLOT_INSET);
    if axis_end <= 1 {
        return (from + to) / 2.0;
    }
    from + f64::from(number.saturating_sub(1)) / f64::from(axis_end - 1) * (to - from)
}

/// The training score of the iteration's candidate scored on validation
/// (the one that went furthest), if any.
fn training_score(candidates: &[Candidate]) -> Option<f64> {
    candidates
        .iter()
        .filter(|c| c.val_score.is_some())
        .filter_map(|c| c.train_score)
        .reduce(f64::max)
}

fn chart_and_table(o: &Optimization) -> (Chart, Vec<ScoreRow>) {
    let state = &o.state;
    let done: Vec<_> = state.iterations.iter().filter(|i| i.complete).collect();
    // The axis spans every iteration asked for, so points appear without rescaling.
    let axis_end = o
        .spec
        .max_iterations
        .max(u32::try_from(done.len()).unwrap_or(u32::MAX))
        .max(1);
    let step = axis_end.div_ceil(10).max(1);
    let x_ticks = (1..=axis_end)
        .filter(|n| (n - 1) % step == 0 || *n == axis_end)
        .map(|n| Tick {
            at: x_of(n, axis_end),
            label: n.to_string(),
        })
        .collect();
    let y_ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
        .into_iter()
        .map(|s| Tick {
            at: y_of(s),
            label: format!("{s:.2}"),
        })
        .collect();
    let mut best = Vec::new();
    let mut training = Vec::new();
    let mut rows = vec![ScoreRow {
        iteration: "Baseline".into(),
        best_val: score(state.baseline.val_score),
        training: score(state.baseline.train_score),
        calls: "–".into(),
        cost: "–".into(),
    }];
    for iteration in &done {
        let x = x_of(iteration.number, axis_end);
        let best_val = state.best_val_score_through(iteration.number);
        if let Some(value) = best_val {
            best.push(Point {
                x,
                y: y_of(value),
                title: format!(
                    "Best validation score after iteration {}: {value:.3}",
                    iteration.number
                ),
            });
        }
        let train = training_score(&iteration.candidates);
        if let Some(value) = train {
            training.push(Point {
                x,
                y: y_of(value),
                title: format!(
                    "Training score of iteration {}'s best candidate: {value:.3}",
                    iteration.number
                ),
            });
        }
        rows.push(ScoreRow {
            iteration: iteration.number.to_string(),
            best_val: score(best_val),
            training: score(train),
            calls: iteration.calls.to_string(),
            cost: cost(iteration.cost_usd),
        });
    }
    let baseline = state.baseline.val_score.map(|value| Point {
        x: PLOT_LEFT,
        y: y_of(value),
        title: format!("Baseline validation score: {value:.3}"),
    });
    let description = format!(
        "Line chart of {} by iteration: the baseline's validation score {}, \
         the best validation score after each of {} iterations{}; the same numbers are in the table beside it.",
        o.spec.metric.name,
        score(state.baseline.val_score),
        done.len(),
        match best.last() {
            Some(_) => format!(", now {}", score(state.best_val_score())),
            None => String::new(),
        }
    );
    let chart = Chart {
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        left: PLOT_LEFT,
        right: PLOT_RIGHT,
        top: PLOT_TOP,
        bottom: PLOT_BOTTOM,
        metric: o.spec.metric.name.clone(),
        x_ticks,
        y_ticks,
        baseline,
        best: Series::of(best),
        training: Series::of(training),
        description,
    };
    (chart, rows)
}

#[derive(Serialize)]
struct CandidateView {
    number: usize,
    template: String,
    folded: bool,
    minibatch: String,
    training: String,
    validation: String,
    discarded: Option<String>,
    /// The constraints it broke on validation, in words.
    violations: Option<String>,
    /// Its own length (template tokens).
    tokens: u32,
    /// Input tokens per item on validation, else on its minibatch.
    input_tokens: String,
    best: bool,
}

#[derive(Serialize)]
struct IterationView {
    number: u32,
    complete: bool,
    critique: Option<String>,
    critique_folded: bool,
    candidates: Vec<CandidateView>,
}

fn template_text(body: &PromptBody) -> String {
    match body {
        PromptBody::Text(text) => text.clone(),
        PromptBody::Chat(messages) => messages
            .iter()
            .map(|m| match m {
                ChatMessage::System { content } => format!("system: {content}"),
                ChatMessage::User { content } => format!("user: {content}"),
                ChatMessage::Assistant { content } => format!("assistant: {content}"),
                ChatMessage::Placeholder { name } => format!("(placeholder: {name})"),
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn long(text: &str) -> bool {
    text.chars().count() > FOLD_ABOVE || text.lines().count() > 4
}

fn iteration_views(o: &Optimization) -> Vec<IterationView> {
    let best = o.state.best(o.spec.strategy);
    o.state
        .iterations
        .iter()
        .map(|iteration| IterationView {
            number: iteration.number,
            complete: iteration.complete,
            critique_folded: iteration.diagnosis.as_deref().is_some_and(long),
            critique: iteration.diagnosis.clone(),
            candidates: iteration
                .candidates
                .iter()
                .enumerate()
                .map(|(index, c)| {
                    let template = template_text(&c.template);
                    CandidateView {
                        number: index + 1,
                        folded: long(&template),
                        template,
                        minibatch: score(c.minibatch_score),
                        training: match c.train_score {
                            Some(s) => format!("{s:.3} ({} items)", c.train_items),
                            None => "–".into(),
                        },
                        validation: score(c.val_score),
                        discarded: c.discarded.clone(),
                        violations: (!c.measurements.violations.is_empty())
                            .then(|| c.measurements.violations.join("; ")),
                        tokens: c.template_tokens,
                        input_tokens: c
                            .measurements
                            .val_measures
                            .or(c.measurements.train_measures)
                            .map_or("–".to_owned(), |m| format!("{:.1}", m.input_tokens)),
                        best: best.is_some_and(|b| std::ptr::eq(b, c)),
                    }
                })
                .collect(),
        })
        .collect()
}

#[derive(Serialize)]
struct Meter {
    value: f64,
    max: Option<f64>,
    /// In words: `12 of 200 calls (6%)`.
    text: String,
}

fn stop_words(reason: StopReason, o: &Optimization) -> String {
    match reason {
        StopReason::Target => "it reached the target score".into(),
        StopReason::Patience => format!(
            "no better validation score for {} iterations in a row",
            o.spec.patience
        ),
        StopReason::MaxIterations => {
            format!("it ran its maximum of {} iterations", o.spec.max_iterations)
        }
        StopReason::Budget => "its budget was spent".into(),
        StopReason::NoFeasibleCandidate => {
            "no candidate met the constraints, so there is no result".into()
        }
    }
}

#[derive(Serialize)]
struct ResultView {
    version: String,
    url: String,
    diff: DiffView,
    /// Where the Promote form posts (the prompt's label form).
    labels_url: String,
    label: String,
}

/// What changes while the job runs: the part the page polls for.
#[derive(Serialize)]
struct Live<'a> {
    url: String,
    live_url: String,
    csrf_token: &'a str,
    running: bool,
    status: &'static str,
    cancel_requested: bool,
    error: Option<String>,
    iterations_done: usize,
    max_iterations: u32,
    stop_reason: Option<String>,
    finished_at: Option<String>,
    calls: Meter,
    cost: Meter,
    chart: Chart,
    rows: Vec<ScoreRow>,
    iterations: Vec<IterationView>,
    result: Option<ResultView>,
    /// No result: why, in words (once finished).
    no_result: Option<String>,
    promotion: Option<String>,
    fronts: Vec<FrontView>,
    can_cancel: bool,
    can_evaluate: bool,
    can_promote: bool,
    can_adopt: bool,
}

/// One measure's Pareto front as a table.
#[derive(Serialize)]
struct FrontView {
    measure: &'static str,
    rows: Vec<FrontRow>,
}

#[derive(Serialize)]
struct FrontRow {
    who: String,
    score: String,
    value: String,
    feasible: bool,
    /// (iteration, candidate) to adopt; `None` for the baseline.
    adopt: Option<(u32, u32)>,
}

fn front_views(o: &Optimization) -> Vec<FrontView> {
    o.state
        .pareto_fronts()
        .into_iter()
        .map(|(measure, points)| FrontView {
            measure: measure.as_str(),
            rows: points
                .into_iter()
                .map(|p| FrontRow {
                    who: match p.key {
                        (0, _) => "Baseline".to_owned(),
                        (n, index) => format!("Iteration {n}, candidate {}", index + 1),
                    },
                    score: score(Some(p.score)),
                    value: if measure == crate::domain::objective::Measure::CostUsd {
                        cost(p.value)
                    } else {
                        format!("{:.1}", p.value)
                    },
                    feasible: o.state.feasible_at(p.key),
                    adopt: (p.key.0 > 0).then_some(p.key),
                })
                .collect(),
        })
        .collect()
}

fn live<'a>(session: &'a SignedIn, detail: OptimizationDetail) -> Live<'a> {
    let o = detail.optimization;
    let job = &o.job;
    let running = !job.status.is_final();
    let url = optimization_url(o.id);
    let budget = o.spec.budget;
    let calls = Meter {
        value: o.state.calls as f64,
        max: budget.max_calls.map(|m| m as f64),
        text: match budget.max_calls {
            Some(max) => format!(
                "{} of {max} calls ({}%)",
                o.state.calls,
                o.state.calls.saturating_mul(100) / max.max(1)
            ),
            None => format!("{} calls (no limit)", o.state.calls),
        },
    };
    let cost_meter = Meter {
        value: o.state.cost_usd,
        max: budget.max_cost_usd,
        text: match budget.max_cost_usd {
            Some(max) => format!(
                "{} of {} ({:.0}%)",
                cost(o.state.cost_usd),
                cost(max),
                o.state.cost_usd * 100.0 / max
            ),
            None => format!("{} (no limit)", cost(o.state.cost_usd)),
        },
    };
    let (chart, rows) = chart_and_table(&o);
    let prompt_page = prompt_url(&o.prompt_name);
    let result = match (&o.result_version, detail.result_changes) {
        (Some(version), Some(changes)) => Some(ResultView {
            version: version.to_string(),
            url: format!("{prompt_page}/versions/{version}"),
            diff: diff_view(
                &changes,
                format!("{} {} (baseline)", o.prompt_name, o.version),
                format!("{} {version} (result)", o.prompt_name),
                Layout::Split,
            ),
            labels_url: format!("{prompt_page}/labels"),
            label: o
                .spec
                .promote_to
                .clone()
                .unwrap_or_else(|| "staging".to_owned()),
        }),
        _ => None,
    };
    let no_result = (result.is_none() && !running).then(|| match job.status {
        JobStatus::Succeeded if o.state.stop_reason == Some(StopReason::NoFeasibleCandidate) => {
            "No candidate met the constraints on validation, so no version was written.".to_owned()
        }
        JobStatus::Succeeded => {
            "No candidate beat the baseline on validation, so no version was written.".to_owned()
        }
        _ => format!(
            "The job ended {} before writing a version.",
            job.status.as_str()
        ),
    });
    let promotion = o
        .state
        .promotion
        .as_ref()
        .map(|p| match (&p.reason, p.moved) {
            (_, true) => format!("Label {} was moved to the result.", p.label),
            (Some(reason), false) => format!("Label {} was not moved: {reason}", p.label),
            (None, false) => format!("Label {} was not moved.", p.label),
        });
    Live {
        live_url: format!("{url}/live"),
        url,
        csrf_token: &session.csrf_token,
        running,
        status: job.status.as_str(),
        cancel_requested: job.cancel_requested,
        error: job.error.clone(),
        iterations_done: completed(&o),
        max_iterations: o.spec.max_iterations,
        stop_reason: o.state.stop_reason.map(|r| stop_words(r, &o)),
        finished_at: job.finished_at.map(time),
        calls,
        cost: cost_meter,
        chart,
        rows,
        iterations: iteration_views(&o),
        result,
        no_result,
        promotion,
        fronts: front_views(&o),
        can_adopt: session.caller.has(Scope::Write),
        can_cancel: running && session.caller.has(Scope::Evaluate),
        can_evaluate: session.caller.has(Scope::Evaluate),
        can_promote: session.caller.has(Scope::Promote),
    }
}

#[derive(Serialize)]
struct DetailPage<'a> {
    me: Me<'a>,
    section: &'static str,
    id: String,
    prompt: String,
    prompt_url: String,
    version: String,
    version_url: String,
    dataset: String,
    dataset_url: String,
    strategy: &'static str,
    metric: String,
    /// The objective's constraints in words; `None` without any.
    constraints: Option<String>,
    target: String,
    optimizer: Option<String>,
    split: String,
    stopping: String,
    created_at: String,
    created_by: Option<String>,
    job_id: String,
    live: Live<'a>,
}

#[derive(Serialize)]
struct LiveFragment<'a> {
    live: Live<'a>,
}

fn optimization_id(raw: &str) -> Result<Uuid, UiError> {
    Ok(Uuid::parse_str(raw).map_err(|_| ApiError::validation("id", "not an optimization id"))?)
}

async fn load(
    state: &AppState,
    session: &SignedIn,
    id: &str,
) -> Result<OptimizationDetail, UiError> {
    authorize(state, session, Scope::Read)?;
    let id = optimization_id(id)?;
    Ok(optimizations::detail(&state.registry, session.caller.project, id).await?)
}

pub async fn show_optimization(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let detail = load(&state, &session, &id).await?;
    let o = &detail.optimization;
    let spec = &o.spec;
    let mut stopping = vec![
        format!("at most {} iterations", spec.max_iterations),
        format!("{} candidates per iteration", spec.candidates_per_iteration),
        format!("patience {}", spec.patience),
    ];
    if let Some(target) = spec.target_score {
        stopping.push(format!("target score {target}"));
    }
    if spec.strategy == StrategyName::Compress {
        stopping.push(format!("shorter within max_drop {}", spec.max_drop));
    }
    if let Some(label) = &spec.promote_to {
        stopping.push(format!(
            "promote to {label} when better by {}",
            spec.min_improvement
        ));
    }
    let context = DetailPage {
        me: Me::of(&session),
        section: "optimizations",
        id: o.id.to_string(),
        prompt_url: prompt_url(&o.prompt_name),
        version_url: format!("{}/versions/{}", prompt_url(&o.prompt_name), o.version),
        dataset_url: dataset_url(&o.dataset_name),
        strategy: spec.strategy.as_str(),
        metric: spec.objective.describe(),
        constraints: constraint_words(&spec.objective),
        target: model_of(&spec.target),
        optimizer: spec.optimizer.as_ref().map(model_of),
        split: format!(
            "{:.0}% training, seed {}",
            spec.split.train * 100.0,
            spec.split.seed
        ),
        stopping: stopping.join(", "),
        created_at: time(o.created_at),
        created_by: o.created_by.clone(),
        job_id: o.job.id.to_string(),
        prompt: o.prompt_name.clone(),
        version: o.version.to_string(),
        dataset: o.dataset_name.clone(),
        live: live(&session, detail),
    };
    Ok(render(StatusCode::OK, "optimization.html", context))
}

/// The part of the page that changes while the job runs (htmx swaps it in).
pub async fn show_live(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let detail = load(&state, &session, &id).await?;
    Ok(render(
        StatusCode::OK,
        "optimization_live.html",
        LiveFragment {
            live: live(&session, detail),
        },
    ))
}

/// `input_tokens at most 0.7 × the baseline's; latency_ms at most 800`.
fn constraint_words(objective: &crate::domain::objective::Objective) -> Option<String> {
    let words: Vec<String> = objective
        .constraints
        .iter()
        .map(|c| {
            let name = c.measure.as_str();
            let mut parts = Vec::new();
            if let Some(max) = c.max {
                parts.push(format!("at most {max}"));
            }
            if let Some(ratio) = c.max_ratio {
                parts.push(format!("at most {ratio} × the baseline's"));
            }
            if let Some(min) = c.min {
                parts.push(format!("at least {min}"));
            }
            format!("{name} {}", parts.join(" and "))
        })
        .collect();
    (!words.is_empty()).then(|| words.join("; "))
}

#[derive(Deserialize)]
pub struct EmptyForm {}

#[derive(Deserialize)]
pub struct AdoptForm {
    iteration: u32,
    candidate: u32,
}

/// Writes a candidate of the front as a new version, through the same
/// service as `POST /v1/optimizations/{id}/adopt`; on to that version.
pub async fn adopt_candidate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<AdoptForm>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Write)?;
    let id = optimization_id(&id)?;
    let form = &posted.form;
    let created = optimizations::adopt_candidate(
        &state.registry,
        &state.renderer,
        session.caller.project,
        &session.caller.actor(),
        id,
        form.iteration,
        form.candidate,
        None,
    )
    .await?;
    let version = &created.version;
    Ok(Redirect::to(&format!(
        "{}/versions/{}",
        prompt_url(&version.prompt_name),
        version.version
    ))
    .into_response())
}

/// Cancels the optimization's job through the same service as
/// `POST /v1/jobs/{id}/cancel`, then back to its page.
pub async fn cancel_optimization(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<EmptyForm>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Evaluate)?;
    let id = optimization_id(&id)?;
    optimizations::cancel(
        &state.registry,
        session.caller.project,
        &session.caller.actor(),
        id,
    )
    .await?;
    Ok(Redirect::to(&optimization_url(id)).into_response())
}

/// Starts an evaluation of the result version; on to its page.
pub async fn evaluate_result(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<EmptyForm>,
) -> Result<Response, UiError> {
    let session = &posted.session;
    authorize(&state, session, Scope::Evaluate)?;
    let id = optimization_id(&id)?;
    let evaluation = optimizations::evaluate_result(
        &state.registry,
        &state.providers,
        session.caller.project,
        &session.caller.actor(),
        id,
    )
    .await?;
    state.wake_workers();
    Ok(Redirect::to(&evaluation_url(evaluation.id)).into_response())
}
