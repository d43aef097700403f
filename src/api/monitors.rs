//! Monitors on labels after a rollout: when the label's version's mean
//! feedback over a window confidently falls below the version before it
//! by more than `max_drop`, the monitor fires (history, audit, webhook) and,
//! with `rollback`, rolls the label back.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{scope, Auth};
use super::extract::{label_name, prompt_name, Json, Path, PromptPath};
use super::AppState;
use crate::domain::monitors::{Monitor, MonitorAction, MonitorSpec, Side};
use crate::error::{ApiError, Problem};
use crate::services::monitors;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MonitorActionWire {
    Alert,
    Rollback,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"feedback": "thumbs_up", "window": "24h", "min_samples": 200, "max_drop": 0.05, "action": "rollback"}))]
pub struct PutMonitorRequest {
    /// The feedback name watched; higher values are better.
    feedback: String,
    /// How far back the current version's mean is taken: a whole number
    /// and `s`, `m`, `h` or `d` (`30m`, `24h`, `7d`), from 1s to 90d.
    window: String,
    /// Values needed on each side before any decision.
    min_samples: u32,
    /// How far the mean may fall (in the feedback's units) before firing.
    max_drop: f64,
    /// `alert` records the event; `rollback` also rolls the label back.
    action: MonitorActionWire,
    /// Default 0.95: the chance of never firing on a drop that is not there.
    confidence: Option<f64>,
}

/// One side of the last check.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MonitorSide {
    #[schema(example = "1.0.1")]
    pub version: String,
    pub n: i64,
    pub mean: Option<f64>,
}

impl From<Side> for MonitorSide {
    fn from(side: Side) -> Self {
        Self {
            version: side.version,
            n: side.n,
            mean: side.mean,
        }
    }
}

/// What the last check saw and concluded.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MonitorCheck {
    pub checked_at: DateTime<Utc>,
    /// `waiting` (a side has fewer than `min_samples`), `holding` or
    /// `dropped`.
    #[schema(example = "holding")]
    pub decision: Option<String>,
    /// The label's version over the last window.
    pub current: Option<MonitorSide>,
    /// The version before it over the window before the move, or (when
    /// `first_window`) the current version's own first window.
    pub previous: Option<MonitorSide>,
    pub first_window: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MonitorResponse {
    #[schema(example = "support/greeting")]
    pub prompt: String,
    #[schema(example = "production")]
    pub label: String,
    pub feedback: String,
    #[schema(example = "24h")]
    pub window: String,
    pub min_samples: u32,
    pub max_drop: f64,
    pub confidence: f64,
    pub action: MonitorActionWire,
    /// Absent until feedback on the label's version was checked.
    pub last_check: Option<MonitorCheck>,
    /// When the monitor last fired, and for which version (it fires once
    /// per version).
    pub fired_at: Option<DateTime<Utc>>,
    pub fired_version: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<String>,
}

impl From<Monitor> for MonitorResponse {
    fn from(m: Monitor) -> Self {
        let state = m.state;
        Self {
            prompt: m.prompt,
            label: m.label,
            feedback: m.spec.feedback,
            window: m.spec.window,
            min_samples: m.spec.min_samples,
            max_drop: m.spec.max_drop,
            confidence: m.spec.confidence,
            action: match m.spec.action {
                MonitorAction::Alert => MonitorActionWire::Alert,
                MonitorAction::Rollback => MonitorActionWire::Rollback,
            },
            last_check: state.checked_at.map(|checked_at| MonitorCheck {
                checked_at,
                decision: state.decision.map(|d| d.as_str().to_owned()),
                current: state.current.map(MonitorSide::from),
                previous: state.previous.map(MonitorSide::from),
                first_window: state.first_window,
            }),
            fired_at: state.fired_at,
            fired_version: state.fired_version,
            created_at: m.created_at,
            updated_at: m.updated_at,
            created_by: m.created_by,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MonitorList {
    pub items: Vec<MonitorResponse>,
}

/// Set the monitor on a label: which feedback, over which window, how
/// large a drop, and what to do when it fires.
#[utoipa::path(put, path = "/v1/prompts/{name}/monitors/{label}", tag = "experiments",
    security(("bearer" = ["promote"])),
    params(PromptPath, ("label" = String, Path, description = "The watched label")),
    request_body = PutMonitorRequest,
    responses(
        (status = 200, description = "The monitor (a replaced one keeps its state)", body = MonitorResponse),
        (status = 404, description = "`prompt_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (feedback, window, min_samples, max_drop, confidence), `invalid_label` or `reserved_label`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_monitor(
    State(state): State<AppState>,
    auth: Auth<scope::Promote>,
    Path((name, label)): Path<(String, String)>,
    Json(body): Json<PutMonitorRequest>,
) -> Result<axum::Json<MonitorResponse>, ApiError> {
    let name = prompt_name(&name)?;
    let label = label_name("label", &label)?;
    let spec = MonitorSpec {
        feedback: body.feedback,
        window: body.window,
        min_samples: body.min_samples,
        max_drop: body.max_drop,
        confidence: body.confidence.unwrap_or(0.95),
        action: match body.action {
            MonitorActionWire::Alert => MonitorAction::Alert,
            MonitorActionWire::Rollback => MonitorAction::Rollback,
        },
    };
    let monitor = monitors::put_monitor(
        &state.registry,
        auth.project,
        &auth.actor(),
        &name,
        &label,
        spec,
    )
    .await?;
    Ok(axum::Json(monitor.into()))
}

/// The monitors of a prompt's labels, with their last state.
#[utoipa::path(get, path = "/v1/prompts/{name}/monitors", tag = "experiments",
    security(("bearer" = ["read"])),
    params(PromptPath),
    responses(
        (status = 200, description = "The monitors", body = MonitorList),
        (status = 404, description = "`prompt_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_monitors(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(name): Path<String>,
) -> Result<axum::Json<MonitorList>, ApiError> {
    let name = prompt_name(&name)?;
    let items = monitors::list_monitors(&state.registry, auth.project, &name).await?;
    Ok(axum::Json(MonitorList {
        items: items.into_iter().map(MonitorResponse::from).collect(),
    }))
}

/// A label's monitor: its config and last state.
#[utoipa::path(get, path = "/v1/prompts/{name}/monitors/{label}", tag = "experiments",
    security(("bearer" = ["read"])),
    params(PromptPath, ("label" = String, Path, description = "The watched label")),
    responses(
        (status = 200, description = "The monitor", body = MonitorResponse),
        (status = 404, description = "`prompt_not_found` or `monitor_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_label` or `reserved_label`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_monitor(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path((name, label)): Path<(String, String)>,
) -> Result<axum::Json<MonitorResponse>, ApiError> {
    let name = prompt_name(&name)?;
    let label = label_name("label", &label)?;
    let monitor = monitors::get_monitor(&state.registry, auth.project, &name, &label).await?;
    Ok(axum::Json(monitor.into()))
}

/// Remove a label's monitor.
#[utoipa::path(delete, path = "/v1/prompts/{name}/monitors/{label}", tag = "experiments",
    security(("bearer" = ["promote"])),
    params(PromptPath, ("label" = String, Path, description = "The watched label")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "`prompt_not_found` or `monitor_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_label` or `reserved_label`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_monitor(
    State(state): State<AppState>,
    auth: Auth<scope::Promote>,
    Path((name, label)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let name = prompt_name(&name)?;
    let label = label_name("label", &label)?;
    monitors::delete_monitor(&state.registry, auth.project, &auth.actor(), &name, &label).await?;
    Ok(StatusCode::NO_CONTENT)
}
