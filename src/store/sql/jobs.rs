//! The job queue in portable SQL: `impl_job_store!` implements `JobStore`
//! for a backend (claiming skips rows another worker has locked, where the
//! backend can lock rows).

macro_rules! impl_job_store {
    ($store:ident, $db:ty, $backend:literal) => {
        use serde_json::json;
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use crate::domain::jobs::{Job, JobStatus};
        use crate::domain::ProjectId;
        use crate::store::rows::{JobRow, JOB_COLUMNS};
        use crate::store::{now, JobCount, JobStore, StoreError, StoreResult};

        use super::$store;

        crate::store::sql::observed_impl! {
        impl JobStore for $store as $backend {
            async fn get_job(&self, project: ProjectId, id: Uuid) -> StoreResult<Job> {
                let row: JobRow = sqlx::query_as(&format!("select {JOB_COLUMNS} from job where id = $1 and project_id = $2"))
                    .bind(id)
                    .bind(project)
                    .fetch_optional(self.reader())
                    .await?
                    .ok_or(StoreError::JobNotFound)?;
                Job::try_from(row)
            }

            async fn claim_job(&self, owner: &str, lease: std::time::Duration) -> StoreResult<Option<Job>> {
                let at = now();
                let expires = at + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
                let row: Option<JobRow> = sqlx::query_as(&format!(
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
                .bind(expires)
                .bind(at)
                .fetch_optional(self.writer())
                .await?;
                row.map(Job::try_from).transpose()
            }

            async fn heartbeat(&self, job_id: Uuid, owner: &str, lease: std::time::Duration) -> StoreResult<Option<bool>> {
                let at = now();
                let expires = at + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
                Ok(sqlx::query_scalar::<_, bool>(
                    "update job set lease_expires_at = $1, updated_at = $2 \
                     where id = $3 and lease_owner = $4 and status = 'running' returning cancel_requested",
                )
                .bind(expires)
                .bind(at)
                .bind(job_id)
                .bind(owner)
                .fetch_optional(self.writer())
                .await?)
            }

            async fn complete_job(&self, job_id: Uuid, owner: &str, status: JobStatus, error: Option<&str>) -> StoreResult<bool> {
                let at = now();
                let done = sqlx::query(
                    "update job set status = $1, error = $2, finished_at = $3, updated_at = $3, \
                     lease_owner = null, lease_expires_at = null \
                     where id = $4 and lease_owner = $5 and status = 'running'",
                )
                .bind(status.as_str())
                .bind(error)
                .bind(at)
                .bind(job_id)
                .bind(owner)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() == 1)
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
                let row: JobRow = sqlx::query_as(&format!(
                    "select {JOB_COLUMNS} from job where id = $1 and project_id = $2{}", Self::LOCK_ROW
                ))
                .bind(id)
                .bind(project)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::JobNotFound)?;
                let job = Job::try_from(row)?;
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
                        let status = JobStatus::parse(&status)
                            .ok_or_else(|| StoreError::Corrupt(format!("job status {status:?}")))?;
                        Ok(JobCount { kind, status, count })
                    })
                    .collect()
            }
        }
        }
    };
}

pub(crate) use impl_job_store;
