//! Online experiments: split a label's traffic between versions, ramp the
//! split, stop it (optionally promoting a variant), and read per-variant
//! statistics with an anytime-valid comparison against the control.

use axum::extract::State;
use axum::http::{header, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::{scope, Auth};
use super::extract::{label_name, prompt_name, semver, Json, Path, PromptPath, Query};
use super::AppState;
use crate::domain::experiments::stats::{Comparison, Sample};
use crate::domain::experiments::{Direction, Experiment, ExperimentStatus};
use crate::error::{ApiError, FieldError, Problem};
use crate::services::experiments::{self, ExperimentReport};
use crate::store::experiments::NewExperiment;

/// A version and its share of the label's traffic.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantWeight {
    #[schema(example = "1.0.1")]
    pub version: String,
    /// Percent of the traffic, an integer; the weights sum to 100.
    #[schema(example = 10)]
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DirectionWire {
    Higher,
    Lower,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "label": "production",
    "variants": [{"version": "1.0.0", "weight": 90}, {"version": "1.0.1", "weight": 10}],
    "metric": "thumbs_up", "direction": "higher", "min_samples": 100
}))]
pub struct CreateExperimentRequest {
    /// The label whose traffic is split; its current version must be one
    /// of the variants (the control).
    label: String,
    variants: Vec<VariantWeight>,
    /// The feedback name compared.
    metric: String,
    direction: DirectionWire,
    /// Feedback values per variant before any decision.
    min_samples: u32,
    /// Default 0.95: the chance of never wrongly declaring a difference.
    confidence: Option<f64>,
    /// Default true: the guard takes a confidently worse variant out.
    rollback_if_worse: Option<bool>,
    /// Default false: the guard promotes a confidently better variant.
    auto_promote: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"variants": [{"version": "1.0.0", "weight": 50}, {"version": "1.0.1", "weight": 50}]}))]
pub struct RampExperimentRequest {
    /// Every variant of the experiment with its new weight.
    variants: Vec<VariantWeight>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"promote": "1.0.1"}))]
pub struct StopExperimentRequest {
    /// A variant to make the label's version (through its gate), or null.
    #[serde(default)]
    promote: Option<String>,
}

/// The treatment against the control.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VsControl {
    /// Treatment mean minus control mean.
    pub difference: f64,
    /// An anytime-valid confidence interval for the difference (valid
    /// however often it is read).
    pub interval: [f64; 2],
    /// `running`, `better`, `worse` or `inconclusive`.
    #[schema(example = "running")]
    pub decision: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VariantResponse {
    #[schema(example = "1.0.1")]
    pub version: String,
    pub weight: u32,
    /// Requests served this variant (counted in memory, written every few
    /// seconds by each replica).
    pub served: i64,
    /// Feedback values on the metric.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// A fixed-sample 95% interval for the mean.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci95: Option<[f64; 2]>,
    /// Absent for the control and until both have feedback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_control: Option<VsControl>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExperimentResponse {
    pub id: Uuid,
    #[schema(example = "support/greeting")]
    pub prompt: String,
    #[schema(example = "production")]
    pub label: String,
    /// `running`, `stopped`, `promoted` or `rolled_back`.
    #[schema(example = "running")]
    pub status: String,
    pub metric: String,
    pub direction: DirectionWire,
    pub min_samples: u32,
    pub confidence: f64,
    pub rollback_if_worse: bool,
    pub auto_promote: bool,
    /// The control first.
    pub variants: Vec<VariantResponse>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl ExperimentResponse {
    fn new(experiment: Experiment, samples: Option<Vec<(Sample, Option<Comparison>)>>) -> Self {
        let mut samples = samples.map(Vec::into_iter);
        let variants = experiment
            .variants
            .into_iter()
            .map(|v| {
                let stats = samples.as_mut().and_then(Iterator::next);
                let (sample, comparison) = match stats {
                    Some((sample, comparison)) => (Some(sample), comparison),
                    None => (None, None),
                };
                VariantResponse {
                    version: v.version.to_string(),
                    weight: v.weight,
                    served: v.served,
                    n: sample.map(|s| s.n),
                    mean: sample.and_then(|s| s.mean()),
                    ci95: sample.and_then(|s| s.ci95()).map(|(lo, hi)| [lo, hi]),
                    vs_control: comparison.map(|c| VsControl {
                        difference: c.difference,
                        interval: [c.interval.0, c.interval.1],
                        decision: c.decision.as_str().to_owned(),
                    }),
                }
            })
            .collect();
        Self {
            id: experiment.id,
            prompt: experiment.prompt,
            label: experiment.label,
            status: experiment.status.as_str().to_owned(),
            metric: experiment.metric,
            direction: match experiment.direction {
                Direction::Higher => DirectionWire::Higher,
                Direction::Lower => DirectionWire::Lower,
            },
            min_samples: experiment.min_samples,
            confidence: experiment.confidence,
            rollback_if_worse: experiment.rollback_if_worse,
            auto_promote: experiment.auto_promote,
            variants,
            created_at: experiment.created_at,
            created_by: experiment.created_by,
            ended_at: experiment.ended_at,
        }
    }
}

impl From<Experiment> for ExperimentResponse {
    fn from(experiment: Experiment) -> Self {
        Self::new(experiment, None)
    }
}

impl From<ExperimentReport> for ExperimentResponse {
    fn from(report: ExperimentReport) -> Self {
        Self::new(report.experiment, Some(report.samples))
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExperimentList {
    pub items: Vec<ExperimentResponse>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExperimentFilter {
    /// Only this prompt's experiments.
    prompt: Option<String>,
    /// `running`, `stopped`, `promoted` or `rolled_back`.
    status: Option<String>,
}

fn weights(variants: &[VariantWeight]) -> Result<Vec<(semver::Version, u32)>, ApiError> {
    variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Ok((
                semver(&format!("variants[{i}].version"), &v.version)?,
                v.weight,
            ))
        })
        .collect()
}

/// Start an experiment: split a label's traffic between its version (the
/// control) and other versions, each of which must pass the label's gate.
#[utoipa::path(post, path = "/v1/prompts/{name}/experiments", tag = "experiments",
    security(("bearer" = ["promote"])),
    params(PromptPath),
    request_body = CreateExperimentRequest,
    responses(
        (status = 201, description = "The running experiment", body = ExperimentResponse,
            headers(("location" = String, description = "/v1/experiments/{id}"))),
        (status = 404, description = "`prompt_not_found`, `label_not_found` or `version_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`experiment_running` (the label has one) or `control_not_current` (the first variant is not the label's version)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`gate_failed`: a variant does not pass the label's gate", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: weights, versions, metric, min_samples or confidence", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_experiment(
    State(state): State<AppState>,
    auth: Auth<scope::Promote>,
    Path(name): Path<String>,
    Json(body): Json<CreateExperimentRequest>,
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, String); 1],
        axum::Json<ExperimentResponse>,
    ),
    ApiError,
> {
    let name = prompt_name(&name)?;
    let new = NewExperiment {
        label: label_name("label", &body.label)?,
        variants: weights(&body.variants)?,
        metric: body.metric,
        direction: match body.direction {
            DirectionWire::Higher => Direction::Higher,
            DirectionWire::Lower => Direction::Lower,
        },
        min_samples: body.min_samples,
        confidence: body.confidence.unwrap_or(0.95),
        rollback_if_worse: body.rollback_if_worse.unwrap_or(true),
        auto_promote: body.auto_promote.unwrap_or(false),
    };
    let experiment =
        experiments::start(&state.registry, auth.project, &auth.actor(), &name, new).await?;
    let location = format!("/v1/experiments/{}", experiment.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(experiment.into()),
    ))
}

/// List experiments, newest first.
#[utoipa::path(get, path = "/v1/experiments", tag = "experiments",
    security(("bearer" = ["read"])),
    params(ExperimentFilter),
    responses(
        (status = 200, description = "The experiments (without statistics)", body = ExperimentList),
    ))]
pub async fn list_experiments(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Query(filter): Query<ExperimentFilter>,
) -> Result<axum::Json<ExperimentList>, ApiError> {
    let prompt = filter.prompt.as_deref().map(prompt_name).transpose()?;
    let status = filter
        .status
        .as_deref()
        .map(|raw| {
            ExperimentStatus::parse(raw).ok_or_else(|| {
                ApiError::invalid(vec![FieldError::new(
                    "status",
                    format!("{raw:?} is not running, stopped, promoted or rolled_back"),
                )])
            })
        })
        .transpose()?;
    let items = experiments::list(&state.registry, auth.project, prompt.as_ref(), status).await?;
    Ok(axum::Json(ExperimentList {
        items: items.into_iter().map(ExperimentResponse::from).collect(),
    }))
}

/// An experiment with per-variant statistics and the decision against the control.
#[utoipa::path(get, path = "/v1/experiments/{id}", tag = "experiments",
    security(("bearer" = ["read"])),
    params(("id" = Uuid, Path, description = "The experiment's id")),
    responses(
        (status = 200, description = "The experiment", body = ExperimentResponse),
        (status = 404, description = "`experiment_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_experiment(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<ExperimentResponse>, ApiError> {
    let report = experiments::report(&state.registry, auth.project, id).await?;
    Ok(axum::Json(report.into()))
}

/// Change a running experiment's weights (a ramp).
#[utoipa::path(patch, path = "/v1/experiments/{id}", tag = "experiments",
    security(("bearer" = ["promote"])),
    params(("id" = Uuid, Path, description = "The experiment's id")),
    request_body = RampExperimentRequest,
    responses(
        (status = 200, description = "The experiment", body = ExperimentResponse),
        (status = 404, description = "`experiment_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`experiment_ended`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: every variant once, weights summing to 100", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ramp_experiment(
    State(state): State<AppState>,
    auth: Auth<scope::Promote>,
    Path(id): Path<Uuid>,
    Json(body): Json<RampExperimentRequest>,
) -> Result<axum::Json<ExperimentResponse>, ApiError> {
    let weights = weights(&body.variants)?;
    let experiment =
        experiments::ramp(&state.registry, auth.project, &auth.actor(), id, weights).await?;
    Ok(axum::Json(experiment.into()))
}

/// Stop a running experiment; with `promote`, that variant becomes the
/// label's version first, through the label's gate.
#[utoipa::path(post, path = "/v1/experiments/{id}/stop", tag = "experiments",
    security(("bearer" = ["promote"])),
    params(("id" = Uuid, Path, description = "The experiment's id")),
    request_body = StopExperimentRequest,
    responses(
        (status = 200, description = "The experiment, `stopped` or `promoted`", body = ExperimentResponse),
        (status = 404, description = "`experiment_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`experiment_ended`", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`gate_failed`: the promoted variant does not pass the label's gate", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `promote` is not a variant", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stop_experiment(
    State(state): State<AppState>,
    auth: Auth<scope::Promote>,
    Path(id): Path<Uuid>,
    Json(body): Json<StopExperimentRequest>,
) -> Result<axum::Json<ExperimentResponse>, ApiError> {
    let promote = body
        .promote
        .as_deref()
        .map(|raw| semver("promote", raw))
        .transpose()?;
    let experiment =
        experiments::stop(&state.registry, auth.project, &auth.actor(), id, promote).await?;
    Ok(axum::Json(experiment.into()))
}
