//! The jobs page: running and recent jobs of every kind, newest first, with
//! their status, progress and a link to what they work on; and a job's
//! events for the live pages, the stream `GET /v1/jobs/{id}/events` sends,
//! here with the session's authority.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use futures::Stream;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::evaluations::evaluation_url;
use super::optimizations::optimization_url;
use super::prompts::authorize;
use super::session::Signed;
use super::{page_request, render, time, with_query, Me, UiError};
use crate::api::extract::{Path, Query};
use crate::api::AppState;
use crate::domain::auth::Scope;
use crate::domain::jobs::{Job, JobFilter, JobStatus, EVALUATION_JOB, JOB_KINDS, OPTIMIZATION_JOB};
use crate::error::ApiError;
use crate::services::jobs;

const JOBS_PER_PAGE: u32 = 30;

#[derive(Deserialize, Serialize, Default, Clone)]
pub struct ListParams {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    cursor: String,
}

#[derive(Serialize)]
struct JobRow {
    id: String,
    kind: String,
    status: &'static str,
    running: bool,
    done: i64,
    total: i64,
    attempts: i32,
    /// What the job works on, as a page link when there is one.
    subject: Option<(String, Option<String>)>,
    error: Option<String>,
    created_at: String,
    finished_at: Option<String>,
}

#[derive(Serialize)]
struct ListPage<'a> {
    me: Me<'a>,
    section: &'static str,
    kind: &'a str,
    status: &'a str,
    kinds: [&'static str; 2],
    statuses: [&'static str; 5],
    jobs: Vec<JobRow>,
    next: Option<String>,
}

const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

fn subject(job: &Job) -> Option<(String, Option<String>)> {
    let field = format!("{}_id", job.kind);
    let id = job
        .payload
        .get(&field)
        .and_then(|v| v.as_str())
        .and_then(|raw| Uuid::parse_str(raw).ok())?;
    let link = match job.kind.as_str() {
        EVALUATION_JOB => Some(evaluation_url(id)),
        OPTIMIZATION_JOB => Some(optimization_url(id)),
        _ => None,
    };
    Some((format!("{} {id}", job.kind), link))
}

fn job_row(job: Job) -> JobRow {
    JobRow {
        id: job.id.to_string(),
        subject: subject(&job),
        status: job.status.as_str(),
        running: !job.status.is_final(),
        done: job.progress_done,
        total: job.progress_total,
        attempts: job.attempts,
        error: job.error,
        created_at: time(job.created_at),
        finished_at: job.finished_at.map(time),
        kind: job.kind,
    }
}

pub async fn list_jobs(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(params): Query<ListParams>,
) -> Result<Response, UiError> {
    authorize(&state, &session, Scope::Read)?;
    let filter = JobFilter {
        kind: match params.kind.as_str() {
            "" => None,
            kind if JOB_KINDS.contains(&kind) => Some(kind.to_owned()),
            _ => {
                return Err(ApiError::validation(
                    "kind",
                    format!("one of {}", JOB_KINDS.join(", ")),
                )
                .into())
            }
        },
        status: match params.status.as_str() {
            "" => None,
            raw => Some(JobStatus::parse(raw).ok_or_else(|| {
                ApiError::validation("status", format!("one of {}", STATUSES.join(", ")))
            })?),
        },
    };
    let page = jobs::list_jobs(
        &state.registry,
        session.caller.project,
        &filter,
        page_request(JOBS_PER_PAGE, &params.cursor)?,
    )
    .await?;
    let next = page.next_cursor.map(|cursor| {
        with_query(
            "/ui/jobs",
            &ListParams {
                cursor,
                ..params.clone()
            },
        )
    });
    let context = ListPage {
        me: Me::of(&session),
        section: "jobs",
        kind: &params.kind,
        status: &params.status,
        kinds: JOB_KINDS,
        statuses: STATUSES,
        jobs: page.items.into_iter().map(job_row).collect(),
        next,
    };
    Ok(render(StatusCode::OK, "jobs.html", context))
}

/// `GET /ui/jobs/{id}/events`: the job's progress as server-sent events,
/// from the same service as `GET /v1/jobs/{id}/events` (`progress`,
/// `item`, `iteration`, then `done`); `Last-Event-ID` resumes.
pub async fn job_events(
    State(state): State<AppState>,
    Signed(session): Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, UiError> {
    authorize(&state, &session, Scope::Read)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::validation("id", "not a job id"))?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let follow = jobs::follow(&state.registry, session.caller.project, id, last_event_id).await?;
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
