//! Optimizations (a search for a better version, as a job): their state is
//! saved as they go, and the result version is written at most once, only
//! by the worker that holds the job's lease.
//! `OptimizationStore`, then `impl_sql!`, its SQL for both
//! backends.

use async_trait::async_trait;
use uuid::Uuid;

use super::{NewVersion, PageRequest, StoreResult};
use crate::domain::auth::Actor;
use crate::domain::optimization::{
    NewOptimization, Optimization, OptimizationFilter, OptimizationState,
};
use crate::domain::{Page, ProjectId, PromptName};

#[async_trait]
pub trait OptimizationStore: Send + Sync {
    /// Creates an optimization and its queued job, in one transaction.
    async fn insert_optimization(
        &self,
        project: ProjectId,
        new: NewOptimization,
        actor: &Actor,
    ) -> StoreResult<Optimization>;
    async fn get_optimization(&self, project: ProjectId, id: Uuid) -> StoreResult<Optimization>;
    /// The optimizations of `project` that `filter` lets through, newest first.
    async fn list_optimizations(
        &self,
        project: ProjectId,
        filter: &OptimizationFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Optimization>>;
    /// The optimization a job runs.
    async fn get_optimization_of_job(&self, job_id: Uuid) -> StoreResult<Optimization>;
    /// Saves how far an optimization got, with its job's progress, in one transaction.
    /// Only while `owner` holds the job's lease: otherwise
    /// [`StoreError::JobNotHeld`](super::StoreError::JobNotHeld), and nothing is written.
    async fn save_optimization_state(
        &self,
        id: Uuid,
        owner: &str,
        state: &OptimizationState,
        progress_done: i64,
    ) -> StoreResult<()>;
    /// Saves the final state and, unless the optimization already has one,
    /// creates `result` as a version of `prompt`, in one transaction: however
    /// often a resumed job gets here, there is one result version at most.
    /// Returns the result version, new or earlier. Writes nothing
    /// ([`StoreError::JobNotHeld`](super::StoreError::JobNotHeld)) unless
    /// `owner` holds the job's lease and no cancel was asked for.
    async fn finish_optimization(
        &self,
        id: Uuid,
        owner: &str,
        state: &OptimizationState,
        result: Option<(ProjectId, PromptName, NewVersion, Actor)>,
    ) -> StoreResult<Option<semver::Version>>;
}

/// `OptimizationStore` in portable SQL for backend `$store` on database `$db` (see
/// `sql::impl_store!`).
macro_rules! impl_sql {
    ($store:ident, $db:ty, $backend:literal) => {
        use serde_json::json;
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::domain::auth::Actor;
        use crate::domain::jobs::OPTIMIZATION_JOB;
        use crate::domain::optimization::{
            NewOptimization, Optimization, OptimizationFilter, OptimizationState,
        };
        use crate::domain::{Page, ProjectId, PromptName};
        use crate::store::rows::{parse_semver, JobOwner, OptimizationRow};
        use crate::store::{
            now, page_from_overfetch, NewVersion, OptimizationStore, PageKey, PageRequest,
            StoreError, StoreResult,
        };

        use super::$store;

        crate::store::sql::observed_impl! {
        impl OptimizationStore for $store as $backend {
            async fn insert_optimization(&self, project: ProjectId, new: NewOptimization, actor: &Actor) -> StoreResult<Optimization> {
                let at = now();
                let (id, job_id) = (Uuid::now_v7(), Uuid::now_v7());
                let mut tx = self.writer().begin().await?;
                Self::queue_job(&mut tx, job_id, project, OPTIMIZATION_JOB, json!({"optimization_id": id}),
                    new.max_attempts, at, i64::from(new.spec.max_iterations), new.trace_parent.as_deref()).await?;
                sqlx::query(
                    "insert into optimization (id, project_id, job_id, prompt_id, version_id, dataset_id, \
                     item_count, spec, state, created_at, created_by) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(id)
                .bind(project)
                .bind(job_id)
                .bind(new.prompt_id)
                .bind(new.version_id)
                .bind(new.dataset_id)
                .bind(new.item_count)
                .bind(Json(&new.spec))
                .bind(Json(OptimizationState::default()))
                .bind(at)
                .bind(&actor.key_name)
                .execute(&mut *tx)
                .await?;
                Self::audit(&mut tx, project, actor, "optimization.create", &format!("optimizations/{id}"), None,
                    Some(json!({"job_id": job_id, "strategy": new.spec.strategy.as_str()}))).await?;
                tx.commit().await?;
                self.get_optimization(project, id).await
            }

            async fn get_optimization(&self, project: ProjectId, id: Uuid) -> StoreResult<Optimization> {
                self.find_with_job::<OptimizationRow>("where o.id = $1 and o.project_id = $2", &[id, project])
                    .await?
                    .ok_or(StoreError::OptimizationNotFound)
            }

            async fn list_optimizations(&self, project: ProjectId, filter: &OptimizationFilter, page: PageRequest) -> StoreResult<Page<Optimization>> {
                let mut query = sqlx::QueryBuilder::<$db>::new(OptimizationRow::SELECT);
                query.push(" join job j on j.id = o.job_id where o.project_id = ").push_bind(project);
                query.push(" and o.id < ").push_bind(page.after_id().unwrap_or(Uuid::max()));
                if let Some(prompt) = &filter.prompt {
                    query.push(" and p.name = ").push_bind(prompt.to_string());
                }
                if let Some(status) = filter.status {
                    query.push(" and j.status = ").push_bind(status.as_str());
                }
                query.push(" order by o.id desc limit ").push_bind(page.overfetch());
                let rows: Vec<OptimizationRow> = query.build_query_as().fetch_all(self.reader()).await?;
                let rows = page_from_overfetch(rows, page.limit, |row| PageKey::Id(row.id));
                Ok(Page { items: self.with_jobs(rows.items).await?, next_cursor: rows.next_cursor })
            }

            async fn get_optimization_of_job(&self, job_id: Uuid) -> StoreResult<Optimization> {
                self.find_with_job::<OptimizationRow>("where o.job_id = $1", &[job_id])
                    .await?
                    .ok_or(StoreError::OptimizationNotFound)
            }

            async fn save_optimization_state(&self, id: Uuid, owner: &str, state: &OptimizationState, progress_done: i64) -> StoreResult<()> {
                let at = now();
                let mut tx = self.writer().begin().await?;
                let saved = sqlx::query(
                    "update optimization set state = $1 where id = $2 and job_id in \
                     (select id from job where lease_owner = $3 and status = 'running')",
                )
                .bind(Json(state))
                .bind(id)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
                if saved.rows_affected() == 0 {
                    return Err(StoreError::JobNotHeld);
                }
                sqlx::query("update job set progress_done = $1, updated_at = $2 where id = (select job_id from optimization where id = $3)")
                    .bind(progress_done)
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn finish_optimization(
                &self,
                id: Uuid,
                owner: &str,
                state: &OptimizationState,
                result: Option<(ProjectId, PromptName, NewVersion, Actor)>,
            ) -> StoreResult<Option<semver::Version>> {
                let mut tx = self.writer().begin().await?;
                // Locks the job: a cancel either came first (no version) or
                // waits for this and finds the result written.
                let cancel_requested = sqlx::query_scalar::<_, bool>(&format!(
                    "select cancel_requested from job where id = (select job_id from optimization where id = $1) \
                     and lease_owner = $2 and status = 'running'{}", Self::LOCK_ROW
                ))
                .bind(id)
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?;
                if cancel_requested != Some(false) {
                    return Err(StoreError::JobNotHeld);
                }
                let earlier = sqlx::query_scalar::<_, Option<Uuid>>(&format!(
                    "select result_version_id from optimization where id = $1{}", Self::LOCK_ROW
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::OptimizationNotFound)?;
                let version = match (earlier, result) {
                    (Some(earlier), _) => Self::semver_of(&mut tx, Some(earlier)).await?,
                    (None, None) => None,
                    (None, Some((project, name, new, actor))) => {
                        crate::store::annotate("promptreg.prompt", &name);
                        let created = Self::write_version(&mut tx, project, &name, new, &actor).await?;
                        sqlx::query("update optimization set result_version_id = $1 where id = $2")
                            .bind(created.version.id)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        Some(created.version.version.to_string())
                    }
                };
                sqlx::query("update optimization set state = $1 where id = $2")
                    .bind(Json(state))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                version.as_deref().map(parse_semver).transpose()
            }
        }
        }
    };
}

pub(crate) use impl_sql;
