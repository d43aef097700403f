//! Jobs: the durable units of long work (evaluations, optimizations). Read
//! one, cancel it, follow its progress, and build the workers that run them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::domain::auth::Actor;
use crate::domain::jobs::{Job, JobFilter, EVALUATION_JOB, OPTIMIZATION_JOB};
use crate::domain::{Page, ProjectId};
use crate::store::{JobCount, PageRequest, Store};

use super::render::Renderer;
use super::{Registry, ServiceResult};
use crate::config::WorkerConfig;
use crate::eval::runner::EvaluationRunner;
use crate::optimize::runner::OptimizationRunner;
use crate::providers::Providers;
use crate::worker::{JobRunner, Worker};

/// A job worker over the registry's store, with a runner per job kind,
/// the configured lease, and woken by `jobs_queued` when this process
/// queues a job.
pub fn worker(
    registry: &Arc<Registry>,
    renderer: &Arc<Renderer>,
    providers: &Arc<Providers>,
    config: &WorkerConfig,
    jobs_queued: Arc<tokio::sync::Notify>,
) -> Worker {
    let store = registry.store.clone();
    let evaluations: Arc<dyn JobRunner> = Arc::new(EvaluationRunner::new(
        store.clone(),
        renderer.clone(),
        providers.clone(),
    ));
    let optimizations: Arc<dyn JobRunner> = Arc::new(OptimizationRunner::new(
        store.clone(),
        registry.clone(),
        renderer.clone(),
        providers.clone(),
    ));
    Worker::new(
        store,
        [
            (EVALUATION_JOB.to_owned(), evaluations),
            (OPTIMIZATION_JOB.to_owned(), optimizations),
        ]
        .into_iter()
        .collect(),
        Duration::from_secs(config.lease_secs.max(1)),
        Duration::from_millis(config.poll_interval_ms.max(10)),
    )
    .woken_by(jobs_queued)
}

/// How often a followed job is looked at.
const POLL: Duration = Duration::from_millis(200);
/// Item events read at once.
const ITEMS_PER_READ: u32 = 500;

/// The project's jobs of every kind that `filter` lets through, newest first.
pub async fn list_jobs(
    registry: &Registry,
    project: ProjectId,
    filter: &JobFilter,
    page: PageRequest,
) -> ServiceResult<Page<Job>> {
    Ok(registry.store.list_jobs(project, filter, page).await?)
}

pub async fn get_job(registry: &Registry, project: ProjectId, id: Uuid) -> ServiceResult<Job> {
    Ok(registry.store.get_job(project, id).await?)
}

/// A queued job is cancelled at once; a running one is asked to stop.
pub async fn cancel_job(
    registry: &Registry,
    project: ProjectId,
    actor: &Actor,
    id: Uuid,
) -> ServiceResult<Job> {
    let job = registry.store.cancel_job(project, id, actor).await?;
    // A queued job ends here; a running one ends in its worker, which counts it.
    if job.status.is_final() {
        crate::telemetry::metrics::job_finished(&job.kind, job.status);
    }
    Ok(job)
}

/// How many jobs of each kind are queued and running now.
pub async fn count_unfinished(registry: &Registry) -> ServiceResult<Vec<JobCount>> {
    Ok(registry.store.count_unfinished_jobs().await?)
}

/// One step of a followed job: `progress`, `item`, `iteration`, `done` or
/// `error`, with the id a reader resumes after (items and iterations).
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub name: &'static str,
    pub id: Option<String>,
    pub data: Value,
}

/// Follows job `id` from its start, or after event `last_event_id` (an
/// item's result id, or an optimization's iteration number).
pub async fn follow(
    registry: &Registry,
    project: ProjectId,
    id: Uuid,
    last_event_id: i64,
) -> ServiceResult<Follow> {
    let store = registry.store.clone();
    let job = store.get_job(project, id).await?;
    let evaluation = match job.kind.as_str() {
        EVALUATION_JOB => Some(store.get_evaluation_of_job(job.id).await?.id),
        _ => None,
    };
    let optimization = match job.kind.as_str() {
        OPTIMIZATION_JOB => Some(store.get_optimization_of_job(job.id).await?.id),
        _ => None,
    };
    Ok(Follow {
        store,
        project,
        job: id,
        evaluation,
        optimization,
        // Iteration events are numbered 1, 2…: a resumed stream skips those seen.
        iterations_sent: if optimization.is_some() {
            usize::try_from(last_event_id).unwrap_or(0)
        } else {
            0
        },
        last_item: last_event_id,
        last_progress: None,
        pending: VecDeque::new(),
        finished: false,
        first: true,
    })
}

/// The state of one followed job.
pub struct Follow {
    store: Arc<dyn Store>,
    project: ProjectId,
    job: Uuid,
    evaluation: Option<Uuid>,
    optimization: Option<Uuid>,
    /// Completed iterations of an optimization already sent.
    iterations_sent: usize,
    last_item: i64,
    last_progress: Option<(i64, i64)>,
    pending: VecDeque<JobEvent>,
    finished: bool,
    first: bool,
}

impl Follow {
    fn emit(&mut self, name: &'static str, id: Option<String>, data: Value) {
        self.pending.push_back(JobEvent { name, id, data });
    }

    pub async fn next(&mut self) -> Option<JobEvent> {
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
                self.emit("error", None, json!({"error": "the job could not be read"}));
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
                self.emit("item", Some(stored.id.to_string()), data);
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
                self.emit("iteration", Some(iteration.number.to_string()), data);
            }
        }
        let progress = (job.progress_done, job.progress_total);
        if self.last_progress != Some(progress) {
            self.last_progress = Some(progress);
            self.emit(
                "progress",
                None,
                json!({"done": progress.0, "total": progress.1}),
            );
        }
        if job.status.is_final() && !more {
            self.emit(
                "done",
                None,
                json!({"status": job.status, "error": job.error}),
            );
            self.finished = true;
        }
        Ok(())
    }
}
