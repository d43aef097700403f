//! Jobs: the durable units of long work (evaluations). Poll one, cancel it,
//! or follow it as server-sent events from start to end.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::{scope, Auth};
use super::extract::{page_request, Path, Query};
use super::AppState;
use crate::domain::jobs::{Job, JobFilter, JobStatus, JOB_KINDS};
use crate::error::{ApiError, Problem};
use crate::services::jobs;

#[derive(Debug, Serialize, Deserialize, ToSchema, Clone, Copy)]
pub struct Progress {
    /// Items with a stored result.
    pub done: i64,
    pub total: i64,
}

impl Progress {
    pub fn of(job: &Job) -> Self {
        Self {
            done: job.progress_done,
            total: job.progress_total,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobResponse {
    pub id: Uuid,
    #[schema(example = "evaluation")]
    pub kind: String,
    pub status: JobStatus,
    pub progress: Progress,
    /// Tries so far (a killed or failed try counts).
    pub attempts: i32,
    pub max_attempts: i32,
    pub cancel_requested: bool,
    /// Why the job failed, or why its last try did.
    pub error: Option<String>,
    /// What the job works on, e.g. `{"evaluation_id": …}`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<Job> for JobResponse {
    fn from(j: Job) -> Self {
        Self {
            id: j.id,
            progress: Progress::of(&j),
            kind: j.kind,
            status: j.status,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            cancel_requested: j.cancel_requested,
            error: j.error,
            payload: j.payload,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct JobPage {
    items: Vec<JobResponse>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

page_from!(JobPage of JobResponse);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListParams {
    /// Only jobs of this kind: `evaluation` or `optimization`.
    #[param(example = "evaluation")]
    kind: Option<String>,
    /// Only jobs in this state.
    status: Option<JobStatus>,
    /// Items per page, 1 to 100.
    #[param(default = 20, minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List jobs of every kind, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    security(("bearer" = ["read"])),
    params(JobListParams),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 422, description = "`validation_failed` (kind, status, limit or cursor)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_jobs(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Query(params): Query<JobListParams>,
) -> Result<axum::Json<JobPage>, ApiError> {
    let page = page_request(params.limit, params.cursor.as_deref())?;
    let kind = match params.kind.filter(|k| !k.is_empty()) {
        Some(kind) if !JOB_KINDS.contains(&kind.as_str()) => {
            return Err(ApiError::validation(
                "kind",
                format!("unknown kind {kind:?}; one of {}", JOB_KINDS.join(", ")),
            ))
        }
        kind => kind,
    };
    let filter = JobFilter {
        kind,
        status: params.status,
    };
    let page = jobs::list_jobs(&state.registry, auth.project, &filter, page).await?;
    Ok(axum::Json(page.into()))
}

/// A job: status, progress, attempts.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    security(("bearer" = ["read"])),
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobResponse),
        (status = 404, description = "`job_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_job(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<JobResponse>, ApiError> {
    let job = jobs::get_job(&state.registry, auth.project, id).await?;
    Ok(axum::Json(job.into()))
}

/// Cancel a job: a queued one at once, a running one at its next step.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    security(("bearer" = ["evaluate"])),
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Cancelled, or asked to stop (`cancel_requested`)", body = JobResponse),
        (status = 404, description = "`job_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`job_finished`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel_job(
    State(state): State<AppState>,
    auth: Auth<scope::Evaluate>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<JobResponse>, ApiError> {
    let job = jobs::cancel_job(&state.registry, auth.project, &auth.actor(), id).await?;
    Ok(axum::Json(job.into()))
}

/// Follow a job as server-sent events: `progress` (`{done, total}`) when it
/// changes, `item` for each completed item of an evaluation (its id is the
/// SSE event id, so `Last-Event-ID` resumes), `iteration` for each completed
/// iteration of an optimization (with its scores, the best so far, calls and
/// cost), and one final `done` (`{status}`), after which the stream closes.
/// Joining late replays the items or iterations so far, then follows.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs",
    security(("bearer" = ["read"])),
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 404, description = "`job_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn job_events(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let follow = jobs::follow(&state.registry, auth.project, id, last_event_id).await?;
    let stream = futures::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        let mut sse = Event::default()
            .event(event.name)
            .data(event.data.to_string());
        if let Some(id) = event.id {
            sse = sse.id(id);
        }
        Some((Ok(sse), follow))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
