//! Jobs: the durable units of long work (evaluations). Poll one, cancel it,
//! or follow it as server-sent events from start to end.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{scope, Auth};
use super::extract::Path;
use super::AppState;
use crate::domain::jobs::{Job, JobStatus, EVALUATION_JOB, OPTIMIZATION_JOB};
use crate::domain::ProjectId;
use crate::error::{ApiError, Problem};
use crate::store::Store;

/// How often a followed job is looked at.
const POLL: Duration = Duration::from_millis(200);
/// Item events read at once.
const ITEMS_PER_READ: u32 = 500;

#[derive(Serialize, ToSchema, Clone, Copy)]
pub struct Progress {
    /// Items with a stored result.
    done: i64,
    total: i64,
}

impl Progress {
    pub fn of(job: &Job) -> Self {
        Self {
            done: job.progress_done,
            total: job.progress_total,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct JobResponse {
    id: Uuid,
    #[schema(example = "evaluation")]
    kind: String,
    status: JobStatus,
    progress: Progress,
    /// Tries so far (a killed or failed try counts).
    attempts: i32,
    max_attempts: i32,
    cancel_requested: bool,
    /// Why the job failed, or why its last try did.
    error: Option<String>,
    /// What the job works on, e.g. `{"evaluation_id": …}`.
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
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
    let job = state
        .registry
        .store()
        .get_job(auth.project, id)
        .await
        .map_err(|e| ApiError::from_store(e, ""))?;
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
    let job = state
        .registry
        .store()
        .cancel_job(auth.project, id, &auth.actor())
        .await
        .map_err(|e| ApiError::from_store(e, ""))?;
    // A queued job ends here; a running one ends in its worker, which counts it.
    if job.status.is_final() {
        crate::telemetry::metrics::job_finished(&job.kind, job.status);
    }
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
    let store = state.registry.store().clone();
    let job = store
        .get_job(auth.project, id)
        .await
        .map_err(|e| ApiError::from_store(e, ""))?;
    let evaluation = match job.kind.as_str() {
        EVALUATION_JOB => Some(
            store
                .get_evaluation_of_job(job.id)
                .await
                .map_err(|e| ApiError::from_store(e, ""))?
                .id,
        ),
        _ => None,
    };
    let optimization = match job.kind.as_str() {
        OPTIMIZATION_JOB => Some(
            store
                .get_optimization_of_job(job.id)
                .await
                .map_err(|e| ApiError::from_store(e, ""))?
                .id,
        ),
        _ => None,
    };
    let last_item = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let follow = Follow {
        store,
        project: auth.project,
        job: id,
        evaluation,
        optimization,
        // Iteration events are numbered 1, 2…: a resumed stream skips those seen.
        iterations_sent: if optimization.is_some() {
            usize::try_from(last_item).unwrap_or(0)
        } else {
            0
        },
        last_item,
        last_progress: None,
        pending: VecDeque::new(),
        finished: false,
        first: true,
    };
    let stream = futures::stream::unfold(follow, |mut follow| async move {
        follow.next().await.map(|event| (Ok(event), follow))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The state of one followed job.
struct Follow {
    store: std::sync::Arc<dyn Store>,
    project: ProjectId,
    job: Uuid,
    evaluation: Option<Uuid>,
    optimization: Option<Uuid>,
    /// Completed iterations of an optimization already sent.
    iterations_sent: usize,
    last_item: i64,
    last_progress: Option<(i64, i64)>,
    pending: VecDeque<Event>,
    finished: bool,
    first: bool,
}

impl Follow {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.finished {
                return None;
            }
            if !self.first {
                tokio::time::sleep(POLL).await;
            }
            self.first = false;
            if let Err(e) = self.poll().await {
                tracing::warn!(error = %e, job = %self.job, "cannot follow job");
                self.pending.push_back(
                    Event::default()
                        .event("error")
                        .data(json!({"error": "the job could not be read"}).to_string()),
                );
                self.finished = true;
            }
        }
    }

    /// Reads the job, then its new results: a job seen final has all its
    /// results stored already, so `done` always comes after the last item.
    async fn poll(&mut self) -> Result<(), crate::store::StoreError> {
        let job = self.store.get_job(self.project, self.job).await?;
        let mut more = false;
        if let Some(evaluation) = self.evaluation {
            let results = self
                .store
                .list_results(evaluation, self.last_item, ITEMS_PER_READ)
                .await?;
            more = results.len() == ITEMS_PER_READ as usize;
            for stored in results {
                self.last_item = stored.id;
                let result = stored.result;
                let data = json!({
                    "item_id": result.item_id,
                    "item_seq": result.item_seq,
                    "scores": result.scores,
                    "error": result.error,
                    "latency_ms": result.latency_ms,
                });
                self.pending.push_back(
                    Event::default()
                        .event("item")
                        .id(stored.id.to_string())
                        .data(data.to_string()),
                );
            }
        }
        if let Some(optimization) = self.optimization {
            let optimization = self
                .store
                .get_optimization(self.project, optimization)
                .await?;
            let state = &optimization.state;
            for iteration in state
                .iterations
                .iter()
                .filter(|i| i.complete)
                .skip(self.iterations_sent)
            {
                self.iterations_sent += 1;
                let candidates: Vec<_> = iteration
                    .candidates
                    .iter()
                    .map(|c| json!({"train_score": c.train_score, "train_items": c.train_items, "val_score": c.val_score, "discarded": c.discarded}))
                    .collect();
                let data = json!({
                    "iteration": iteration.number,
                    "candidates": candidates,
                    "baseline_val_score": state.baseline.val_score,
                    "best_val_score": state.best_val_score_through(iteration.number),
                    "calls": iteration.calls,
                    "cost_usd": iteration.cost_usd,
                });
                self.pending.push_back(
                    Event::default()
                        .event("iteration")
                        .id(iteration.number.to_string())
                        .data(data.to_string()),
                );
            }
        }
        let progress = (job.progress_done, job.progress_total);
        if self.last_progress != Some(progress) {
            self.last_progress = Some(progress);
            self.pending.push_back(
                Event::default()
                    .event("progress")
                    .data(json!({"done": progress.0, "total": progress.1}).to_string()),
            );
        }
        if job.status.is_final() && !more {
            self.pending.push_back(
                Event::default()
                    .event("done")
                    .data(json!({"status": job.status, "error": job.error}).to_string()),
            );
            self.finished = true;
        }
        Ok(())
    }
}
