//! The job queue under evaluations and optimizations: a worker claims a job
//! with a lease, renews it with heartbeats, and completes, retries or stops
//! on cancel. A job is queued in the transaction that creates what it runs
//! (an evaluation, an optimization).
//! `JobStore`, then `impl_sql!`, its SQL for both backends (claiming
//! skips rows another worker has locked, where the backend can lock rows).

use async_trait::async_trait;
use uuid::Uuid;

use super::{PageRequest, StoreResult};
use crate::domain::auth::Actor;
use crate::domain::jobs::{Job, JobFilter, JobStatus};
use crate::domain::webhooks::OutboxEvent;
use crate::domain::{Page, ProjectId};

#[async_trait]
pub trait JobStore: Send + Sync {
    async fn get_job(&self, project: ProjectId, id: Uuid) -> StoreResult<Job>;
    /// The jobs of `project` that `filter` lets through, newest first.
    async fn list_jobs(
        &self,
        project: ProjectId,
        filter: &JobFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Job>>;
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
    /// Ends a job `owner` holds, writing `event` (what its ending reports)
    /// to the outbox in the same transaction; false when it no longer holds it.
    async fn complete_job(
        &self,
        job_id: Uuid,
        owner: &str,
        status: JobStatus,
        error: Option<&str>,
        event: Option<&OutboxEvent>,
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

/// `JobStore` in portable SQL for backend `$store` on database `$db` (see
/// `sql::impl_store!`).
macro_rules! impl_sql {
    ($store:ident, $db:ty, $backend:literal) => {
        use serde_json::json;
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use crate::domain::jobs::{Job, JobFilter, JobStatus};
        use crate::domain::{Page, ProjectId};
        use crate::store::rows::JOB_COLUMNS;
        use crate::store::{
            now, page_from_overfetch, JobCount, JobStore, PageKey, PageRequest, StoreError,
            StoreResult,
        };

        use super::$store;

        type Conn = <$db as sqlx::Database>::Connection;

        impl $store {
            /// Job `id` of `project`, locked until commit when `lock`.
            async fn job(conn: &mut Conn, project: ProjectId, id: Uuid, lock: bool) -> StoreResult<Job> {
                let select = format!("select {JOB_COLUMNS} from job where project_id = $1 and id = $2");
                Self::find_in_project(conn, &select, project, id, lock)
                    .await?
                    .ok_or(StoreError::JobNotFound)
            }

            /// When a lease taken (or renewed) at `at` runs out.
            fn lease_end(at: chrono::DateTime<chrono::Utc>, lease: std::time::Duration) -> chrono::DateTime<chrono::Utc> {
                at + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30))
            }
        }

        crate::store::sql::observed_impl! {
        impl JobStore for $store as $backend {
            async fn get_job(&self, project: ProjectId, id: Uuid) -> StoreResult<Job> {
                let mut conn = self.reader().acquire().await?;
                Self::job(&mut conn, project, id, false).await
            }

            async fn list_jobs(&self, project: ProjectId, filter: &JobFilter, page: PageRequest) -> StoreResult<Page<Job>> {
                let mut query = sqlx::QueryBuilder::<$db>::new(format!("select {JOB_COLUMNS} from job where project_id = "));
                query.push_bind(project);
                query.push(" and id < ").push_bind(page.after_id().unwrap_or(Uuid::max()));
                if let Some(kind) = &filter.kind {
                    query.push(" and kind = ").push_bind(kind.clone());
                }
                if let Some(status) = filter.status {
                    query.push(" and status = ").push_bind(status.as_str());
                }
                query.push(" order by id desc limit ").push_bind(page.overfetch());
                let jobs: Vec<Job> = query.build_query_as().fetch_all(self.reader()).await?;
                Ok(page_from_overfetch(jobs, page.limit, |job| PageKey::Id(job.id)))
            }

            async fn claim_job(&self, owner: &str, lease: std::time::Duration) -> StoreResult<Option<Job>> {
                let at = now();
                Ok(sqlx::query_as(&format!(
                    "update job set status = 'running', lease_owner = $1, lease_expires_at = $2, \
                     attempts = attempts + 1, started_at = coalesce(started_at, $3), updated_at = $3 \
                     where id = (select id from job \
                         where (status = 'queued' and run_after <= $3) \
                            or (status = 'running' and lease_expires_at < $3) \
                         order by run_after limit 1{}) \
                     returning {JOB_COLUMNS}",
                    Self::SKIP_LOCKED
                ))
                .bind(owner)
                .bind(Self::lease_end(at, lease))
                .bind(at)
                .fetch_optional(self.writer())
                .await?)
            }

            async fn heartbeat(&self, job_id: Uuid, owner: &str, lease: std::time::Duration) -> StoreResult<Option<bool>> {
                let at = now();
                Ok(sqlx::query_scalar::<_, bool>(
                    "update job set lease_expires_at = $1, updated_at = $2 \
                     where id = $3 and lease_owner = $4 and status = 'running' returning cancel_requested",
                )
                .bind(Self::lease_end(at, lease))
                .bind(at)
                .bind(job_id)
                .bind(owner)
                .fetch_optional(self.writer())
                .await?)
            }

            async fn complete_job(
                &self,
                job_id: Uuid,
                owner: &str,
                status: JobStatus,
                error: Option<&str>,
                event: Option<&crate::domain::webhooks::OutboxEvent>,
            ) -> StoreResult<bool> {
                let at = now();
                let mut tx = self.writer().begin().await?;
                let project: Option<Uuid> = sqlx::query_scalar(
                    "update job set status = $1, error = $2, finished_at = $3, updated_at = $3, \
                     lease_owner = null, lease_expires_at = null \
                     where id = $4 and lease_owner = $5 and status = 'running' returning project_id",
                )
                .bind(status.as_str())
                .bind(error)
                .bind(at)
                .bind(job_id)
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(project) = project else {
                    return Ok(false);
                };
                if let Some(event) = event {
                    Self::emit(&mut tx, project, event).await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn retry_job(&self, job_id: Uuid, owner: &str, run_after: chrono::DateTime<chrono::Utc>, error: &str) -> StoreResult<bool> {
                let done = sqlx::query(
                    "update job set status = 'queued', error = $1, run_after = $2, updated_at = $3, \
                     lease_owner = null, lease_expires_at = null \
                     where id = $4 and lease_owner = $5 and status = 'running'",
                )
                .bind(error)
                .bind(run_after)
                .bind(now())
                .bind(job_id)
                .bind(owner)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn cancel_job(&self, project: ProjectId, id: Uuid, actor: &Actor) -> StoreResult<Job> {
                let at = now();
                let mut tx = self.writer().begin().await?;
                let job = Self::job(&mut tx, project, id, true).await?;
                if job.status.is_final() {
                    return Err(StoreError::JobFinished(job.status));
                }
                if job.status == JobStatus::Queued {
                    sqlx::query("update job set status = 'cancelled', cancel_requested = true, finished_at = $1, updated_at = $1 where id = $2")
                        .bind(at)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    // An optimization that wrote its result version is done:
                    // cancelling it now would leave that version behind.
                    let asked = sqlx::query(
                        "update job set cancel_requested = true, updated_at = $1 where id = $2 \
                         and not exists (select 1 from optimization where job_id = $2 and result_version_id is not null)",
                    )
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    if asked.rows_affected() == 0 {
                        return Err(StoreError::JobFinished(JobStatus::Succeeded));
                    }
                }
                Self::audit(&mut tx, project, actor, "job.cancel", &format!("jobs/{id}"),
                    Some(json!({"status": job.status.as_str()})), None).await?;
                tx.commit().await?;
                self.get_job(project, id).await
            }

            async fn count_unfinished_jobs(&self) -> StoreResult<Vec<JobCount>> {
                let rows: Vec<(String, String, i64)> = sqlx::query_as(
                    "select kind, status, count(*) from job \
                     where status in ('queued', 'running') group by kind, status",
                )
                .fetch_all(self.reader())
                .await?;
                rows.into_iter()
                    .map(|(kind, status, count)| {
                        let status = JobStatus::try_from(status).map_err(StoreError::Corrupt)?;
                        Ok(JobCount { kind, status, count })
                    })
                    .collect()
            }
        }
        }
    };
}

pub(crate) use impl_sql;
