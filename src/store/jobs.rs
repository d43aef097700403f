//! The job queue under evaluations and optimizations: a worker claims a job
//! with a lease, renews it with heartbeats, and completes, retries or stops
//! on cancel. A job is queued in the transaction that creates what it runs
//! (an evaluation, an optimization).

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::auth::Actor;
use crate::domain::jobs::{Job, JobStatus};
use crate::domain::ProjectId;

#[async_trait]
pub trait JobStore: Send + Sync {
    async fn get_job(&self, project: ProjectId, id: Uuid) -> StoreResult<Job>;
    /// Takes the next runnable job (queued and due, or running with an
    /// expired lease) for `owner` until `lease` from now; `None` when idle.
    async fn claim_job(&self, owner: &str, lease: std::time::Duration) -> StoreResult<Option<Job>>;
    /// Extends `owner`'s lease. `None`: the lease was lost (another worker
    /// took the job); else whether a cancel was requested.
    async fn heartbeat(
        &self,
        job_id: Uuid,
        owner: &str,
        lease: std::time::Duration,
    ) -> StoreResult<Option<bool>>;
    /// Ends a job `owner` holds; false when it no longer holds it.
    async fn complete_job(
        &self,
        job_id: Uuid,
        owner: &str,
        status: JobStatus,
        error: Option<&str>,
    ) -> StoreResult<bool>;
    /// Puts a job `owner` holds back in the queue, due at `run_after`.
    async fn retry_job(
        &self,
        job_id: Uuid,
        owner: &str,
        run_after: chrono::DateTime<chrono::Utc>,
        error: &str,
    ) -> StoreResult<bool>;
    /// A queued job is cancelled at once; a running one is asked to stop.
    async fn cancel_job(&self, project: ProjectId, id: Uuid, actor: &Actor) -> StoreResult<Job>;
    /// How many jobs of each kind are `queued` and `running` now.
    async fn count_unfinished_jobs(&self) -> StoreResult<Vec<JobCount>>;
}

/// Jobs of one kind in one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCount {
    pub kind: String,
    pub status: JobStatus,
    pub count: i64,
}
